"""Scene catalog: what each satellite image in the scene folders is, where and when it looks.

A :class:`Scene` holds a raster's size and type, sensor, acquisition time (UTC), sun angles, the
view angles and ground sample distance derived from its RPC, and its footprint on the ground.
A scene that cannot be used (no RPC, unreadable file) is still listed, with ``error`` set to the
message of the typed error, so that one bad file never hides the others.

Angles are in degrees. Azimuths are clockwise from true north (90 = east): ``sun_azimuth`` is
the direction of the sun, ``view_azimuth`` the direction of the satellite, both seen from the
ground. Elevations are above the horizon. ``view_zenith`` is the angle **at the ground** between
the vertical and the line of sight to the satellite (STAC ``view:incidence_angle``), measured on
the RPC; ``off_nadir`` is the angle **at the satellite** between nadir and the line of sight
(STAC ``view:off_nadir``), a few degrees smaller because of the Earth's curvature: from the
metadata when it states it, else :func:`off_nadir_from_zenith` with the sensor's nominal orbit
altitude (``off_nadir_source`` tells which).

Metadata sources, in the order tried:

- sensor: NITF tags (``NITF_FTITLE``/``NITF_IID2`` catalogue ids such as ``...WV03...``,
  ``NITF_STDIDC_MISSION``), a DigitalGlobe ``.IMD`` sidecar's ``satId``, the TIFF image
  description, a Sat-NeRF json's ``sensor``; else the raw ``NITF_ISORCE``; else None.
- acquired: ``NITF_IDATIM``, ``NITF_STDIDC_ACQUISITION_DATE``, ``.IMD`` ``firstLineTime``, the
  Sat-NeRF json ``acquisition_date``, ``TIFFTAG_DATETIME`` (often the processing date: last).
- sun angles: ``NITF_USE00A_SUN_EL/AZ`` tags, ``.IMD`` ``meanSunEl/meanSunAz``, the Sat-NeRF json;
  else computed (:func:`skyfall_core.geo.sun.solar_position`) at the footprint's centre and the
  acquisition time (``sun_source`` tells which).
- The Sat-NeRF json is looked for next to the image (``<stem>.json``) and in a sibling
  ``rpcs_raw/`` folder (the layout of the Sat-NeRF/DFC2019 data sets).
- off-nadir: the ``OFF_NADIR_ANGLE`` tag, ``.IMD`` ``meanOffNadirViewAngle``, the Sat-NeRF
  json's ``off_nadir``; else computed from the view zenith (see above).
- RPC: see :func:`skyfall_core.geo.rpc.rpc_from_dataset` (GDAL first, then the sidecars named
  like the image), then the Sat-NeRF json; ``rpc_source`` says which ('GeoTIFF tags', 'NITF
  tags', 'JPEG 2000 metadata', or the sidecar's / json's file name).

Scene files (:func:`find_scene_files`): the configured extensions (GeoTIFF, NITF, JPEG 2000,
Maxar ``.TIL`` mosaics — whose tiles are then not listed on their own), and PNG/JPEG images only
when an RPC sidecar is next to them (quicklooks and browse images of a delivery have none).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from skyfall_core.errors import ConfigError, CorruptRasterError, MissingRPCError, SkyfallError, TooFewViewsError
from skyfall_core.geo.imageio import open_raster, probe_readable, til_tiles
from skyfall_core.geo.rpc import (
    RPCModel,
    has_rpc_sidecar,
    missing_rpc_error,
    read_satnerf_json,
    rpc_from_dataset,
    sidecar_candidates,
    sidecar_hint,
)

log = logging.getLogger(__name__)

CACHE_VERSION = 3  # 2: rpc_source names the format of embedded RPCs; 3: view_zenith + true off_nadir
IMAGE_ONLY_SUFFIXES = (".png", ".jpg", ".jpeg")  # scenes only with an RPC sidecar next to them
FOOTPRINT_POINTS_PER_SIDE = 16  # border samples a side localised for the footprint polygon
EARTH_RADIUS_M = 6_371_000.0  # mean radius: the spherical-Earth approximation of off_nadir_from_zenith
DEFAULT_ORBIT_ALTITUDE_M = 617_000.0  # WorldView-3's, for sensors not in ORBIT_ALTITUDE_M
ORBIT_ALTITUDE_M = {  # nominal orbit altitudes (metres) of the usual very-high-resolution sensors
    "WV01": 496_000.0, "WV02": 770_000.0, "WV03": 617_000.0, "WV04": 617_000.0, "GE01": 681_000.0,
    "QB02": 450_000.0, "IK02": 681_000.0, "PHR1A": 694_000.0, "PHR1B": 694_000.0,
    "PNEO3": 620_000.0, "PNEO4": 620_000.0, "SPOT6": 694_000.0, "SPOT7": 694_000.0,
}
_SENSOR_CODE = re.compile(r"(WV0[1-4]|WV110|GE01|QB02|IK02|PHR1[AB]|PNEO[34]|SPOT ?[67])")


@dataclass(frozen=True)
class Scene:
    """One satellite image and what the catalog knows of it (None = unknown)."""

    id: str  # file stem
    path: Path
    width: int | None = None  # pixels
    height: int | None = None
    bands: int | None = None
    dtype: str | None = None  # numpy name of the pixel type ('uint8', 'uint16', 'float32', ...)
    sensor: str | None = None  # 'WV03', ... or the NITF image source
    acquired: datetime | None = None  # UTC, timezone-aware
    sun_elevation: float | None = None  # degrees above the horizon
    sun_azimuth: float | None = None  # degrees clockwise from north
    sun_source: str | None = None  # 'metadata' | 'computed'
    view_azimuth: float | None = None  # direction of the satellite from the ground, cw from north
    off_nadir: float | None = None  # at the satellite, nadir to line of sight, degrees (STAC view:off_nadir)
    gsd_m: float | None = None  # metres per pixel at the image centre (sqrt of pixel area)
    footprint: Any = None  # shapely Polygon, WGS84 lon/lat, the image border at mean_height
    mean_height: float | None = None  # metres above the ellipsoid (the RPC's height offset)
    min_alt: float | None = None  # scene height range from a Sat-NeRF json (metres, ellipsoidal)
    max_alt: float | None = None
    rpc: RPCModel | None = None
    rpc_source: str | None = None  # 'GeoTIFF tags' (etc.: in the file), or the sidecar's/json's file name
    metadata_json: Path | None = None  # the Sat-NeRF json used, if any
    error: str | None = None  # why the scene cannot be used (the typed error's message)
    view_zenith: float | None = None  # at the ground, vertical to the satellite, degrees (view:incidence_angle)
    off_nadir_source: str | None = None  # 'metadata' | 'computed'

    @property
    def ok(self) -> bool:
        return self.error is None and self.rpc is not None

    def to_dict(self, include_rpc: bool = True) -> dict[str, Any]:
        """JSON-able dict (footprint as a GeoJSON geometry, times in ISO 8601)."""
        from shapely.geometry import mapping

        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "rpc":
                if include_rpc:
                    out["rpc"] = v.to_dict() if v is not None else None
            elif f.name == "footprint":
                out[f.name] = json.loads(json.dumps(mapping(v))) if v is not None else None
            elif isinstance(v, datetime):
                out[f.name] = v.isoformat()
            elif isinstance(v, Path):
                out[f.name] = str(v)
            else:
                out[f.name] = v
        return out

    def to_json(self, include_rpc: bool = False, indent: int | None = None) -> str:
        """JSON text for the CLI (without the RPC coefficients unless asked)."""
        return json.dumps(self.to_dict(include_rpc=include_rpc), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scene":
        from shapely.geometry import shape

        kw = dict(d)
        kw["path"] = Path(kw["path"])
        if kw.get("metadata_json"):
            kw["metadata_json"] = Path(kw["metadata_json"])
        if kw.get("acquired"):
            kw["acquired"] = datetime.fromisoformat(kw["acquired"])
        if kw.get("footprint"):
            kw["footprint"] = shape(kw["footprint"])
        if kw.get("rpc"):
            kw["rpc"] = RPCModel.from_dict(kw["rpc"])
        return cls(**kw)


# ----------------------------------------------------------------------------- metadata parsing
def parse_datetime(text: str | None) -> datetime | None:
    """UTC datetime from 'YYYYmmddHHMMSS', 'YYYY:mm:dd HH:MM:SS' or ISO 8601; None if unparsable."""
    if not text:
        return None
    s = str(text).strip().strip('"')
    digits = re.fullmatch(r"(\d{14})(\.\d+)?", s)
    try:
        if digits:
            dt = datetime.strptime(digits.group(1), "%Y%m%d%H%M%S")
        elif re.fullmatch(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}", s):
            dt = datetime.strptime(s, "%Y:%m:%d %H:%M:%S")
        else:
            s = s.replace("Z", "+00:00")
            # Python < 3.11-safe: trim fractional seconds beyond microseconds
            s = re.sub(r"(\.\d{6})\d+", r"\1", s)
            dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _float(v: Any) -> float | None:
    try:
        out = float(str(v).strip())
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def read_imd(path: Path) -> dict[str, str]:
    """First value of each ``key = value;`` of a DigitalGlobe ``.IMD`` file (quotes stripped)."""
    md: dict[str, str] = {}
    for key, value in re.findall(r"^\s*(\w+)\s*=\s*([^;\n]*);", path.read_text(errors="replace"), re.M):
        md.setdefault(key, value.strip().strip('"'))
    return md


def find_satnerf_json(image: Path) -> Path | None:
    """A Sat-NeRF json for ``image``: ``<stem>.json`` next to it, else in ``../rpcs_raw/``."""
    for cand in (image.with_suffix(".json"), image.parent.parent / "rpcs_raw" / f"{image.stem}.json"):
        if cand.is_file():
            return cand
    return None


def read_metadata_json(path: Path) -> dict[str, Any]:
    """The object of a Sat-NeRF style metadata json (its 'rpc' block is parsed only when used)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRasterError(f"cannot read the scene's metadata json ({exc})", path=path,
                                 fix="repair or remove the json (it must be a Sat-NeRF style object)") from exc
    if not isinstance(meta, dict):
        raise CorruptRasterError("the scene's metadata json is not an object", path=path,
                                 fix="repair or remove the json (it must be a Sat-NeRF style object)")
    return meta


