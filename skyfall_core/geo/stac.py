"""STAC 1.0 interchange for the scene catalog: export scenes as Items, import scenes from Items.

Export (:func:`write_stac`): one ``<scene id>.json`` Item per usable scene and an
``items.json`` ItemCollection holding them all, in one folder. Each Item has

- ``geometry``/``bbox``: the scene footprint (WGS84 lon/lat polygon, the image border at the
  RPC's mean height), ``properties.datetime``: the acquisition time (UTC);
- ``gsd`` (metres), the `view` extension's ``view:off_nadir`` (at the satellite),
  ``view:incidence_angle`` (the view zenith at the ground), ``view:azimuth`` (direction of the
  satellite from the ground, clockwise from north), ``view:sun_elevation``/``view:sun_azimuth``;
  ``platform`` from the sensor when it is a known one;
- the `sat` extension's ``sat:platform_international_designator`` (the satellite's COSPAR id,
  :data:`COSPAR_IDS`) when the sensor is a known one, and then only. ``sat:orbit_state``,
  ``sat:absolute_orbit``, ``sat:relative_orbit`` and ``sat:anx_datetime`` are left out: none of the
  metadata the catalog reads (tags, ``.IMD``, Sat-NeRF json, RPCs) holds the satellite's ephemeris or
  orbit numbers, and a sun-synchronous satellite's daytime pass being descending is an assumption,
  not metadata. The sat extension is listed in ``stac_extensions`` only when a ``sat:`` field is
  written;
- ``skyfall:*`` properties: what else the catalog knows (size, pixel type, sources of the
  angles and of the RPC, mean height);
- assets: ``image`` (roles ``data``) with an href relative to the Item file, and ``rpc`` (roles
  ``metadata``) when the RPC comes from a sidecar file (``.RPB``, ``_RPC.TXT``, a Sat-NeRF json,
  ...), plus ``metadata`` for an ``.IMD`` sidecar.

Import (:func:`stac_scene_files`): Items, ItemCollections (or folders of them) on disk; each
Item's image asset href is resolved relative to the Item file (absolute paths and ``file://``
URLs are taken as they are; ``http(s)://`` assets must be downloaded first). The image files are
then catalogued as usual (:func:`skyfall_core.geo.catalog.scan_scenes`), which finds their RPCs
in their tags or in the sidecars named like them, so an ``rpc`` asset must lie next to its image
under the usual sidecar name (a warning says when it does not).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from skyfall_core.errors import ConfigError

log = logging.getLogger(__name__)

STAC_VERSION = "1.0.0"
VIEW_EXTENSION = "https://stac-extensions.github.io/view/v1.0.0/schema.json"
SAT_EXTENSION = "https://stac-extensions.github.io/sat/v1.0.0/schema.json"
ITEM_COLLECTION_NAME = "items.json"
EMBEDDED_RPC_SOURCES = ("GeoTIFF tags", "NITF tags", "JPEG 2000 metadata")
IMAGE_ASSET_KEYS = ("image", "data", "visual", "analytic", "pan", "panchromatic", "ms", "multispectral")
PLATFORMS = {"WV01": "worldview-1", "WV02": "worldview-2", "WV03": "worldview-3", "WV04": "worldview-4",
             "GE01": "geoeye-1", "QB02": "quickbird-2", "IK02": "ikonos-2", "PHR1A": "pleiades-1a",
             "PHR1B": "pleiades-1b", "PNEO3": "pleiades-neo-3", "PNEO4": "pleiades-neo-4",
             "SPOT6": "spot-6", "SPOT7": "spot-7", "WV110": "worldview-2"}
# COSPAR international designators (launch year, launch number, piece) of the sensors the catalog
# recognises; WV110 is WorldView-2's camera, named so in some NITF headers
COSPAR_IDS = {"IK02": "1999-051A", "QB02": "2001-047A", "WV01": "2007-041A", "GE01": "2008-042A",
              "WV02": "2009-055A", "WV110": "2009-055A", "PHR1A": "2011-076F", "SPOT6": "2012-047A",
              "PHR1B": "2012-068A", "WV03": "2014-048A", "SPOT7": "2014-034A", "WV04": "2016-067A",
              "PNEO3": "2021-034A", "PNEO4": "2021-073E"}
MEDIA_TYPES = {".tif": "image/tiff; application=geotiff", ".tiff": "image/tiff; application=geotiff",
               ".ntf": "application/vnd.nitf", ".nitf": "application/vnd.nitf", ".jp2": "image/jp2",
               ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".json": "application/json",
               ".xml": "application/xml"}


def _media_type(path: Path) -> str:
    return MEDIA_TYPES.get(path.suffix.lower(), "text/plain")


def _href(path: Path, item_dir: Path) -> str:
    """``path`` relative to the Item's folder, with forward slashes (absolute across drives)."""
    try:
        return Path(os.path.relpath(path, item_dir)).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def _rpc_file(scene) -> Path | None:
    """The sidecar file the scene's RPC came from, or None when it is embedded in the image."""
    src = scene.rpc_source
    if not src or src in EMBEDDED_RPC_SOURCES:
        return None
    if scene.metadata_json is not None and Path(scene.metadata_json).name == src:
        return Path(scene.metadata_json)
    cand = Path(scene.path).parent / src
    return cand if cand.is_file() else None


