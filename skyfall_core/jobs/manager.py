"""The job manager: submit, cancel, resume, clone, delete, list and follow reconstruction jobs.

One ``JobManager`` per app (``st.cache_resource``) or CLI call. The jobs themselves run in
detached processes (:mod:`skyfall_core.jobs.local`), so they survive the app's reruns and
restarts; the manager only reads and writes the store and the job folders, and starts hosts for
queued jobs (:meth:`JobManager.pump`, also run by :meth:`JobManager.start_scheduler`).
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
import platform
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from skyfall_core.atomic import write_json
from skyfall_core.config import JobsSettings, apply_overrides
from skyfall_core.errors import ConfigError
from skyfall_core.jobfolder import CANCEL_FILE, JobDir, check_job_id
from skyfall_core.jobs.local import (
    cancel_deadline,
    hostname,
    process_alive,
    signal_group,
    spawn_host,
    start_queued,
)
from skyfall_core.jobs.progress import Progress, ProgressTracker
from skyfall_core.jobs.store import (
    ACTIVE,
    RESUMABLE,
    BrokenJobError,
    JobError,
    JobRecord,
    JobStateError,
    JobStore,
    export_to_folder,
    iso_to_unix,
    read_job_json,
    record_from_folder,
    state_fix,
    utc_now,
)

LOG = logging.getLogger(__name__)
FINAL = ("done", "failed", "cancelled", "interrupted")
UNSTARTED_GRACE_S = 30.0  # a claimed job whose host has not reported its pid after this is interrupted
LEFTOVER_AGE_S = 60.0  # .new-*/.trash-* folders older than this are removed by reconcile


@dataclass(frozen=True)
class JobInfo:
    """What the app and the CLI show for a job."""

    id: str
    name: str
    status: str  # a store status, or "broken" (folder or job.json missing/unreadable)
    created: str | None
    started: str | None
    finished: str | None
    preset: str | None
    parent: str | None
    stage: str | None
    round: int | None
    rounds_total: int | None
    runner: str | None
    host: str | None
    attempt: int
    error: str | None  # why it failed / was interrupted / is broken (names the file and the fix)
    problem: str | None  # a non-fatal issue with the folder (e.g. unreadable events.jsonl lines)
    folder: str
    overrides: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LogChunk:
    text: str
    offset: int  # pass it back to read on from here
    size: int  # the log's size now


class JobManager:
    """Submit and control jobs of one workspace (``config.workspace_root``)."""

    def __init__(self, config: Any, *, settings: JobsSettings | None = None,
                 command: Sequence[str] | None = None, reconcile: bool = True):
        """``command``: an argv template with ``{job_dir}``/``{python}`` run instead of the pipeline
        (queue tests only); default ``python -m skyfall_core run {job_dir}``."""
        self.config = config
        self.settings = settings or getattr(config, "jobs", None) or JobsSettings()
        self.workspace = Path(config.workspace_root)
        store_path = config.resolve_path(self.settings.store) if self.settings.store else None
        self.store = JobStore(self.workspace, store_path)
        self.store.set_meta("settings", self.settings.model_dump_json())
        self.command = list(command) if command else None
        self._lock = threading.RLock()
        self._trackers: dict[str, ProgressTracker] = {}
        self._job_json_cache: dict[str, tuple[tuple[int, int], str | None]] = {}
        self._handles: list[Any] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if reconcile:
            self.reconcile()

    @classmethod
    def from_config(cls, config: Any) -> "JobManager":
        """The app's manager: reconciled, with the background scheduler running."""
        manager = cls(config)
        manager.start_scheduler()
        return manager

    # ------------------------------------------------------------------------ submitting
    def submit(self, name: str, aoi_geojson: Any, scene_paths: Sequence[str | Path], preset: str,
               overrides: Mapping[str, Any] | None = None, *, start: bool = True, parent: str | None = None) -> str:
        """Queue a new job; returns its id. Validates everything first (AOI, scenes, preset, overrides).
        ``parent``: the job this one was cloned from (and edited on the Reconstruct page), if any.

        ``aoi_geojson``: a GeoJSON mapping, text or file path (WGS84 polygon). ``overrides``: dotted
        keys of the preset (``stage2.elevations_deg``) or of a global section (``device.compute``).
        """
        from skyfall_core.geo.aoi import load_aoi

        name = _check_name(name)
        aoi = load_aoi(aoi_geojson, self.config.aoi).to_geojson()
        scenes = _check_scenes(scene_paths)
        overrides = dict(overrides or {})
        config = apply_overrides(self.config.resolved(preset), preset, overrides)
        if parent is not None:
            self.store.require(check_job_id(parent))
        return self._create(name, aoi, scenes, preset, config, overrides, parent=parent, start=start)

    def clone(self, job_id: str, overrides: Mapping[str, Any] | None = None, *, name: str | None = None,
              start: bool = True) -> str:
        """A new job with the same AOI, scenes and settings as ``job_id`` plus ``overrides``.

        The base is the parent's stored config (not today's config.toml), so that two clones differ
        only by what you override, e.g. ``{"stage2.elevations_deg": [80, 60, 40], ...}``.
        """
        parent = self.store.require(job_id)
        new = dict(overrides or {})
        config = apply_overrides(parent.config, parent.preset, new)
        merged = {**parent.overrides, **new}
        return self._create(_check_name(name or f"{parent.name} (clone)"), parent.aoi, parent.scenes,
                            parent.preset, config, merged, parent=parent.id, start=start)

    def _create(self, name: str, aoi: dict[str, Any], scenes: list[str], preset: str, config: dict[str, Any],
                overrides: dict[str, Any], *, parent: str | None, start: bool) -> str:
        job_id = _new_job_id(name)
        now = utc_now()
        rec = JobRecord(id=job_id, name=name, status="queued", created=now, queued=now, aoi=aoi, scenes=scenes,
                        preset=preset, config=config, overrides=overrides, parent=parent,
                        folder=f"jobs/{job_id}", runner=self.settings.runner, command=self.command,
                        extra={"versions": _versions(), "warnings": []})
        final = self.store.folder(rec)
        tmp = final.with_name(f".new-{job_id}")
        tmp.mkdir(parents=True)
        write_json(JobDir(tmp).job_json, rec.job_json())
        tmp.rename(final)  # the folder appears complete or not at all
        self.store.insert(rec)
        if start:
            self.pump()
        return job_id

    # ----------------------------------------------------------------------- controlling
    def cancel(self, job_id: str, timeout_s: float | None = None, *, wait: bool = False) -> JobInfo:
        """Ask a job to stop. A queued/interrupted job is cancelled at once; a running one gets a
        ``cancel.request`` (it stops between steps, keeping its finished rounds) and, after
        ``timeout_s`` (default ``[jobs] cancel_timeout_s``), SIGTERM then SIGKILL (or ``ray.cancel``)."""
        timeout = self.settings.cancel_timeout_s if timeout_s is None else float(timeout_s)
        rec = self.store.require(job_id)
        if rec.status in ("queued", "interrupted"):
            if self.store.transition(job_id, "cancelled", expect=(rec.status,), strict=False,
                                     finished=utc_now(), error=f"cancelled while {rec.status}"):
                return self.get(job_id)
            rec = self.store.require(job_id)  # it started meanwhile
        if rec.status in ("done", "failed", "cancelled"):
            raise JobStateError(f"job {job_id} is already {rec.status}", fix=state_fix(rec.status))
        if rec.status == "running":
            write_json(self.store.folder(rec) / CANCEL_FILE,
                       {"requested": time.time(), "timeout_s": timeout, "by": "user"})
            self.store.transition(job_id, "cancelling", expect=("running",), strict=False)
        if wait:
            self._wait_cancelled(job_id, time.time() + timeout + self.settings.kill_grace_s + 15.0)
        return self.get(job_id)

    def _wait_cancelled(self, job_id: str, hard_deadline: float) -> None:
        while (rec := self.store.require(job_id)).status in ACTIVE:
            if time.time() > hard_deadline:
                LOG.warning("job %s did not stop through its host; killing it", job_id)
                signal_group(rec.child_pid, 9)
                if process_alive(rec.pid, rec.pid_start):
                    signal_group(rec.pid, 9)
                time.sleep(0.5)
                self.reconcile()
                return
            time.sleep(0.2)
            self.reconcile()

    def resume(self, job_id: str) -> JobInfo:
        """Queue an interrupted, cancelled or failed job again; it continues from its last finished
        round. A done job is final (clone it instead)."""
        rec = self.store.require(job_id)
        folder = self.store.folder(rec)
        read_job_json(folder)  # a broken folder cannot run: raises naming the file and the fix
        if rec.status not in RESUMABLE:
            raise JobStateError(f"job {job_id} is {rec.status}; only interrupted, cancelled or failed jobs "
                                f"can be resumed", fix=state_fix(rec.status))
        (folder / CANCEL_FILE).unlink(missing_ok=True)
        self.store.transition(job_id, "queued", expect=(rec.status,), queued=utc_now(), finished=None,
                              error=None, exit_code=None)
        self.pump()
        return self.get(job_id)

    def delete(self, job_id: str) -> None:
        """Delete a job that is not running: its folder and its row (refuses while it runs)."""
        self.store.delete(check_job_id(job_id))
        with self._lock:
            self._trackers.pop(job_id, None)
            self._job_json_cache.pop(job_id, None)

    def repair(self, job_id: str) -> Path:
        """Rewrite a job's ``job.json`` (and ``status.json``) from the store; returns the path."""
        return export_to_folder(self.store.require(job_id), self.store)

    def wait(self, job_id: str, timeout_s: float, until: Sequence[str] = FINAL) -> JobInfo:
        """Block until the job's status is one of ``until`` (pumping the queue); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        last_pump = 0.0
        while (info := self.get(job_id)).status not in until:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {info.status} after {timeout_s:g} s")
            if time.monotonic() - last_pump > 1.0:
                self.pump()
                last_pump = time.monotonic()
            time.sleep(0.1)
        return info

    # ---------------------------------------------------------------------------- reading
    def list(self) -> list[JobInfo]:
        """Every job, oldest first, with folder problems reported instead of raised."""
        self._import_orphans()
        infos = [self._info(rec) for rec in self.store.all()]
        known = {i.id for i in infos}
        for folder in self._job_folders():
            if folder.name not in known:  # an orphan folder whose job.json cannot be read
                infos.append(self._broken_orphan(folder))
        return infos

    def get(self, job_id: str) -> JobInfo:
        rec = self.store.get(job_id)
        if rec is not None:
            return self._info(rec)
        folder = self.store.jobs_dir / check_job_id(job_id)
        if folder.is_dir():
            return self._broken_orphan(folder)
        self.store.require(job_id)  # raises JobNotFoundError
        raise AssertionError("unreachable")

    def record(self, job_id: str) -> JobRecord:
        return self.store.require(job_id)

    def progress(self, job_id: str) -> Progress:
        """Stage, step/total, round, elevation, latest losses, warnings, ETAs (incremental read)."""
        return self._progress(self.store.require(job_id))

    def _progress(self, rec: JobRecord) -> Progress:
        """A snapshot (safe to keep) of the job's progress, read on from the last offset."""
        with self._lock:
            return copy.deepcopy(self._tracker(rec).update())

    def logs(self, job_id: str, offset: int = 0, max_bytes: int = 1 << 20) -> LogChunk:
        """``log.txt`` from byte ``offset`` (at most ``max_bytes``; whole lines unless the line is huge)."""
        path = JobDir(self.store.folder(self.store.require(job_id))).log
        if not path.exists():
            return LogChunk("", offset, 0)
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            offset = min(max(0, offset), size)
            f.seek(offset)
            data = f.read(max_bytes)
        if len(data) == max_bytes and b"\n" in data:
            data = data[:data.rfind(b"\n") + 1]
        return LogChunk(data.decode("utf-8", errors="replace"), offset + len(data), size)

    def _tracker(self, rec: JobRecord) -> ProgressTracker:
        with self._lock:
            tracker = self._trackers.get(rec.id)
            if tracker is None:
                stage2 = ((rec.config.get("presets") or {}).get(rec.preset) or {}).get("stage2") or {}
                tracker = ProgressTracker(JobDir(self.store.folder(rec)).events, rec.rounds_total,
                                          [float(e) for e in stage2.get("elevations_deg") or []])
                self._trackers[rec.id] = tracker
            return tracker

    def _info(self, rec: JobRecord) -> JobInfo:
        folder = self.store.folder(rec)
        status, error, problem = rec.status, rec.error, None
        broken = self._job_json_problem(rec.id, folder)
        if broken is not None:
            status, error = "broken", broken
        else:
            p = self._progress(rec)
            events = JobDir(folder).events
            if p.bad_lines:
                problem = (f"{events}: {p.bad_lines} line(s) are not JSON (first: line {p.first_bad_line}) and "
                           f"were ignored; progress may be incomplete. Fix: none needed to resume or use the "
                           f"outputs; delete those lines to silence this")
            elif rec.started and rec.status not in ("queued", *ACTIVE) and not events.exists():
                problem = (f"{events} is missing: the progress history is lost. Fix: none needed; a resumed "
                           f"run appends new events, the outputs are unaffected")
        return JobInfo(id=rec.id, name=rec.name, status=status, created=rec.created, started=rec.started,
                       finished=rec.finished, preset=rec.preset, parent=rec.parent, stage=rec.stage,
                       round=rec.round, rounds_total=rec.rounds_total, runner=rec.runner, host=rec.host,
                       attempt=rec.attempt, error=error, problem=problem, folder=str(folder),
                       overrides=rec.overrides)

    def _job_json_problem(self, job_id: str, folder: Path) -> str | None:
        """None if the folder's job.json is usable, else the message (cached on size and mtime)."""
        if not folder.is_dir():
            return (f"{folder}: the job folder is missing. Fix: delete the job "
                    f"(`python -m skyfall_core jobs delete {job_id}`) or restore the folder from a backup")
        try:
            st = JobDir(folder).job_json.stat()
            key = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            key = (0, -1)
        with self._lock:
            cached = self._job_json_cache.get(job_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            read_job_json(folder)
            msg = None
        except BrokenJobError as exc:
            msg = exc.message
        with self._lock:
            self._job_json_cache[job_id] = (key, msg)
        return msg

    def _broken_orphan(self, folder: Path) -> JobInfo:
        try:
            read_job_json(folder)
            msg = f"{folder}: not in the job store yet. Fix: none; it is imported at the next list/start-up"
        except BrokenJobError as exc:
            msg = exc.message.replace("restore it from the job store with `python -m skyfall_core jobs repair "
                                      f"{folder.name}`, or delete the job folder",
                                      f"the job store has no copy: delete the folder "
                                      f"(`python -m skyfall_core jobs delete {folder.name}`)")
        return JobInfo(id=folder.name, name=folder.name, status="broken", created=None, started=None,
                       finished=None, preset=None, parent=None, stage=None, round=None, rounds_total=None,
                       runner=None, host=None, attempt=0, error=msg, problem=None, folder=str(folder),
                       overrides={})

    def _job_folders(self) -> list[Path]:
        return sorted(p for p in self.store.jobs_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _import_orphans(self) -> list[str]:
        """Add to the store the job folders it lacks (e.g. a crash between folder and row)."""
        known = {r.id for r in self.store.all()}
        imported = []
        for folder in self._job_folders():
            if folder.name in known:
                continue
            try:
                rec = record_from_folder(folder, self.workspace, runner=self.settings.runner)
            except BrokenJobError:
                continue  # listed as broken by list()
            self.store.insert(replace(rec, command=self.command), replace_existing=True)
            imported.append(rec.id)
        return imported

    # ------------------------------------------------------------------- the scheduler
    def reconcile(self) -> list[str]:
        """Bring the store in line with reality (start-up, and every pump).

        Active jobs of this machine whose host process is gone (or whose pid was reused) become
        ``interrupted`` (resumable), ``cancelled`` if a cancel was asked, or the pipeline's own
        final status when its events recorded one for this attempt. Returns the ids changed.
        """
        changed = []
        me = hostname()
        self._import_orphans()
        for rec in self.store.with_status(*ACTIVE):
            if rec.host not in (None, me):
                continue  # another machine's host owns it
            if rec.pid is None:
                started = iso_to_unix(rec.started) or 0.0
                if time.time() - started < UNSTARTED_GRACE_S:
                    continue
            elif process_alive(rec.pid, rec.pid_start):
                continue
            if rec.child_pid and process_alive(rec.child_pid, rec.child_start):
                deadline = cancel_deadline(self.store.folder(rec), self.settings.cancel_timeout_s)
                if rec.status == "cancelling" and deadline and time.time() > deadline + self.settings.kill_grace_s:
                    signal_group(rec.child_pid, 9)
                continue  # the host died but its pipeline still runs (no parent-death signal here)
            to, error = self._fate(rec)
            if self.store.transition(rec.id, to, expect=(rec.status,), attempt=rec.attempt, strict=False,
                                     finished=utc_now(), error=error):
                changed.append(rec.id)
                LOG.info("reconcile: job %s %s -> %s", rec.id, rec.status, to)
        self._remove_leftovers()
        return changed

    def _fate(self, rec: JobRecord) -> tuple[str, str | None]:
        if rec.status == "cancelling":
            return "cancelled", "cancelled; its process had already ended"
        events, _ = _events_since(JobDir(self.store.folder(rec)).events, iso_to_unix(rec.started) or 0.0)
        statuses = [e for e in events if e.get("kind") == "status"]
        last = statuses[-1].get("status") if statuses else None
        if last in ("done", "failed", "cancelled"):
            errors = [e.get("text") for e in events if e.get("kind") == "error"]
            return last, (errors[-1] if errors and last == "failed" else None)
        what = "gone" if rec.pid is None or process_alive(rec.pid, None) is False else "reused by another program"
        return "interrupted", (f"the job process (pid {rec.pid}) is {what}: the machine or the process was "
                               f"stopped; resume the job to continue from its last finished round")

    def _remove_leftovers(self) -> None:
        for p in self.store.jobs_dir.iterdir():
            if p.name.startswith((".new-", ".trash-")) and time.time() - p.stat().st_mtime > LEFTOVER_AGE_S:
                shutil.rmtree(p)

    def pump(self) -> list[str]:
        """Reconcile, then start queued jobs while fewer than ``max_concurrent`` run; ids started."""
        with self._lock:
            self._handles = [h for h in self._handles if h.poll() is None]  # reap finished hosts
            self.reconcile()
            started = start_queued(self.store, self.settings, spawn=self._spawn)
            return [job_id for job_id, _ in started]

    def _spawn(self, *args: Any) -> Any:
        handle = spawn_host(*args)
        self._handles.append(handle)
        return handle

    def start_scheduler(self, interval_s: float = 2.0) -> None:
        """Pump in a daemon thread every ``interval_s`` (idempotent). Job hosts also start the next
        queued job when theirs ends, so the queue keeps going while no app runs."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, args=(interval_s,), name="skyfall-jobs",
                                            daemon=True)
            self._thread.start()

    def stop_scheduler(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.pump()
            except (JobError, OSError) as exc:  # logged; the next pump retries
                LOG.error("job scheduler: %s", exc)


# ------------------------------------------------------------------------------ helpers
def _check_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ConfigError("a job needs a name", fix="give the job a short name, e.g. 'downtown, Jan-Dec'")
    if len(name) > 200:
        raise ConfigError(f"the job name is {len(name)} characters long", fix="keep it under 200 characters")
    return name


def _check_scenes(scene_paths: Sequence[str | Path]) -> list[str]:
    if isinstance(scene_paths, (str, Path)):
        scene_paths = [scene_paths]
    scenes = [str(Path(p).expanduser().resolve()) for p in scene_paths]
    if not scenes:
        raise JobError("no scenes were chosen", fix="pick at least three scenes of the AOI")
    for p in scenes:
        if not Path(p).is_file():
            raise JobError("scene file not found", path=p, fix="check the path, or rescan the catalog")
    return scenes


def _new_job_id(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:24].strip("-")
    parts = [time.strftime("%Y%m%d-%H%M%S", time.gmtime()), slug, secrets.token_hex(3)]
    return check_job_id("-".join(p for p in parts if p))


def _versions() -> dict[str, str]:
    from skyfall_core import __version__

    out = {"skyfall_core": __version__, "python": platform.python_version()}
    for dist in ("torch", "numpy", "gsplat", "diffusers", "transformers", "ray"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _events_since(path: Path, t0: float) -> tuple[list[dict[str, Any]], int]:
    from skyfall_core.jobfolder import read_events

    events, offset = read_events(path)
    return [e for e in events if isinstance(e.get("t"), (int, float)) and e["t"] >= t0 - 1.0], offset
