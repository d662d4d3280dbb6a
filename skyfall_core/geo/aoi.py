"""Area of interest: loading and validation, scene coverage and selection, per-scene crops.

An AOI is one WGS84 polygon (GeoJSON Polygon, Feature, or FeatureCollection holding exactly one
polygon; longitude/latitude degrees). Areas and buffers are computed in the UTM zone of the AOI
centre. An optional ellipsoidal height range (metres) comes from the GeoJSON properties
``min_height_m``/``max_height_m``.

A :class:`Crop` is the part of a scene that sees the AOI (plus a margin) at every height of the
height range, read as a normalised RGB array, with the RPC of that array: projecting a ground
point with ``crop.rpc`` gives its pixel in ``crop.image`` (integer coordinates at pixel centres).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from skyfall_core.config import AOIConfig
from skyfall_core.errors import AOIError, SkyfallError, TooFewViewsError
from skyfall_core.geo.catalog import Scene
from skyfall_core.geo.frames import LocalFrame, utm_epsg
from skyfall_core.geo.imageio import check_units, read_window
from skyfall_core.geo.rpc import RPCModel

COARSE_HEIGHT_HALF_RANGE_M = 100.0  # +- around the median RPC height offset when nothing better is known
CROP_EDGE_STEP_M = 5.0  # the buffered AOI border is sampled this finely before projection


def _transformer(src: str, dst: str):
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def reproject(geom, src: str, dst: str):
    """A shapely geometry from CRS ``src`` to ``dst`` (both in x=lon/easting order)."""
    import shapely

    t = _transformer(src, dst)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


@dataclass(frozen=True)
class HeightRange:
    """Ellipsoidal heights (metres) the AOI's content spans, and where the figures came from.

    ``kind`` names the source in one word (``aoi``, ``dem``, ``satnerf``, ``images``, ``coarse``);
    ``source`` says it for people. ``ground_m``: the ground's height when the source measures it
    apart from the range's margins (the image estimate), else None (the low end is the ground).
    """

    low_m: float
    high_m: float
    source: str
    kind: str = field(default="", compare=False)
    ground_m: float | None = None
    details: dict[str, Any] | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"low_m": round(self.low_m, 2), "high_m": round(self.high_m, 2), "source": self.source,
                "kind": self.kind, "ground_m": None if self.ground_m is None else round(self.ground_m, 2),
                **({"details": self.details} if self.details else {})}


@dataclass(frozen=True)
class AOI:
    """A validated area of interest."""

    polygon: Any  # shapely Polygon, WGS84 (lon, lat) degrees
    area_m2: float  # in the UTM zone of the centre
    centre: tuple[float, float]  # (lon, lat) degrees: the polygon's centroid (taken in UTM)
    utm_epsg: int
    height_range: tuple[float, float] | None = None  # (min, max) metres, ellipsoidal, if given
    source: str = "<geojson>"  # the file it was read from, for messages
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def utm_crs(self) -> str:
        return f"EPSG:{self.utm_epsg}"

    def to_utm(self, geom=None):
        """A WGS84 geometry (default: the AOI polygon) in the AOI's UTM zone (metres)."""
        return reproject(self.polygon if geom is None else geom, "EPSG:4326", self.utm_crs)

    def buffered(self, margin_m: float):
        """The AOI polygon grown by ``margin_m`` metres (mitred corners), in WGS84."""
        grown = self.to_utm().buffer(margin_m, join_style="mitre") if margin_m > 0 else self.to_utm()
        return reproject(grown, self.utm_crs, "EPSG:4326")

    def frame(self, h0: float = 0.0) -> LocalFrame:
        """The local ENU frame at the AOI centre, at ellipsoidal height ``h0`` (metres)."""
        return LocalFrame(self.centre[0], self.centre[1], float(h0))

    def to_geojson(self) -> dict[str, Any]:
        """A GeoJSON Feature of the AOI (for job.json)."""
        from shapely.geometry import mapping

        props = dict(self.properties)
        if self.height_range is not None:
            props.update(min_height_m=self.height_range[0], max_height_m=self.height_range[1])
        return {"type": "Feature", "properties": props,
                "geometry": json.loads(json.dumps(mapping(self.polygon)))}


