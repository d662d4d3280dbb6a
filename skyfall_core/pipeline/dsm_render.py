"""DSM from splats: a top-down render on an ENU grid, resampled onto a north-up UTM grid.

The renderer only knows pinhole cameras, so the DSM camera looks straight down from
``altitude_m`` (100 km by default) with a focal length that makes one pixel ``resolution`` metres
on the ground: its rays are parallel to within ``half-width / altitude`` (~1e-3 rad for a 250 m
AOI), so the lateral error on a 60 m roof is below 0.1 m. The height of a pixel is
``camera z - depth``; pixels whose alpha is below ``min_alpha`` are nodata.

Three ways to get that depth (``dsm_method``, :data:`DSM_METHODS`):

* ``"expected"``: the alpha-weighted mean depth of the top-down render (the original method); a
  floater or a semi-transparent layer above a roof pulls the height up by its share of the weight.
* ``"median"``: the opacity-aware median depth, the depth where the transmittance along the
  top-down ray crosses 0.5 (2DGS/RaDe-GS style). No new kernel: the Gaussians are binned by depth
  (``bin_m``) and each group of bins is composited alone with the existing rasterizer (its
  indicator and depth offset as features), scaled by the transmittance of the groups in front;
  the first bin where 1 - T reaches 0.5 gives its weight-averaged depth.
* ``"fusion"``: the training views' depths (each satellite view's median depth, or its expected
  depth with ``fusion_depth="expected"``, rendered from its own camera) back-projected onto the ENU
  grid, per-cell median; cells fewer than two views saw take the top-down median.

Any of them can be median-filtered (``filter_px``; :func:`render_dsm` uses ``DEFAULT_FILTER_PX``):
the splats' height map is noisy at the pixel scale, and a small median filter removes spikes
without moving edges the way a mean would.

Then the **tie-point floor** (``floor_points``, :func:`tie_point_floor`): the scene's tie points are
surface points triangulated from several views, independent of the splats. No surface can lie well
below the low tail of the tie points around it, so every cell is raised to the 2nd percentile of
the tie-point heights within ``FLOOR_RADIUS_M`` minus ``FLOOR_MARGIN_M`` (cells with fewer than
``FLOOR_MIN_POINTS`` tie points around them keep their height). It removes the pits a splat
model digs where a roof is textureless or in shadow (on JAX_068 a 17 m roof between towers was
put at ground level, 1.3 % of the pixels and a third of the squared error; BENCHMARKS.md, issue 14).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from skyfall_core.geo.dsm import DSMGrid
from skyfall_core.geo.frames import LocalFrame


def topdown_camera(bounds_xy: tuple[float, float, float, float], resolution: float, altitude_m: float
                   ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(viewmat [4, 4], render K [3, 3], width, height) of a nadir camera over an ENU box.

    Pixel (i, j) (pixel centre at +0.5, renderer convention) sees ENU
    x = xmin + (j + 0.5) * res, y = ymax - (i + 0.5) * res.
    """
    xmin, xmax, ymin, ymax = bounds_xy
    width = int(np.ceil((xmax - xmin) / resolution))
    height = int(np.ceil((ymax - ymin) / resolution))
    cx_w, cy_w = xmin + width * resolution / 2, ymax - height * resolution / 2
    R = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # x east, y south, z down
    C = np.array([cx_w, cy_w, altitude_m])
    viewmat = np.eye(4)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ C
    f = altitude_m / resolution
    K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return (torch.tensor(viewmat, dtype=torch.float32), torch.tensor(K, dtype=torch.float32), width, height)


@torch.no_grad()
def render_height_map(render_fn, bounds_xy, resolution: float, altitude_m: float = 1e5,
                      min_alpha: float = 0.5) -> tuple[np.ndarray, tuple[float, float]]:
    """ENU height map [H, W] (NaN = nodata) and its top-left corner (xmin, ymax).

    ``render_fn(viewmat [4, 4], K [3, 3], width, height) -> (alpha [H, W], depth [H, W])``.
    """
    viewmat, K, w, h = topdown_camera(bounds_xy, resolution, altitude_m)
    alpha, depth = render_fn(viewmat, K, w, h)
    z = altitude_m - depth.double().cpu().numpy()
    z[alpha.cpu().numpy() < min_alpha] = np.nan
    return z.astype(np.float32), (bounds_xy[0], bounds_xy[3])


