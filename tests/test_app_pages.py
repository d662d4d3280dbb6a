"""Every page of the app under streamlit's AppTest, on a temporary workspace with copies of a real job.

The workspace comes from a temporary config.toml (``SKYFALL_CONFIG``) whose catalog is the
bundled sample; jobs are copies of the session's tiny real job (tests/conftest.py ``tiny_job``).
"""

import json
from pathlib import Path

import pytest

st = pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from skyfall_core.ui.draft import load_draft, update_draft  # noqa: E402

from fixtures_app import app_session, copy_real_job, run_page  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_aoi"
pytestmark = pytest.mark.skipif(not (SAMPLE / "aoi.geojson").is_file(), reason="bundled sample_aoi/ missing")


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    with app_session(tmp_path / "ws", tmp_path, monkeypatch) as cfg:
        yield cfg


def _run(page: str, timeout: float = 90) -> AppTest:
    return run_page(page, timeout)


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [e.value for e in at.info] + [e.value for e in at.warning] + [e.value for e in at.success]
    parts += [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def _sample_aoi(cfg):
    feat = json.loads((SAMPLE / "aoi.geojson").read_text())["features"][0]
    update_draft(cfg.workspace_root, aoi=feat, aoi_source="sample")
    return feat


def test_home_and_sidebar(app_env):
    at = _run("home")
    assert "Skyfall Studio" in at.title[0].value
    assert any("AOI" in m.value and "not set" in m.value for m in at.sidebar.markdown)


def test_area_sample_button_sets_a_valid_aoi(app_env):
    at = _run("area")
    assert "No AOI yet" in _texts(at)
    at.button[0].click().run()  # "Use the sample AOI"
    assert not at.exception
    draft = load_draft(app_env.workspace_root)
    assert draft.aoi_source == "sample" and draft.aoi["geometry"]["type"] == "Polygon"
    text = _texts(at)
    assert "EPSG:32615" in text and "ha" in at.metric[0].value
    assert "10 of 10 scenes cover" in text


def test_area_shows_the_typed_error_of_a_bad_aoi(app_env):
    huge = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [
        [[-96, 41], [-95, 41], [-95, 42], [-96, 42], [-96, 41]]]}}
    update_draft(app_env.workspace_root, aoi=huge, aoi_source="drawn")
    at = _run("area")
    assert any("too large" in e.value and "Fix:" in e.value for e in at.error)


def test_scenes_auto_select_picks_a_diverse_covering_set(app_env):
    _sample_aoi(app_env)
    at = _run("scenes")
    assert "Catalog · 10 scenes" in [s.value for s in at.subheader]
    auto = next(b for b in at.button if "Auto-select" in b.label)
    auto.click().run()
    assert not at.exception
    chosen = load_draft(app_env.workspace_root).scenes
    assert 3 <= len(chosen) <= 8 and all(Path(p).is_file() for p in chosen)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Views"] == str(len(chosen)) and float(metrics["Azimuth spread"].rstrip("°")) >= 180
    assert not at.error


def test_scenes_add_folder_rejects_a_missing_folder(app_env):
    at = _run("scenes")
    at.text_input(key="add_folder").input("/no/such/folder").run()
    next(b for b in at.button if b.label == "Add folder").click().run()
    assert any("not a folder" in e.value for e in at.error)


def test_reconstruct_shows_models_overrides_and_refuses_without_inputs(app_env):
    at = _run("reconstruct", timeout=120)
    start = next(b for b in at.button if "Start" in b.label)
    assert start.disabled  # no AOI, no scenes
    text = _texts(at)
    assert "Classical refiner" in text and "not a diffusion model" in text
    at.selectbox(key="preset").select("standard").run()
    text = _texts(at)
    assert "black-forest-labs/FLUX.1-dev" in text and "~27 GB" in text  # FLUX with model offload
    at.number_input(key="standard:stage1.iterations").set_value(30).run()
    code = [c.value for c in at.code]
    assert any('"stage1.iterations": 30' in c for c in code)


def test_reconstruct_reports_a_bad_advanced_override(app_env):
    at = _run("reconstruct", timeout=120)
    at.text_area(key="preview:advanced").input('{"stage2.fov_deg": 500}').run()
    assert any("fov_deg" in e.value for e in at.error)
    at.text_area(key="preview:advanced").input('{"stage1.iterations": 40, "stage2.fov_deg": 50}').run()
    assert not at.error
    assert any('"stage1.iterations": 40' in c.value for c in at.code)
    assert any("wins over the fields" in c.value and "stage1.iterations" in c.value for c in at.caption)


def test_rounds_viewer_compare_share_jobs_on_real_jobs(app_env, tiny_job):
    ws = app_env.workspace_root
    _sample_aoi(app_env)
    copy_real_job(tiny_job, ws, "20260101-000000-a", name="high")
    copy_real_job(tiny_job, ws, "20260101-000100-b", name="low", parent="20260101-000000-a")
    elevations = [f"{e:g}" for e in json.loads((tiny_job / "job.json").read_text())["config"]["presets"]["preview"]
                  ["stage2"]["elevations_deg"]]

    at = _run("rounds")
    assert [t.label for t in at.tabs] == [f"Round {k + 1} · {e}°" for k, e in enumerate(elevations)]
    assert any("classical, not diffusion" in i.value for i in at.info)

    at = _run("viewer")
    labels = [b.proto.label for b in at.get("download_button")]
    assert "⬇ Web splat (.spz, Spark)" in labels and "⬇ DSM GeoTIFF" in labels
    final = ws / "jobs" / "20260101-000100-b" / "final"
    served = REPO / "static" / "_jobs" / "20260101-000100-b" / "scene.spz"
    assert served.is_file() and served.read_bytes() == (final / "scene.spz").read_bytes()

    at = _run("compare")
    df = at.dataframe[0].value  # one column per job, named
    assert list(df.columns) == ["low", "high"]
    assert list(df.loc["elevations (°)"]) == [", ".join(elevations)] * 2
    assert list(df.loc["rounds done"]) == [str(len(elevations))] * 2

    at = _run("share")
    assert "scene.spz" in _texts(at)

    at = _run("jobs")
    table = at.dataframe[0].value
    assert list(table["job"]) == ["20260101-000100-b", "20260101-000000-a"]
    assert all("done" in s for s in table["status"])
    metrics = {m.label: m.value for m in at.metric}
    assert "done" in metrics["Status"]

    from skyfall_core.ui.static import unpublish_job
    for j in ("20260101-000000-a", "20260101-000100-b"):
        unpublish_job(j)


def test_jobs_page_deletes_after_confirmation(app_env, tiny_job):
    ws = app_env.workspace_root
    copy_real_job(tiny_job, ws, "20260101-000000-a", rounds_done=1, status="cancelled")
    at = _run("jobs")
    assert any("Resume" in b.label for b in at.button)
    delete = next(b for b in at.button if b.label == "Delete")
    assert delete.disabled
    at.checkbox(key="sure_20260101-000000-a").check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert not at.exception
    assert not (ws / "jobs" / "20260101-000000-a").exists()
