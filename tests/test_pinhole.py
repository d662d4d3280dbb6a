"""Pinhole cameras: projection maths, serialisation, decomposition, and RPC -> pinhole fits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skyfall_core.cameras.pinhole import PinholeCamera, camera_from_P, fit_pinhole, rodrigues, rq3, volume_grid
from skyfall_core.errors import CameraFitError
from skyfall_core.geo.frames import LocalFrame

JAX_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jax068"


def make_camera(center=(20e3, -150e3, 600e3), target=(0.0, 0.0, 0.0), f=(2.0e6, 1.9e6), skew=350.0,
                c=(410.0, 395.0), size=(800, 780)) -> PinholeCamera:
    """A satellite-like camera at ``center`` (ENU m) looking at ``target``; x axis roughly east."""
    center, target = np.asarray(center, float), np.asarray(target, float)
    z = (target - center) / np.linalg.norm(target - center)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z]) @ rodrigues(np.array([0.0, 0.0, 0.1]))  # a small twist about up
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, -R @ center
    K = np.array([[f[0], skew, c[0]], [0.0, f[1], c[1]], [0.0, 0.0, 1.0]])
    return PinholeCamera(K, w2c, *size)


class PinholeAsRPC:
    """Duck-typed RPC (only ``projection``) that is an exact pinhole in a local frame."""

    def __init__(self, camera: PinholeCamera, frame: LocalFrame):
        self.camera, self.frame = camera, frame

    def projection(self, lon, lat, alt):
        enu = self.frame.geodetic_to_enu(lon, lat, alt).reshape(-1, 3)
        uv, _ = self.camera.project(enu)
        shape = np.shape(lon)
        return uv[:, 1].reshape(shape), uv[:, 0].reshape(shape)


def test_project_matches_hand_computation():
    cam = make_camera()
    X = np.array([[10.0, -20.0, 5.0], [0.0, 0.0, 0.0]])
    uv, depth = cam.project(X)
    Xc = X @ cam.R.T + cam.t
    expected_u = cam.K[0, 0] * Xc[:, 0] / Xc[:, 2] + cam.K[0, 1] * Xc[:, 1] / Xc[:, 2] + cam.K[0, 2]
    expected_v = cam.K[1, 1] * Xc[:, 1] / Xc[:, 2] + cam.K[1, 2]
    np.testing.assert_allclose(uv[:, 0], expected_u, rtol=0, atol=1e-9)
    np.testing.assert_allclose(uv[:, 1], expected_v, rtol=0, atol=1e-9)
    np.testing.assert_allclose(depth, Xc[:, 2])
    assert np.all(depth > 5e5)
    # the camera centre and the optical axis
    np.testing.assert_allclose(cam.camera_center, [20e3, -150e3, 600e3], atol=1e-6)
    on_axis = cam.camera_center + 1000.0 * cam.R[2]
    np.testing.assert_allclose(cam.project(on_axis[None])[0][0], cam.K[:2, 2], atol=1e-9)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        cam.project(np.zeros((4, 2)))


def test_render_K_scaled_and_shifted_conventions():
    cam = make_camera()
    X = volume_grid((-50, 50, -50, 50, -10, 10), 3, 2)
    uv = cam.project(X)[0]
    # renderer convention: pixel centres at +0.5
    Kr = cam.to_render_K()
    pix = (X @ cam.R.T + cam.t) @ Kr.T
    np.testing.assert_allclose(pix[:, :2] / pix[:, 2:], uv + 0.5, atol=1e-9)
    np.testing.assert_allclose(cam.K[:2, 2], [410.0, 395.0])  # unchanged
    # half resolution: u -> (u + 0.5) / 2 - 0.5, like RPCModel.scaled
    half = cam.scaled(0.5)
    np.testing.assert_allclose(half.project(X)[0], (uv + 0.5) * 0.5 - 0.5, atol=1e-9)
    assert (half.width, half.height) == (400, 390)
    crop = cam.shifted(row0=100, col0=30, width=200, height=210)
    np.testing.assert_allclose(crop.project(X)[0], uv - [30.0, 100.0], atol=1e-9)


def test_dict_round_trip_is_json_and_exact():
    cam = make_camera()
    d = json.loads(json.dumps(cam.to_dict()))
    back = PinholeCamera.from_dict(d)
    np.testing.assert_array_equal(back.K, cam.K)
    np.testing.assert_array_equal(back.w2c, cam.w2c)
    assert (back.width, back.height) == (cam.width, cam.height)
    assert "OpenCV" in d["convention"]


def test_rq_and_decomposition_recover_K_R_t():
    cam = make_camera()
    K, R = rq3(cam.K @ cam.R)
    np.testing.assert_allclose(K / K[2, 2], cam.K, rtol=1e-12)
    np.testing.assert_allclose(R, cam.R, atol=1e-12)
    # any non-zero multiple of P, negative included, decomposes to the same camera
    back = camera_from_P(-3.7e-6 * cam.P, cam.width, cam.height)
    np.testing.assert_allclose(back.K, cam.K, rtol=1e-10)
    np.testing.assert_allclose(back.w2c, cam.w2c, rtol=1e-10, atol=1e-6)
    assert np.linalg.det(back.R) == pytest.approx(1.0)


def test_fit_pinhole_recovers_an_exact_pinhole():
    frame = LocalFrame(-81.66, 30.35, 10.0)
    cam = make_camera()
    fit = fit_pinhole(PinholeAsRPC(cam, frame), frame, (-120, 120, -130, 110, -30, 30), 800, 780)
    assert fit.n_points == 11 * 11 * 7
    assert fit.err_max_px < 1e-4
    # K and the pose themselves, not only the reprojection (measured: 4e-9 relative on fx)
    np.testing.assert_allclose(fit.camera.K, cam.K, rtol=1e-6, atol=1e-2)
    np.testing.assert_allclose(fit.camera.R, cam.R, atol=1e-9)
    np.testing.assert_allclose(fit.camera.camera_center, cam.camera_center, atol=0.1)


def test_fit_pinhole_bad_input():
    frame = LocalFrame(-81.66, 30.35, 10.0)
    rpc = PinholeAsRPC(make_camera(), frame)
    with pytest.raises(ValueError, match="bounds_enu"):
        fit_pinhole(rpc, frame, (100, -100, -100, 100, 0, 10), 800, 780)
    with pytest.raises(ValueError, match="grid_xy"):
        fit_pinhole(rpc, frame, (-100, 100, -100, 100, 0, 10), 800, 780, grid_xy=2)


# --------------------------------------------------------------------------- real JAX views
def jax_frame_and_bounds(zmin: float = -27.0, zmax: float = 30.0) -> tuple[LocalFrame, tuple]:
    """ENU frame at the AOI centre (h0 = middle of the height range) and the AOI volume."""
    geo = json.loads((JAX_DIR / "aoi.geojson").read_text())
    poly = np.array(geo["features"][0]["geometry"]["coordinates"][0][:-1])
    h0 = 0.5 * (zmin + zmax)
    frame = LocalFrame(float(poly[:, 0].mean()), float(poly[:, 1].mean()), h0)
    enu = frame.geodetic_to_enu(poly[:, 0], poly[:, 1], np.full(len(poly), h0))
    return frame, (enu[:, 0].min(), enu[:, 0].max(), enu[:, 1].min(), enu[:, 1].max(), zmin - h0, zmax - h0)


def test_fit_pinhole_jax_all_views(jax_dir):
    import rasterio

    from skyfall_core.geo.rpc import read_rpc

    frame, bounds = jax_frame_and_bounds()
    names = [line.strip().replace(".json", ".tif") for line in (jax_dir / "train.txt").read_text().split()]
    assert len(names) == 17
    report = []
    for name in names:
        path = jax_dir / "images" / name
        with rasterio.open(path) as ds:
            width, height = ds.width, ds.height
        fit = fit_pinhole(read_rpc(path), frame, bounds, width, height, max_error_px=0.5)
        report.append((name, fit.err_mean_px, fit.err_max_px))
        assert fit.err_mean_px <= 0.15 and fit.err_max_px <= 0.5, report[-1]
        assert fit.camera.camera_center[2] > 1e5  # far above the scene
        assert fit.camera.R[2] @ [0, 0, -1] > np.cos(np.radians(40))  # looking down
    assert max(r[1] for r in report) < 0.05  # measured: 0.005..0.012 px mean


def test_fit_pinhole_tolerance_raises_a_typed_error(jax_dir):
    from skyfall_core.geo.rpc import read_rpc

    frame, (x0, x1, y0, y1, z0, z1) = jax_frame_and_bounds()
    rpc = read_rpc(jax_dir / "images" / "JAX_068_001_RGB.tif")
    with pytest.raises(CameraFitError, match="smaller AOI"):  # 2 km x 2 km: ~2 px off
        fit_pinhole(rpc, frame, (8 * x0, 8 * x1, 8 * y0, 8 * y1, -50, 150), 800, 800, max_error_px=0.5)


def test_render_matrices_fold_a_large_skew_into_the_view_so_the_splat_lands_where_the_camera_projects():
    import torch

    from skyfall_core.splat.render import rasterize

    # JAX-like: skew ~2 % of fx and a principal point far outside the crop (cropped pushbroom view)
    cam = make_camera(skew=-0.02 * 2.0e6, c=(3.6e4, 5.4e5), size=(160, 150))
    K0 = cam.K.copy()
    # aim the crop at the origin: shift the principal point so the origin projects mid-crop
    uv0, _ = cam.project(np.zeros((1, 3)))
    K0[0, 2] -= uv0[0, 0] - 80.0
    K0[1, 2] -= uv0[0, 1] - 75.0
    cam = PinholeCamera(K0, cam.w2c, 160, 150)
    pts = np.array([[0.0, 0.0, 0.0], [12.0, -8.0, 10.0], [-10.0, 6.0, 30.0]])
    uv, depth = cam.project(pts)
    assert np.all((uv > 5) & (uv < 145))
    viewmat, K = cam.render_matrices()
    assert K[0, 1] == 0.0
    # the unsheared camera would put the points thousands of pixels away
    plain = cam.K.copy()
    plain[0, 1] = 0.0
    assert np.abs(PinholeCamera(plain, cam.w2c, 160, 150).project(pts)[0] - uv).max() > 100
    n = len(pts)
    _, alpha, d, info = rasterize(torch.tensor(pts, dtype=torch.float32), torch.tensor([[1.0, 0, 0, 0]] * n),
                                  torch.full((n, 3), 0.5), torch.full((n,), 0.9), torch.rand(n, 3),
                                  torch.tensor(viewmat, dtype=torch.float32)[None],
                                  torch.tensor(K, dtype=torch.float32)[None], 160, 150, backend="cpu")
    means2d = info["means2d"][0].detach().double().numpy()
    np.testing.assert_allclose(means2d, uv + 0.5, atol=0.02)  # renderer pixel centres at +0.5
    np.testing.assert_allclose(info["depths"][0].detach().double().numpy(), depth, rtol=1e-6)
    assert float(alpha.max()) > 0.5
