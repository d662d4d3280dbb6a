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
