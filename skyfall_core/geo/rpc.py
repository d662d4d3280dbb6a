"""Rational polynomial camera (RPC00B) model: readers, projection and localisation.

Conventions
-----------
- Geodetic coordinates: longitude and latitude in degrees (WGS84), height in metres above the
  WGS84 ellipsoid (the heights vendors' RPCs use).
- Image coordinates: ``row`` (line) down and ``col`` (sample) right, in pixels, with **integer
  values at pixel centres** (the RPC00B convention; GDAL's RPC transformer uses pixel corners,
  i.e. GDAL = ours + 0.5).
- Coefficient order: the standard RPC00B order (as GDAL and the Sat-NeRF json use):
  ``1, L, P, H, LP, LH, PH, L², P², H², PLH, L³, LP², LH², L²P, P³, PH², L²H, P²H, H³`` with
  L, P, H the normalised longitude, latitude and height.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from skyfall_core.errors import CorruptRasterError, MissingRPCError, RPCInversionError


def _monomials(nlon: np.ndarray, nlat: np.ndarray, nh: np.ndarray) -> np.ndarray:
    """The 20 RPC00B monomials of normalised (L, P, H), stacked on the last axis. [..., 20]"""
    L, P, H = nlon, nlat, nh
    one = np.ones_like(L)
    return np.stack(
        [one, L, P, H, L * P, L * H, P * H, L * L, P * P, H * H,
         P * L * H, L ** 3, L * P * P, L * H * H, L * L * P, P ** 3, P * H * H,
         L * L * H, P * P * H, H ** 3],
        axis=-1,
    )


@dataclass(frozen=True)
class RPCModel:
    """An RPC00B camera: (lon, lat, h) -> (row, col), plus its iterative inverse."""

    row_offset: float
    col_offset: float
    lat_offset: float
    lon_offset: float
    alt_offset: float
    row_scale: float
    col_scale: float
    lat_scale: float
    lon_scale: float
    alt_scale: float
    row_num: np.ndarray = field(repr=False)  # [20]
    row_den: np.ndarray = field(repr=False)  # [20]
    col_num: np.ndarray = field(repr=False)  # [20]
    col_den: np.ndarray = field(repr=False)  # [20]

    def __post_init__(self) -> None:
        for name in ("row_num", "row_den", "col_num", "col_den"):
            coeffs = np.asarray(getattr(self, name), dtype=np.float64).reshape(-1)
            if coeffs.shape != (20,):
                raise ValueError(f"RPC {name} must have 20 coefficients, got {coeffs.shape[0]}")
            object.__setattr__(self, name, coeffs)

    # ------------------------------------------------------------------ maths
    def projection(self, lon, lat, alt) -> tuple[np.ndarray, np.ndarray]:
        """Project geodetic points to the image. Returns (row, col) in pixels (centres at ints)."""
        lon, lat, alt = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (lon, lat, alt)))
        m = _monomials((lon - self.lon_offset) / self.lon_scale,
                       (lat - self.lat_offset) / self.lat_scale,
                       (alt - self.alt_offset) / self.alt_scale)
        nrow = (m @ self.row_num) / (m @ self.row_den)
        ncol = (m @ self.col_num) / (m @ self.col_den)
        return nrow * self.row_scale + self.row_offset, ncol * self.col_scale + self.col_offset

    def localization(self, row, col, alt, *, tol_px: float = 1e-6, max_iter: int = 30
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Invert the projection at known heights: (row, col, alt) -> (lon, lat) in degrees.

        Vectorised Gauss-Newton on the projection with a finite-difference Jacobian, started at
        the RPC's offsets. Raises :class:`RPCInversionError` if a point does not reach
        ``tol_px`` in ``max_iter`` iterations.
        """
        row, col, alt = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (row, col, alt)))
        lon = np.full(row.shape, self.lon_offset)
        lat = np.full(row.shape, self.lat_offset)
        dlon, dlat = 1e-6 * self.lon_scale, 1e-6 * self.lat_scale
        for _ in range(max_iter):
            r0, c0 = self.projection(lon, lat, alt)
            r_lon, c_lon = self.projection(lon + dlon, lat, alt)
            r_lat, c_lat = self.projection(lon, lat + dlat, alt)
            # Jacobian d(row, col)/d(lon, lat)
            a, b = (r_lon - r0) / dlon, (r_lat - r0) / dlat
            c, d = (c_lon - c0) / dlon, (c_lat - c0) / dlat
            er, ec = row - r0, col - c0
            det = a * d - b * c
            lon = lon + (d * er - b * ec) / det
            lat = lat + (-c * er + a * ec) / det
            if np.all(np.abs(er) < tol_px) and np.all(np.abs(ec) < tol_px):
                break
        r, c = self.projection(lon, lat, alt)
        err = np.hypot(r - row, c - col)
        if not np.all(np.isfinite(err)) or np.any(err > max(tol_px, 1e-4)):
            raise RPCInversionError(
                f"RPC localisation did not converge (worst residual {np.nanmax(err):.3g} px)",
                fix="check that the image points and heights lie inside the RPC's validity domain",
            )
        return lon, lat

    # ------------------------------------------------------------ derivations
    def shifted(self, row0: float, col0: float) -> "RPCModel":
        """The RPC of a crop whose top-left pixel is (row0, col0) of this image."""
        return replace(self, row_offset=self.row_offset - row0, col_offset=self.col_offset - col0)

    def scaled(self, factor: float) -> "RPCModel":
        """The RPC of this image resampled by ``factor`` (0.5 = half the pixels a side).

        With pixel centres at integers, a pixel centre u maps to (u + 0.5) * factor - 0.5.
        """
        return replace(
            self,
            row_offset=(self.row_offset + 0.5) * factor - 0.5,
            col_offset=(self.col_offset + 0.5) * factor - 0.5,
            row_scale=self.row_scale * factor,
            col_scale=self.col_scale * factor,
        )

    @property
    def height_range(self) -> tuple[float, float]:
        """The RPC's nominal validity range of heights (metres)."""
        return self.alt_offset - self.alt_scale, self.alt_offset + self.alt_scale

    # ---------------------------------------------------------------- formats
    def to_dict(self) -> dict[str, Any]:
        """Sat-NeRF json schema (``rpc`` block)."""
        out: dict[str, Any] = {k: float(getattr(self, k)) for k in _SCALARS}
        out.update({k: getattr(self, k).tolist() for k in _COEFFS})
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RPCModel":
        """From the Sat-NeRF json schema's ``rpc`` block (as :meth:`to_dict` writes)."""
        return cls(**{k: float(d[k]) for k in _SCALARS}, **{k: np.asarray(d[k], float) for k in _COEFFS})

    def to_gdal(self) -> dict[str, str]:
        """GDAL RPC metadata domain (keys LINE_OFF, ...); pixel-centre convention like RPC00B."""
        fmt = lambda v: repr(float(v))  # noqa: E731 - exact round trip of doubles
        out = {gk: fmt(getattr(self, ok)) for gk, ok in _GDAL_SCALARS.items()}
        out.update({gk: " ".join(fmt(v) for v in getattr(self, ok)) for gk, ok in _GDAL_COEFFS.items()})
        return out

    @classmethod
    def from_gdal(cls, md: dict[str, str], *, source: str | Path = "<metadata>") -> "RPCModel":
        """From a GDAL RPC metadata dict (as ``rasterio``'s ``tags(ns='RPC')`` returns)."""
        missing = [k for k in (*_GDAL_SCALARS, *_GDAL_COEFFS) if k not in md]
        if missing:
            raise MissingRPCError(
                f"RPC metadata is incomplete (missing {', '.join(missing[:4])})",
                path=source, fix="provide the vendor's .RPB or _RPC.TXT sidecar next to the image")
        kw: dict[str, Any] = {ok: _parse_number(md[gk]) for gk, ok in _GDAL_SCALARS.items()}
        kw.update({ok: np.array([_parse_number(v) for v in md[gk].split()]) for gk, ok in _GDAL_COEFFS.items()})
        return cls(**kw)


