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


# ----------------------------------------------------------------------------- tie-point floor
def _ties(rng, x0, x1, y0, y1, z_of, n):
    xy = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])
    return np.column_stack([xy, z_of(xy)])


def test_tie_point_floor_follows_the_ground_and_roofs_and_ignores_a_few_low_mismatches():
    from skyfall_core.pipeline.dsm_render import tie_point_floor

    rng = np.random.default_rng(0)
    bounds = (-100.0, 100.0, -100.0, 100.0)
    ground = _ties(rng, -100, 100, -100, 100, lambda xy: 0.1 * xy[:, 0], 3000)  # a 10 % slope west -> east
    ground = ground[~((np.abs(ground[:, 0] - 40) < 30) & (np.abs(ground[:, 1]) < 30))]  # the roof hides it
    roof = _ties(rng, 10, 70, -30, 30, lambda xy: np.full(len(xy), 30.0), 1500)  # a 60 m roof at 30 m
    low = np.array([[-60.0, -60.0, -80.0]])  # a mismatch far below ground (~1 in the 60 points around)
    pts = np.concatenate([ground, roof, low])
    floor = tie_point_floor(pts, bounds, 0.5, (400, 400), radius_m=16, quantile=0.02, margin_m=1.0)

    def at(x, y):
        return floor[int((100 - y) / 0.5), int((x + 100) / 0.5)]

    # on open ground the floor is the local ground less the margin (and the low tail of the slope
    # within the radius): it follows the slope instead of one height for the whole AOI
    for x in (-80.0, -20.0, 80.0):
        assert 0.1 * x - 1.0 - 1.7 <= at(x, 80.0) <= 0.1 * x - 1.0 + 0.1
    assert at(80.0, 80.0) - at(-80.0, 80.0) > 14.0
    assert 28.0 <= at(40.0, 0.0) <= 29.01  # the roof's middle, >16 m from the ground's tie points
    assert at(40.0, 25.0) < 5.0  # within 16 m of the ground beside the roof: the ground's floor
    assert -6.0 - 1.6 - 1.0 - 0.5 <= at(-60.0, -60.0) <= -6.0  # the 2 % quantile does not follow one mismatch
    empty = tie_point_floor(pts[:3], bounds, 0.5, (400, 400))  # too few points anywhere: no floor
    assert np.isneginf(empty).all()


def test_dsm_heights_raises_a_pit_to_the_tie_point_floor_and_keeps_nodata():
    from skyfall_core.pipeline.dsm_render import raised_to_floor, tie_point_floor

    # the splats: ground at 0 m everywhere over 80 m; the tie points say a 12 m roof covers x > 2 m
    bounds = (-40.0, 40.0, -40.0, 40.0)
    s = _layer(0.0, 0.99, spacing=1.0, half=40.0)
    rng = np.random.default_rng(1)
    roof = _ties(rng, 2, 40, -40, 40, lambda xy: np.full(len(xy), 12.0), 800)
    ground = _ties(rng, -40, -2, -40, 40, lambda xy: np.zeros(len(xy)), 800)
    ties = np.concatenate([roof, ground])
    plain, corner = dsm_heights(s, bounds, 0.5, "median")
    floored, corner2 = dsm_heights(s, bounds, 0.5, "median", floor_points=ties)
    assert corner == corner2
    floor = tie_point_floor(ties, bounds, 0.5, plain.shape)
    np.testing.assert_allclose(floored, raised_to_floor(plain, floor))
    assert np.all(floored[np.isfinite(floored)] >= floor[np.isfinite(floored)] - 1e-5)
    west, east = floored[8:-8, 8:60], floored[8:-8, 120:-8]  # x < -10 m and x > 20 m, inside the edges
    assert np.nanmax(np.abs(west)) < 0.2  # nothing changes where the ground is right
    assert 10.0 < np.nanmin(east) and np.nanmax(east) <= 12.0  # the pit under the roof: raised to roof - margin
    h = np.array([[np.nan, -5.0], [3.0, 20.0]], dtype=np.float32)
    out = raised_to_floor(h, np.full((2, 2), 0.0, np.float32))
    assert np.isnan(out[0, 0]) and out[0, 1] == 0.0 and out[1, 0] == 3.0 and out[1, 1] == 20.0
