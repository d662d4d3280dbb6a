"""The Map page (pydeck) and the Viewer/Share pages on a REAL job folder: the tiny pipeline run on
the bundled sample (conftest's session fixture ``tiny_job``, ~2 minutes once per session).

The deck is checked where it matters to an analyst: the hillshade is pinned around the AOI, the
splat centres land inside the AOI, the error map against the sample's truth DSM is there with its
statistics, and offline the deck has no basemap but keeps every overlay.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

st = pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from fixtures_app import app_session, copy_real_job, run_page  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_aoi"
pytestmark = pytest.mark.skipif(not (SAMPLE / "scenes").is_dir(), reason="bundled sample_aoi/ missing")


@pytest.fixture()
def map_env(tiny_job, tmp_path, monkeypatch):
    """A workspace holding a copy of the session's real job (as ``tiny``)."""
    folder = copy_real_job(tiny_job, tmp_path / "ws", "tiny", name="tiny")
    with app_session(tmp_path / "ws", tmp_path, monkeypatch):
        yield folder
    from skyfall_core.ui.static import unpublish_job

    unpublish_job("tiny")  # the Viewer page published the splat under static/_jobs/


def _run(page: str) -> AppTest:
    return run_page(page)


def _deck(at: AppTest) -> dict:
    charts = at.get("deck_gl_json_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.json)


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.value for e in at.info]
    parts += [e.value for e in at.warning] + [e.value for e in at.success]
    return "\n".join(str(p) for p in parts)


def _aoi_ring() -> np.ndarray:
    feat = json.loads((SAMPLE / "aoi.geojson").read_text())["features"][0]
    return np.asarray(feat["geometry"]["coordinates"][0], float)


def test_map_page_puts_the_dsm_points_and_error_at_the_aoi_offline(map_env, monkeypatch):
    from shapely.geometry import Point, Polygon

    import skyfall_core.ui.mapview as mapview

    monkeypatch.setattr(mapview, "tiles_reachable", lambda *a, **k: False)  # the page offers no basemap
    at = _run("map")
    assert at.selectbox(key="map_basemap").value == "None (offline)"
    deck = _deck(at)
    assert "mapStyle" not in deck and deck.get("mapProvider") in (None, "")  # no tiles: nothing to fetch
    layers = {lay["id"]: lay for lay in deck["layers"]}
    assert {"hillshade", "error", "aoi", "footprints", "points", "dsm-samples", "scale-north"} <= set(layers)
    assert "terrain" not in layers and deck["initialViewState"]["pitch"] == 0  # 3D terrain is off by default
    ring = _aoi_ring()
    aoi = Polygon(ring)

    # the hillshade is pinned at the DSM grid's corners, which contain the AOI
    corners = np.asarray(layers["hillshade"]["bounds"], float)
    assert corners.shape == (4, 2) and layers["hillshade"]["image"].startswith("data:image/png;base64,")
    assert Polygon(corners).buffer(1e-6).contains(aoi)
    assert Polygon(corners).area < 1.3 * aoi.area  # and it is the AOI's DSM, not a far bigger box

    # the splat centres in true position: their mean is inside the AOI, most of them are
    pts = layers["points"]["data"]
    lon = np.array([p["lon"] for p in pts])
    lat = np.array([p["lat"] for p in pts])
    assert len(pts) > 100
    assert aoi.contains(Point(lon.mean(), lat.mean()))
    inside = np.mean([aoi.buffer(2e-4).contains(Point(x, y)) for x, y in zip(lon, lat)])
    assert inside > 0.75  # a 30-iteration job: some splats still float at the edges
    h = np.array([p["h"] for p in pts])
    assert 250 < np.median(h) < 400  # ellipsoidal heights of the sample (ground ~292 m)

    # the view opens on the AOI, the AOI layer is the job's polygon
    view = deck["initialViewState"]
    assert abs(view["longitude"] - ring[:, 0].mean()) < 2e-3 and abs(view["latitude"] - ring[:, 1].mean()) < 2e-3
    assert np.allclose(np.asarray(layers["aoi"]["data"][0]["polygon"], float), ring)
    # the error map against the sample's truth DSM, with its scale and numbers
    assert Polygon(np.asarray(layers["error"]["bounds"], float)).buffer(1e-6).contains(aoi)
    text = _texts(at)
    assert "Prediction − truth (dsm.tif)" in text and "MAE" in text and "too high" in text
    assert "Scale bar" in text and "North is up" in text


