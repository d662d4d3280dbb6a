"""Job store, status machine, folder <-> store rebuilds, overrides, progress parsing, exit codes.

No job process runs here: these are tests of the store and of the pure helpers.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from skyfall_core.config import JobsSettings, WorkspaceConfig, apply_overrides, load_config, parse_override
from skyfall_core.errors import AOIError, ConfigError
from skyfall_core.jobs.local import outcome
from skyfall_core.jobs.manager import JobManager
from skyfall_core.jobs.progress import ProgressTracker
from skyfall_core.jobs.store import (
    STATUS_FILE,
    JobError,
    JobRecord,
    JobStateError,
    JobStore,
    export_to_folder,
    rebuild_from_folders,
    utc_now,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config(tmp_path):
    return load_config(REPO / "config.toml").model_copy(update={"workspace": WorkspaceConfig(root=tmp_path / "ws")})


@pytest.fixture
def manager(config):
    return JobManager(config, settings=JobsSettings())


@pytest.fixture
def scenes(sample_dir):
    return sorted((sample_dir / "scenes").glob("*.tif"))[:4]


def _submit(manager, scenes, sample_dir, name="job", overrides=None):
    return manager.submit(name, sample_dir / "aoi.geojson", scenes, "preview", overrides, start=False)


def _record(job_id: str, **kw) -> JobRecord:
    return JobRecord(id=job_id, name=job_id, status="queued", created=utc_now(), queued=utc_now(),
                     aoi={"type": "Feature"}, scenes=[], preset="preview", config={}, folder=f"jobs/{job_id}", **kw)


# ------------------------------------------------------------------------- status machine
def test_transitions_are_validated_and_guarded(tmp_path):
    store = JobStore(tmp_path)
    store.insert(_record("a"))
    assert store.transition("a", "running").status == "running"
    assert store.transition("a", "done", finished=utc_now()).status == "done"
    with pytest.raises(JobStateError) as exc:
        store.transition("a", "running")
    assert "done" in exc.value.message and "clone" in exc.value.message
    with pytest.raises(JobStateError):
        store.transition("a", "queued")  # a done job is final; resume is refused too
    assert store.transition("a", "queued", strict=False) is None
    store.insert(_record("b"))
    rec = store.claim_next(1, "local", "h")
    assert rec.id == "b" and rec.attempt == 1
    assert store.transition("b", "done", attempt=0) is None  # a stale attempt changes nothing
    assert store.transition("b", "done", expect=("cancelling",)) is None
    assert store.require("b").status == "running"
    with pytest.raises(ValueError):
        store.update("b", status="done")


def test_claim_respects_queue_order_and_the_concurrency_limit_under_contention(tmp_path):
    store = JobStore(tmp_path)
    for i in range(10):
        store.insert(_record(f"j{i}", ))
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer():
        while (rec := store.claim_next(3, "local", "h")) is not None:
            with lock:
                claimed.append(rec.id)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == ["j0", "j1", "j2"]  # exactly the limit, oldest first
    store.transition("j1", "done")
    assert store.claim_next(3, "local", "h").id == "j3"
    assert store.claim_next(3, "local", "h") is None


# ------------------------------------------------------------------ folders <-> store
def test_store_and_folders_rebuild_each_other(manager, scenes, sample_dir):
    store = manager.store
    ids = [_submit(manager, scenes, sample_dir, f"job {i}") for i in range(4)]
    # give them different histories
    store.claim_next(4, "local", "h")
    store.transition(ids[0], "done", finished=utc_now(), exit_code=0, stage="final", round=2)
    store.claim_next(4, "local", "h")
    store.transition(ids[1], "failed", finished=utc_now(), exit_code=2, error="bad scene")
    store.claim_next(4, "local", "h")
    store.transition(ids[2], "interrupted", error="killed", stage="round", round=1)
    before = {r.id: r for r in store.all()}
    job_json = {i: json.loads((store.folder(i) / "job.json").read_text()) for i in ids}

    # store lost -> rebuilt from the folders (job.json + status.json)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.path}{suffix}").unlink(missing_ok=True)
    fresh = JobStore(store.workspace)
    report = rebuild_from_folders(store.workspace, fresh)
    assert sorted(report.imported) == sorted(ids) and not report.broken
    after = {r.id: r for r in fresh.all()}
    for i in ids:
        assert replace(after[i], command=None) == replace(before[i], command=None)

    # folders lost their job.json -> rewritten from the store
    for i in ids:
        (fresh.folder(i) / "job.json").unlink()
        (fresh.folder(i) / STATUS_FILE).unlink()
        export_to_folder(fresh.require(i), fresh)
        assert json.loads((fresh.folder(i) / "job.json").read_text()) == job_json[i]
        assert json.loads((fresh.folder(i) / STATUS_FILE).read_text())["status"] == before[i].status


def test_rebuild_without_status_json_reads_the_pipeline_events(manager, scenes, sample_dir):
    store = manager.store
    done, failed, running, fresh_job = (_submit(manager, scenes, sample_dir, n) for n in "abcd")
    events = {
        done: [{"kind": "status", "status": "running"}, {"kind": "stage", "stage": "final", "state": "done"},
               {"kind": "status", "status": "done"}],
        failed: [{"kind": "status", "status": "running"}, {"kind": "error", "text": "no usable views"},
                 {"kind": "status", "status": "failed", "text": "no usable views"}],
        running: [{"kind": "status", "status": "running"}, {"kind": "stage", "stage": "round", "state": "start",
                                                            "round": 1, "elevation": 65}],
    }
    for job_id, evs in events.items():
        with open(store.folder(job_id) / "events.jsonl", "w") as f:
            for t, ev in enumerate(evs):
                f.write(json.dumps({"t": 1_800_000_000 + t, **ev}) + "\n")
    for job_id in (done, failed, running, fresh_job):
        (store.folder(job_id) / STATUS_FILE).unlink()
    (store.folder(fresh_job) / "job.json").write_text("{ torn")
    store.path.unlink()
    Path(f"{store.path}-wal").unlink(missing_ok=True)
    report = rebuild_from_folders(store.workspace)
    assert fresh_job in report.broken and "job.json" in report.broken[fresh_job]
    rebuilt = {r.id: r for r in JobStore(store.workspace).all()}
    assert rebuilt[done].status == "done"
    assert rebuilt[failed].status == "failed" and rebuilt[failed].error == "no usable views"
    assert rebuilt[running].status == "interrupted" and rebuilt[running].round == 1
    assert fresh_job not in rebuilt


# ------------------------------------------------------------------------------ submit
def test_submit_writes_job_json_with_the_resolved_config_and_overrides(manager, scenes, sample_dir):
    job_id = _submit(manager, scenes, sample_dir, "Downtown, all dates",
                     {"stage2.elevations_deg": [80, 60], "stage2.radii_m": [300, 250], "stage1.iterations": 20})
    data = json.loads((manager.store.folder(job_id) / "job.json").read_text())
    assert data["id"] == job_id and job_id.split("-")[2:4] == ["downtown", "all"]
    stage2 = data["config"]["presets"]["preview"]["stage2"]
    assert stage2["elevations_deg"] == [80.0, 60.0] and stage2["refiner"] == "classical"
    assert data["config"]["presets"]["preview"]["stage1"]["iterations"] == 20
    assert data["overrides"]["stage1.iterations"] == 20 and data["parent"] is None
    assert data["aoi"]["type"] == "Feature" and data["aoi"]["geometry"]["type"] == "Polygon"
    assert data["scenes"] == [str(s.resolve()) for s in scenes] and "torch" in data["versions"]
    assert manager.get(job_id).status == "queued" and manager.get(job_id).rounds_total == 2

    child = manager.clone(job_id, {"stage2.elevations_deg": [70, 50]}, start=False)
    c = json.loads((manager.store.folder(child) / "job.json").read_text())
    assert c["parent"] == job_id and c["config"]["presets"]["preview"]["stage2"]["elevations_deg"] == [70.0, 50.0]
    assert c["overrides"] == {**data["overrides"], "stage2.elevations_deg": [70, 50]}


@pytest.mark.parametrize("overrides, needle", [
    ({"stage2.iterationz_per_round": 5}, "'stage2.iterationz_per_round': unknown key"),
    ({"stage2.elevations_deg": [95, 60, 45]}, "'stage2.elevations_deg'"),
    ({"stage2.elevations_deg": [80, 60]}, "radii_m"),
    ({"stage1.iterations": "many"}, "'stage1.iterations'"),
    ({"device.compute": "tpu"}, "'device.compute'"),
    ({"stage2": 3}, "whole section"),
])
def test_a_bad_override_is_a_config_error_naming_the_key(manager, scenes, sample_dir, overrides, needle):
    with pytest.raises(ConfigError) as exc:
        _submit(manager, scenes, sample_dir, overrides=overrides)
    assert needle in exc.value.message
    assert not any(manager.store.jobs_dir.iterdir())  # nothing was created


def test_a_typo_gets_a_suggestion():
    cfg = load_config(REPO / "config.toml")
    with pytest.raises(ConfigError) as exc:
        apply_overrides(cfg.resolved("preview"), "preview", {"stage2.iterations_per_rond": 5})
    assert "did you mean 'stage2.iterations_per_round'" in exc.value.message
    assert parse_override("stage2.elevations_deg=[80,60]") == ("stage2.elevations_deg", [80, 60])
    assert parse_override("stage2.refiner=sdedit") == ("stage2.refiner", "sdedit")


def test_bad_inputs_are_clear_errors(manager, scenes, sample_dir, tmp_path):
    with pytest.raises(JobError) as exc:
        manager.submit("x", sample_dir / "aoi.geojson", [tmp_path / "nope.tif"], "preview", start=False)
    assert "nope.tif" in exc.value.message
    with pytest.raises(ConfigError) as exc:
        manager.submit("x", sample_dir / "aoi.geojson", scenes, "fastest", start=False)
    assert "preview" in exc.value.message
    with pytest.raises(AOIError):
        manager.submit("x", {"type": "Point", "coordinates": [0, 0]}, scenes, "preview", start=False)
    with pytest.raises(ConfigError):
        manager.submit("  ", sample_dir / "aoi.geojson", scenes, "preview", start=False)


# ---------------------------------------------------------------------------- progress
def test_progress_is_read_incrementally_with_etas(tmp_path):
    path = tmp_path / "events.jsonl"
    tracker = ProgressTracker(path, rounds_total=3)
    assert tracker.update().stage is None  # no file yet
    t = 1_800_000_000.0
    lines = [
        {"t": t, "kind": "status", "status": "running"},
        {"t": t + 1, "kind": "stage", "stage": "round", "state": "start", "round": 0, "elevation": 85},
        {"t": t + 11, "kind": "stage", "stage": "round", "state": "done", "round": 0, "elevation": 85},
        {"t": t + 12, "kind": "stage", "stage": "round", "state": "start", "round": 1, "elevation": 65},
        {"t": t + 14, "kind": "progress", "stage": "round", "round": 1, "elevation": 65, "step": 20, "total": 100,
         "losses": {"loss": 0.5, "l1": 0.25}, "seconds": 2.0},
        {"t": t + 14, "kind": "warning", "text": "no diffusion weights: classical refiner"},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"t": 1, "kind": "progr')  # torn last line
    p = tracker.update()
    assert (p.stage, p.round, p.elevation, p.step, p.total) == ("round", 1, 65, 20, 100)
    assert p.losses == {"loss": 0.5, "l1": 0.25} and p.rounds_done == [0] and p.bad_lines == 0
    assert p.seconds_per_step == pytest.approx(0.1) and p.stage_eta_s == pytest.approx(8.0)
    assert p.job_eta_s == pytest.approx(8.0 + 1 * 10.0)  # this round + one more at 10 s a round
    assert p.warning_count == 1 and "classical" in p.warnings[0]
    with open(path, "a") as f:  # the torn line is completed, then a corrupt line and an error
        f.write('ess", "stage": "round", "round": 1, "step": 60, "total": 100, "seconds": 6.0}\n')
        f.write("\x00\x00garbage\n")
        f.write(json.dumps({"t": t + 20, "kind": "error", "text": "CUDA out of memory"}) + "\n")
    p = tracker.update()
    assert p.step == 60 and p.stage_eta_s == pytest.approx(4.0) and p.fraction() == pytest.approx(0.6)
    assert p.bad_lines == 1 and p.first_bad_line == 8 and p.last_error == "CUDA out of memory"
    path.write_text("")  # truncated (replaced): starts over
    assert tracker.update().events == 0


# ------------------------------------------------------------------------------ outcomes
def test_exit_codes_follow_the_contract():
    assert outcome(0, cancel_requested=False, last_error=None).status == "done"
    assert outcome(3, cancel_requested=True, last_error=None) == outcome(3, cancel_requested=False, last_error=None)
    assert outcome(3, cancel_requested=False, last_error=None).status == "cancelled"
    failed = outcome(2, cancel_requested=False, last_error="AOI outside the scenes")
    assert failed.status == "failed" and "AOI outside the scenes" in failed.error and "user error" in failed.error
    assert "crashed (exit code 1)" in outcome(1, cancel_requested=False, last_error=None).error
    killed = outcome(-9, cancel_requested=False, last_error=None)
    assert killed.status == "interrupted" and "SIGKILL" in killed.error and "resume" in killed.error
    assert outcome(-15, cancel_requested=True, last_error=None).status == "cancelled"
    assert outcome(None, cancel_requested=True, last_error=None, killed_by="ray.cancel").status == "cancelled"
