"""Raster reading and radiometric normalisation of satellite views.

Every view, whatever its storage (8-bit display RGB, 11/12-bit WorldView DNs in uint16, float
reflectance, panchromatic or multispectral), comes out the same way: a float32 ``[H, W, 3]``
image in 0..1 and a boolean validity mask ``[H, W]``.

Normalisation: a per-band linear stretch between robust percentiles (``low_pct``/``high_pct``,
default 0.5 % and 99.5 %) of the **valid** pixels of the window, clipped to 0..1. It is applied
to every input kind alike (8-bit too), so that views of different dates and bit depths look
alike; the per-image appearance model absorbs what is left.

Validity: a pixel is invalid when the raster's mask says so (nodata value, internal mask, alpha
band), when any of its bands is not finite, or when all its bands are zero (the fill of
orthorectified or cropped deliveries). Invalid pixels hold 0 in the image.

Pixel convention: integer image coordinates at pixel centres (as in :mod:`skyfall_core.geo.rpc`);
the window ``(row0, col0, height, width)`` covers pixels ``row0 .. row0+height-1``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from skyfall_core.errors import CorruptRasterError, MixedUnitsError

_RGB_NAMES = {"red": 0, "r": 0, "green": 1, "g": 1, "blue": 2, "b": 2}
_MAX_PERCENTILE_SAMPLES = 4_000_000  # valid pixels a band used to find the stretch percentiles
_PROBE_MAX_PX = 512  # side of the windows probe_readable reads
_CORRUPT_FIX = "check the file is a complete GeoTIFF/NITF/JPEG 2000 image (re-download or re-export it)"


def open_raster(path: str | Path):
    """Open a raster with rasterio; raise :class:`CorruptRasterError` naming it if GDAL cannot.

    Any format GDAL reads (GeoTIFF, NITF, JPEG 2000, PNG, JPEG, a Maxar ``.TIL`` mosaic, ...).
    A ``.TIL`` that GDAL's TIL driver refuses (it needs the ``.IMD``) is opened as a VRT of the
    tiles it lists. rasterio's ``NotGeoreferencedWarning`` (raw satellite images have RPCs,
    not a geotransform) is silenced here, for these reads only.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    path = Path(path)
    if not path.is_file():
        raise CorruptRasterError("file not found", path=path, fix="check the path")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return rasterio.open(path)
        except RasterioError as exc:
            if path.suffix.lower() != ".til":
                raise CorruptRasterError(f"cannot open raster ({exc})", path=path, fix=_CORRUPT_FIX) from exc
            first_error = exc
        try:
            return rasterio.open(til_vrt(path))
        except RasterioError as exc:
            raise CorruptRasterError(f"cannot open the .TIL mosaic ({first_error}; as a VRT of its tiles: {exc})",
                                     path=path, fix="keep the .TIL with all the tiles it lists (and its .IMD "
                                                    "and .RPB) in one folder, as delivered") from exc


def til_tiles(path: str | Path) -> list[dict]:
    """The tiles a Maxar ``.TIL`` lists: dicts of ``filename`` (a Path beside the .TIL) and the
    inclusive pixel offsets ``ULColOffset``, ``ULRowOffset``, ``LRColOffset``, ``LRRowOffset``."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise CorruptRasterError(f"cannot read the .TIL file ({exc})", path=path, fix=_CORRUPT_FIX) from exc
    tiles = []
    for group in re.findall(r"BEGIN_GROUP\s*=\s*TILE_\d+(.*?)END_GROUP", text, flags=re.S):
        kv = dict(re.findall(r"^\s*(\w+)\s*=\s*\"?([^\";\n]*)\"?\s*;", group, flags=re.M))
        try:
            offsets = {k: int(float(kv[k])) for k in ("ULColOffset", "ULRowOffset", "LRColOffset", "LRRowOffset")}
            tiles.append({"filename": path.parent / kv["filename"].strip(), **offsets})
        except (KeyError, ValueError) as exc:
            raise CorruptRasterError(f"a tile entry of the .TIL file is incomplete ({exc!r})", path=path,
                                     fix="use the .TIL as delivered with its tiles") from exc
    if not tiles:
        raise CorruptRasterError("the .TIL file lists no tile", path=path,
                                 fix="use the .TIL as delivered with its tiles")
    return tiles


def til_vrt(path: str | Path) -> str:
    """A GDAL VRT (XML text) mosaicking the tiles of a Maxar ``.TIL`` at their offsets."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    path = Path(path)
    tiles = til_tiles(path)
    missing = [t["filename"].name for t in tiles if not t["filename"].is_file()]
    if missing:
        raise CorruptRasterError(f"{len(missing)} tile(s) of the .TIL mosaic are missing (e.g. {missing[0]})",
                                 path=path, fix="copy every tile the .TIL lists next to it, as delivered")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tiles[0]["filename"]) as first:
                count, dtype = first.count, first.dtypes[0]
    except RasterioError as exc:
        raise CorruptRasterError(f"cannot open the tile {tiles[0]['filename'].name} ({exc})", path=path,
                                 fix=_CORRUPT_FIX) from exc
    gdal_type = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                 "int32": "Int32", "float32": "Float32", "float64": "Float64"}.get(dtype, "Float32")
    width = max(t["LRColOffset"] for t in tiles) + 1
    height = max(t["LRRowOffset"] for t in tiles) + 1
    bands = []
    for b in range(1, count + 1):
        sources = []
        for t in tiles:
            w, h = t["LRColOffset"] - t["ULColOffset"] + 1, t["LRRowOffset"] - t["ULRowOffset"] + 1
            sources.append(
                f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(str(t["filename"].resolve()))}'
                f'</SourceFilename><SourceBand>{b}</SourceBand>'
                f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                f'<DstRect xOff="{t["ULColOffset"]}" yOff="{t["ULRowOffset"]}" xSize="{w}" ySize="{h}"/>'
                '</SimpleSource>')
        bands.append(f'<VRTRasterBand dataType={quoteattr(gdal_type)} band="{b}">{"".join(sources)}</VRTRasterBand>')
    return f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{"".join(bands)}</VRTDataset>'


