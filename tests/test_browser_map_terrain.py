"""The Map page's 3D terrain in a real browser (Debian's chromium driven by playwright), offline.

The app runs as a user starts it (``python -m skyfall_core serve --port N``) on a workspace holding
a copy of the session's real job (conftest's ``tiny_job``); the browser may only talk to the app on
127.0.0.1. Turning "3D terrain" on must draw deck.gl's TerrainLayer with no deck.gl error, its mesh
built by the terrain worker the app serves itself (``static/vendor/loaders-terrain/``) and nothing
fetched from unpkg.com (where loaders.gl would take the worker from otherwise). The browser is
never downloaded: the test uses ``/usr/bin/chromium`` and skips when it or playwright is missing.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from fixtures_app import copy_real_job

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
WORKER = "/app/static/vendor/loaders-terrain/terrain-worker.js"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium); "
                              "the test never downloads a browser"),
    pytest.mark.skipif(not (REPO / "sample_aoi" / "scenes").is_dir(), reason="bundled sample_aoi/ missing"),
]
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -r requirements.txt)")


@pytest.fixture()
def app(tiny_job, tmp_path):
    """The app on a free port, its workspace holding a copy of the real job; stopped after."""
    ws = tmp_path / "ws"
    copy_real_job(tiny_job, ws, "tiny", name="tiny")
    text = (REPO / "config.toml").read_text()
    text = text.replace('root = "workspace"', f'root = "{ws}"', 1)
    text = text.replace('folders = ["sample_aoi/scenes"]', f'folders = ["{REPO / "sample_aoi" / "scenes"}"]', 1)
    assert str(ws) in text, "config.toml layout changed"
    (tmp_path / "config.toml").write_text(text)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SKYFALL_CONFIG": str(tmp_path / "config.toml"), "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "skyfall_core", "serve", "--port", str(port)], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with code {proc.returncode}:\n"
                            f"{(tmp_path / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not answer within 120 s:\n{(tmp_path / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        log.close()


def _pixels(png: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)


def test_3d_terrain_draws_offline_with_the_apps_own_worker(app):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                                          "--ignore-gpu-blocklist", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1400}, device_scale_factor=1)
            local = re.compile(r"^(https?://127\.0\.0\.1[:/]|data:|blob:|about:)")
            blocked: list[str] = []

            def refuse(route):
                blocked.append(route.request.url)
                route.abort()

            context.route(lambda u: not local.match(u), refuse)  # no internet from the test
            context.set_default_timeout(60_000)
            pg = context.new_page()
            console: list[str] = []
            pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            pg.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
            pg.goto(app)
            pg.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Map").click()
            deck = pg.locator('[data-testid="stDeckGlJsonChart"]')
            deck.wait_for(state="visible")
            pg.wait_for_timeout(3000)
            flat = _pixels(deck.screenshot())
            with pg.expect_response(lambda r: r.url.endswith(WORKER), timeout=120_000) as worker:
                pg.get_by_text("3D terrain", exact=True).click()
            assert worker.value.status == 200
            pg.wait_for_timeout(5000)  # the worker meshes the terrain, deck.gl draws it
            tilted = _pixels(deck.screenshot())
        finally:
            browser.close()
    assert not [u for u in blocked if "unpkg" in u], blocked  # the worker came from the app, not a CDN
    deck_errors = [c for c in console if c.startswith(("error", "pageerror")) and ("deck" in c or "Terrain" in c)]
    assert not deck_errors, deck_errors
    assert flat.shape == tilted.shape
    changed = (np.abs(flat - tilted).sum(-1) > 30).mean()
    assert changed > 0.05, changed  # the view tilted and the terrain is drawn
