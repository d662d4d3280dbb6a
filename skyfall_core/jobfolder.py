"""The job folder: the one contract between the pipeline, the job runners and the app.

``<workspace>/jobs/<job_id>/``::

    job.json        what to run: AOI, scenes, preset, the resolved config, overrides, parent, versions
    events.jsonl    append-only progress events (kinds: status, stage, progress, timing, message,
                    warning, error); one fsynced JSON line each
    log.txt         human-readable log (messages, warnings, errors, tracebacks)
    state.json      the finished stages (scene, stage1, round_<k>, final) and rounds_total
    cancel.request  present = a cancel was asked for; the pipeline stops between steps
    scene/ stage1/ rounds/<k>_e<elev>/{before,after}/NNN.png + cameras.json  checkpoints/
    final/          see FINAL_FILES

The pipeline writes only through :class:`JobDir` and :class:`EventLog`; the job runners and the
app read only through :class:`JobDir`, :func:`load_job` and :func:`read_events`. This module
sits on the ground floor: it imports only the standard library, ``errors``, ``atomic`` and
(lazily) ``config``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from skyfall_core import atomic
from skyfall_core.errors import SkyfallError

if TYPE_CHECKING:
    from skyfall_core.config import Config

# Exit codes of `python -m skyfall_core run <job>` (and of every CLI command)
EXIT_DONE, EXIT_CRASH, EXIT_USER_ERROR, EXIT_CANCELLED = 0, 1, 2, 3
EXIT_MEANING = {EXIT_DONE: "done", EXIT_CRASH: "crashed (see log.txt; resumable)",
                EXIT_USER_ERROR: "stopped on a problem with the input or settings (see the error)",
                EXIT_CANCELLED: "cancelled (resumable)"}
CANCEL_FILE = "cancel.request"
STATE_FILE = "state.json"
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

# final/: key -> (file name, label, mime type), in the order the app offers them
FINAL_FILES: dict[str, tuple[str, str, str]] = {
    "spz": ("scene.spz", "Web splat (.spz, Spark)", "application/octet-stream"),
    "compressed": ("scene.compressed.ply", "Web splat (compressed .ply)", "application/octet-stream"),
    "ply": ("scene.ply", "3DGS PLY", "application/octet-stream"),
    "dsm": ("dsm.tif", "DSM GeoTIFF", "image/tiff"),
    "dsm_cog": ("dsm.cog.tif", "DSM Cloud-Optimized GeoTIFF", "image/tiff"),
    "hillshade": ("dsm_hillshade.png", "DSM hillshade", "image/png"),
    "laz": ("splat_points.laz", "Splat centres (LAZ, UTM)", "application/octet-stream"),
    "tileset": ("3dtiles/tileset.json", "3D Tiles (Gaussian splats)", "application/json"),
    "georef": ("georef.json", "georef.json", "application/json"),
    "preview": ("preview.png", "Preview", "image/png"),
    "flydown_mp4": ("flydown.mp4", "Fly-down video (MP4)", "video/mp4"),
    "flydown_gif": ("flydown.gif", "Fly-down animation (GIF)", "image/gif"),
}
WEB_SPLAT_ORDER = (("spz", "spz"), ("compressed", "ply"), ("ply", "ply"))  # what a browser viewer loads


class JobError(SkyfallError):
    """A job operation that cannot be done (unknown id, wrong state, broken folder, bad input)."""


class BrokenJobError(JobError):
    """A job folder or its job.json is missing or unreadable."""



def check_job_id(job_id: str) -> str:
    """A job id safe to use as a folder name (no path separators, no dots)."""
    if not JOB_ID.fullmatch(job_id or ""):
        raise ValueError(f"invalid job id {job_id!r}: use 1-64 letters, digits, '-' or '_'")
    return job_id


@dataclass(frozen=True)
class JobDir:
    """The paths of one job folder (nothing else spells them)."""

    root: Path

    @property
    def id(self) -> str:
        return self.root.name

    @property
    def job_json(self) -> Path:
        return self.root / "job.json"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def state_json(self) -> Path:
        return self.root / STATE_FILE

    @property
    def cancel_request(self) -> Path:
        return self.root / CANCEL_FILE

    @property
    def scene(self) -> Path:
        return self.root / "scene"

    @property
    def stage1(self) -> Path:
        return self.root / "stage1"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def compare(self) -> Path:
        return self.final / "compare"

    def final_file(self, key: str) -> Path:
        return self.final / FINAL_FILES[key][0]

    def final_outputs(self) -> dict[str, Path]:
        """The files of final/ that exist, by key of :data:`FINAL_FILES`."""
        return {k: self.final_file(k) for k in FINAL_FILES if self.final_file(k).is_file()}

    def web_splat(self) -> tuple[Path, str] | None:
        """(file, format) of the splat a browser viewer loads: .spz, else compressed PLY, else PLY."""
        for key, fmt in WEB_SPLAT_ORDER:
            if self.final_file(key).is_file():
                return self.final_file(key), fmt
        return None

    def round_dir(self, k: int, elevation_deg: float) -> Path:
        return self.root / "rounds" / f"{k}_e{elevation_deg:g}"

    def round_dirs(self) -> list[Path]:
        """Existing round folders in round order."""
        base = self.root / "rounds"
        if not base.is_dir():
            return []
        dirs = [d for d in base.iterdir() if d.is_dir() and re.fullmatch(r"\d+_e[\d.]+", d.name)]
        return sorted(dirs, key=lambda d: int(d.name.split("_")[0]))

    # --- cancel
    def request_cancel(self, by: str = "user") -> None:
        atomic.write_json(self.cancel_request, {"by": by, "t": time.time()})

    def cancel_requested(self) -> bool:
        return self.cancel_request.exists()

    def clear_cancel(self) -> None:
        self.cancel_request.unlink(missing_ok=True)

    # --- state
    def read_state(self) -> dict[str, Any]:
        """state.json ({"finished": [...], "rounds_total": n}); empty state when absent or torn."""
        try:
            data = json.loads(self.state_json.read_text())
        except (OSError, json.JSONDecodeError):
            return {"finished": []}
        return data if isinstance(data, dict) and isinstance(data.get("finished"), list) else {"finished": []}

    def finish(self, state: dict[str, Any], stage: str) -> None:
        """Record ``stage`` as finished (atomically) in ``state`` and state.json."""
        state["finished"] = [*state["finished"], stage]
        atomic.write_json(self.state_json, state)


# ---------------------------------------------------------------------------------- job.json
@dataclass(frozen=True)
class JobMeta:
    """job.json of one job, typed; :meth:`config` gives the validated :class:`Config` it ran with."""

    id: str
    dir: Path
    name: str = ""
    created: str = ""  # ISO 8601 UTC
    preset: str = ""
    parent: str | None = None
    scenes: tuple[str, ...] = ()
    overrides: dict[str, Any] = field(default_factory=dict)
    resolved: dict[str, Any] = field(default_factory=dict)  # the resolved config as stored
    aoi: dict[str, Any] | None = None  # GeoJSON Feature
    refiner: dict[str, Any] | None = None  # {"name", "is_diffusion", "description", "model"}
    warnings: tuple[str, ...] = ()
    versions: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the whole document

    @property
    def folder(self) -> JobDir:
        return JobDir(self.dir)

    @property
    def stage2(self) -> dict[str, Any]:
        """The resolved stage-2 settings of the job's preset (empty if job.json lacks them)."""
        presets = self.resolved.get("presets") or {}
        return (presets.get(self.preset) or {}).get("stage2") or {}

    @property
    def elevations(self) -> list[float]:
        return [float(e) for e in self.stage2.get("elevations_deg") or []]

    @property
    def rounds_total(self) -> int:
        """state.json's count when the pipeline wrote one, else the schedule's."""
        n = self.folder.read_state().get("rounds_total")
        return n if isinstance(n, int) else len(self.elevations)

    def config(self) -> "Config":
        from skyfall_core.config import config_from_dict

        return config_from_dict({k: v for k, v in self.resolved.items() if k != "source"}, source=self.dir / "job.json")


