"""The bundled synthetic sample (skyfall_core.sample): determinism, RPCs, truth, metadata.

The full re-generation of the committed ``sample_aoi/`` takes 40-70 s on 2 cores: it is marked
``slow`` (deselect with ``-m "not slow"``). Everything else uses a small sample
generated into a temporary folder (same code path, 3 views, small images) or reads the
committed files.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from skyfall_core.geo.frames import LocalFrame
from skyfall_core.geo.rpc import read_rpc
from skyfall_core.geo.sun import sun_position, utc_for_local_solar_time
from skyfall_core.sample.generate import DEFAULT_SEED, NODATA, generate_sample
from skyfall_core.sample.render import PinholeCamera, _box, intersect_convex, intersect_ellipsoid

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "sample_aoi"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): _sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _open(path: Path):
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample_small")
    return out, generate_sample(out, DEFAULT_SEED, small=True)


@pytest.fixture(scope="module")
def committed() -> Path:
    if not (COMMITTED / "manifest.json").exists():
        pytest.fail(f"{COMMITTED} is missing: run `python -m skyfall_core sample --out sample_aoi`")
    return COMMITTED


# ------------------------------------------------------------------------------ determinism
def test_small_regeneration_is_byte_identical(small, tmp_path):
    out, _ = small
    generate_sample(tmp_path / "again", DEFAULT_SEED, small=True)
    first, second = _hashes(out), _hashes(tmp_path / "again")
    assert first.keys() == second.keys()
    differ = [k for k in first if first[k] != second[k]]
    assert not differ, f"files differ between two generations: {differ}"
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert manifest == {k: v for k, v in first.items() if k != "manifest.json"}


def test_other_seed_changes_the_city(small, tmp_path):
    out, summary = small
    other = generate_sample(tmp_path / "other", DEFAULT_SEED + 1, small=True)
    assert _sha(out / "truth" / "dsm.tif") != _sha(tmp_path / "other" / "truth" / "dsm.tif")
    assert other["dates"] == summary["dates"]  # the acquisition plan does not depend on the seed


def test_refuses_a_folder_that_is_not_a_sample(tmp_path):
    from skyfall_core.errors import SkyfallError

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(SkyfallError, match="not empty"):
        generate_sample(tmp_path, small=True)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_committed_files_match_their_manifest(committed):
    manifest = json.loads((committed / "manifest.json").read_text())
    on_disk = {k: v for k, v in _hashes(committed).items() if k != "manifest.json"}
    assert on_disk == manifest["files"], "sample_aoi/ was modified by hand or is stale: generate it again"


RPC_TOL_PX = 1e-3  # two RPCs agree when they project the AOI volume within this
JSON_RTOL = JSON_ATOL = 1e-6  # floats written by least-squares fits round differently per CPU/BLAS


def _json_close(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _json_close(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _json_close(x, y, f"{where}[{i}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return [] if math.isclose(a, b, rel_tol=JSON_RTOL, abs_tol=JSON_ATOL) else [f"{where}: {a} != {b}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def _raster(path: Path):
    with _open(path) as ds:
        return ds.read(), ds.transform, ds.crs, ds.rpcs


def _rpc_gap_px(a: Path, b: Path) -> float:
    """Largest image distance between two RPCs over their validity volume (500 points)."""
    ra, rb = read_rpc(a), read_rpc(b)
    rng = np.random.default_rng(0)
    with _open(a) as ds:
        r = ds.rpcs
    lon = r.long_off + r.long_scale * rng.uniform(-0.8, 0.8, 500)
    lat = r.lat_off + r.lat_scale * rng.uniform(-0.8, 0.8, 500)
    h = r.height_off + r.height_scale * rng.uniform(-0.8, 0.8, 500)
    row_a, col_a = ra.projection(lon, lat, h)
    row_b, col_b = rb.projection(lon, lat, h)
    return float(np.max(np.hypot(row_a - row_b, col_a - col_b)))


def sample_differences(a: Path, b: Path) -> list[str]:
    """What differs between two generated sample folders, in the terms that matter: pixels (at most
    1 DN; float rasters 1 mm), georeferencing, RPC projections (<= RPC_TOL_PX) and JSON numbers
    (relative 1e-6), not bytes: a least-squares RPC fit rounds differently on another CPU or BLAS."""
    import cv2

    files_a = {p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()}
    out = [f"{k}: only in one folder" for k in sorted(files_a ^ files_b)]
    for rel in sorted(files_a & files_b):
        pa, pb = a / rel, b / rel
        if rel == "manifest.json":  # its file hashes are bytes; the rest is compared
            ja, jb = (json.loads(p.read_text()) for p in (pa, pb))
            ja.pop("files", None), jb.pop("files", None)
            out += [f"{rel}{d}" for d in _json_close(ja, jb)]
        elif pa.suffix in (".json", ".geojson"):
            out += [f"{rel}{d}" for d in _json_close(json.loads(pa.read_text()), json.loads(pb.read_text()))]
        elif pa.suffix == ".png":
            ia, ib = cv2.imread(str(pa), cv2.IMREAD_UNCHANGED), cv2.imread(str(pb), cv2.IMREAD_UNCHANGED)
            if ia.shape != ib.shape or np.abs(ia.astype(int) - ib.astype(int)).max() > 1:
                out.append(f"{rel}: pixels differ")
        elif pa.suffix == ".tif":
            (xa, ta, ca, rpa), (xb, tb, cb, rpb) = _raster(pa), _raster(pb)
            tol = 1e-3 if xa.dtype.kind == "f" else 1
            if xa.shape != xb.shape or np.nanmax(np.abs(xa.astype(float) - xb.astype(float))) > tol:
                out.append(f"{rel}: pixels differ")
            if ca != cb or not ta.almost_equals(tb, precision=1e-9):
                out.append(f"{rel}: georeferencing differs")
            if (rpa is None) != (rpb is None):
                out.append(f"{rel}: RPC in only one file")
            elif rpa is not None and (gap := _rpc_gap_px(pa, pb)) > RPC_TOL_PX:
                out.append(f"{rel}: RPC projections differ by {gap:.3g} px")
        elif pa.read_bytes() != pb.read_bytes():
            out.append(f"{rel}: content differs")
    return out


@pytest.mark.slow
def test_committed_sample_equals_a_fresh_generation(committed, tmp_path):
    """Equal within what matters, on any machine (not byte-identical: see sample_differences)."""
    generate_sample(tmp_path / "fresh", DEFAULT_SEED)
    differ = sample_differences(committed, tmp_path / "fresh")
    assert not differ, f"committed sample_aoi/ differs from a fresh generation in: {differ[:10]}"


def _perturb_rpc(path: Path, rel: float = 0.0, line_off_px: float = 0.0) -> None:
    import rasterio
    from rasterio.rpc import RPC

    with _open(path) as ds:
        d = ds.rpcs.to_dict()
    d["line_num_coeff"] = [c * (1.0 + rel * ((-1) ** i)) for i, c in enumerate(d["line_num_coeff"])]
    d["samp_den_coeff"] = [c * (1.0 + rel) if i else c for i, c in enumerate(d["samp_den_coeff"])]
    d["line_off"] += line_off_px
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "r+") as ds:
            ds.rpcs = RPC(**d)


def test_the_comparison_accepts_another_cpus_rounding_and_rejects_real_changes(small, tmp_path):
    """What another CPU/BLAS does to the fit (RPC coefficients changed in the 6th significant digit,
    JSON floats in the 9th) passes; a 0.01 px RPC shift, a changed pixel or a moved number fails."""
    import shutil

    out, _ = small
    tif = sorted((out / "scenes").glob("*.tif"))[0].relative_to(out)
    views = Path("truth") / "views.json"

    other = tmp_path / "other_cpu"
    shutil.copytree(out, other)
    _perturb_rpc(other / tif, rel=2e-6)
    data = json.loads((other / views).read_text())
    data[0]["true_camera"]["K"][0][0] *= 1.0 + 1e-9
    (other / views).write_text(json.dumps(data))
    assert sample_differences(out, other) == []

    for change in ("rpc", "pixel", "json"):
        bad = tmp_path / f"bad_{change}"
        shutil.copytree(out, bad)
        if change == "rpc":
            _perturb_rpc(bad / tif, line_off_px=0.01)
        elif change == "pixel":
            import rasterio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rasterio.open(bad / tif, "r+") as ds:
                    band = ds.read(1)
                    band[5, 5] = (int(band[5, 5]) + 7) % 256
                    ds.write(band, 1)
        else:
            data = json.loads((bad / views).read_text())
            data[0]["true_camera"]["K"][0][0] *= 1.001
            (bad / views).write_text(json.dumps(data))
        diffs = sample_differences(out, bad)
        assert diffs and all(str(tif if change != "json" else views) in d for d in diffs), (change, diffs)


# ------------------------------------------------------------------------------ cameras
def _views(root: Path) -> list[dict]:
    return json.loads((root / "truth" / "views.json").read_text())


def _true_camera(v: dict) -> PinholeCamera:
    c = v["true_camera"]
    return PinholeCamera(np.array(c["K"]), np.array(c["w2c"]), v["width"], v["height"])


def test_rpc_reproduces_the_true_camera(small):
    """RPC (as read back from the file) minus the recorded bias = the true camera, <= 0.05 px."""
    from rasterio.transform import RPCTransformer

    out, _ = small
    frame = LocalFrame.from_dict(json.loads((out / "truth" / "frame.json").read_text()))
    bias = json.loads((out / "truth" / "rpc_bias.json").read_text())["views"]
    rng = np.random.default_rng(0)
    a = 105.0
    pts = np.stack([rng.uniform(-a, a, 500), rng.uniform(-a, a, 500), rng.uniform(0.0, 62.0, 500)], axis=-1)
    lon, lat, h = frame.enu_to_geodetic(pts)
    for v in _views(out):
        path = out / v["file"]
        rpc = read_rpc(path)
        b = bias[path.name]
        row, col = rpc.projection(lon, lat, h)
        t_row, t_col, _ = _true_camera(v).project(pts)
        err = np.hypot(row - b["row_px"] - t_row, col - b["col_px"] - t_col)
        assert err.max() <= 0.05, f"{path.name}: RPC vs true camera {err.max():.3g} px"
        assert 0.0 < t_row.min() and t_row.max() < v["height"] - 1
        assert 0.0 < t_col.min() and t_col.max() < v["width"] - 1
        with _open(path) as ds:
            g_row, g_col = RPCTransformer(ds.rpcs).rowcol(lon, lat, zs=h, op=lambda x: x)
        np.testing.assert_allclose(np.asarray(g_row, float), row + 0.5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(g_col, float), col + 0.5, atol=1e-6)


def test_biases_are_small_known_translations(small, committed):
    for root in (small[0], committed):
        doc = json.loads((root / "truth" / "rpc_bias.json").read_text())
        mags = {k: math.hypot(v["row_px"], v["col_px"]) for k, v in doc["views"].items()}
        if doc["reference_view"] is not None:
            assert mags.pop(Path(doc["reference_view"]).name) == 0.0
        assert all(1.0 - 1e-3 <= m <= 2.0 + 1e-3 for m in mags.values()), mags


# ------------------------------------------------------------------------------ metadata
def _view_tags(path: Path) -> tuple[dict, dict, str, int]:
    with _open(path) as ds:
        return ds.tags(), ds.tags(ns="IMAGERY"), ds.dtypes[0], ds.width


def test_committed_views_look_like_a_multi_date_acquisition(committed):
    files = sorted((committed / "scenes").glob("*.tif"))
    assert len(files) >= 8
    dates, dtypes = set(), set()
    frame = LocalFrame.from_dict(json.loads((committed / "truth" / "frame.json").read_text()))
    for path in files:
        tags, imagery, dtype, width = _view_tags(path)
        when = datetime.strptime(tags["TIFFTAG_DATETIME"], "%Y:%m:%d %H:%M:%S")
        assert imagery["ACQUISITIONDATETIME"] == when.strftime("%Y-%m-%d %H:%M:%S")
        dates.add(when.date())
        dtypes.add((dtype, tags["BITS_PER_PIXEL"]))
        solar_h = when.hour + when.minute / 60 + frame.lon0 / 15.0  # mean solar time, +-17 min
        assert 10.2 <= solar_h <= 11.8, f"{path.name}: local solar time {solar_h:.2f} h"
        off_nadir, incidence = float(tags["OFF_NADIR_ANGLE"]), float(tags["INCIDENCE_ANGLE"])
        assert 5.0 <= off_nadir <= 30.0
        assert off_nadir < incidence < off_nadir + 3.0  # the Earth's curvature
        # the view direction implied by the RPC: the image centre localised at two heights
        rpc = read_rpc(path)
        c = (width - 1) / 2
        p = [frame.geodetic_to_enu(*rpc.localization(c, c, frame.h0 + dz), frame.h0 + dz) for dz in (0.0, 100.0)]
        d = p[1] - p[0]
        assert math.degrees(math.atan2(math.hypot(d[0], d[1]), d[2])) == pytest.approx(incidence, abs=0.05)
        assert math.degrees(math.atan2(d[0], d[1])) % 360 == pytest.approx(float(tags["SAT_AZIMUTH"]), abs=0.2)
        # the sun angles agree with the date, time and place
        el, az = sun_position(when.replace(tzinfo=timezone.utc), frame.lon0, frame.lat0)
        assert float(tags["SUN_ELEVATION"]) == pytest.approx(el, abs=1e-3)
        assert float(tags["SUN_AZIMUTH"]) == pytest.approx(az, abs=1e-3)
    assert len(dates) >= 5
    assert ("uint16", "11") in dtypes and ("uint8", "8") in dtypes


def test_solar_position_against_almanac_events():
    from skyfall_core.geo.sun import declination_rad

    utc = timezone.utc
    # March equinox 2023-03-20 21:24 UTC; June solstice 2023-06-21 14:58 UTC (obliquity 23.436)
    assert math.degrees(declination_rad(datetime(2023, 3, 20, 21, 24, tzinfo=utc))) == pytest.approx(0.0, abs=0.01)
    assert math.degrees(declination_rad(datetime(2023, 6, 21, 14, 58, tzinfo=utc))) == pytest.approx(23.436, abs=0.01)
    lon, lat = -95.938, 41.2585
    for day in (date(2023, 6, 21), date(2023, 12, 21), date(2023, 3, 20)):
        noon = utc_for_local_solar_time(day, 12.0, lon)
        el, az = sun_position(noon, lon, lat)
        assert el == pytest.approx(90.0 - lat + math.degrees(declination_rad(noon)), abs=1e-6)
        assert az == pytest.approx(180.0, abs=0.01)
    el, az = sun_position(utc_for_local_solar_time(date(2023, 6, 21), 9.0, lon), lon, lat)
    assert 60.0 < az < 120.0 and 30.0 < el < 60.0  # summer morning: sun in the east
    with pytest.raises(ValueError, match="UTC"):
        sun_position(datetime(2023, 6, 21, 12), lon, lat)


# ------------------------------------------------------------------------------ truth
def test_dsm_matches_the_scene_description(committed):
    import rasterio
    from shapely import contains_xy
    from shapely.geometry import Point, Polygon

    frame = LocalFrame.from_dict(json.loads((committed / "truth" / "frame.json").read_text()))
    scene = json.loads((committed / "truth" / "scene.json").read_text())
    buildings = json.loads((committed / "truth" / "buildings.geojson").read_text())["features"]
    with rasterio.open(committed / "truth" / "dsm.tif") as ds:
        dsm = ds.read(1)
        assert ds.crs.to_epsg() == frame.utm_epsg and ds.nodata == NODATA and ds.res == (0.5, 0.5)
        cols, rows = np.meshgrid(np.arange(ds.width), np.arange(ds.height))
        E, N = rasterio.transform.xy(ds.transform, rows.ravel(), cols.ravel())  # cell centres
    enu = frame.utm_to_enu(np.asarray(E), np.asarray(N), np.full(dsm.size, frame.h0))
    x, y, z = enu[:, 0], enu[:, 1], dsm.ravel().astype(np.float64)
    inside_aoi = (np.abs(x) <= 104.9) & (np.abs(y) <= 104.9)
    outside_aoi = (np.abs(x) > 105.1) | (np.abs(y) > 105.1)
    assert np.all(z[inside_aoi] != NODATA) and np.all(z[outside_aoi] == NODATA)

    def to_enu_poly(ring):
        ring = np.asarray(ring)
        e = frame.geodetic_to_enu(ring[:, 0], ring[:, 1], np.full(len(ring), frame.h0))
        return e[:, :2]

    occupied = []
    checked_roofs = 0
    for feat, desc in zip(buildings, scene["buildings"]):
        rings = feat["geometry"]["coordinates"]
        fp = Polygon(to_enu_poly(rings[0]), [to_enu_poly(r) for r in rings[1:]])
        occupied.append(fp.buffer(1.0))
        props = feat["properties"]
        roof = frame.h0 + props["eave_height_m"]
        units = [Polygon(np.asarray(u[:4])).buffer(0.3) for u in desc["hvac_enu"]]
        inner = fp.buffer(-1.0)
        for u in units:
            inner = inner.difference(u)
        sel = contains_xy(inner, x, y) & inside_aoi
        if sel.sum() < 20:
            continue
        checked_roofs += 1
        if props["roof"] == "flat":
            np.testing.assert_allclose(z[sel], roof, atol=0.01, err_msg=props["name"])
        else:
            ridge = frame.h0 + props["ridge_height_m"]
            assert z[sel].min() >= roof - 0.01 and z[sel].max() <= ridge + 0.01, props["name"]
            assert z[sel].max() > ridge - 0.5, props["name"]  # the ridge is there
        top = max([u[4] for u in desc["hvac_enu"]], default=0.0)
        for u in desc["hvac_enu"]:  # rooftop units (they may overlap each other)
            on_unit = contains_xy(Polygon(np.asarray(u[:4])).buffer(-0.3), x, y) & inside_aoi
            assert np.all(z[on_unit] >= roof + u[4] - 0.01) and np.all(z[on_unit] <= roof + top + 0.01)
    assert checked_roofs >= 12
    for t in scene["trees"]:
        occupied.append(Point(t["centre_enu"]).buffer(t["crown_radius_m"] + 0.5))
    for c in scene["cars"]:
        yaw = math.radians(c["yaw_enu_deg"])
        cx, cy = c["centre_enu"]
        a, b = np.array([math.cos(yaw), math.sin(yaw)]), np.array([-math.sin(yaw), math.cos(yaw)])
        corners = [np.array([cx, cy]) + sa * c["length_m"] / 2 * a + sb * c["width_m"] / 2 * b
                   for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
        occupied.append(Polygon(corners).buffer(0.5))
    from shapely.ops import unary_union

    ground = inside_aoi & ~contains_xy(unary_union(occupied), x, y)
    assert ground.sum() > 0.4 * inside_aoi.sum()
    np.testing.assert_allclose(z[ground], frame.h0, atol=0.01)
    assert z[inside_aoi].min() >= frame.h0 - 0.01
    aoi = json.loads((committed / "aoi.geojson").read_text())["features"][0]["properties"]
    assert aoi["min_height_m"] <= z[inside_aoi].min() and z[inside_aoi].max() <= aoi["max_height_m"]


def test_truth_render_cameras_follow_the_convention(committed):
    cams = json.loads((committed / "truth" / "renders" / "cameras.json").read_text())
    assert {c["elevation_deg"] for c in cams} == {45.0, 30.0} and len(cams) == 12
    for c in cams:
        K, w2c = np.array(c["K"]), np.array(c["w2c"])
        assert (c["width"], c["height"]) == (256, 256) and K[0, 2] == K[1, 2] == 127.5
        R = w2c[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        centre = -R.T @ w2c[:3, 3]
        el, az = math.radians(c["elevation_deg"]), math.radians(c["azimuth_deg"])
        np.testing.assert_allclose(centre, c["radius_m"] * np.array(
            [math.cos(el) * math.sin(az), math.cos(el) * math.cos(az), math.sin(el)]), atol=1e-6)
        cam = PinholeCamera(K, w2c, 256, 256)
        row, col, depth = cam.project(np.zeros((1, 3)))  # looks at the origin, image centre
        assert depth[0] > 0 and row[0] == pytest.approx(127.5, abs=1e-6) and col[0] == pytest.approx(127.5, abs=1e-6)
        row, col, _ = cam.project(np.array([[0.0, 0.0, 30.0]]))  # up in the world is up in the image
        assert row[0] < 127.5
        assert (committed / "truth" / "renders" / c["name"]).exists()


# ------------------------------------------------------------------------------ geometry
def test_ray_box_and_ellipsoid_intersections_are_exact():
    planes, _ = _box(1.0, 2.0, (1.0, 0.0), 2.0, 1.0, 0.0, 5.0)  # x in [-1, 3], y in [1, 3], z in [0, 5]
    o = np.array([[1.0, 2.0, 10.0], [-2.0, 2.0, 10.0], [-5.0, 2.0, 2.0], [1.0, 2.0, 10.0], [6.0, 2.0, 4.0]])
    d = np.array([[0.0, 0.0, -1.0], [0.6, 0.0, -0.8], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    t, face = intersect_convex(planes, o, d)
    np.testing.assert_allclose(t[[0, 1, 2, 4]], [5.0, 6.25, 4.0, 3.0])
    assert np.isinf(t[3])
    np.testing.assert_allclose(o[1] + t[1] * d[1], [1.75, 2.0, 5.0])
    np.testing.assert_array_equal(planes[face[[0, 1, 2, 4]], :3], [[0, 0, 1], [0, 0, 1], [-1, 0, 0], [1, 0, 0]])
    t, n = intersect_ellipsoid(np.array([0.0, 0.0, 5.0]), np.array([2.0, 2.0, 1.0]),
                               np.array([[0.0, 0.0, 10.0], [3.0, 0.0, 10.0]]), np.array([[0.0, 0.0, -1.0]] * 2))
    assert t[0] == pytest.approx(4.0) and np.isinf(t[1])
    np.testing.assert_allclose(n[0], [0, 0, 1])
