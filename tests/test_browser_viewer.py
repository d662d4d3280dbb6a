"""The Spark viewer in Debian's chromium on a REAL job's ``final/scene.spz`` (the tiny pipeline run
of conftest's ``tiny_job``): the Viewer page's HTML served as the app serves it (``/app/static/...``), and
a Share HTML opened from disk with the network off.

Checked: the splat loads (every splat of the .spz), the canvas is not blank, it changes when the
view is orbited (mouse drag) and with the presets, the .spz lands in local ENU (z up) like the
PLY, and the cursor readout (raycast + ENU -> WGS84 in JS) agrees with pyproj.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures_browser import (
    NEEDS_CHROMIUM,
    VIEWER_READY,
    browser_fixture,
    covered,
    iframe_page,
    open_viewer,
    rgb,
    served_app,
    static_server,
)

pytestmark = NEEDS_CHROMIUM

REPO = Path(__file__).resolve().parents[1]

browser = browser_fixture()


@pytest.fixture()
def served_viewer(tiny_job, tmp_path):
    """The Viewer page's iframe HTML for the job, served at /app/static/ like Streamlit does."""
    from skyfall_core.ui.components import job_camera
    from skyfall_core.ui.share import ShareCamera, job_georef, job_splat, round_cameras, viewer_page_html

    root = tmp_path / "www"
    static = root / "app" / "static"
    (static / "_jobs" / "tiny").mkdir(parents=True)
    shutil.copytree(REPO / "static" / "vendor", static / "vendor")
    splat, fmt = job_splat(tiny_job)
    assert splat.name == "scene.spz" and fmt == "spz"
    shutil.copy2(splat, static / "_jobs" / "tiny" / splat.name)
    import json

    pos, look = job_camera(json.loads((tiny_job / "job.json").read_text())["aoi"], _aoi_settings())
    viewer = viewer_page_html(f"/app/static/_jobs/tiny/{splat.name}", fmt, camera=ShareCamera(tuple(pos), tuple(look)),
                              georef=job_georef(tiny_job), cameras=round_cameras(tiny_job), height=480)
    # as st.iframe shows it: an <iframe srcdoc> (its location is about:srcdoc, its base URL the app's)
    (root / "viewer.html").write_text(iframe_page(viewer, "width:640px;height:480px;border:0"))
    with static_server(root) as url:
        yield f"{url}/viewer.html"


def _aoi_settings():
    from skyfall_core.config import load_config

    return load_config(REPO / "config.toml").aoi


def _open(browser, url: str, *, offline: bool = False, frame: bool = False):
    """(context, page or the viewer's iframe, page errors) once the viewer has loaded."""
    return open_viewer(browser, url, VIEWER_READY, viewport={"width": 640, "height": 480}, offline=offline, frame=frame)


def _canvas(page) -> np.ndarray:
    time.sleep(1.5)  # a few frames (Spark sorts in its worker)
    return rgb(page.locator("canvas").first.screenshot())


