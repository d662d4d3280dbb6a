"""Scene catalog, raster reading/normalisation and solar position."""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from skyfall_core.errors import ConfigError, CorruptRasterError, MixedUnitsError
from skyfall_core.geo import catalog
from skyfall_core.geo.catalog import (
    Scene,
    catalog_table,
    ground_sample_distance,
    off_nadir_from_zenith,
    parse_datetime,
    read_scene,
    scan_scenes,
    view_angles,
)
from skyfall_core.geo.imageio import check_units, read_window, resize_masked
from skyfall_core.geo.rpc import RPCModel
from skyfall_core.geo.sun import solar_position

JAX = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "jax068"
IMAGES = sorted((JAX / "images").glob("*.tif"))
SAMPLE_SCENES = Path(__file__).resolve().parents[1] / "sample_aoi" / "scenes"


def needs_jax(test):
    """Mark a test as using the real JAX_068 data, and skip it when the data is absent."""
    return pytest.mark.jax(pytest.mark.skipif(not IMAGES, reason=f"JAX_068 data not found under {JAX}")(test))


pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

_A, _E2 = 6378137.0, 6.69437999014e-3  # WGS84


def synthetic_rpc(lon0=-81.66, lat0=30.35, h0=0.0, gsd=0.5, zenith=25.0, azimuth=60.0,
                  width=200, height=160) -> RPCModel:
    """An affine RPC of an ideal satellite: ground plane sampled at ``gsd`` metres (north up),
    seen from ``azimuth``/``zenith`` degrees (a point raised by dh moves dh*tan(zenith) away
    from the satellite in the image). The image centre sees (lon0, lat0, h0)."""
    phi = math.radians(lat0)
    w = math.sqrt(1 - _E2 * math.sin(phi) ** 2)
    m_lon = math.radians(1) * _A / w * math.cos(phi)  # metres per degree of longitude
    m_lat = math.radians(1) * _A * (1 - _E2) / w ** 3  # metres per degree of latitude
    lon_s, lat_s, alt_s = 0.01, 0.01, 500.0
    t = math.tan(math.radians(zenith))
    sa, ca = math.sin(math.radians(azimuth)), math.cos(math.radians(azimuth))
    col_num, row_num, den = np.zeros(20), np.zeros(20), np.zeros(20)
    den[0] = 1.0
    col_num[1], col_num[3] = 1.0, -alt_s * t * sa / (lon_s * m_lon)  # ncol = L + k H
    row_num[2], row_num[3] = -1.0, alt_s * t * ca / (lat_s * m_lat)  # nrow = -P + k H
    return RPCModel(row_offset=(height - 1) / 2, col_offset=(width - 1) / 2, lat_offset=lat0,
                    lon_offset=lon0, alt_offset=h0, row_scale=lat_s * m_lat / gsd,
                    col_scale=lon_s * m_lon / gsd, lat_scale=lat_s, lon_scale=lon_s, alt_scale=alt_s,
                    row_num=row_num, row_den=den, col_num=col_num, col_den=den.copy())


def write_raster(path: Path, data: np.ndarray, rpc: RPCModel | None = None, nodata=None,
                 tags: dict | None = None, descriptions=None) -> Path:
    """A GeoTIFF of ``data`` [B, H, W] with optional RPC tags, nodata, tags and band names."""
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", count=data.shape[0], height=data.shape[1],
                       width=data.shape[2], dtype=data.dtype, nodata=nodata) as ds:
        ds.write(data)
        if rpc is not None:
            ds.update_tags(ns="RPC", **rpc.to_gdal())
        if tags:
            ds.update_tags(**tags)
        for i, d in enumerate(descriptions or []):
            ds.set_band_description(i + 1, d)
    return path


def textured(shape=(3, 160, 200), hi=2047, seed=0, dtype="uint16") -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1, hi + 1, size=shape).astype(dtype)


