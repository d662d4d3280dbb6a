"""Terrain heights of an AOI when nobody gave them: from a DEM the analyst has, or from the images.

The camera step needs the ellipsoidal heights the AOI's content spans: the crops must see the AOI
at every height of it, the epipolar check of the tie points accepts only heights inside it, and
the pinhole fit and the ENU frame are laid out over it. Vendors' RPCs do not give it: their
HEIGHT_OFF is a scene-wide figure that lies 200-1,000 m from an AOI's ground as often as not.

Two sources live here (:func:`skyfall_core.geo.aoi.estimate_height_range` puts all of them in
order):

- :func:`dem_height_range`: a DEM GeoTIFF (e.g. Copernicus GLO-30, SRTM) sampled over the AOI
  polygon, in whatever CRS it is in. GLO-30 and SRTM give heights above the geoid (EGM2008,
  EGM96), RPCs above the WGS84 ellipsoid; the two differ by the geoid undulation N (-107..+86 m
  over the Earth). When PROJ has the geoid grid (``us_nga_egm08_25.tif`` / ``us_nga_egm96_15.tif``
  in its data folder, or its network access enabled) the heights are converted exactly;
  otherwise the range is widened by the undulation bounds and then narrowed by the images
  (below), searching only inside it. A DEM whose CRS says ellipsoidal heights (EPSG:4979, or a
  vertical CRS on the ellipsoid) is used as it is.
- :func:`estimate_from_images`: a height sweep by tie points, coarse to fine. Level 0 crops every
  view so that it sees the AOI at every height of the search range (by default the RPCs' whole
  valid range, HEIGHT_OFF +- HEIGHT_SCALE), at low resolution; matches the views and runs the
  same verification and bias adjustment as :func:`~skyfall_core.cameras.bias.correct_bias` over
  that tall volume; the triangulated points over the AOI give robust percentiles plus a margin
  (3 sigma of their height precision, at least a floor). Level 1 repeats this at a finer
  resolution over the level-0 range. The caller then crops, matches and corrects as usual.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skyfall_core.errors import CameraFitError, SkyfallError

# EGM2008 undulations span -106.2 m (south of India) .. +85.8 m (New Guinea); EGM96 -105 .. +85.
GEOID_UNDULATION_BOUNDS_M = (-107.0, 86.0)
PLAUSIBLE_HEIGHTS_M = (-500.0, 9_000.0)  # ellipsoidal heights of land (Dead Sea shore .. Everest)
GEOID_GRIDS = {"EGM2008": ("EPSG:3855", "us_nga_egm08_25.tif"), "EGM96": ("EPSG:5773", "us_nga_egm96_15.tif")}


class HeightEstimateError(CameraFitError):
    """The AOI's terrain heights could not be found (no hint, and too few tie points)."""


@dataclass(frozen=True)
class Level:
    """One level of the coarse-to-fine height sweep."""

    max_image_size: int  # crops downsampled so that their longer side is at most this
    max_features: int  # SIFT features a view
    low_pct: float  # percentiles of the AOI's tie-point heights taken as its range
    high_pct: float
    min_margin_m: float  # the range is widened by max(this, 3 sigma of the heights)
    span_margin: float = 0.0  # ... and by this fraction of the range's span


LEVELS = (Level(384, 3000, 1.0, 99.0, 30.0, 0.5), Level(512, 3000, 0.5, 99.5, 3.0, 0.05))