def test_viewer_page_draws_the_spz_orbits_and_reads_the_cursor(browser, served_viewer, tiny_job):
    from skyfall_core.export.spz import read_spz
    from skyfall_core.geo.frames import LocalFrame
    from skyfall_core.ui.share import job_georef

    ctx, page, errors = _open(browser, served_viewer, frame=True)
    try:
        assert page.url == "about:srcdoc"  # the viewer resolves the splat's /app/static/ URL from there
        state = page.evaluate("window.skyfallViewerState")
        assert state["status"] == "ready" and not errors, (state, errors)
        n = len(read_spz(tiny_job / "final" / "scene.spz")["opacity"])
        assert state["splats"] == n
        # the .spz (RUB) is shown in local ENU: z up, the scene spread over x and y
        lo, hi = np.asarray(state["bounds"]["min"]), np.asarray(state["bounds"]["max"])
        assert (hi - lo)[0] > 150 and (hi - lo)[1] > 150 and (hi - lo)[2] < 0.6 * (hi - lo)[1]
        home = _canvas(page)
        assert covered(home) > 0.05  # not blank

        box = page.locator("canvas").first.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        mouse = page.page.mouse  # the iframe sits at (0, 0) of the page: same coordinates
        mouse.move(cx, cy)
        mouse.down()
        mouse.move(cx + 160, cy + 20, steps=8)
        mouse.up()
        orbited = _canvas(page)
        assert np.abs(orbited - home).mean() > 3.0  # the view changed on orbit
        assert covered(orbited) > 0.05

        labels = page.locator(".skyfall-viewer-presets button").all_inner_texts()
        assert labels == ["Home", "Top", "N", "E", "S", "W"]
        assert page.locator(".skyfall-viewer-presets select option").count() > 1  # the rounds' cameras
        page.locator(".skyfall-viewer-presets button[data-view=\"Top\"]").click()
        top = _canvas(page)
        assert page.evaluate("window.skyfallViewerState.view") == "Top" and covered(top) > 0.05
        page.locator(".skyfall-viewer-presets button[data-view=\"E\"]").click()
        east = _canvas(page)
        assert np.abs(east - top).mean() > 3.0

        # the cursor: the splat under the centre of the top-down view is near the origin, on the ground
        page.locator(".skyfall-viewer-presets button[data-view=\"Top\"]").click()
        hit, deadline = None, time.monotonic() + 20  # the view settles (slower on a loaded machine)
        while hit is None and time.monotonic() < deadline:
            time.sleep(0.25)
            hit = page.evaluate(f"window.skyfallViewer.pickAt({cx}, {cy})")
        assert hit is not None, "no splat under the centre of the top-down view after 20 s"
        origin = job_georef(tiny_job)
        frame = LocalFrame(origin["lon"], origin["lat"], origin["h"])
        lon, lat, h = frame.enu_to_geodetic(np.asarray(hit["enu"]))
        assert abs(hit["lon"] - lon) < 1e-8 and abs(hit["lat"] - lat) < 1e-8 and abs(hit["h"] - h) < 1e-3
        assert np.hypot(*hit["enu"][:2]) < 40 and -20 < hit["enu"][2] < 120
        assert "lon -95.93" in page.locator(".skyfall-viewer-cursor").inner_text()

        # ENU -> WGS84 in JS against pyproj, up to 20 km from the origin: exact, not a tangent-plane guess
        for enu in ([0, 0, 0], [1500, -800, 60], [-20000, 15000, 300]):
            js = page.evaluate(f"window.SkyfallViewer.enuToGeodetic({origin}, {enu[0]}, {enu[1]}, {enu[2]})"
                               .replace("'", '"'))
            lon, lat, h = frame.enu_to_geodetic(np.asarray(enu, float))
            dlat_m = abs(js["lat"] - lat) * 111_000
            dlon_m = abs(js["lon"] - lon) * 111_000 * np.cos(np.radians(lat))
            assert dlat_m < 1e-3 and dlon_m < 1e-3 and abs(js["h"] - h) < 1e-3, (enu, js, lon, lat, h)
    finally:
        ctx.close()


def _settled_frames(page, timeout_s: float = 60.0) -> int:
    """The viewer's frame count once it has stopped drawing: it says it is idle and no new frame came
    for a second (a software-rendered frame can take that long)."""
    deadline = time.monotonic() + timeout_s
    before = page.evaluate("window.skyfallViewer.frames")
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = page.evaluate("window.skyfallViewer.frames")
        if now == before and page.evaluate("window.skyfallViewer.idle()"):
            return now
        before = now
    pytest.fail(f"the viewer kept drawing frames for {timeout_s} s with nothing changing ({before} frames)")


def test_an_idle_viewer_draws_no_frames_and_wakes_on_orbit(browser, served_viewer):
    """Frames on demand: none while nothing changes (an open Viewer tab costs an analyst's machine
    nothing), new ones as soon as the camera moves, and the last frame stays on the canvas."""
    ctx, page, errors = _open(browser, served_viewer, frame=True)
    try:
        idle = _settled_frames(page)
        assert idle > 0 and not errors
        time.sleep(1.0)
        assert page.evaluate("window.skyfallViewer.frames") == idle  # idle: no frame drawn
        home = rgb(page.locator("canvas").first.screenshot())
        assert covered(home) > 0.05  # the last frame is still shown

        box = page.locator("canvas").first.bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        mouse = page.page.mouse
        mouse.move(cx, cy)
        mouse.down()
        mouse.move(cx + 120, cy + 10, steps=4)
        mouse.up()
        moved = _settled_frames(page)
        assert moved > idle  # the orbit drew frames ...
        orbited = rgb(page.locator("canvas").first.screenshot())
        assert np.abs(orbited - home).mean() > 3.0 and covered(orbited) > 0.05  # ... of the new view
        page.locator(".skyfall-viewer-presets button[data-view=\"Top\"]").click()
        assert _settled_frames(page) > moved  # a preset too
    finally:
        ctx.close()


