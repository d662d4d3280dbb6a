"""final/ outputs: the AOI's same-camera set, its renders, and the fly-down animation."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from skyfall_core.pipeline.outputs import (
    COMPARE_AZIMUTHS,
    COMPARE_ELEVATIONS,
    compare_cameras,
    flydown_cameras,
    write_compare_renders,
    write_flydown,
)

BOUNDS = (-60.0, 40.0, -30.0, 50.0, -5.0, 40.0)  # ENU box, not centred on the origin


def _corners(bounds, z=0.0):
    x0, x1, y0, y1 = bounds[:4]
    return np.array([[x0, y0, z], [x0, y1, z], [x1, y0, z], [x1, y1, z]])


def test_compare_cameras_frame_the_aoi_from_every_side_and_depend_only_on_it():
    cams = compare_cameras(BOUNDS)
    names = [n for n, _, _ in cams]
    assert len(names) == len(set(names)) == 1 + len(COMPARE_ELEVATIONS) * len(COMPARE_AZIMUTHS)
    centre = np.array([[(BOUNDS[0] + BOUNDS[1]) / 2, (BOUNDS[2] + BOUNDS[3]) / 2, 0.0]])
    for name, cam, desc in cams:
        uv, depth = cam.project(centre)
        np.testing.assert_allclose(uv[0], [(cam.width - 1) / 2, (cam.height - 1) / 2], atol=1e-6)
        uv, depth = cam.project(_corners(BOUNDS))
        assert (depth > 0).all()
        assert (uv >= 0).all() and (uv[:, 0] <= cam.width - 1).all() and (uv[:, 1] <= cam.height - 1).all(), name
        up = cam.camera_center - centre[0]
        elev = np.degrees(np.arcsin(up[2] / np.linalg.norm(up)))
        assert abs(elev - desc["elevation_deg"]) < 1e-6
    again = compare_cameras(BOUNDS)
    for (_, a, _), (_, b, _) in zip(cams, again):
        np.testing.assert_array_equal(a.w2c, b.w2c)


def test_compare_renders_are_written_with_their_cameras(tmp_path):
    seen = []

    def render(cam):
        seen.append(cam)
        return np.full((cam.height, cam.width, 3), 10 * len(seen) % 255, np.uint8)

    names = write_compare_renders(tmp_path / "compare", render, BOUNDS)
    meta = json.loads((tmp_path / "compare" / "cameras.json").read_text())
    assert [v["name"] for v in meta["views"]] == names and len(seen) == len(names)
    for v in meta["views"]:
        img = np.asarray(Image.open(tmp_path / "compare" / v["file"]))
        assert img.shape == (v["camera"]["height"], v["camera"]["width"], 3)


def test_flydown_descends_and_puts_before_beside_after(tmp_path):
    cams = flydown_cameras(BOUNDS, n_frames=6, size=40)
    elevs = []
    for cam in cams:
        d = cam.camera_center - np.array([(BOUNDS[0] + BOUNDS[1]) / 2, (BOUNDS[2] + BOUNDS[3]) / 2, 0.0])
        elevs.append(np.degrees(np.arcsin(d[2] / np.linalg.norm(d))))
    assert abs(elevs[0] - 85.0) < 1e-6 and abs(elevs[-1] - 45.0) < 1e-6 and np.all(np.diff(elevs) < 0)

    def shade(base):  # a different grey per camera (identical GIF frames would be merged)
        return lambda cam: np.full((cam.height, cam.width, 3), base + int(cam.camera_center[2]) % 40, np.uint8)

    files = write_flydown(tmp_path, shade(0), shade(160), BOUNDS, n_frames=5)
    gif = Image.open(files[0])
    assert files[0].name == "flydown.gif" and gif.n_frames == 5
    frame = np.asarray(gif.convert("RGB"))
    w = (frame.shape[1] - 4) // 2
    assert frame[frame.shape[0] // 2, w // 2].max() < 50  # before: left
    assert frame[frame.shape[0] // 2, w + 4 + w // 2].min() > 150  # after: right
