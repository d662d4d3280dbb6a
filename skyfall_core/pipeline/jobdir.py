"""The job folder contract (DESIGN.md) and its append-only progress log.

``<workspace>/jobs/<job_id>/``: job.json, events.jsonl, log.txt, scene/, stage1/,
rounds/<k>_e<elev>/{before,after}/NNN.png + cameras.json, checkpoints/, final/.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_job_id(job_id: str) -> str:
    """A job id safe to use as a folder name (no path separators, no dots)."""
    if not JOB_ID.fullmatch(job_id or ""):
        raise ValueError(f"invalid job id {job_id!r}: use 1-64 letters, digits, '-' or '_'")
    return job_id


@dataclass(frozen=True)
class JobDir:
    root: Path

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

    def round_dir(self, k: int, elevation_deg: float) -> Path:
        return self.root / "rounds" / f"{k}_e{elevation_deg:g}"

    def round_dirs(self) -> list[Path]:
        """Existing round folders in round order."""
        base = self.root / "rounds"
        if not base.is_dir():
            return []
        dirs = [d for d in base.iterdir() if d.is_dir() and re.fullmatch(r"\d+_e[\d.]+", d.name)]
        return sorted(dirs, key=lambda d: int(d.name.split("_")[0]))


class EventLog:
    """Append-only JSON-lines progress log; each event is one flushed, fsynced line."""

    def __init__(self, path: Path, *, echo_to: Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.echo_to = echo_to
        self._t0 = time.time()

    def emit(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"t": round(time.time(), 3), "kind": kind, **fields}
        line = json.dumps(event, default=_jsonable) + "\n"
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


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):
        return v.item()
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
            events.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return events, offset + end


def iter_all_events(path: Path) -> Iterator[dict[str, Any]]:
    yield from read_events(path, 0)[0]
