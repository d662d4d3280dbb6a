import json

import numpy as np
import pytest

from skyfall_core.errors import SkyfallError
from skyfall_core.eval.renders import evaluate_renders, frame_transform, w2c_in_frame
from skyfall_core.geo.frames import LocalFrame


def test_a_camera_moved_between_frames_sees_the_same_physical_points():
    src = LocalFrame(-95.938, 41.2585, 293.0)
    dst = LocalFrame(-95.9372, 41.2591, 301.5)  # ~90 m away, 8.5 m higher
    rng = np.random.default_rng(0)
    pts_src = rng.uniform(-100, 100, (20, 3))
    # the same physical points through geodetic coordinates (pyproj), the independent path
    lon, lat, h = src.enu_to_geodetic(pts_src)
    pts_dst = dst.geodetic_to_enu(lon, lat, h)
    R, t = frame_transform(src, dst)
    np.testing.assert_allclose(pts_src @ R.T + t, pts_dst, atol=1e-6)
    c, s = np.cos(0.3), np.sin(0.3)
    w2c = np.array([[c, -s, 0, 5.0], [0, 0, -1, 20.0], [s, c, 0, 200.0], [0, 0, 0, 1]])
    w2c_dst = w2c_in_frame(w2c, src, dst)
    cam_a = (w2c @ np.c_[pts_src, np.ones(20)].T).T
    cam_b = (w2c_dst @ np.c_[pts_dst, np.ones(20)].T).T
    np.testing.assert_allclose(cam_a, cam_b, atol=1e-6)
    np.testing.assert_allclose(w2c_in_frame(w2c, src, src), w2c, atol=1e-9)


def test_missing_scene_and_bad_truth_are_clear_errors(tmp_path):
    with pytest.raises(SkyfallError, match="no prepared scene"):
        evaluate_renders(tmp_path, tmp_path, tmp_path / "frame.json")
    (tmp_path / "truth").mkdir()
    from skyfall_core.eval.renders import load_truth_cameras

    with pytest.raises(SkyfallError) as err:
        load_truth_cameras(tmp_path / "truth")
    assert "cameras.json" in str(err.value.path)
    (tmp_path / "truth" / "cameras.json").write_text(json.dumps([{"name": "gone.png"}]))
    with pytest.raises(SkyfallError, match="missing"):
        load_truth_cameras(tmp_path / "truth")
