"""Job progress from ``events.jsonl``: the one fold of a job's events, read incrementally (only
the bytes appended since last time). The job host, the job manager (ETAs), the CLI and the app's
progress panel (:func:`skyfall_core.ui.jobs.summarise_events`) all read a job through it.

Event kinds are those of the job-folder contract (stage, progress, timing, warning, message,
error, status). The stage ETA comes from the step rate of the current stage (the pipeline reports
the seconds elapsed in stage 1 with every progress event; a round's steps are timed by their
events). The whole-job ETA (issue 17) adds every stage still to come, from the job's plan
(:class:`JobPlan`, read from ``job.json`` beside ``events.jsonl``) times per-unit costs measured in
the job itself as soon as they can be:

- stage 1: its steps left at its *recent* pace (the last ``RECENT_STEPS`` steps: a step gets
  slower while densification grows the splats, and the machine's load changes), those after
  densification stops (the plan's ``densify_until``) at ``POST_DENSIFY_PACE`` of it until they are
  measured, plus writing its outputs (the renders, DSM and PLY after the last step);
- each round still to come: the measured length of the finished rounds; before the first has
  finished, its edits (seconds a view, measured on the current round's refiner progress; a
  classical refiner's are negligible) plus its training steps at the current round's measured
  pace, else at stage 1's pace scaled by the round's pixel mix (:meth:`JobPlan.round_step_cost`);
- the export (final/): ``FINAL_IN_STAGE1_STEPS`` stage-1 steps at stage 1's pace after densification.

``Progress.job_fraction`` is the share of the whole job done, in time: the seconds spent in the
stages over those plus the ETA. ``Progress.eta_basis`` says in words what the ETA rests on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MAX_TEXTS = 50  # warnings/messages kept (the newest); the counts are exact
ROUND_SUBSTAGES = ("round", "refine")  # events of one stage-2 round: its training steps and its refiner edits

# Whole-job ETA priors, used only until the job has measured the cost itself (see the module doc).
# From preview jobs on the bundled sample on the 2-core development VM, quiet (BENCHMARKS.md,
# "Issue 17: ETA accuracy"; `benchmarks/bench_eta.py` prints them): once densification stops,
# stage 1 prunes its splats and a step costs ~0.7 of the pace before (0.70 and 0.73 in two runs);
# at that pace, writing stage 1's outputs cost ~100 steps (103, 102), the whole export (DSM, GIS
# files, compare renders, fly-down) ~150 (156), and a round's training step 0.73-0.78 of a step:
# about half of a step's cost does not scale with the pixels drawn (projection, optimiser). Under
# heavy load from other processes these ratios move (see the benchmark): nothing in a job's
# events can foresee another process starting or stopping.
RECENT_STEPS = 200  # stage 1's pace: over about its last this many steps
POST_DENSIFY_PACE = 0.7  # a stage-1 step after densification stops, in steps before it
ROUND_STEP_FIXED_SHARE = 0.55  # the share of a step's cost that does not scale with the pixels
STAGE1_OUTPUTS_IN_STAGE1_STEPS = 100.0  # at the pace after densification
FINAL_IN_STAGE1_STEPS = 150.0  # at the pace after densification


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
    job_eta_s: float | None = None  # seconds left in the whole job (every stage still to come; module doc)
    job_fraction: float | None = None  # share of the whole job done, in time (spent / (spent + job_eta_s))
    eta_basis: str | None = None  # what job_eta_s rests on, in words
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


@dataclass(frozen=True)
class JobPlan:
    """The work a job will do, as its whole-job ETA counts it (from its resolved config)."""

    stage1_steps: int | None = None
    densify_until: int | None = None  # stage 1's last densification step (a step is cheaper after it)
    rounds: int | None = None
    round_steps: int | None = None  # training steps a round
    round_edits: int | None = None  # refiner edits a round (views x edits a view)
    round_step_cost: float = 1.0  # a round's training step, in stage-1 steps (a prior: see below)
    diffusion: bool = False  # a diffusion refiner: its edits cost seconds each

    @classmethod
    def from_config(cls, resolved: dict[str, Any], preset: str, rounds: int | None = None,
                    refiner: dict[str, Any] | None = None) -> "JobPlan":
        """From ``job.json``'s resolved config; ``refiner`` is job.json's (set when the rounds start)."""
        pre = ((resolved or {}).get("presets") or {}).get(preset) or {}
        s1, s2, cams = pre.get("stage1") or {}, pre.get("stage2") or {}, pre.get("cameras") or {}
        elevations = s2.get("elevations_deg")
        grid, azimuths, edits = (_int(s2.get(k)) for k in ("lookat_grid", "azimuths", "edits_per_view"))
        views = grid ** 2 * azimuths * (edits or 1) if grid and azimuths else None
        diffusion = str(s2.get("refiner") or "classical") != "classical"
        if isinstance(refiner, dict) and isinstance(refiner.get("is_diffusion"), bool):
            diffusion = refiner["is_diffusion"]  # what really runs (a fallback to classical, say)
        return cls(stage1_steps=_int(s1.get("iterations")), densify_until=_int(s1.get("densify_until")),
                   rounds=rounds if rounds is not None else (len(elevations) if isinstance(elevations, list) else None),
                   round_steps=_int(s2.get("iterations_per_round")), round_edits=views,
                   round_step_cost=cls.round_step_cost_of(_int(s2.get("image_size")), _int(cams.get("max_image_size")),
                                                          s2.get("edited_view_probability")),
                   diffusion=diffusion)

    @staticmethod
    def round_step_cost_of(round_px: int | None, stage1_px: int | None, p_edited: Any) -> float:
        """A round's training step in stage-1 steps: a fixed share plus the rest scaled by the
        pixels drawn (an edited render ``round_px`` a side with probability ``p_edited``, else a
        satellite view of at most ``stage1_px`` a side, as in stage 1)."""
        if not round_px or not stage1_px or not isinstance(p_edited, (int, float)):
            return 1.0
        pixels = (p_edited * round_px ** 2 + (1 - p_edited) * stage1_px ** 2) / stage1_px ** 2
        return ROUND_STEP_FIXED_SHARE + (1 - ROUND_STEP_FIXED_SHARE) * pixels

    @classmethod
    def of_job(cls, folder: str | Path) -> "JobPlan | None":
        """The plan of the job in ``folder`` (its job.json); None when that cannot be read."""
        from skyfall_core.jobfolder import JobError, load_job

        try:
            meta = load_job(folder)
            return cls.from_config(meta.resolved, meta.preset, meta.rounds_total, meta.refiner)
        except (JobError, OSError, ValueError, TypeError):
            return None


class ProgressTracker:
    """Incremental reader of one ``events.jsonl``; call :meth:`update` as often as you like.

    The whole-job ETA uses the job's :class:`JobPlan`: ``plan`` when given, else read from the
    ``job.json`` of ``job_dir`` (default: the folder of ``events_path``)."""

    def __init__(self, events_path: str | Path | None, rounds_total: int | None = None,
                 elevations: list[float] | None = None, *, plan: JobPlan | None = None,
                 job_dir: str | Path | None = None):
        self.path = Path(events_path) if events_path is not None else None
        self._rounds_total = rounds_total
        self._elevations = list(elevations or [])
        self.plan = plan
        self._plan_given = plan is not None
        self._plan_stale = True
        self.job_dir = Path(job_dir) if job_dir is not None else (self.path.parent if self.path is not None else None)
        self._reset()

    def _reset(self) -> None:
        self._offset = 0
        self._lines = 0
        self._inode: int | None = None
        self._stage_start_t: float | None = None
        self._x_offset: dict[str, int] = {}
        self._t_start: dict[str, float] = {}  # stage key -> unix time of its (last) start event
        self._spent: dict[str, float] = {}  # stage key -> seconds of its finished runs
        self._s1: list[tuple[int, float]] = []  # stage 1's (step, seconds since its training began)
        self._s1_tail: float | None = None  # seconds stage 1 took after its last step (writing its outputs)
        self._train: dict[int, list[tuple[int, float]]] = {}  # round -> its training (step, t), from its events
        self._edits: dict[int, list[tuple[int, float]]] = {}  # round -> its refiner's (edits done, t)
        self._round_train: dict[int, tuple[int, float]] = {}  # round -> (steps, train_s) of its timing event
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
            self._on_cost(ev, kind, p.last_event_t)
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

    def _on_cost(self, ev: dict[str, Any], kind: str, t: float | None) -> None:
        """What the whole-job ETA measures: stage times, stage 1's pace, the rounds' edits and steps."""
        key, stage, k = stage_key(ev), ev.get("stage"), _int(ev.get("round"))
        if kind == "stage" and t is not None:
            if ev.get("state") == "start":
                self._t_start[key] = t
                if key == "stage1":
                    self._s1, self._s1_tail = [], None
                if k is not None and stage == "round":
                    self._train.pop(k, None)
                    self._edits[k] = [(0, t)]
                    self._plan_stale = True
            elif ev.get("state") == "done" and key in self._t_start:
                self._spent[key] = self._spent.get(key, 0.0) + max(0.0, t - self._t_start.pop(key))
        elif kind == "progress":
            step, seconds = _int(ev.get("step")), ev.get("seconds")
            if step is None:
                return
            if stage == "stage1" and isinstance(seconds, (int, float)):
                self._s1.append((step, float(seconds)))
            elif stage == "refine" and k is not None and t is not None:
                self._edits.setdefault(k, []).append((step, t))
            elif stage == "round" and k is not None and t is not None:
                if k not in self._train:  # training starts after the last edit: time its steps from there
                    self._train[k] = [(0, self._edits[k][-1][1] if self._edits.get(k) else t)]
                self._train[k].append((step, t))
        elif kind == "timing":
            seconds = ev.get("seconds")
            if stage == "stage1" and isinstance(seconds, (int, float)) and self._s1:
                self._s1_tail = max(0.0, float(seconds) - self._s1[-1][1])
            elif stage == "round" and k is not None and isinstance(ev.get("train_s"), (int, float)):
                steps = self._rows.get(f"round_{k}")
                if steps is not None and steps.total:
                    self._round_train[k] = (steps.total, float(ev["train_s"]))

    def _on_stage(self, ev: dict[str, Any], t: float | None) -> None:
        p = self.progress
        p.stage, p.stage_state = ev.get("stage"), ev.get("state")
        k = _int(ev.get("round"))
        if p.stage == "round" and k is not None:
            p.round = k
            p.elevation = ev.get("elevation", p.elevation)
            if p.stage_state == "done" and k not in p.rounds_done:
                p.rounds_done.append(k)
        if p.stage_state == "start":
            p.step, p.total, p.stage_seconds, p.seconds_per_step = None, None, 0.0, None
            self._stage_start_t = t

    def _estimate(self) -> None:
        p = self.progress
        p.seconds_per_step = p.stage_eta_s = p.job_eta_s = p.job_fraction = p.eta_basis = None
        if p.stage_state == "done" and p.stage == "final":
            p.stage_eta_s = p.job_eta_s = 0.0
            p.job_fraction = 1.0
            return
        s1 = self._stage1_left(self._job_plan())  # (seconds left in its steps, its pace after densification)
        if p.step and p.total and p.stage_seconds is not None and p.step > 0:
            p.seconds_per_step = p.stage_seconds / p.step
            p.stage_eta_s = max(0.0, p.seconds_per_step * (p.total - p.step))
            if p.stage == "stage1" and s1[0] is not None:
                p.seconds_per_step, p.stage_eta_s = self._stage1_pace(), s1[0]
        self._job_eta(*s1)

    # ------------------------------------------------------------------------- whole-job ETA
    def _job_plan(self) -> JobPlan | None:
        """The plan given to the tracker, else the job's job.json (read again when a round starts:
        the pipeline records there which refiner really runs)."""
        if self._plan_given or self.job_dir is None:
            return self.plan
        if self._plan_stale:
            self._plan_stale = False
            self.plan = JobPlan.of_job(self.job_dir) or self.plan
        return self.plan

    def _stage1_pace(self, since: int | None = None) -> float | None:
        """Seconds a stage-1 step over its last ~RECENT_STEPS steps (its whole run while shorter;
        with ``since``, only the steps after that one: None before two events there).

        A progress event's ``seconds`` count from the start of this run of stage 1: step 0, or the
        checkpoint a resumed run started from (its first event is then past step 25, and the pace
        is timed from that event on)."""
        if not self._s1:
            return None
        last_step, last_s = self._s1[-1]
        base = (0, 0.0) if self._s1[0][0] <= 25 else self._s1[0]
        base = next(((st, sec) for st, sec in reversed(self._s1[:-1]) if last_step - st >= RECENT_STEPS), base)
        if since is not None and base[0] < since:
            base = next(((st, sec) for st, sec in self._s1 if st >= since), (last_step, last_s))
        return (last_s - base[1]) / (last_step - base[0]) if last_step > base[0] else None

    def _stage1_left(self, plan: JobPlan | None) -> tuple[float | None, float | None]:
        """(seconds left in stage 1's steps, its pace once densification has stopped: the pace the
        rounds' and the export's priors scale) from its recent pace and the plan; (None, None)
        before stage 1 has a pace."""
        pace = self._stage1_pace()
        if pace is None:
            return None, None
        total = (plan.stage1_steps if plan else None) or self._rows["stage1"].total or 0
        step = self._s1[-1][0]
        until = plan.densify_until if plan and plan.densify_until and plan.densify_until < total else None
        if until is None:
            return max(0, total - step) * pace, pace
        if step < until:  # still densifying: the steps after it at POST_DENSIFY_PACE of the pace now
            post = pace * POST_DENSIFY_PACE
            return (until - step) * pace + (total - until) * post, post
        post = self._stage1_pace(since=until) or pace * POST_DENSIFY_PACE
        return max(0, total - step) * post, post

    def _round_pace(self, k: int) -> float | None:
        """Seconds a training step of round k, timed by its progress events (None before two)."""
        pts = self._train.get(k) or []
        if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
            return None
        return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])

    def _train_pace(self, stage1_pace: float | None, plan: JobPlan | None) -> tuple[float | None, bool]:
        """(seconds a round's training step, measured?): the finished rounds' (timing events), else
        the running round's, else stage 1's pace times the plan's :meth:`JobPlan.round_step_cost`."""
        done = [sec / steps for steps, sec in self._round_train.values() if steps > 0]
        if done:
            return sum(done) / len(done), True
        running = [pace for pace in map(self._round_pace, self._train) if pace is not None]
        if running:
            return running[-1], True
        if stage1_pace is None:
            return None, False
        return stage1_pace * (plan.round_step_cost if plan is not None else 1.0), False

    def _edit_pace(self, plan: JobPlan | None) -> float | None:
        """Seconds a refiner edit (the befores' renders included), timed by the rounds' refiner
        progress; before that 0 for a classical refiner (a fraction of a second a round), None
        (unknown) for a diffusion one."""
        rates = [(pts[-1][1] - pts[0][1]) / pts[-1][0] for pts in self._edits.values() if len(pts) >= 2 and pts[-1][0]]
        if rates:
            return sum(rates) / len(rates)
        return None if plan is not None and plan.diffusion else 0.0

    def _job_eta(self, s1_left: float | None, s1_pace: float | None) -> None:
        """``job_eta_s``, ``job_fraction`` and ``eta_basis`` (see the module doc), from stage 1's
        :meth:`_stage1_left` (``s1_pace``: after densification)."""
        p = self.progress
        plan = self._job_plan()
        train_pace, train_measured = self._train_pace(s1_pace, plan)
        edit_pace = self._edit_pace(plan)
        n_rounds = p.rounds_total if p.rounds_total is not None else (plan.rounds if plan else None)
        round_steps = (plan.round_steps if plan else None) or next(
            (self._rows[f"round_{k}"].total for k in self._train if f"round_{k}" in self._rows), None)
        round_edits = (plan.round_edits if plan else None) or 0
        finished = [self._spent[f"round_{k}"] for k in p.rounds_done if f"round_{k}" in self._spent]
        notes: list[str] = []
        # a round still to come
        if finished:
            per_round, basis = sum(finished) / len(finished), "the finished rounds' length"
        elif train_pace is not None and round_steps:
            per_round = round_steps * train_pace + round_edits * (edit_pace or 0.0)
            basis = "the rounds' measured steps" if train_measured else "stage 1's pace (rounds scaled by pixels)"
            if edit_pace is None:
                notes.append("the diffusion edits are not timed yet")
        else:
            per_round, basis = None, ""
        # the export: FINAL_IN_STAGE1_STEPS steps at stage 1's pace (not counted without one)
        final = FINAL_IN_STAGE1_STEPS * s1_pace if s1_pace is not None else 0.0
        if s1_pace is None:
            notes.append("the export is not counted")

        key = p.current or (stage_key({"stage": p.stage, "round": p.round}) if p.stage else None)
        eta = 0.0
        rounds_left = (n_rounds or 0) - len(p.rounds_done)
        if key in ("scene", "stage1") or key is None:
            if s1_left is None:
                return  # nothing measured yet (scene preparation, stage 1's first steps)
            eta += s1_left
            eta += self._s1_tail if self._s1_tail is not None else STAGE1_OUTPUTS_IN_STAGE1_STEPS * s1_pace
            basis = "stage 1's recent pace" + (f"; rounds from {basis}" if basis else "")
        elif key.startswith("round_") and int(key.split("_")[1]) not in p.rounds_done:
            k = int(key.split("_")[1])
            rounds_left -= 1
            row = self._rows[key]
            if k in self._train:  # training: its steps left at its own pace
                pace = self._round_pace(k) or train_pace
                eta += max(0, row.total - row.step) * (pace or 0.0)
            else:  # editing: the edits left, then all of its training
                edits = self._edits.get(k) or [(0, 0.0)]
                eta += max(0, (row.total or round_edits) - edits[-1][0]) * (edit_pace or 0.0)
                eta += (round_steps or 0) * (train_pace or 0.0)
        elif key == "final":
            rounds_left, final = 0, 0.0
            started = self._t_start.get("final")
            elapsed = p.last_event_t - started if started is not None and p.last_event_t else 0.0
            eta += max(0.0, FINAL_IN_STAGE1_STEPS * (s1_pace or 0.0) - elapsed)
        if rounds_left > 0 and per_round is None:
            return  # the rounds' cost is still unknown
        eta += max(0, rounds_left) * (per_round or 0.0) + final
        p.job_eta_s = eta
        now = p.last_event_t or 0.0
        spent = sum(self._spent.values()) + sum(max(0.0, now - t) for t in self._t_start.values())
        p.job_fraction = min(1.0, spent / (spent + eta)) if spent + eta > 0 else None
        p.eta_basis = "; ".join([basis or "measured steps", *notes])


def fold_events(events: list[dict[str, Any]], rounds_total: int | None = None,
                elevations: list[float] | None = None, plan: JobPlan | None = None) -> Progress:
    """The :class:`Progress` of a list of events (the same fold as :class:`ProgressTracker`)."""
    return ProgressTracker(None, rounds_total, elevations, plan=plan).feed(events)


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
