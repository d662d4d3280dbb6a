"""Helpers for the browser tests (test-only: not in the package): Debian's chromium driven by playwright,
pages served as the app serves them, and the app itself run as a user starts it.

- :data:`CHROMIUM`, :data:`NEEDS_CHROMIUM` (the skip mark) and :data:`sync_api`: the browser is never
  downloaded; a module importing this one is skipped when playwright is not installed.
- :func:`chromium` launches it headless (software WebGL) with the given arguments; :func:`browser_fixture`
  makes a module-scoped ``browser`` fixture of it.
- :func:`static_server`, :func:`iframe_page`, :func:`open_viewer`: a viewer page served over HTTP inside
  an ``<iframe srcdoc>`` (as ``st.iframe`` shows it), opened once it reports it has loaded.
- :func:`served_app`: ``python -m skyfall_core serve --port P`` on a temporary workspace (its
  ``config.toml`` from :func:`app_config`), yielding its URL once it answers; the fixtures :func:`app`
  (the bundled sample as catalog, killed with its jobs after) and :func:`page` (a chromium page that
  may reach only the app) are shared by test_browser_e2e.py and test_browser_jobs_flow.py.

A fixture is used by assigning it to a name in the test module (``app, page = fixtures_browser.app,
fixtures_browser.page``; ``browser = browser_fixture()``), so pytest finds it there.
"""

from __future__ import annotations

import functools
import html
import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_aoi"
CHROMIUM = Path("/usr/bin/chromium")
NEEDS_CHROMIUM = pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium); "
           "the test never downloads a browser")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -r requirements.txt)")
PlaywrightError = sync_api.Error

SOFTWARE_GL = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
VIEWER_ARGS = [*SOFTWARE_GL, "--no-sandbox"]  # viewer pages from disk or a static server
APP_ARGS = [*SOFTWARE_GL, "--disable-dev-shm-usage"]  # the running app
APP_VIEWPORT = {"width": 1600, "height": 1800}  # tall: Streamlit scrolls inside the page, screenshots show the viewport
LOCAL = re.compile(r"^(https?://127\.0\.0\.1[:/]|data:|blob:|about:)")  # what a page of the app may fetch
BACKGROUND = np.array([0x0B, 0x12, 0x20], np.float32)  # the viewers' #0b1220 (RGB)
VIEWER_READY = "window.skyfallViewerState && window.skyfallViewerState.status !== 'loading'"  # the viewer loaded
# tiny settings that finish in seconds on a CPU (the keys of tests/test_pipeline.py TINY)
TINY = {"stage1.iterations": 30, "stage1.init_points": 2000, "stage1.densify_until": 20,
        "stage2.iterations_per_round": 6, "stage2.image_size": 48, "cameras.max_image_size": 112,
        "cameras.max_features": 1500}
JOB_TIMEOUT_S = 600  # the tiny job takes ~20 s on 2 cores; CI machines may be much slower


# ------------------------------------------------------------------------------------ chromium
@contextmanager
def chromium(args: Sequence[str] = VIEWER_ARGS) -> Iterator:
    """Debian's chromium, headless, launched with ``args``; closed after."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=list(args))
        try:
            yield browser
        finally:
            browser.close()


def browser_fixture(args: Sequence[str] = VIEWER_ARGS):
    """A module-scoped ``browser`` fixture: one :func:`chromium` (launched with ``args``) for the module."""

    @pytest.fixture(scope="module")
    def browser():
        with chromium(args) as b:
            yield b

    return browser


def local_context(browser, viewport: dict, blocked: list[str] | None = None):
    """A browser context that may fetch only from 127.0.0.1 (and data:/blob:/about:): anything else is
    aborted (and its URL appended to ``blocked``); 60 s default timeout."""
    context = browser.new_context(viewport=viewport, device_scale_factor=1)

    def refuse(route):
        if blocked is not None:
            blocked.append(route.request.url)
        route.abort()

    context.route(lambda u: not LOCAL.match(u), refuse)  # no internet from the test
    context.set_default_timeout(60_000)
    return context


def rgb(png: bytes) -> np.ndarray:
    """A PNG screenshot as float32 RGB."""
    import cv2

    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(
        np.float32)


def covered(img: np.ndarray) -> float:
    """The fraction of an RGB image that differs from the viewers' background."""
    return float((np.abs(img - BACKGROUND).sum(-1) > 30).mean())


