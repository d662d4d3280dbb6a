"""The Compare page's linked 3D viewers (issue 17) in Debian's chromium, on two copies of a REAL job
(conftest's ``tiny_job``, its ``final/scene.spz``): the pair page served as the app serves it
(``/app/static/...``) inside an ``<iframe srcdoc>`` like ``st.iframe``.

Checked: both canvases draw their splat; orbiting the left viewer moves the right viewer's camera
to the same pose (read through ``window.skyfallPair.cameras()``) and changes its picture, and the
reverse (orbit and wheel zoom on the right); with a height shift between the two jobs' frames the
right camera keeps exactly that shift, both ways. ``SKYFALL_SCREENSHOTS=1`` saves the pair to
``artifacts/screenshots/compare_sync.png``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from fixtures_browser import NEEDS_CHROMIUM, browser_fixture, covered, iframe_page, open_viewer, rgb, static_server

pytestmark = NEEDS_CHROMIUM

REPO = Path(__file__).resolve().parents[1]
READY = "window.skyfallPair && window.skyfallPair.states().every(s => s.status !== 'loading')"
SCREENSHOTS = os.environ.get("SKYFALL_SCREENSHOTS") == "1"
# two WebGL canvases rendered in software: small unless the screenshot is wanted
VIEWPORT = {"width": 1000, "height": 560} if SCREENSHOTS else {"width": 720, "height": 360}
JOBS = (("20260101-000000-a", "high schedule"), ("20260101-000100-b", "low schedule"))

browser = browser_fixture()


@pytest.fixture()
def two_jobs(tiny_job, tmp_path):
    """Two copies of the real job (as a job and its clone are), named."""
    from fixtures_app import copy_real_job

    return [copy_real_job(tiny_job, tmp_path / "ws", job_id, name=name) for job_id, name in JOBS]


@pytest.fixture()
def serve(tmp_path):
    """serve(folders, offset_m) -> URL of a page holding the pair page of those job folders in an
    ``<iframe srcdoc>``, with the vendored bundle and the splats at /app/static/ like the app."""
    servers = contextlib.ExitStack()
    roots: list[Path] = []

    def _serve(folders: list[Path], offset_m=(0.0, 0.0, 0.0)) -> str:
        import json

        from skyfall_core.config import load_config
        from skyfall_core.ui.components import job_camera
        from skyfall_core.ui.share import PairSide, ShareCamera, job_georef, job_splat, pair_viewer_html

        root = tmp_path / f"www{len(roots)}"
        roots.append(root)
        static = root / "app" / "static"
        shutil.copytree(REPO / "static" / "vendor", static / "vendor")
        sides = []
        for folder in folders:
            meta = json.loads((folder / "job.json").read_text())
            splat, fmt = job_splat(folder)
            assert splat.name == "scene.spz" and fmt == "spz"
            (static / "_jobs" / folder.name).mkdir(parents=True)
            shutil.copy2(splat, static / "_jobs" / folder.name / splat.name)
            sides.append(PairSide(f"/app/static/_jobs/{folder.name}/{splat.name}", fmt, meta["name"],
                                  job_georef(folder)))
        pos, look = job_camera(json.loads((folders[0] / "job.json").read_text())["aoi"],
                               load_config(REPO / "config.toml").aoi)
        page = pair_viewer_html(sides[0], sides[1], camera=ShareCamera(tuple(pos), tuple(look)), offset_m=offset_m,
                                height=VIEWPORT["height"] - 20)
        (root / "pair.html").write_text(iframe_page(page, f'width:100%;height:{VIEWPORT["height"]}px;border:0'))
        return servers.enter_context(static_server(root)) + "/pair.html"

    with servers:
        yield _serve


def _open(browser, url: str):
    """(context, the pair's iframe, page errors) once both viewers have loaded."""
    return open_viewer(browser, url, READY, viewport=VIEWPORT, frame=True, timeout_ms=120_000)


def _canvases(frame) -> list[np.ndarray]:
    time.sleep(1.5)  # a few frames (Spark sorts in its worker)
    return [rgb(frame.locator(f"#viewer-{k} canvas").screenshot()) for k in ("left", "right")]


def _cameras(frame) -> list[dict]:
    return frame.evaluate("window.skyfallPair.cameras()")


def _drag(frame, side: str, dx: float, dy: float, button: str = "left") -> None:
    box = frame.locator(f"#viewer-{side} canvas").bounding_box()  # the iframe sits at (0, 0): page coordinates
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    mouse = frame.page.mouse
    mouse.move(cx, cy)
    mouse.down(button=button)
    mouse.move(cx + dx, cy + dy, steps=8)
    mouse.up(button=button)


def _assert_linked(cams: list[dict], offset=(0.0, 0.0, 0.0)) -> None:
    """The right camera is the left one, moved by the frames' offset."""
    left, right = cams
    np.testing.assert_allclose(np.subtract(right["position"], left["position"]), offset, atol=1e-3)
    np.testing.assert_allclose(np.subtract(right["target"], left["target"]), offset, atol=1e-3)
    q_l, q_r = np.asarray(left["quaternion"]), np.asarray(right["quaternion"])
    assert abs(abs(float(q_l @ q_r)) - 1.0) < 1e-6, (q_l, q_r)  # the same orientation (q and -q alike)
    assert left["fov"] == pytest.approx(right["fov"])


def _moved(a: dict, b: dict) -> float:
    return float(np.linalg.norm(np.subtract(a["position"], b["position"])))


def test_pair_draws_both_splats_and_moves_the_cameras_together(browser, serve, two_jobs):
    from skyfall_core.export.spz import read_spz
    from skyfall_core.ui.compare import pair_frame
    from skyfall_core.ui.share import job_georef

    frame_of = pair_frame(job_georef(two_jobs[0]), job_georef(two_jobs[1]))
    assert frame_of.offset_m == (0.0, 0.0, 0.0)  # a job and its copy: one AOI, one frame
    ctx, frame, errors = _open(browser, serve(two_jobs, frame_of.offset_m))
    try:
        assert frame.url == "about:srcdoc"
        n = len(read_spz(two_jobs[0] / "final" / "scene.spz")["opacity"])
        states = frame.evaluate("window.skyfallPair.states()")
        assert [s["status"] for s in states] == ["ready", "ready"] and not errors, (states, errors)
        assert [s["splats"] for s in states] == [n, n]
        assert frame.locator(".label").all_inner_texts() == [name for _, name in JOBS]
        assert frame.evaluate("typeof window.skyfallViewerState") == "undefined"  # two viewers: no single state

        start = _cameras(frame)
        _assert_linked(start)
        left0, right0 = _canvases(frame)
        assert covered(left0) > 0.05 and covered(right0) > 0.05  # both draw their splat

        # orbit the left viewer: the right camera follows exactly and its picture changes
        _drag(frame, "left", 160, 30)
        after_left = _cameras(frame)
        assert frame.evaluate("window.skyfallPair.leader()") == 0
        assert _moved(after_left[0], start[0]) > 1.0
        _assert_linked(after_left)
        left1, right1 = _canvases(frame)
        assert np.abs(right1 - right0).mean() > 3.0 and covered(right1) > 0.05
        # the same splat from the same camera: the two pictures agree far better than before/after the orbit
        assert np.abs(left1 - right1).mean() < 0.25 * np.abs(right1 - right0).mean()
        if SCREENSHOTS:
            out = REPO / "artifacts" / "screenshots" / "compare_sync.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            frame.page.screenshot(path=str(out))

        # the reverse: orbit, then zoom, the right viewer; the left one follows
        _drag(frame, "right", -140, -50)
        after_right = _cameras(frame)
        assert frame.evaluate("window.skyfallPair.leader()") == 1
        assert _moved(after_right[1], after_left[1]) > 1.0
        _assert_linked(after_right)
        left2, right2 = _canvases(frame)
        assert np.abs(left2 - left1).mean() > 3.0 and covered(left2) > 0.05

        dist = [float(np.linalg.norm(np.subtract(c["position"], c["target"]))) for c in after_right]
        frame.page.mouse.wheel(0, -400)  # the pointer is still over the right canvas: zoom in
        zoomed = _cameras(frame)
        dist_z = [float(np.linalg.norm(np.subtract(c["position"], c["target"]))) for c in zoomed]
        assert dist_z[1] < 0.95 * dist[1] and dist_z[0] == pytest.approx(dist_z[1], rel=1e-6)
        _assert_linked(zoomed)
        assert not errors, errors
    finally:
        ctx.close()


def test_pair_keeps_the_height_shift_between_two_frames(browser, serve, two_jobs):
    """Two jobs of one AOI whose ground heights differ by 7.5 m: the right camera sits 7.5 m off in
    its own frame (the same place), whichever viewer moves."""
    offset = (0.0, 0.0, 7.5)
    ctx, frame, errors = _open(browser, serve(two_jobs, offset))
    try:
        _assert_linked(_cameras(frame), offset)
        _drag(frame, "left", 120, 40)
        _assert_linked(_cameras(frame), offset)
        before = _cameras(frame)
        _drag(frame, "right", -150, 0, button="right")  # pan
        after = _cameras(frame)
        assert _moved(after[1], before[1]) > 1.0
        _assert_linked(after, offset)
        assert not errors, errors
    finally:
        ctx.close()
