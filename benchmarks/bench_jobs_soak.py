"""Soak test of the job queue on the REAL pipeline: 20 tiny jobs, 5 cancelled and 3 killed
(SIGKILL) at random (seeded) moments; every job must end consistent with nothing lost.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_jobs_soak.py [--jobs 20 --cancel 5 --kill 3 --seed 6]

A victim is hit when its progress passes a random point (a stage, a round, a fraction of its
steps); one cancel hits a job still queued. Kills alternate between "the pipeline's process
group" (the host records ``interrupted``) and "host and pipeline together" (found by reconcile).
Killed jobs are resumed and must finish with all their rounds. Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skyfall_core.config import (  # noqa: E402
    JobsSettings,  # noqa: E402
    WorkspaceConfig,
    load_config,
)
from skyfall_core.jobs.integrity import check_job_files  # noqa: E402
from skyfall_core.jobs.local import process_alive  # noqa: E402
from skyfall_core.jobs.manager import JobManager  # noqa: E402
from skyfall_core.jobs.store import JobStore, rebuild_from_folders  # noqa: E402

TINY = {"stage1.iterations": 20, "stage2.iterations_per_round": 5, "stage2.elevations_deg": [85, 65, 45],
        "stage2.radii_m": [300, 275, 250], "cameras.max_image_size": 96}
ROUNDS = len(TINY["stage2.elevations_deg"])
STAGES = ("scene", "stage1", "round", "final")


@dataclass
class Victim:
    job: str
    action: str  # cancel | kill-pipeline | kill-all | cancel-queued
    target: tuple[int, int, float]  # (stage index, round, fraction of the stage's steps)
    hit: bool = False
    hit_at: str = ""  # where the job was when hit
    missed: bool = False  # the job had finished before its moment came


def position(p: Any) -> tuple[int, int, float] | None:
    if p.stage not in STAGES:
        return None
    return STAGES.index(p.stage), p.round or 0, p.fraction() or 0.0


def random_target(rng: random.Random) -> tuple[int, int, float]:
    stage = rng.choice([1, 2, 2, 2])  # stage1 or one of the rounds
    return stage, (rng.randrange(ROUNDS) if stage == 2 else 0), 0.8 * rng.random()


def run_soak(n_jobs: int = 20, n_cancel: int = 5, n_kill: int = 3, seed: int = 6, max_concurrent: int = 1,
             workspace: Path | None = None, command: Sequence[str] | None = None,
             timeout_s: float = 3_600) -> dict[str, Any]:
    """Run the soak; ``command`` replaces the pipeline (only to test this harness itself)."""
    rng = random.Random(seed)
    workspace = workspace or Path(tempfile.mkdtemp(prefix="skyfall-soak-"))
    cfg = load_config(REPO / "config.toml").model_copy(update={"workspace": WorkspaceConfig(root=workspace)})
    m = JobManager(cfg, settings=JobsSettings(max_concurrent=max_concurrent, cancel_timeout_s=60, kill_grace_s=5),
                   command=command)
    sample = REPO / "sample_aoi"
    scenes = sorted((sample / "scenes").glob("*.tif"))
    t0 = time.time()
    ids = [m.submit(f"soak {i:02d}", sample / "aoi.geojson", scenes, "preview", TINY) for i in range(n_jobs)]
    picks = rng.sample(range(1, n_jobs), n_cancel + n_kill)
    victims = {}
    for n, i in enumerate(picks):
        if n < n_cancel:
            action = "cancel-queued" if n == 0 else "cancel"
        else:
            action = "kill-pipeline" if (n - n_cancel) % 2 == 0 else "kill-all"
        victims[ids[i]] = Victim(ids[i], action, random_target(rng))
    resumed: list[str] = []

    while time.time() - t0 < timeout_s:
        m.pump()
        for v in victims.values():
            if v.hit or v.missed:
                continue
            info = m.get(v.job)
            if v.action == "cancel-queued":
                if info.status == "queued":
                    m.cancel(v.job)
                    v.hit, v.hit_at = True, "queued"
                continue
            if info.status in ("done", "failed", "cancelled"):
                v.missed = True
                continue
            if info.status != "running":
                continue
            pos = position(m.progress(v.job))
            if pos is None or pos < v.target:
                continue
            rec = m.record(v.job)
            if rec.child_pid is None:
                continue
            where = f"round {pos[1]}" if STAGES[pos[0]] == "round" else STAGES[pos[0]]
            v.hit, v.hit_at = True, f"{where} at {pos[2]:.0%}"
            if v.action == "cancel":
                m.cancel(v.job)
            else:
                os.killpg(rec.child_pid, signal.SIGKILL)
                if v.action == "kill-all":
                    os.kill(rec.pid, signal.SIGKILL)
        for v in victims.values():  # killed jobs: resume once they are seen interrupted
            if v.action.startswith("kill") and v.hit and v.job not in resumed and m.get(v.job).status == "interrupted":
                m.resume(v.job)
                resumed.append(v.job)
        if all(m.get(i).status in ("done", "failed", "cancelled") for i in ids) and \
                all(v.hit or v.missed for v in victims.values()):
            break
        time.sleep(0.05)
    wall = time.time() - t0
    return summarise(m, ids, victims, resumed, wall, workspace)


def summarise(m: JobManager, ids: list[str], victims: dict[str, Victim], resumed: list[str], wall: float,
              workspace: Path) -> dict[str, Any]:
    """Check every job and return the JSON summary (checks: name -> passed; failures listed)."""
    from skyfall_core.jobs.store import iso_to_unix

    failures: list[str] = []
    infos = {i.id: i for i in m.list()}
    recs = {i: m.record(i) for i in ids}
    expected: dict[str, tuple[str, ...]] = {}
    for i in ids:
        v = victims.get(i)
        # a cancel that lands after the pipeline's last step lets it finish (cancelling -> done)
        expected[i] = ("cancelled", "done") if v and v.action == "cancel" and v.hit else \
            ("cancelled",) if v and v.action == "cancel-queued" and v.hit else ("done",)
    for i in ids:
        if infos[i].status not in expected[i]:
            failures.append(f"{i}: {infos[i].status} (expected {expected[i]}): {infos[i].error}")
    folders = {i: m.store.folder(recs[i]) for i in ids}
    corrupt = [bad for i in ids for bad in _intact(folders[i])]
    failures += corrupt
    for i in ids:
        state = json.loads((folders[i] / "state.json").read_text()) if (folders[i] / "state.json").exists() else {}
        done_rounds = [k for k in range(ROUNDS) if f"round_{k}" in state.get("finished", [])]
        for k in done_rounds:
            rd = [d for d in (folders[i] / "rounds").glob(f"{k}_e*") if d.is_dir()]
            if len(rd) != 1 or not list(rd[0].glob("before/*.png")) or not list(rd[0].glob("after/*.png")):
                failures.append(f"{i}: finished round {k} lacks its before/after images")
        if infos[i].status == "done" and (len(done_rounds) != ROUNDS or "final" not in state.get("finished", [])):
            failures.append(f"{i}: done but finished = {state.get('finished')}")
    killed = [v.job for v in victims.values() if v.action.startswith("kill") and v.hit]
    for i in killed:
        if i not in resumed or recs[i].attempt < 2:
            failures.append(f"{i}: killed but not resumed (attempt {recs[i].attempt})")
    alive = [i for i, r in recs.items()
             if process_alive(r.pid, r.pid_start) or process_alive(r.child_pid, r.child_start)]
    failures += [f"{i}: a process is still alive" for i in alive]
    broken = [i for i in infos.values() if i.status == "broken" or i.problem]
    failures += [f"{b.id}: {b.error or b.problem}" for b in broken]
    n_folders = len([p for p in m.store.jobs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")])
    rebuilt_store = JobStore(workspace, workspace / "rebuilt.sqlite")
    rebuild_from_folders(workspace, rebuilt_store)
    rebuilt = {r.id: r.status for r in rebuilt_store.all()}
    mismatch = [i for i in ids if rebuilt.get(i) != recs[i].status]
    failures += [f"{i}: rebuilt from its folder as {rebuilt.get(i)}, store says {recs[i].status}" for i in mismatch]
    plain = [r for i, r in recs.items() if i not in victims and r.status == "done"]
    run_s = [iso_to_unix(r.finished) - iso_to_unix(r.started) for r in plain]
    counts: dict[str, int] = {}
    for i in ids:
        counts[infos[i].status] = counts.get(infos[i].status, 0) + 1
    checks = {
        "every_job_in_expected_state": all(infos[i].status in expected[i] for i in ids),
        "nothing_lost": len(recs) == len(ids) and n_folders == len(ids),
        "all_files_intact": not corrupt,
        "killed_jobs_resumed_to_done": all(infos[i].status == "done" and recs[i].attempt >= 2 for i in killed),
        "no_process_left": not alive,
        "no_broken_folder": not broken,
        "store_matches_folders": not mismatch,
    }
    return {
        "wall_s": round(wall, 1),
        "jobs": len(ids),
        "final_states": counts,
        "victims": [{"job": v.job, "action": v.action, "hit": v.hit, "hit_at": v.hit_at, "missed": v.missed,
                     "final": infos[v.job].status, "attempts": recs[v.job].attempt} for v in victims.values()],
        "resumed": len(resumed),
        "cancels_that_landed_after_the_last_step": sum(
            1 for v in victims.values() if v.action == "cancel" and infos[v.job].status == "done"),
        "mean_undisturbed_job_s": round(sum(run_s) / len(run_s), 2) if run_s else None,
        "checks": checks,
        "passed": not failures and all(checks.values()),
        "failures": failures[:50],
        "workspace": str(workspace),
    }


def _intact(folder: Path) -> list[str]:
    """Problems with the files of a job folder (empty when every file is readable)."""
    return check_job_files(folder)[1]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20)
    p.add_argument("--cancel", type=int, default=5)
    p.add_argument("--kill", type=int, default=3)
    p.add_argument("--seed", type=int, default=6)
    p.add_argument("--max-concurrent", type=int, default=1)
    p.add_argument("--workspace", type=Path, help="default: a new temporary folder (kept for inspection)")
    args = p.parse_args(argv)
    summary = run_soak(args.jobs, args.cancel, args.kill, args.seed, args.max_concurrent, args.workspace)
    print(json.dumps(summary, indent=2))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
