"""Job progress from ``events.jsonl``: the one fold of a job's events, read incrementally (only
the bytes appended since last time). The job host, the job manager (ETAs), the CLI and the app's
progress panel (:func:`skyfall_core.ui.jobs.summarise_events`) all read a job through it.

Event kinds are those of the job-folder contract (stage, progress, timing, warning, message,
error, status). ETAs come from the step rate of the current stage: the pipeline reports the
seconds elapsed in the stage with every progress event.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MAX_TEXTS = 50  # warnings/messages kept (the newest); the counts are exact
ROUND_SUBSTAGES = ("round", "refine")  # events of one stage-2 round: its training steps and its refiner edits


def stage_key(ev: dict[str, Any]) -> str:
    """The stage an event belongs to: scene, stage1, round_<k> (its training and refiner), final."""
    if ev.get("stage") in ROUND_SUBSTAGES:
        return f"round_{int(ev.get('round') or 0)}"
    return str(ev.get("stage"))


@dataclass
class StageRow:
    """One row of the stage table: scene, stage1, round_<k>, final (and any stage seen in events)."""

    key: str
    state: str = "pending"  # pending | running | done
    step: int = 0
    total: int = 0
    elevation: float | None = None
    seconds: float | None = None  # seconds elapsed in the stage at its last progress event


@dataclass
class Progress:
    """What a job is doing now, as far as its events tell."""

    stage: str | None = None  # scene | stage1 | round | final
    stage_state: str | None = None  # start | done
    step: int | None = None
    total: int | None = None
    round: int | None = None  # refinement round index (0-based)
    rounds_done: list[int] = field(default_factory=list)
    rounds_total: int | None = None
    elevation: float | None = None  # degrees, of the current round
    losses: dict[str, float] = field(default_factory=dict)  # latest
    stage_seconds: float | None = None  # seconds elapsed in the current stage
    seconds_per_step: float | None = None
    stage_eta_s: float | None = None  # seconds left in the current stage at the current step rate
    job_eta_s: float | None = None  # + the remaining rounds at the mean duration of the finished ones
    pipeline_status: str | None = None  # the pipeline's own view (running|done|failed|cancelled)
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    messages: list[str] = field(default_factory=list)
    last_error: str | None = None
    failed_text: str | None = None  # the text of a "failed" status event
    timings: list[dict[str, Any]] = field(default_factory=list)  # per round: render_s, refine_s, train_s
    events: int = 0
    stage_rows: list[StageRow] = field(default_factory=list)  # in run order
    current: str | None = None  # key of the running stage row
    loss_history: list[dict[str, Any]] = field(default_factory=list)  # {stage, round, step, x, <losses>}
    bad_lines: int = 0  # lines that are not JSON (a torn or hand-edited file)
    first_bad_line: int | None = None  # 1-based line number of the first one
    last_event_t: float | None = None  # unix seconds

    def fraction(self) -> float | None:
        """Progress of the current stage in [0, 1]."""
        if self.step is None or not self.total:
            return None
        return min(1.0, max(0.0, self.step / self.total))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"fraction": self.fraction()}


class ProgressTracker:
    """Incremental reader of one ``events.jsonl``; call :meth:`update` as often as you like."""

    def __init__(self, events_path: str | Path | None, rounds_total: int | None = None,
                 elevations: list[float] | None = None):
        self.path = Path(events_path) if events_path is not None else None
        self._rounds_total = rounds_total
        self._elevations = list(elevations or [])
        self._reset()

    def _reset(self) -> None:
        self._offset = 0
        self._lines = 0
        self._inode: int | None = None
        self._round_start: dict[int, float] = {}
        self._round_seconds: dict[int, float] = {}
        self._stage_start_t: float | None = None
        self._x_offset: dict[str, int] = {}
        self.progress = Progress(rounds_total=self._rounds_total)
        n = self._rounds_total or 0
        self._rows = {k: StageRow(k) for k in ["scene", "stage1", *(f"round_{i}" for i in range(n)), "final"]}
        for i in range(n):
            self._rows[f"round_{i}"].elevation = self._elevations[i] if i < len(self._elevations) else None
        self.progress.stage_rows = list(self._rows.values())

    def feed(self, events: list[dict[str, Any]]) -> Progress:
        """Fold events given in memory (instead of read from the file)."""
        for ev in events:
            if isinstance(ev, dict):
                self._apply(ev)
        self._estimate()
        return self.progress

    def update(self) -> Progress:
        """Read what was appended since the last call and return the current :class:`Progress`."""
        if self.path is None:
            return self.progress
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self._offset:
                self._reset()
            return self.progress
        if st.st_ino != self._inode or st.st_size < self._offset:  # replaced or truncated: start over
            self._reset()
            self._inode = st.st_ino
        if st.st_size == self._offset:
            return self.progress
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read(st.st_size - self._offset)
        end = data.rfind(b"\n") + 1  # a last line without newline is still being written
        for raw in data[:end].split(b"\n")[:-1]:
            self._lines += 1
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                event = None
            if not isinstance(event, dict):
                self.progress.bad_lines += 1
                if self.progress.first_bad_line is None:
                    self.progress.first_bad_line = self._lines
                continue
            self._apply(event)
        self._offset += end
        self._estimate()
        return self.progress

    # ------------------------------------------------------------------------------ events
    def _apply(self, ev: dict[str, Any]) -> None:
        p = self.progress
        p.events += 1
        t = ev.get("t")
        if isinstance(t, (int, float)):
            p.last_event_t = float(t)
        kind = ev.get("kind")
        if kind in ("stage", "progress", "timing"):
            self._on_row(ev, kind)
        if kind == "stage":
            self._on_stage(ev, p.last_event_t)
        elif kind == "progress":
            if ev.get("stage") != p.stage or ev.get("round") != p.round:
                p.stage, p.round = ev.get("stage"), ev.get("round")
                self._stage_start_t = p.last_event_t
            p.step, p.total = _int(ev.get("step")), _int(ev.get("total"))
            p.elevation = ev.get("elevation", p.elevation)
            if isinstance(ev.get("losses"), dict):
                p.losses = {k: v for k, v in ev["losses"].items() if isinstance(v, (int, float))}
            seconds = ev.get("seconds")
            if not isinstance(seconds, (int, float)) and self._stage_start_t is not None and p.last_event_t:
                seconds = p.last_event_t - self._stage_start_t
            p.stage_seconds = float(seconds) if isinstance(seconds, (int, float)) else None
            p.stage_state = "start"
        elif kind == "timing":
            p.timings.append({k: v for k, v in ev.items() if k not in ("t", "kind")})
        elif kind == "warning":
            p.warning_count += 1
            p.warnings = (p.warnings + [str(ev.get("text"))])[-MAX_TEXTS:]
        elif kind == "message":
            p.messages = (p.messages + [str(ev.get("text"))])[-MAX_TEXTS:]
        elif kind == "error":
            p.last_error = str(ev.get("text"))
        elif kind == "status":
            p.pipeline_status = ev.get("status")
            if p.pipeline_status == "failed" and ev.get("text"):
                p.failed_text = str(ev["text"])

    def _on_row(self, ev: dict[str, Any], kind: str) -> None:
        """The stage table, the running stage and the loss history (cumulative x over stages)."""
        p = self.progress
        key = stage_key(ev)
        row = self._rows.get(key)
        if row is None:  # a stage the schedule does not list (an extra round, a new stage): show it anyway
            row = self._rows[key] = StageRow(key)
            order = list(self._rows)
            order.remove(key)
            order.insert(len(order) - 1, key)  # before "final"
            self._rows = {k: self._rows[k] for k in order}
            p.stage_rows = list(self._rows.values())
        if isinstance(ev.get("elevation"), (int, float)):
            row.elevation = float(ev["elevation"])
        if kind == "stage":
            if ev.get("state") == "start":
                row.state, p.current = "running", key
            elif ev.get("state") == "done":
                row.state, row.step = "done", max(row.step, row.total)
                if p.current == key:
                    p.current = None
        elif kind == "progress":
            if row.state == "pending":
                row.state = "running"
            if row.state == "running":
                p.current = key
            row.step, row.total = _int(ev.get("step")) or 0, _int(ev.get("total")) or 0
            if isinstance(ev.get("seconds"), (int, float)):
                row.seconds = float(ev["seconds"])
            if key not in self._x_offset:
                self._x_offset[key] = sum(self._rows[k].total for k in self._x_offset)
            values = {k: float(v) for k, v in (ev.get("losses") or {}).items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if values:  # the refiner's progress (edits done) carries no losses
                p.loss_history.append({"stage": ev.get("stage"), "round": ev.get("round"), "step": row.step,
                                       "x": self._x_offset[key] + row.step, **values})

    def _on_stage(self, ev: dict[str, Any], t: float | None) -> None:
        p = self.progress
        p.stage, p.stage_state = ev.get("stage"), ev.get("state")
        k = _int(ev.get("round"))
        if p.stage == "round" and k is not None:
            p.round = k
            p.elevation = ev.get("elevation", p.elevation)
            if p.stage_state == "start" and t is not None:
                self._round_start[k] = t
            elif p.stage_state == "done":
                if k not in p.rounds_done:
                    p.rounds_done.append(k)
                if t is not None and k in self._round_start:
                    self._round_seconds[k] = t - self._round_start[k]
        if p.stage_state == "start":
            p.step, p.total, p.stage_seconds, p.seconds_per_step = None, None, 0.0, None
            self._stage_start_t = t

    def _estimate(self) -> None:
        p = self.progress
        p.seconds_per_step = p.stage_eta_s = p.job_eta_s = None
        if p.stage_state == "done" and p.stage == "final":
            p.stage_eta_s = p.job_eta_s = 0.0
            return
        if p.step and p.total and p.stage_seconds is not None and p.step > 0:
            p.seconds_per_step = p.stage_seconds / p.step
            p.stage_eta_s = max(0.0, p.seconds_per_step * (p.total - p.step))
        if p.rounds_total and self._round_seconds and p.stage in ("round", "stage1", "scene"):
            mean_round = sum(self._round_seconds.values()) / len(self._round_seconds)
            in_round = p.stage == "round" and p.stage_state == "start"
            left = p.rounds_total - len(p.rounds_done) - (1 if in_round else 0)
            p.job_eta_s = (p.stage_eta_s or 0.0) * in_round + max(0, left) * mean_round


def fold_events(events: list[dict[str, Any]], rounds_total: int | None = None,
                elevations: list[float] | None = None) -> Progress:
    """The :class:`Progress` of a list of events (the same fold as :class:`ProgressTracker`)."""
    return ProgressTracker(None, rounds_total, elevations).feed(events)


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
