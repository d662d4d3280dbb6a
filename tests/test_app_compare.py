"""The Compare page under AppTest on copies of the session's real tiny job (issue 17)."""

import base64
import json
from pathlib import Path

import pytest

st = pytest.importorskip("streamlit")


from fixtures_app import app_session, copy_real_job, run_page  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_aoi"
pytestmark = pytest.mark.skipif(not (SAMPLE / "aoi.geojson").is_file(), reason="bundled sample_aoi/ missing")


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    with app_session(tmp_path / "ws", tmp_path, monkeypatch) as cfg:
        yield cfg


def _run_compare(timeout: float = 120):
    return run_page("compare", timeout)


def _three_jobs(app_env, tiny_job):
    ws = app_env.workspace_root
    copy_real_job(tiny_job, ws, "20260101-000000-a", name="high schedule")
    copy_real_job(tiny_job, ws, "20260101-000100-b", name="low schedule", parent="20260101-000000-a")
    copy_real_job(tiny_job, ws, "20260101-000200-c", name="stopped early", rounds_done=1, status="cancelled")


def test_compare_selects_finished_jobs_and_shows_same_camera_renders_by_name(app_env, tiny_job):
    _three_jobs(app_env, tiny_job)
    at = _run_compare()
    pick = at.multiselect(key="compare_pick")
    assert pick.value == ["20260101-000100-b", "20260101-000000-a"]  # the cancelled job is not selected

    views = json.loads((tiny_job / "final" / "compare" / "cameras.json").read_text())["views"]
    # one tab per elevation group, top-down first
    assert [t.label for t in at.tabs] == ["Top-down", "85° elevation", "65° elevation", "45° elevation",
                                          "30° elevation"]
    # every camera named, each with one image per job captioned with the job's name
    md = [m.value for m in at.markdown]
    assert sum("`top.png`" in m and "top-down" in m for m in md) == 1
    assert any("85° elevation, from the north (0°)" in m and "`e85_a000.png`" in m for m in md)
    assert sum(m.startswith("**") and ".png`" in m for m in md) == len(views)
    captions = [c for img in at.get("image") for c in img.captions]
    assert captions.count("high schedule") == len(views) and captions.count("low schedule") == len(views)
    assert not any(c.startswith("20260101-") for c in captions)

    # the before/after slider between two jobs: both PNGs inlined, labelled with the job names, no external JS
    frames = at.get("iframe")
    assert len(frames) == 1
    src = frames[0].proto.srcdoc
    assert src.count("data:image/png;base64,") == 2 and "<script src" not in src
    assert "low schedule" in src and "high schedule" in src
    png = base64.b64decode(src.split("data:image/png;base64,")[1].split('"')[0])
    assert png == (tiny_job / "final" / "compare" / "top.png").read_bytes()


def test_compare_table_has_one_column_per_job_with_metrics_and_stage1_timing(app_env, tiny_job):
    _three_jobs(app_env, tiny_job)
    at = _run_compare()
    df = at.dataframe[0].value
    assert list(df.columns) == ["low schedule", "high schedule"]
    elevations = ", ".join(f"{e:g}" for e in json.loads((tiny_job / "job.json").read_text())["config"]["presets"]
                           ["preview"]["stage2"]["elevations_deg"])
    assert list(df.loc["elevations (°)"]) == [elevations] * 2
    assert list(df.loc["status"]) == ["done", "done"]
    mae = [float(v) for v in df.loc["DSM MAE (m)"]]  # against the sample's truth/dsm.tif
    assert all(0 < v < 100 for v in mae)
    assert all(float(v) > 0 for v in df.loc["stage-1 PSNR (dB, satellite views)"])
    assert any("truth/dsm.tif" in c.value for c in at.caption)

    # the timing chart covers scene and stage 1 and names the jobs
    chart = at.get("vega_lite_chart")[0].proto
    spec = json.loads(chart.spec)
    assert spec["encoding"]["y"]["sort"] == ["low schedule", "high schedule"]
    stages = spec["encoding"]["row"]["sort"]
    assert stages[:2] == ["scene & cameras", "stage 1"] and "round 1" in stages

    # adding the cancelled job: it has no final/compare/, said by name
    at.multiselect(key="compare_pick").select("20260101-000200-c").run()
    assert not at.exception
    assert list(at.dataframe[0].value.columns) == ["low schedule", "high schedule", "stopped early"]
    assert any("stopped early" in c.value and "not finished" in c.value for c in at.caption)