# ----------------------------------------------------------------------------- loading
def _aoi_error(problem: str, source: str, fix: str) -> AOIError:
    return AOIError(problem, path=source, fix=fix)


def _read_geojson(source: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(GeoJSON mapping, name for messages) from a path, a JSON text or a mapping."""
    if isinstance(source, dict):
        return source, "<geojson>"
    if isinstance(source, str) and source.lstrip().startswith("{"):
        text, name = source, "<geojson>"
    else:
        path = Path(source)
        name = str(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise _aoi_error("AOI file not found", name, "check the path of the GeoJSON file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise _aoi_error(f"cannot read the AOI file ({exc})", name,
                             "save the AOI as a UTF-8 GeoJSON file") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _aoi_error(f"not valid JSON ({exc})", name,
                         "save the AOI as GeoJSON (e.g. from geojson.io or QGIS)") from exc
    if not isinstance(data, dict):
        raise _aoi_error("the AOI is not a GeoJSON object", name, "give a GeoJSON Polygon or Feature")
    return data, name


def _polygon_geometry(data: dict[str, Any], name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(geometry, properties) of the one polygon in a GeoJSON object."""
    kind = data.get("type")
    props: dict[str, Any] = {}
    if kind == "FeatureCollection":
        feats = [f for f in data.get("features") or []
                 if isinstance(f, dict) and (f.get("geometry") or {}).get("type") in ("Polygon", "MultiPolygon")]
        if len(feats) != 1:
            raise _aoi_error(f"the FeatureCollection holds {len(feats)} polygons; an AOI is one polygon",
                             name, "keep a single polygon feature (merge or delete the others)")
        data = feats[0]
        kind = "Feature"
    if kind == "Feature":
        props = dict(data.get("properties") or {})
        data = data.get("geometry") or {}
        kind = data.get("type")
    if kind == "MultiPolygon" and len(data.get("coordinates") or []) == 1:
        data = {"type": "Polygon", "coordinates": data["coordinates"][0]}
        kind = "Polygon"
    if kind != "Polygon":
        raise _aoi_error(f"the AOI geometry is a {kind or 'missing geometry'}, not a single Polygon",
                         name, "draw the AOI as one polygon")
    return data, props


def _check_crs(data: dict[str, Any], name: str) -> None:
    crs = data.get("crs")
    if crs is None:
        return
    crs_name = str((crs.get("properties") or {}).get("name", "")) if isinstance(crs, dict) else str(crs)
    if not any(tag in crs_name.upper() for tag in ("CRS84", "4326")):
        raise _aoi_error(f"the AOI is in CRS {crs_name!r}, not WGS84 longitude/latitude", name,
                         "reproject the AOI to EPSG:4326 (e.g. ogr2ogr -t_srs EPSG:4326 out.geojson in.geojson)")


def _height_range(props: dict[str, Any], name: str) -> tuple[float, float] | None:
    lo, hi = props.get("min_height_m"), props.get("max_height_m")
    if lo is None and hi is None:
        return None
    try:
        lo_f, hi_f = float(lo), float(hi)
    except (TypeError, ValueError):
        raise _aoi_error(f"min_height_m/max_height_m must both be numbers (got {lo!r}, {hi!r})", name,
                         "give both properties in metres above the WGS84 ellipsoid, or neither") from None
    if not (math.isfinite(lo_f) and math.isfinite(hi_f) and lo_f < hi_f):
        raise _aoi_error(f"min_height_m ({lo_f}) must be below max_height_m ({hi_f})", name,
                         "give the AOI's lowest and highest ellipsoidal heights in metres")
    return lo_f, hi_f


def load_aoi(source: str | Path | dict[str, Any], limits: AOIConfig | None = None) -> AOI:
    """Load and validate an AOI from a GeoJSON file path, GeoJSON text, or a GeoJSON mapping.

    Checks: one Polygon; WGS84 lon/lat ranges; a valid geometry (no self-intersection); area in
    [limits.min_area_m2, limits.max_area_m2] (default: the config defaults). Raises
    :class:`AOIError` naming the file and the fix.
    """
    from shapely.geometry import shape
    from shapely.validation import explain_validity

    limits = limits or AOIConfig()
    data, name = _read_geojson(source)
    _check_crs(data, name)
    geom, props = _polygon_geometry(data, name)
    try:
        rings = [np.asarray(r, dtype=float)[:, :2] for r in geom.get("coordinates") or []]
    except (ValueError, IndexError, TypeError) as exc:
        raise _aoi_error(f"malformed polygon coordinates ({exc})", name,
                         "give the polygon as [[[lon, lat], ...]] rings") from None
    if not rings or any(len(r) < 4 for r in rings):
        raise _aoi_error("the polygon needs at least 3 distinct corners per ring (4 positions, closed)",
                         name, "redraw the AOI as a closed polygon")
    pts = np.concatenate(rings)
    if not np.all(np.isfinite(pts)):
        raise _aoi_error("the polygon has non-finite coordinates", name, "redraw the AOI")
    if np.any(np.abs(pts[:, 0]) > 180) or np.any(np.abs(pts[:, 1]) > 90):
        bad = pts[(np.abs(pts[:, 0]) > 180) | (np.abs(pts[:, 1]) > 90)][0]
        raise _aoi_error(f"coordinate ({bad[0]:g}, {bad[1]:g}) is outside longitude [-180, 180] / "
                         f"latitude [-90, 90]", name,
                         "give WGS84 degrees in (longitude, latitude) order; reproject projected "
                         "coordinates (e.g. UTM metres) to EPSG:4326")
    polygon = shape({"type": "Polygon", "coordinates": [r.tolist() for r in rings]})
    if not polygon.is_valid:
        raise _aoi_error(f"the polygon is not valid: {explain_validity(polygon)}", name,
                         "redraw the AOI without crossing edges (a bow-tie is two polygons), or "
                         "repair it (QGIS 'Fix geometries', shapely make_valid)")
    epsg = utm_epsg(polygon.centroid.x, polygon.centroid.y)
    utm = reproject(polygon, "EPSG:4326", f"EPSG:{epsg}")
    area = float(utm.area)
    if not limits.min_area_m2 <= area <= limits.max_area_m2:
        size = "small" if area < limits.min_area_m2 else "large"
        raise _aoi_error(f"the AOI is too {size}: {area:,.0f} m² (allowed {limits.min_area_m2:,.0f} to "
                         f"{limits.max_area_m2:,.0f} m²)", name,
                         f"draw a {'larger' if size == 'small' else 'smaller'} AOI, or change "
                         "[aoi] min_area_m2/max_area_m2 in config.toml")
    c = reproject(utm.centroid, f"EPSG:{epsg}", "EPSG:4326")
    return AOI(polygon=polygon, area_m2=area, centre=(float(c.x), float(c.y)), utm_epsg=epsg,
               height_range=_height_range(props, name), source=name, properties=props)


# ----------------------------------------------------------------------------- scene selection
def coverage(aoi: AOI, scene: Scene) -> float:
    """Fraction (0..1) of the AOI's area inside the scene's footprint (0 if it has none)."""
    if scene.footprint is None or scene.footprint.is_empty:
        return 0.0
    inter = aoi.to_utm().intersection(aoi.to_utm(scene.footprint))
    return float(min(1.0, inter.area / aoi.area_m2))


def _nearest(aoi: AOI, scenes: Sequence[Scene]) -> tuple[Scene, float]:
    """The scene whose footprint is nearest the AOI, and the geodesic distance to it (metres)."""
    from pyproj import Geod
    from shapely.ops import nearest_points

    geod = Geod(ellps="WGS84")
    best: tuple[Scene, float] | None = None
    for s in scenes:
        a, b = nearest_points(aoi.polygon, s.footprint)
        d = float(geod.inv(a.x, a.y, b.x, b.y)[2])
        if best is None or d < best[1]:
            best = (s, d)
    assert best is not None
    return best


def select_usable(aoi: AOI, scenes: Sequence[Scene], min_coverage: float, min_views: int
                  ) -> list[Scene]:
    """The scenes that cover at least ``min_coverage`` of the AOI (input order kept).

    Raises :class:`AOIError` ("AOI outside the scenes") when the AOI intersects no scene,
    :class:`TooFewViewsError` when fewer than ``min_views`` scenes cover it, and
    :class:`~skyfall_core.errors.MixedUnitsError` when the usable ones mix reflectance and DNs.
    """
    candidates = [s for s in scenes if s.ok and s.footprint is not None]
    if not candidates:  # each file and why it cannot be used (not the AOI's fault)
        from skyfall_core.geo.catalog import no_usable_scene_error

        raise no_usable_scene_error(scenes)
    cov = [coverage(aoi, s) for s in candidates]
    if max(cov) <= 0.0:
        near, dist = _nearest(aoi, candidates)
        raise AOIError(
            f"AOI outside the scenes: it intersects none of the {len(candidates)} scenes; the nearest "
            f"is {near.id} ({dist / 1000:.2f} km away, {near.path})",
            path=aoi.source,
            fix="draw the AOI inside the scenes' footprints (list them with `python -m skyfall_core "
                "scenes`), or add scenes that cover it")
    usable = [s for s, c in zip(candidates, cov, strict=True) if c >= min_coverage]
    if len(usable) < min_views:
        partial = sorted(((c, s.id) for s, c in zip(candidates, cov, strict=True) if 0 < c < min_coverage),
                         reverse=True)
        part = ", ".join(f"{sid} ({c:.0%})" for c, sid in partial[:5])
        raise TooFewViewsError(
            f"only {len(usable)} scene(s) cover at least {min_coverage:.0%} of the AOI; a reconstruction "
            f"needs {min_views}" + (f" (partly covering: {part})" if part else ""),
            path=aoi.source,
            fix="add scenes of this area, shrink the AOI to the part the scenes share, or lower "
                "[aoi] min_coverage / min_views in config.toml")
    check_units((s.path, s.dtype) for s in usable)
    return usable


def estimate_height_range(aoi: AOI, scenes: Sequence[Scene], margin_m: float = 0.0, *,
                          dem_path: str | Path | None = None, from_images: bool = False,
                          crop_margin_m: float = 20.0, log=None) -> HeightRange:
    """The ellipsoidal height range (metres) of the AOI's content, widened by ``margin_m``.

    Sources, in order (the first one known wins; ``kind``/``source`` of the result say which):

    1. the AOI's ``min_height_m``/``max_height_m`` properties;
    2. a DEM GeoTIFF (``dem_path``, e.g. Copernicus GLO-30 or SRTM) sampled over the AOI; geoid
       heights are converted with PROJ's geoid grid, or, without it, the range is searched by
       the images inside the DEM's heights widened by the geoid undulation bounds;
    3. the widest ``min_alt``/``max_alt`` of the scenes' Sat-NeRF jsons;
    4. with ``from_images``: a coarse-to-fine tie-point sweep over the RPCs' valid heights
       (:func:`skyfall_core.cameras.heights.estimate_from_images`; needs two views or more);
       without it (previews of one scene): the median RPC height offset +- 100 m, marked
       ``coarse`` — vendors' offsets often lie hundreds of metres from the ground, so cameras
       must never be fitted over it.

    Raises :class:`~skyfall_core.errors.SkyfallError` subclasses (exit code 2) naming the file
    and the fix when a given DEM cannot be used or the images cannot tell the heights.
    """
    say = log or (lambda _m: None)
    dem = None
    if aoi.height_range is not None:
        lo, hi, src, kind = *aoi.height_range, "AOI properties", "aoi"
        return HeightRange(float(lo) - margin_m, float(hi) + margin_m, src, kind)
    if dem_path is not None:
        from skyfall_core.cameras.heights import dem_height_range, ellipsoidal_bounds_of

        dem = dem_height_range(dem_path, aoi, buffer_m=crop_margin_m)
        if dem.exact:
            return HeightRange(dem.low_m - margin_m, dem.high_m + margin_m, dem.source, "dem",
                               details={"method": "dem", "path": str(dem.path), "datum": dem.datum,
                                        "cells": dem.cells, "dem_range_m": [dem.low_m, dem.high_m]})
        say(f"DEM {dem.path.name}: {dem.low_m:.1f}..{dem.high_m:.1f} m ({dem.datum})")
    with_alt = [s for s in scenes if s.min_alt is not None and s.max_alt is not None]
    if dem is None and with_alt:
        lo, hi = min(s.min_alt for s in with_alt), max(s.max_alt for s in with_alt)
        return HeightRange(float(lo) - margin_m, float(hi) + margin_m, "Sat-NeRF json min_alt/max_alt", "satnerf")
    with_rpc = [s for s in scenes if s.rpc is not None]
    if not with_rpc:
        raise TooFewViewsError("no scene with an RPC to estimate the AOI's height range from",
                               path=aoi.source,
                               fix="give min_height_m/max_height_m in the AOI's properties, "
                                   "or add scenes with RPCs")
    if from_images and len(with_rpc) >= 2:
        from skyfall_core.cameras.heights import ellipsoidal_bounds_of, estimate_from_images

        search = None if dem is None else ellipsoidal_bounds_of(dem)
        prefix = "" if dem is None else f"{dem.source}, placed by "
        hr = estimate_from_images(aoi, with_rpc, search, crop_margin_m=crop_margin_m, log=say,
                                  source_prefix=prefix)
        details = dict(hr.details or {})
        if dem is not None:
            details.update(dem={"path": str(dem.path), "datum": dem.datum, "dem_range_m": [dem.low_m, dem.high_m]})
        return HeightRange(hr.low_m - margin_m, hr.high_m + margin_m, hr.source, "dem+images" if dem else "images",
                           ground_m=hr.ground_m, details=details)
    if dem is not None:
        from skyfall_core.cameras.heights import ellipsoidal_bounds_of

        lo, hi = ellipsoidal_bounds_of(dem)
        return HeightRange(lo - margin_m, hi + margin_m, dem.source, "dem")
    h = float(np.median([s.rpc.alt_offset for s in with_rpc]))
    lo, hi = h - COARSE_HEIGHT_HALF_RANGE_M, h + COARSE_HEIGHT_HALF_RANGE_M
    src = f"median RPC height offset ± {COARSE_HEIGHT_HALF_RANGE_M:g} m (coarse, previews only)"
    return HeightRange(lo - margin_m, hi + margin_m, src, "coarse")


# ----------------------------------------------------------------------------- crops
@dataclass(frozen=True)
class Crop:
    """The window of a scene that sees the AOI, as a normalised array with its own RPC."""

    scene_id: str
    path: Path  # the source raster
    image: np.ndarray = field(repr=False)  # [H, W, 3] float32 in 0..1
    valid: np.ndarray = field(repr=False)  # [H, W] bool
    rpc: RPCModel = field(repr=False)  # projects ground points to pixels of `image`
    row0: int  # top-left pixel of the window in the source image
    col0: int
    window: tuple[int, int]  # (height, width) of the window in source pixels
    scale: tuple[float, float]  # (rows, cols): crop pixels per source pixel (1 = full resolution)
    acquired: datetime | None = None
    sun_elevation: float | None = None  # degrees
    sun_azimuth: float | None = None  # degrees clockwise from north

    def to_source(self, row, col) -> tuple[np.ndarray, np.ndarray]:
        """Crop pixel coordinates -> source image coordinates (pixel centres at integers)."""
        sy, sx = self.scale
        return ((np.asarray(row, float) + 0.5) / sy - 0.5 + self.row0,
                (np.asarray(col, float) + 0.5) / sx - 0.5 + self.col0)

    def meta(self) -> dict[str, Any]:
        """JSON-able description (no pixels), for a job's scene folder."""
        return {"scene_id": self.scene_id, "path": str(self.path), "row0": self.row0, "col0": self.col0,
                "window": list(self.window), "scale": list(self.scale),
                "shape": list(self.valid.shape), "valid_fraction": float(self.valid.mean()),
                "acquired": self.acquired.isoformat() if self.acquired else None,
                "sun_elevation": self.sun_elevation, "sun_azimuth": self.sun_azimuth,
                "rpc": self.rpc.to_dict()}


def rescale_rpc(rpc: RPCModel, row_factor: float, col_factor: float) -> RPCModel:
    """The RPC of the image resampled by separate row/column factors (pixel centres at integers:
    u -> (u + 0.5) * factor - 0.5). Equals ``rpc.scaled(f)`` when both factors are ``f``."""
    return replace(rpc,
                   row_offset=(rpc.row_offset + 0.5) * row_factor - 0.5,
                   col_offset=(rpc.col_offset + 0.5) * col_factor - 0.5,
                   row_scale=rpc.row_scale * row_factor, col_scale=rpc.col_scale * col_factor)


def crop_window(scene: Scene, aoi: AOI, height_range: HeightRange | tuple[float, float],
                margin_m: float) -> tuple[int, int, int, int]:
    """(row0, col0, height, width): the pixels of ``scene`` that see the AOI buffered by
    ``margin_m`` at the lowest and highest heights, clipped to the image.

    Raises :class:`AOIError` when that window is empty (the AOI projects outside the image).
    """
    lo, hi = _pair(height_range)
    utm = aoi.to_utm().buffer(margin_m, join_style="mitre") if margin_m > 0 else aoi.to_utm()
    border = reproject(utm.exterior.segmentize(CROP_EDGE_STEP_M), aoi.utm_crs, "EPSG:4326")
    lonlat = np.asarray(border.coords)  # [N, 2]
    lon = np.concatenate([lonlat[:, 0], lonlat[:, 0]])
    lat = np.concatenate([lonlat[:, 1], lonlat[:, 1]])
    h = np.concatenate([np.full(len(lonlat), lo), np.full(len(lonlat), hi)])
    rows, cols = scene.rpc.projection(lon, lat, h)
    # pixel i spans [i - 0.5, i + 0.5): the window holds every pixel a projected point falls in
    r0 = max(int(np.floor(rows.min() + 0.5)), 0)
    c0 = max(int(np.floor(cols.min() + 0.5)), 0)
    r1 = min(int(np.floor(rows.max() + 0.5)), scene.height - 1)
    c1 = min(int(np.floor(cols.max() + 0.5)), scene.width - 1)
    if r1 < r0 or c1 < c0:
        raise AOIError(f"the AOI projects outside scene {scene.id} ({scene.path})", path=aoi.source,
                       fix="drop this scene or draw the AOI inside its footprint")
    return r0, c0, r1 - r0 + 1, c1 - c0 + 1


def _pair(height_range: HeightRange | tuple[float, float]) -> tuple[float, float]:
    if isinstance(height_range, HeightRange):
        return height_range.low_m, height_range.high_m
    lo, hi = height_range
    return float(lo), float(hi)


def crop_scene(scene: Scene, aoi: AOI, height_range: HeightRange | tuple[float, float],
               margin_m: float, max_image_size: int) -> Crop:
    """Read the part of ``scene`` that sees the AOI (see :func:`crop_window`) as a :class:`Crop`.

    The window is downsampled (area averaging) so that its longer side is at most
    ``max_image_size`` pixels; the crop's RPC is the scene's shifted to the window and scaled
    by the per-axis factors, so that ``crop.rpc.projection(p)`` is the pixel of ``p`` in
    ``crop.image``: crop = (full - (row0, col0) + 0.5) * scale - 0.5.
    """
    if not scene.ok:
        raise SkyfallError(scene.error or f"scene {scene.id} has no RPC", path=None if scene.error else scene.path)
    if max_image_size < 1:
        raise ValueError(f"max_image_size must be >= 1, got {max_image_size}")
    r0, c0, h, w = crop_window(scene, aoi, height_range, margin_m)
    out_size = None
    sy = sx = 1.0
    if max(h, w) > max_image_size:
        s = max_image_size / max(h, w)
        out_size = (max(1, round(h * s)), max(1, round(w * s)))
        sy, sx = out_size[0] / h, out_size[1] / w
    image, valid = read_window(scene.path, r0, c0, h, w, out_size=out_size)
    if not valid.any():
        raise AOIError(f"the AOI falls on no-data pixels of scene {scene.id} ({scene.path})",
                       path=aoi.source, fix="drop this scene from the selection")
    rpc = rescale_rpc(scene.rpc.shifted(r0, c0), sy, sx)
    return Crop(scene_id=scene.id, path=scene.path, image=image, valid=valid, rpc=rpc,
                row0=r0, col0=c0, window=(h, w), scale=(sy, sx), acquired=scene.acquired,
                sun_elevation=scene.sun_elevation, sun_azimuth=scene.sun_azimuth)


def crop_scenes(scenes: Sequence[Scene], aoi: AOI, height_range: HeightRange | tuple[float, float],
                margin_m: float, max_image_size: int) -> list[Crop]:
    """:func:`crop_scene` for every scene, after checking they share one kind of units."""
    check_units((s.path, s.dtype) for s in scenes)
    return [crop_scene(s, aoi, height_range, margin_m, max_image_size) for s in scenes]
