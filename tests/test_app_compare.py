"""The Compare page under AppTest on copies of the session's real tiny job (issue 17)."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest

st = pytest.importorskip("streamlit")


from fixtures_app import app_session, copy_real_job, run_page  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_aoi"
pytestmark = pytest.mark.skipif(not (SAMPLE / "aoi.geojson").is_file(), reason="bundled sample_aoi/ missing")


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    from skyfall_core.ui.static import unpublish_job

    with app_session(tmp_path / "ws", tmp_path, monkeypatch) as cfg:
        yield cfg
    for job_id in JOB_IDS:  # the synced 3D viewers published the splats under static/_jobs/
        unpublish_job(job_id)


JOB_IDS = ("20260101-000000-a", "20260101-000100-b", "20260101-000200-c")


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
    frames = [f for f in at.get("iframe") if "data:image/png" in f.proto.srcdoc]
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


# ----------------------------------------------------------------------------- synced 3D
def _pair_frames(at):
    return [f.proto.srcdoc for f in at.get("iframe") if "mountLinked" in f.proto.srcdoc]


def _georef(folder: Path, **change) -> None:
    path = folder / "final" / "georef.json"
    doc = json.loads(path.read_text())
    for k, dv in change.items():
        doc["origin"][k] += dv
    path.write_text(json.dumps(doc))


def test_compare_shows_left_and_right_final_splats_in_linked_viewers(app_env, tiny_job):
    from skyfall_core.ui.static import STATIC_ROOT

    _three_jobs(app_env, tiny_job)
    at = _run_compare()
    assert any(m.value == "**Synced 3D**" for m in at.markdown)
    pages = _pair_frames(at)
    assert len(pages) == 1
    src = pages[0]
    # Left and Right of the slider: the newest finished job, then the next; each splat by URL, names over them
    left, right = "20260101-000100-b", "20260101-000000-a"
    urls = [f"/app/static/_jobs/{job_id}/scene.spz?v=" for job_id in (left, right)]
    assert all(u in src for u in urls) and src.index(urls[0]) < src.index(urls[1])
    assert src.count('class="label"') == 2
    assert src.index(">low schedule</div>") < src.index(">high schedule</div>")
    assert "data:application/octet-stream" not in src and "base64" not in src  # no splat bytes in the rerun
    for job_id in (left, right):  # what the URLs serve: the jobs' own .spz
        assert (STATIC_ROOT / "_jobs" / job_id / "scene.spz").read_bytes() == \
            (tiny_job / "final" / "scene.spz").read_bytes()
    assert '"offsets": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]' in src  # one AOI, one ground height: no shift
    assert any("low schedule" in c.value and "move together" in c.value for c in at.caption)

    # the same job twice, then a job without a final splat: said, no viewer
    at.selectbox(key="compare_right").set_value(0).run()
    assert not at.exception and not _pair_frames(at)
    assert any("two different jobs" in i.value for i in at.info)
    at.multiselect(key="compare_pick").select("20260101-000200-c").run()
    at.selectbox(key="compare_right").set_value(2).run()
    assert not at.exception and not _pair_frames(at)
    assert any("No final splat for stopped early" in i.value for i in at.info)


def test_compare_links_one_aoi_with_a_height_shift_and_not_two_aois(app_env, tiny_job):
    _three_jobs(app_env, tiny_job)
    high = app_env.workspace_root / "jobs" / "20260101-000000-a"  # Right
    _georef(high, h=-2.5)  # its images put the ground 2.5 m lower: its frame's origin too
    at = _run_compare()
    pages = _pair_frames(at)
    assert len(pages) == 1 and '"offsets": [[0.0, 0.0, 0.0], [0.0, 0.0, 2.5]]' in pages[0]
    assert any("differ by 2.50 m" in c.value for c in at.caption)

    _georef(high, h=2.5, lon=0.01)  # another AOI centre, ~840 m east at 41.26° N
    at.run()
    assert not at.exception and not _pair_frames(at)
    info = " ".join(i.value for i in at.info)
    assert "different AOIs" in info and "not linked" in info
    assert "low schedule and high schedule" in info and " 83" in info  # "... are 836 m apart"


def test_pair_frame_offset_is_the_right_enu_of_the_left_origin():
    from skyfall_core.geo.frames import LocalFrame
    from skyfall_core.ui.compare import pair_frame

    left = {"lat": 41.2585, "lon": -95.938, "h": 300.0}
    f = pair_frame(left, {**left, "h": 292.0})
    assert f.offset_m == (0.0, 0.0, 8.0)  # the left origin lies 8 m above the right one
    # a point in the left frame lands at left + offset in the right frame
    p_left = np.array([40.0, -25.0, 12.0])
    lon, lat, h = LocalFrame(left["lon"], left["lat"], left["h"]).enu_to_geodetic(p_left)
    p_right = LocalFrame(left["lon"], left["lat"], 292.0).geodetic_to_enu(lon, lat, h)
    np.testing.assert_allclose(p_right, p_left + np.array(f.offset_m), atol=1e-6)

    assert pair_frame(left, {**left, "lon": left["lon"] + 5e-6}).offset_m is not None  # 0.4 m: the same AOI
    far = pair_frame(left, {**left, "lon": left["lon"] + 1e-4}, ("a", "b"))  # 8 m
    assert far.offset_m is None and "a and b are different AOIs" in far.reason and " 8 m apart" in far.reason
    none = pair_frame(left, None, ("a", "b"))
    assert none.offset_m is None and "georef.json for b" in none.reason