def load_job(folder: str | Path) -> JobMeta:
    """The :class:`JobMeta` of a job folder; :class:`BrokenJobError` naming job.json when unreadable."""
    jd = JobDir(Path(folder))
    try:
        data = json.loads(jd.job_json.read_text())
    except FileNotFoundError:
        raise BrokenJobError("the job has no job.json", path=jd.job_json,
                             fix="the folder is not a job (or is still being created); delete it from the Jobs page") \
            from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BrokenJobError(f"job.json cannot be read ({exc})", path=jd.job_json,
                             fix="restore job.json from a backup, or delete the job") from None
    if not isinstance(data, dict):
        raise BrokenJobError("job.json is not a JSON object", path=jd.job_json, fix="delete the job")
    return JobMeta(id=jd.root.name, dir=jd.root, name=str(data.get("name") or jd.root.name),
                   created=str(data.get("created") or ""), preset=str(data.get("preset") or ""),
                   parent=data.get("parent"), scenes=tuple(data.get("scenes") or ()),
                   overrides=dict(data.get("overrides") or {}), resolved=dict(data.get("config") or {}),
                   aoi=data.get("aoi"), refiner=data.get("refiner"),
                   warnings=tuple(str(w) for w in data.get("warnings") or ()),
                   versions=dict(data.get("versions") or {}), raw=data)


