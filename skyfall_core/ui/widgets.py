"""Page pieces used by several pages: job picker, status badge, live progress panel, job actions."""

from __future__ import annotations

import time

import streamlit as st

from skyfall_core.errors import SkyfallError
from skyfall_core.jobfolder import JobDir
from skyfall_core.ui.jobs import ACTIVE, RESUMABLE, JobProgress, age_text
from skyfall_core.ui.state import get_jobs

STATUS_ICON = {"queued": "⏳", "running": "🔄", "cancelling": "⏳", "done": "✅", "failed": "❌",
               "cancelled": "⏹️", "interrupted": "⚠️", "broken": "⛔"}


def status_text(status: str) -> str:
    return f"{STATUS_ICON.get(status, '•')} {status}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(round(s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def job_label(job_id: str) -> str:
    jobs = get_jobs()
    try:
        info = jobs.info(job_id)
    except SkyfallError:
        return f"{job_id} (unreadable)"
    return f"{info.name} · {info.preset} · {job_id}"


def job_picker(label: str = "Job", key: str = "job_picker", only_with: str | None = None) -> str | None:
    """A select box of the workspace's jobs (newest first); remembers the choice in session state.

    ``only_with`` = "rounds" or "final" lists only jobs that have that output.
    """
    jobs = get_jobs()
    ids = jobs.ids()
    if only_with == "rounds":
        ids = [i for i in ids if JobDir(jobs.folder(i)).round_dirs()]
    elif only_with == "final":
        ids = [i for i in ids if JobDir(jobs.folder(i)).final.is_dir()]
    if not ids:
        return None
    current = st.session_state.get("job_id")
    index = ids.index(current) if current in ids else 0
    chosen = st.selectbox(label, ids, index=index, format_func=job_label, key=key)
    st.session_state["job_id"] = chosen
    return chosen


def picked_job_or_stop(only_with: str, key: str, empty: str):
    """The chosen job's info (``job_picker``), or ``empty`` shown and the page stopped."""
    job_id = job_picker(only_with=only_with, key=key)
    if job_id is None:
        st.info(empty)
        st.stop()
    try:
        return get_jobs().info(job_id)
    except SkyfallError as exc:
        st.error(exc.message)
        st.stop()


def _losses_frame(progress: JobProgress):
    import pandas as pd

    if not progress.losses:
        return None
    df = pd.DataFrame(progress.losses)
    # "gaussians" is a count (thousands), not a loss: on the same axis it flattens the losses to zero
    cols = [c for c in df.columns if c not in ("stage", "round", "step", "x", "gaussians")]
    if not cols:
        return None
    return df.set_index("x")[cols]


def rounds_text(progress: JobProgress) -> str:
    """The "Round" metric: the running round, else the rounds done ("3 / 3" once the job is done)."""
    total = progress.rounds_total
    if not total:
        return "–"
    if progress.status == "done":
        return f"{total} / {total}"
    if progress.round is not None and progress.status in ACTIVE:
        return f"{progress.round + 1} / {total}"
    done = sum(1 for s in progress.stages if s.key.startswith("round_") and s.state == "done")
    return f"{done} / {total}"


def round_substep(progress: JobProgress, key: str) -> str:
    """"training" when the round's training has reported (its progress carries losses), else "refiner"
    (a round first has the refiner edit its renders, then trains on them)."""
    k = int(key.split("_")[1])
    return "training" if any(row.get("round") == k and row.get("stage") == "round" for row in progress.losses) \
        else "refiner"


