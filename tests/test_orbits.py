"""Pseudo-camera orbits: geometry of the centres, look-at, up vector and azimuth convention."""

from __future__ import annotations

import numpy as np
import pytest

from skyfall_core.cameras.orbits import lookat_grid, orbit_cameras


@pytest.mark.parametrize("elevation", [45.0, 60.0, 85.0, 90.0])
def test_centres_lookat_and_up(elevation):
    targets = np.array([[0.0, 0.0, 0.0], [40.0, -25.0, 3.0]])
    cams = orbit_cameras(targets, elevation, 250.0, 6, 60.0, 320, 240)
    assert len(cams) == 12
    for k, cam in enumerate(cams):
        target = targets[k // 6]
        d = cam.camera_center - target
        assert np.linalg.norm(d) == pytest.approx(250.0)
        assert np.degrees(np.arcsin(d[2] / 250.0)) == pytest.approx(elevation)
        # orthonormal, right-handed rotation
        np.testing.assert_allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(cam.R) == pytest.approx(1.0)
        # the look-at point projects to the image centre, in front, at the radius
        uv, depth = cam.project(target[None])
        np.testing.assert_allclose(uv[0], [159.5, 119.5], atol=1e-9)
        assert depth[0] == pytest.approx(250.0)
        # world up goes to image up (smaller row), not sideways
        uv_up, _ = cam.project((target + [0.0, 0.0, 5.0])[None])
        if elevation < 90:
            assert uv_up[0, 1] < 119.5 - 1e-3
            assert uv_up[0, 0] == pytest.approx(159.5, abs=1e-6)
        # the camera's x axis is horizontal: no roll
        assert abs(cam.R[0, 2]) < 1e-12


def test_azimuth_convention_clockwise_from_north():
    north, east, south = orbit_cameras(np.zeros(3), 30.0, 100.0, [0.0, 90.0, 180.0], 60.0, 64, 64)
    assert north.camera_center[1] > 80 and abs(north.camera_center[0]) < 1e-9
    assert east.camera_center[0] > 80 and abs(east.camera_center[1]) < 1e-9
    assert south.camera_center[1] < -80
    # the north camera looks south: east is on its left (smaller column)
    uv, _ = north.project(np.array([[10.0, 0.0, 0.0]]))
    assert uv[0, 0] < 31.5


def test_count_gives_even_azimuths_and_fov_reaches_the_edge():
    cams = orbit_cameras(np.zeros(3), 90.0, 100.0, 4, 90.0, 101, 51)
    azimuths = [np.degrees(np.arctan2(c.R[0, 1], -c.R[0, 0])) % 360 for c in cams]  # x axis = (-cos az, sin az, 0)
    np.testing.assert_allclose(azimuths, [0.0, 90.0, 180.0, 270.0], atol=1e-9)
    # horizontal FOV 90 deg: a point 45 deg off axis lands on the image's edge (u = -0.5 or W - 0.5)
    cam = cams[0]
    right = cam.R[0]
    uv, _ = cam.project((100.0 * right)[None])  # 100 m along the camera's x at the target's depth
    assert uv[0, 0] == pytest.approx(100.5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="elevation"):
        orbit_cameras(np.zeros(3), 0.0, 100.0, 4, 60.0, 64, 64)
    with pytest.raises(ValueError, match="radius"):
        orbit_cameras(np.zeros(3), 45.0, -1.0, 4, 60.0, 64, 64)
    with pytest.raises(ValueError, match="lookat"):
        orbit_cameras(np.zeros((2, 2)), 45.0, 100.0, 4, 60.0, 64, 64)
    with pytest.raises(ValueError, match="fov"):
        orbit_cameras(np.zeros(3), 45.0, 100.0, 4, 180.0, 64, 64)


def test_lookat_grid():
    bounds = (-100.0, 100.0, -50.0, 150.0, -10.0, 20.0)
    np.testing.assert_allclose(lookat_grid(bounds, 1), [[0.0, 50.0, 0.0]])
    pts = lookat_grid(bounds, 3, z=2.5)
    assert pts.shape == (9, 3)
    np.testing.assert_allclose(np.unique(pts[:, 0]), [-200 / 3, 0.0, 200 / 3])
    np.testing.assert_allclose(np.unique(pts[:, 1]), [-50 + 100 / 3, 50.0, 150 - 100 / 3])
    assert np.all(pts[:, 2] == 2.5)