_SCALARS = ("row_offset", "col_offset", "lat_offset", "lon_offset", "alt_offset",
            "row_scale", "col_scale", "lat_scale", "lon_scale", "alt_scale")
_COEFFS = ("row_num", "row_den", "col_num", "col_den")
_GDAL_SCALARS = {
    "LINE_OFF": "row_offset", "SAMP_OFF": "col_offset", "LAT_OFF": "lat_offset",
    "LONG_OFF": "lon_offset", "HEIGHT_OFF": "alt_offset", "LINE_SCALE": "row_scale",
    "SAMP_SCALE": "col_scale", "LAT_SCALE": "lat_scale", "LONG_SCALE": "lon_scale",
    "HEIGHT_SCALE": "alt_scale",
}
_GDAL_COEFFS = {
    "LINE_NUM_COEFF": "row_num", "LINE_DEN_COEFF": "row_den",
    "SAMP_NUM_COEFF": "col_num", "SAMP_DEN_COEFF": "col_den",
}
# Keys of the vendor text formats that map onto the GDAL names.
_RPB_KEYS = {
    "lineOffset": "LINE_OFF", "sampOffset": "SAMP_OFF", "latOffset": "LAT_OFF",
    "longOffset": "LONG_OFF", "heightOffset": "HEIGHT_OFF", "lineScale": "LINE_SCALE",
    "sampScale": "SAMP_SCALE", "latScale": "LAT_SCALE", "longScale": "LONG_SCALE",
    "heightScale": "HEIGHT_SCALE", "lineNumCoef": "LINE_NUM_COEFF", "lineDenCoef": "LINE_DEN_COEFF",
    "sampNumCoef": "SAMP_NUM_COEFF", "sampDenCoef": "SAMP_DEN_COEFF",
}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def _parse_number(text: str) -> float:
    """First number in a metadata value ('+123.4 pixels' -> 123.4)."""
    m = _NUMBER.search(str(text))
    if m is None:
        raise ValueError(f"no number in {text!r}")
    return float(m.group())


