"""ETA accuracy of a real job (issue 17): how far the whole-job ETA is from the real remaining time.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_eta.py [--preset preview] [--set key=value ...]
        [--baseline-rev REV] [--poll 1.5] [--out FOLDER] [--json RESULT.json]
    PYTHONPATH=. .venv/bin/python benchmarks/bench_eta.py --replay RESULT.json [--baseline-rev REV]

Runs a real job on the bundled sample (``sample_aoi/``) with ``python -m skyfall_core run`` in
its own process, as the job runners do, and polls its ``events.jsonl`` every ``--poll`` seconds
through the same :class:`~skyfall_core.jobs.progress.ProgressTracker` the app's job manager uses
(``ProgressTracker(events, rounds_total, elevations)``). Each poll records the elapsed time, the
tracker's ``job_eta_s``, its whole-job fraction when it has one (``job_fraction``), and what the
app shows: the "Overall" bar (``ui.jobs.job_progress(...).fraction``) and the "ETA (whole job)"
metric (``ui.widgets.whole_job_eta``, which falls back on its own guess while ``job_eta_s`` is
None); the app's columns use the UI code of the working tree, whichever fold fed it.

At the end, with the real end time known, the ETA error at a poll is
``(ETA - real remaining) / real remaining`` (real remaining = job end - poll time; the ETA as the
poll read it). It is reported at 25/50/75 % of the job's wall time and at the polls where the
tracker's fraction and the app's bar first reach 50 %. ``--baseline-rev`` folds the same polls
with ``skyfall_core/jobs/progress.py`` as it was at a git revision (the estimator before a
change), in the same run. ``--replay`` re-folds a saved run's events at its recorded poll times
with the estimator of the working tree (no new job).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skyfall_core.jobfolder import JobDir, load_job, read_events  # noqa: E402
from skyfall_core.jobs import progress as current_progress  # noqa: E402

WALL_POINTS = (0.25, 0.5, 0.75)
TOLERANCE = 0.30


# ------------------------------------------------------------------------------ estimators
def progress_module_at(rev: str) -> types.ModuleType:
    """``skyfall_core/jobs/progress.py`` as it was at git revision ``rev``, as a module of its own."""
    src = subprocess.run(["git", "show", f"{rev}:skyfall_core/jobs/progress.py"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout
    name = f"_progress_at_{rev.replace('~', '_').replace('^', '_')}"
    spec = importlib.util.spec_from_loader(name, loader=None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up
    exec(compile(src, f"{rev}:skyfall_core/jobs/progress.py", "exec"), mod.__dict__)
    return mod


def make_tracker(mod: types.ModuleType, job: Path, *, in_memory: bool = False):
    """The tracker the job manager makes for this job (events path, rounds_total, elevations)."""
    meta = load_job(job)
    path = None if in_memory else JobDir(job).events
    tracker = mod.ProgressTracker(path, meta.rounds_total, meta.elevations)
    if in_memory and hasattr(tracker, "job_dir"):
        tracker.job_dir = job  # where a tracker without a path finds the job's plan (job.json)
    return tracker


def app_view(p: Any, iterations_per_round: int | None) -> tuple[float, float | None]:
    """(the app's "Overall" bar, the app's "ETA (whole job)") for a running job's Progress."""
    import logging

    import streamlit  # noqa: F401  (its loggers exist now: quiet them; no Streamlit runtime here)

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("streamlit"):
            logging.getLogger(name).setLevel(logging.ERROR)
    from skyfall_core.ui.jobs import job_progress
    from skyfall_core.ui.widgets import whole_job_eta

    for name in ("job_fraction", "eta_basis"):  # a fold from before issue 17 lacks them
        if not hasattr(p, name):
            setattr(p, name, None)
    jp = job_progress(p, status="running")
    return jp.fraction, whole_job_eta(jp, iterations_per_round)[0]


def sample_poll(t: float, t0: float, p: Any, ipr: int | None) -> dict[str, Any]:
    frac, app_eta = app_view(p, ipr)
    job_fraction = getattr(p, "job_fraction", None)
    return {"t": t, "elapsed": round(t - t0, 2), "load": round(os.getloadavg()[0], 2), "stage": p.current or p.stage,
            "step": p.step, "total": p.total,
            "last_event_t": p.last_event_t, "job_eta_s": p.job_eta_s, "stage_eta_s": p.stage_eta_s,
            "job_fraction": job_fraction() if callable(job_fraction) else job_fraction,
            "app_fraction": round(frac, 4), "app_eta_s": app_eta}


