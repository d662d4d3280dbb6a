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

Where an image's RPC comes from (:func:`rpc_from_dataset`): whatever GDAL finds for it first —
tags in the file (GeoTIFF, NITF RPC00B, JPEG 2000 boxes) or a sidecar that GDAL's metadata
readers know (Maxar ``.RPB``, ``_RPC.TXT``, Pléiades/SPOT DIMAP ``RPC_*.XML`` beside an
``IMG_*_R<i>C<j>`` image, Maxar ``.TIL`` mosaics, ``.aux.xml``); else the hand-written readers
below, on the sidecars named like the image (:func:`sidecar_candidates`) — the same formats
for images GDAL reads no sidecar for (PNG, JPEG) or named otherwise, plus ``.rpc`` files.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

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
    """Read an ``_RPC.TXT`` sidecar (``LINE_OFF: 1234.00 pixels``, ``LINE_NUM_COEFF_1: ...``).

    ``=`` or blanks may separate key and value too (the ``.rpc`` files of some tools).
    """
    path = Path(path)
    md: dict[str, str] = {}
    coeffs: dict[str, dict[int, str]] = {k: {} for k in _GDAL_COEFFS}
    for line in path.read_text(errors="replace").splitlines():
        kv = re.match(r"\s*([A-Za-z_]\w*)\s*(?:[:=]|\s)\s*(\S.*)$", line)
        if kv is None:
            continue
        key, value = kv.group(1).upper(), kv.group(2).strip()
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


def read_rpc_text(path: str | Path) -> RPCModel:
    """Read a ``KEY: value`` RPC text sidecar (``_RPC.TXT``, ``.rpc``), or an ``.RPB`` by another name.

    Lines are ``LINE_OFF: +004096.00 pixels``, ``LINE_NUM_COEFF_1: ...`` (``=`` or blanks
    may separate key and value too); a file in the ``.RPB`` layout (``lineOffset = ...;``) is
    read as one.
    """
    path = Path(path)
    text = path.read_text(errors="replace")
    if re.search(r"^\s*lineOffset\s*=", text, flags=re.M):
        return read_rpb(path)
    return read_rpc_txt(path)


def _local(tag: Any) -> str:
    """An XML tag without its namespace."""
    return str(tag).rsplit("}", 1)[-1]


_DIMAP_FIX = ("use the RPC_*.XML delivered with the image, unmodified (DIMAP layouts: Pléiades/SPOT 6/7 "
              "<Inverse_Model>, Pléiades Neo <GroundtoImage_Values>, each with <RFM_Validity>)")