@dataclass
class SweepLevel:
    """What one level of :func:`estimate_from_images` did (for the report)."""

    searched_m: tuple[float, float]
    views: int
    image_size: int
    points_aoi: int
    range_m: tuple[float, float] | None
    sigma_m: float | None  # median height precision of a tie point (1 sigma)
    seconds: float
    gauge_sigma_m: float | None = None  # precision of the common height of all points (RPC pointing)
    percentiles_m: tuple[float, float] | None = None  # the tie points' robust low/high, before margins
    ground_m: float | None = None  # 2nd percentile of the tie points' heights

    def to_dict(self) -> dict[str, Any]:
        def r2(v):
            return None if v is None else round(float(v), 2)

        return {"searched_m": [round(self.searched_m[0], 1), round(self.searched_m[1], 1)], "views": self.views,
                "image_size": self.image_size, "points_aoi": self.points_aoi,
                "percentiles_m": None if self.percentiles_m is None else [r2(v) for v in self.percentiles_m],
                "range_m": None if self.range_m is None else [r2(v) for v in self.range_m],
                "sigma_m": r2(self.sigma_m), "gauge_sigma_m": r2(self.gauge_sigma_m), "ground_m": r2(self.ground_m),
                "seconds": round(self.seconds, 2)}


# ----------------------------------------------------------------------------- RPC validity
def rpc_search_range(scenes: Sequence) -> tuple[float, float]:
    """The heights the scenes' RPCs are valid over (union of HEIGHT_OFF +- HEIGHT_SCALE), kept to
    the heights land can have."""
    rpcs = [s.rpc for s in scenes if getattr(s, "rpc", None) is not None]
    if not rpcs:
        raise HeightEstimateError("no scene with an RPC to search the AOI's heights with",
                                  fix="add scenes with RPCs")
    lo = min(r.alt_offset - abs(r.alt_scale) for r in rpcs)
    hi = max(r.alt_offset + abs(r.alt_scale) for r in rpcs)
    lo, hi = max(lo, PLAUSIBLE_HEIGHTS_M[0]), min(hi, PLAUSIBLE_HEIGHTS_M[1])
    if not hi > lo:
        lo, hi = PLAUSIBLE_HEIGHTS_M
    return float(lo), float(hi)


# ----------------------------------------------------------------------------- DEM
@dataclass(frozen=True)
class DemHeights:
    """Heights of a DEM over the AOI (already ellipsoidal, or orthometric with an unknown N)."""

    low_m: float
    high_m: float
    datum: str  # "ellipsoid", "EGM2008 (converted)", "EGM96 (converted)" or "geoid (not converted)"
    exact: bool  # False: orthometric heights whose undulation N is unknown here
    cells: int
    path: Path

    @property
    def source(self) -> str:
        return f"DEM {self.path.name} ({self.datum}, {self.cells} cells over the AOI)"


def _vertical_datum(crs, tags: dict[str, str] | None = None) -> str:
    """'ellipsoid', 'EGM2008', 'EGM96' or 'geoid' (an unnamed geoid: the GLO-30/SRTM convention).

    From the CRS (a compound CRS's vertical part, or a 3D geographic CRS such as EPSG:4979),
    else from a ``VERTICAL_DATUM``/``HEIGHTS`` tag naming the ellipsoid (our own DSMs write one).
    """
    for key in ("VERTICAL_DATUM", "HEIGHTS", "VERTICAL_CRS"):
        value = str((tags or {}).get(key, "")).upper()
        if "ELLIPSOID" in value:
            return "ellipsoid"
        if "EGM2008" in value or "EGM08" in value:
            return "EGM2008"
        if "EGM96" in value:
            return "EGM96"
    if crs is None:
        return "geoid"
    try:
        from pyproj import CRS

        c = CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    except Exception:  # noqa: BLE001 - an unreadable CRS says nothing about heights
        return "geoid"
    if c.is_compound:
        for sub in c.sub_crs_list:
            if sub.is_vertical:
                name = sub.name.upper()
                if "EGM2008" in name or "EGM08" in name:
                    return "EGM2008"
                if "EGM96" in name:
                    return "EGM96"
                return "ellipsoid" if "ELLIPSOID" in name else "geoid"
        return "geoid"
    if c.is_geographic and len(c.axis_info) == 3:
        return "ellipsoid"  # e.g. EPSG:4979: lon, lat, ellipsoidal height
    return "geoid"