# ------------------------------------------------------------------------------------ imageio
def test_11bit_pan_is_replicated_and_nodata_is_invalid(tmp_path):
    data = textured((1, 40, 50))
    data[0, :10, :] = 0  # fill
    path = write_raster(tmp_path / "pan.tif", data, nodata=0)
    image, valid = read_window(path, 0, 0, 40, 50)
    assert image.shape == (40, 50, 3) and image.dtype == np.float32 and valid.shape == (40, 50)
    assert not valid[:10].any() and valid[10:].all()
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    assert image.min() == 0.0 and image.max() == 1.0 and np.all(image[:10] == 0)
    # the stretch is monotone in the DNs
    dn, v = data[0][valid].astype(float), image[..., 0][valid]
    order = np.argsort(dn, kind="stable")
    assert np.all(np.diff(v[order]) >= 0)


def test_8bit_and_16bit_copies_of_a_view_look_alike(tmp_path):
    dn = textured((3, 60, 70))
    dn[:, 30:, :] //= 3  # some structure
    as8 = np.round(dn / 2047.0 * 255.0).astype("uint8")
    a, va = read_window(write_raster(tmp_path / "a.tif", dn), 0, 0, 60, 70)
    b, vb = read_window(write_raster(tmp_path / "b.tif", as8), 0, 0, 60, 70)
    assert va.all() and vb.all()
    assert np.abs(a - b).mean() < 0.01 and np.abs(a - b).max() < 0.05


def test_all_zero_pixels_are_invalid_without_nodata(tmp_path):
    data = textured((3, 20, 20), hi=255, dtype="uint8")
    data[:, 5, 5] = 0
    data[0, 6, 6] = 0  # one zero band is not fill
    image, valid = read_window(write_raster(tmp_path / "z.tif", data), 0, 0, 20, 20)
    assert not valid[5, 5] and valid[6, 6] and valid.sum() == 399


def test_float_nan_is_invalid(tmp_path):
    data = np.random.default_rng(0).uniform(0.01, 0.4, (3, 10, 10)).astype("float32")
    data[:, 2, 3] = np.nan
    image, valid = read_window(write_raster(tmp_path / "refl.tif", data), 0, 0, 10, 10)
    assert not valid[2, 3] and valid.sum() == 99 and np.isfinite(image).all()


def test_multiband_takes_rgb_from_band_names_else_first_three(tmp_path):
    data = np.stack([np.full((8, 8), v, "uint16") for v in (10, 20, 30, 40, 50)])
    data[:, 0, 0] += 1  # not constant, so that the stretch is defined
    named = write_raster(tmp_path / "ms.tif", data,
                         descriptions=["Coastal", "Blue", "Green", "Yellow", "Red"])
    plain = write_raster(tmp_path / "plain.tif", data)
    import rasterio

    from skyfall_core.geo.imageio import rgb_band_indexes
    with rasterio.open(named) as ds:
        assert rgb_band_indexes(ds) == [5, 3, 2]
    with rasterio.open(plain) as ds:
        assert rgb_band_indexes(ds) == [1, 2, 3]
    image, valid = read_window(named, 0, 0, 8, 8)
    assert image.shape == (8, 8, 3) and valid.all()


def _squares(count: int) -> np.ndarray:
    """``count`` uint16 bands of 40x40, band k (1-based) bright only in its own 4x4 square."""
    data = np.full((count, 40, 40), 100, "uint16")
    for k in range(count):
        data[k, 4 * k:4 * k + 4, 0:4] = 2000
    return data