def read_dimap_rpc(path: str | Path) -> RPCModel:
    """Read a DIMAP RPC XML (``RPC_*.XML`` of Pléiades 1A/1B, Pléiades Neo, SPOT 6/7).

    Both layouts under ``Rational_Function_Model/Global_RFM``: the ground-to-image
    coefficients in ``Inverse_Model`` (DIMAP V2: Pléiades 1A/1B, SPOT 6/7) or in
    ``GroundtoImage_Values`` (DIMAP V3: Pléiades Neo), ``SAMP_NUM_COEFF_1..20`` etc. in the
    RPC00B order, and the offsets and scales in ``RFM_Validity``.

    Pixel convention: the DIMAP ``LINE_OFF``/``SAMP_OFF`` count the top-left pixel centre as
    (1, 1), except in Pléiades Neo files (``METADATA_PROFILE`` ``PNEO_SENSOR``), which count it
    as (0, 0); one is subtracted where needed so the model follows ours (0-based pixel centres).
    This is GDAL's rule (its Pléiades metadata reader, GDAL 3.10: checked in the tests against
    GDAL reading the same file) and rpcm's for Pléiades 1A/1B and SPOT 6/7.
    """
    path = Path(path)
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise MissingRPCError(f"cannot read the DIMAP RPC XML ({exc})", path=path, fix=_DIMAP_FIX) from exc
    first: dict[str, ElementTree.Element] = {}
    for el in root.iter():
        first.setdefault(_local(el.tag), el)
    model = first.get("Inverse_Model")
    if model is None:
        model = first.get("GroundtoImage_Values")
    validity = first.get("RFM_Validity")
    if model is None or validity is None:
        raise MissingRPCError("not a DIMAP RPC file (no <Inverse_Model> or <GroundtoImage_Values>, or no "
                              "<RFM_Validity>)", path=path, fix=_DIMAP_FIX)
    coeffs = {_local(c.tag).upper(): (c.text or "").strip() for c in model}
    scalars = {_local(c.tag).upper(): (c.text or "").strip() for c in validity}
    md = {k: scalars[k] for k in _GDAL_SCALARS if scalars.get(k)}
    for key in _GDAL_COEFFS:
        values = [coeffs.get(f"{key}_{i}") for i in range(1, 21)]
        if all(values):
            md[key] = " ".join(values)  # type: ignore[arg-type]
    missing = [k for k in (*_GDAL_SCALARS, *_GDAL_COEFFS) if k not in md]
    if missing:
        raise MissingRPCError(f"the DIMAP RPC XML is incomplete (missing {', '.join(missing[:4])})",
                              path=path, fix=_DIMAP_FIX)
    profile = first.get("METADATA_PROFILE")
    first_px = 0.0 if profile is not None and (profile.text or "").strip().upper() == "PNEO_SENSOR" else 1.0
    try:
        for key in ("LINE_OFF", "SAMP_OFF"):
            md[key] = repr(_parse_number(md[key]) - first_px)
        return RPCModel.from_gdal(md, source=path)
    except ValueError as exc:  # a value that is not a number, or a short coefficient list
        raise MissingRPCError(f"the DIMAP RPC XML is malformed ({exc})", path=path, fix=_DIMAP_FIX) from exc


def read_sidecar(path: str | Path) -> RPCModel:
    """Read an RPC sidecar of any supported kind, by its name: ``.RPB``, DIMAP ``.XML``, else text."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".rpb":
            return read_rpb(path)
        if suffix == ".xml":
            return read_dimap_rpc(path)
        return read_rpc_text(path)
    except ValueError as exc:  # a value that is not a number, or a wrong coefficient count
        raise MissingRPCError(f"the RPC sidecar is malformed ({exc})", path=path,
                              fix="replace it with the vendor's original file") from exc
    except OSError as exc:
        raise MissingRPCError(f"cannot read the RPC sidecar ({exc})", path=path,
                              fix="check the file's permissions, or replace it with the vendor's original") from exc


def sidecar_candidates(image: str | Path) -> list[Path]:
    """Sidecar files that may hold the RPC of ``image``, in the order they are tried.

    ``<stem>.RPB``, ``<stem>_RPC.TXT``, ``<stem>.rpc`` (any case of the usual spellings), and
    the DIMAP ``RPC_<stem>.XML``; for a Pléiades/SPOT ``IMG_<product>[_R<i>C<j>]`` image also
    ``RPC_<product>.XML``.
    """
    image = Path(image)
    folder, stem = image.parent, image.stem
    names = [f"{stem}.RPB", f"{stem}.rpb", f"{stem}_RPC.TXT", f"{stem}_rpc.txt",
             f"{stem}.RPC", f"{stem}.rpc"]
    bases = [stem]
    if stem.upper().startswith("IMG_"):
        bases += [stem[4:], re.sub(r"_R\d+C\d+$", "", stem[4:], flags=re.I)]
    for base in dict.fromkeys(bases):
        names += [f"RPC_{base}.XML", f"RPC_{base}.xml"]
    return [folder / n for n in dict.fromkeys(names)]


def sidecar_hint(image: str | Path) -> str:
    """The sidecar names to suggest for ``image`` in a fix ('a.RPB, a_RPC.TXT, a.rpc or RPC_a.XML')."""
    stem = Path(image).stem
    return f"{stem}.RPB, {stem}_RPC.TXT, {stem}.rpc or (DIMAP) RPC_{stem}.XML"


def has_rpc_sidecar(image: str | Path) -> bool:
    """Whether a file next to ``image`` may hold its RPC (a sidecar or a GDAL ``.aux.xml`` with one)."""
    image = Path(image)
    if any(p.is_file() for p in sidecar_candidates(image)):
        return True
    aux = image.with_name(image.name + ".aux.xml")
    try:
        return aux.is_file() and 'domain="RPC"' in aux.read_text(errors="replace")
    except OSError:
        return False


# What GDAL calls an RPC stored inside the image file, by driver.
_EMBEDDED = {"GTiff": "GeoTIFF tags", "COG": "GeoTIFF tags", "NITF": "NITF tags",
             "JP2OpenJPEG": "JPEG 2000 metadata", "JP2KAK": "JPEG 2000 metadata", "VRT": "VRT metadata"}


def _rpc_file_rank(name: str) -> int | None:
    """How likely a file GDAL opened with an image holds its RPC (0 = an RPC file; None = never)."""
    low = name.lower()
    if low.endswith((".rpb", "_rpc.txt", ".rpc")) or (low.startswith("rpc_") and low.endswith(".xml")):
        return 0
    if low.endswith(".aux.xml"):
        return 2
    if low.endswith(".xml"):  # a Maxar .XML holding an RPB block
        return 1
    return None


def _gdal_rpc_source(ds, image: Path, md: dict[str, str]) -> str:
    """Where GDAL found the RPC metadata ``md`` of ``ds``: its own tags, or which sidecar.

    GDAL merges sidecars into the metadata silently (and a GeoTIFF's ``.RPB`` wins over its
    tags), so the file is opened again with sibling files and ``.aux.xml`` hidden: the RPC
    found then is the one inside the file.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    own: dict[str, str] = {}
    try:
        with warnings.catch_warnings(), rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR",
                                                     GDAL_PAM_ENABLED="NO"):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(image) as bare:
                own = bare.tags(ns="RPC")
    except RasterioError:  # e.g. a .TIL, which GDAL cannot open without its sidecars
        pass
    embedded = _EMBEDDED.get(ds.driver, f"{ds.driver} metadata")
    if own and own == md:
        return embedded
    me = image.resolve()
    ranked = sorted((rank, Path(f).name) for f in ds.files
                    if Path(f).resolve() != me and (rank := _rpc_file_rank(Path(f).name)) is not None)
    return ranked[0][1] if ranked else embedded


