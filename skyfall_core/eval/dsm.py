"""Digital surface models: reading, writing (GeoTIFF, UTM) and accuracy against a truth DSM.

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

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from skyfall_core.atomic import atomic_path
from skyfall_core.errors import CorruptRasterError

NODATA = -9999.0
# DFC2019 / US3D class codes (the *_CLS.tif rasters): LAS-style classes
DFC_CLASSES = {2: "ground", 5: "trees", 6: "buildings", 9: "water", 17: "bridge", 65: "unlabeled"}
DFC_EXCLUDED = (9, 65)  # water and unlabeled: no reliable truth height, not scored
DFC_BUILDINGS = 6


@dataclass
class DSMGrid:
    heights: np.ndarray  # [H, W] float32, NaN = no data
    transform: "object"  # rasterio Affine: pixel (col, row) corner -> (easting, northing)
    epsg: int

    @property
    def resolution(self) -> float:
        return float(abs(self.transform.a))


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


def read_origin_txt(path: str | Path) -> tuple[float, float, int, float]:
    """The Sat-NeRF/DFC truth sidecar: easting_min, northing_min (LOWER edge), size, resolution."""
    values = Path(path).read_text().split()
    if len(values) < 4:
        raise CorruptRasterError("expected 4 numbers: easting_min northing_min size resolution",
                                 path=path, fix="use the .txt that comes with the truth DSM")
    e0, n0, size, res = (float(v) for v in values[:4])
    return e0, n0, int(round(size)), res


def read_dsm(path: str | Path, *, origin_txt: str | Path | None = None, epsg: int | None = None) -> DSMGrid:
    """Read a DSM GeoTIFF; a TIFF without georeferencing needs ``origin_txt`` (and ``epsg``)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
    from rasterio.transform import from_origin

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # handled below with a clear error
            with rasterio.open(path) as ds:
                heights = ds.read(1).astype(np.float32)
                nodata = ds.nodata
                transform, crs = ds.transform, ds.crs
    except RasterioIOError as exc:
        raise CorruptRasterError(f"cannot read DSM ({exc})", path=path,
                                 fix="check that the file is a complete single-band GeoTIFF") from exc
    if nodata is not None:
        heights[heights == nodata] = np.nan
    heights[~np.isfinite(heights)] = np.nan
    if origin_txt is not None:
        e0, n0, size, res = read_origin_txt(origin_txt)
        if heights.shape != (size, size):
            raise CorruptRasterError(f"DSM is {heights.shape} but the origin file says {size}x{size}",
                                     path=path, fix="pair the DSM with its own origin .txt")
        transform = from_origin(e0, n0 + size * res, res, res)  # row 0 = northern edge
        if epsg is None:
            raise CorruptRasterError("an origin .txt gives no CRS", path=origin_txt,
                                     fix="pass the truth's EPSG code (e.g. 32617 for JAX)")
    elif crs is None or transform.is_identity:
        raise CorruptRasterError("DSM has no georeferencing", path=path,
                                 fix="pass --truth-origin-txt with the DSM's origin file (and --truth-epsg)")
    else:
        epsg = crs.to_epsg()
    return DSMGrid(heights, transform, int(epsg))


def read_class_raster(path: str | Path, like: DSMGrid) -> np.ndarray:
    """A class raster (DFC2019 ``*_CLS.tif``) on the grid of ``like`` (same shape; the DFC files
    carry no georeferencing of their own and share the truth DSM's grid)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                cls = ds.read(1)
    except RasterioIOError as exc:
        raise CorruptRasterError(f"cannot read class raster ({exc})", path=path,
                                 fix="check that the file is a complete single-band GeoTIFF") from exc
    if cls.shape != like.heights.shape:
        raise CorruptRasterError(f"class raster is {cls.shape} but the truth DSM is {like.heights.shape}",
                                 path=path, fix="pair the truth DSM with its own *_CLS.tif")
    return cls.astype(np.int32)


def find_class_raster(truth_path: str | Path) -> Path | None:
    """The class raster next to a truth DSM: ``X_DSM.tif`` -> ``X_CLS.tif`` (None when absent)."""
    p = Path(truth_path)
    for name in (p.name.replace("_DSM", "_CLS"), p.stem + "_CLS" + p.suffix):
        cand = p.with_name(name)
        if cand != p and cand.is_file():
            return cand
    return None


def write_dsm(path: str | Path, grid: DSMGrid) -> None:
    """Write a float32 GeoTIFF (deflate, nodata -9999) atomically; opens in QGIS in place."""
    import rasterio

    data = np.where(np.isfinite(grid.heights), grid.heights, NODATA).astype(np.float32)
    profile = dict(driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                   dtype="float32", crs=f"EPSG:{grid.epsg}", transform=grid.transform,
                   nodata=NODATA, compress="deflate", predictor=3, tiled=False)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(data, 1)
            ds.update_tags(AREA_OR_POINT="Area", UNITS="metre", VERTICAL_DATUM="WGS84 ellipsoid")


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