def _geoid_to_ellipsoid(lon: np.ndarray, lat: np.ndarray, h: np.ndarray, model: str) -> np.ndarray | None:
    """Orthometric -> ellipsoidal heights with PROJ's geoid grid, or None when the grid is missing."""
    from pyproj.transformer import TransformerGroup

    code = GEOID_GRIDS[model][0]
    try:
        with warnings.catch_warnings():  # "best transformation is not available": handled below
            warnings.simplefilter("ignore", UserWarning)
            group = TransformerGroup(f"EPSG:4326+{code.split(':')[1]}", "EPSG:4979", always_xy=True)
    except Exception:  # noqa: BLE001
        return None
    if not group.best_available or not group.transformers:
        return None
    t = group.transformers[0]
    if "ballpark" in t.description.lower():
        return None
    _, _, out = t.transform(lon, lat, h)
    out = np.asarray(out, float)
    return out if np.all(np.isfinite(out)) else None


def dem_height_range(path: str | Path, aoi, buffer_m: float = 0.0) -> DemHeights:
    """Min and max of a DEM GeoTIFF over the AOI polygon (buffered by ``buffer_m``).

    Any CRS (the AOI is reprojected to it); cells whose centre falls inside the polygon, or the
    cells the polygon touches when it is smaller than a cell; nodata ignored. Raises
    :class:`SkyfallError` naming the file when it cannot be read or does not cover the AOI.
    """
    import rasterio
    import rasterio.features
    import rasterio.windows
    from rasterio.errors import RasterioError

    from skyfall_core.geo.aoi import reproject

    path = Path(path)
    fix = "give a DEM GeoTIFF that covers the AOI (e.g. Copernicus GLO-30 or SRTM tiles), or remove [aoi] dem_path"
    if not path.exists():
        raise SkyfallError("DEM file not found", path=path, fix="check [aoi] dem_path (relative to config.toml)")
    try:
        with rasterio.open(path) as ds:
            crs, tags = ds.crs, ds.tags()
            poly = aoi.buffered(buffer_m) if buffer_m > 0 else aoi.polygon
            geom = poly if crs is None or crs.to_epsg() == 4326 else reproject(poly, "EPSG:4326", crs.to_wkt())
            west, south, east, north = geom.bounds
            win = rasterio.windows.from_bounds(west, south, east, north, ds.transform)
            c0, r0 = max(math.floor(win.col_off), 0), max(math.floor(win.row_off), 0)
            c1 = min(math.ceil(win.col_off + win.width), ds.width)
            r1 = min(math.ceil(win.row_off + win.height), ds.height)
            if c1 <= c0 or r1 <= r0:
                raise ValueError("no overlap")
            win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
            data = ds.read(1, window=win, masked=True).astype(np.float64)
            tr = ds.window_transform(win)
    except (RasterioError, ValueError) as exc:  # WindowError (no overlap) is a ValueError
        raise SkyfallError(f"the DEM does not cover the AOI or cannot be read ({exc})", path=path, fix=fix) from None
    if data.size == 0:
        raise SkyfallError("the DEM does not cover the AOI", path=path, fix=fix)
    inside = rasterio.features.geometry_mask([geom], data.shape, tr, invert=True)
    if not inside.any():
        inside = rasterio.features.geometry_mask([geom], data.shape, tr, invert=True, all_touched=True)
    ok = inside & ~np.ma.getmaskarray(data) & np.isfinite(data.filled(np.nan))
    if not ok.any():
        raise SkyfallError("the DEM has no valid height over the AOI (nodata)", path=path, fix=fix)
    rows, cols = np.nonzero(ok)
    h = data.data[rows, cols]
    datum = _vertical_datum(crs, tags)
    exact = datum == "ellipsoid"
    label = "ellipsoidal heights"
    if not exact:
        xs, ys = rasterio.transform.xy(tr, rows, cols)
        from pyproj import Transformer

        lon, lat = Transformer.from_crs(crs.to_wkt() if crs else "EPSG:4326", "EPSG:4326",
                                        always_xy=True).transform(np.asarray(xs), np.asarray(ys))
        models = [datum] if datum in GEOID_GRIDS else ["EGM2008", "EGM96"]  # GLO-30, then SRTM's
        for model in models:
            conv = _geoid_to_ellipsoid(np.asarray(lon), np.asarray(lat), h, model)
            if conv is not None:
                h, exact, label = conv, True, f"{model} heights converted to ellipsoidal with PROJ"
                break
        else:
            label = (f"{'geoid' if datum == 'geoid' else datum} heights; no geoid grid installed, so "
                     f"N in {GEOID_UNDULATION_BOUNDS_M[0]:g}..+{GEOID_UNDULATION_BOUNDS_M[1]:g} m is searched")
    return DemHeights(float(h.min()), float(h.max()), label, exact, int(len(h)), path)


