"""The DSM as a Cloud-Optimized GeoTIFF and a hillshade PNG.

`write_dsm_cog` writes GDAL's COG layout (rasterio's `driver="COG"`): 256x256 tiles, internal
overviews (averaged, down to one tile), DEFLATE with the floating-point predictor, nodata -9999.
The horizontal CRS is the UTM zone (EPSG:326xx/327xx) in the GeoTIFF keys. Heights are metres
above the WGS84 ellipsoid (not a geoid): the vertical datum is recorded in the dataset metadata
(VERTICAL_CRS = EPSG:4979 ellipsoidal height, VERTICAL_DATUM, UNITS) and on the band (description
"height", unit "metre"), with AREA_OR_POINT=Area. Why not in the GeoKeys: the 3D CRS "UTM +
ellipsoidal height" (pyproj `CRS.to_3d()`) is what we would like there, but GDAL 3.10's GeoTIFF
writer cannot encode it and silently puts the whole CRS into a `.aux.xml` sidecar instead (a
compound CRS needs a *vertical* CRS, and ellipsoidal heights have no EPSG vertical CRS), so
everything stays inside the one .tif.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skyfall_core.atomic import atomic_path, write_bytes
from skyfall_core.geo.dsm import NODATA, DSMGrid

COG_BLOCKSIZE = 256
VERTICAL_CRS = "EPSG:4979 (WGS 84 ellipsoidal height, metre)"


def write_dsm_cog(path: str | Path, grid: DSMGrid) -> Path:
    """Write `grid` (heights in metres above the WGS84 ellipsoid, NaN = no data, UTM transform)
    as a COG (see the module docstring) atomically. Returns the path."""
    import rasterio

    data = np.where(np.isfinite(grid.heights), grid.heights, NODATA).astype(np.float32)
    profile = dict(driver="COG", height=data.shape[0], width=data.shape[1], count=1,
                   dtype="float32", crs=f"EPSG:{grid.epsg}", transform=grid.transform, nodata=NODATA,
                   blocksize=COG_BLOCKSIZE, compress="DEFLATE", predictor=3, level=6,
                   overviews="AUTO", overview_resampling="AVERAGE", bigtiff="IF_SAFER")
    path = Path(path)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(data, 1)
            ds.set_band_description(1, "height")
            ds.units = ("metre",)
            ds.update_tags(AREA_OR_POINT="Area", UNITS="metre", VERTICAL_CRS=VERTICAL_CRS,
                           VERTICAL_DATUM="WGS84 ellipsoid (heights above the ellipsoid, not a geoid)")
            ds.update_tags(1, UNITS="metre")
    return path


def hillshade(heights: np.ndarray, resolution: float, azimuth: float = 315.0,
              altitude: float = 45.0, z_factor: float = 1.0) -> np.ndarray:
    """Standard (ESRI/GDAL, Horn 1981) hillshade of a north-up grid [H, W] in 0..255 float, NaN
    where the 3x3 neighbourhood touches no data. Sun from `azimuth` degrees clockwise from north,
    `altitude` degrees above the horizon; a flat cell gets 255 sin(altitude)."""
    z = np.pad(np.asarray(heights, np.float64), 1, mode="edge")
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    dzdx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * resolution)  # towards east
    dzdy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * resolution)  # towards south (rows down)
    slope = np.arctan(z_factor * np.hypot(dzdx, dzdy))
    aspect = np.mod(np.arctan2(dzdy, -dzdx), 2 * np.pi)
    zenith = np.radians(90.0 - altitude)
    azimuth_math = np.radians(np.mod(360.0 - azimuth + 90.0, 360.0))
    shade = (np.cos(zenith) * np.cos(slope)
             + np.sin(zenith) * np.sin(slope) * np.cos(azimuth_math - aspect))
    return np.clip(255.0 * shade, 0.0, 255.0)


def hillshade_rgba(grid: DSMGrid, **kwargs) -> np.ndarray:
    """Grey hillshade [H, W, 4] uint8, alpha 0 where there is no data."""
    shade = hillshade(grid.heights, grid.resolution, **kwargs)
    valid = np.isfinite(shade)
    grey = np.where(valid, np.round(np.nan_to_num(shade)), 0).astype(np.uint8)
    return np.dstack([grey, grey, grey, np.where(valid, 255, 0).astype(np.uint8)])


def write_hillshade_png(path: str | Path, grid: DSMGrid, **kwargs) -> Path:
    """Write the hillshade of `grid` as an RGBA PNG (nodata transparent), same pixel grid as the
    DSM (its georeferencing is the DSM's). Returns the path."""
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(hillshade_rgba(grid, **kwargs), mode="RGBA").save(buf, format="PNG", optimize=True)
    path = Path(path)
    write_bytes(path, buf.getvalue())
    return path