def units_of(dtype: str | np.dtype) -> str:
    """'reflectance' for float rasters, 'dn' for integer digital numbers."""
    return "reflectance" if np.issubdtype(np.dtype(dtype), np.floating) else "dn"


def check_units(items: Iterable[tuple[str | Path, str | np.dtype]]) -> str:
    """Check that a set of rasters, given as (path, dtype) pairs, shares one kind of units.

    Returns the common kind ('dn' or 'reflectance'). Raises :class:`MixedUnitsError` naming a
    file of each kind when float reflectance and integer DNs are mixed.
    """
    by_kind: dict[str, list[str]] = {}
    for path, dtype in items:
        by_kind.setdefault(units_of(dtype), []).append(str(path))
    if len(by_kind) > 1:
        refl, dn = by_kind["reflectance"], by_kind["dn"]
        raise MixedUnitsError(
            f"the views mix float reflectance ({len(refl)}, e.g. {refl[0]}) with integer digital "
            f"numbers ({len(dn)}, e.g. {dn[0]})",
            path=refl[0],
            fix="use one product level for every view (all DN, e.g. the vendor's ORStandard2A/"
                "Basic products, or all reflectance); remove or convert the odd ones out")
    return next(iter(by_kind), "dn")


# Multispectral deliveries whose bands nothing names (a GeoTIFF of uint16 DNs with no photometric
# tags, no descriptions, no metadata beside it): the band order the sensors' vendors use, by count.
# 4 bands: blue, green, red, NIR (Maxar WorldView/GeoEye/QuickBird 4-band MS, PlanetScope and
# SkySat analytic); 8 bands: coastal, blue, green, yellow, red, red edge, NIR1, NIR2 (WorldView-2/3).
UNNAMED_BAND_ORDER_RGB = {4: (3, 2, 1), 8: (5, 3, 2)}
_IMD_BAND = re.compile(r"^\s*BEGIN_GROUP\s*=\s*BAND_(\w+)\s*$", re.M)
_IMD_RGB = {"R": 0, "G": 1, "B": 2}


def sidecar_band_rgb(path: Path, count: int) -> tuple[list[int], str] | None:
    """(1-based R, G, B band indexes, the file that says so) from the metadata delivered beside the
    image: a Maxar ``.IMD`` (its ``BEGIN_GROUP = BAND_<x>`` groups list the bands in file order) or,
    for a DIMAP product's ``IMG_*`` image, the ``DIM_*.XML`` beside it (``Band_Display_Order`` names
    the red, green and blue band ids and ``Raster_Index`` gives each id's index in the file). None
    when neither is there or says it."""
    for imd in (path.with_suffix(".IMD"), path.with_suffix(".imd")):
        if imd.is_file():
            names = _IMD_BAND.findall(imd.read_text(errors="replace"))
            if len(names) == count:
                found = {_IMD_RGB[n]: i + 1 for i, n in enumerate(names) if n in _IMD_RGB}
                if len(found) == 3:
                    return [found[0], found[1], found[2]], imd.name
    dims = []
    if path.name.upper().startswith("IMG_"):  # a DIMAP product's image (IMG_PHR1A_MS_..._R1C1.JP2)
        dims = sorted(path.parent.glob("DIM_*.XML")) + sorted(path.parent.glob("DIM_*.xml"))
    if len(dims) == 1:
        text = dims[0].read_text(errors="replace")
        ids = [re.search(rf"<{c}_CHANNEL>\s*(\w+)\s*</{c}_CHANNEL>", text) for c in ("RED", "GREEN", "BLUE")]
        index = dict(re.findall(r"<Raster_Index>\s*<BAND_ID>\s*(\w+)\s*</BAND_ID>\s*<BAND_INDEX>\s*(\d+)\s*"
                                r"</BAND_INDEX>", text))
        if all(ids) and all(m.group(1) in index for m in ids):
            bands = [int(index[m.group(1)]) for m in ids]
            if all(1 <= b <= count for b in bands):
                return bands, dims[0].name
    return None