def _imd_path(image: Path) -> Path | None:
    for cand in (image.with_suffix(".IMD"), image.with_suffix(".imd")):
        if cand.is_file():
            return cand
    return None


def _sensor(tags: dict[str, str], imd: dict[str, str], meta: dict[str, Any]) -> str | None:
    texts = [tags.get("NITF_FTITLE", ""), tags.get("NITF_IID2", ""), tags.get("NITF_STDIDC_MISSION", ""),
             imd.get("satId", ""), tags.get("TIFFTAG_IMAGEDESCRIPTION", ""),
             str(meta.get("sensor", "") or meta.get("satellite", ""))]
    for text in texts:
        m = _SENSOR_CODE.search(text.upper())
        if m:
            return m.group(1).replace(" ", "")
    for text in (str(meta.get("sensor", "") or ""), imd.get("satId", ""), tags.get("SATELLITE_ID", ""),
                 tags.get("SATELLITEID", ""), tags.get("NITF_STDIDC_MISSION", ""), tags.get("NITF_ISORCE", "")):
        if text.strip():
            return text.strip()
    return None


def _acquired(tags: dict[str, str], imd: dict[str, str], meta: dict[str, Any]) -> datetime | None:
    for text in (tags.get("NITF_IDATIM"), tags.get("NITF_STDIDC_ACQUISITION_DATE"),
                 imd.get("firstLineTime"), meta.get("acquisition_date"), tags.get("TIFFTAG_DATETIME")):
        dt = parse_datetime(text)
        if dt is not None:
            return dt
    return None


