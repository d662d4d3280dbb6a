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
from skyfall_core.ui.paths import job_folder

ACTIVE = ("queued", "running", "cancelling")  # the job store's statuses that will still change
RESUMABLE = ("interrupted", "cancelled", "failed")
# share of the whole run each stage is shown as taking (for one overall bar; rounds split theirs)
STAGE_WEIGHT = {"scene": 0.05, "stage1": 0.35, "round": 0.55, "final": 0.05}


# ----------------------------------------------------------------------------- reading a folder
def read_job(folder: Path) -> JobMeta:
    """The :class:`JobMeta` of a job folder. Raises :class:`BrokenJobError` naming job.json if unreadable."""
    return load_job(folder)


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
    fraction: float  # 0..1 over the whole run (weighted by STAGE_WEIGHT)
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


ROUND_SUBSTAGES = ("round", "refine")  # events of one stage-2 round: its training steps and its refiner edits


def _stage_key(ev: dict[str, Any]) -> str:
    if ev.get("stage") in ROUND_SUBSTAGES:
        return f"round_{int(ev.get('round') or 0)}"
    return str(ev.get("stage"))


def summarise_events(events: list[dict[str, Any]], rounds_total: int, elevations: list[float] | None = None,
                     status: str | None = None) -> JobProgress:
    """Fold a job's events into a :class:`JobProgress`.

    ``rounds_total`` and ``elevations`` come from the job's config; ``status`` (the job store's
    view) overrides the pipeline's own "status" events when given.
    """
    elevations = list(elevations or [])
    keys = ["scene", "stage1"] + [f"round_{k}" for k in range(rounds_total)] + ["final"]
    state = {k: "pending" for k in keys}
    step = {k: 0 for k in keys}
    total = {k: 0 for k in keys}
    elev: dict[str, float | None] = {f"round_{k}": (elevations[k] if k < len(elevations) else None)
                                     for k in range(rounds_total)}
    seconds: dict[str, float] = {}
    losses: list[dict[str, Any]] = []
    warnings: list[str] = []
    messages: list[str] = []
    timings: list[dict[str, Any]] = []
    error = None
    own_status = "queued"
    current = None
    x_offset: dict[str, int] = {}
    updated = None
    for ev in events:
        kind = ev.get("kind")
        updated = ev.get("t", updated)
        if kind in ("stage", "progress", "timing"):
            key = _stage_key(ev)
            if key not in state:  # a round beyond the configured schedule: show it anyway
                keys.insert(len(keys) - 1, key)
                state[key], step[key], total[key] = "pending", 0, 0
            if ev.get("elevation") is not None:
                elev[key] = float(ev["elevation"])
        if kind != "status" and own_status == "queued":
            own_status = "running"
        if kind == "stage":
            if ev.get("state") == "start":
                state[key] = "running"
                current = key
            elif ev.get("state") == "done":
                state[key] = "done"
                step[key] = max(step[key], total[key])
                if current == key:
                    current = None
        elif kind == "progress":
            if state[key] == "pending":
                state[key] = "running"
            current = key if state[key] == "running" else current
            step[key], total[key] = int(ev.get("step") or 0), int(ev.get("total") or 0)
            if ev.get("seconds") is not None:
                seconds[key] = float(ev["seconds"])
            if key not in x_offset:
                x_offset[key] = sum(total[k] for k in x_offset)
            values = {k: float(v) for k, v in (ev.get("losses") or {}).items() if isinstance(v, (int, float))}
            if values:  # the refiner's progress (edits done) carries no losses
                losses.append({"stage": ev.get("stage"), "round": ev.get("round"), "step": step[key],
                               "x": x_offset[key] + step[key], **values})
        elif kind == "timing":
            timings.append(ev)
        elif kind == "warning":
            warnings.append(str(ev.get("text", "")))
        elif kind == "message":
            messages.append(str(ev.get("text", "")))
        elif kind == "error":
            error = str(ev.get("text", ""))
        elif kind == "status":
            own_status = str(ev.get("status") or own_status)
            if own_status == "failed" and ev.get("text"):
                error = error or str(ev["text"])
    final_status = status or own_status
    stages = []
    for k in keys:
        label = {"scene": "Scene & cameras", "stage1": "Stage 1 · fit to satellite views",
                 "final": "Export"}.get(k)
        if label is None and k.startswith("round_"):
            e = elev.get(k)
            label = f"Round {int(k.split('_')[1]) + 1}" + (f" · {e:g}° elevation" if e is not None else "")
        elif label is None:  # a stage this app does not know yet: show it by name
            label = k
        stages.append(StageProgress(k, label, state[k], step[k], total[k], elev.get(k)))
    frac = 0.0
    n_rounds = max(1, sum(1 for k in keys if k.startswith("round_")))
    for s in stages:
        w = STAGE_WEIGHT["round"] / n_rounds if s.key.startswith("round_") else STAGE_WEIGHT.get(s.key, 0.0)
        frac += w * s.fraction
    if final_status == "done":
        frac = 1.0
    eta = None
    if current is not None and step[current] > 0 and current in seconds and total[current] > step[current]:
        eta = seconds[current] / step[current] * (total[current] - step[current])
    cur_round = int(current.split("_")[1]) if current and current.startswith("round_") else None
    return JobProgress(status=final_status, stages=tuple(stages), fraction=min(1.0, frac), current=current,
                       round=cur_round, rounds_total=rounds_total,
                       elevation=elev.get(current) if current else None, eta_s=eta,
                       losses=tuple(losses), warnings=tuple(warnings), messages=tuple(messages),
                       error=error, timings=tuple(timings), updated=updated)


def rounds_total_of(info: JobMeta) -> int:
    """Number of stage-2 rounds: state.json's count when the pipeline wrote one, else the schedule."""
    return info.rounds_total


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


def final_outputs(folder: Path) -> dict[str, Path]:
    """The files of final/ that exist, by key of :data:`FINAL_FILES`."""
    return JobDir(folder).final_outputs()


def web_splat(folder: Path) -> tuple[Path, str] | None:
    """(file, viewer format) of the splat to show in the browser: .spz, else compressed PLY, else PLY."""
    return JobDir(folder).web_splat()


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
        return read_job(self.folder(job_id))

    def progress(self, job_id: str) -> JobProgress:
        info = self.info(job_id)
        rec = self.record(job_id)
        events, _ = read_events(JobDir(info.dir).events)
        prog = summarise_events(events, rounds_total_of(info), info.elevations, status=rec.status)
        if rec.error and not prog.error and rec.status in ("failed", "interrupted", "broken"):
            prog = replace(prog, error=rec.error)
        if prog.status in ACTIVE:
            eta = self.manager.progress(job_id).job_eta_s
            if eta is not None:
                prog = replace(prog, job_eta_s=float(eta))
        return prog

    def log(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        chunk = self.manager.logs(job_id, offset)
        return chunk.text, chunk.offset

    def log_tail(self, job_id: str, max_bytes: int = 20_000) -> str:
        size = self.manager.logs(job_id, 0, 1).size
        return self.manager.logs(job_id, max(0, size - max_bytes), max_bytes).text

    # --- actions (each raises a SkyfallError subclass naming the problem and the fix)
    def submit(self, name: str, aoi_geojson: dict[str, Any], scene_paths: list[str], preset: str,
               overrides: dict[str, Any]) -> str:
        return str(self.manager.submit(name, aoi_geojson, scene_paths, preset, overrides))

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