def rgb_band_indexes(ds) -> list[int]:
    """1-based band indexes to read as (R, G, B) from an open rasterio dataset.

    Alpha bands are ignored. One band (panchromatic) is replicated. With three or more bands the
    red/green/blue bands are taken, in this order of trust, from the colour interpretation or the
    band descriptions (GeoTIFF photometric tags, NITF IREPBAND), from the metadata delivered beside
    the image (:func:`sidecar_band_rgb`), from the vendors' order for 4 and 8 unnamed bands
    (:data:`UNNAMED_BAND_ORDER_RGB`), else the first three. Two bands: the first, replicated.
    """
    return _rgb_choice(ds)[0]


def assumed_band_order(path: str | Path) -> str | None:
    """A note for the analyst when the red, green and blue bands of the image at ``path`` are a
    guess (three or more bands that nothing names); None when the file or its metadata says."""
    path = Path(path)
    with open_raster(path) as ds:
        bands, why = _rgb_choice(ds)
        count = ds.count
    if why is None:
        return None
    return (f"{path.name}: its {count} bands are not named; read as red, green, blue = bands "
            f"{', '.join(map(str, bands))} ({why}). If its colours look wrong, put the vendor's .IMD or "
            "DIM_*.XML beside it, or name its bands (GeoTIFF band descriptions)")


def _rgb_choice(ds) -> tuple[list[int], str | None]:
    """(:func:`rgb_band_indexes`, why they were assumed: None when the file or its metadata names them)."""
    from rasterio.enums import ColorInterp

    bands = [i for i, ci in zip(ds.indexes, ds.colorinterp, strict=True) if ci != ColorInterp.alpha]
    if not bands:
        bands = list(ds.indexes)
    if len(bands) < 3:
        return [bands[0]] * 3, None
    found: dict[int, int] = {}
    by_interp = {ColorInterp.red: 0, ColorInterp.green: 1, ColorInterp.blue: 2}
    for i in bands:
        slot = by_interp.get(ds.colorinterp[i - 1])
        desc = (ds.descriptions[i - 1] or "").strip().lower()
        if slot is None and desc in _RGB_NAMES:
            slot = _RGB_NAMES[desc]
        if slot is not None and slot not in found:
            found[slot] = i
    if len(found) == 3:
        return [found[0], found[1], found[2]], None
    sidecar = sidecar_band_rgb(Path(ds.name), ds.count) if ds.name else None
    if sidecar is not None:
        return sidecar[0], None
    if bands == list(ds.indexes) and len(bands) in UNNAMED_BAND_ORDER_RGB:
        return list(UNNAMED_BAND_ORDER_RGB[len(bands)]), _UNNAMED_WHY[len(bands)]
    if len(bands) == 3:
        return bands, None  # three bands: RGB, the order every display product and viewer assumes
    return bands[:3], "the first three: no usual order for this many bands"


_UNNAMED_WHY = {4: "the usual order of 4-band deliveries: blue, green, red, NIR",
                8: "the WorldView-2/3 order: coastal, blue, green, yellow, red, red edge, NIR1, NIR2"}