def stage_text(progress: JobProgress, s) -> str:
    """One stage bar's text; a round says which of its two sub-steps the count is (one unit each)."""
    active = progress.status in ACTIVE
    icon = {"done": "✅", "pending": "▫️"}.get(s.state) or (
        "🔄" if active else {"cancelled": "⏹️", "failed": "❌", "interrupted": "⚠️"}.get(progress.status, "⏸️"))
    text = f"{icon} {s.label}"
    if not active and s.state == "running":
        text += f" — stopped ({progress.status})"
    if not s.total:
        return text
    if s.key.startswith("round_"):
        if round_substep(progress, s.key) == "training":
            return text + f" — training: step {s.step:,} / {s.total:,}"
        return text + f" — refiner: {s.step:,} / {s.total:,} views edited, then training"
    return text + f" — step {s.step:,} / {s.total:,}"


def whole_job_eta(progress: JobProgress, iterations_per_round: int | None) -> tuple[float | None, str]:
    """(seconds left in the whole job, how it was estimated). The progress fold's estimate (the job's
    plan at the measured costs) when it has one; without a plan, the current stage's ETA plus the remaining
    rounds' training steps (the preset's iterations per round) at the measured seconds a step."""
    if progress.status not in ACTIVE:
        return None, ""
    if progress.job_eta_s is not None:
        return progress.job_eta_s, progress.eta_basis or "the job's plan at the measured pace"
    cur = next((s for s in progress.stages if s.key == progress.current), None)
    rate = None
    if cur is not None and progress.eta_s is not None and cur.total > cur.step:
        cur_rate = progress.eta_s / (cur.total - cur.step)
        if cur.key == "stage1" or (cur.key.startswith("round_") and round_substep(progress, cur.key) == "training"):
            rate = cur_rate
    if rate is None:  # stage 1's measured seconds a step
        s1 = next((s for s in progress.stages if s.key == "stage1"), None)
        secs = next((float(t["seconds"]) for t in progress.timings
                     if t.get("stage") == "stage1" and isinstance(t.get("seconds"), (int, float))), None)
        if s1 is not None and s1.total and secs:
            rate = secs / s1.total
    if rate is None or not iterations_per_round:
        return None, ""
    left = [s for s in progress.stages
            if s.key.startswith("round_") and s.state != "done" and s.key != progress.current]
    eta = progress.eta_s or 0.0
    if cur is not None and cur.key.startswith("round_") and round_substep(progress, cur.key) == "refiner":
        eta += iterations_per_round * rate  # this round's training is still to come
    eta += len(left) * iterations_per_round * rate
    return eta, "estimated: stage ETA + remaining rounds' steps at the measured pace (export not counted)"


def render_progress(job_id: str, progress: JobProgress) -> None:
    """The progress panel body (status, overall and per-stage bars, ETA, losses, warnings)."""
    jobs = get_jobs()
    info = jobs.info(job_id)
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    c1.markdown(f"**{info.name}**  \n`{job_id}` · preset `{info.preset}` · {age_text(info.created)}")
    c2.metric("Status", status_text(progress.status))
    c3.metric("Round", rounds_text(progress),
              f"{progress.elevation:g}° elevation" if progress.elevation is not None and progress.status in ACTIVE
              else None, delta_color="off")
    ipr = info.stage2.get("iterations_per_round")
    eta, basis = whole_job_eta(progress, int(ipr) if isinstance(ipr, (int, float)) else None)
    if progress.status in ACTIVE:
        c4.metric("ETA (whole job)", fmt_seconds(eta) if eta is not None else "estimating…",
                  f"stage {fmt_seconds(progress.eta_s)}" if progress.eta_s is not None else None, delta_color="off",
                  help=basis or "An estimate appears once stage 1 has reported its first steps.")
    else:
        c4.metric("ETA (whole job)", "–", progress.status, delta_color="off")
    st.progress(progress.fraction, text=f"Overall {progress.fraction:.0%}")
    with st.container(border=True):
        for s in progress.stages:
            st.progress(s.fraction, text=stage_text(progress, s))
    frame = _losses_frame(progress)
    if frame is not None:
        st.caption("Training losses (x: cumulative training steps over stage 1 and the rounds)")
        st.line_chart(frame, height=220)
    if progress.error:
        st.error(progress.error)
    for w in progress.warnings[-5:]:
        st.warning(w)
    if progress.messages:
        with st.expander(f"Messages ({len(progress.messages)})"):
            st.text("\n".join(progress.messages[-50:]))