# ----------------------------------------------------------------------------- images
def _aoi_enu_polygon(aoi, frame):
    from shapely.geometry import Polygon

    lon, lat = np.asarray(aoi.polygon.exterior.coords).T
    enu = frame.geodetic_to_enu(lon, lat, np.full(lon.shape, frame.h0))
    return Polygon(enu[:, :2])


def _seen_ground_bounds(crops, frame, z_range: tuple[float, float]) -> tuple[float, float, float, float]:
    """ENU (xmin, xmax, ymin, ymax) of the ground the crops see at the lowest and highest heights."""
    pts = []
    for c in crops:
        h, w = c.valid.shape
        rows = np.array([0, 0, h - 1, h - 1, (h - 1) / 2], float)
        cols = np.array([0, w - 1, 0, w - 1, (w - 1) / 2], float)
        for z in z_range:
            lon, lat = c.rpc.localization(rows, cols, np.full(5, frame.h0 + z))
            pts.append(frame.geodetic_to_enu(lon, lat, np.full(5, frame.h0 + z))[:, :2])
    p = np.concatenate(pts)
    return float(p[:, 0].min()), float(p[:, 0].max()), float(p[:, 1].min()), float(p[:, 1].max())


def height_sigmas(result, affs) -> np.ndarray:
    """Height precision (1 sigma, metres) of every tie point of a bias result: the z part of
    sigma^2 (sum_v J_v^T J_v)^-1 with sigma the median residual of the observations."""
    tr = result.tracks
    if tr is None or tr.n_tracks == 0:
        return np.zeros(0)
    J = np.stack([a.J for a in affs])  # [V, 2, 3]
    JtJ = np.einsum("vai,vaj->vij", J, J)
    A = np.zeros((tr.n_tracks, 3, 3))
    np.add.at(A, tr.track, JtJ[tr.view])
    A += 1e-9 * np.eye(3)
    res = result.residuals_px
    sigma_px = float(np.median(res)) if res is not None and len(res) else 0.5
    cov_zz = np.linalg.inv(A)[:, 2, 2]
    return max(sigma_px, 0.1) * np.sqrt(np.maximum(cov_zz, 0.0))


def gauge_sigma_z(result, affs) -> float:
    """How well the RPCs fix the common height of all tie points (1 sigma, metres).

    The corrections are defined up to one world shift dX (module docstring of
    :mod:`~skyfall_core.cameras.bias`); the gauge picked is right only as far as the vendors'
    pointing errors allow: with independent per-view errors of rms size s (taken as the rms of
    the corrections found), the z part of s^2 (sum_v J_v^T J_v)^-1 over the corrected views.
    """
    used = np.asarray(result.corrected, bool)
    if used.sum() < 2:
        return 0.0
    J = np.stack([a.J for a in affs])[used]
    s = float(np.sqrt(np.mean(np.sum(np.asarray(result.offsets)[used] ** 2, axis=1))))
    cov = np.linalg.inv(np.einsum("vai,vaj->ij", J, J) + 1e-9 * np.eye(3))
    return s * math.sqrt(max(float(cov[2, 2]), 0.0))


