"""The whole-job ETA (issue 17) on synthetic event streams written by the real EventLog, with the
job's real plan (job.json with the preview preset's resolved config) and a fake clock.

The simulated job follows the pipeline's event pattern (progress every 25 steps with stage 1's
seconds, refiner progress per view, timing events) with the costs of real preview jobs on the
2-core VM (benchmarks/bench_eta.py): stage 1's step slows while densification grows the splats
and gets cheaper once it stops (the splats are pruned); a round's step, writing stage 1's outputs
and the export cost what they cost there. The acceptance: at 50 % of the wall time the ETA is
within ±30 % of the real remaining time (the estimator before issue 17 had no whole-job ETA until
a round had finished).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from skyfall_core import atomic, jobfolder
from skyfall_core.config import load_config
from skyfall_core.jobfolder import EventLog, JobDir
from skyfall_core.jobs.progress import (
    FINAL_IN_STAGE1_STEPS,
    ROUND_STEP_FIXED_SHARE,
    STAGE1_OUTPUTS_IN_STAGE1_STEPS,
    JobPlan,
    ProgressTracker,
    fold_events,
)
from skyfall_core.ui.jobs import job_progress

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 0.30


@dataclass
class Clock:
    t: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


@dataclass
class SimJob:
    """Costs of a simulated job, in seconds (default: the preview job on the quiet VM)."""

    scene: float = 5.0
    stage1_steps: int = 1500
    step_start: float = 0.113  # a stage-1 step at the start ...
    step_peak: float = 0.19  # ... when densification stops ...
    step_after: float = 0.115  # ... and after it (the splats pruned)
    densify_until: int = 1000
    stage1_outputs: float = 12.0
    rounds: int = 3
    views: int = 4
    edit: float = 0.05  # a refiner edit (and its render)
    round_steps: int = 200
    round_step: float = 0.09
    final: float = 18.0
    snapshots: list[tuple[float, float | None, float | None]] = field(default_factory=list)  # (t, eta, fraction)

    def stage1_step(self, step: int) -> float:
        if step > self.densify_until:
            return self.step_after
        return self.step_start + (self.step_peak - self.step_start) * step / self.densify_until


QUIET = SimJob()  # preview, quiet VM (bench_eta.py run: 334 s)
LOADED = SimJob(scene=7.0, step_start=1.3, step_peak=1.56, step_after=1.54, stage1_outputs=49.0, edit=0.7,
                round_step=1.3, final=61.0)  # preview beside another job on the 2 cores (3208 s)
SHORTER = SimJob(stage1_steps=600, densify_until=400, round_steps=100)


def simulate(job_dir: Path, sim: SimJob, monkeypatch, tracker: ProgressTracker, preset_overrides=None) -> float:
    """Write the job's events with the real EventLog under a fake clock; after every event the
    tracker reads the file (as the job manager polls it) and the (t, ETA, fraction) is kept.
    Returns the job's start time; ``sim.snapshots`` holds the readings."""
    clock = Clock()
    monkeypatch.setattr(jobfolder.time, "time", clock)
    log = EventLog.of(JobDir(job_dir))
    t0 = clock.t

    def emit(kind, dt=0.0, **fields):
        clock.t += dt
        log.emit(kind, **fields)
        p = tracker.update()
        sim.snapshots.append((clock.t, p.job_eta_s, getattr(p, "job_fraction", None)))

    emit("status", status="running")
    emit("stage", stage="scene", state="start")
    emit("timing", sim.scene, stage="scene", seconds=sim.scene)
    emit("stage", stage="scene", state="done")
    emit("stage", stage="stage1", state="start")
    spent = 0.0
    for step in range(1, sim.stage1_steps + 1):
        dt = sim.stage1_step(step)
        spent += dt
        clock.t += dt
        if step % 25 == 0 or step == sim.stage1_steps:
            emit("progress", stage="stage1", step=step, total=sim.stage1_steps, losses={"loss": 0.1},
                 seconds=round(spent, 2))
    emit("timing", sim.stage1_outputs, stage="stage1", seconds=round(spent + sim.stage1_outputs, 2))
    emit("stage", stage="stage1", state="done")
    for k in range(sim.rounds):
        rnd = {"round": k, "elevation": 85.0 - 20 * k}
        emit("stage", stage="round", state="start", views=sim.views, **rnd)
        for i in range(1, sim.views + 1):
            emit("progress", sim.edit, stage="refine", step=i, total=sim.views, **rnd)
        for step in range(1, sim.round_steps + 1):
            clock.t += sim.round_step
            if step % 25 == 0 or step == sim.round_steps:
                emit("progress", stage="round", step=step, total=sim.round_steps, losses={"loss": 0.1}, **rnd)
        emit("timing", stage="round", render_s=0.1, refine_s=sim.views * sim.edit,
             train_s=sim.round_steps * sim.round_step, **rnd)
        emit("stage", stage="round", state="done", **rnd)
    emit("stage", stage="final", state="start")
    emit("stage", sim.final, stage="final", state="done")
    emit("status", status="done")
    return t0