def read_rpb(path: str | Path) -> RPCModel:
    """Read a DigitalGlobe/Maxar ``.RPB`` sidecar (``key = value;`` and ``key = (a, b, ...);``)."""
    path = Path(path)
    text = path.read_text(errors="replace")
    md: dict[str, str] = {}
    # one `key = value;` per line; a value never spans lines unless parenthesised (the
    # coefficient lists), so `BEGIN_GROUP = IMAGE` (no semicolon) cannot swallow the next key.
    for key, value in re.findall(r"^\s*(\w+)\s*=\s*(\([^)]*\)|[^;\n]*);", text, flags=re.M):
        if key in _RPB_KEYS:
            md[_RPB_KEYS[key]] = " ".join(_NUMBER.findall(value)) if value.startswith("(") else value
    return RPCModel.from_gdal(md, source=path)


def read_rpc_txt(path: str | Path) -> RPCModel:
    """Read an ``_RPC.TXT`` sidecar (``LINE_OFF: 1234.00 pixels``, ``LINE_NUM_COEFF_1: ...``)."""
    path = Path(path)
    md: dict[str, str] = {}
    coeffs: dict[str, dict[int, str]] = {k: {} for k in _GDAL_COEFFS}
    for line in path.read_text(errors="replace").splitlines():
        if ":" not in line:
            continue
        key, value = (s.strip() for s in line.split(":", 1))
        m = re.fullmatch(r"(LINE_NUM_COEFF|LINE_DEN_COEFF|SAMP_NUM_COEFF|SAMP_DEN_COEFF)_(\d+)", key)
        if m:
            coeffs[m.group(1)][int(m.group(2))] = value
        elif key in _GDAL_SCALARS:
            md[key] = value
    for key, by_index in coeffs.items():
        if by_index:
            md[key] = " ".join(str(_parse_number(by_index[i])) for i in sorted(by_index))
    return RPCModel.from_gdal(md, source=path)


def read_satnerf_json(path: str | Path) -> tuple[RPCModel, dict[str, Any]]:
    """Read a Sat-NeRF json (``rpc`` block + image metadata). Returns (rpc, the whole json)."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CorruptRasterError(f"cannot read RPC json ({exc})", path=path,
                                 fix="re-export the json; it must hold an 'rpc' object") from exc
    if not isinstance(meta, dict) or "rpc" not in meta:
        raise MissingRPCError("json has no 'rpc' block", path=path,
                              fix="use a Sat-NeRF style json with an 'rpc' object")
    try:
        return RPCModel.from_dict(meta["rpc"]), meta
    except (KeyError, TypeError, ValueError) as exc:  # a missing key or a bad coefficient list
        raise MissingRPCError(f"the json's 'rpc' block is incomplete or malformed ({exc!r})", path=path,
                              fix="give all RPC00B offsets, scales and the four 20-coefficient lists") from exc


def sidecar_candidates(image: str | Path) -> list[Path]:
    """Sidecar files that may hold the RPC of ``image``, in the order they are tried."""
    image = Path(image)
    stem = image.with_suffix("")
    names = [stem.with_suffix(".RPB"), stem.with_suffix(".rpb"),
             Path(f"{stem}_RPC.TXT"), Path(f"{stem}_rpc.txt")]
    return names


def read_rpc(image: str | Path) -> RPCModel:
    """The RPC of an image: from its tags (GeoTIFF/NITF via GDAL), else from a sidecar.

    Raises :class:`MissingRPCError` naming the file when none is found, and
    :class:`CorruptRasterError` when the file cannot be opened.
    """
    import rasterio
    from rasterio.errors import RasterioIOError

    image = Path(image)
    try:
        with rasterio.open(image) as ds:
            md = ds.tags(ns="RPC")
    except RasterioIOError as exc:
        raise CorruptRasterError(f"cannot open raster ({exc})", path=image,
                                 fix="check the file is a complete GeoTIFF/NITF (re-download or re-export it)") from exc
    if md:
        return RPCModel.from_gdal(md, source=image)
    for side in sidecar_candidates(image):
        if side.exists():
            return read_rpb(side) if side.suffix.lower() == ".rpb" else read_rpc_txt(side)
    raise MissingRPCError(
        "no RPC camera model in the raster's metadata and no .RPB/_RPC.TXT sidecar",
        path=image,
        fix=f"use the vendor's original (non-orthorectified) product, or put its RPC next to it as "
            f"{image.with_suffix('.RPB').name} or {image.stem}_RPC.TXT")
