"""What the pages read from job folders: progress from events, rounds, outputs, overrides, cameras."""

import io
import zipfile

import numpy as np
import pytest

from skyfall_core.config import config_from_dict, load_config
from skyfall_core.errors import SkyfallError
from skyfall_core.jobfolder import JobDir, load_job
from skyfall_core.ui.jobs import Jobs, check_overrides, list_rounds, summarise_events
from skyfall_core.ui.outputs import camera_list, camera_summary, refiner_label, rounds_zip, timing_table
from skyfall_core.ui.reconstruct import FormValues, build_overrides, parse_advanced, schedule_from_rows, schedule_rows

from fixtures_app import copy_real_job


@pytest.fixture()
def cfg(tmp_path):
    base = load_config()
    data = base.model_dump(mode="json")
    data.pop("source")
    data["workspace"]["root"] = str(tmp_path / "ws")
    return config_from_dict(data, source=tmp_path / "config.toml")


def test_summarise_events_stages_eta_and_losses():
    ev = [{"t": 1, "kind": "status", "status": "running"},
          {"t": 2, "kind": "stage", "stage": "scene", "state": "start"},
          {"t": 3, "kind": "stage", "stage": "scene", "state": "done"},
          {"t": 4, "kind": "stage", "stage": "stage1", "state": "start"},
          {"t": 5, "kind": "progress", "stage": "stage1", "step": 50, "total": 100, "losses": {"loss": 0.5, "l1": 0.4},
           "seconds": 10.0},
          {"t": 6, "kind": "warning", "text": "w1"}]
    p = summarise_events(ev, rounds_total=2, elevations=[85, 60])
    assert p.status == "running" and p.current == "stage1"
    assert [s.state for s in p.stages] == ["done", "running", "pending", "pending", "pending"]
    assert p.stages[2].label == "Round 1 · 85° elevation"
    assert p.eta_s == pytest.approx(10.0)  # 50 steps in 10 s, 50 left
    assert p.fraction == pytest.approx(0.05 + 0.35 * 0.5)
    assert p.losses[-1]["loss"] == 0.5 and p.losses[-1]["x"] == 50 and p.warnings == ("w1",)
    ev += [{"t": 7, "kind": "stage", "stage": "stage1", "state": "done"},
           {"t": 8, "kind": "stage", "stage": "round", "state": "start", "round": 0, "elevation": 85},
           {"t": 9, "kind": "progress", "stage": "round", "round": 0, "elevation": 85, "step": 5, "total": 10,
            "losses": {"loss": 0.1}, "seconds": 1.0}]
    p = summarise_events(ev, 2, [85, 60], status="cancelling")
    assert p.status == "cancelling" and p.round == 0 and p.elevation == 85
    assert p.losses[-1]["x"] == 100 + 5  # cumulative over stages
    done = summarise_events(ev + [{"t": 10, "kind": "status", "status": "failed", "text": "boom"}], 2, [85, 60])
    assert done.status == "failed" and done.error == "boom"


def test_a_real_job_reads_back_through_the_contract(tiny_job):
    """The app's readers on a folder the pipeline wrote (not a hand-made one)."""
    spec = load_job(tiny_job)
    s2 = spec.stage2
    assert spec.elevations == [float(e) for e in s2["elevations_deg"]] and spec.refiner["is_diffusion"] is False
    rounds = list_rounds(tiny_job)
    n_views = s2["lookat_grid"] ** 2 * s2["azimuths"] * s2["edits_per_view"]
    assert [(r.index, r.elevation, len(r.pairs)) for r in rounds] == \
        [(k, float(e), n_views) for k, e in enumerate(s2["elevations_deg"])]
    assert all(b is not None and a is not None for r in rounds for b, a in r.pairs)
    outs = JobDir(tiny_job).final_outputs()
    assert {"spz", "compressed", "ply", "dsm", "dsm_cog", "laz", "tileset", "georef", "preview"} <= set(outs)
    assert JobDir(tiny_job).web_splat() == (outs["spz"], "spz")
    cams = camera_list(rounds[0].cameras)
    s = camera_summary(cams[1])  # the round's second azimuth
    size = s2["image_size"]
    assert s["look_down_deg"] == pytest.approx(s2["elevations_deg"][0], abs=0.1) and s["size_px"] == f"{size}×{size}"
    assert s["fov_x_deg"] == pytest.approx(s2["fov_deg"], abs=0.1)
    radius = rounds[0].cameras["radius_m"]
    horizontal = radius * np.cos(np.radians(s2["elevations_deg"][0]))
    assert np.hypot(*s["position_m"][:2]) == pytest.approx(horizontal, rel=0.05)
    names = zipfile.ZipFile(io.BytesIO(rounds_zip(tiny_job))).namelist()
    assert "rounds/0_e85/before/000.png" in names and "rounds/1_e65/cameras.json" in names
    assert len(names) == len(rounds) * (2 * n_views + 1)
    assert refiner_label(spec.refiner)[0].endswith("classical, not diffusion")
    assert refiner_label(None, "flowedit")[1] is True