# ------------------------------------------------------------------------------ the live run
def run_live(args: argparse.Namespace, estimators: dict[str, types.ModuleType]) -> dict[str, Any]:
    from skyfall_core.cli import _parse_overrides
    from skyfall_core.config import load_config
    from skyfall_core.geo.aoi import load_aoi
    from skyfall_core.pipeline.run import create_job

    sample = REPO / "sample_aoi"
    cfg = load_config(REPO / "config.toml")
    out = Path(args.out or tempfile.mkdtemp(prefix="skyfall-eta-")) / "job"
    overrides = _parse_overrides(args.set)
    job = create_job(out, cfg=cfg, preset=args.preset, aoi=load_aoi(sample / "aoi.geojson", cfg.aoi).to_geojson(),
                     scenes=sorted(str(p) for p in (sample / "scenes").glob("*.tif")), name="bench eta",
                     overrides=overrides, job_id=out.name)
    meta = load_job(job.root)
    ipr = meta.stage2.get("iterations_per_round")
    trackers = {name: make_tracker(mod, job.root) for name, mod in estimators.items()}
    polls: dict[str, list[dict[str, Any]]] = {name: [] for name in estimators}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    next_report = 0.0
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "skyfall_core", "run", str(job.root)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cpu: list[tuple[float, float, str | None]] = []  # (t, the job's CPU seconds, running stage)
    while True:
        done = proc.poll() is not None
        t = time.time()
        for name, tr in trackers.items():
            polls[name].append(sample_poll(t, t0, tr.update(), ipr))
        if not done:
            cpu.append((t, cpu_seconds(proc.pid), polls[next(iter(polls))][-1]["stage"]))
        if done:
            break
        last = polls[next(iter(polls))][-1]
        if last["elapsed"] >= next_report:
            next_report += 30.0
            print(f"{last['elapsed']:7.1f} s  {last['stage'] or '-':>8}  job ETA {_fmt(last['job_eta_s'])}  "
                  f"app ETA {_fmt(last['app_eta_s'])}", file=sys.stderr, flush=True)
        time.sleep(args.poll)
    if proc.returncode != 0:
        raise SystemExit(f"the job failed (exit {proc.returncode}): {proc.stderr.read()[-2000:]}")
    return {"job": str(job.root), "preset": args.preset, "overrides": overrides, "t_start": t0,
            "t_end": job_end(job.root, fallback=time.time()), "polls": polls, "cpu": cpu}


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of a process and its waited-for children so far (/proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def stage_cpu(cpu: list[list[Any]]) -> dict[str, float]:
    """CPU seconds of the job in each stage (between the polls that saw it running)."""
    out: dict[str, float] = {}
    for (_, c0, st), (_, c1, _) in zip(cpu, cpu[1:]):
        if st and c1 == c1 and c0 == c0:
            out[st] = round(out.get(st, 0.0) + c1 - c0, 2)
    return out


def job_end(job: Path, fallback: float) -> float:
    """Unix time of the pipeline's last "status done" event (the job's real end)."""
    events, _ = read_events(JobDir(job).events)
    ends = [e["t"] for e in events if e.get("kind") == "status" and e.get("status") == "done"]
    return float(ends[-1]) if ends else fallback


def replay(result: dict[str, Any], estimators: dict[str, types.ModuleType]) -> dict[str, list[dict[str, Any]]]:
    """Fold the saved job's events at the recorded poll times (events with t <= the poll)."""
    job = Path(result["job"])
    events, _ = read_events(JobDir(job).events)
    ipr = load_job(job).stage2.get("iterations_per_round")
    times = [p["t"] for p in next(iter(result["polls"].values()))]
    out: dict[str, list[dict[str, Any]]] = {}
    for name, mod in estimators.items():
        tr, i, rows = make_tracker(mod, job, in_memory=True), 0, []
        for t in times:
            j = i
            while j < len(events) and events[j].get("t", 0) <= t:
                j += 1
            p = tr.feed(events[i:j])
            i = j
            rows.append(sample_poll(t, result["t_start"], p, ipr))
        out[name] = rows
    return out


# ------------------------------------------------------------------------------ the figures
def error_at(poll: dict[str, Any], t_end: float, key: str) -> float | None:
    remaining = t_end - poll["t"]
    eta = poll.get(key)
    if eta is None or remaining <= 0:
        return None
    return (eta - remaining) / remaining


def evaluate(polls: list[dict[str, Any]], t_start: float, t_end: float) -> list[dict[str, Any]]:
    """One row per point: wall 25/50/75 %, tracker fraction 50 %, app bar 50 %."""
    wall = t_end - t_start
    points: list[tuple[str, dict[str, Any] | None]] = []
    for f in WALL_POINTS:
        target = t_start + f * wall
        before = [p for p in polls if p["t"] <= target]
        points.append((f"wall {f:.0%}", before[-1] if before else None))
    for key, label in (("job_fraction", "tracker fraction 50%"), ("app_fraction", "app bar 50%")):
        hit = next((p for p in polls if isinstance(p.get(key), (int, float)) and p[key] >= 0.5), None)
        if hit is not None or key == "app_fraction":
            points.append((label, hit))
    rows = []
    for label, p in points:
        if p is None:
            rows.append({"point": label, "missing": True})
            continue
        remaining = t_end - p["t"]
        rows.append({"point": label, "elapsed_s": round(p["t"] - t_start, 1),
                     "wall_fraction": round((p["t"] - t_start) / wall, 3),
                     "stage": p["stage"], "remaining_s": round(remaining, 1), "job_eta_s": _r(p["job_eta_s"]),
                     "job_eta_error": _r(error_at(p, t_end, "job_eta_s"), 3), "app_eta_s": _r(p["app_eta_s"]),
                     "app_eta_error": _r(error_at(p, t_end, "app_eta_s"), 3),
                     "job_fraction": _r(p.get("job_fraction"), 3), "app_fraction": p["app_fraction"]})
    return rows


def summary_errors(polls: list[dict[str, Any]], t_end: float) -> dict[str, Any]:
    """Over every poll of the running job (remaining >= 5 s): share of polls with an ETA, and
    within ±30 %; median and max |error|."""
    out = {}
    live = [p for p in polls if t_end - p["t"] >= 5.0]
    for key in ("job_eta_s", "app_eta_s"):
        errs = [abs(e) for e in (error_at(p, t_end, key) for p in live) if e is not None]
        out[key] = {"polls": len(live), "with_eta": len(errs),
                    "within_30pct": sum(e <= TOLERANCE for e in errs),
                    "median_abs_error": _r(sorted(errs)[len(errs) // 2], 3) if errs else None,
                    "max_abs_error": _r(max(errs), 3) if errs else None}
    return out


def stage_times(job: Path) -> dict[str, float]:
    """Wall seconds of each stage, from its start/done events."""
    events, _ = read_events(JobDir(job).events)
    start: dict[str, float] = {}
    out: dict[str, float] = {}
    for e in events:
        if e.get("kind") != "stage":
            continue
        key = current_progress.stage_key(e)
        if e.get("state") == "start":
            start[key] = e["t"]
        elif e.get("state") == "done" and key in start:
            out[key] = round(e["t"] - start[key], 2)
    return out


def calibration(result: dict[str, Any]) -> dict[str, Any]:
    """The job's costs in stage-1 steps at stage 1's last pace (the units of the ETA's priors in
    progress.py), from the events' wall times and, where the polls sampled it, the job's CPU time."""
    events, _ = read_events(JobDir(Path(result["job"])).events)
    s1 = [(e["step"], e["seconds"], e["t"]) for e in events if e.get("kind") == "progress"
          and e.get("stage") == "stage1" and isinstance(e.get("seconds"), (int, float))]
    if len(s1) < 2:
        return {}
    last = s1[-1]
    base = next((x for x in reversed(s1) if last[0] - x[0] >= current_progress.RECENT_STEPS), s1[0])
    pace = (last[1] - base[1]) / (last[0] - base[0])
    timing = {(e.get("stage"), e.get("round")): e for e in events if e.get("kind") == "timing"}
    stage_s = stage_times(Path(result["job"]))
    out: dict[str, Any] = {"stage1_pace_s": round(pace, 4)}
    if ("stage1", None) in timing:
        out["stage1_outputs_in_steps"] = round((timing[("stage1", None)]["seconds"] - last[1]) / pace, 1)
    if "final" in stage_s:
        out["final_in_steps"] = round(stage_s["final"] / pace, 1)
    rounds = [(e["train_s"], k) for (st, k), e in timing.items() if st == "round"]
    steps = load_job(Path(result["job"])).stage2.get("iterations_per_round")
    if rounds and steps:
        out["round_step_in_steps"] = round(sum(t for t, _ in rounds) / len(rounds) / steps / pace, 3)
    cpu, polls = result.get("cpu") or [], next(iter(result["polls"].values()))
    s1_cpu = [(polls[i]["step"], c[1]) for i, c in enumerate(cpu)
              if i < len(polls) and c[2] == "stage1" and polls[i]["step"] is not None]
    if len(s1_cpu) >= 2:
        hi = s1_cpu[-1]
        lo = next((x for x in s1_cpu if hi[0] - x[0] <= current_progress.RECENT_STEPS), s1_cpu[0])
        if hi[0] > lo[0]:
            cpu_pace = (hi[1] - lo[1]) / (hi[0] - lo[0])
            out["stage1_cpu_pace_s"] = round(cpu_pace, 4)
            sc = stage_cpu(cpu)
            if "final" in sc:
                out["final_cpu_in_steps"] = round(sc["final"] / cpu_pace, 1)
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                      .stdout.splitlines() if ln.startswith("Model name")), "")
    except OSError:
        pass
    return {"cpu": model or platform.processor(), "cores": os.cpu_count(), "loadavg": os.getloadavg(),
            "python": platform.python_version()}


def _r(v: Any, nd: int = 1) -> Any:
    return round(float(v), nd) if isinstance(v, (int, float)) else None


def _fmt(v: Any) -> str:
    return f"{v:7.1f} s" if isinstance(v, (int, float)) else "   none  "


def _pct(v: Any) -> str:
    return f"{100 * v:+.1f} %" if isinstance(v, (int, float)) else "no ETA"


def print_table(name: str, rows: list[dict[str, Any]]) -> None:
    print(f"\nestimator: {name}")
    print(f"{'point':<22} {'elapsed s':>9} {'stage':>8} {'real left s':>11} {'job_eta_s':>10} {'error':>9} "
          f"{'app ETA s':>10} {'app error':>10} {'fraction':>8} {'app bar':>7}")
    for r in rows:
        if r.get("missing"):
            print(f"{r['point']:<22} (never reached)")
            continue
        print(f"{r['point']:<22} {r['elapsed_s']:>9.1f} {str(r['stage']):>8} {r['remaining_s']:>11.1f} "
              f"{_fmt(r['job_eta_s']):>10} {_pct(r['job_eta_error']):>9} {_fmt(r['app_eta_s']):>10} "
              f"{_pct(r['app_eta_error']):>10} {r['job_fraction'] if r['job_fraction'] is not None else '-':>8} "
              f"{r['app_fraction']:>7.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="preview")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeatable)")
    ap.add_argument("--poll", type=float, default=1.5, help="seconds between polls of the events")
    ap.add_argument("--out", help="folder for the job (default: a new temporary folder, kept)")
    ap.add_argument("--baseline-rev", help="also fold the polls with progress.py at this git revision")
    ap.add_argument("--replay", help="re-fold a saved result's job (its --json output) instead of running one")
    ap.add_argument("--json", help="write the polls and figures here")
    args = ap.parse_args(argv)

    estimators = {"working tree": current_progress}
    if args.baseline_rev:
        estimators[f"at {args.baseline_rev}"] = progress_module_at(args.baseline_rev)
    mach = machine()
    if args.replay:
        result = json.loads(Path(args.replay).read_text())
        result["polls"] = replay(result, estimators)
        result["replayed_from"] = args.replay
    else:
        result = run_live(args, estimators)
    mach["loadavg_end"] = os.getloadavg()
    t0, t1 = result["t_start"], result["t_end"]
    job = Path(result["job"])
    result.update(machine=mach, wall_s=round(t1 - t0, 1), stage_s=stage_times(job), command=" ".join(sys.argv),
                  stage_cpu_s=stage_cpu(result.get("cpu") or []),
                  calibration=calibration(result),
                  figures={name: evaluate(polls, t0, t1) for name, polls in result["polls"].items()},
                  summary={name: summary_errors(polls, t1) for name, polls in result["polls"].items()})
    loads = [p["load"] for p in next(iter(result["polls"].values())) if "load" in p]
    if loads and not args.replay:
        mach["load_during"] = [min(loads), round(sorted(loads)[len(loads) // 2], 2), max(loads)]
    print(f"machine: {mach['cpu']}, {mach['cores']} cores, load {mach['loadavg'][0]:.2f} -> "
          f"{mach['loadavg_end'][0]:.2f}" + (" (1-min load during the job: min/median/max %s)"
                                             % mach["load_during"] if "load_during" in mach else ""))
    print(f"job {job}: preset {result['preset']} {result.get('overrides') or ''}, wall {result['wall_s']} s; "
          f"stages {result['stage_s']}")
    print(f"CPU seconds by stage: {result['stage_cpu_s']}")
    print(f"costs in stage-1 steps at stage 1's last pace: {result['calibration']}")
    for name, rows in result["figures"].items():
        print_table(name, rows)
        s = result["summary"][name]["job_eta_s"]
        print(f"  all polls: {s['with_eta']}/{s['polls']} with a job_eta_s, {s['within_30pct']} within ±30 %, "
              f"median |error| {_pct(s['median_abs_error'])}, max {_pct(s['max_abs_error'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