def make_job(folder: Path, overrides: dict | None = None) -> Path:
    """A job folder with job.json: the preview preset's real resolved config (+ overrides)."""
    from skyfall_core.config import apply_overrides

    cfg = load_config(REPO / "config.toml")
    resolved = apply_overrides(cfg.resolved("preview"), "preview", overrides or {})
    folder.mkdir(parents=True)
    atomic.write_json(JobDir(folder).job_json, {"id": folder.name, "preset": "preview", "config": resolved,
                                                 "refiner": None})
    return folder


def error_at(sim: SimJob, t0: float, fraction_of_wall: float) -> tuple[float | None, float]:
    """(ETA error, remaining) at the last reading at or before that share of the wall time."""
    t_end = sim.snapshots[-1][0]
    target = t0 + fraction_of_wall * (t_end - t0)
    t, eta, _ = [s for s in sim.snapshots if s[0] <= target][-1]
    remaining = t_end - t
    return (None if eta is None else (eta - remaining) / remaining), remaining


def test_the_plan_comes_from_job_json(tmp_path):
    job = make_job(tmp_path / "job")
    plan = JobPlan.of_job(job)
    assert (plan.stage1_steps, plan.rounds, plan.round_steps, plan.round_edits) == (1500, 3, 200, 4)
    assert not plan.diffusion
    assert plan.densify_until == 1000
    # a round's step draws 0.75 x 256^2 + 0.25 x 512^2 pixels against stage 1's 512^2
    share = ROUND_STEP_FIXED_SHARE
    assert plan.round_step_cost == pytest.approx(share + (1 - share) * (0.75 * 256**2 + 0.25 * 512**2) / 512**2)
    assert JobPlan.of_job(tmp_path / "nowhere") is None


@pytest.mark.parametrize("sim", [QUIET, LOADED, SHORTER], ids=["preview-quiet", "preview-loaded", "shorter"])
def test_the_whole_job_eta_is_within_30_percent_at_half_time(tmp_path, monkeypatch, sim):
    sim = replace(sim, snapshots=[])
    job = make_job(tmp_path / "job", {"stage1.iterations": sim.stage1_steps, "stage1.densify_until": sim.densify_until,
                                      "stage2.iterations_per_round": sim.round_steps})
    tracker = ProgressTracker(JobDir(job).events, 3, [85.0, 65.0, 45.0])  # as the job manager makes it
    t0 = simulate(job, sim, monkeypatch, tracker)
    err, remaining = error_at(sim, t0, 0.5)
    assert err is not None and abs(err) <= TOLERANCE, (err, remaining)
    for f in (0.25, 0.75):  # and at a quarter and three quarters
        err, remaining = error_at(sim, t0, f)
        assert err is not None and abs(err) <= TOLERANCE, (f, err, remaining)
    p = tracker.progress
    assert p.job_eta_s == 0.0 and p.job_fraction == 1.0
    fractions = [f for _, eta, f in sim.snapshots if f is not None]
    at_half = next(t for t, _, f in sim.snapshots if f is not None and f >= 0.5)
    assert abs((at_half - t0) / (sim.snapshots[-1][0] - t0) - 0.5) < 0.15  # the fraction tracks time
    assert fractions[-1] == 1.0
    # the app's "Overall" bar is that fraction while the job runs (not the fixed stage weights)
    half = [json.loads(line) for line in JobDir(job).events.read_text().splitlines()]
    half = [e for e in half if e["t"] <= at_half]
    folded = fold_events(half, 3, [85.0, 65.0, 45.0], plan=JobPlan.of_job(job))
    assert job_progress(folded, status="running").fraction == pytest.approx(folded.job_fraction)
    assert 0.4 < folded.job_fraction < 0.6