def test_map_page_basemap_layers_and_click_readout(map_env, monkeypatch):
    import skyfall_core.ui.mapview as mapview

    monkeypatch.setattr(mapview, "tiles_reachable", lambda *a, **k: True)
    at = _run("map")
    assert at.selectbox(key="map_basemap").value.startswith("CARTO")
    deck = _deck(at)
    assert "cartocdn" in deck.get("mapStyle", "")
    at.multiselect(key="map_layers").set_value(["hillshade", "points"]).run()
    assert not at.exception
    ids = [lay["id"] for lay in _deck(at)["layers"]]
    assert ids[:2] == ["hillshade", "points"] and "error" not in ids and "scale-north" in ids
    at.text_input(key="map_truth").set_value("/nonexistent/dsm.tif").run()
    assert "Truth DSM not found" in _texts(at)


def test_map_page_3d_terrain_toggle(map_env, monkeypatch):
    """The "3D terrain" toggle adds deck.gl's TerrainLayer (the job's DSM, the hillshade as its
    texture, the worker from the app's own static files), pitches the view and lifts what sits on it."""
    from shapely.geometry import Polygon

    import skyfall_core.ui.mapview as mapview

    monkeypatch.setattr(mapview, "tiles_reachable", lambda *a, **k: False)
    at = _run("map")
    flat = {lay["id"]: lay for lay in _deck(at)["layers"]}
    at.toggle(key="map_terrain").set_value(True).run()
    at.slider(key="map_exaggeration").set_value(3.0).run()
    assert not at.exception
    deck = _deck(at)
    layers = {lay["id"]: lay for lay in deck["layers"]}
    terrain = layers["terrain"]
    assert terrain["@@type"] == "TerrainLayer" and deck["layers"][0]["id"] == "terrain"
    assert terrain["elevationData"].startswith("data:image/png;base64,")
    assert terrain["texture"].startswith("data:image/png;base64,")
    worker = terrain["loadOptions"]["terrain"]["workerUrl"]
    assert worker == "/app/static/vendor/loaders-terrain/terrain-worker.js"  # not unpkg.com: works offline
    assert (REPO / "static" / "vendor" / "loaders-terrain" / "terrain-worker.js").is_file()
    w, s, e, n = terrain["bounds"]
    assert Polygon([(w, s), (e, s), (e, n), (w, n)]).buffer(1e-6).contains(Polygon(_aoi_ring()))
    dec = terrain["elevationDecoder"]
    assert dec["rScaler"] == pytest.approx(3 * 6553.6) and dec["bScaler"] == pytest.approx(0.3)
    assert -3 * (10_000 + 400) < dec["offset"] < -3 * (10_000 + 250)  # 3 x (h - the DSM's lowest cell)
    assert deck["initialViewState"]["pitch"] > 30
    assert "hillshade" not in layers and "error" not in layers  # the terrain would hide them
    path = np.asarray(layers["aoi-3d"]["data"][0]["path"], float)  # the AOI draped on the terrain
    assert "aoi" not in layers and path.shape[1] == 3 and path[:, 2].max() > 0  # (a new id: a new layer class)
    z3 = np.array([p["z"] for p in layers["points"]["data"]])
    z1 = np.array([p["z"] for p in flat["points"]["data"]])
    np.testing.assert_allclose(z3, 3 * z1, atol=1e-6)  # the splat centres keep their place on the terrain
    text = _texts(at)
    assert "3D terrain" in text and "3×" in text and "Basemap tiles need the internet" in text


def _plane_dsm(final: Path, epsg: int = 32615, nan_block: bool = True):
    """A tilted plane DSM (UTM, 0.5 m cells, a hole of no data) written by the pipeline's own writers."""
    from affine import Affine

    from skyfall_core.export.cog import write_dsm_cog, write_hillshade_png
    from skyfall_core.geo.dsm import DSMGrid
    from skyfall_core.jobfolder import FINAL_FILES

    h, w = 160, 200
    transform = Affine(0.5, 0, 253_700.0, 0, -0.5, 4_571_800.0)
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = transform @ (cols, rows)

    def plane(x, y):
        return 300.0 + 0.05 * (x - 253_700.0) - 0.03 * (y - 4_571_800.0)

    heights = plane(x, y).astype(np.float32)
    if nan_block:
        heights[40:80, 60:120] = np.nan
    final.mkdir(parents=True, exist_ok=True)
    grid = DSMGrid(heights, transform, epsg)
    write_dsm_cog(final / FINAL_FILES["dsm_cog"][0], grid)
    write_hillshade_png(final / FINAL_FILES["hillshade"][0], grid)
    return grid, plane