def _bright_band(image: np.ndarray, channel: int) -> int:
    """The 1-based band whose square is bright in ``channel`` of a read view."""
    rows = [int(image[4 * k:4 * k + 4, 0:4, channel].mean() > 0.5) for k in range(image.shape[0] // 4)]
    assert sum(rows) == 1, rows
    return rows.index(1) + 1


@pytest.mark.parametrize("count, rgb", [(4, [3, 2, 1]), (8, [5, 3, 2]), (5, [1, 2, 3])])
def test_unnamed_multispectral_bands_follow_the_vendors_order(tmp_path, count, rgb):
    """4 unnamed bands are blue, green, red, NIR (Maxar, Planet, SkySat); 8 are WorldView-2/3's
    coastal, blue, green, yellow, red, red edge, NIR1, NIR2; other counts: the first three."""
    import rasterio

    from skyfall_core.geo.imageio import rgb_band_indexes

    path = write_raster(tmp_path / "ms.tif", _squares(count))
    with rasterio.open(path) as ds:
        assert rgb_band_indexes(ds) == rgb
    image, _ = read_window(path, 0, 0, 40, 40)
    assert [_bright_band(image, c) for c in range(3)] == rgb  # the pixels come from those bands


def test_a_guessed_band_order_is_said_naming_the_file_and_the_fix(tmp_path):
    from skyfall_core.geo.imageio import assumed_band_order

    four = write_raster(tmp_path / "ms4.tif", _squares(4))
    note = assumed_band_order(four)
    assert note is not None and note.startswith("ms4.tif: its 4 bands are not named")
    assert "bands 3, 2, 1" in note and "blue, green, red, NIR" in note and ".IMD" in note
    assert "bands 1, 2, 3" in assumed_band_order(write_raster(tmp_path / "ms5.tif", _squares(5)))
    for quiet in (write_raster(tmp_path / "rgb.tif", _squares(3)),  # three bands: RGB
                  write_raster(tmp_path / "pan.tif", _squares(1)),
                  write_raster(tmp_path / "named.tif", _squares(4), descriptions=["Blue", "Green", "Red", "NIR"])):
        assert assumed_band_order(quiet) is None, quiet.name
    (tmp_path / "ms4.IMD").write_text("".join(f"BEGIN_GROUP = BAND_{b}\nEND_GROUP = BAND_{b}\n" for b in "BGRN"))
    assert assumed_band_order(four) is None  # the IMD beside it says


def test_band_order_from_the_imd_or_dimap_beside_the_image(tmp_path):
    import rasterio

    from skyfall_core.geo.imageio import rgb_band_indexes

    def indexes(path):
        with rasterio.open(path) as ds:
            return rgb_band_indexes(ds)

    imd_dir, dim_dir = tmp_path / "maxar", tmp_path / "pleiades"
    imd_dir.mkdir()
    dim_dir.mkdir()
    tif = write_raster(imd_dir / "19OCT01-M2AS.TIF", _squares(4))
    groups = "".join(f"BEGIN_GROUP = BAND_{b}\n\tULLon = -95.9;\nEND_GROUP = BAND_{b}\n" for b in "RGBN")
    (imd_dir / "19OCT01-M2AS.IMD").write_text(f'version = "28.3";\n{groups}END;\n')
    assert indexes(tif) == [1, 2, 3]  # the IMD lists red, green, blue, NIR
    (imd_dir / "19OCT01-M2AS.IMD").write_text(groups.replace("BAND_R", "BAND_X").replace("BAND_B", "BAND_R")
                                              .replace("BAND_X", "BAND_B"))
    assert indexes(tif) == [3, 2, 1]
    (imd_dir / "19OCT01-M2AS.IMD").write_text("BEGIN_GROUP = BAND_P\nEND_GROUP = BAND_P\n")  # not this image's
    assert indexes(tif) == [3, 2, 1]  # the 4-band order
    named = write_raster(imd_dir / "named.tif", _squares(4), descriptions=["Red", "Green", "Blue", "NIR"])
    shutil.copy(imd_dir / "19OCT01-M2AS.IMD", imd_dir / "named.IMD")
    assert indexes(named) == [1, 2, 3]  # names in the file come first

    jp = write_raster(dim_dir / "IMG_PHR1A_MS_001_R1C1.tif", _squares(4))
    rows = "".join(f"<Raster_Index><BAND_ID>{b}</BAND_ID><BAND_INDEX>{i}</BAND_INDEX></Raster_Index>"
                   for i, b in enumerate(["B2", "B1", "B0", "B3"], 1))
    (dim_dir / "DIM_PHR1A_MS_001.XML").write_text(
        "<Dimap_Document><Raster_Data><Raster_Index_List>" + rows + "</Raster_Index_List></Raster_Data>"
        "<Raster_Display><Band_Display_Order><RED_CHANNEL>B2</RED_CHANNEL><GREEN_CHANNEL>B1</GREEN_CHANNEL>"
        "<BLUE_CHANNEL>B0</BLUE_CHANNEL></Band_Display_Order></Raster_Display></Dimap_Document>")
    assert indexes(jp) == [1, 2, 3]
    image, _ = read_window(jp, 0, 0, 40, 40)
    assert [_bright_band(image, c) for c in range(3)] == [1, 2, 3]


def test_window_outside_the_image_is_invalid(tmp_path):
    path = write_raster(tmp_path / "a.tif", textured((3, 20, 30), hi=255, dtype="uint8"))
    image, valid = read_window(path, -5, 25, 10, 10)
    assert valid[5:, :5].all() and not valid[:5].any() and not valid[:, 5:].any()
    assert np.all(image[~valid] == 0)


def test_area_downsampling_ignores_invalid_pixels():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 1, (40, 60, 3)).astype(np.float32)
    valid = np.ones((40, 60), bool)
    import cv2

    small, sv = resize_masked(image, valid, (20, 30))
    np.testing.assert_allclose(small, cv2.resize(image, (30, 20), interpolation=cv2.INTER_AREA), atol=1e-6)
    assert sv.all()
    valid[:, :31] = False  # left half invalid (and dark): the boundary pixels keep the valid mean
    image[~valid] = 0
    small, sv = resize_masked(image, valid, (20, 30))
    assert not sv[:, :15].any() and sv[:, 16:].all()
    np.testing.assert_allclose(small[:, 15], image[:, 31].reshape(20, 2, 3).mean(1), atol=1e-6)


def test_read_window_downsamples_to_out_size(tmp_path):
    path = write_raster(tmp_path / "a.tif", textured((3, 64, 48), hi=255, dtype="uint8"))
    image, valid = read_window(path, 0, 0, 64, 48, out_size=(32, 24))
    assert image.shape == (32, 24, 3) and valid.shape == (32, 24) and valid.all()


@needs_jax
def test_truncated_and_non_raster_files_raise_corrupt(tmp_path):
    trunc = tmp_path / "trunc.tif"
    trunc.write_bytes(IMAGES[0].read_bytes()[:2048])
    with pytest.raises(CorruptRasterError, match="trunc.tif"):
        read_window(trunc, 0, 0, 10, 10)
    half = tmp_path / "half.tif"  # header and tags intact, pixels cut off
    half.write_bytes(IMAGES[0].read_bytes()[:200_000])
    with pytest.raises(CorruptRasterError, match="half.tif"):
        read_window(half, 0, 0, 815, 746)
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(CorruptRasterError, match="notes.tif"):
        read_window(text, 0, 0, 10, 10)


def test_mixed_units_raise():
    assert check_units([("a.tif", "uint16"), ("b.tif", "uint8")]) == "dn"
    assert check_units([("a.tif", "float32")]) == "reflectance"
    with pytest.raises(MixedUnitsError) as info:
        check_units([("a.tif", "uint16"), ("refl.tif", "float32")])
    assert "refl.tif" in str(info.value) and "a.tif" in str(info.value)


# ------------------------------------------------------------------------------------------ sun
def test_solar_position_matches_nrel_spa():
    # reference values from NREL SPA (pvlib.solarposition.spa_python), elevation without refraction
    cases = [(datetime(2014, 10, 5, 16, 1, 38), -81.66378, 30.34875, 50.6376, 150.3520),
             (datetime(2015, 7, 5, 16, 29, 54), -81.66378, 30.34875, 74.3520, 115.3270),
             (datetime(2015, 1, 21, 16, 12, 53), -81.66378, 30.34875, 35.7777, 155.1462)]
    for when, lon, lat, el, az in cases:
        e, a = solar_position(when.replace(tzinfo=timezone.utc), lon, lat)
        assert abs(e - el) < 0.02 and abs(a - az) < 0.02


def test_solar_position_basic_geometry():
    # equinox noon on the equator: sun near the zenith; morning in the east, afternoon in the west
    e, _ = solar_position(datetime(2021, 3, 20, 12, 7), 0.0, 0.0)
    assert e > 89.0
    _, a_am = solar_position(datetime(2021, 6, 21, 8, 0), 0.0, 45.0)
    _, a_pm = solar_position(datetime(2021, 6, 21, 16, 0), 0.0, 45.0)
    assert 45 < a_am < 135 and 225 < a_pm < 315
    e, a = solar_position(datetime(2021, 6, 21, 12, 0), np.array([0.0, 0.0]), np.array([45.0, -45.0]))
    assert e.shape == (2,) and abs(a[0] - 180) < 2 and min(a[1], 360 - a[1]) < 2


@needs_jax
def test_solar_position_against_jax_metadata():
    """The vendor's sun angles are scene means (another point, a few seconds apart): they agree
    with ours at the crop centre to a few tenths of a degree on the sky."""
    def unit(el, az):
        el, az = np.radians(el), np.radians(az)
        return np.array([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)])

    worst = 0.0
    for path in sorted((JAX / "rpcs_raw").glob("*.json")):
        meta = json.loads(path.read_text())
        lon, lat = meta["geojson"]["center"]
        when = parse_datetime(meta["acquisition_date"])
        el, az = solar_position(when, lon, lat)
        sep = np.degrees(np.arccos(np.clip(unit(el, az) @ unit(float(meta["sun_elevation"]),
                                                                  float(meta["sun_azimuth"])), -1, 1)))
        worst = max(worst, sep)
        assert abs(el - float(meta["sun_elevation"])) < 0.3
    assert worst < 0.3