def _metadata_sun(tags: dict[str, str], imd: dict[str, str], meta: dict[str, Any]
                  ) -> tuple[float, float] | None:
    for el, az in ((tags.get("NITF_USE00A_SUN_EL"), tags.get("NITF_USE00A_SUN_AZ")),
                   (imd.get("meanSunEl"), imd.get("meanSunAz")),
                   (meta.get("sun_elevation"), meta.get("sun_azimuth"))):
        el_f, az_f = _float(el), _float(az)
        if el_f is not None and az_f is not None:
            return el_f, az_f % 360.0
    return None


def _metadata_off_nadir(tags: dict[str, str], imd: dict[str, str], meta: dict[str, Any]) -> float | None:
    for v in (tags.get("OFF_NADIR_ANGLE"), imd.get("meanOffNadirViewAngle"), meta.get("off_nadir")):
        f = _float(v)
        if f is not None and 0.0 <= f < 90.0:
            return f
    return None


def off_nadir_from_zenith(zenith_deg: float, sensor: str | None = None,
                          altitude_m: float | None = None) -> float:
    """Off-nadir angle at the satellite (degrees) from the view zenith angle at the ground.

    Spherical Earth (radius :data:`EARTH_RADIUS_M`), satellite at ``altitude_m`` above it
    (default: the sensor's nominal orbit altitude, :data:`ORBIT_ALTITUDE_M`, else WorldView-3's
    617 km): by the law of sines in the triangle Earth centre / ground point / satellite,
    sin(off_nadir) = R sin(zenith) / (R + h). Ignores the ground point's height and the
    ellipsoid's flattening (well under 0.1 degree), and the orbit's real altitude (a 50 km
    error moves a 30-degree zenith's off-nadir by about 0.2 degree).
    """
    h = altitude_m if altitude_m is not None else ORBIT_ALTITUDE_M.get(sensor or "", DEFAULT_ORBIT_ALTITUDE_M)
    s = EARTH_RADIUS_M * math.sin(math.radians(zenith_deg)) / (EARTH_RADIUS_M + h)
    return math.degrees(math.asin(min(1.0, max(-1.0, s))))