def estimate_from_images(aoi, scenes: Sequence, search: tuple[float, float] | None = None, *,
                         crop_margin_m: float = 20.0, levels: Sequence[Level] = LEVELS,
                         max_pairs_per_view: int | None = 4, min_points: int = 20,
                         log: Callable[[str], None] | None = None, source_prefix: str = ""):
    """The ellipsoidal height range of the AOI's content from tie points, coarse to fine.

    ``search``: the heights to sweep first (default: :func:`rpc_search_range`). Returns a
    :class:`~skyfall_core.geo.aoi.HeightRange` whose ``ground_m`` is the tie points' 2nd
    percentile and whose ``details`` list the levels. Raises :class:`HeightEstimateError`
    (exit code 2) naming the views when too few points are found.
    """
    import time

    from skyfall_core.cameras.bias import correct_bias, local_affine
    from skyfall_core.errors import AOIError
    from skyfall_core.geo.aoi import HeightRange, crop_scene

    say = log or (lambda _m: None)
    lo, hi = search if search is not None else rpc_search_range(scenes)
    searched = (lo, hi)
    done: list[SweepLevel] = []
    n_aoi = 0
    for k, lvl in enumerate(levels):
        t0 = time.perf_counter()
        crops, skipped = [], []
        for s in scenes:
            try:
                crops.append(crop_scene(s, aoi, (lo, hi), crop_margin_m, lvl.max_image_size))
            except AOIError as exc:
                skipped.append(f"{s.id} ({exc.problem})")
        if len(crops) < 2:
            raise HeightEstimateError(
                f"cannot estimate the AOI's terrain heights: only {len(crops)} view(s) can be cropped over "
                f"{lo:.0f}..{hi:.0f} m" + (f"; skipped {', '.join(skipped)}" if skipped else ""),
                path=aoi.source, fix=_HINT_FIX)
        h_mid = 0.5 * (lo + hi)
        frame = aoi.frame(h_mid)
        z = (lo - h_mid, hi - h_mid)
        xy = _seen_ground_bounds(crops, frame, z)
        bounds = (*xy, *z)
        rpcs = [c.rpc for c in crops]
        res = correct_bias([c.image for c in crops], [c.valid for c in crops], rpcs, frame, bounds,
                           max_features=lvl.max_features, min_tie_points=8, max_pairs_per_view=max_pairs_per_view,
                           height_margin_m=0.0, inlier_px=2.0)
        X = res.points_enu
        poly = _aoi_enu_polygon(aoi, frame).buffer(crop_margin_m)
        if len(X):
            import shapely

            inside = shapely.contains_xy(poly, X[:, 0], X[:, 1])
        else:
            inside = np.zeros(0, bool)
        heights = X[inside, 2] + h_mid
        n_aoi = int(inside.sum())
        size = max(max(c.image.shape[:2]) for c in crops)
        if n_aoi < min_points:
            done.append(SweepLevel((lo, hi), len(crops), size, n_aoi, None, None, time.perf_counter() - t0))
            per_view = ", ".join(f"{c.scene_id}: {int(n)}" for c, n in zip(crops, res.tie_counts))
            raise HeightEstimateError(
                f"cannot estimate the AOI's terrain heights from the images: {n_aoi} tie points over the AOI "
                f"(< {min_points}) when searching {lo:.0f}..{hi:.0f} m at {size} px (tie points a view: {per_view}). "
                "Likely causes: the views overlap too little over the AOI, clouds or haze, or dates "
                "too far apart (seasons, construction)", path=aoi.source, fix=_HINT_FIX)
        affs = [local_affine(r, frame, bounds) for r in rpcs]
        sig = float(np.median(height_sigmas(res, affs)[inside]))
        gauge = gauge_sigma_z(res, affs)
        p_lo, p_hi = (float(v) for v in np.percentile(heights, [lvl.low_pct, lvl.high_pct]))
        multi = np.sort(heights[res.track_views[inside] >= 3])
        if len(multi) >= 10:  # a few well-seen points on the tallest roof count even above the percentile
            p_hi = max(p_hi, float(multi[-2]))
        ground = float(np.percentile(heights, 2.0))
        margin = max(lvl.min_margin_m, 3.0 * sig) + 3.0 * gauge + lvl.span_margin * (p_hi - p_lo)
        new = (max(p_lo - margin, lo), min(p_hi + margin, hi))
        done.append(SweepLevel((lo, hi), len(crops), size, n_aoi, new, sig, time.perf_counter() - t0,
                               gauge, (p_lo, p_hi), ground))
        say(f"heights from the images, level {k}: {n_aoi} tie points over the AOI, {p_lo:.1f}..{p_hi:.1f} m "
            f"(sigma {sig:.2f} m a point, {gauge:.2f} m for the RPCs' common height) when searching "
            f"{lo:.0f}..{hi:.0f} m at {size} px")
        lo, hi = new
    last = done[-1]
    src = (f"{source_prefix}image tie points ({n_aoi} over the AOI; swept {searched[0]:.0f}..{searched[1]:.0f} m "
           f"in {len(done)} levels)")
    return HeightRange(lo, hi, src, ground_m=last.ground_m,
                       details={"method": "images", "searched_m": [round(searched[0], 1), round(searched[1], 1)],
                                "levels": [d.to_dict() for d in done]})