def test_share_html_of_the_spz_opens_from_disk_offline(browser, tiny_job, tmp_path):
    from skyfall_core.ui.share import ShareCamera, export_share, job_georef, job_splat, round_cameras

    splat, _ = job_splat(tiny_job)
    out = export_share(splat, tmp_path / "share.html", title="tiny job", camera=ShareCamera((0.0, -250.0, 180.0)),
                       georef=job_georef(tiny_job), cameras=round_cameras(tiny_job))
    ctx, page, errors = _open(browser, out.as_uri(), offline=True)
    try:
        state = page.evaluate("window.skyfallViewerState")
        assert state["status"] == "ready" and not errors, (state, errors)
        assert state["splats"] > 1000
        img = _canvas(page)
        assert covered(img) > 0.05
        page.locator(".skyfall-viewer-presets button[data-view=\"Top\"]").click()
        assert np.abs(_canvas(page) - img).mean() > 3.0
    finally:
        ctx.close()


def test_spz_and_ply_of_the_same_job_look_the_same_from_above(browser, tiny_job, tmp_path):
    """The .spz goes through RUB and back: from the top its image matches the ENU PLY's."""
    from skyfall_core.ui.share import ShareCamera, export_share

    shots = {}
    for name in ("scene.spz", "scene.ply"):
        out = export_share(tiny_job / "final" / name, tmp_path / f"{name}.html", title=name,
                           camera=ShareCamera((0.0, -0.3, 380.0)))
        ctx, page, errors = _open(browser, out.as_uri(), offline=True)
        try:
            assert page.evaluate("window.skyfallViewerState.status") == "ready" and not errors
            shots[name] = _canvas(page)
        finally:
            ctx.close()
    a, b = shots["scene.spz"], shots["scene.ply"]
    assert covered(a) > 0.05
    flipped = np.abs(a - b[::-1]).mean()  # a mirrored (north-south) scene would match this better
    assert np.abs(a - b).mean() < 0.5 * flipped, (np.abs(a - b).mean(), flipped)


@pytest.fixture()
def running_app(tiny_job, tmp_path):
    """The app (``python -m skyfall_core serve``) on a workspace holding a copy of the real job."""
    from skyfall_core.ui.static import unpublish_job

    ws = tmp_path / "ws"
    shutil.copytree(tiny_job, ws / "jobs" / "tiny", ignore=shutil.ignore_patterns("checkpoints"))
    try:
        with served_app(tmp_path, ws) as url:
            yield url
    finally:
        unpublish_job("tiny")


def test_map_and_viewer_pages_in_the_running_app(browser, running_app, tmp_path):
    """The Map page's deck draws the DSM overlays at the AOI (the centre of the opening view) and
    the Viewer page's Spark iframe draws the splat, with nothing fetched beyond the app."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1100})
    ctx.route("**/*", lambda route: route.continue_() if route.request.url.startswith(running_app)
              or route.request.url.startswith(("data:", "blob:", "about:")) else route.abort())
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(f"{running_app}/map")
        deck = page.locator('[data-testid="stDeckGlJsonChart"]')
        deck.wait_for(timeout=90_000)
        page.get_by_text("Prediction − truth").wait_for(timeout=60_000)
        time.sleep(4)  # deck.gl decodes the bitmaps
        img = rgb(deck.screenshot(path=str(tmp_path / "map.png")))
        h, w = img.shape[:2]
        centre = img[h // 2 - h // 8:h // 2 + h // 8, w // 2 - w // 8:w // 2 + w // 8]
        border = np.concatenate([img[:10].reshape(-1, 3), img[-10:].reshape(-1, 3)])
        bg = np.median(border, 0)
        # the DSM (hillshade under the error map) covers the middle of the opening view: the AOI
        assert (np.abs(centre - bg).sum(-1) > 40).mean() > 0.5
        assert "Splat centres" in page.locator('[data-testid="stMultiSelect"]').inner_text()

        page.goto(f"{running_app}/viewer")
        page.locator("iframe").first.wait_for(timeout=90_000)
        frame = next(f for f in page.frames if f.url == "about:srcdoc")
        frame.wait_for_function(VIEWER_READY, timeout=90_000)
        state = frame.evaluate("window.skyfallViewerState")
        assert state["status"] == "ready" and state["splats"] > 1000, state
        time.sleep(2)
        shot = rgb(frame.locator("canvas").first.screenshot(path=str(tmp_path / "viewer.png")))
        assert covered(shot) > 0.05
        assert not errors, errors
    finally:
        ctx.close()