# ----------------------------------------------------------------------------- RPC geometry
def footprint(rpc: RPCModel, width: int, height: int, h: float,
              points_per_side: int = FOOTPRINT_POINTS_PER_SIDE):
    """The image border localised at height ``h``: a counter-clockwise shapely Polygon (lon, lat).

    The border runs along the outer pixel edges (centres at integers, so edges at -0.5 and
    size - 0.5).
    """
    from shapely.geometry import Polygon
    from shapely.geometry.polygon import orient

    t = np.linspace(0.0, 1.0, points_per_side, endpoint=False)
    r_lo, r_hi, c_lo, c_hi = -0.5, height - 0.5, -0.5, width - 0.5
    rows = np.concatenate([np.full_like(t, r_lo), r_lo + t * (r_hi - r_lo),
                           np.full_like(t, r_hi), r_hi - t * (r_hi - r_lo)])
    cols = np.concatenate([c_lo + t * (c_hi - c_lo), np.full_like(t, c_hi),
                           c_hi - t * (c_hi - c_lo), np.full_like(t, c_lo)])
    lon, lat = rpc.localization(rows, cols, np.full_like(rows, h))
    return orient(Polygon(np.stack([lon, lat], axis=1)), sign=1.0)


def view_angles(rpc: RPCModel, row: float, col: float, h: float, dh: float | None = None
                ) -> tuple[float, float]:
    """(view azimuth, view zenith) in degrees of the satellite seen from image point (row, col).

    The pixel is localised at heights ``h`` and ``h + dh`` (``dh`` defaults to half the RPC's
    height scale): the ground ray between the two points, in the local ENU frame of the lower
    one, points at the satellite. Azimuth = atan2(east, north), clockwise from north; the
    zenith is the **view zenith angle at the ground** (angle of the ray from the local
    vertical, STAC ``view:incidence_angle``). The sensor's off-nadir angle is smaller because of
    the Earth's curvature (:func:`off_nadir_from_zenith`: about 3 degrees less at 30 degrees for
    WorldView-3); for ranking and filtering views the zenith is what matters.
    """
    from skyfall_core.geo.frames import LocalFrame

    dh = 0.5 * rpc.alt_scale if dh is None else dh
    lon, lat = rpc.localization([row, row], [col, col], [h, h + dh])
    frame = LocalFrame(float(lon[0]), float(lat[0]), h)
    e, n, u = frame.geodetic_to_enu(lon[1], lat[1], h + dh)
    azimuth = math.degrees(math.atan2(e, n)) % 360.0
    zenith = math.degrees(math.atan2(math.hypot(e, n), u))
    return azimuth, zenith


def ground_sample_distance(rpc: RPCModel, row: float, col: float, h: float, step: float = 5.0
                           ) -> float:
    """Metres per pixel at image point (row, col) on the plane of height ``h``.

    The square root of the ground area of one pixel (from localising neighbours ``step`` pixels
    away), i.e. the geometric mean of the along-row and along-column sample distances.
    """
    from skyfall_core.geo.frames import LocalFrame

    rows = np.array([row - step, row + step, row, row])
    cols = np.array([col, col, col - step, col + step])
    lon, lat = rpc.localization(rows, cols, np.full(4, h))
    enu = LocalFrame(float(lon.mean()), float(lat.mean()), h).geodetic_to_enu(lon, lat, h)  # [4, 3]
    d_row = (enu[1, :2] - enu[0, :2]) / (2 * step)
    d_col = (enu[3, :2] - enu[2, :2]) / (2 * step)
    return float(math.sqrt(abs(d_row[0] * d_col[1] - d_row[1] * d_col[0])))