def _read_raw(ds, path: Path, bands: list[int], row0: int, col0: int, height: int, width: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Read the window (zero-padded outside the image). -> (data [3, H, W] float32, valid [H, W])."""
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    data = np.zeros((3, height, width), np.float32)  # float32 holds 16-bit DNs exactly
    valid = np.zeros((height, width), bool)
    r0, c0 = max(row0, 0), max(col0, 0)
    r1, c1 = min(row0 + height, ds.height), min(col0 + width, ds.width)
    if r1 <= r0 or c1 <= c0:
        return data, valid
    win = Window(c0, r0, c1 - c0, r1 - r0)
    unique = sorted(set(bands))
    try:
        block = ds.read(unique, window=win)  # [B, h, w]
        mask = ds.read_masks(unique, window=win)  # [B, h, w], 0 = invalid
    except RasterioError as exc:
        raise CorruptRasterError(f"cannot read pixels ({exc})", path=path, fix=_CORRUPT_FIX) from exc
    block = block.astype(np.float32)
    ok = np.all(mask > 0, axis=0) & np.all(np.isfinite(block), axis=0) & np.any(block != 0, axis=0)
    sl = (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0))
    for k, b in enumerate(bands):
        data[(k, *sl)] = block[unique.index(b)]
    valid[sl] = ok
    return data, valid


def stretch(data: np.ndarray, valid: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5
            ) -> np.ndarray:
    """Per-band linear stretch of ``data`` [C, H, W] between percentiles of the valid pixels.

    Returns float32 [H, W, C] in 0..1 with invalid pixels set to 0. A band that is constant over
    the valid area maps to 0.5.
    """
    out = np.zeros(data.shape[1:] + (data.shape[0],), np.float32)
    if not valid.any():
        return out
    for k in range(data.shape[0]):
        vals = data[k][valid]
        if vals.size > _MAX_PERCENTILE_SAMPLES:  # a regular subsample: same percentiles, faster
            vals = vals[:: vals.size // _MAX_PERCENTILE_SAMPLES + 1]
        lo, hi = np.percentile(vals, [low_pct, high_pct])
        if hi > lo:
            band = (data[k] - lo) / (hi - lo)
        else:
            band = np.full(data.shape[1:], 0.5)
        out[..., k] = np.clip(band, 0.0, 1.0)
    out[~valid] = 0.0
    return out


def resize_masked(image: np.ndarray, valid: np.ndarray, out_size: tuple[int, int]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Resize image [H, W, C] and mask [H, W] to ``out_size`` = (height, width).

    Downsampling averages areas (``cv2.INTER_AREA``) over the valid pixels only (invalid ones do
    not darken their neighbours); an output pixel is valid when at least half of its footprint
    was. Upsampling is bilinear. Pixel centres map as u_out = (u_in + 0.5) * s - 0.5, the
    convention of :meth:`RPCModel.scaled`.
    """
    import cv2

    out_h, out_w = int(out_size[0]), int(out_size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"out_size must be positive, got {out_size}")
    if (out_h, out_w) == valid.shape:
        return image, valid
    shrink = out_h <= valid.shape[0] and out_w <= valid.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    w = valid.astype(np.float32)
    num = cv2.resize(image * w[..., None], (out_w, out_h), interpolation=interp)
    den = cv2.resize(w, (out_w, out_h), interpolation=interp)
    if num.ndim == 2:  # cv2 drops a single channel axis
        num = num[..., None]
    out_valid = den >= 0.5
    out = np.where(out_valid[..., None], num / np.maximum(den, 1e-6)[..., None], 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32), out_valid


def read_window(path: str | Path, row0: int, col0: int, height: int, width: int,
                out_size: tuple[int, int] | None = None, *, low_pct: float = 0.5,
                high_pct: float = 99.5) -> tuple[np.ndarray, np.ndarray]:
    """Read pixels ``[row0:row0+height, col0:col0+width]`` of a raster as a normalised RGB view.

    Returns ``(image [H, W, 3] float32 in 0..1, valid [H, W] bool)`` with (H, W) = ``out_size``
    (height, width) when given, else (height, width). Parts of the window outside the raster are
    invalid. Raises :class:`CorruptRasterError` naming the file when it cannot be opened or read.
    """
    path = Path(path)
    if height < 1 or width < 1:
        raise ValueError(f"window must be at least 1x1 pixel, got {height}x{width}")
    with open_raster(path) as ds:
        bands = rgb_band_indexes(ds)
        data, valid = _read_raw(ds, path, bands, int(row0), int(col0), int(height), int(width))
    image = stretch(data, valid, low_pct, high_pct)
    if out_size is not None:
        image, valid = resize_masked(image, valid, out_size)
    return image, valid


def probe_readable(ds, path: str | Path) -> None:
    """Read the first and last blocks of band 1: catches truncated files cheaply.

    Raises :class:`CorruptRasterError` naming ``path``.
    """
    from rasterio.errors import RasterioError
    from rasterio.windows import Window

    bh, bw = (min(v, _PROBE_MAX_PX) for v in ds.block_shapes[0])
    last = Window((ds.width - 1) // bw * bw, (ds.height - 1) // bh * bh,
                  ds.width - (ds.width - 1) // bw * bw, ds.height - (ds.height - 1) // bh * bh)
    try:
        for win in (Window(0, 0, min(bw, ds.width), min(bh, ds.height)), last):
            ds.read(1, window=win)
    except RasterioError as exc:
        raise CorruptRasterError(f"cannot read pixels, the file looks truncated ({exc})",
                                 path=path, fix=_CORRUPT_FIX) from exc