DSM_METHODS = ("expected", "median", "fusion")
DEFAULT_DSM_METHOD = "fusion"  # best MAE, RMSE and completeness on JAX_068 (BENCHMARKS.md, issue 14)
DEFAULT_FILTER_PX = 5  # median filter (pixels; 0 = off), 2.5 m: 9 px scores better on JAX_068 but is tuned on its truth


FLOOR_RADIUS_M = 16.0  # tie points within this distance of a cell set its floor
FLOOR_QUANTILE = 0.02  # robust low tail of their heights (a few low mismatches do not lower it)
FLOOR_MARGIN_M = 1.0  # the floor sits this far below that tail
FLOOR_MIN_POINTS = 5  # fewer tie points around a cell: no floor there
FLOOR_STEP_M = 2.0  # the floor is evaluated on a grid this coarse, then read at every cell


def tie_point_floor(points_enu: np.ndarray, bounds_xy, resolution: float, shape: tuple[int, int], *,
                    radius_m: float = FLOOR_RADIUS_M, quantile: float = FLOOR_QUANTILE,
                    margin_m: float = FLOOR_MARGIN_M, min_points: int = FLOOR_MIN_POINTS,
                    step_m: float = FLOOR_STEP_M) -> np.ndarray:
    """The lowest plausible ENU height [H, W] of each cell of the height map (``bounds_xy``'s
    top-left corner, ``resolution`` m cells): the ``quantile`` of the heights of the tie points
    within ``radius_m`` horizontally, minus ``margin_m``; -inf where fewer than ``min_points``.

    Evaluated on a ``step_m`` grid (one neighbourhood query per coarse node) and read at each cell
    from the nearest node, so its cost does not grow with the DSM's resolution."""
    from scipy.spatial import cKDTree

    H, W = shape
    pts = np.asarray(points_enu, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    floor = np.full((H, W), -np.inf, dtype=np.float32)
    if len(pts) < min_points:
        return floor
    xmin, ymax = bounds_xy[0], bounds_xy[3]
    step = max(1, int(round(step_m / resolution)))
    rows, cols = np.arange(step // 2, H, step), np.arange(step // 2, W, step)
    cx, cy = np.meshgrid(xmin + (cols + 0.5) * resolution, ymax - (rows + 0.5) * resolution)
    tree = cKDTree(pts[:, :2])
    coarse = np.full(cx.size, -np.inf)
    for k, idx in enumerate(tree.query_ball_point(np.column_stack([cx.ravel(), cy.ravel()]), radius_m)):
        if len(idx) >= min_points:
            coarse[k] = np.quantile(pts[idx, 2], quantile) - margin_m
    coarse = coarse.reshape(len(rows), len(cols))
    ri = np.clip(np.round((np.arange(H) - step // 2) / step).astype(int), 0, len(rows) - 1)
    ci = np.clip(np.round((np.arange(W) - step // 2) / step).astype(int), 0, len(cols) - 1)
    floor[:] = coarse[ri][:, ci]
    return floor


def raised_to_floor(heights: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """``heights`` raised to ``floor`` where they lie below it (NaN stays NaN)."""
    return np.where(np.isfinite(heights), np.maximum(heights, floor), heights).astype(np.float32)


def median_filtered(heights: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` median filter of a height map; NaN stays NaN and does not spread (NaN
    neighbours are replaced by the map's median before filtering)."""
    if size <= 1:
        return heights
    from scipy.ndimage import median_filter

    ok = np.isfinite(heights)
    if not ok.any():
        return heights
    filled = np.where(ok, heights, np.median(heights[ok]))
    out = median_filter(filled, size=size, mode="nearest").astype(np.float32)
    out[~ok] = np.nan
    return out


@dataclass
class Splats:
    """Activated Gaussian parameters (what the rasterizer takes)."""

    means: Tensor  # [N, 3]
    quats: Tensor  # [N, 4]
    scales: Tensor  # [N, 3] linear
    opacities: Tensor  # [N] 0..1

    @classmethod
    def from_model(cls, model) -> "Splats":
        return cls(model.means.detach(), model.params["quats"].detach(), model.scales.detach(),
                   model.opacities.detach())


class _Compositor:
    """One camera's projection, then any number of feature composites [H, W, D] over it, of all
    the Gaussians or of a subset (``ids``).

    The cpu back-end composites 4 channels per pass with the compiled kernel; the torch back-end
    all channels at once; gsplat goes through :func:`rasterize` (3 per pass).
    """

    def __init__(self, splats: Splats, viewmat: Tensor, K: Tensor, width: int, height: int, backend: str = "auto"):
        from skyfall_core.splat.projection import fully_fused_projection
        from skyfall_core.splat.raster_cpu import load_extension, project_gaussians_cpu
        from skyfall_core.splat.render import resolve_backend

        self.splats, self.width, self.height = splats, width, height
        dev = splats.means.device
        self.viewmat, self.K = viewmat.to(dev, torch.float32), K.to(dev, torch.float32)
        self.backend = resolve_backend(backend, dev)
        self.chunk = {"cpu": 4, "gsplat": 3}.get(self.backend, 64)
        if self.backend == "gsplat":
            from skyfall_core.splat.render import rasterize

            _, _, _, info = rasterize(splats.means, splats.quats, splats.scales, splats.opacities,
                                      splats.means.new_zeros(len(splats.means), 3), self.viewmat[None],
                                      self.K[None], width, height, backend="gsplat")
            self.depths = info["depths"][0]
            radii = info["radii"][0]  # [N, 2] (gsplat >= 1.5) or [N]
            self.visible = (radii > 0).all(-1) if radii.dim() == 2 else radii > 0
            return
        project = project_gaussians_cpu if self.backend == "cpu" else fully_fused_projection
        self.proj = project(splats.means, splats.quats, splats.scales, splats.opacities, self.viewmat[None],
                            self.K[None], width, height)
        self.depths = self.proj.depths[0]  # [N] camera z
        self.visible = (self.proj.radii[0] > 0).all(-1)  # [N]
        self.ext = load_extension() if self.backend == "cpu" else None

    def composite(self, features: Tensor, ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(composited features [H, W, D], alpha [H, W]) of per-Gaussian ``features`` [M, D]
        (D <= ``chunk``) of the Gaussians ``ids`` (default: all, M = N), the others left out."""
        D = features.shape[1]
        s = self.splats
        if self.backend == "gsplat":
            from skyfall_core.splat.render import rasterize

            sel = (lambda t: t) if ids is None else (lambda t: t[ids])
            f = torch.nn.functional.pad(features, (0, 3 - D))
            rgb, alpha, _, _ = rasterize(sel(s.means), sel(s.quats), sel(s.scales), sel(s.opacities), f,
                                         self.viewmat[None], self.K[None], self.width, self.height,
                                         backend="gsplat")
            return rgb[0, ..., :D], alpha[0, ..., 0]
        p = self.proj
        pick = (lambda t: t.contiguous()) if ids is None else (lambda t: t[:, ids].contiguous())
        means2d, conics, radii, depths = pick(p.means2d), pick(p.conics), pick(p.radii), pick(p.depths)
        opac = pick(s.opacities[None])
        if self.backend == "cpu":
            offsets, flatten_ids, boxes = self.ext.bin_gaussians(means2d, conics, opac, radii, depths,
                                                                 self.width, self.height)
            render, alphas, _, _ = self.ext.rasterize_forward(
                means2d, conics, features[None].contiguous(), opac, None, boxes, offsets, flatten_ids,
                self.width, self.height)
            return render[0], alphas[0]
        from skyfall_core.splat.raster_torch import rasterize_to_pixels_torch

        render, alphas, _ = rasterize_to_pixels_torch(means2d, conics, features[None].contiguous(), opac,
                                                      radii, depths, self.width, self.height)
        return render[0], alphas[0, ..., 0]

    def expected_depth(self) -> tuple[Tensor, Tensor]:
        """(alpha [H, W], expected depth [H, W]) as the ordinary render gives them."""
        d0 = float(self.depths[self.visible].mean()) if bool(self.visible.any()) else 0.0
        out, alpha = self.composite((self.depths - d0)[:, None].to(torch.float32))  # offset: float32 precision
        return alpha, out[..., 0] / alpha.clamp_min(1e-10) + d0

    def median_depth(self, bin_m: float = 0.5, max_bins: int = 1024) -> tuple[Tensor, Tensor]:
        """(alpha [H, W], median depth [H, W], NaN where the transmittance never reaches 0.5).

        The Gaussians (sorted front to back by centre depth, as the rasterizer does) are cut into
        depth bins of ``bin_m``. Along a ray the transmittance is a product, so the blend weights
        of a group of bins are T_front (the transmittance of everything in front, known from the
        groups already done) times their weights composited ALONE: each pass composites only its
        own Gaussians (every Gaussian is drawn once in all). The first bin where 1 - T reaches
        0.5 holds the median; its weight-averaged depth (a second feature) is returned.
        """
        H, W = self.height, self.width
        # per-pixel bookkeeping in numpy: small element-wise torch ops on a shared CPU are far slower
        out = np.full((H, W), np.nan, np.float64)
        cum = np.zeros((H, W), np.float64)
        if not bool(self.visible.any()):
            return torch.from_numpy(cum), torch.from_numpy(out)
        d = self.depths
        vis_ids = torch.nonzero(self.visible).squeeze(1)
        dv = d[vis_ids].double()
        # far outliers (floaters km away) go to the end bins rather than stretching every bin
        q = torch.tensor([0.001, 0.999], dtype=dv.dtype, device=dv.device)
        lo, hi = (float(v) for v in torch.quantile(dv[:: max(1, dv.numel() // 1_000_000)], q))
        n_bins = min(max_bins, max(1, math.ceil((hi - lo) / bin_m) + 1))
        width = max((hi - lo) / max(n_bins - 1, 1), 1e-6)
        idx = ((dv - lo) / width).floor().clamp(0, n_bins - 1).long()  # bin of each visible Gaussian
        order = torch.argsort(idx, stable=True)
        vis_ids, idx, dv = vis_ids[order], idx[order], dv[order]
        used, counts = torch.unique_consecutive(idx, return_counts=True)
        starts = (torch.cumsum(counts, 0) - counts).tolist()
        used, counts = used.tolist(), counts.tolist()
        per_pass = max(self.chunk // 2, 1)
        found = np.zeros((H, W), bool)
        for g in range(0, len(used), per_pass):
            group = list(range(g, min(g + per_pass, len(used))))
            a, b = starts[group[0]], starts[group[-1]] + counts[group[-1]]
            ids, gi, gd = vis_ids[a:b], idx[a:b], dv[a:b]
            cols = []
            for k in group:
                ind = (gi == used[k]).to(torch.float32)
                centre = lo + (used[k] + 0.5) * width
                cols += [ind, ind * (gd - centre).to(torch.float32)]
            comp, _ = self.composite(torch.stack(cols, dim=1), ids)
            comp = comp.cpu().numpy().astype(np.float64)
            t_front = 1.0 - cum
            for j, k in enumerate(group):
                w, wz = comp[..., 2 * j] * t_front, comp[..., 2 * j + 1] * t_front
                cross = ~found & (cum + w >= 0.5) & (w > 0)
                out[cross] = lo + (used[k] + 0.5) * width + wz[cross] / w[cross]
                found |= cross
                cum += w
            if found.all():
                break
        return torch.from_numpy(cum), torch.from_numpy(out)


def topdown_median_heights(splats: Splats, bounds_xy, resolution: float, altitude_m: float = 1e5, *,
                           bin_m: float = 0.5, backend: str = "auto") -> tuple[np.ndarray, tuple[float, float]]:
    """ENU height map [H, W] from the top-down median depth (NaN = transmittance never reaches 0.5)."""
    viewmat, K, w, h = topdown_camera(bounds_xy, resolution, altitude_m)
    _, depth = _Compositor(splats, viewmat, K, w, h, backend).median_depth(bin_m)
    z = altitude_m - depth.double().cpu().numpy()
    return z.astype(np.float32), (bounds_xy[0], bounds_xy[3])


def fused_heights(splats: Splats, cameras: list[tuple[Tensor, Tensor, int, int]], bounds_xy, resolution: float, *,
                  min_alpha: float = 0.5, min_views: int = 2, backend: str = "auto", depth: str = "median",
                  bin_m: float = 0.5) -> tuple[np.ndarray, tuple[float, float]]:
    """ENU height map [H, W]: per-cell median of the views' back-projected depths (``depth``:
    "median" = each view's opacity-aware median depth, "expected" = its alpha-weighted mean).

    ``cameras``: (viewmat [4, 4], K [3, 3], width, height) of each view (renderer convention: pixel
    centres at +0.5). A pixel counts where its alpha reaches ``min_alpha``; a cell needs samples
    from ``min_views`` views (NaN otherwise).
    """
    xmin, xmax, ymin, ymax = bounds_xy
    W = int(np.ceil((xmax - xmin) / resolution))
    H = int(np.ceil((ymax - ymin) / resolution))
    cells, heights, view_ids = [], [], []
    for v, (viewmat, K, w, h) in enumerate(cameras):
        comp = _Compositor(splats, viewmat, K, w, h, backend)
        alpha, dmap = comp.median_depth(bin_m) if depth == "median" else comp.expected_depth()
        dmap = dmap.double().cpu().numpy()
        ok = (alpha >= min_alpha).cpu().numpy() & np.isfinite(dmap)
        z = dmap[ok]
        vv, uu = np.nonzero(ok)
        Kd, M = K.double().cpu().numpy(), viewmat.double().cpu().numpy()
        cam = np.stack([(uu + 0.5 - Kd[0, 2]) / Kd[0, 0] * z, (vv + 0.5 - Kd[1, 2]) / Kd[1, 1] * z, z], axis=1)
        world = (cam - M[:3, 3]) @ M[:3, :3]  # R^T (x - t)
        j = np.floor((world[:, 0] - xmin) / resolution).astype(np.int64)
        i = np.floor((ymax - world[:, 1]) / resolution).astype(np.int64)
        inside = (i >= 0) & (i < H) & (j >= 0) & (j < W)
        cells.append(i[inside] * W + j[inside])
        heights.append(world[inside, 2])
        view_ids.append(np.full(int(inside.sum()), v, np.int32))
    out = np.full(H * W, np.nan)
    if cells:
        c, z, vid = np.concatenate(cells), np.concatenate(heights), np.concatenate(view_ids)
        order = np.lexsort((z, c))
        c, z, vid = c[order], z[order], vid[order]
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        counts = np.diff(np.r_[starts, c.size])
        lo_mid = starts + (counts - 1) // 2
        hi_mid = starts + counts // 2
        med = 0.5 * (z[lo_mid] + z[hi_mid])
        # distinct views per cell
        pair = np.unique(c.astype(np.int64) * (len(cameras) + 1) + vid)
        nviews = np.bincount(pair // (len(cameras) + 1), minlength=H * W)
        keep = nviews[c[starts]] >= min_views
        out[c[starts][keep]] = med[keep]
    return out.reshape(H, W).astype(np.float32), (xmin, ymax)


@torch.no_grad()
def dsm_heights(splats: Splats, bounds_xy, resolution: float, method: str = DEFAULT_DSM_METHOD, *,
                cameras: list[tuple[Tensor, Tensor, int, int]] | None = None, backend: str = "auto",
                altitude_m: float = 1e5, min_alpha: float = 0.5, bin_m: float = 0.5,
                fusion_depth: str = "median", filter_px: int = 0, floor_points: np.ndarray | None = None
                ) -> tuple[np.ndarray, tuple[float, float]]:
    """ENU height map [H, W] (NaN = nodata) and its top-left corner with the chosen ``method``,
    median-filtered over ``filter_px`` pixels when > 1 (render_dsm passes DEFAULT_FILTER_PX), then
    raised to the tie-point floor of ``floor_points`` (ENU [M, 3]) when given."""
    if method not in DSM_METHODS:
        raise ValueError(f"dsm_method must be one of {DSM_METHODS}, got {method!r}")
    if method == "expected":
        def render_fn(viewmat, K, w, h):
            return _Compositor(splats, viewmat, K, w, h, backend).expected_depth()
        heights, corner = render_height_map(render_fn, bounds_xy, resolution, altitude_m, min_alpha)
    else:
        heights, corner = topdown_median_heights(splats, bounds_xy, resolution, altitude_m, bin_m=bin_m,
                                                 backend=backend)
    if method == "fusion":
        if not cameras:
            raise ValueError("dsm_method 'fusion' needs the training views' cameras")
        fused, _ = fused_heights(splats, cameras, bounds_xy, resolution, min_alpha=min_alpha, backend=backend,
                                 depth=fusion_depth, bin_m=bin_m)
        heights = np.where(np.isfinite(fused), fused, heights).astype(np.float32)
    heights = median_filtered(heights, filter_px)
    if floor_points is not None:
        heights = raised_to_floor(heights, tie_point_floor(floor_points, bounds_xy, resolution, heights.shape))
    return heights, corner


def enu_heights_to_utm(heights: np.ndarray, corner: tuple[float, float], resolution: float,
                       frame: LocalFrame, utm_resolution: float | None = None) -> DSMGrid:
    """Resample an ENU height map onto a north-up grid in the frame's UTM zone (bilinear, NaN-aware).

    Heights become ellipsoidal (``frame.h0 + z``); Earth curvature over the AOI (< 1 cm) is ignored.
    """
    from rasterio.transform import from_origin
    from scipy.ndimage import map_coordinates

    res = utm_resolution or resolution
    xmin, ymax = corner
    H, W = heights.shape
    corners_enu = np.array([[xmin, ymax, 0.0], [xmin + W * resolution, ymax, 0.0],
                            [xmin, ymax - H * resolution, 0.0], [xmin + W * resolution, ymax - H * resolution, 0.0]])
    utm = frame.enu_to_utm(corners_enu)
    e0, e1 = np.floor(utm[:, 0].min() / res) * res, np.ceil(utm[:, 0].max() / res) * res
    n0, n1 = np.floor(utm[:, 1].min() / res) * res, np.ceil(utm[:, 1].max() / res) * res
    cols, rows = int(round((e1 - e0) / res)), int(round((n1 - n0) / res))
    ee, nn = np.meshgrid(e0 + (np.arange(cols) + 0.5) * res, n1 - (np.arange(rows) + 0.5) * res)
    enu = frame.utm_to_enu(ee.ravel(), nn.ravel(), np.full(ee.size, frame.h0))
    # fractional ENU-grid indices (pixel centres at integers)
    jj = (enu[:, 0] - xmin) / resolution - 0.5
    ii = (ymax - enu[:, 1]) / resolution - 0.5
    valid = np.isfinite(heights)
    filled = np.where(valid, heights, 0.0)
    val = map_coordinates(filled, [ii, jj], order=1, mode="constant", cval=0.0)
    wgt = map_coordinates(valid.astype(np.float64), [ii, jj], order=1, mode="constant", cval=0.0)
    out = np.full(ee.size, np.nan)
    ok = wgt > 0.999  # all four neighbours valid
    out[ok] = val[ok] / wgt[ok] + frame.h0
    return DSMGrid(out.reshape(rows, cols).astype(np.float32), from_origin(e0, n1, res, res), frame.utm_epsg)