# ------------------------------------------------------------------------------------ viewer pages
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@contextmanager
def static_server(root: Path) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` serving the folder ``root`` (from a thread); stopped after."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def iframe_page(srcdoc: str, style: str) -> str:
    """A page holding ``srcdoc`` in an ``<iframe srcdoc>`` as st.iframe shows it (its location is
    about:srcdoc, its base URL the page's)."""
    return ('<!doctype html><html><body style="margin:0">'
            f'<iframe srcdoc="{html.escape(srcdoc, quote=True)}" style="{style}"></iframe></body></html>')


def open_viewer(browser, url: str, ready: str, *, viewport: dict, offline: bool = False, frame: bool = False,
                timeout_ms: int = 90_000):
    """(context, the page or, with ``frame``, its iframe, page errors) once the JS condition ``ready``
    holds there."""
    ctx = browser.new_context(viewport=viewport, offline=offline)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    target = page.frames[1] if frame else page
    target.wait_for_function(ready, timeout=timeout_ms)
    return ctx, target, errors


# ------------------------------------------------------------------------------------ the running app
def app_config(tmp_path: Path, ws: Path, *, scenes: Path | None = None) -> Path:
    """``<tmp_path>/config.toml``: the repo's config.toml with its workspace root at ``ws`` and, with
    ``scenes``, that folder (absolute) as the catalog's scene folder."""
    replacements = {'root = "workspace"': f'root = "{ws}"'}
    if scenes is not None:
        replacements['folders = ["sample_aoi/scenes"]'] = f'folders = ["{scenes}"]'
    text = (REPO / "config.toml").read_text()
    for old, new in replacements.items():
        text = text.replace(old, new, 1)
        assert new in text, f"config.toml layout changed: no {old!r}"
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path) -> str:
    return path.read_text()[-3000:]


@contextmanager
def served_app(tmp_path: Path, ws: Path, *, scenes: Path | None = None, timeout_s: float = 120) -> Iterator[str]:
    """The app as a user starts it (``python -m skyfall_core serve --port P``, SKYFALL_CONFIG at
    :func:`app_config`'s file, its output in ``<tmp_path>/server.log``): yields its URL once
    ``/_stcore/health`` answers ok; the test fails with the log's tail when the app exits or does not
    answer within ``timeout_s``. Its process group is stopped after."""
    cfg = app_config(tmp_path, ws, scenes=scenes)
    port = free_port()
    env = {**os.environ, "SKYFALL_CONFIG": str(cfg), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log_path = tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "skyfall_core", "serve", "--port", str(port)], cwd=REPO,
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"the app exited with code {proc.returncode}:\n{_log_tail(log_path)}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not answer on {url} within {timeout_s} s:\n{_log_tail(log_path)}")
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


def _kill_jobs(ws: Path) -> None:
    """SIGKILL the process groups of the workspace's job hosts and pipelines that still run."""
    if not (ws / "jobs.sqlite").is_file():
        return
    from skyfall_core.jobs.local import process_alive, signal_group
    from skyfall_core.jobs.store import JobStore

    for rec in JobStore(ws).all():
        for pid, start in ((rec.child_pid, rec.child_start), (rec.pid, rec.pid_start)):
            if pid and process_alive(pid, start):
                signal_group(pid, signal.SIGKILL)


@pytest.fixture()
def app(tmp_path):
    """``{"url", "ws", "log"}``: the app (:func:`served_app`) on the temporary workspace ``<tmp_path>/ws``
    with the bundled sample's scenes as catalog; killed with its jobs after, their published splats removed."""
    ws = tmp_path / "ws"
    try:
        with served_app(tmp_path, ws, scenes=SAMPLE / "scenes") as url:
            yield {"url": url, "ws": ws, "log": tmp_path / "server.log"}
    finally:
        _kill_jobs(ws)
        from skyfall_core.ui.static import unpublish_job  # the viewer published splats under static/_jobs/

        for d in sorted((ws / "jobs").glob("*")) if (ws / "jobs").is_dir() else []:
            try:
                unpublish_job(d.name)
            except ValueError:
                pass


@pytest.fixture()
def page(app):
    """A chromium page (headless, software WebGL, :data:`APP_VIEWPORT`) that may only reach the app
    itself; its page errors collect in ``page.errors``."""
    with chromium(APP_ARGS) as browser:
        context = local_context(browser, APP_VIEWPORT)
        pg = context.new_page()
        pg.errors = []
        pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
        try:
            yield pg
        finally:
            context.close()


# ------------------------------------------------------------------------------------ Streamlit pages
def idle(pg, quiet_s: float = 1.5, timeout_s: float = 60) -> None:
    """Wait until Streamlit has not been running a script for ``quiet_s`` (the status widget)."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        busy = pg.locator('[data-testid="stStatusWidget"]').count() > 0
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s:
            return
        pg.wait_for_timeout(200)
    raise AssertionError(f"the app kept running scripts for {timeout_s} s")


def metric(pg, label: str) -> str:
    """The value of the visible st.metric labelled ``label``."""
    box = pg.locator('[data-testid="stMetric"]:visible').filter(has=pg.get_by_text(label, exact=True))
    return box.locator('[data-testid="stMetricValue"]').inner_text()
