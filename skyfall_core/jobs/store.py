"""The job store: one SQLite file (``<workspace>/jobs.sqlite``, WAL mode) with a row a job.

The store is authoritative for a job's *status*; the job folder holds everything else
(``job.json``, ``events.jsonl``, ``state.json``, outputs). Every write is one ``BEGIN IMMEDIATE``
transaction, so concurrent writers (the app, job hosts, the CLI) serialise; each status change is
mirrored into ``<folder>/status.json`` inside the same transaction so that the store can be
rebuilt from the folders (:func:`rebuild_from_folders`) and a folder's ``job.json`` from the store
(:func:`export_to_folder`).

Status machine (``TRANSITIONS``)::

    queued -> running -> done | failed | cancelled | interrupted
    running -> cancelling -> cancelled | done | failed
    queued -> cancelled | failed            (cancelled before it started / folder broken)
    interrupted | cancelled | failed -> queued   (resume: continues from the last finished round)
    interrupted -> cancelled
    done is final: clone the job to run it again with other settings.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from skyfall_core.atomic import write_json
from skyfall_core.jobfolder import BrokenJobError, JobDir, JobError, check_job_id, read_events

STATUSES = ("queued", "running", "cancelling", "cancelled", "failed", "interrupted", "done")
ACTIVE = ("running", "cancelling")  # a process (or a Ray task) exists for the job
RESUMABLE = ("interrupted", "cancelled", "failed")
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "failed"}),
    "running": frozenset({"done", "failed", "cancelling", "cancelled", "interrupted"}),
    "cancelling": frozenset({"cancelled", "done", "failed"}),
    "interrupted": frozenset({"queued", "cancelled"}),
    "cancelled": frozenset({"queued"}),
    "failed": frozenset({"queued"}),
    "done": frozenset(),
}
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
STATUS_FILE = "status.json"  # mirror of the store's row state, for rebuilds
JOB_KEYS = ("id", "name", "created", "aoi", "scenes", "preset", "config", "overrides", "parent")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    created    TEXT NOT NULL,             -- ISO 8601 UTC
    queued     TEXT,                      -- when it last entered the queue (submit, resume): queue order
    started    TEXT,
    finished   TEXT,
    aoi        TEXT NOT NULL,             -- json: GeoJSON Feature
    scenes     TEXT NOT NULL,             -- json: [absolute paths]
    preset     TEXT NOT NULL,
    config     TEXT NOT NULL,             -- json: the resolved config with the overrides applied
    overrides  TEXT NOT NULL,             -- json: {{dotted key: value}}
    parent     TEXT,
    stage      TEXT,
    round      INTEGER,
    folder     TEXT NOT NULL,             -- relative to the workspace: jobs/<id>
    pid        INTEGER,                   -- the job host process (leader of its own session)
    pid_start  TEXT,                      -- its start time (detects a reused pid)
    child_pid  INTEGER,                   -- local runner: the pipeline process (own process group)
    child_start TEXT,
    host       TEXT,                      -- machine of the job host
    attempt    INTEGER NOT NULL DEFAULT 0, -- incremented at every start, guards late reports
    exit_code  INTEGER,
    error      TEXT,
    runner     TEXT NOT NULL CHECK (runner IN ('local', 'ray')),
    ray_ref    TEXT,
    command    TEXT,                      -- json argv template with {{job_dir}}, NULL = the pipeline
    extra      TEXT NOT NULL DEFAULT '{{}}' -- json: the other keys of job.json (versions, refiner, ...)
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (status, queued);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_JSON_COLUMNS = ("aoi", "scenes", "config", "overrides", "command", "extra")
_MIRRORED = ("status", "error", "started", "finished", "attempt", "runner", "host", "pid", "pid_start",
             "child_pid", "child_start", "exit_code", "queued", "ray_ref")


class JobNotFoundError(JobError):
    pass


class JobStateError(JobError):
    """The job's status does not allow the operation (e.g. resuming a job that is done)."""


