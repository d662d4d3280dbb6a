"""DSM extraction methods (issue 14): expected vs opacity-aware median depth vs multi-view fusion."""

import numpy as np
import pytest
import torch

from skyfall_core.pipeline.dsm_render import (
    DEFAULT_DSM_METHOD,
    DSM_METHODS,
    Splats,
    _Compositor,
    dsm_heights,
    render_height_map,
    topdown_camera,
)
from skyfall_core.splat.render import rasterize

BOUNDS = (-8.0, 8.0, -8.0, 8.0)


def _layer(z: float, opacity: float, spacing: float = 0.5, half: float = 8.0, box=None) -> Splats:
    """A regular sheet of flat round Gaussians at height z (optionally only inside box x0, x1, y0, y1)."""
    g = np.arange(-half + spacing / 2, half, spacing)
    xx, yy = np.meshgrid(g, g)
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    if box is not None:
        x0, x1, y0, y1 = box
        pts = pts[(pts[:, 0] > x0) & (pts[:, 0] < x1) & (pts[:, 1] > y0) & (pts[:, 1] < y1)]
    n = len(pts)
    means = torch.tensor(np.column_stack([pts, np.full(n, z)]), dtype=torch.float32)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    scales = torch.tensor([[spacing * 0.7, spacing * 0.7, 0.05]]).repeat(n, 1)
    return Splats(means, quats, scales, torch.full((n,), opacity))


def _cat(*parts: Splats) -> Splats:
    return Splats(*(torch.cat([getattr(p, f) for p in parts]) for f in ("means", "quats", "scales", "opacities")))


def _scene() -> Splats:
    """Ground at 0 m (opaque), a 12 m roof on the east half, a floater sheet at 30 m over the west
    (opacity 0.1 per Gaussian, ~0.4 alpha as a sheet since neighbours overlap)."""
    return _cat(_layer(0.0, 0.99), _layer(12.0, 0.99, box=(0.0, 8.0, -8.0, 8.0)),
                _layer(30.0, 0.1, box=(-8.0, -1.0, -8.0, 8.0)))


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_compositor_expected_depth_matches_the_renderer(backend):
    s = _scene()
    viewmat, K, w, h = topdown_camera(BOUNDS, 0.5, 1e5)
    if backend == "torch":  # the slow reference: a smaller image
        w, h = 16, 16
    alpha, depth = _Compositor(s, viewmat, K, w, h, backend).expected_depth()
    _, a_ref, d_ref, _ = rasterize(s.means, s.quats, s.scales, s.opacities, torch.zeros(len(s.means), 3),
                                   viewmat[None], K[None], w, h, backend=backend)
    assert torch.allclose(alpha, a_ref[0, ..., 0], atol=1e-5)
    ok = a_ref[0, ..., 0] > 0.5
    assert torch.allclose(depth[ok], d_ref[0, ..., 0][ok], atol=0.05)  # 100 km camera, float32


def test_median_ignores_a_semi_transparent_floater_that_pulls_the_expected_height():
    s = _scene()
    exp, _ = dsm_heights(s, BOUNDS, 0.5, "expected")
    med, _ = dsm_heights(s, BOUNDS, 0.5, "median")
    west, east = np.s_[4:28, 2:12], np.s_[4:28, 20:30]  # rows, cols of the 32 x 32 grid
    # expected depth: 0.4 of the weight at 30 m + 0.6 at the ground -> ~12 m instead of 0
    assert np.nanmedian(exp[west]) > 8.0
    assert np.nanmedian(np.abs(med[west])) < 0.3
    assert np.nanmedian(np.abs(med[east] - 12.0)) < 0.3
    assert np.isfinite(med[4:28, 2:30]).all()


def test_median_crossing_inside_a_dense_stack():
    # three ~40 % sheets at 9, 6 and 3 m over opaque ground: 1 - T = 0.4, 0.64, ... -> median at 6 m
    s = _cat(_layer(9.0, 0.1), _layer(6.0, 0.1), _layer(3.0, 0.1), _layer(0.0, 0.99))
    med, _ = dsm_heights(s, BOUNDS, 0.5, "median")
    assert np.nanmedian(med[6:26, 6:26]) == pytest.approx(6.0, abs=0.3)