def test_terrain_rgb_encoder_round_trip_and_no_data():
    from skyfall_core.ui.mapview import TERRAIN_RGB, decode_terrain_rgb, encode_terrain_rgb

    rng = np.random.default_rng(0)
    h = rng.uniform(-120.0, 4_800.0, (33, 47))
    h[0, 0], h[1, 1], h[2, 2] = -10_000.0, 0.04999, 1_234.56
    h[5:9, 10:20] = np.nan
    rgb, fill = encode_terrain_rgb(h)
    assert rgb.dtype == np.uint8 and rgb.shape == (33, 47, 3)
    back = decode_terrain_rgb(rgb, TERRAIN_RGB)
    ok = np.isfinite(h)
    assert np.abs(back[ok] - h[ok]).max() <= 0.05 + 1e-9  # 0.1 m steps, rounded
    assert fill == np.nanmin(h) and np.all(back[~ok] == back[0, 0])  # no data: the lowest height
    assert back[0, 0] == pytest.approx(-10_000.0) and back[2, 2] == pytest.approx(1_234.6)
    rgb, fill = encode_terrain_rgb(np.full((4, 4), np.nan))
    assert fill == 0.0 and np.abs(decode_terrain_rgb(rgb)).max() < 1e-9
    with pytest.raises(ValueError, match="shape"):
        encode_terrain_rgb(np.zeros(5))