def utc_now() -> str:
    """Current time as ISO 8601 UTC with milliseconds (sorts lexicographically)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def iso_to_unix(iso: str | None) -> float | None:
    return None if not iso else datetime.fromisoformat(iso).timestamp()


@dataclass(frozen=True)
class JobRecord:
    """One row of the store (json columns decoded)."""

    id: str
    name: str
    status: str
    created: str
    aoi: dict[str, Any]
    scenes: list[str]
    preset: str
    config: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    parent: str | None = None
    queued: str | None = None
    started: str | None = None
    finished: str | None = None
    stage: str | None = None
    round: int | None = None
    folder: str = ""
    pid: int | None = None
    pid_start: str | None = None
    child_pid: int | None = None
    child_start: str | None = None
    host: str | None = None
    attempt: int = 0
    exit_code: int | None = None
    error: str | None = None
    runner: str = "local"
    ray_ref: str | None = None
    command: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rounds_total(self) -> int | None:
        """Refinement rounds of the job's elevation schedule."""
        presets = self.config.get("presets") or {}
        stage2 = (presets.get(self.preset) or {}).get("stage2") or {}
        elevations = stage2.get("elevations_deg")
        return len(elevations) if isinstance(elevations, list) else None

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        for key in _JSON_COLUMNS:
            row[key] = None if row[key] is None else json.dumps(row[key], sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "JobRecord":
        data = dict(row)
        for key in _JSON_COLUMNS:
            data[key] = None if data[key] is None else json.loads(data[key])
        return cls(**data)

    def job_json(self) -> dict[str, Any]:
        """The contract's ``job.json`` for this record (the store's keys plus ``extra``)."""
        return {**self.extra, **{k: getattr(self, k) for k in JOB_KEYS}}

    def status_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _MIRRORED} | {"stage": self.stage, "round": self.round}


_COLUMNS = tuple(f.name for f in fields(JobRecord))