# ----------------------------------------------------------------------------- reading a scene
def _rpc_of(ds, path: Path, meta_path: Path | None) -> tuple[RPCModel, str]:
    try:
        return _find_rpc(ds, path, meta_path)
    except ValueError as exc:  # a malformed number or coefficient count in the RPC metadata
        raise MissingRPCError(f"the RPC metadata is malformed ({exc})", path=path,
                              fix="replace the RPC tags or sidecar with the vendor's original") from exc


def _find_rpc(ds, path: Path, meta_path: Path | None) -> tuple[RPCModel, str]:
    found = rpc_from_dataset(ds, path)
    if found is not None:
        return found
    if meta_path is not None:
        return read_satnerf_json(meta_path)[0], meta_path.name
    raise missing_rpc_error(path, also=" or Sat-NeRF json")


def read_scene(path: str | Path) -> Scene:
    """Read one scene's metadata and RPC geometry; failures become ``Scene.error``."""
    path = Path(path).resolve()
    scene = Scene(id=path.stem, path=path)
    try:
        with open_raster(path) as ds:
            scene = replace(scene, width=ds.width, height=ds.height, bands=ds.count,
                            dtype=str(ds.dtypes[0]))
            probe_readable(ds, path)
            tags = ds.tags()
            meta_path = find_satnerf_json(path)
            meta = read_metadata_json(meta_path) if meta_path is not None else {}
            imd_path = _imd_path(path)
            imd = read_imd(imd_path) if imd_path is not None else {}
            scene = replace(scene, sensor=_sensor(tags, imd, meta), acquired=_acquired(tags, imd, meta),
                            metadata_json=meta_path,
                            min_alt=_float(meta.get("min_alt")), max_alt=_float(meta.get("max_alt")))
            rpc, rpc_source = _rpc_of(ds, path, meta_path)
        return _with_geometry(replace(scene, rpc=rpc, rpc_source=rpc_source), tags, imd, meta)
    except SkyfallError as exc:
        return replace(scene, error=exc.message)


def _with_geometry(scene: Scene, tags: dict[str, str], imd: dict[str, str], meta: dict[str, Any]
                   ) -> Scene:
    """Fill footprint, view angles, GSD and sun angles from the RPC (and the metadata)."""
    from skyfall_core.geo.sun import solar_position

    rpc, h = scene.rpc, scene.rpc.alt_offset
    rc, cc = (scene.height - 1) / 2.0, (scene.width - 1) / 2.0
    poly = footprint(rpc, scene.width, scene.height, h)
    view_az, zenith = view_angles(rpc, rc, cc, h)
    off_nadir = _metadata_off_nadir(tags, imd, meta)
    off_nadir_source = "metadata" if off_nadir is not None else "computed"
    if off_nadir is None:
        off_nadir = off_nadir_from_zenith(zenith, scene.sensor)
    gsd = ground_sample_distance(rpc, rc, cc, h)
    sun = _metadata_sun(tags, imd, meta)
    sun_source = "metadata" if sun is not None else None
    if sun is None and scene.acquired is not None:
        centre = poly.centroid
        el, az = solar_position(scene.acquired, centre.x, centre.y)
        sun, sun_source = (float(el), float(az)), "computed"
    return replace(scene, footprint=poly, mean_height=float(h), view_azimuth=view_az,
                   view_zenith=zenith, off_nadir=off_nadir, off_nadir_source=off_nadir_source, gsd_m=gsd,
                   sun_elevation=sun[0] if sun else None, sun_azimuth=sun[1] if sun else None,
                   sun_source=sun_source)


# ----------------------------------------------------------------------------- scanning + cache
def _signature(path: Path) -> list[list[Any]]:
    """(name, size, mtime_ns) of the image and of every existing file its metadata may come from."""
    files = [path, *sidecar_candidates(path), path.with_name(path.name + ".aux.xml"),
             path.with_suffix(".IMD"), path.with_suffix(".imd"),
             path.with_suffix(".json"), path.parent.parent / "rpcs_raw" / f"{path.stem}.json"]
    sig = []
    for f in dict.fromkeys(files):
        try:
            st = f.stat()
        except OSError:
            continue
        sig.append([str(f), st.st_size, st.st_mtime_ns])
    return sig