# ------------------------------------------------------------------------------ RPC geometry
@pytest.mark.parametrize("zenith,azimuth", [(25.0, 60.0), (8.0, 200.0), (32.0, 300.0), (15.0, 0.5)])
def test_view_angles_and_gsd_of_an_ideal_satellite(zenith, azimuth):
    rpc = synthetic_rpc(zenith=zenith, azimuth=azimuth, gsd=0.5)
    az, zen = view_angles(rpc, 80.0, 100.0, 0.0)
    assert zen == pytest.approx(zenith, abs=0.02)
    assert (az - azimuth + 180) % 360 - 180 == pytest.approx(0, abs=0.05)
    assert ground_sample_distance(rpc, 80.0, 100.0, 0.0) == pytest.approx(0.5, rel=1e-3)


def test_parse_datetime_formats():
    utc = timezone.utc
    assert parse_datetime("20141005160138") == datetime(2014, 10, 5, 16, 1, 38, tzinfo=utc)
    assert parse_datetime("2014:10:05 16:01:38") == datetime(2014, 10, 5, 16, 1, 38, tzinfo=utc)
    assert parse_datetime("2014-10-05T16:01:38.123456789Z") == datetime(2014, 10, 5, 16, 1, 38, 123456, tzinfo=utc)
    assert parse_datetime("garbage") is None and parse_datetime(None) is None