def test_median_nodata_where_transmittance_stays_above_half():
    s = _cat(_layer(0.0, 0.99, box=(-8.0, 0.0, -8.0, 8.0)), _layer(5.0, 0.1, box=(0.0, 8.0, -8.0, 8.0)))
    med, _ = dsm_heights(s, BOUNDS, 0.5, "median")
    assert np.isnan(med[4:28, 20:30]).all() and np.isfinite(med[4:28, 2:12]).all()
    exp, _ = dsm_heights(s, BOUNDS, 0.5, "expected")
    assert np.isnan(exp[4:28, 20:30]).all()  # alpha ~0.4 < 0.5: nodata, the same rule


def _look_at(eye, target, f, w, h):
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    M = np.eye(4)
    M[:3, :3], M[:3, 3] = R, -R @ eye
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    return torch.tensor(M, dtype=torch.float32), torch.tensor(K, dtype=torch.float32), w, h


def test_fusion_of_oblique_views_recovers_the_roof():
    s = _cat(_layer(0.0, 0.99, half=14.0), _layer(12.0, 0.99, box=(0.0, 8.0, -8.0, 8.0)))
    cams = [_look_at((dx, dy, 400.0), (0.0, 0.0, 0.0), 400.0 / 0.4, 96, 96)
            for dx, dy in ((0, 0), (60, 0), (-60, 0), (0, 60), (0, -60))]
    fused, corner = dsm_heights(s, BOUNDS, 0.5, "fusion", cameras=cams)
    assert corner == (BOUNDS[0], BOUNDS[3]) and fused.shape == (32, 32)
    assert np.nanmedian(np.abs(fused[4:28, 20:30] - 12.0)) < 0.3
    assert np.nanmedian(np.abs(fused[4:28, 2:12])) < 0.3
    with pytest.raises(ValueError, match="cameras"):
        dsm_heights(s, BOUNDS, 0.5, "fusion")


def test_method_names_and_the_old_entry_point():
    assert set(DSM_METHODS) == {"expected", "median", "fusion"} and DEFAULT_DSM_METHOD in DSM_METHODS
    with pytest.raises(ValueError, match="dsm_method"):
        dsm_heights(_scene(), BOUNDS, 0.5, "mean")
    s = _scene()
    old, _ = render_height_map(lambda vm, K, w, h: _Compositor(s, vm, K, w, h).expected_depth(), BOUNDS, 0.5)
    new, _ = dsm_heights(s, BOUNDS, 0.5, "expected")
    np.testing.assert_allclose(old, new)


def test_median_filter_removes_spikes_keeps_edges_and_nodata():
    from skyfall_core.pipeline.dsm_render import DEFAULT_FILTER_PX, median_filtered

    h = np.zeros((40, 40), np.float32)
    h[:, 20:] = 12.0  # a roof edge
    h[10, 5] = 30.0  # a floater spike
    h[30, 30] = -20.0  # a hole
    h[0:3, 0:3] = np.nan  # nodata
    f = median_filtered(h, DEFAULT_FILTER_PX)
    assert f[10, 5] == 0.0 and f[30, 30] == 12.0
    np.testing.assert_array_equal(f[5:35, 17:20], 0.0)  # the edge does not move
    np.testing.assert_array_equal(f[5:35, 20:23], 12.0)
    assert np.isnan(f[0:3, 0:3]).all() and np.isfinite(f[3:, 3:]).all()
    assert median_filtered(h, 0) is h
    s = _scene()
    raw, _ = dsm_heights(s, BOUNDS, 0.5, "median")
    filt, _ = dsm_heights(s, BOUNDS, 0.5, "median", filter_px=3)
    np.testing.assert_allclose(filt, median_filtered(raw, 3))