_HINT_FIX = ("give the AOI's heights: min_height_m/max_height_m (metres above the WGS84 ellipsoid) in the "
             "AOI GeoJSON's properties, or a DEM GeoTIFF of the area in [aoi] dem_path (Copernicus GLO-30, "
             "SRTM); or add views of the AOI taken close in time with more overlap")


def ellipsoidal_bounds_of(dem: DemHeights) -> tuple[float, float]:
    """The ellipsoidal heights a DEM range can stand for: itself, or widened by the undulation bounds."""
    if dem.exact:
        return dem.low_m, dem.high_m
    return dem.low_m + GEOID_UNDULATION_BOUNDS_M[0], dem.high_m + GEOID_UNDULATION_BOUNDS_M[1]


# ----------------------------------------------------------------------------- for the app
def dem_path_of(aoi, cfg) -> Path | None:
    """The DEM to use: the AOI's ``dem_path`` property (set on the app's Area page), else
    ``[aoi] dem_path`` of the config (relative paths: to the config file)."""
    prop = (getattr(aoi, "properties", None) or {}).get("dem_path")
    if prop:
        return Path(str(prop)).expanduser()
    if cfg is not None and cfg.aoi.dem_path is not None:
        return cfg.resolve_path(cfg.aoi.dem_path)
    return None


def planned_height_source(aoi, scenes: Sequence, dem_path: str | Path | None = None) -> tuple[str, str]:
    """(kind, sentence) saying where a job will take the AOI's terrain heights from, without the
    image sweep (which runs when the job starts). A DEM that cannot be used raises its
    :class:`SkyfallError`."""
    if aoi.height_range is not None:
        lo, hi = aoi.height_range
        return "aoi", f"the AOI's properties: {lo:g} to {hi:g} m (ellipsoidal)"
    if dem_path:
        dem = dem_height_range(dem_path, aoi)
        lo, hi = ellipsoidal_bounds_of(dem)
        if dem.exact:
            return "dem", f"{dem.source}: {dem.low_m:.1f} to {dem.high_m:.1f} m"
        return "dem+images", (f"{dem.source}: {dem.low_m:.1f} to {dem.high_m:.1f} m above the geoid; the images "
                              f"place it between {lo:.0f} and {hi:.0f} m when the job starts")
    with_alt = [s for s in scenes
                if getattr(s, "min_alt", None) is not None and getattr(s, "max_alt", None) is not None]
    if with_alt:
        lo, hi = min(s.min_alt for s in with_alt), max(s.max_alt for s in with_alt)
        return "satnerf", f"the scenes' Sat-NeRF jsons: {lo:g} to {hi:g} m"
    try:
        lo, hi = rpc_search_range(scenes)
        where = f" (searched over the RPCs' valid {lo:.0f} to {hi:.0f} m)"
    except HeightEstimateError:
        where = ""
    return "images", f"the images: tie points matched across the views when the job starts{where}"
