"""RPC camera model: readers (tags, .RPB, _RPC.TXT, Sat-NeRF json), maths, and GDAL agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skyfall_core.errors import CorruptRasterError, MissingRPCError, RPCInversionError
from skyfall_core.geo.rpc import RPCModel, read_rpb, read_rpc, read_rpc_txt, read_satnerf_json

JAX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jax068"
IMAGES = sorted((JAX / "images").glob("*.tif"))


def needs_jax(test):
    """Mark a test as using the real JAX_068 data, and skip it when the data is absent."""
    return pytest.mark.jax(pytest.mark.skipif(not IMAGES, reason=f"JAX_068 data not found under {JAX}")(test))


pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

_RPB_NAMES = [("lineOffset", "row_offset"), ("sampOffset", "col_offset"), ("latOffset", "lat_offset"),
              ("longOffset", "lon_offset"), ("heightOffset", "alt_offset"), ("lineScale", "row_scale"),
              ("sampScale", "col_scale"), ("latScale", "lat_scale"), ("longScale", "lon_scale"),
              ("heightScale", "alt_scale")]
_TXT_NAMES = [("LINE_OFF", "row_offset", "pixels"), ("SAMP_OFF", "col_offset", "pixels"),
              ("LAT_OFF", "lat_offset", "degrees"), ("LONG_OFF", "lon_offset", "degrees"),
              ("HEIGHT_OFF", "alt_offset", "meters"), ("LINE_SCALE", "row_scale", "pixels"),
              ("SAMP_SCALE", "col_scale", "pixels"), ("LAT_SCALE", "lat_scale", "degrees"),
              ("LONG_SCALE", "lon_scale", "degrees"), ("HEIGHT_SCALE", "alt_scale", "meters")]
_COEFF_NAMES = [("lineNumCoef", "LINE_NUM_COEFF", "row_num"), ("lineDenCoef", "LINE_DEN_COEFF", "row_den"),
                ("sampNumCoef", "SAMP_NUM_COEFF", "col_num"), ("sampDenCoef", "SAMP_DEN_COEFF", "col_den")]


def write_rpb(rpc: RPCModel, path: Path, errbias_first: bool = True) -> Path:
    """A DigitalGlobe/Maxar .RPB in the vendor's layout (with more digits than the vendor's)."""
    lines = ['satId = "WV03";', 'bandId = "MS1";', 'SpecId = "RPC00B";', "BEGIN_GROUP = IMAGE"]
    if errbias_first:
        lines += ["\terrBias =   -1.00;", "\terrRand =   -1.00;"]
    lines += [f"\t{k} = {getattr(rpc, a):+.15g};" for k, a in _RPB_NAMES]
    for k, _, a in _COEFF_NAMES:
        coeffs = ",\n".join(f"\t\t\t{v:+.15E}" for v in getattr(rpc, a))
        lines.append(f"\t{k} = (\n{coeffs});")
    lines += ["END_GROUP = IMAGE", "END;"]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_rpc_txt(rpc: RPCModel, path: Path) -> Path:
    """An _RPC.TXT in the vendor's layout ('LINE_OFF: +008155.45 pixels', 'LINE_NUM_COEFF_1: ...')."""
    lines = [f"{k}: {getattr(rpc, a):+017.10f} {unit}" for k, a, unit in _TXT_NAMES]
    for _, k, a in _COEFF_NAMES:
        lines += [f"{k}_{i + 1}: {v:+.15E}" for i, v in enumerate(getattr(rpc, a))]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_geotiff(path: Path, rpc: RPCModel | None = None, shape=(3, 32, 40), dtype="uint8") -> Path:
    import rasterio

    data = (np.arange(np.prod(shape)).reshape(shape) % 200 + 1).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", count=shape[0], height=shape[1], width=shape[2],
                       dtype=dtype) as ds:
        ds.write(data)
        if rpc is not None:
            ds.update_tags(ns="RPC", **rpc.to_gdal())
    return path


def _gdal_rpc(tif: Path) -> RPCModel:
    """The RPC GDAL itself reads for ``tif`` (from tags or a sidecar it recognises)."""
    import rasterio

    with rasterio.open(tif) as ds:
        md = ds.tags(ns="RPC")
    assert md, f"GDAL found no RPC for {tif}"
    return RPCModel.from_gdal(md)


