"""DSM accuracy against a truth DSM (reading and writing DSMs: :mod:`skyfall_core.geo.dsm`).

Heights are metres above the WGS84 ellipsoid; nodata is NaN in memory and -9999 on disk.
The accuracy metric follows the DFC2019 / Sat-NeRF practice: the prediction is resampled onto
the truth grid, a small horizontal registration (integer truth pixels within ``max_shift_m``) and
a vertical bias (median difference) are searched, and the errors are reported over the truth's
valid pixels.

With the truth's class raster (DFC2019 codes, :data:`DFC_CLASSES`), the evaluation is DFC2019's:
water (9) and unlabeled (65) pixels are left out of the registration and of every figure, and
the errors are also reported on buildings (6) alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from skyfall_core.errors import CorruptRasterError
from skyfall_core.geo.dsm import DSMGrid

# DFC2019 / US3D class codes (the *_CLS.tif rasters): LAS-style classes
DFC_CLASSES = {2: "ground", 5: "trees", 6: "buildings", 9: "water", 17: "bridge", 65: "unlabeled"}
DFC_EXCLUDED = (9, 65)  # water and unlabeled: no reliable truth height, not scored
DFC_BUILDINGS = 6


@dataclass
class DSMMetrics:
    mae_m: float
    rmse_m: float
    median_m: float
    completeness: float  # fraction of valid truth pixels with |error| < completeness_tol_m
    coverage: float  # fraction of valid truth pixels that have a prediction
    shift_east_m: float  # registration found (prediction moved by this much)
    shift_north_m: float
    vertical_bias_m: float  # subtracted from the prediction
    n_pixels: int
    # with a class raster: the same errors on buildings only (None without one)
    mae_buildings_m: float | None = None
    rmse_buildings_m: float | None = None
    median_buildings_m: float | None = None
    n_building_pixels: int | None = None
    n_excluded_pixels: int | None = None  # valid truth pixels left out (water, unlabeled)

    def to_dict(self) -> dict[str, float]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def resample_to(pred: DSMGrid, truth: DSMGrid) -> np.ndarray:
    """The prediction bilinearly resampled onto the truth grid (NaN where it has no data)."""
    from rasterio.warp import Resampling, reproject

    out = np.full(truth.heights.shape, np.nan, dtype=np.float32)
    reproject(source=pred.heights.astype(np.float32), destination=out,
              src_transform=pred.transform, src_crs=f"EPSG:{pred.epsg}", src_nodata=np.nan,
              dst_transform=truth.transform, dst_crs=f"EPSG:{truth.epsg}", dst_nodata=np.nan,
              resampling=Resampling.bilinear)
    return out


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` moved by (dy rows, dx cols), NaN where nothing moved in."""
    out = np.full_like(a, np.nan)
    h, w = a.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


def compare_dsm(pred: DSMGrid, truth: DSMGrid, *, max_shift_m: float = 2.0,
                completeness_tol_m: float = 1.0, truth_cls: np.ndarray | None = None,
                exclude_classes: tuple[int, ...] = DFC_EXCLUDED, building_class: int = DFC_BUILDINGS
                ) -> DSMMetrics:
    """DSM accuracy of ``pred`` against ``truth`` after the registration search.

    ``truth_cls`` (class codes on the truth grid) evaluates as DFC2019: pixels of
    ``exclude_classes`` (water, unlabeled) count nowhere, and the building errors are added.
    """
    on_truth = resample_to(pred, truth)
    truth_h = truth.heights
    n_excluded = None
    if truth_cls is not None:
        if truth_cls.shape != truth_h.shape:
            raise CorruptRasterError(f"class raster is {truth_cls.shape} but the truth DSM is {truth_h.shape}",
                                     fix="pair the truth DSM with its own *_CLS.tif")
        drop = np.isin(truth_cls, exclude_classes) & np.isfinite(truth_h)
        n_excluded = int(drop.sum())
        truth_h = np.where(drop, np.nan, truth_h).astype(np.float32)
    valid_truth = np.isfinite(truth_h)
    n_truth = int(valid_truth.sum())
    if n_truth == 0:
        raise CorruptRasterError("truth DSM has no valid pixel", fix="check its nodata value")
    k = int(np.floor(max_shift_m / truth.resolution + 1e-9))
    best: tuple[float, int, int, float] | None = None
    for dy in range(-k, k + 1):
        for dx in range(-k, k + 1):
            if (dy * dy + dx * dx) * truth.resolution ** 2 > max_shift_m ** 2 + 1e-9:
                continue
            diff = _shifted(on_truth, dy, dx) - truth_h
            d = diff[np.isfinite(diff)]
            if d.size < 0.05 * n_truth:
                continue
            bias = float(np.median(d))
            mae = float(np.mean(np.abs(d - bias)))
            if best is None or mae < best[0]:
                best = (mae, dy, dx, bias)
    if best is None:
        return DSMMetrics(float("nan"), float("nan"), float("nan"), 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    _, dy, dx, bias = best
    err = _shifted(on_truth, dy, dx) - bias - truth_h
    has = np.isfinite(err)
    e = err[has]
    res = truth.resolution
    extra: dict = {}
    if truth_cls is not None:
        b = err[has & (truth_cls == building_class)]
        nan = float("nan")
        extra = dict(mae_buildings_m=float(np.mean(np.abs(b))) if b.size else nan,
                     rmse_buildings_m=float(np.sqrt(np.mean(b ** 2))) if b.size else nan,
                     median_buildings_m=float(np.median(np.abs(b))) if b.size else nan,
                     n_building_pixels=int(b.size), n_excluded_pixels=n_excluded)
    return DSMMetrics(
        mae_m=float(np.mean(np.abs(e))), rmse_m=float(np.sqrt(np.mean(e ** 2))),
        median_m=float(np.median(np.abs(e))),
        completeness=float(np.sum(np.abs(e) < completeness_tol_m) / n_truth),
        coverage=float(has.sum() / n_truth),
        shift_east_m=dx * res, shift_north_m=-dy * res, vertical_bias_m=bias, n_pixels=int(e.size),
        **extra)
