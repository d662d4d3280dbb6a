"""The Map page's 3D terrain in a real browser (Debian's chromium driven by playwright), offline.

The app runs as a user starts it (``python -m skyfall_core serve --port N``) on a workspace holding
a copy of the session's real job (conftest's ``tiny_job``); the browser may only talk to the app on
127.0.0.1. Turning "3D terrain" on must draw deck.gl's TerrainLayer with no deck.gl error, its mesh
built by the terrain worker the app serves itself (``static/vendor/loaders-terrain/``) and nothing
fetched from unpkg.com (where loaders.gl would take the worker from otherwise). The browser is
never downloaded: the test uses ``/usr/bin/chromium`` and skips when it or playwright is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

from fixtures_app import copy_real_job
from fixtures_browser import APP_ARGS, NEEDS_CHROMIUM, SAMPLE, chromium, local_context, rgb, served_app

WORKER = "/app/static/vendor/loaders-terrain/terrain-worker.js"
pytestmark = [
    pytest.mark.slow,
    NEEDS_CHROMIUM,
    pytest.mark.skipif(not (SAMPLE / "scenes").is_dir(), reason="bundled sample_aoi/ missing"),
]


@pytest.fixture()
def app(tiny_job, tmp_path):
    """The app on a free port, its workspace holding a copy of the real job; stopped after."""
    ws = tmp_path / "ws"
    copy_real_job(tiny_job, ws, "tiny", name="tiny")
    with served_app(tmp_path, ws, scenes=SAMPLE / "scenes") as url:
        yield url


def test_3d_terrain_draws_offline_with_the_apps_own_worker(app):
    blocked: list[str] = []
    with chromium(APP_ARGS) as browser:
        context = local_context(browser, {"width": 1400, "height": 1400}, blocked)  # no internet from the test
        pg = context.new_page()
        console: list[str] = []
        pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        pg.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
        pg.goto(app)
        pg.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Map").click()
        deck = pg.locator('[data-testid="stDeckGlJsonChart"]')
        deck.wait_for(state="visible")
        pg.wait_for_timeout(3000)
        flat = rgb(deck.screenshot())
        with pg.expect_response(lambda r: r.url.endswith(WORKER), timeout=120_000) as worker:
            pg.get_by_text("3D terrain", exact=True).click()
        assert worker.value.status == 200
        pg.wait_for_timeout(5000)  # the worker meshes the terrain, deck.gl draws it
        tilted = rgb(deck.screenshot())
    assert not [u for u in blocked if "unpkg" in u], blocked  # the worker came from the app, not a CDN
    deck_errors = [c for c in console if c.startswith(("error", "pageerror")) and ("deck" in c or "Terrain" in c)]
    assert not deck_errors, deck_errors
    assert flat.shape == tilted.shape
    changed = (np.abs(flat - tilted).sum(-1) > 30).mean()
    assert changed > 0.05, changed  # the view tilted and the terrain is drawn