def _iso(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def scene_to_item(scene, item_dir: str | Path) -> dict[str, Any]:
    """The STAC 1.0 Item (a dict) of a catalogued scene, its asset hrefs relative to ``item_dir``.

    Raises ValueError for a scene without a footprint or an acquisition time (an Item needs both).
    """
    from shapely.geometry import mapping

    if scene.footprint is None or scene.acquired is None:
        raise ValueError(f"scene {scene.id} has no footprint or no acquisition time")
    item_dir = Path(item_dir).resolve()
    path = Path(scene.path).resolve()
    props: dict[str, Any] = {"datetime": _iso(scene.acquired)}
    optional = {
        "gsd": scene.gsd_m,
        "view:off_nadir": scene.off_nadir,
        "view:incidence_angle": scene.view_zenith,
        "view:azimuth": scene.view_azimuth,
        "view:sun_elevation": scene.sun_elevation,
        "view:sun_azimuth": scene.sun_azimuth,
        "platform": PLATFORMS.get(scene.sensor or ""),
        "sat:platform_international_designator": COSPAR_IDS.get(scene.sensor or ""),
        "skyfall:sensor": scene.sensor,
        "skyfall:width": scene.width,
        "skyfall:height": scene.height,
        "skyfall:bands": scene.bands,
        "skyfall:dtype": scene.dtype,
        "skyfall:mean_height": scene.mean_height,
        "skyfall:min_alt": scene.min_alt,
        "skyfall:max_alt": scene.max_alt,
        "skyfall:sun_source": scene.sun_source,
        "skyfall:off_nadir_source": scene.off_nadir_source,
        "skyfall:rpc_source": scene.rpc_source,
    }
    props.update({k: v for k, v in optional.items() if v is not None})
    assets: dict[str, Any] = {
        "image": {"href": _href(path, item_dir), "type": _media_type(path), "title": path.name,
                  "roles": ["data"]},
    }
    rpc = _rpc_file(scene)
    if rpc is not None:
        assets["rpc"] = {"href": _href(rpc.resolve(), item_dir), "type": _media_type(rpc),
                         "title": f"RPC camera model ({rpc.name})", "roles": ["metadata"]}
    for imd in (path.with_suffix(".IMD"), path.with_suffix(".imd")):
        if imd.is_file():
            assets["metadata"] = {"href": _href(imd.resolve(), item_dir), "type": "text/plain",
                                  "title": "DigitalGlobe image metadata (.IMD)", "roles": ["metadata"]}
            break
    geom = json.loads(json.dumps(mapping(scene.footprint)))
    extensions = [VIEW_EXTENSION] + ([SAT_EXTENSION] if any(k.startswith("sat:") for k in props) else [])
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": extensions,
        "id": scene.id,
        "geometry": geom,
        "bbox": list(scene.footprint.bounds),
        "properties": props,
        "links": [],
        "assets": assets,
    }