# ------------------------------------------------------------------------------------ scanning
@needs_jax
def test_scan_jax_lists_17_views(tmp_path):
    scenes = scan_scenes([JAX / "images"], [".tif"])  # its speed is a benchmark figure, not a test
    assert len(scenes) == 17 and all(s.ok for s in scenes)
    from shapely.geometry import Polygon

    ious = []
    for s in scenes:
        meta = json.loads((JAX / "rpcs_raw" / f"{s.id}.json").read_text())
        assert s.sensor == "WV03" and s.bands == 3 and s.dtype == "uint8"
        assert (s.width, s.height) == (meta["width"], meta["height"])
        assert s.acquired == parse_datetime(meta["acquisition_date"]) and s.acquired.tzinfo is not None
        assert s.sun_source == "metadata" and s.sun_elevation == float(meta["sun_elevation"])
        assert s.min_alt == -27 and s.max_alt == 30
        assert 0.28 < s.gsd_m < 0.42
        # our footprint vs the Sat-NeRF one (corners localised by its authors, only roughly:
        # view 010's is ~12 px off): nearly the same quadrilateral
        theirs = Polygon(meta["geojson"]["coordinates"][0])
        ious.append(s.footprint.intersection(theirs).area / s.footprint.union(theirs).area)
    assert min(ious) > 0.93 and np.median(ious) > 0.99
    zenith = np.array([s.view_zenith for s in scenes])
    assert 5.0 < zenith.min() < 6.5 and 31.0 < zenith.max() < 33.0  # README: 5.6..32 degrees
    off_nadir = np.array([s.off_nadir for s in scenes])  # at the satellite (WV03, 617 km): smaller
    assert all(s.off_nadir_source == "computed" for s in scenes)
    assert np.all(off_nadir < zenith) and np.all(zenith - off_nadir < 3.5) and 28.0 < off_nadir.max() < 30.0
    az = np.sort([s.view_azimuth for s in scenes])
    gaps = np.diff(np.concatenate([az, az[:1] + 360]))
    assert gaps.max() < 120.0  # seen from all around (JAX has no view from the north-west)
    resultant = abs(np.exp(1j * np.radians(az)).mean())
    assert resultant < 0.5  # 1 would be all views from one direction
    assert len({s.acquired.date() for s in scenes}) == 16  # 009 and 010 share a pass