def update_job_json(folder: str | Path, **fields: Any) -> None:
    """Set top-level keys of job.json (atomically), keeping the others."""
    meta = load_job(folder)
    atomic.write_json(meta.folder.job_json, {**meta.raw, **fields})


# ------------------------------------------------------------------------------------ events
class EventLog:
    """Append-only JSON-lines progress log; each event is one flushed, fsynced line."""

    def __init__(self, path: Path, *, echo_to: Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo_to = echo_to

    @classmethod
    def of(cls, job: JobDir) -> "EventLog":
        """The job's event log, echoing messages, warnings, errors and stages to log.txt."""
        return cls(job.events, echo_to=job.log)

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"t": round(time.time(), 3), "kind": kind, **fields}
        try:
            line = json.dumps(event, default=_jsonable, allow_nan=False) + "\n"
        except ValueError:  # a NaN/inf (e.g. a diverged loss) is written as null: the file stays JSON
            line = json.dumps(_finite(json.loads(json.dumps(event, default=_jsonable))), allow_nan=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        if self.echo_to is not None and kind in ("message", "warning", "error", "stage"):
            with open(self.echo_to, "a", encoding="utf-8") as f:
                f.write(f"[{time.strftime('%H:%M:%S')}] {kind}: {fields.get('text') or fields}\n")
        return event

    def message(self, text: str) -> None:
        self.emit("message", text=text)

    def warning(self, text: str) -> None:
        self.emit("warning", text=text)


def _finite(v: Any) -> Any:
    if isinstance(v, float):
        return v if v == v and abs(v) != float("inf") else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
        return None if isinstance(v, float) and v != v else v
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def read_events(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Events appended since byte ``offset``; returns (events, new offset).

    A last line still being written (no newline yet) is left for the next read; a corrupt line
    (e.g. a disk-full write) is skipped rather than breaking the reader.
    """
    path = Path(path)
    if not path.exists():
        return [], offset
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    events = []
    for raw in data[:end].splitlines():
        try:
            ev = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(ev, dict):
            events.append(ev)
    return events, offset + end


def iter_all_events(path: Path) -> Iterator[dict[str, Any]]:
    yield from read_events(path, 0)[0]
