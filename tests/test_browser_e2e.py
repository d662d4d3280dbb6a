"""The whole app end to end in a real browser (Debian's chromium driven by playwright).

The app runs as a user starts it (``python -m skyfall_core serve --port N``) on a temporary
workspace whose catalog is the bundled sample. In the browser the test:

0. opens a page URL (/area) as the fresh server's first request: it must come in the app's frame;
1. Area: picks the offline basemap and DRAWS the AOI with the Leaflet.draw rectangle tool in the
   folium map (mouse events at the pixels where the map projects the sample AOI's corners);
2. Scenes: auto-selects a diverse set of scenes;
3. Reconstruct: types tiny advanced overrides, starts a CPU job and watches the progress reach done;
4. Rounds: opens round 1 and round 3 and drags the before/after slider;
5. Viewer: waits for the WebGL splat viewer and checks that its canvas shows a scene (not a blank
   canvas), and that dragging on it orbits the camera.

Every step leaves a screenshot in ``<tmp>/screens`` and in ``artifacts/e2e/`` (git-ignored) for a
human to look at; the server log goes there too. Nothing is fetched from the internet: the browser
may only talk to the app on 127.0.0.1. The browser is never downloaded: the test uses
``/usr/bin/chromium`` (``apt-get install chromium``) and skips when it or playwright is missing.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

import fixtures_browser
from fixtures_browser import JOB_TIMEOUT_S, NEEDS_CHROMIUM, SAMPLE, TINY, PlaywrightError, idle, metric, sync_api

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "artifacts" / "e2e"
MAP_IFRAME = 'iframe[title="streamlit_folium.st_folium"]'

pytestmark = [
    pytest.mark.slow,
    NEEDS_CHROMIUM,
    pytest.mark.skipif(not (SAMPLE / "aoi.geojson").is_file(), reason="bundled sample_aoi/ missing"),
]


# ------------------------------------------------------------------------------------ fixtures
# the shared ones: the app served on a temporary workspace with the sample as catalog (killed with its jobs
# after), and a chromium page that may reach only the app
app, page = fixtures_browser.app, fixtures_browser.page


@pytest.fixture()
def screens(tmp_path):
    """Folder for the step screenshots; copied to artifacts/e2e/ at the end (also on failure)."""
    folder = tmp_path / "screens"
    folder.mkdir()
    yield folder
    if ARTIFACTS.is_dir():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    for f in folder.iterdir():
        shutil.copy2(f, ARTIFACTS / f.name)
    if (tmp_path / "server.log").is_file():
        shutil.copy2(tmp_path / "server.log", ARTIFACTS / "server.log")


# ------------------------------------------------------------------------------------ helpers
class Shots:
    def __init__(self, folder: Path):
        self.folder, self.n = folder, 0

    def __call__(self, target, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}_{name}.png"
        target.screenshot(path=str(path))
        return path


def _map_frame(pg, condition: str = "true", timeout_s: float = 60):
    """(iframe element, frame) of the folium map once its Leaflet map is loaded and ``condition`` holds.

    streamlit-folium replaces the map when the page reruns, so a frame may detach: poll.
    """
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            handle = pg.locator(MAP_IFRAME).element_handle(timeout=5_000)
            frame = handle.content_frame()
            if frame is not None and frame.evaluate(
                    f"() => !!(window.L && window.map instanceof L.Map && window.map._loaded) && ({condition})"):
                return handle, frame
        except PlaywrightError as exc:  # detached while the page reran
            last = exc
        pg.wait_for_timeout(250)
    raise AssertionError(f"the folium map never satisfied {condition!r} ({last})")


def _nav(pg, name: str) -> None:
    pg.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name).click()


def _visible_iframe(pg, timeout_s: float = 60):
    """The content frame of the (one) visible st.iframe of the page."""
    loc = pg.locator('iframe[data-testid="stIFrame"]:visible')
    loc.first.wait_for(state="visible", timeout=timeout_s * 1000)
    assert loc.count() == 1, f"{loc.count()} visible st.iframe elements"
    return loc.first, loc.first.element_handle().content_frame()


def _scene_pixels(png: bytes, mask_boxes=()) -> dict:
    """Statistics of a canvas screenshot: how much of it differs from its most common (background) colour."""
    import cv2

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.int32)
    keep = np.ones(img.shape[:2], bool)
    for x0, y0, x1, y1 in mask_boxes:  # overlays drawn over the canvas (the viewer's status line)
        keep[max(0, int(y0)):int(math.ceil(y1)), max(0, int(x0)):int(math.ceil(x1))] = False
    px = img[keep]
    codes = (px[:, 0] // 8) * 1024 + (px[:, 1] // 8) * 32 + px[:, 2] // 8
    vals, counts = np.unique(codes, return_counts=True)
    mode = vals[np.argmax(counts)]
    bg = np.array([mode // 1024, mode // 32 % 32, mode % 32]) * 8 + 4
    far = np.abs(px - bg).max(axis=1) > 24
    return {"non_background": float(far.mean()), "std": float(px.std(axis=0).mean()),
            "distinct_colours": int(len(vals)), "pixels": int(len(px))}


# ------------------------------------------------------------------------------------ the test
def test_draw_aoi_select_scenes_reconstruct_and_view_in_chromium(app, page, screens):
    from skyfall_core.jobs.store import JobStore
    from skyfall_core.ui.draft import load_draft

    pg, ws, shot = page, app["ws"], Shots(screens)
    timings: dict[str, float] = {}
    t_start = t_step = time.monotonic()

    def lap(name: str) -> None:
        nonlocal t_step
        now = time.monotonic()
        timings[name] = round(now - t_step, 1)
        t_step = now

    # ---------------------------------------------------------------- a deep link first, then home
    # The fresh server's first request is a page URL: the page must still run inside app.py's frame
    # (its sidebar and navigation), not alone (Streamlit's pages/-folder mode; see ui.frame.page_guard).
    pg.goto(app["url"] + "/area")
    pg.get_by_text("No AOI yet").wait_for()
    pg.get_by_text("DRAFT JOB").wait_for()
    nav = pg.locator('[data-testid="stSidebarNav"]')
    assert "Reconstruct" in nav.inner_text() and nav.get_by_role("link", name="app", exact=True).count() == 0
    _nav(pg, "Home")
    pg.get_by_text("Scenes in the catalog").wait_for()
    lap("home")

    # ---------------------------------------------------------------- area: draw the AOI
    _nav(pg, "Area")
    pg.get_by_text("No AOI yet").wait_for()
    pg.get_by_text("None (offline)", exact=True).click()  # basemap tiles would come from the internet
    idle(pg)
    handle, frame = _map_frame(pg, "!Object.values(map._layers).some(l => l instanceof L.TileLayer)")
    idle(pg)
    handle, frame = _map_frame(pg, "!!document.querySelector('.leaflet-draw-draw-rectangle')")
    ring = json.loads((SAMPLE / "aoi.geojson").read_text())["features"][0]["geometry"]["coordinates"][0]
    west, east = min(c[0] for c in ring), max(c[0] for c in ring)
    south, north = min(c[1] for c in ring), max(c[1] for c in ring)
    proj = frame.evaluate("""([w, s, e, n]) => {
        const r = map.getContainer().getBoundingClientRect();
        const nw = map.latLngToContainerPoint([n, w]), se = map.latLngToContainerPoint([s, e]);
        return {left: r.left, top: r.top, width: r.width, height: r.height, zoom: map.getZoom(),
                x0: nw.x, y0: nw.y, x1: se.x, y1: se.y};
    }""", [west, south, east, north])
    box = handle.bounding_box()
    x0, y0 = box["x"] + proj["left"] + proj["x0"], box["y"] + proj["top"] + proj["y0"]
    x1, y1 = box["x"] + proj["left"] + proj["x1"], box["y"] + proj["top"] + proj["y1"]
    assert 20 < x1 - x0 < proj["width"] and 20 < y1 - y0 < proj["height"], f"the AOI is not on the map: {proj}"
    frame.locator(".leaflet-draw-draw-rectangle").click()
    pg.mouse.move(x0, y0)
    pg.mouse.down()
    pg.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=8)
    pg.mouse.move(x1, y1, steps=8)
    shot(pg, "area_drawing_rectangle")
    pg.mouse.up()
    pg.get_by_text("Source drawn").wait_for()
    pg.get_by_text(re.compile(r"10 of 10 scenes cover")).wait_for()
    idle(pg)
    _map_frame(pg)
    shot(pg, "area_aoi_drawn")
    draft = load_draft(ws)
    assert draft.aoi_source == "drawn" and draft.aoi["geometry"]["type"] == "Polygon"
    drawn = np.asarray(draft.aoi["geometry"]["coordinates"][0], float)
    deg_per_px = 360.0 / (256 * 2 ** proj["zoom"])  # Web Mercator at this zoom (longitude; latitude is finer)
    for got, want in ((drawn[:, 0].min(), west), (drawn[:, 0].max(), east), (drawn[:, 1].min(), south),
                      (drawn[:, 1].max(), north)):
        assert abs(got - want) < 2 * deg_per_px, (got, want, deg_per_px)  # within 2 px of the corners
    lap("area")

    # ---------------------------------------------------------------- scenes: auto-select
    _nav(pg, "Scenes")
    auto = pg.get_by_role("button", name=re.compile("Auto-select a diverse set"))
    sync_api.expect(auto).to_be_enabled()
    idle(pg)
    auto.click()
    pg.get_by_text("A good spread of views: ready to reconstruct.").wait_for()
    chosen = load_draft(ws).scenes
    assert 3 <= len(chosen) <= 8 and all(Path(p).is_file() for p in chosen)
    assert metric(pg, "Views") == str(len(chosen))
    idle(pg)
    shot(pg, "scenes_auto_selected")
    lap("scenes")

    # ---------------------------------------------------------------- reconstruct: a tiny CPU job
    _nav(pg, "Reconstruct")
    pg.get_by_text(f"{len(chosen)} scenes chosen").wait_for()
    advanced = pg.get_by_label("Advanced overrides (JSON of dotted keys)")
    advanced.fill(json.dumps(TINY))
    advanced.press("Control+Enter")  # Streamlit's text area commits on Ctrl+Enter (or blur)
    code = pg.locator('[data-testid="stCode"]').filter(has_text='"stage1.init_points": 2000')
    code.wait_for()
    for key, value in TINY.items():
        assert f'"{key}": {value}' in code.inner_text()
    idle(pg)
    shot(pg, "reconstruct_form_tiny_overrides")
    start = pg.get_by_role("button", name=re.compile("Start reconstruction"))
    sync_api.expect(start).to_be_enabled()
    start.click()
    pg.get_by_role("heading", name="Progress").wait_for()
    pg.locator('[data-testid="stMetric"]').filter(has=pg.get_by_text("Status", exact=True)).wait_for()
    t_job = time.monotonic()
    shot(pg, "reconstruct_progress_started")
    seen = set()
    running_shot = False
    while True:
        try:
            status = metric(pg, "Status")
        except PlaywrightError:
            status = ""  # the panel is between reruns
        seen.add(status.split()[-1] if status else "")
        if "running" in status and not running_shot:  # one picture mid-run, once some work is done
            bars = " ".join(pg.locator('[data-testid="stProgress"]').all_inner_texts())
            overall = re.findall(r"Overall (\d+)%", bars)
            if overall and 0 < int(overall[0]) < 100:
                shot(pg, "reconstruct_progress_running")
                running_shot = True
        if "done" in status:
            break
        if any(s in status for s in ("failed", "cancelled", "interrupted", "broken")):
            logs = sorted(ws.glob("jobs/*/log.txt"))
            pytest.fail(f"the job ended {status!r}; errors: {pg.locator('[data-testid=stAlert]').all_inner_texts()}\n"
                        + (logs[0].read_text()[-3000:] if logs else "(no log.txt)"))
        if time.monotonic() - t_job > JOB_TIMEOUT_S:
            pytest.fail(f"the job did not finish in {JOB_TIMEOUT_S} s (statuses seen: {seen})")
        pg.wait_for_timeout(500)
    timings["job_wall_s"] = round(time.monotonic() - t_job, 1)
    pg.get_by_text("Overall 100%").wait_for()
    texts = pg.locator('[data-testid="stProgress"]').all_inner_texts()
    for label in ("Scene & cameras", "Stage 1 · fit to satellite views — step 30 / 30", "Round 1 · 85° elevation",
                  "Round 2 · 65° elevation", "Round 3 · 45° elevation", "Export"):
        assert any(label in t for t in texts), (label, texts)
    idle(pg)
    shot(pg, "reconstruct_progress_done")
    recs = JobStore(ws).all()
    assert len(recs) == 1 and recs[0].status == "done" and recs[0].exit_code == 0
    job_id, job_dir = recs[0].id, ws / "jobs" / recs[0].id
    assert [d.name for d in sorted((job_dir / "rounds").iterdir())] == ["0_e85", "1_e65", "2_e45"]
    assert (job_dir / "final" / "scene.ply").is_file()
    job = json.loads((job_dir / "job.json").read_text())
    assert job["overrides"] == TINY and sorted(job["scenes"]) == sorted(chosen)
    lap("reconstruct")

    # ---------------------------------------------------------------- rounds: before/after
    _nav(pg, "Rounds")
    pg.get_by_role("tab", name="Round 1 · 85°").wait_for()
    assert pg.get_by_role("tab").all_inner_texts() == ["Round 1 · 85°", "Round 2 · 65°", "Round 3 · 45°"]
    pg.get_by_text("classical, not diffusion").first.wait_for()
    for tab, name in (("Round 1 · 85°", "rounds_round1_before_after"), ("Round 3 · 45°", "rounds_round3_before_after")):
        pg.get_by_role("tab", name=tab).click()
        _, fr = _visible_iframe(pg)
        fr.wait_for_function("() => [...document.images].length == 2 && "
                             "[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        srcs = fr.evaluate("() => [...document.images].map(i => i.getAttribute('alt') + '|' + i.src.length)")
        assert sorted(s.split("|")[0] for s in srcs) == ["after: refined", "before: render"]
        b = fr.locator("#ba").bounding_box()  # playwright gives boxes in the page's viewport, iframes included
        pg.mouse.click(b["x"] + 0.25 * b["width"], b["y"] + 0.5 * b["height"])
        pos = fr.evaluate("() => parseFloat(document.getElementById('ba').style.getPropertyValue('--pos'))")
        assert 15 < pos < 35, f"the before/after slider did not follow the click: --pos {pos}%"
        assert metric(pg, "Views") == "4" and metric(pg, "Elevation") == tab.split("· ")[1]
        shot(pg, name)
    lap("rounds")

    # ---------------------------------------------------------------- viewer: WebGL splat
    _nav(pg, "Viewer")
    pg.get_by_role("button", name=re.compile("3DGS PLY")).wait_for()
    _, fr = _visible_iframe(pg)
    fr.wait_for_function("() => window.skyfallViewerState && window.skyfallViewerState.status !== 'loading'",
                         timeout=120_000)
    state = fr.evaluate("() => window.skyfallViewerState")
    assert state["status"] == "ready" and state["splats"] > 0, state
    lap("viewer_loaded")
    canvas = fr.locator("canvas").first
    canvas.wait_for(state="visible")
    cb = canvas.bounding_box()
    ob = fr.locator(".skyfall-viewer-status").bounding_box()
    mask = [(ob["x"] - cb["x"] - 2, ob["y"] - cb["y"] - 2, ob["x"] - cb["x"] + ob["width"] + 2,
             ob["y"] - cb["y"] + ob["height"] + 2)]
    deadline = time.monotonic() + 60
    while True:  # the first frames come after the sort worker's first pass
        png = canvas.screenshot()
        stats = _scene_pixels(png, mask)
        if stats["non_background"] > 0.05 and stats["std"] > 4 and stats["distinct_colours"] > 50:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the viewer's canvas stayed blank: {stats} (state {state})")
        pg.wait_for_timeout(1000)
    (screens / "viewer_canvas.png").write_bytes(png)
    shot(pg, "viewer_splat")
    lap("viewer_drawn")
    # drag to orbit: the picture must change
    cx, cy = cb["x"] + cb["width"] / 2, cb["y"] + cb["height"] / 2
    pg.mouse.move(cx, cy)
    pg.mouse.down()
    pg.mouse.move(cx + 220, cy + 60, steps=5)
    pg.mouse.up()
    pg.wait_for_timeout(1500)
    png2 = canvas.screenshot()
    import cv2

    a = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    b2 = cv2.imdecode(np.frombuffer(png2, np.uint8), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    changed = float(np.abs(a - b2).mean())
    assert changed > 2.0, f"dragging on the viewer did not change the view (mean |diff| {changed:.2f})"
    assert _scene_pixels(png2, mask)["non_background"] > 0.02
    shot(pg, "viewer_after_orbit")
    lap("viewer_orbit")

    assert not pg.errors, f"JavaScript errors in the page: {pg.errors}"
    timings["total"] = round(time.monotonic() - t_start, 1)
    (screens / "timings.json").write_text(json.dumps({**timings, "job_id": job_id, "viewer_canvas": stats,
                                                      "orbit_mean_abs_diff": changed}, indent=1))
    print(f"\nbrowser e2e timings (s): {timings}")