def _load_cache(cache_path: Path | None) -> dict[str, Any]:
    if cache_path is None or not cache_path.is_file():
        return {}
    try:
        data = json.loads(cache_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring unreadable scene cache %s (%s); it will be rewritten", cache_path, exc)
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    return data.get("entries", {})


def _from_cache(entry: dict[str, Any]) -> Scene | None:
    """The cached scene, or None when the entry does not parse (then the file is re-read)."""
    try:
        return Scene.from_dict(entry["scene"])
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring a stale scene cache entry (%r)", exc)
        return None


def _save_cache(cache_path: Path, entries: dict[str, Any]) -> None:
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(cache_path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}))
    os.replace(tmp, cache_path)


def _exts(extensions: Sequence[str]) -> list[str]:
    """Lower-case extensions with the dot, in the given order, without duplicates."""
    return list(dict.fromkeys(("." + e.lstrip(".")).lower() for e in extensions))


def _has_rpc_nearby(path: Path) -> bool:
    """Whether a PNG/JPEG has something that may hold its RPC: a sidecar, .aux.xml or Sat-NeRF json."""
    return has_rpc_sidecar(path) or find_satnerf_json(path) is not None


def _til_members(til: Path) -> set[Path]:
    try:
        return {t["filename"].resolve() for t in til_tiles(til)}
    except SkyfallError:  # an unreadable .TIL is listed with its error by read_scene
        return set()


@dataclass(frozen=True)
class FolderContents:
    """What :func:`survey_scene_files` found: the scene files, and what it passed over."""

    scenes: list[Path]
    without_rpc: list[Path]  # PNG/JPEG images with no RPC sidecar (not scenes)
    others: list[Path]  # files of no scene extension (sidecars, archives, documents, ...)


def survey_scene_files(folders: Iterable[str | Path], extensions: Sequence[str]) -> FolderContents:
    """The scene files under ``folders`` (see :func:`find_scene_files`) and the files passed over."""
    exts = _exts(extensions)
    found: dict[Path, None] = {}
    without_rpc: list[Path] = []
    others: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            found[folder.resolve()] = None
            continue
        if not folder.is_dir():
            raise ConfigError("scene folder not found", path=folder,
                              fix="create it, or correct/remove it in [catalog] folders of config.toml")
        for p in sorted(folder.rglob("*")):
            if not p.is_file():
                continue
            suffix = p.suffix.lower()
            if suffix not in exts:
                others.append(p)
            elif suffix in IMAGE_ONLY_SUFFIXES and not _has_rpc_nearby(p):
                without_rpc.append(p)
            else:
                found[p.resolve()] = None
    tiles: set[Path] = set()
    for p in found:
        if p.suffix.lower() == ".til":
            tiles |= _til_members(p)
    return FolderContents(sorted(p for p in found if p not in tiles), without_rpc, others)


def find_scene_files(folders: Iterable[str | Path], extensions: Sequence[str]) -> list[Path]:
    """Files under ``folders`` (recursively; a folder entry may also be a file) with one of the
    ``extensions`` (case-insensitive, with or without the dot), sorted, without duplicates.

    PNG/JPEG files count only with an RPC sidecar next to them, and the tiles a ``.TIL`` lists
    are not scenes of their own (the .TIL is)."""
    return survey_scene_files(folders, extensions).scenes


def _names(paths: Sequence[Path], n: int = 5) -> str:
    shown = ", ".join(p.name for p in paths[:n])
    return shown + (f" and {len(paths) - n} more" if len(paths) > n else "")