def test_jobs_facade_lists_progresses_and_deletes_with_the_job_manager(cfg, tiny_job):
    ws = cfg.workspace_root
    copy_real_job(tiny_job, ws, "20260101-000000-a")
    copy_real_job(tiny_job, ws, "20260101-000100-b", rounds_done=1, status="failed")
    n_rounds = len(load_job(tiny_job).elevations)
    jobs = Jobs(cfg)
    assert jobs.ids() == ["20260101-000100-b", "20260101-000000-a"]  # newest first
    a, b = jobs.progress("20260101-000000-a"), jobs.progress("20260101-000100-b")
    assert a.status == "done" and a.fraction == 1.0
    assert {t.get("stage") for t in a.timings} >= {"scene", "stage1", "round"}
    assert sum(1 for t in a.timings if t.get("stage") == "round") == n_rounds
    assert b.status == "failed" and [s.state for s in b.stages].count("done") == 3  # scene, stage1, round 0
    stages = {r["stage"] for r in timing_table("a", a.timings)}
    assert stages >= {"stage1"} | {f"round {k + 1}" for k in range(n_rounds)}
    assert "stage" in jobs.log_tail("20260101-000000-a")
    with pytest.raises(SkyfallError):
        jobs.info("../etc")
    jobs.delete("20260101-000100-b")
    assert jobs.ids() == ["20260101-000000-a"] and not (ws / "jobs" / "20260101-000100-b").exists()


def test_overrides_from_the_form(cfg):
    preset = cfg.resolved("preview")["presets"]["preview"]
    rows = schedule_rows(preset["stage2"])
    same = FormValues({"stage1.iterations": preset["stage1"]["iterations"]}, rows)
    assert build_overrides(preset, same) == {}
    changed = FormValues({"stage1.iterations": 30, "stage2.refiner": "classical"},
                         [{"elevation_deg": 80, "radius_m": 300}, {"elevation_deg": None, "radius_m": None},
                          {"elevation_deg": 50.0, "radius_m": 260}],
                         advanced='{"cameras.max_image_size": 128}')
    ov = build_overrides(preset, changed)
    assert ov == {"stage1.iterations": 30, "stage2.elevations_deg": [80.0, 50.0], "stage2.radii_m": [300.0, 260.0],
                  "cameras.max_image_size": 128}
    job_cfg = check_overrides(cfg, "preview", ov)
    assert job_cfg["presets"]["preview"]["stage2"]["elevations_deg"] == [80.0, 50.0]
    with pytest.raises(SkyfallError):
        check_overrides(cfg, "preview", {"stage2.no_such_key": 1})
    with pytest.raises(SkyfallError, match="outside"):
        schedule_from_rows([{"elevation_deg": 95, "radius_m": 10}])
    with pytest.raises(SkyfallError, match="empty"):
        schedule_from_rows([{"elevation_deg": None, "radius_m": None}])
    with pytest.raises(SkyfallError, match="JSON"):
        parse_advanced("{not json")
    assert parse_advanced("  ") == {}
