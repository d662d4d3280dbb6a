"""What the pages know of jobs: folder-contract readers and one facade over the job runner.

The pages read a job's content (job.json, events.jsonl, rounds/, final/) straight from its folder
(the contract in DESIGN.md), and start/cancel/resume/clone/delete through :class:`Jobs`, which
delegates to ``skyfall_core.jobs.manager.JobManager`` (whose store is the authority on a job's
status).

Nothing here keeps module-level state; the one :class:`Jobs` instance lives in
``st.cache_resource`` (see :mod:`skyfall_core.ui.state`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from skyfall_core.jobfolder import (  # noqa: F401  (JobError, BrokenJobError, FINAL_FILES: for the pages)
    FINAL_FILES,
    BrokenJobError,
    JobDir,
    JobError,
    JobMeta,
    check_job_id,
    load_job,
    read_events,
)
from skyfall_core.jobs.progress import Progress, fold_events
from skyfall_core.ui.paths import job_folder

ACTIVE = ("queued", "running", "cancelling")  # the job store's statuses that will still change
RESUMABLE = ("interrupted", "cancelled", "failed")
# share of the whole run each stage is shown as taking in the overall bar until the whole-job ETA
# gives the share in time (rounds split theirs)
STAGE_WEIGHT = {"scene": 0.05, "stage1": 0.35, "round": 0.55, "final": 0.05}


# ----------------------------------------------------------------------------- reading a folder
@dataclass(frozen=True)
class StageProgress:
    key: str  # "scene", "stage1", "round_0", ..., "final"
    label: str
    state: str  # "pending" | "running" | "done"
    step: int = 0
    total: int = 0
    elevation: float | None = None

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        return min(1.0, self.step / self.total) if self.total else 0.0


@dataclass(frozen=True)
class JobProgress:
    """Everything the progress panel shows, from events.jsonl (and the runner's status)."""

    status: str  # the job store's status (queued, running, cancelling, done, failed, cancelled, interrupted)
    stages: tuple[StageProgress, ...]
    fraction: float  # 0..1 over the whole run: in time while the fold has a whole-job ETA, else by STAGE_WEIGHT
    current: str | None  # key of the running stage
    round: int | None
    rounds_total: int
    elevation: float | None
    eta_s: float | None  # seconds left in the current stage (from its measured pace)
    losses: tuple[dict[str, Any], ...]  # {"stage", "round", "step", "x", <loss names>...}
    warnings: tuple[str, ...]
    messages: tuple[str, ...]
    error: str | None
    timings: tuple[dict[str, Any], ...]  # the "timing" events
    updated: float | None  # unix time of the last event
    job_eta_s: float | None = None  # seconds left in the whole job (the job manager's estimate)
    eta_basis: str = ""  # how job_eta_s was estimated (the progress fold's words)


STAGE_LABELS = {"scene": "Scene & cameras", "stage1": "Stage 1 · fit to satellite views", "final": "Export"}


def summarise_events(events: list[dict[str, Any]], rounds_total: int, elevations: list[float] | None = None,
                     status: str | None = None) -> JobProgress:
    """A :class:`JobProgress` from a job's events, through the one fold
    (:func:`skyfall_core.jobs.progress.fold_events`). ``rounds_total`` and ``elevations`` come from
    the job's config; ``status`` (the job store's view) overrides the pipeline's own."""
    return job_progress(fold_events(events, rounds_total, elevations), status)


def job_progress(p: Progress, status: str | None = None) -> JobProgress:
    """What the progress panel shows, from the fold's :class:`Progress`."""
    own = p.pipeline_status or ("running" if p.events else "queued")
    final_status = status or own
    stages = []
    for row in p.stage_rows:
        label = STAGE_LABELS.get(row.key)
        if label is None and row.key.startswith("round_"):
            label = f"Round {int(row.key.split('_')[1]) + 1}" + (
                f" · {row.elevation:g}° elevation" if row.elevation is not None else "")
        stages.append(StageProgress(row.key, label or row.key, row.state, row.step, row.total, row.elevation))
    n_rounds = max(1, sum(1 for s in stages if s.key.startswith("round_")))
    frac = sum((STAGE_WEIGHT["round"] / n_rounds if s.key.startswith("round_") else STAGE_WEIGHT.get(s.key, 0.0))
               * s.fraction for s in stages)
    if final_status == "done":
        frac = 1.0
    elif final_status in ACTIVE and p.job_fraction is not None:
        frac = p.job_fraction  # in time, from the whole-job ETA: the bar and the ETA tell one story
    cur = next((r for r in p.stage_rows if r.key == p.current), None)
    eta = p.stage_eta_s if cur is not None else None  # the fold's (stage 1: its recent pace and plan)
    error = p.last_error
    if error is None and own == "failed":
        error = p.failed_text
    cur_round = int(p.current.split("_")[1]) if p.current and p.current.startswith("round_") else None
    return JobProgress(status=final_status, stages=tuple(stages), fraction=min(1.0, frac), current=p.current,
                       round=cur_round, rounds_total=len([s for s in stages if s.key.startswith("round_")]),
                       elevation=cur.elevation if cur is not None else None, eta_s=eta,
                       losses=tuple(p.loss_history), warnings=tuple(p.warnings), messages=tuple(p.messages),
                       error=error, timings=tuple(p.timings), updated=p.last_event_t,
                       job_eta_s=p.job_eta_s if final_status in ACTIVE else None,
                       eta_basis=(p.eta_basis or "") if final_status in ACTIVE else "")


# ----------------------------------------------------------------------------- rounds and outputs
@dataclass(frozen=True)
class RoundInfo:
    index: int  # k (0-based)
    elevation: float  # degrees
    dir: Path
    pairs: tuple[tuple[Path | None, Path | None], ...]  # (before, after) per view, NNN order
    cameras: dict[str, Any] | None


def list_rounds(folder: Path) -> list[RoundInfo]:
    """The round folders of a job with their before/after image pairs (in view order)."""
    out = []
    for d in JobDir(folder).round_dirs():
        k_text, e_text = d.name.split("_e", 1)
        names = sorted({p.name for sub in ("before", "after") for p in (d / sub).glob("[0-9]*.png")})
        pairs = tuple(((d / "before" / n) if (d / "before" / n).is_file() else None,
                       (d / "after" / n) if (d / "after" / n).is_file() else None) for n in names)
        cams = None
        if (d / "cameras.json").is_file():
            try:
                cams = json.loads((d / "cameras.json").read_text())
            except (OSError, json.JSONDecodeError):
                cams = None
        out.append(RoundInfo(int(k_text), float(e_text), d, pairs, cams))
    return out


# ----------------------------------------------------------------------------- the runner
class Jobs:
    """The one object the pages use for jobs (cached with ``st.cache_resource``).

    Actions and statuses go through :class:`skyfall_core.jobs.manager.JobManager` (the store is
    the authority on status); a job's content is read from its folder (the contract).
    """

    def __init__(self, cfg: Any, manager: Any = None):
        from skyfall_core.jobs.manager import JobManager

        self.cfg = cfg
        self.workspace = Path(cfg.workspace_root)
        self.manager = manager if manager is not None else JobManager(cfg)

    @classmethod
    def from_config(cls, cfg: Any, *, scheduler: bool = True) -> "Jobs":
        """A :class:`Jobs` whose manager starts queued jobs in a background thread (``scheduler``)."""
        jobs = cls(cfg)
        if scheduler:
            jobs.manager.start_scheduler()
        return jobs

    # --- reading
    def folder(self, job_id: str) -> Path:
        return job_folder(self.workspace, job_id)

    def ids(self) -> list[str]:
        """Job ids, newest first."""
        infos = self.manager.list()
        return [i.id for i in sorted(infos, key=lambda i: (i.created or "", i.id), reverse=True)]

    def record(self, job_id: str) -> Any:
        """The store's view of a job (status, error, attempt, ...): ``skyfall_core.jobs.manager.JobInfo``."""
        job_folder(self.workspace, job_id)
        return self.manager.get(job_id)

    def info(self, job_id: str) -> JobMeta:
        return load_job(self.folder(job_id))

    def progress(self, job_id: str) -> JobProgress:
        """The job's progress: the manager's incremental fold of events.jsonl, with the store's status."""
        rec = self.record(job_id)
        prog = job_progress(self.manager.progress(job_id), status=rec.status)
        if rec.error and not prog.error and rec.status in ("failed", "interrupted", "broken"):
            prog = replace(prog, error=rec.error)
        return prog

    def log(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        chunk = self.manager.logs(job_id, offset)
        return chunk.text, chunk.offset

    def log_tail(self, job_id: str, max_bytes: int = 20_000) -> str:
        size = self.manager.logs(job_id, 0, 1).size
        return self.manager.logs(job_id, max(0, size - max_bytes), max_bytes).text

    # --- actions (each raises a SkyfallError subclass naming the problem and the fix)
    def submit(self, name: str, aoi_geojson: dict[str, Any], scene_paths: list[str], preset: str,
               overrides: dict[str, Any], parent: str | None = None) -> str:
        return str(self.manager.submit(name, aoi_geojson, scene_paths, preset, overrides, parent=parent))

    def cancel(self, job_id: str) -> None:
        self.manager.cancel(check_job_id(job_id))

    def resume(self, job_id: str) -> None:
        self.manager.resume(check_job_id(job_id))

    def clone(self, job_id: str, overrides: dict[str, Any]) -> str:
        """A new job with the same AOI, scenes and stored settings plus ``overrides``; started."""
        return str(self.manager.clone(check_job_id(job_id), overrides))

    def delete(self, job_id: str) -> None:
        """Delete a job that is not running (the manager refuses a running one)."""
        self.manager.delete(check_job_id(job_id))


def check_overrides(cfg: Any, preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The job config the overrides give (validated exactly as a submit would); raises ConfigError."""
    from skyfall_core.config import apply_overrides

    return apply_overrides(cfg.resolved(preset), preset, overrides)


def age_text(iso: str) -> str:
    """'3 min ago' style text for an ISO 8601 time ('' when unparsable)."""
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return ""
    s = max(0.0, time.time() - t.timestamp())
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{int(s // n)} {unit} ago"
    return "just now"