def start_clone(job_id: str) -> None:
    """Clone = an editable copy: the draft takes the job's AOI and scenes, the Reconstruct page its
    preset, settings and schedule (``clone_from`` in session state); nothing starts until Start."""
    from skyfall_core.ui.draft import draft_from_job
    from skyfall_core.ui.state import scene_folders

    jobs = get_jobs()
    info = jobs.info(job_id)
    draft_from_job(jobs.workspace, info.aoi, info.scenes, job_id, scene_folders())
    st.session_state["clone_from"] = job_id
    st.switch_page("pages/reconstruct.py")


def job_actions(job_id: str, progress: JobProgress, key: str) -> None:
    """Cancel / resume / clone buttons for one job (delete lives on the Jobs page); links to the
    Viewer and Rounds pages once it is done."""
    jobs = get_jobs()
    b1, b2, b3, _ = st.columns([1, 1, 1, 3])
    try:
        if progress.status in ACTIVE and b1.button("Cancel", icon=":material/stop_circle:", key=f"{key}_cancel",
                                                   width="stretch"):
            jobs.cancel(job_id)
            st.toast("Cancel requested: the job stops after its current step and keeps what it finished.")
        if progress.status in RESUMABLE and b2.button("Resume", icon=":material/play_arrow:", key=f"{key}_resume",
                                                      width="stretch"):
            jobs.resume(job_id)
            st.toast("Resumed from the last finished stage.")
            st.rerun()
        if b3.button("Clone", icon=":material/content_copy:", key=f"{key}_clone", width="stretch",
                     help="Opens Reconstruct with this job's AOI, scenes and settings to change; "
                          "it starts when you press Start"):
            start_clone(job_id)
    except SkyfallError as exc:
        st.error(exc.message)
    if progress.status == "done":
        l1, l2, _ = st.columns([1, 1, 2])
        l1.page_link("pages/viewer.py", label="Open in Viewer", icon=":material/view_in_ar:")
        l2.page_link("pages/rounds.py", label="Open in Rounds", icon=":material/compare:")


def running_job(jobs=None) -> str | None:
    """The newest job that is queued or running (for a page opened in a new tab or after a reload)."""
    jobs = jobs or get_jobs()
    active = [i for i in jobs.manager.list() if i.status in ACTIVE]
    if not active:
        return None
    return max(active, key=lambda i: (i.created or "", i.id)).id


def running_job_of_draft(jobs, draft) -> tuple[str, str] | None:
    """(id, name) of a queued or running job started from this draft (same AOI, its scenes among the
    draft's), or None: Start stays disabled meanwhile."""
    from skyfall_core.ui.reconstruct import same_draft

    if draft.aoi is None:
        return None
    for rec in jobs.manager.list():
        if rec.status not in ACTIVE:
            continue
        try:
            info = jobs.info(rec.id)
        except SkyfallError:
            continue
        if same_draft(info.aoi, info.scenes, draft.aoi, draft.scenes):
            return rec.id, info.name
    return None


def live_progress(job_id: str, key: str = "live") -> None:
    """Progress panel that polls the job folder every 2 s while the job runs (a fragment), so only
    this panel reruns; state comes from the job store/folder, so it survives page reloads."""
    jobs = get_jobs()
    first = jobs.progress(job_id)
    run_every = 2.0 if first.status in ACTIVE else None

    @st.fragment(run_every=run_every)
    def _panel() -> None:
        progress = jobs.progress(job_id)
        render_progress(job_id, progress)
        job_actions(job_id, progress, key)
        if run_every is not None and progress.status not in ACTIVE:
            st.session_state[f"{key}_finished_at"] = time.time()
            st.rerun()  # the whole page: stop polling, show the outputs

    _panel()
