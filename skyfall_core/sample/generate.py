"""Generate ``sample_aoi/``: the synthetic city imaged by synthetic satellites, with ground truth.

    PYTHONPATH=. python -m skyfall_core.sample.generate --out sample_aoi [--seed N] [--small]

Steps: build the city (seed) -> for every planned acquisition: sun position, true camera,
render + sensor, RPC fit + a small known bias, GeoTIFF with vendor-like tags -> truth DSM,
scene description, low-elevation truth renders -> AOI, README, manifest (sha256 of every file).
Everything is deterministic (numpy only, seeded generators, no timestamps in files).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skyfall_core.errors import SkyfallError
from skyfall_core.geo.frames import LocalFrame
from skyfall_core.sample import city as C
from skyfall_core.sample.readme import render_readme
from skyfall_core.sample.render import PinholeCamera, Scene, build_scene, surface_height, trace_pinhole
from skyfall_core.sample.satellite import (
    PLAN,
    REFERENCE_VIEW,
    ViewGeometry,
    biased,
    encode,
    fit_rpc,
    intrinsics,
    look_at,
    view_geometry,
)
from skyfall_core.sample.shading import Lighting, greenness, shade, sun_direction

GENERATOR = "skyfall_core.sample 1"
DEFAULT_SEED = 20261122
NODATA = -9999.0
TRUTH_SUN = (55.0, 150.0)  # elevation, azimuth of the truth renders' sun (degrees)


@dataclass(frozen=True)
class SampleSpec:
    """Sizes of a sample: the full one, or a small one for tests (same code path)."""

    views: tuple[int, ...]  # indices into satellite.PLAN
    size_px: int  # view images are size x size
    gsd_m: float  # ground sampling distance across the line of sight at the target
    supersample: int  # rays per pixel a side
    render_px: int  # truth renders are render_px x render_px
    elevations_deg: tuple[float, ...]
    azimuths_deg: tuple[float, ...]
    dsm_res_m: float


FULL = SampleSpec(tuple(range(len(PLAN))), 640, 0.5, 2, 256, (45.0, 30.0), tuple(range(0, 360, 60)), 0.5)
SMALL = SampleSpec((0, 3, 6), 160, 2.0, 2, 64, (45.0,), (0.0, 180.0), 2.0)
RENDER_FOV_DEG, RENDER_RADIUS_M = 60.0, 205.0  # radius: the config's 250 m for 256 m, scaled to the AOI
RPC_HEIGHT_RANGE = (-50.0, 150.0)  # RPC validity, metres around the ground height
RPC_OFFSET_HALF_MARGIN_M = 150.0  # a moved RPC height offset keeps the ground this far inside its range
MAX_OFF_NADIR, MIN_OFF_NADIR = 30.0, 5.0


# ---------------------------------------------------------------------------------- helpers
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")


def _r(x: float, nd: int = 4) -> float:
    """Round for files (stable text; the printed digits are all meaningful)."""
    return float(round(float(x), nd))


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise SkyfallError("cannot write PNG", path=path, fix="check the folder is writable")


def _prepare(out: Path) -> None:
    """Make ``out`` ready: new, empty, or a previous sample (whose files are removed)."""
    if out.exists() and any(out.iterdir()):
        manifest = out / "manifest.json"
        if not manifest.exists():
            raise SkyfallError("the output folder is not empty and holds no sample (no manifest.json)",
                               path=out, fix="choose a new or empty folder, or the folder of a previous sample")
        try:
            listed = json.loads(manifest.read_text())["files"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise SkyfallError(f"manifest.json is unreadable ({exc})", path=manifest,
                               fix="delete the folder and generate again") from exc
        for rel in list(listed) + ["manifest.json"]:
            (out / rel).unlink(missing_ok=True)
        for sub in ("scenes", "truth/renders", "truth"):
            d = out / sub
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    (out / "scenes").mkdir(parents=True, exist_ok=True)
    (out / "truth" / "renders").mkdir(parents=True, exist_ok=True)


# ---------------------------------------------------------------------------------- views
@dataclass(frozen=True)
class ViewResult:
    name: str
    geometry: ViewGeometry
    bias_row_px: float
    bias_col_px: float
    fit_mean_px: float
    fit_max_px: float
    scene_mean_px: float  # RPC (unbiased) vs true camera on visible scene points
    scene_max_px: float
    gain: float


def _view_tags(g: ViewGeometry, gsd_m: float) -> dict[str, str]:
    a = g.acquisition
    return {
        "TIFFTAG_DATETIME": g.utc.strftime("%Y:%m:%d %H:%M:%S"),
        "ACQUISITION_DATETIME": g.utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "SATELLITE_ID": a.satellite,
        "SUN_ELEVATION": f"{g.sun_elevation_deg:.4f}",
        "SUN_AZIMUTH": f"{g.sun_azimuth_deg:.4f}",
        "SAT_ELEVATION": f"{90.0 - g.incidence_deg:.4f}",
        "SAT_AZIMUTH": f"{a.sat_azimuth_deg:.4f}",
        "OFF_NADIR_ANGLE": f"{a.off_nadir_deg:.4f}",
        "INCIDENCE_ANGLE": f"{g.incidence_deg:.4f}",
        "GSD_M": f"{gsd_m:.3f}",
        "BITS_PER_PIXEL": str(a.bits),
        "CLOUD_COVER": "0",
    }


def _scene_points(scene: Scene, cam: PinholeCamera, hits_t: np.ndarray, o: np.ndarray, d: np.ndarray,
                  rng: np.random.Generator, n: int = 2000) -> np.ndarray:
    """Random visible surface points of a rendered view (ENU). [n, 3]"""
    solid = np.nonzero(np.isfinite(hits_t))[0]
    pick = rng.choice(solid, size=min(n, len(solid)), replace=False)
    return o[pick] + d[pick] * hits_t[pick, None]


def rpc_height_range(h0: float, offset_m: float = 0.0) -> tuple[float, float]:
    """Ellipsoidal heights an RPC of the sample is fitted over (its HEIGHT_OFF +- HEIGHT_SCALE).

    ``offset_m`` = 0: the default, ``RPC_HEIGHT_RANGE`` around the ground ``h0``. Otherwise
    HEIGHT_OFF = ``h0 + offset_m`` (vendors' offsets often lie hundreds of metres from an AOI's
    ground), and HEIGHT_SCALE = |offset_m| + 150 m so that the ground and the city stay inside
    the valid range.
    """
    if offset_m == 0.0:
        return h0 + RPC_HEIGHT_RANGE[0], h0 + RPC_HEIGHT_RANGE[1]
    centre = h0 + offset_m
    half = abs(offset_m) + RPC_OFFSET_HALF_MARGIN_M
    return centre - half, centre + half


def _make_view(k: int, spec: SampleSpec, city: C.City, scene: Scene, seed: int, out: Path,
               rpc_height_offset_m: float = 0.0) -> ViewResult:
    import rasterio

    acq = PLAN[k]
    rng = np.random.default_rng([seed, 1000 + k])
    aim = (float(rng.uniform(-6, 6)), float(rng.uniform(-6, 6)), 10.0)
    g = view_geometry(acq, city.frame, size=spec.size_px, gsd_m=spec.gsd_m, aim_enu=aim)
    if k == REFERENCE_VIEW:
        b_row = b_col = 0.0
    else:
        mag, ang = float(rng.uniform(1.0, 2.0)), float(rng.uniform(0.0, 2.0 * math.pi))
        b_row, b_col = round(mag * math.sin(ang), 3), round(mag * math.cos(ang), 3)
    gain = 1.0 if acq.bits == 11 else round(float(1.3 * rng.uniform(0.94, 1.06)), 4)

    ss = spec.supersample
    o, d, hits = trace_pinhole(scene, g.camera, ss)
    light = Lighting(sun_dir=sun_direction(g.sun_elevation_deg, g.sun_azimuth_deg),
                     greenness=greenness(g.utc.timetuple().tm_yday))
    rad = shade(scene, city, o, d, hits, light)
    n = spec.size_px
    img = rad.reshape(n, ss, n, ss, 3).mean(axis=(1, 3))
    dn = encode(img, acq.bits, gain, rng)

    h0 = city.frame.h0
    fit = fit_rpc(g.camera, city.frame, rpc_height_range(h0, rpc_height_offset_m))
    pts = _scene_points(scene, g.camera, hits.t, o, d, rng)
    lon, lat, h = city.frame.enu_to_geodetic(pts)
    r_true, c_true, _ = g.camera.project(pts)
    r_rpc, c_rpc = fit.rpc.projection(lon, lat, h)
    scene_err = np.hypot(r_rpc - r_true, c_rpc - c_true)
    rpc = biased(fit.rpc, b_row, b_col)

    name = f"{k + 1:02d}_{acq.satellite}_{g.utc.strftime('%Y%m%dT%H%M%S')}.tif"
    path = out / "scenes" / name
    profile = dict(driver="GTiff", width=n, height=n, count=3, dtype="uint8" if acq.bits == 8 else "uint16",
                   compress="deflate", zlevel=9, predictor=2, photometric="RGB", interleave="pixel")
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():  # sensor geometry: no geotransform, like a vendor's L1B product
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.moveaxis(dn, -1, 0))
            dst.update_tags(**_view_tags(g, spec.gsd_m))
            dst.update_tags(ns="IMAGERY", SATELLITEID=acq.satellite, CLOUDCOVER="0",
                            ACQUISITIONDATETIME=g.utc.strftime("%Y-%m-%d %H:%M:%S"))
            dst.update_tags(ns="RPC", **rpc.to_gdal(), ERR_BIAS="1.0", ERR_RAND="0.05")
    return ViewResult(name, g, b_row, b_col, fit.mean_px, fit.max_px, float(scene_err.mean()),
                      float(scene_err.max()), gain)


# ---------------------------------------------------------------------------------- truth
def _aoi_ring(city: C.City) -> list[list[float]]:
    a = city.aoi_half_m
    corners = np.array([[-a, -a, 0.0], [a, -a, 0.0], [a, a, 0.0], [-a, a, 0.0], [-a, -a, 0.0]])
    lon, lat, _ = city.frame.enu_to_geodetic(corners)
    return [[_r(x, 9), _r(y, 9)] for x, y in zip(lon, lat)]


def _write_dsm(city: C.City, scene: Scene, res: float, out: Path) -> dict[str, Any]:
    """The truth DSM on a UTM grid over the AOI: ellipsoidal heights at cell centres."""
    import rasterio
    from affine import Affine

    frame, a = city.frame, city.aoi_half_m
    corners = frame.enu_to_utm(np.array([[-a, -a, 0.0], [a, -a, 0.0], [a, a, 0.0], [-a, a, 0.0]]))
    e0, e1 = math.floor(corners[:, 0].min() / res) * res, math.ceil(corners[:, 0].max() / res) * res
    n0, n1 = math.floor(corners[:, 1].min() / res) * res, math.ceil(corners[:, 1].max() / res) * res
    W, H = int(round((e1 - e0) / res)), int(round((n1 - n0) / res))
    E, N = np.meshgrid(e0 + (np.arange(W) + 0.5) * res, n1 - (np.arange(H) + 0.5) * res)
    enu = frame.utm_to_enu(E.ravel(), N.ravel(), np.full(E.size, frame.h0))
    inside = (np.abs(enu[:, 0]) <= a) & (np.abs(enu[:, 1]) <= a)
    z = surface_height(scene, enu[inside, 0], enu[inside, 1])
    _, _, h = frame.enu_to_geodetic(np.stack([enu[inside, 0], enu[inside, 1], z], axis=-1))
    dsm = np.full(E.size, NODATA)
    dsm[inside] = h
    dsm = dsm.reshape(H, W).astype(np.float32)
    profile = dict(driver="GTiff", width=W, height=H, count=1, dtype="float32", nodata=NODATA,
                   crs=f"EPSG:{frame.utm_epsg}", transform=Affine(res, 0.0, e0, 0.0, -res, n1),
                   compress="deflate", zlevel=9, predictor=3)
    with rasterio.open(out / "truth" / "dsm.tif", "w", **profile) as dst:
        dst.write(dsm, 1)
        dst.update_tags(HEIGHTS="metres above the WGS84 ellipsoid, sampled at cell centres",
                        SOURCE="skyfall_core.sample scene description (exact surface heights)")
    valid = dsm[dsm != NODATA]
    return {"width": W, "height": H, "res_m": res, "easting_min": e0, "northing_max": n1,
            "h_min": float(valid.min()), "h_max": float(valid.max())}


def _polygon_lonlat(frame: LocalFrame, poly) -> list[list[list[float]]]:
    rings = [poly.exterior] + list(poly.interiors)
    out = []
    for ring in rings:
        xy = np.asarray(ring.coords)
        lon, lat, _ = frame.enu_to_geodetic(np.stack([xy[:, 0], xy[:, 1], np.zeros(len(xy))], axis=-1))
        out.append([[_r(x, 9), _r(y, 9)] for x, y in zip(lon, lat)])
    return out


def _write_descriptions(city: C.City, out: Path) -> None:
    from shapely.geometry import polygon as shp_polygon

    frame, h0 = city.frame, city.frame.h0
    features = []
    for bl in city.buildings:
        fp = shp_polygon.orient(C.footprint_enu(city, bl), sign=1.0)
        props: dict[str, Any] = {
            "name": bl.name, "use": bl.use, "roof": bl.roof,
            "ground_height_m": _r(h0, 3),
            "eave_height_m": _r(bl.eave_m, 3),
            "ridge_height_m": _r(bl.eave_m + bl.ridge_m, 3),
            "top_height_m": _r(bl.top_m, 3),
            "roof_height_ellipsoidal_m": _r(h0 + bl.eave_m, 3),
            "top_height_ellipsoidal_m": _r(h0 + bl.top_m, 3),
        }
        if bl.roof != "flat":
            u0, v0, u1, v1 = bl.parts[0]
            along_u = (u1 - u0) >= (v1 - v0)
            az = 90.0 - city.rotation_deg - (0.0 if along_u else 90.0)
            props["ridge_azimuth_deg"] = _r(az % 180.0, 3)
        features.append({"type": "Feature", "properties": props,
                         "geometry": {"type": "Polygon", "coordinates": _polygon_lonlat(frame, fp)}})
    _write_json(out / "truth" / "buildings.geojson", {"type": "FeatureCollection", "features": features})

    def enu(u, v):
        x, y = city.to_enu(u, v)
        return [_r(x), _r(y)]

    scene = {
        "frame": frame.to_dict(),
        "city_frame": {"rotation_deg": city.rotation_deg,
                       "note": "city (u, v) -> ENU: x = u cos(r) - v sin(r), y = u sin(r) + v cos(r)"},
        "ground_z_enu_m": 0.0,
        "buildings": [{**asdict(b), "footprint_enu": [[_r(x), _r(y)] for x, y in
                                                      np.asarray(C.footprint_enu(city, b).exterior.coords)],
                       "hvac_enu": [[enu(u, v) for u, v in ((h[0], h[1]), (h[2], h[1]), (h[2], h[3]), (h[0], h[3]))]
                                    + [h[4]] for h in b.hvac]}
                      for b in city.buildings],
        "trees": [{**asdict(t), "centre_enu": enu(t.u, t.v)} for t in city.trees],
        "cars": [{**asdict(c), "centre_enu": enu(c.u, c.v), "yaw_enu_deg": _r(c.yaw_deg + city.rotation_deg, 2),
                  "height_m": 1.45} for c in city.cars],
        "roads": [asdict(r) for r in city.roads],
        "sidewalk_m": C.SIDEWALK_M,
        "parking_lots": [asdict(p) for p in city.lots],
        "ground_patches": [{"rect": list(r), "material": C.GROUND_MATERIALS[m]} for r, m in city.patches],
    }
    _write_json(out / "truth" / "scene.json", scene)
    _write_json(out / "truth" / "frame.json", frame.to_dict())


def orbit_camera(elevation_deg: float, azimuth_deg: float, radius_m: float, size: int, fov_deg: float
                 ) -> PinholeCamera:
    """A camera on an orbit around the ENU origin, looking at it (azimuth clockwise from north)."""
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    centre = radius_m * np.array([math.cos(el) * math.sin(az), math.cos(el) * math.cos(az), math.sin(el)])
    focal = (size / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return PinholeCamera(K=intrinsics(focal, size, size),
                         w2c=look_at(centre, np.zeros(3), np.array([0.0, 0.0, 1.0])), width=size, height=size)


def _write_renders(city: C.City, scene: Scene, spec: SampleSpec, out: Path) -> list[dict[str, Any]]:
    light = Lighting(sun_dir=sun_direction(*TRUTH_SUN), greenness=1.0)
    cams = []
    for el in spec.elevations_deg:
        for az in spec.azimuths_deg:
            cam = orbit_camera(el, az, RENDER_RADIUS_M, spec.render_px, RENDER_FOV_DEG)
            ss = spec.supersample
            o, d, hits = trace_pinhole(scene, cam, ss)
            rad = shade(scene, city, o, d, hits, light, fog_m=4000.0)
            n = spec.render_px
            img = rad.reshape(n, ss, n, ss, 3).mean(axis=(1, 3))
            rgb = np.clip(np.round(255.0 * np.sqrt(np.clip(img * 1.15, 0.0, 1.0))), 0, 255).astype(np.uint8)
            name = f"e{int(el):02d}_a{int(az):03d}.png"
            _write_png(out / "truth" / "renders" / name, rgb)
            cams.append({"name": name, "K": cam.K.round(9).tolist(), "w2c": cam.w2c.round(12).tolist(),
                         "width": n, "height": n, "elevation_deg": el, "azimuth_deg": az,
                         "fov_deg": RENDER_FOV_DEG, "radius_m": RENDER_RADIUS_M, "look_at_enu": [0.0, 0.0, 0.0]})
    _write_json(out / "truth" / "renders" / "cameras.json", cams)
    return cams


def _write_previews(out: Path, views: list[ViewResult], cams: list[dict]) -> None:
    import rasterio

    ref = next((v for v in views if v.geometry.acquisition is PLAN[REFERENCE_VIEW]), views[0])
    with rasterio.open(out / "scenes" / ref.name) as ds:
        img = np.moveaxis(ds.read(), 0, -1)
    h = img.shape[0] // 2 * 2
    small = img[:h, :h].reshape(h // 2, 2, h // 2, 2, 3).astype(np.float64).mean(axis=(1, 3))
    _write_png(out / "preview_view.png", np.round(small).astype(np.uint8))
    pick = next((c for c in cams if c["elevation_deg"] == 30.0 and c["azimuth_deg"] == 120.0), cams[0])
    shutil.copyfile(out / "truth" / "renders" / pick["name"], out / "preview_truth.png")


# ---------------------------------------------------------------------------------- main
def generate_sample(out_dir: Path, seed: int = DEFAULT_SEED, *, small: bool = False,
                    ground_height_m: float | None = None, rpc_height_offset_m: float = 0.0,
                    views: tuple[int, ...] | None = None, size_px: int | None = None,
                    gsd_m: float | None = None) -> dict[str, Any]:
    """Generate the sample AOI into ``out_dir`` (new, empty, or a previous sample's folder).

    Variants for tests (the defaults give the committed ``sample_aoi/``): ``ground_height_m``
    puts the (flat) ground at that ellipsoidal height instead of the site's 293 m (e.g. 2,300 m
    for mountains, 2 m for a coast); ``rpc_height_offset_m`` moves every RPC's HEIGHT_OFF that
    far from the ground (see :func:`rpc_height_range`); ``views`` picks acquisitions of the plan
    (indices into ``satellite.PLAN``; default: all, or the small sample's three); ``size_px`` and
    ``gsd_m`` change the views' image size and ground sampling distance.

    Returns a summary: the views (date, sun, geometry, RPC fit errors, biases), the distinct
    dates, the size on disk and the timings (seconds) of each step.
    """
    import dataclasses

    out = Path(out_dir)
    spec = SMALL if small else FULL
    picked = None if views is None else [int(v) for v in views]
    if picked is not None:
        spec = dataclasses.replace(spec, views=tuple(picked))
    if size_px is not None:
        spec = dataclasses.replace(spec, size_px=int(size_px))
    if gsd_m is not None:
        spec = dataclasses.replace(spec, gsd_m=float(gsd_m))
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    _prepare(out)
    city = C.build_city(seed)
    if ground_height_m is not None:
        f = city.frame
        city = dataclasses.replace(city, frame=LocalFrame(f.lon0, f.lat0, float(ground_height_m)))
    scene = build_scene(city)
    timings["city"] = time.perf_counter() - t0

    t = time.perf_counter()
    from rasterio.errors import NotGeoreferencedWarning

    # each view has its own random stream and files, and numpy's array work releases the GIL: the views
    # are made on all cores. The warning filter is set here, before the threads (catch_warnings is not
    # thread-safe: a view's own restores then keep it)
    with warnings.catch_warnings(), ThreadPoolExecutor(max(1, min(len(spec.views), os.cpu_count() or 1))) as pool:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        views = list(pool.map(lambda k: _make_view(k, spec, city, scene, seed, out, rpc_height_offset_m),
                              spec.views))
    timings["views"] = time.perf_counter() - t

    t = time.perf_counter()
    dsm = _write_dsm(city, scene, spec.dsm_res_m, out)
    _write_descriptions(city, out)
    timings["dsm_and_descriptions"] = time.perf_counter() - t
    t = time.perf_counter()
    cams = _write_renders(city, scene, spec, out)
    timings["truth_renders"] = time.perf_counter() - t

    frame = city.frame
    ref_name = next((v.name for v in views if v.geometry.acquisition is PLAN[REFERENCE_VIEW]), None)
    _write_json(out / "truth" / "rpc_bias.json", {
        "convention": "bias = (row, col) given by the file's RPC minus the true image position of the same "
                      "ground point, in pixels (integer coordinates at pixel centres); the true projection "
                      "is rpc.projection(...) - bias",
        "reference_view": ref_name,
        "views": {v.name: {"row_px": v.bias_row_px, "col_px": v.bias_col_px,
                           "magnitude_px": _r(math.hypot(v.bias_row_px, v.bias_col_px), 3)} for v in views}})
    view_rows = [_view_record(v) for v in views]
    _write_json(out / "truth" / "views.json", view_rows)
    max_h = math.ceil(frame.h0 + city.max_height_m + 1.0)
    _write_json(out / "aoi.geojson", {"type": "FeatureCollection", "features": [{
        "type": "Feature",
        "properties": {"name": "Skyfall synthetic sample city", "min_height_m": math.floor(frame.h0 - 1.0),
                       "max_height_m": max_h, "crs_of_truth": f"EPSG:{frame.utm_epsg}"},
        "geometry": {"type": "Polygon", "coordinates": [_aoi_ring(city)]}}]})
    _write_previews(out, views, cams)
    renders = {"size": spec.render_px, "radius_m": RENDER_RADIUS_M, "fov_deg": RENDER_FOV_DEG,
               "elevations": spec.elevations_deg, "azimuths": spec.azimuths_deg, "sun": TRUTH_SUN}
    (out / "README.md").write_text(render_readme(city, seed, view_rows, dsm, small, renders))
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    variant = {k: v for k, v in (("ground_height_m", ground_height_m), ("views", picked), ("size_px", size_px),
                                 ("gsd_m", gsd_m)) if v is not None}  # the defaults write nothing new
    if rpc_height_offset_m:
        variant["rpc_height_offset_m"] = rpc_height_offset_m
    _write_json(out / "manifest.json", {"generator": GENERATOR, "seed": seed, "small": small, **variant,
                                        "files": {f: _sha256(out / f) for f in files}})
    timings["total"] = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"out_dir": str(out), "seed": seed, "small": small, "views": view_rows,
            "dates": sorted({v.geometry.utc.date().isoformat() for v in views}),
            "n_buildings": len(city.buildings), "n_trees": len(city.trees), "n_cars": len(city.cars),
            "dsm": dsm, "size_bytes": size, "timings_s": {k: round(v, 2) for k, v in timings.items()}}


def _view_record(v: ViewResult) -> dict[str, Any]:
    g, a = v.geometry, v.geometry.acquisition
    return {
        "file": f"scenes/{v.name}", "satellite": a.satellite, "acquisition_utc": g.utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "local_solar_time_h": a.solar_time_h, "sun_elevation_deg": _r(g.sun_elevation_deg),
        "sun_azimuth_deg": _r(g.sun_azimuth_deg), "off_nadir_deg": a.off_nadir_deg,
        "incidence_deg": _r(g.incidence_deg), "sat_azimuth_deg": a.sat_azimuth_deg,
        "slant_range_m": _r(g.slant_range_m, 2), "bits": a.bits, "dtype": "uint8" if a.bits == 8 else "uint16",
        "width": g.camera.width, "height": g.camera.height,
        "rpc_fit_mean_px": float(f"{v.fit_mean_px:.3g}"), "rpc_fit_max_px": float(f"{v.fit_max_px:.3g}"),
        "rpc_scene_mean_px": float(f"{v.scene_mean_px:.3g}"), "rpc_scene_max_px": float(f"{v.scene_max_px:.3g}"),
        "bias_row_px": v.bias_row_px, "bias_col_px": v.bias_col_px, "gain": v.gain,
        "true_camera": {"K": [[float(f"{x:.12g}") for x in r] for r in g.camera.K],
                        "w2c": [[float(f"{x:.15g}") for x in r] for r in g.camera.w2c],
                        "convention": "OpenCV pinhole in the local ENU frame of truth/frame.json, pixel centres "
                                      "at integers; the image was rendered with this camera (no bias)"},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the synthetic sample AOI (skyfall_core.sample).")
    parser.add_argument("--out", type=Path, default=Path("sample_aoi"), help="output folder")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--small", action="store_true", help="a reduced sample (3 views, small images)")
    parser.add_argument("--ground-height-m", type=float, help="ellipsoidal height of the ground (default 293)")
    parser.add_argument("--rpc-height-offset-m", type=float, default=0.0,
                        help="move the RPCs' HEIGHT_OFF this far from the ground (default 0)")
    args = parser.parse_args(argv)
    try:
        summary = generate_sample(args.out, args.seed, small=args.small, ground_height_m=args.ground_height_m,
                                  rpc_height_offset_m=args.rpc_height_offset_m)
    except SkyfallError as exc:
        print(exc.message)
        return 2
    print(f"{'view':34s} {'date (UTC)':20s} {'sun el/az':>13s} {'off-nadir/az':>13s} {'fit mean/max px':>16s} "
          f"{'bias row/col px':>16s}")
    for v in summary["views"]:
        print(f"{v['file'][7:]:34s} {v['acquisition_utc']:20s} "
              f"{v['sun_elevation_deg']:6.1f}/{v['sun_azimuth_deg']:6.1f} "
              f"{v['off_nadir_deg']:6.1f}/{v['sat_azimuth_deg']:6.1f} "
              f"{v['rpc_fit_mean_px']:8.1e}/{v['rpc_fit_max_px']:7.1e} "
              f"{v['bias_row_px']:+7.3f}/{v['bias_col_px']:+7.3f}")
    print(f"dates: {len(summary['dates'])}  buildings: {summary['n_buildings']}  trees: {summary['n_trees']}  "
          f"cars: {summary['n_cars']}  size: {summary['size_bytes'] / 1e6:.2f} MB  timings: {summary['timings_s']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