def require_scene_files(folders: Iterable[str | Path], extensions: Sequence[str]) -> list[Path]:
    """:func:`find_scene_files`, raising :class:`TooFewViewsError` when it finds nothing.

    The message names the folders and the extensions looked for, and what was passed over
    (PNG/JPEG without an RPC sidecar, archives to unpack, other files), with the fix.
    """
    folders = [Path(f) for f in folders]
    got = survey_scene_files(folders, extensions)
    if got.scenes:
        return got.scenes
    exts = _exts(extensions)
    plain = [e for e in exts if e not in IMAGE_ONLY_SUFFIXES]
    looked = ", ".join(plain)
    if any(e in IMAGE_ONLY_SUFFIXES for e in exts):
        looked += ", and " + "/".join(e for e in exts if e in IMAGE_ONLY_SUFFIXES) + " images with an RPC sidecar"
    where = ", ".join(str(f) for f in folders) or "(no folder given)"
    problem = f"no satellite scene found (looked for {looked}, in subfolders too)"
    if got.without_rpc:
        first = got.without_rpc[0]
        problem += (f"; {len(got.without_rpc)} image(s) have no RPC camera model next to them: "
                    f"{_names(got.without_rpc)}")
        fix = (f"put each image's RPC beside it, named like the image (for {first.name}: "
               f"{sidecar_hint(first)}), or use the vendor's original GeoTIFF/NITF/JPEG 2000 product")
    else:
        archives = [p for p in got.others if p.suffix.lower() in (".zip", ".tar", ".gz", ".tgz", ".7z")]
        if archives:
            problem += f"; it holds archive(s) to unpack first: {_names(archives)}"
        elif got.others:
            problem += f"; it holds {len(got.others)} other file(s): {_names(got.others)}"
        else:
            problem += "; the folder is empty"
        fix = ("put the vendor's images (with their RPC sidecars) in the folder, unpacked, or point to the folder "
               "that holds them" + ("" if not archives else " (unzip the delivery)"))
    raise TooFewViewsError(problem, path=where, fix=fix)


def no_usable_scene_error(scenes: Sequence[Scene], max_listed: int = 20) -> TooFewViewsError:
    """The error when none of ``scenes`` can be used: each file and why (or that there are none)."""
    if not scenes:
        return TooFewViewsError(
            "no usable scene: the scene list is empty",
            fix="add the vendor's images (GeoTIFF/NITF/JPEG 2000 with their RPCs) to the scene folder, "
                "or select scenes")
    broken = [s for s in scenes if not s.ok or s.footprint is None]
    lines = [f"  - {s.error}" if s.error and str(s.path) in s.error else
             f"  - {s.path}: {s.error or 'no footprint (re-scan the folder)'}" for s in broken[:max_listed]]
    if len(broken) > max_listed:
        lines.append(f"  - ... and {len(broken) - max_listed} more")
    return TooFewViewsError(
        f"no usable scene: none of the {len(scenes)} scene file(s) can be used:\n" + "\n".join(lines) + "\n",
        fix="fix or remove the files above, as each line says (most often: give each image its RPC, in "
            "its tags or a sidecar named like it)")


def scan_scenes(folders: Iterable[str | Path], extensions: Sequence[str],
                cache_path: str | Path | None = None) -> list[Scene]:
    """Catalog every scene file under ``folders`` (recursive), sorted by path.

    With ``cache_path`` (a json file), a file whose size and mtime (and those of its sidecars)
    are unchanged since the last scan is taken from the cache instead of being re-read; the
    cache is rewritten with the current entries. Unusable files are listed with ``error`` set.
    """
    cache_path = Path(cache_path) if cache_path is not None else None
    cached = _load_cache(cache_path)
    scenes: list[Scene] = []
    entries: dict[str, Any] = {}
    for path in find_scene_files(folders, extensions):
        sig = _signature(path)
        hit = cached.get(str(path))
        scene = _from_cache(hit) if hit is not None and hit.get("signature") == sig else None
        if scene is None:
            scene = read_scene(path)
        scenes.append(scene)
        entries[str(path)] = {"signature": sig, "scene": scene.to_dict()}
    if cache_path is not None:
        _save_cache(cache_path, entries)
    return scenes


def catalog_table(scenes: Iterable[Scene]) -> list[dict[str, Any]]:
    """One row of rounded, display-ready columns per scene (for the CLI and the app)."""
    def r(v: float | None, nd: int) -> float | None:
        return None if v is None else round(float(v), nd)

    rows = []
    for s in scenes:
        rows.append({
            "id": s.id,
            "sensor": s.sensor,
            "acquired": s.acquired.strftime("%Y-%m-%d %H:%M:%S") if s.acquired else None,
            "size": f"{s.width}x{s.height}" if s.width else None,
            "bands": s.bands,
            "dtype": s.dtype,
            "sun_el": r(s.sun_elevation, 1),
            "sun_az": r(s.sun_azimuth, 1),
            "view_zenith": r(s.view_zenith, 1),
            "off_nadir": r(s.off_nadir, 1),
            "view_az": r(s.view_azimuth, 1),
            "gsd_m": r(s.gsd_m, 2),
            "error": s.error,
        })
    return rows
