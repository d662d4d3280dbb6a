"""The job-folder contract (skyfall_core.jobfolder): paths, state, job.json, events."""

from __future__ import annotations

import json
import math

import pytest

from skyfall_core.jobfolder import (
    BrokenJobError,
    EventLog,
    JobDir,
    check_job_id,
    load_job,
    read_events,
    update_job_json,
)


def test_state_round_trips_and_a_torn_state_reads_as_empty(tmp_path):
    job = JobDir(tmp_path / "j")
    job.root.mkdir()
    state = job.read_state()
    assert state == {"finished": []}
    job.finish(state, "scene")
    job.finish(state, "stage1")
    assert job.read_state()["finished"] == ["scene", "stage1"]
    job.state_json.write_text('{"finished": ["sce')  # torn by a crash mid-write (not atomic)
    assert job.read_state() == {"finished": []}


def test_cancel_request_is_a_file(tmp_path):
    job = JobDir(tmp_path / "j")
    assert not job.cancel_requested()
    job.request_cancel("test")
    assert job.cancel_requested() and json.loads(job.cancel_request.read_text())["by"] == "test"
    job.clear_cancel()
    assert not job.cancel_requested()


def test_load_job_names_job_json_and_the_fix(tmp_path):
    folder = tmp_path / "j"
    folder.mkdir()
    with pytest.raises(BrokenJobError) as err:
        load_job(folder)
    assert str(folder / "job.json") in err.value.message and "Fix:" in err.value.message
    (folder / "job.json").write_text("{not json")
    with pytest.raises(BrokenJobError, match="cannot be read"):
        load_job(folder)


def test_load_job_types_job_json_and_update_keeps_other_keys(tmp_path):
    folder = tmp_path / "j"
    folder.mkdir()
    doc = {"id": "j", "name": "Downtown", "preset": "preview", "scenes": ["a.tif"], "overrides": {"x": 1},
           "config": {"presets": {"preview": {"stage2": {"elevations_deg": [85, 65, 45]}}}}, "custom": 7}
    (folder / "job.json").write_text(json.dumps(doc))
    meta = load_job(folder)
    assert meta.name == "Downtown" and meta.scenes == ("a.tif",) and meta.elevations == [85.0, 65.0, 45.0]
    assert meta.rounds_total == 3
    meta.folder.finish({"finished": [], "rounds_total": 2}, "scene")  # the pipeline's count wins
    assert load_job(folder).rounds_total == 2
    update_job_json(folder, refiner={"name": "classical"})
    again = load_job(folder)
    assert again.refiner == {"name": "classical"} and again.raw["custom"] == 7 and again.name == "Downtown"


def test_event_log_writes_nan_as_null_and_readers_skip_torn_lines(tmp_path):
    job = JobDir(tmp_path / "j")
    log = EventLog.of(job)
    log.emit("progress", stage="stage1", step=1, losses={"photo": math.nan, "loss": 0.5})
    log.warning("careful")
    with open(job.events, "a") as f:
        f.write('{"kind": "progress", "st')  # a line still being written
    events, offset = read_events(job.events)
    assert [e["kind"] for e in events] == ["progress", "warning"]
    assert events[0]["losses"] == {"photo": None, "loss": 0.5}
    with open(job.events, "a") as f:
        f.write('ep": 2}\n')
    more, _ = read_events(job.events, offset)
    assert more == [{"kind": "progress", "step": 2}]
    assert "careful" in job.log.read_text()


def test_web_splat_prefers_spz_then_compressed_ply(tmp_path):
    job = JobDir(tmp_path / "j")
    job.final.mkdir(parents=True)
    assert job.web_splat() is None
    job.final_file("ply").write_bytes(b"ply")
    assert job.web_splat() == (job.final_file("ply"), "ply")
    job.final_file("compressed").write_bytes(b"ply")
    job.final_file("spz").write_bytes(b"spz")
    assert job.web_splat() == (job.final_file("spz"), "spz")
    assert set(job.final_outputs()) == {"ply", "compressed", "spz"}


def test_job_ids_cannot_escape_the_jobs_folder():
    assert check_job_id("20260101-abc_1") == "20260101-abc_1"
    for bad in ("../x", "a/b", ".hidden", "", "a" * 65):
        with pytest.raises(ValueError):
            check_job_id(bad)