@needs_jax
def test_scan_lists_bad_files_as_errors(tmp_path):
    good = tmp_path / "scenes" / "good"
    good.mkdir(parents=True)
    shutil.copy(IMAGES[0], good / IMAGES[0].name)
    (tmp_path / "scenes" / "trunc.tif").write_bytes(IMAGES[1].read_bytes()[:2048])
    (tmp_path / "scenes" / "half.TIF").write_bytes(IMAGES[1].read_bytes()[:200_000])
    (tmp_path / "scenes" / "notes.tif").write_text("not a raster")
    (tmp_path / "scenes" / "readme.txt").write_text("ignored")
    write_raster(tmp_path / "scenes" / "norpc.tif", textured((3, 16, 16), hi=255, dtype="uint8"))
    scenes = {s.id: s for s in scan_scenes([tmp_path / "scenes"], ["tif"])}
    assert set(scenes) == {IMAGES[0].stem, "trunc", "half", "notes", "norpc"}
    assert scenes[IMAGES[0].stem].ok and scenes[IMAGES[0].stem].sun_source == "computed"
    assert scenes[IMAGES[0].stem].sensor == "WV03"  # from the NITF tags, no json next to it
    for sid in ("trunc", "half", "notes"):
        assert not scenes[sid].ok and f"{sid}." in scenes[sid].error and "Fix:" in scenes[sid].error
    err = scenes["norpc"].error
    assert "norpc.tif" in err and "norpc.RPB" in err and "norpc_RPC.TXT" in err
    assert scenes["norpc"].width == 16  # what could be read is kept
    rows = catalog_table(scenes.values())
    assert {r["id"] for r in rows if r["error"]} == {"trunc", "half", "notes", "norpc"}