def rpc_from_dataset(ds, image: str | Path) -> tuple[RPCModel, str] | None:
    """The RPC of the open raster ``ds`` (of file ``image``) and where it came from, or None.

    GDAL's RPC metadata first (see the module docstring); its source is reported truthfully:
    ``'GeoTIFF tags'``/``'NITF tags'``/``'JPEG 2000 metadata'`` when it is stored in the file,
    else the name of the sidecar GDAL read. Then the hand-written readers on
    :func:`sidecar_candidates` (source: the sidecar's name).
    """
    image = Path(image)
    md = ds.tags(ns="RPC")
    if md:
        return RPCModel.from_gdal(md, source=image), _gdal_rpc_source(ds, image, md)
    for side in sidecar_candidates(image):
        if side.is_file():
            return read_sidecar(side), side.name
    return None


def missing_rpc_error(image: str | Path, also: str = "") -> MissingRPCError:
    """The error for an image without an RPC, naming it and the sidecars it could have."""
    image = Path(image)
    return MissingRPCError(
        f"no RPC camera model in the raster's metadata and no RPC sidecar{also}",
        path=image,
        fix=f"use the vendor's original (non-orthorectified) product, or put its RPC next to it as "
            f"{sidecar_hint(image)}")


def read_rpc(image: str | Path) -> RPCModel:
    """The RPC of an image: from its tags or a sidecar GDAL reads, else a sidecar read here.

    Raises :class:`MissingRPCError` naming the file when none is found, and
    :class:`CorruptRasterError` when the file cannot be opened.
    """
    from skyfall_core.geo.imageio import open_raster

    image = Path(image)
    with open_raster(image) as ds:
        found = rpc_from_dataset(ds, image)
    if found is None:
        raise missing_rpc_error(image)
    return found[0]
