"""Issue 16 exports: the DSM as a COG (+ hillshade PNG) and the splat centres as LAS/LAZ."""

import numpy as np
import pytest
import torch
from rasterio.transform import from_origin

from skyfall_core.export.cog import hillshade, write_dsm_cog, write_hillshade_png
from skyfall_core.geo.dsm import NODATA, DSMGrid
from skyfall_core.geo.frames import LocalFrame
from skyfall_core.splat.model import GaussianModel
from skyfall_core.splat.sh import SH_C0

FRAME = LocalFrame(-81.70, 30.30, 12.5)  # Jacksonville: UTM 17N


def _grid(h=600, w=700, epsg=32617):
    rng = np.random.default_rng(0)
    heights = (rng.random((h, w)) * 30 + 5).astype(np.float32)
    heights[10:40, 20:50] = np.nan
    return DSMGrid(heights, from_origin(432000.0, 3353000.0, 0.5, 0.5), epsg)


def test_dsm_cog_is_a_tiled_cog_with_overviews_crs_nodata_and_the_values(tmp_path):
    import rasterio
    from pyproj import CRS

    grid = _grid()
    path = write_dsm_cog(tmp_path / "dsm.cog.tif", grid)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dsm.cog.tif"]  # no .aux.xml sidecar
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path) as ds:  # all inside the .tif
        assert ds.driver == "GTiff"
        structure = ds.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG"
        assert structure["COMPRESSION"] == "DEFLATE" and structure["PREDICTOR"] == "3"
        assert ds.block_shapes == [(256, 256)]
        assert ds.overviews(1)[:1] == [2]  # internal overviews (700 px -> 350, 175)
        assert ds.nodata == NODATA
        assert ds.transform == grid.transform
        assert CRS.from_wkt(ds.crs.to_wkt()).to_epsg() == 32617
        assert ds.descriptions == ("height",) and ds.units == ("metre",)
        tags = ds.tags()
        assert tags["AREA_OR_POINT"] == "Area" and tags["UNITS"] == "metre"
        assert "ellipsoid" in tags["VERTICAL_DATUM"] and tags["VERTICAL_CRS"].startswith("EPSG:4979")
        data = ds.read(1)
    valid = np.isfinite(grid.heights)
    np.testing.assert_array_equal(data[valid], grid.heights[valid])
    assert (data[~valid] == NODATA).all()


def test_dsm_cog_small_grid_and_read_by_read_dsm(tmp_path):
    from skyfall_core.geo.dsm import read_dsm

    grid = _grid(40, 50)
    back = read_dsm(write_dsm_cog(tmp_path / "small.tif", grid))
    assert back.epsg == 32617
    np.testing.assert_array_equal(np.isnan(back.heights), np.isnan(grid.heights))
    np.testing.assert_array_equal(back.heights[np.isfinite(back.heights)],
                                  grid.heights[np.isfinite(grid.heights)])


def test_hillshade_standard_values():
    flat = hillshade(np.zeros((5, 5)), 1.0)
    np.testing.assert_allclose(flat, 255 * np.sin(np.radians(45.0)))
    e, n = np.meshgrid(np.arange(8.0), -np.arange(8.0))  # row 0 = north
    facing_nw = hillshade(e - n, 1.0)  # rises to the south-east: faces the 315 deg sun
    facing_se = hillshade(n - e, 1.0)
    slope = np.arctan(np.sqrt(2.0))  # |grad| = sqrt(2), aspect exactly 315 deg
    assert facing_nw[4, 4] == pytest.approx(255 * np.cos(np.radians(45.0) - slope))
    assert facing_se[4, 4] == pytest.approx(0.0)


def test_hillshade_png_transparent_on_nodata(tmp_path):
    from PIL import Image

    grid = _grid(60, 80)
    img = np.asarray(Image.open(write_hillshade_png(tmp_path / "hs.png", grid)))
    assert img.shape == (60, 80, 4)
    assert (img[15:35, 25:45, 3] == 0).all()  # inside the hole (and its 1-px rim)
    assert (img[50:, 60:, 3] == 255).all()


def _model(n=200, seed=1):
    g = torch.Generator().manual_seed(seed)
    params = {
        "means": torch.rand(n, 3, generator=g) * torch.tensor([200.0, 150.0, 40.0]) - 50,
        "scales": torch.randn(n, 3, generator=g) - 2,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 3,
        "sh0": torch.randn(n, 1, 3, generator=g),
        "shN": torch.randn(n, 3, 3, generator=g) * 0.2,
    }
    return GaussianModel(params, sh_degree=1)


@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_coordinates_colours_and_crs(tmp_path, suffix):
    laspy = pytest.importorskip("laspy")
    model = _model()
    path = tmp_path / f"points{suffix}"
    from skyfall_core.export.las import write_las

    write_las(path, model, FRAME)
    las = laspy.read(path)
    assert las.header.version.major == 1 and las.header.version.minor == 4
    assert las.header.point_format.id == 7
    np.testing.assert_allclose(las.header.scales, 0.001)
    opacity = torch.sigmoid(model.params["opacities"]).detach().numpy()
    keep = opacity >= 0.05
    assert 0 < keep.sum() < len(keep) and las.header.point_count == keep.sum()
    expected = FRAME.enu_to_utm(model.params["means"].detach().double().numpy()[keep])
    got = np.stack([las.x, las.y, las.z], axis=1)
    assert np.abs(got - expected).max() <= 0.0005 + 1e-9  # 1 mm grid, rounded
    rgb = np.clip(0.5 + SH_C0 * model.params["sh0"].detach().double().numpy().reshape(-1, 3), 0, 1)[keep]
    np.testing.assert_array_equal(np.stack([las.red, las.green, las.blue], 1), np.round(rgb * 65535))
    np.testing.assert_allclose(las.opacity, opacity[keep], rtol=1e-6)
    crs = las.header.parse_crs()
    assert crs.to_2d().to_epsg() == FRAME.utm_epsg == 32617
    assert "ellipsoidal height" in crs.axis_info[2].name.lower()
    if suffix == ".laz":
        assert las.header.are_points_compressed if hasattr(las.header, "are_points_compressed") else True