def test_synthetic_scene_metadata_from_tags_and_computed_sun(tmp_path):
    rpc = synthetic_rpc(zenith=20.0, azimuth=100.0, gsd=0.5)
    path = write_raster(tmp_path / "syn.tif", textured(), rpc=rpc,
                        tags={"TIFFTAG_DATETIME": "2015:05:01 16:03:57",
                              "NITF_FTITLE": "01MAY15WV031200015MAY01160357-P1BS"})
    s = read_scene(path)
    assert s.ok, s.error
    assert s.sensor == "WV03" and s.dtype == "uint16" and (s.width, s.height, s.bands) == (200, 160, 3)
    assert s.acquired == datetime(2015, 5, 1, 16, 3, 57, tzinfo=timezone.utc)
    el, az = solar_position(s.acquired, -81.66, 30.35)
    assert s.sun_source == "computed" and s.sun_elevation == pytest.approx(float(el), abs=0.01)
    assert s.sun_azimuth == pytest.approx(float(az), abs=0.05)
    assert s.view_zenith == pytest.approx(20.0, abs=0.05) and s.view_azimuth == pytest.approx(100.0, abs=0.1)
    # true off-nadir at a WV03 (617 km): sin(off) = R sin(zenith) / (R + h)
    assert s.off_nadir_source == "computed"
    assert s.off_nadir == pytest.approx(math.degrees(math.asin(6371 / 6988 * math.sin(math.radians(s.view_zenith)))))
    assert 18.0 < s.off_nadir < 18.4
    assert s.gsd_m == pytest.approx(0.5, rel=1e-3)
    # footprint: 200 x 160 px at 0.5 m = 100 m x 80 m
    from skyfall_core.geo.aoi import reproject
    assert reproject(s.footprint, "EPSG:4326", "EPSG:32617").area == pytest.approx(8000, rel=1e-3)
    assert s.footprint.contains(s.footprint.centroid)
    back = Scene.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.to_dict() == s.to_dict()
    shown = json.loads(s.to_json())
    assert "rpc" not in shown and shown["footprint"]["type"] == "Polygon"
    row = catalog_table([s])[0]
    assert row["gsd_m"] == 0.5 and row["view_zenith"] == 20.0 and row["size"] == "200x160"
    assert row["off_nadir"] == round(s.off_nadir, 1)


def test_imd_sidecar_and_rpb_sidecar(tmp_path):
    rpc = synthetic_rpc()
    path = write_raster(tmp_path / "dg.tif", textured())
    names = {"lineOffset": "row_offset", "sampOffset": "col_offset", "latOffset": "lat_offset",
             "longOffset": "lon_offset", "heightOffset": "alt_offset", "lineScale": "row_scale",
             "sampScale": "col_scale", "latScale": "lat_scale", "longScale": "lon_scale",
             "heightScale": "alt_scale", "lineNumCoef": "row_num", "lineDenCoef": "row_den",
             "sampNumCoef": "col_num", "sampDenCoef": "col_den"}
    body = "".join(f"\t{k} = {getattr(rpc, a):+.15g};\n" if np.ndim(getattr(rpc, a)) == 0 else
                   f"\t{k} = (\n" + ",\n".join(f"\t\t\t{v:+.15E}" for v in getattr(rpc, a)) + ");\n"
                   for k, a in names.items())
    (tmp_path / "dg.RPB").write_text(f'satId = "WV02";\nBEGIN_GROUP = IMAGE\n{body}END_GROUP = IMAGE\nEND;\n')
    (tmp_path / "dg.IMD").write_text(
        'version = "28.3";\nBEGIN_GROUP = IMAGE_1\n\tsatId = "WV02";\n'
        '\tfirstLineTime = 2013-02-03T15:59:01.123456Z;\n\tmeanSunAz = 160.2;\n\tmeanSunEl = 38.1;\n'
        "END_GROUP = IMAGE_1\nEND;\n")
    s = read_scene(path)
    assert s.ok, s.error
    assert s.rpc_source == "dg.RPB" and s.sensor == "WV02"
    assert s.acquired == datetime(2013, 2, 3, 15, 59, 1, 123456, tzinfo=timezone.utc)
    assert (s.sun_elevation, s.sun_azimuth, s.sun_source) == (38.1, 160.2, "metadata")