def test_read_terrain_is_the_dsm_reprojected_to_lon_lat(tmp_path):
    """The terrain PNG decodes (deck.gl's formula) to the DSM reprojected to EPSG:4326 within 0.1 m,
    and on a plane to the plane itself at every cell centre; its bounds are the DSM's footprint."""
    import cv2
    import rasterio
    from pyproj import Transformer
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject

    from skyfall_core.ui.mapview import TERRAIN_RGB, decode_terrain_rgb, grid_corners_lonlat, read_terrain

    grid, plane = _plane_dsm(tmp_path / "final")
    t = read_terrain(tmp_path / "final")
    assert t is not None and t.size == 256  # the power of two at or above 200 cells
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(t.png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    decoded = decode_terrain_rgb(rgb, TERRAIN_RGB)
    assert decoded.shape == (256, 256)

    # bounds: the box of the UTM grid's footprint (its corners lie on it, it is no bigger)
    corners = np.asarray(grid_corners_lonlat(grid.transform, 200, 160, grid.epsg))
    w, s, e, n = t.bounds
    assert np.allclose([w, s, e, n], [corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(),
                                       corners[:, 1].max()], atol=1e-9)

    # the DSM reprojected independently onto the same lon/lat grid
    with rasterio.open(tmp_path / "final" / "dsm.cog.tif") as ds:
        ref = np.full((256, 256), np.nan, np.float32)
        reproject(ds.read(1, masked=True).astype(np.float32).filled(np.nan), ref, src_transform=ds.transform,
                  src_crs=ds.crs, src_nodata=np.nan, dst_transform=from_bounds(w, s, e, n, 256, 256),
                  dst_crs="EPSG:4326", dst_nodata=np.nan, resampling=Resampling.bilinear)
    ok = np.isfinite(ref)
    assert ok.mean() > 0.5
    assert np.abs(decoded[ok] - ref[ok]).max() <= 0.1
    np.testing.assert_array_equal(np.isfinite(t.heights), ok)

    # ... and the plane at every cell centre well inside the data (bilinear is exact on a plane)
    dlon, dlat = t.cell()
    lon = w + (np.arange(256) + 0.5) * dlon
    lat = n - (np.arange(256) + 0.5) * dlat
    lon, lat = np.meshgrid(lon, lat)
    x, y = Transformer.from_crs("EPSG:4326", f"EPSG:{grid.epsg}", always_xy=True).transform(lon, lat)
    col, row = ~grid.transform @ (x, y)
    hole = (col > 58) & (col < 122) & (row > 38) & (row < 82)
    inner = (col > 2) & (col < 198) & (row > 2) & (row < 158) & ~hole
    assert inner.sum() > 20_000
    assert np.abs(decoded[inner] - plane(x, y)[inner]).max() <= 0.1

    # no data: the hole and the corners outside the rotated UTM rectangle
    deep = (col > 64) & (col < 116) & (row > 44) & (row < 76)
    assert deep.any() and not np.isfinite(t.heights[deep]).any()
    assert np.all(decoded[~ok] == pytest.approx(t.fill_m, abs=0.05))
    assert t.fill_m == pytest.approx(float(np.nanmin(t.heights)))
    tex = cv2.imdecode(np.frombuffer(t.texture, np.uint8), cv2.IMREAD_UNCHANGED)
    assert tex.shape == (256, 256, 4) and (tex[..., 3][deep] == 0).all() and (tex[..., 3][inner] > 0).mean() > 0.99

    # deck.gl puts pixel (col, row) at (minX + col dx, maxY - row dy) of the bounds it gets: the
    # layer's bounds put every height at its cell's centre
    lb = t.layer_bounds()
    assert lb[0] + 10 * dlon == pytest.approx(lon[0, 10]) and lb[3] - 7 * dlat == pytest.approx(lat[7, 0])
    assert lb[2] - lb[0] == pytest.approx(e - w) and lb[3] - lb[1] == pytest.approx(n - s)

    # the decoder the layer gets draws k (h - base)
    dec = t.elevation_decoder(base_m=290.0, exaggeration=4.0)
    assert np.abs(decode_terrain_rgb(rgb, dec)[inner] - 4 * (plane(x, y)[inner] - 290.0)).max() <= 0.4
    assert t.heights_at(np.array([lon[100, 10]]), np.array([lat[100, 10]]))[0] == pytest.approx(
        float(t.heights[100, 10]))
    assert t.heights_at(np.array([w - 1.0]), np.array([n]))[0] == t.fill_m


def test_terrain_grid_size_and_worker_version():
    """The square power-of-two grid deck.gl meshes with Martini; the vendored terrain worker is the
    version of the terrain loader inside the deck.gl that the installed Streamlit ships."""
    import hashlib
    import re

    from skyfall_core.ui.mapview import TERRAIN_WORKER, terrain_grid_size

    assert [terrain_grid_size(w, h) for w, h in ((600, 600), (200, 160), (3, 2), (64, 64), (5000, 10))] == \
        [512, 256, 4, 64, 512]
    vendor = REPO / "static" / "vendor"
    manifest = json.loads((vendor / "VERSIONS.json").read_text())
    meta = manifest["files"][TERRAIN_WORKER]
    blob = (vendor / TERRAIN_WORKER).read_bytes()
    assert meta["bytes"] == len(blob) and meta["sha256"] == hashlib.sha256(blob).hexdigest()
    meta["version"] = manifest["versions"]["@loaders.gl/terrain"]
    bundles = sorted((Path(st.__file__).parent / "static" / "static" / "js").glob("DeckGlJsonChart*.js"))
    assert bundles, "Streamlit's deck.gl bundle not found: check TerrainLayer support and the worker version"
    text = bundles[0].read_text(errors="replace")
    assert "TerrainLayer" in text
    found = re.search(r"name:`Terrain`,id:`terrain`,module:`terrain`,version:`([0-9.]+)`", text)
    assert found, "the terrain loader's version is not where it was in Streamlit's bundle: check it by hand"
    assert found.group(1) == meta["version"], "re-vendor the worker: LOADERS_TERRAIN in scripts/vendor_js.sh"


def test_viewer_and_share_use_the_pipelines_spz(map_env):
    at = _run("viewer")
    served = REPO / "static" / "_jobs" / "tiny" / "scene.spz"
    assert served.is_file() and served.read_bytes() == (map_env / "final" / "scene.spz").read_bytes()
    labels = [b.proto.label for b in at.get("download_button")]
    assert "⬇ Web splat (.spz, Spark)" in labels and "⬇ Splat centres (LAZ, UTM)" in labels
    assert "the cursor reads lon/lat/height" in _texts(at)
    at = _run("share")
    assert "Splat: `scene.spz`" in _texts(at)


def test_scale_bar_and_grid_corners():
    from affine import Affine

    from skyfall_core.ui.mapview import grid_corners_lonlat, nice_length, scale_and_north

    assert [nice_length(x) for x in (0.9, 7, 140, 260, 999, 1500)] == [0.5, 5, 100, 200, 500, 1000]
    ring = _aoi_ring()
    b = (ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(), ring[:, 1].max())
    sn = scale_and_north(b)
    (x0, _), (x1, _) = sn["bar"][1], sn["bar"][2]
    from pyproj import Geod

    length = Geod(ellps="WGS84").line_length([x0, x1], [sn["bar"][1][1]] * 2)
    assert abs(length - sn["length_m"]) < 0.01 * sn["length_m"]  # the bar is that many metres on the ground
    arrow = np.asarray(sn["arrow"])
    assert np.allclose(arrow[3:, 0], arrow[3, 0]) and arrow[3, 1] > arrow[4, 1]  # the shaft runs north
    corners = grid_corners_lonlat(Affine(0.5, 0, 253754.5, 0, -0.5, 4571726.0), 435, 436, 32615)
    c = np.asarray(corners)
    assert c[1, 1] > c[0, 1] and c[2, 0] > c[1, 0]  # bottom-left, top-left, top-right, bottom-right