def sample_points(rpc: RPCModel, width: int, height: int, n: int = 200, seed: int = 0):
    """Random ground points (lon, lat, h) seen inside the image."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(-30.0, 40.0, n)
    lon, lat = rpc.localization(rng.uniform(0, height - 1, n), rng.uniform(0, width - 1, n), h)
    return lon, lat, h


@pytest.fixture(scope="module")
def jax_rpc() -> RPCModel:
    if not IMAGES:
        pytest.skip(f"JAX_068 data not found under {JAX}")
    return read_rpc(IMAGES[0])


# ----------------------------------------------------------------------------------- readers
@needs_jax
def test_tags_and_satnerf_json_agree_on_every_view():
    for img in IMAGES:
        rpc = read_rpc(img)
        json_rpc, meta = read_satnerf_json(JAX / "rpcs_raw" / f"{img.stem}.json")
        lon, lat, h = sample_points(rpc, meta["width"], meta["height"], n=50)
        np.testing.assert_allclose(np.stack(json_rpc.projection(lon, lat, h)),
                                   np.stack(rpc.projection(lon, lat, h)), atol=1e-9)


@needs_jax
@pytest.mark.parametrize("errbias_first", [True, False])
def test_rpb_sidecar_gives_the_same_projection(jax_rpc, tmp_path, errbias_first):
    rpb = write_rpb(jax_rpc, tmp_path / "scene.RPB", errbias_first=errbias_first)
    lon, lat, h = sample_points(jax_rpc, 746, 815)
    expected = np.stack(jax_rpc.projection(lon, lat, h))
    np.testing.assert_allclose(np.stack(read_rpb(rpb).projection(lon, lat, h)), expected, atol=1e-9)
    # a GeoTIFF without RPC tags + the sidecar: found by read_rpc (GDAL itself also reads .RPB,
    # so this also checks that GDAL understands the file we wrote)
    tif = write_geotiff(tmp_path / "scene.tif")
    np.testing.assert_allclose(np.stack(read_rpc(tif).projection(lon, lat, h)), expected, atol=1e-9)
    np.testing.assert_allclose(np.stack(_gdal_rpc(tif).projection(lon, lat, h)), expected, atol=1e-6)


@needs_jax
def test_rpc_txt_sidecar_gives_the_same_projection(jax_rpc, tmp_path):
    txt = write_rpc_txt(jax_rpc, tmp_path / "scene_RPC.TXT")
    assert "LINE_OFF: +08155.4460751030 pixels" in txt.read_text()
    lon, lat, h = sample_points(jax_rpc, 746, 815)
    expected = np.stack(jax_rpc.projection(lon, lat, h))
    np.testing.assert_allclose(np.stack(read_rpc_txt(txt).projection(lon, lat, h)), expected, atol=1e-6)
    tif = write_geotiff(tmp_path / "scene.tif")
    np.testing.assert_allclose(np.stack(read_rpc(tif).projection(lon, lat, h)), expected, atol=1e-6)
    np.testing.assert_allclose(np.stack(_gdal_rpc(tif).projection(lon, lat, h)), expected, atol=1e-6)


@needs_jax
def test_satnerf_json_round_trip(jax_rpc, tmp_path):
    path = tmp_path / "view.json"
    path.write_text(json.dumps({"img": "view.tif", "rpc": jax_rpc.to_dict()}))
    rpc, meta = read_satnerf_json(path)
    assert meta["img"] == "view.tif"
    assert rpc.to_dict() == jax_rpc.to_dict()
    assert RPCModel.from_gdal(jax_rpc.to_gdal()).to_dict() == jax_rpc.to_dict()


def test_bad_json_and_missing_rpc_block(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CorruptRasterError, match="bad.json"):
        read_satnerf_json(bad)
    no_rpc = tmp_path / "no_rpc.json"
    no_rpc.write_text('{"img": "a.tif"}')
    with pytest.raises(MissingRPCError, match="no_rpc.json"):
        read_satnerf_json(no_rpc)
    partial = tmp_path / "partial.json"
    partial.write_text('{"rpc": {"row_offset": 1.0}}')
    with pytest.raises(MissingRPCError, match="partial.json.*malformed"):
        read_satnerf_json(partial)


def test_raster_without_rpc_names_file_and_sidecar_fix(tmp_path):
    tif = write_geotiff(tmp_path / "plain.tif")
    with pytest.raises(MissingRPCError) as info:
        read_rpc(tif)
    msg = str(info.value)
    assert "plain.tif" in msg and "plain.RPB" in msg and "plain_RPC.TXT" in msg


def test_incomplete_rpc_tags_raise_missing_rpc():
    with pytest.raises(MissingRPCError, match="LINE_OFF"):
        RPCModel.from_gdal({"SAMP_OFF": "1"}, source="x.tif")


@needs_jax
def test_truncated_and_non_raster_files_raise_corrupt(tmp_path):
    trunc = tmp_path / "trunc.tif"
    trunc.write_bytes(IMAGES[0].read_bytes()[:2048])
    with pytest.raises(CorruptRasterError, match="trunc.tif"):
        read_rpc(trunc)
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster\n")
    with pytest.raises(CorruptRasterError, match="notes.tif"):
        read_rpc(text)


# ------------------------------------------------------------------------------------- maths
@needs_jax
def test_projection_matches_gdal_rpc_transformer_on_all_views():
    import rasterio
    from rasterio.transform import RPCTransformer

    worst = 0.0
    for img in IMAGES:
        with rasterio.open(img) as ds:
            rpcs, width, height = ds.rpcs, ds.width, ds.height
        rpc = read_rpc(img)
        lon, lat, h = sample_points(rpc, width, height, n=100)
        with RPCTransformer(rpcs) as t:
            g_row, g_col = t.rowcol(lon, lat, h, op=lambda x: x)
            g_lon, g_lat = t.xy(np.full(5, 100), np.arange(5) * 100, np.full(5, 10.0), offset="center")
        row, col = rpc.projection(lon, lat, h)
        worst = max(worst, np.abs(np.asarray(g_row) - (row + 0.5)).max(),
                    np.abs(np.asarray(g_col) - (col + 0.5)).max())
        # GDAL's iterative inverse at pixel centres agrees with ours to ~1 mm
        o_lon, o_lat = rpc.localization(np.full(5, 100), np.arange(5) * 100, np.full(5, 10.0))
        np.testing.assert_allclose(np.asarray(g_lon), o_lon, atol=1e-8)
        np.testing.assert_allclose(np.asarray(g_lat), o_lat, atol=1e-8)
    assert worst < 1e-3


@needs_jax
def test_projection_localization_round_trips(jax_rpc):
    rng = np.random.default_rng(1)
    rows, cols, h = rng.uniform(0, 815, 500), rng.uniform(0, 746, 500), rng.uniform(-30, 40, 500)
    lon, lat = jax_rpc.localization(rows, cols, h)
    r2, c2 = jax_rpc.projection(lon, lat, h)
    assert np.abs(r2 - rows).max() < 1e-6 and np.abs(c2 - cols).max() < 1e-6
    lon2, lat2 = jax_rpc.localization(r2, c2, h)
    # 1e-6 px is ~ 3e-12 degrees at 0.3 m pixels
    assert np.abs(lon2 - lon).max() < 3e-12 and np.abs(lat2 - lat).max() < 3e-12
    # scalars work too
    lon_s, lat_s = jax_rpc.localization(10.0, 20.0, 0.0)
    assert np.ndim(lon_s) == 0 and np.isclose(jax_rpc.projection(lon_s, lat_s, 0.0)[0], 10.0, atol=1e-6)


@needs_jax
def test_shifted_and_scaled_are_consistent(jax_rpc):
    lon, lat, h = sample_points(jax_rpc, 746, 815)
    row, col = jax_rpc.projection(lon, lat, h)
    s_row, s_col = jax_rpc.shifted(123.0, -45.5).projection(lon, lat, h)
    np.testing.assert_allclose(s_row, row - 123.0, atol=1e-9)
    np.testing.assert_allclose(s_col, col + 45.5, atol=1e-9)
    for f in (0.5, 0.37, 2.0):
        f_row, f_col = jax_rpc.scaled(f).projection(lon, lat, h)
        np.testing.assert_allclose(f_row, (row + 0.5) * f - 0.5, atol=1e-8)
        np.testing.assert_allclose(f_col, (col + 0.5) * f - 0.5, atol=1e-8)
    # halving: the 2x2 block of source pixels 0,1 has its centre at 0.5 -> centre 0 of the half image
    assert np.isclose(jax_rpc.scaled(0.5).projection(lon[0], lat[0], h[0])[0],
                      (row[0] - 0.5) / 2, atol=1e-8)
    back = jax_rpc.scaled(0.37).scaled(1 / 0.37)
    np.testing.assert_allclose(np.stack(back.projection(lon, lat, h)), np.stack([row, col]), atol=1e-8)
    # localisation through the shifted model lands on the same ground points
    loc = jax_rpc.shifted(100, 200).localization(row - 100, col - 200, h)
    np.testing.assert_allclose(np.stack(loc), np.stack([lon, lat]), atol=1e-11)


@needs_jax
def test_inversion_error_on_both_sides_of_the_boundary(jax_rpc):
    rows, cols, h = np.array([10.0, 500.0]), np.array([20.0, 700.0]), np.array([0.0, 30.0])
    jax_rpc.localization(rows, cols, h, max_iter=3)  # converges in 3 Gauss-Newton steps
    with pytest.raises(RPCInversionError, match="did not converge"):
        jax_rpc.localization(rows, cols, h, max_iter=2)


@needs_jax
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_inversion_error_far_outside_the_validity_domain(jax_rpc):
    with pytest.raises(RPCInversionError) as info:
        jax_rpc.localization(1e6, 1e6, 0.0)
    assert info.value.fix and "validity domain" in info.value.fix


def test_coefficient_count_is_checked():
    with pytest.raises(ValueError, match="20 coefficients"):
        RPCModel(0, 0, 0, 0, 0, 1, 1, 1, 1, 1, np.zeros(19), np.ones(20), np.zeros(20), np.ones(20))
