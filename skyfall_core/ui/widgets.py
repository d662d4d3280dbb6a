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


def render_progress(job_id: str, progress: JobProgress) -> None:
    """The progress panel body (status, overall and per-stage bars, ETA, losses, warnings)."""
    jobs = get_jobs()
    info = jobs.info(job_id)
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    c1.markdown(f"**{info.name}**  \n`{job_id}` · preset `{info.preset}` · {age_text(info.created)}")
    c2.metric("Status", status_text(progress.status))
    rnd = f"{progress.round + 1} / {progress.rounds_total}" if progress.round is not None else \
        (f"– / {progress.rounds_total}" if progress.rounds_total else "–")
    c3.metric("Round", rnd, f"{progress.elevation:g}° elevation" if progress.elevation is not None else None,
              delta_color="off")
    c4.metric("ETA", fmt_seconds(progress.job_eta_s if progress.job_eta_s is not None else progress.eta_s),
              f"stage {fmt_seconds(progress.eta_s)}" if progress.eta_s is not None else None, delta_color="off")
    st.progress(progress.fraction, text=f"Overall {progress.fraction:.0%}")
    with st.container(border=True):
        for s in progress.stages:
            icon = {"done": "✅", "running": "🔄", "pending": "▫️"}[s.state]
            steps = f" — step {s.step:,} / {s.total:,}" if s.total else ""
            st.progress(s.fraction, text=f"{icon} {s.label}{steps}")
    frame = _losses_frame(progress)
    if frame is not None:
        st.caption("Training losses (x: cumulative steps over stage 1 and the rounds)")
        st.line_chart(frame, height=220)
    if progress.error:
        st.error(progress.error)
    for w in progress.warnings[-5:]:
        st.warning(w)
    if progress.messages:
        with st.expander(f"Messages ({len(progress.messages)})"):
            st.text("\n".join(progress.messages[-50:]))


def job_actions(job_id: str, progress: JobProgress, key: str) -> None:
    """Cancel / resume / clone buttons for one job (delete lives on the Jobs page)."""
    jobs = get_jobs()
    b1, b2, b3, _ = st.columns([1, 1, 1, 3])
    try:
        if progress.status in ACTIVE and b1.button("⏹ Cancel", key=f"{key}_cancel", width="stretch"):
            jobs.cancel(job_id)
            st.toast("Cancel requested: the job stops after its current step and keeps what it finished.")
        if progress.status in RESUMABLE and b2.button("▶ Resume", key=f"{key}_resume",
                                                                    width="stretch"):
            jobs.resume(job_id)
            st.toast("Resumed from the last finished stage.")
            st.rerun()
        if b3.button("⧉ Clone", key=f"{key}_clone", width="stretch",
                     help="A new job with the same AOI, scenes and settings (change them on Reconstruct)"):
            new_id = jobs.clone(job_id, {})
            st.session_state["job_id"] = new_id
            st.toast(f"Cloned as {new_id}")
            st.rerun()
    except SkyfallError as exc:
        st.error(exc.message)


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
