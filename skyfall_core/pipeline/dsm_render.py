"""DSM from splats: a top-down render on an ENU grid, resampled onto a north-up UTM grid.

The renderer only knows pinhole cameras, so the DSM camera looks straight down from
``altitude_m`` (100 km by default) with a focal length that makes one pixel ``resolution`` metres
on the ground: its rays are parallel to within ``half-width / altitude`` (~1e-3 rad for a 250 m
AOI), so the lateral error on a 60 m roof is below 0.1 m. The height of a pixel is
``camera z - expected depth``; pixels whose alpha is below ``min_alpha`` are nodata.
"""

from __future__ import annotations

import numpy as np
import torch

from skyfall_core.eval.dsm import DSMGrid
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