class JobStore:
    """SQLite job table; a short-lived connection per call (safe across threads and processes)."""

    def __init__(self, workspace: str | Path, path: str | Path | None = None):
        self.workspace = Path(workspace).resolve()
        self.path = Path(path).resolve() if path else self.workspace / "jobs.sqlite"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            with _transaction(conn):
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @property
    def jobs_dir(self) -> Path:
        return self.workspace / "jobs"

    def folder(self, job: JobRecord | str) -> Path:
        """Absolute job folder of a record (or of an id)."""
        if isinstance(job, str):
            return self.jobs_dir / check_job_id(job)
        return self.workspace / job.folder if job.folder else self.jobs_dir / job.id

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    # ------------------------------------------------------------------------------ reads
    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else JobRecord.from_row(row)

    def require(self, job_id: str) -> JobRecord:
        rec = self.get(job_id)
        if rec is None:
            raise JobNotFoundError(f"no job with id {job_id!r}", path=self.path,
                                   fix="list the jobs with `python -m skyfall_core jobs list`")
        return rec

    def all(self) -> list[JobRecord]:
        """Every job, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM jobs ORDER BY created, id").fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def with_status(self, *statuses: str) -> list[JobRecord]:
        marks = ",".join("?" * len(statuses))
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY queued, created, id",
                                statuses).fetchall()
        return [JobRecord.from_row(r) for r in rows]

    def meta(self, key: str) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row["value"]

    # ----------------------------------------------------------------------------- writes
    def set_meta(self, key: str, value: str) -> None:
        with self._connect() as conn, _transaction(conn):
            conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         (key, value))

    def insert(self, rec: JobRecord, *, replace_existing: bool = False) -> JobRecord:
        _check_status(rec.status)
        row = rec.to_row()
        verb = "INSERT OR REPLACE" if replace_existing else "INSERT"
        with self._connect() as conn, _transaction(conn):
            conn.execute(f"{verb} INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                         [row[c] for c in _COLUMNS])
            self._mirror(rec)
        return rec

    def transition(self, job_id: str, to: str, *, expect: tuple[str, ...] | None = None,
                   attempt: int | None = None, strict: bool = True, **updates: Any) -> JobRecord | None:
        """Move a job to status ``to`` (and set ``updates``) in one transaction.

        ``expect``/``attempt`` guard against races: when the job is no longer in one of ``expect``
        or has been restarted (another ``attempt``), nothing changes and None is returned. A move
        that ``TRANSITIONS`` forbids raises :class:`JobStateError` when ``strict``, else returns None.
        """
        _check_status(to)
        with self._connect() as conn, _transaction(conn):
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                if strict:
                    raise JobNotFoundError(f"no job with id {job_id!r}", path=self.path,
                                           fix="list the jobs with `python -m skyfall_core jobs list`")
                return None
            rec = JobRecord.from_row(row)
            if (expect is not None and rec.status not in expect) or (attempt is not None and rec.attempt != attempt):
                return None
            if to not in TRANSITIONS[rec.status]:
                if strict:
                    raise JobStateError(f"job {job_id} is {rec.status}; it cannot become {to}",
                                        fix=state_fix(rec.status))
                return None
            new = replace(rec, status=to, **updates)
            self._write(conn, rec, new)
        return new

    def update(self, job_id: str, *, attempt: int | None = None, **updates: Any) -> JobRecord | None:
        """Set non-status fields (pid, stage, round, extra, ...); None if the attempt moved on."""
        if "status" in updates:
            raise ValueError("use transition() to change a job's status")
        with self._connect() as conn, _transaction(conn):
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or (attempt is not None and row["attempt"] != attempt):
                return None
            rec = JobRecord.from_row(row)
            new = replace(rec, **updates)
            self._write(conn, rec, new)
        return new

    def claim_next(self, max_concurrent: int, runner: str, host: str) -> JobRecord | None:
        """Atomically start the oldest queued job if fewer than ``max_concurrent`` are active.

        The claimed job becomes ``running`` with a new ``attempt``; the caller starts its host.
        """
        with self._connect() as conn, _transaction(conn):
            marks = ",".join("?" * len(ACTIVE))
            active = conn.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})", ACTIVE).fetchone()[0]
            if active >= max_concurrent:
                return None
            row = conn.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY queued, created, id "
                               "LIMIT 1").fetchone()
            if row is None:
                return None
            rec = JobRecord.from_row(row)
            new = replace(rec, status="running", started=utc_now(), finished=None, attempt=rec.attempt + 1,
                          runner=runner, host=host, pid=None, pid_start=None, child_pid=None,
                          child_start=None, exit_code=None, error=None, ray_ref=None)
            self._write(conn, rec, new)
        return new

    def delete(self, job_id: str, *, remove_folder: bool = True) -> None:
        """Delete a job that is not active: its folder (moved aside atomically, then removed) and row."""
        trash = None
        with self._connect() as conn, _transaction(conn):
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            folder = self.folder(JobRecord.from_row(row)) if row is not None else self.jobs_dir / job_id
            if row is not None and row["status"] in ACTIVE:
                raise JobStateError(f"job {job_id} is {row['status']}; it cannot be deleted while it runs",
                                    fix=f"cancel it first (`python -m skyfall_core jobs cancel {job_id}`)")
            if row is None and not folder.exists():
                raise JobNotFoundError(f"no job with id {job_id!r}", path=self.path,
                                       fix="list the jobs with `python -m skyfall_core jobs list`")
            if remove_folder and folder.exists():
                trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}-{time.monotonic_ns()}")
                folder.rename(trash)
            try:
                conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            except sqlite3.Error:
                if trash is not None:
                    trash.rename(folder)
                raise
        if trash is not None:
            _rmtree(trash)

    # --------------------------------------------------------------------------- helpers
    def _write(self, conn: sqlite3.Connection, old: JobRecord, new: JobRecord) -> None:
        row = new.to_row()
        changed = [c for c in _COLUMNS if c != "id" and row[c] != old.to_row()[c]]
        if changed:
            conn.execute(f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in changed)} WHERE id = ?",
                         [row[c] for c in changed] + [new.id])
        if any(c in _MIRRORED or c in ("stage", "round") for c in changed):
            self._mirror(new)

    def _mirror(self, rec: JobRecord) -> None:
        """Write ``status.json`` in the job folder (if the folder exists), inside the transaction."""
        folder = self.folder(rec)
        if folder.is_dir():
            write_json(folder / STATUS_FILE, rec.status_json())


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): writers serialise on the file lock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown job status {status!r}; expected one of {STATUSES}")


def state_fix(status: str) -> str:
    return {
        "done": "a finished job is final; clone it to run it again with other settings",
        "running": "wait for it to finish or cancel it",
        "cancelling": "wait a moment: it stops at its next step",
        "queued": "it starts when a slot is free; cancel it to drop it",
    }.get(status, "resume it to continue from its last finished round")


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


# ---------------------------------------------------------------------- folders <-> store
def read_job_json(folder: Path) -> dict[str, Any]:
    """A folder's ``job.json``; :class:`BrokenJobError` naming the file and the fix if unusable."""
    path = JobDir(folder).job_json
    fix = (f"restore it from the job store with `python -m skyfall_core jobs repair {folder.name}`, "
           f"or delete the job folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BrokenJobError("job.json is missing", path=path, fix=fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BrokenJobError(f"job.json is unreadable ({exc})", path=path, fix=fix) from None
    if not isinstance(data, dict):
        raise BrokenJobError("job.json is not a JSON object", path=path, fix=fix)
    missing = [k for k in ("id", "name", "created", "aoi", "scenes", "preset", "config") if k not in data]
    if missing:
        raise BrokenJobError(f"job.json lacks {', '.join(missing)}", path=path, fix=fix)
    if data["id"] != folder.name:
        raise BrokenJobError(f"job.json has id {data['id']!r} but lies in folder {folder.name!r}", path=path,
                             fix="rename the folder to the id in its job.json (or correct the id)")
    return data


def record_from_folder(folder: Path, workspace: Path, *, runner: str = "local") -> JobRecord:
    """A store row re-created from a job folder: job.json, then status.json, else events + state.json."""
    data = read_job_json(folder)
    known = {k: data[k] for k in JOB_KEYS if k in data}
    extra = {k: v for k, v in data.items() if k not in JOB_KEYS}
    base = JobRecord(**{**known, "overrides": data.get("overrides") or {}}, status="queued",
                     folder=str(folder.resolve().relative_to(workspace.resolve())), extra=extra,
                     runner=runner, queued=data["created"])
    status = _read_status_json(folder)
    if status is not None:
        return replace(base, **status)
    return replace(base, **_status_from_events(folder))


def _read_status_json(folder: Path) -> dict[str, Any] | None:
    path = folder / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # absent or torn by hand: fall back to the events (the pipeline's own view)
    names = set(_MIRRORED) | {"stage", "round"}
    if not isinstance(data, dict) or data.get("status") not in STATUSES:
        return None
    return {k: v for k, v in data.items() if k in names}


def _status_from_events(folder: Path) -> dict[str, Any]:
    """Status derived from the pipeline's events when no status.json survives.

    No events: queued (it never ran). A final status event: that status. Otherwise the job was
    running when its store was lost: ``interrupted`` (resumable).
    """
    events, _ = read_events(JobDir(folder).events)
    if not events:
        return {"status": "queued"}
    out: dict[str, Any] = {"status": "interrupted",
                           "error": "rebuilt from the job folder: it was running when the store was lost"}
    first_t = events[0].get("t")
    if isinstance(first_t, (int, float)):
        out["started"] = datetime.fromtimestamp(first_t, timezone.utc).isoformat(timespec="milliseconds")
    for ev in events:
        if ev.get("kind") == "stage":
            out["stage"] = ev.get("stage")
            out["round"] = ev.get("round", out.get("round"))
    statuses = [e for e in events if e.get("kind") == "status"]
    last = statuses[-1] if statuses else {}
    if last.get("status") in ("done", "failed", "cancelled"):
        out["status"] = last["status"]
        out["error"] = last.get("text") if out["status"] != "done" else None
        t = last.get("t")
        if isinstance(t, (int, float)):
            out["finished"] = datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
    return out


@dataclass
class RebuildReport:
    imported: list[str] = field(default_factory=list)  # ids re-created in the store
    skipped: list[str] = field(default_factory=list)  # ids already in the store (kept)
    broken: dict[str, str] = field(default_factory=dict)  # folder name -> message with the fix


def rebuild_from_folders(workspace: str | Path, store: JobStore | None = None, *,
                         overwrite: bool = False) -> RebuildReport:
    """Re-create store rows from the job folders (job.json + status.json or events + state.json).

    Rows that exist are kept unless ``overwrite``; unreadable folders are reported, not raised.
    """
    workspace = Path(workspace).resolve()
    store = store or JobStore(workspace)
    report = RebuildReport()
    existing = {r.id for r in store.all()}
    for folder in sorted(p for p in store.jobs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in existing and not overwrite:
            report.skipped.append(folder.name)
            continue
        try:
            rec = record_from_folder(folder, workspace)
        except BrokenJobError as exc:
            report.broken[folder.name] = exc.message
            continue
        store.insert(rec, replace_existing=True)
        report.imported.append(rec.id)
    return report


def export_to_folder(job: JobRecord, store: JobStore) -> Path:
    """Write a record's ``job.json`` (and ``status.json``) into its folder, atomically."""
    folder = store.folder(job)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(JobDir(folder).job_json, job.job_json())
    write_json(folder / STATUS_FILE, job.status_json())
    return JobDir(folder).job_json