def test_fold_events_with_the_plan_gives_the_same_eta(tmp_path, monkeypatch):
    sim = SimJob()
    job = make_job(tmp_path / "job")
    tracker = ProgressTracker(JobDir(job).events, 3, [85.0, 65.0, 45.0])
    simulate(job, sim, monkeypatch, tracker)
    events = [json.loads(line) for line in JobDir(job).events.read_text().splitlines()]
    half = [e for e in events if e["t"] <= events[0]["t"] + 0.5 * (events[-1]["t"] - events[0]["t"])]
    from_file = ProgressTracker(None, 3, job_dir=job).feed(half)
    assert fold_events(half, 3, plan=JobPlan.of_job(job)).job_eta_s == pytest.approx(from_file.job_eta_s)
    assert from_file.job_eta_s is not None and "stage 1" in from_file.eta_basis


def test_without_a_plan_the_rounds_wait_for_their_first_measurement(tmp_path, monkeypatch):
    """No job.json (a bare events file): stage 1 cannot say how long the rounds take, so no
    whole-job ETA until the first round has timed its steps; then one."""
    sim = SimJob(stage1_steps=100, densify_until=50, round_steps=50, final=5.0)
    folder = tmp_path / "bare"
    folder.mkdir()
    tracker = ProgressTracker(JobDir(folder).events, 3)
    simulate(folder, sim, monkeypatch, tracker)
    events = [json.loads(line) for line in JobDir(folder).events.read_text().splitlines()]
    first_train = next(i for i, e in enumerate(events) if e.get("stage") == "round" and e["kind"] == "progress")
    assert fold_events(events[:first_train], 3).job_eta_s is None
    assert fold_events(events[:first_train + 2], 3).job_eta_s is not None


def test_a_diffusion_refiner_is_counted_once_its_edits_are_timed(tmp_path, monkeypatch):
    sim = SimJob(stage1_steps=200, densify_until=100, round_steps=50, edit=20.0, views=4, final=10.0)
    job = make_job(tmp_path / "job", {"stage1.iterations": 200, "stage1.densify_until": 100,
                                      "stage2.iterations_per_round": 50, "stage2.refiner": "flowedit"})
    tracker = ProgressTracker(JobDir(job).events, 3)
    simulate(job, sim, monkeypatch, tracker)
    events = [json.loads(line) for line in JobDir(job).events.read_text().splitlines()]
    first_round = next(i for i, e in enumerate(events) if e.get("stage") == "round")
    in_stage1 = fold_events(events[:first_round - 3], 3, plan=JobPlan.of_job(job))
    assert in_stage1.stage == "stage1" and in_stage1.job_eta_s is not None
    assert "diffusion edits are not timed yet" in in_stage1.eta_basis
    second_edit = [i for i, e in enumerate(events) if e.get("stage") == "refine"][1]
    p = fold_events(events[:second_edit + 1], 3, plan=JobPlan.of_job(job))
    t_end = events[-1]["t"]
    remaining = t_end - events[second_edit]["t"]
    assert abs(p.job_eta_s - remaining) / remaining <= TOLERANCE  # 12 edits x 20 s counted


def test_a_resumed_stage_1_is_timed_from_where_it_resumed(tmp_path):
    """A resumed stage 1 reports seconds since it resumed (at a checkpoint, step 500 here): its
    pace is timed between its own events, not from step 0."""
    t = 1_700_000_000.0
    events = [{"t": t, "kind": "stage", "stage": "stage1", "state": "start"}]
    events += [{"t": t + 7.5 * i, "kind": "progress", "stage": "stage1", "step": 500 + 25 * i, "total": 1500,
                "seconds": 7.5 * i} for i in (1, 2, 3)]
    plan = JobPlan(stage1_steps=1500, rounds=0)
    p = fold_events(events[:2], 0, plan=plan)
    assert p.job_eta_s is None  # one event: no pace yet
    p = fold_events(events, 0, plan=plan)
    pace = 7.5 / 25
    assert p.seconds_per_step == pytest.approx(pace)
    expected = (1500 - 575) * pace + (STAGE1_OUTPUTS_IN_STAGE1_STEPS + FINAL_IN_STAGE1_STEPS) * pace
    assert p.job_eta_s == pytest.approx(expected)
