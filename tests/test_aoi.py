"""AOI loading/validation, coverage and scene selection, height range, per-scene crops."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box

from skyfall_core.config import AOIConfig
from skyfall_core.errors import AOIError, MixedUnitsError, SkyfallError, TooFewViewsError
from skyfall_core.geo.aoi import (
    AOI,
    HeightRange,
    coverage,
    crop_scene,
    crop_scenes,
    crop_window,
    estimate_height_range,
    load_aoi,
    rescale_rpc,
    select_usable,
)
from skyfall_core.geo.catalog import Scene, scan_scenes
from skyfall_core.geo.rpc import RPCModel

JAX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jax068"
IMAGES = sorted((JAX / "images").glob("*.tif"))


def needs_jax(test):
    """Mark a test as using the real JAX_068 data, and skip it when the data is absent."""
    return pytest.mark.jax(pytest.mark.skipif(not IMAGES, reason=f"JAX_068 data not found under {JAX}")(test))


def square(lon0: float, lat0: float, half_deg: float) -> dict:
    c = [[lon0 - half_deg, lat0 - half_deg], [lon0 + half_deg, lat0 - half_deg],
         [lon0 + half_deg, lat0 + half_deg], [lon0 - half_deg, lat0 + half_deg],
         [lon0 - half_deg, lat0 - half_deg]]
    return {"type": "Polygon", "coordinates": [c]}


def write_geojson(path: Path, obj: dict) -> Path:
    path.write_text(json.dumps(obj))
    return path


@pytest.fixture(scope="module")
def jax_scenes() -> list[Scene]:
    if not IMAGES:
        pytest.skip(f"JAX_068 data not found under {JAX}")
    return scan_scenes([JAX / "images"], [".tif"])


@pytest.fixture(scope="module")
def jax_aoi() -> AOI:
    if not IMAGES:
        pytest.skip(f"JAX_068 data not found under {JAX}")
    return load_aoi(JAX / "aoi.geojson")


# ----------------------------------------------------------------------------------- loading
@needs_jax
def test_jax_aoi_matches_the_truth_dsm_grid(jax_aoi):
    # the AOI is the extent of the 512 x 512 px, 0.5 m truth DSM in UTM 17N
    e_min, n_min, size, res = (float(v) for v in (JAX / "truth" / "JAX_068_DSM.txt").read_text().split())
    assert jax_aoi.utm_epsg == 32617
    assert jax_aoi.area_m2 == pytest.approx((size * res) ** 2, rel=1e-3)
    e, n, _ = jax_aoi.frame(0.0).enu_to_utm(np.zeros(3))
    assert e == pytest.approx(e_min + size * res / 2, abs=0.5)
    assert n == pytest.approx(n_min + size * res / 2, abs=0.5)
    assert jax_aoi.height_range is None and jax_aoi.source.endswith("aoi.geojson")


def test_polygon_feature_collection_text_and_dict_agree(tmp_path):
    poly = square(10.0, 45.0, 0.002)
    forms = [poly, {"type": "Feature", "properties": {}, "geometry": poly},
             {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": poly}]},
             json.dumps(poly), write_geojson(tmp_path / "a.geojson", poly), str(tmp_path / "a.geojson"),
             {"type": "MultiPolygon", "coordinates": [poly["coordinates"]]}]
    aois = [load_aoi(f) for f in forms]
    for a in aois:
        assert a.area_m2 == pytest.approx(aois[0].area_m2) and a.utm_epsg == 32632
        assert a.centre == pytest.approx((10.0, 45.0), abs=1e-7)
    assert aois[4].source.endswith("a.geojson")
    # 0.004 deg x 0.004 deg at 45N ~ 315 m x 445 m
    assert aois[0].area_m2 == pytest.approx(0.004 * 78_850 * 0.004 * 111_130, rel=0.01)
    enu = aois[0].frame(12.0).geodetic_to_enu(10.0, 45.0, 12.0)
    assert np.abs(enu).max() < 0.01


def test_height_range_from_properties(tmp_path):
    feat = {"type": "Feature", "properties": {"min_height_m": -30, "max_height_m": 45.5},
            "geometry": square(10.0, 45.0, 0.002)}
    aoi = load_aoi(feat)
    assert aoi.height_range == (-30.0, 45.5)
    assert estimate_height_range(aoi, [], margin_m=10) == HeightRange(-40.0, 55.5, "AOI properties")
    assert aoi.to_geojson()["properties"]["max_height_m"] == 45.5
    feat["properties"] = {"min_height_m": 50, "max_height_m": 10}
    with pytest.raises(AOIError, match="min_height_m"):
        load_aoi(feat)


@pytest.mark.parametrize("geometry,pattern", [
    # a bow-tie: two triangles meeting in a crossing point
    ({"type": "Polygon", "coordinates": [[[10, 45], [10.003, 45.003], [10.003, 45], [10, 45.003], [10, 45]]]},
     "Self-intersection"),
    (square(10.0, 45.0, 0.00005), "too small"),
    (square(10.0, 45.0, 0.05), "too large"),
    ({"type": "Point", "coordinates": [10, 45]}, "not a single Polygon"),
    ({"type": "Polygon", "coordinates": [[[436078, 3357495], [436334, 3357495], [436334, 3357751],
                                          [436078, 3357495]]]}, "outside longitude"),
    ({"type": "Polygon", "coordinates": [[[10, 45], [10.01, 45], [10, 45]]]}, "at least 3"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": square(10, 45, 0.001)},
                                                {"type": "Feature", "geometry": square(11, 45, 0.001)}]},
     "holds 2 polygons"),
    ({"type": "Polygon", "crs": {"type": "name", "properties": {"name": "EPSG:32617"}},
      "coordinates": square(10.0, 45.0, 0.002)["coordinates"]}, "not WGS84"),
])
def test_bad_aois_raise_with_file_and_fix(tmp_path, geometry, pattern):
    path = write_geojson(tmp_path / "bad_aoi.geojson", geometry)
    with pytest.raises(AOIError, match=pattern) as info:
        load_aoi(path)
    assert "bad_aoi.geojson" in str(info.value) and info.value.fix


def test_area_limits_come_from_the_config():
    small = square(10.0, 45.0, 0.0003)  # ~ 47 m x 67 m
    with pytest.raises(AOIError, match="too small"):
        load_aoi(small, AOIConfig(min_area_m2=5_000))
    assert load_aoi(small, AOIConfig(min_area_m2=1_000)).area_m2 < 5_000


def test_unreadable_aoi_files(tmp_path):
    with pytest.raises(AOIError, match="not found"):
        load_aoi(tmp_path / "missing.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("{'type': 'Polygon'")
    with pytest.raises(AOIError, match="not valid JSON"):
        load_aoi(bad)


# ----------------------------------------------------------------------------- selection
def _toy_rpc() -> RPCModel:
    """An affine RPC (north-up, ~1 m pixels near 10E 45N): enough for what these tests use."""
    num_r, num_c, den = np.zeros(20), np.zeros(20), np.zeros(20)
    num_r[2], num_c[1], den[0] = -1.0, 1.0, 1.0
    num_r[3], num_c[3] = 0.05, -0.02
    return RPCModel(50.0, 50.0, 45.0, 10.0, 0.0, 1110.0, 790.0, 0.01, 0.01, 500.0,
                    num_r, den, num_c, den.copy())


def _fake_scene(sid: str, footprint, dtype="uint16", **kw) -> Scene:
    return Scene(id=sid, path=Path(f"/data/{sid}.tif"), width=100, height=100, bands=3, dtype=dtype,
                 footprint=footprint, rpc=_toy_rpc(), **kw)


def test_coverage_fractions():
    aoi = load_aoi(square(10.0, 45.0, 0.002))
    assert coverage(aoi, _fake_scene("all", box(9.99, 44.99, 10.01, 45.01))) == pytest.approx(1.0)
    half = coverage(aoi, _fake_scene("west", box(9.99, 44.99, 10.0, 45.01)))
    assert half == pytest.approx(0.5, abs=2e-3)
    assert coverage(aoi, _fake_scene("none", box(11, 44, 11.1, 44.1))) == 0.0
    assert coverage(aoi, Scene(id="broken", path=Path("x.tif"), error="bad")) == 0.0


def test_select_usable_and_too_few_views():
    aoi = load_aoi(square(10.0, 45.0, 0.002))
    full = box(9.99, 44.99, 10.01, 45.01)
    scenes = [_fake_scene("a", full), _fake_scene("b", full), _fake_scene("c", box(9.99, 44.99, 10.0, 45.01)),
              Scene(id="broken", path=Path("/data/broken.tif"), error="broken.tif: cannot open")]
    assert [s.id for s in select_usable(aoi, scenes, 0.95, 2)] == ["a", "b"]
    assert [s.id for s in select_usable(aoi, scenes, 0.4, 3)] == ["a", "b", "c"]
    with pytest.raises(TooFewViewsError) as info:
        select_usable(aoi, scenes, 0.95, 3)
    assert "only 2" in str(info.value) and "c (50%)" in str(info.value) and "min_views" in info.value.fix
    with pytest.raises(TooFewViewsError, match="no usable scene"):
        select_usable(aoi, scenes[3:], 0.95, 3)
    mixed = scenes[:2] + [_fake_scene("refl", full, dtype="float32")]
    with pytest.raises(MixedUnitsError, match="refl.tif"):
        select_usable(aoi, mixed, 0.95, 3)


@needs_jax
def test_jax_views_all_cover_the_aoi(jax_aoi, jax_scenes):
    covs = [coverage(jax_aoi, s) for s in jax_scenes]
    assert min(covs) > 0.95  # the crops were cut around this AOI
    assert len(select_usable(jax_aoi, jax_scenes, 0.95, 3)) == 17
    with pytest.raises(TooFewViewsError):
        select_usable(jax_aoi, jax_scenes[:2], 0.95, 3)


@needs_jax
def test_aoi_outside_the_scenes_names_file_and_nearest_scene(tmp_path, jax_scenes):
    data = json.loads((JAX / "aoi.geojson").read_text())
    ring = data["features"][0]["geometry"]["coordinates"][0]
    data["features"][0]["geometry"]["coordinates"][0] = [[x + 1.0, y] for x, y in ring]
    moved = load_aoi(write_geojson(tmp_path / "moved_aoi.geojson", data))
    with pytest.raises(AOIError) as info:
        select_usable(moved, jax_scenes, 0.95, 3)
    msg = str(info.value)
    assert "AOI outside the scenes" in msg and "moved_aoi.geojson" in msg and "JAX_068_" in msg
    # 1 degree of longitude at 30.35N is 96.2 km, less the AOI's own 0.26 km width
    assert re.search(r"\(95\.[89]\d km away", msg)


@needs_jax
def test_height_range_sources(jax_aoi, jax_scenes):
    assert estimate_height_range(jax_aoi, jax_scenes, margin_m=10) == HeightRange(
        -37.0, 40.0, "Sat-NeRF json min_alt/max_alt")
    no_json = [replace(s, min_alt=None, max_alt=None) for s in jax_scenes]
    hr = estimate_height_range(jax_aoi, no_json)
    median = float(np.median([s.rpc.alt_offset for s in jax_scenes]))
    assert -30 < median < 0 and "coarse" in hr.source
    assert (hr.low_m, hr.high_m) == (median - 100.0, median + 100.0)


# ------------------------------------------------------------------------------------- crops
@pytest.fixture(scope="module")
def small_aoi(jax_aoi) -> AOI:
    lon, lat = jax_aoi.centre
    return load_aoi(square(lon, lat, 0.0004))  # ~ 77 m x 89 m inside the JAX AOI


def _raw(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read().transpose(1, 2, 0).astype(float)  # [H, W, 3]


def _ground_points(aoi: AOI, n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = aoi.polygon.bounds
    return rng.uniform(x0, x1, n), rng.uniform(y0, y1, n), rng.uniform(-27, 30, n)


@needs_jax
def test_crop_at_full_resolution_shows_the_same_content(jax_scenes, small_aoi):
    hr = HeightRange(-27.0, 30.0, "test")
    for scene in (jax_scenes[0], jax_scenes[7]):  # a moderate and the most oblique view
        crop = crop_scene(scene, small_aoi, hr, margin_m=5.0, max_image_size=2048)
        h, w = crop.valid.shape
        assert crop.scale == (1.0, 1.0) and (h, w) == crop.window and crop.row0 > 0 and crop.col0 > 0
        assert crop.image.dtype == np.float32 and crop.image.shape == (h, w, 3) and crop.valid.all()
        lon, lat, z = _ground_points(small_aoi)
        row, col = crop.rpc.projection(lon, lat, z)
        full_r, full_c = scene.rpc.projection(lon, lat, z)
        np.testing.assert_allclose(row, full_r - crop.row0, atol=1e-9)
        np.testing.assert_allclose(col, full_c - crop.col0, atol=1e-9)
        assert row.min() >= -0.5 and row.max() < h - 0.5 and col.min() >= -0.5 and col.max() < w - 0.5
        # pixel values: the crop is a per-band affine stretch of the source pixels it came from
        ri, ci = np.rint(row).astype(int), np.rint(col).astype(int)
        src = _raw(scene.path)[np.rint(full_r).astype(int), np.rint(full_c).astype(int)]
        got = crop.image[ri, ci]
        for k in range(3):
            keep = (got[:, k] > 0) & (got[:, k] < 1)  # not clipped by the stretch
            a, b = np.polyfit(src[keep, k], got[keep, k], 1)
            assert a > 0 and np.abs(a * src[keep, k] + b - got[keep, k]).max() < 1e-5


@needs_jax
def test_downsampled_crop_rpc_arithmetic_and_content(jax_scenes, small_aoi):
    import cv2
    from scipy.ndimage import map_coordinates

    scene = jax_scenes[3]
    crop = crop_scene(scene, small_aoi, (-27.0, 30.0), margin_m=5.0, max_image_size=100)
    h, w = crop.valid.shape
    assert max(h, w) == 100 and crop.scale[0] < 0.5
    assert crop.scale == pytest.approx((h / crop.window[0], w / crop.window[1]))
    lon, lat, z = _ground_points(small_aoi, n=2000)
    row, col = crop.rpc.projection(lon, lat, z)
    full_r, full_c = scene.rpc.projection(lon, lat, z)
    sy, sx = crop.scale
    np.testing.assert_allclose(row, (full_r - crop.row0 + 0.5) * sy - 0.5, atol=1e-8)
    np.testing.assert_allclose(col, (full_c - crop.col0 + 0.5) * sx - 0.5, atol=1e-8)
    back_r, back_c = crop.to_source(row, col)
    np.testing.assert_allclose(back_r, full_r, atol=1e-8)
    np.testing.assert_allclose(back_c, full_c, atol=1e-8)
    # content: the crop sampled at the projected points correlates with the box-filtered source
    # sampled at the full-resolution points; a one-crop-pixel misregistration correlates less
    grey = _raw(scene.path).mean(axis=2).astype(np.float32)
    k = int(round(1 / sy))
    smooth = cv2.blur(grey, (k, k))
    ref = map_coordinates(smooth, [full_r, full_c], order=1)  # bilinear
    img = crop.image.mean(axis=2)

    def corr(dr: float, dc: float) -> float:
        return float(np.corrcoef(map_coordinates(img, [row + dr, col + dc], order=1), ref)[0, 1])

    aligned = corr(0, 0)
    assert aligned > 0.9 and aligned > max(corr(1, 0), corr(0, 1), corr(-1, 0), corr(0, -1)) + 0.05


def test_rescale_rpc_equals_scaled_when_isotropic():
    rpc = _toy_rpc()
    a, b = rescale_rpc(rpc, 0.4, 0.4), rpc.scaled(0.4)
    assert a.to_dict() == b.to_dict()


@needs_jax
def test_crop_outside_an_image_raises(jax_scenes, small_aoi, tmp_path):
    far = load_aoi(square(small_aoi.centre[0] + 0.01, small_aoi.centre[1], 0.0004))
    with pytest.raises(AOIError, match="projects outside scene"):
        crop_window(jax_scenes[0], far, (-27.0, 30.0), 5.0)
    broken = Scene(id="b", path=tmp_path / "b.tif", error=f"{tmp_path / 'b.tif'}: cannot open raster")
    with pytest.raises(SkyfallError, match="b.tif"):
        crop_scene(broken, small_aoi, (-27.0, 30.0), 5.0, 512)


@needs_jax
def test_crop_scenes_checks_units(jax_scenes, small_aoi):
    crops = crop_scenes(jax_scenes[:2], small_aoi, (-27.0, 30.0), 5.0, 64)
    assert [c.scene_id for c in crops] == [s.id for s in jax_scenes[:2]]
    assert crops[0].meta()["rpc"]["row_offset"] == crops[0].rpc.row_offset
    with pytest.raises(MixedUnitsError):
        crop_scenes([jax_scenes[0], replace(jax_scenes[1], dtype="float32")], small_aoi, (-27.0, 30.0), 5.0, 64)