def test_metadata_json_next_to_the_image(tmp_path):
    rpc = synthetic_rpc()
    path = write_raster(tmp_path / "v.tif", textured(), rpc=rpc)
    meta = {"img": "v.tif", "sun_elevation": "+41.5", "sun_azimuth": "150.0",
            "acquisition_date": "20150101160000", "min_alt": -5, "max_alt": 25, "rpc": {"broken": 1}}
    (tmp_path / "v.json").write_text(json.dumps(meta))
    s = read_scene(path)  # the RPC comes from the tags: the json's broken rpc block is not used
    assert s.ok, s.error
    assert (s.sun_elevation, s.sun_azimuth, s.min_alt, s.max_alt) == (41.5, 150.0, -5.0, 25.0)
    assert s.acquired == datetime(2015, 1, 1, 16, tzinfo=timezone.utc) and s.rpc_source == "GeoTIFF tags"
    no_tags = write_raster(tmp_path / "w.tif", textured())
    (tmp_path / "w.json").write_text(json.dumps({**meta, "rpc": rpc.to_dict()}))
    assert read_scene(no_tags).rpc_source == "w.json"
    (tmp_path / "w.json").write_text("{oops")
    err = read_scene(no_tags).error
    assert "w.json" in err and "metadata json" in err


def test_cache_rereads_only_changed_files(tmp_path, monkeypatch):
    folder = tmp_path / "scenes"
    folder.mkdir()
    for i in range(3):
        write_raster(folder / f"s{i}.tif", textured(seed=i), rpc=synthetic_rpc(azimuth=40.0 * i))
    cache = tmp_path / "cache" / "scenes.json"
    first = scan_scenes([folder], [".tif"], cache_path=cache)
    assert cache.is_file()

    reads: list[str] = []
    real = catalog.read_scene
    monkeypatch.setattr(catalog, "read_scene", lambda p: reads.append(Path(p).name) or real(p))
    second = scan_scenes([folder], [".tif"], cache_path=cache)
    assert reads == [] and [s.to_dict() for s in second] == [s.to_dict() for s in first]

    st = (folder / "s1.tif").stat()
    os.utime(folder / "s1.tif", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    write_raster(folder / "s3.tif", textured(seed=3), rpc=synthetic_rpc())
    third = scan_scenes([folder], [".tif"], cache_path=cache)
    assert sorted(reads) == ["s1.tif", "s3.tif"] and len(third) == 4

    data = json.loads(cache.read_text())  # a stale entry (e.g. an older schema) is re-read
    next(iter(data["entries"].values()))["scene"]["unknown_field"] = 1
    cache.write_text(json.dumps(data))
    reads.clear()
    assert len(scan_scenes([folder], [".tif"], cache_path=cache)) == 4 and len(reads) == 1

    cache.write_text("{broken")  # an unreadable cache is rebuilt, not fatal
    reads.clear()
    assert len(scan_scenes([folder], [".tif"], cache_path=cache)) == 4 and len(reads) == 4


def test_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="scene folder not found"):
        scan_scenes([tmp_path / "nope"], [".tif"])


def test_sensor_from_nitf_title_and_source():
    assert catalog._sensor({"NITF_FTITLE": "05OCT14WV031100014OCT05160138-M1BS-500648062040_01_P001"}, {}, {}) == "WV03"
    assert catalog._sensor({"NITF_ISORCE": "DigitalGlobe"}, {}, {}) == "DigitalGlobe"
    assert catalog._sensor({}, {}, {}) is None


def test_off_nadir_from_the_sample_metadata_and_the_view_zenith():
    """The sample's GeoTIFFs state their off-nadir (OFF_NADIR_ANGLE) and incidence angles: the
    catalog takes the former and measures the latter (the view zenith) on the RPC."""
    import rasterio

    scenes = scan_scenes([SAMPLE_SCENES], ["tif"])
    assert len(scenes) == 10
    for s in scenes:
        with rasterio.open(s.path) as ds:
            tags = ds.tags()
        assert s.off_nadir_source == "metadata" and s.off_nadir == float(tags["OFF_NADIR_ANGLE"])
        assert s.view_zenith == pytest.approx(float(tags["INCIDENCE_ANGLE"]), abs=0.05)
        # the spherical-Earth formula recovers the stated off-nadir within its approximation
        assert off_nadir_from_zenith(s.view_zenith, altitude_m=None) == pytest.approx(s.off_nadir, abs=0.6)
