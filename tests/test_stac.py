"""STAC 1.0 interchange of the scene catalog (skyfall_core.geo.stac): export, import, round trip."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from skyfall_core.errors import ConfigError
from skyfall_core.geo.catalog import scan_scenes
from skyfall_core.geo.stac import (
    COSPAR_IDS,
    ITEM_COLLECTION_NAME,
    PLATFORMS,
    SAT_EXTENSION,
    STAC_VERSION,
    VIEW_EXTENSION,
    import_stac,
    is_stac_input,
    scene_to_item,
    stac_scene_files,
    write_stac,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SCENES = REPO / "sample_aoi" / "scenes"
SCHEMAS = REPO / "tools" / "stac-schema"  # the sat and view extension schemas, v1.0.0 (SOURCE.md there)

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@pytest.fixture(scope="module")
def sample_scenes():
    return scan_scenes([SAMPLE_SCENES], ["tif"])


def _coords(geom):
    return [pt for ring in geom["coordinates"] for pt in ring]


def _check_item(item: dict, item_file: Path) -> None:
    """Structural STAC 1.0 Item checks (the fields the Item spec requires, and their types)."""
    assert item["type"] == "Feature" and item["stac_version"] == STAC_VERSION
    assert isinstance(item["id"], str) and item["id"]
    assert VIEW_EXTENSION in item["stac_extensions"]
    geom = item["geometry"]
    assert geom["type"] == "Polygon"
    ring = geom["coordinates"][0]
    assert len(ring) >= 4 and ring[0] == ring[-1]
    lon0, lat0, lon1, lat1 = item["bbox"]
    assert lon0 < lon1 and lat0 < lat1
    assert all(lon0 <= x <= lon1 and lat0 <= y <= lat1 for x, y in ring)
    props = item["properties"]
    assert datetime.fromisoformat(props["datetime"].replace("Z", "+00:00")).tzinfo is not None
    assert 0 <= props["view:off_nadir"] <= 90 and 0 <= props["view:incidence_angle"] <= 90
    assert props["view:off_nadir"] < props["view:incidence_angle"]  # the Earth's curvature
    assert 0 <= props["view:azimuth"] < 360 and 0 <= props["view:sun_azimuth"] < 360
    assert -90 <= props["view:sun_elevation"] <= 90 and props["gsd"] > 0
    assert isinstance(item["links"], list)
    image = item["assets"]["image"]
    assert "data" in image["roles"] and image["type"].startswith("image/tiff")
    assert not Path(image["href"]).is_absolute()
    assert (item_file.parent / image["href"]).resolve().is_file()


def test_export_writes_valid_items_and_an_item_collection(sample_scenes, tmp_path):
    written = write_stac(sample_scenes, tmp_path / "stac")
    assert len(written) == 11 and written[-1].name == ITEM_COLLECTION_NAME
    for f, s in zip(written[:-1], sample_scenes, strict=True):
        item = json.loads(f.read_text())
        _check_item(item, f)
        assert item["id"] == s.id and item["properties"]["view:off_nadir"] == s.off_nadir
        assert item["properties"]["view:incidence_angle"] == s.view_zenith
        assert "rpc" not in item["assets"]  # the sample's RPCs are in the GeoTIFF tags
    coll = json.loads(written[-1].read_text())
    assert coll["type"] == "FeatureCollection" and len(coll["features"]) == 10
    for item in coll["features"]:
        _check_item(item, written[-1])
    try:
        import pystac
    except ImportError:
        return
    for item in coll["features"]:  # parses as pystac Items (schema validation would need the network)
        assert pystac.Item.from_dict(item).id == item["id"]


def _validator(name: str):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SCHEMAS / f"{name}-v1.0.0.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_items_match_the_view_and_sat_extension_schemas(sample_scenes, tmp_path):
    """The published view and sat v1.0.0 JSON schemas (vendored: no network) accept our Items; the
    sat extension is declared, and sat: fields written, only for a known platform."""
    view, sat = _validator("view"), _validator("sat")
    assert view.schema["$id"].rstrip("#") == VIEW_EXTENSION and sat.schema["$id"] == SAT_EXTENSION
    for s in sample_scenes:  # the sample's synthetic sensors (SFS1/SFS2): no sat: field, no sat extension
        item = scene_to_item(s, tmp_path)
        assert not list(view.iter_errors(item)), [e.message for e in view.iter_errors(item)]
        assert SAT_EXTENSION not in item["stac_extensions"]
        assert not any(k.startswith("sat:") for k in item["properties"])
    for sensor in ("WV03", "PHR1A", "PNEO4", "WV110"):
        item = scene_to_item(replace(sample_scenes[0], sensor=sensor), tmp_path)
        props = item["properties"]
        assert props["sat:platform_international_designator"] == COSPAR_IDS[sensor]
        assert props["platform"] == PLATFORMS[sensor]
        assert item["stac_extensions"] == [VIEW_EXTENSION, SAT_EXTENSION]
        assert not list(sat.iter_errors(item)), [e.message for e in sat.iter_errors(item)]
        assert not list(view.iter_errors(item))
        assert "sat:orbit_state" not in props  # not in the metadata: not invented
    # the schemas are live: they reject what we must not write
    bad = json.loads(json.dumps(item))
    bad["properties"]["sat:orbit_state"] = "northbound"
    assert list(sat.iter_errors(bad))
    bad = json.loads(json.dumps(item))
    bad["stac_extensions"] = [VIEW_EXTENSION]
    assert list(sat.iter_errors(bad))  # a sat: field needs the extension declared
    bad = json.loads(json.dumps(item))
    bad["properties"]["view:off_nadir"] = 95.0
    assert list(view.iter_errors(bad))


def test_cospar_ids_are_well_formed_and_cover_every_platform():
    import re

    assert set(COSPAR_IDS) == set(PLATFORMS)
    for sensor, cospar in COSPAR_IDS.items():
        assert re.fullmatch(r"(19[5-9]\d|20\d\d)-\d{3}[A-Z]{1,3}", cospar), (sensor, cospar)
    assert COSPAR_IDS["WV110"] == COSPAR_IDS["WV02"]  # WorldView-2's camera
    assert len({v for k, v in COSPAR_IDS.items() if k != "WV110"}) == len(COSPAR_IDS) - 1


@pytest.mark.parametrize("source", ["collection", "folder", "one_item"])
def test_round_trip_same_files_dates_and_footprints(sample_scenes, tmp_path, source):
    written = write_stac(sample_scenes, tmp_path / "stac")
    arg = {"collection": written[-1], "folder": tmp_path / "stac", "one_item": written[0]}[source]
    assert is_stac_input(arg)
    back = import_stac([arg], ["tif"])
    expect = sample_scenes[:1] if source == "one_item" else sample_scenes
    assert [s.path for s in back] == [s.path for s in expect]
    items = {json.loads(f.read_text())["id"]: json.loads(f.read_text()) for f in written[:-1]}
    for a, b in zip(back, expect, strict=True):
        assert a.acquired == b.acquired and a.ok
        pa, pb = _coords(items[a.id]["geometry"]), list(b.footprint.exterior.coords)
        assert len(pa) == len(pb)
        assert max(max(abs(x - u), abs(y - v)) for (x, y), (u, v) in zip(pa, pb, strict=True)) <= 1e-9
        assert a.footprint.symmetric_difference(b.footprint).area <= 1e-18
        assert datetime.fromisoformat(items[a.id]["properties"]["datetime"].replace("Z", "+00:00")) == b.acquired


def test_relative_hrefs_survive_moving_the_tree(sample_scenes, tmp_path):
    data = tmp_path / "data"
    (data / "scenes").mkdir(parents=True)
    for s in sample_scenes[:2]:
        shutil.copy(s.path, data / "scenes" / s.path.name)
    local = scan_scenes([data / "scenes"], ["tif"])
    write_stac(local, data / "stac")
    moved = tmp_path / "moved"
    shutil.move(str(data), str(moved))
    files = stac_scene_files([moved / "stac" / ITEM_COLLECTION_NAME])
    assert files == sorted((moved / "scenes").resolve().glob("*.tif"))


def test_rpc_sidecar_becomes_an_asset(sample_scenes, tmp_path):
    img = tmp_path / "x.tif"
    shutil.copy(sample_scenes[0].path, img)
    (tmp_path / "x.RPB").write_text("dummy")
    s = replace(sample_scenes[0], path=img, rpc_source="x.RPB")
    item = scene_to_item(s, tmp_path / "stac")
    assert item["assets"]["image"]["href"] == "../x.tif"
    assert item["assets"]["rpc"]["href"] == "../x.RPB" and item["assets"]["rpc"]["roles"] == ["metadata"]


def test_import_errors_name_the_problem(tmp_path):
    (tmp_path / "sat.json").write_text(json.dumps({"rpc": {}, "sensor": "WV03"}))  # Sat-NeRF json, not STAC
    assert not is_stac_input(tmp_path)
    with pytest.raises(ConfigError, match="no STAC"):
        stac_scene_files([tmp_path])
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "gone", "geometry": None, "properties": {},
            "links": [], "assets": {"image": {"href": "nowhere.tif", "roles": ["data"]}}}
    (tmp_path / "gone.json").write_text(json.dumps(item))
    with pytest.raises(ConfigError, match="missing"):
        stac_scene_files([tmp_path / "gone.json"])
    item["assets"] = {"image": {"href": "https://example.com/a.tif", "roles": ["data"]}}
    (tmp_path / "gone.json").write_text(json.dumps(item))
    with pytest.raises(ConfigError, match="not on disk"):
        stac_scene_files([tmp_path / "gone.json"])


def test_cli_scenes_writes_and_reads_stac(tmp_path, capsys):
    from skyfall_core.cli import main

    assert main(["scenes", str(SAMPLE_SCENES), "--no-cache", "--stac-out", str(tmp_path / "stac")]) == 0
    out = capsys.readouterr().out
    assert "view_zenith" in out.splitlines()[0] and "off_nadir" in out.splitlines()[0]
    assert (tmp_path / "stac" / ITEM_COLLECTION_NAME).is_file()
    assert main(["scenes", str(tmp_path / "stac" / ITEM_COLLECTION_NAME), "--json", "--no-cache"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [Path(r["path"]) for r in rows] == sorted(SAMPLE_SCENES.resolve().glob("*.tif"))
