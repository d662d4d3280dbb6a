"""Digital surface models on disk: a north-up grid of ellipsoidal heights in a UTM CRS.

Heights are metres above the WGS84 ellipsoid; nodata is NaN in memory and -9999 on disk. Reads
GeoTIFFs (and the DFC2019/Sat-NeRF truth DSMs, whose TIFF carries no georeferencing: their
origin ``.txt`` gives it) and their class rasters; writes a plain GeoTIFF that opens in QGIS in
place (``skyfall_core.export.cog`` writes the Cloud-Optimized one).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skyfall_core.atomic import atomic_path
from skyfall_core.errors import CorruptRasterError

NODATA = -9999.0


@dataclass
class DSMGrid:
    heights: np.ndarray  # [H, W] float32, NaN = no data
    transform: "object"  # rasterio Affine: pixel (col, row) corner -> (easting, northing)
    epsg: int

    @property
    def resolution(self) -> float:
        return float(abs(self.transform.a))


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