def write_stac(scenes: Iterable, out_dir: str | Path) -> list[Path]:
    """Write one Item json per usable scene and the ``items.json`` ItemCollection into ``out_dir``.

    Scenes without a footprint or an acquisition time (unusable files) are skipped with a
    warning. Returns the Item files written (the ItemCollection last).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items, written = [], []
    for s in scenes:
        try:
            item = scene_to_item(s, out_dir)
        except ValueError as exc:
            log.warning("not exported to STAC: %s", exc)
            continue
        items.append(item)
        f = out_dir / f"{s.id}.json"
        f.write_text(json.dumps(item, indent=2))
        written.append(f)
    coll = out_dir / ITEM_COLLECTION_NAME
    coll.write_text(json.dumps({"type": "FeatureCollection", "features": items, "links": []}, indent=2))
    written.append(coll)
    return written


# ----------------------------------------------------------------------------- import
def is_stac_object(obj: Any) -> bool:
    """Whether a parsed json is a STAC Item or an ItemCollection of Items."""
    if not isinstance(obj, dict):
        return False
    if obj.get("type") == "Feature":
        return "stac_version" in obj and isinstance(obj.get("assets"), dict)
    if obj.get("type") == "FeatureCollection":
        feats = obj.get("features")
        return isinstance(feats, list) and bool(feats) and all(is_stac_object(f) for f in feats)
    return False


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def stac_files(path: str | Path) -> list[Path]:
    """The STAC json files of ``path``: the file itself, or a folder's top-level Item and
    ItemCollection jsons (other jsons, such as Sat-NeRF metadata, are not STAC)."""
    path = Path(path)
    if path.is_file():
        return [path] if path.suffix.lower() == ".json" and is_stac_object(_read_json(path)) else []
    if path.is_dir():
        return [p for p in sorted(path.glob("*.json")) if is_stac_object(_read_json(p))]
    return []


def is_stac_input(path: str | Path) -> bool:
    """Whether ``path`` is a STAC Item/ItemCollection json, or a folder holding some."""
    return bool(stac_files(path))


def _resolve(href: str, base: Path) -> Path:
    u = urlparse(href)
    if u.scheme in ("http", "https", "s3", "gs"):
        raise ConfigError(f"the STAC asset {href} is not on disk", path=base,
                          fix="download the assets next to the items (and make the hrefs relative), then import")
    if u.scheme == "file":
        return Path(unquote(u.path))
    p = Path(unquote(href))
    return p if p.is_absolute() else (base / p)


def _image_asset(item: dict[str, Any]) -> dict[str, Any] | None:
    assets = item.get("assets") or {}
    for key in IMAGE_ASSET_KEYS:
        if key in assets:
            return assets[key]
    for a in assets.values():
        if "data" in (a.get("roles") or []):
            return a
    for a in assets.values():
        if str(a.get("type", "")).startswith(("image/", "application/vnd.nitf")):
            return a
    return None


def _items(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return obj["features"] if obj.get("type") == "FeatureCollection" else [obj]


def stac_scene_files(paths: Sequence[str | Path]) -> list[Path]:
    """The image files the STAC Items under ``paths`` point at (resolved, no duplicates, in order).

    Raises :class:`ConfigError` when a path holds no STAC json, an Item has no image asset, or an
    image is missing on disk.
    """
    from skyfall_core.geo.rpc import sidecar_candidates

    out: dict[Path, None] = {}
    for path in paths:
        files = stac_files(path)
        if not files:
            raise ConfigError("no STAC Item or ItemCollection found", path=path,
                              fix="give a STAC Item json, an ItemCollection json or a folder of them")
        for f in files:
            for item in _items(_read_json(f)):
                asset = _image_asset(item)
                if asset is None or not asset.get("href"):
                    raise ConfigError(f"STAC item {item.get('id')!r} has no image asset", path=f,
                                      fix="give the item an 'image' asset (roles: data) pointing at the file")
                img = _resolve(asset["href"], f.parent).resolve()
                if not img.is_file():
                    raise ConfigError(f"the image of STAC item {item.get('id')!r} is missing", path=img,
                                      fix="put the file where the asset href points (relative to the item json)")
                rpc = (item.get("assets") or {}).get("rpc")
                if rpc and rpc.get("href") and urlparse(rpc["href"]).scheme not in ("http", "https", "s3", "gs"):
                    rpc_path = _resolve(rpc["href"], f.parent).resolve()
                    near = {c.resolve() for c in sidecar_candidates(img)} | {
                        img.with_suffix(".json").resolve(),
                        (img.parent.parent / "rpcs_raw" / f"{img.stem}.json").resolve()}
                    if rpc_path not in near:
                        log.warning("STAC item %s: its rpc asset %s is not a sidecar of %s; the catalog reads "
                                    "RPCs only from the image or the sidecars named like it", item.get("id"),
                                    rpc_path, img.name)
                out[img] = None
    return list(out)


def import_stac(paths: Sequence[str | Path], extensions: Sequence[str], cache_path: str | Path | None = None):
    """Catalog the scenes of STAC Items on disk (see :func:`stac_scene_files`): a list of Scene."""
    from skyfall_core.geo.catalog import scan_scenes

    return scan_scenes(stac_scene_files(paths), extensions, cache_path=cache_path)
