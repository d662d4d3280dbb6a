"""Jobs: every job of the workspace with status and progress; cancel, resume, clone, delete; logs."""

import streamlit as st

from skyfall_core.errors import SkyfallError
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.jobs import ACTIVE, age_text
from skyfall_core.ui.state import get_jobs
from skyfall_core.ui.static import unpublish_job
from skyfall_core.ui.widgets import job_picker, live_progress, status_text

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

st.title("📋 Jobs")
jobs = get_jobs()
ids = jobs.ids()
if not ids:
    st.info("No jobs yet. Start one on the **Reconstruct** page.")
    st.stop()

rows = []
names = {}
for job_id in ids:
    try:
        names[job_id] = jobs.info(job_id).name
    except SkyfallError:
        continue
for job_id in ids:
    try:
        info, p = jobs.info(job_id), jobs.progress(job_id)
    except SkyfallError as exc:
        rows.append({"name": "", "job": job_id, "status": "unreadable", "progress": 0.0, "error": exc.message})
        continue
    rounds_done = sum(s.state == "done" for s in p.stages if s.key.startswith("round_"))
    rows.append({"name": info.name, "job": job_id, "status": status_text(p.status), "progress": p.fraction,
                 "preset": info.preset, "rounds": f"{rounds_done} / {p.rounds_total}",
                 "created": age_text(info.created), "parent": names.get(info.parent, info.parent or ""),
                 "error": p.error or ""})
st.dataframe(rows, hide_index=True, width="stretch", column_config={
    "progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0, format="percent")})

st.divider()
job_id = job_picker("Job", key="jobs_job")
if job_id is None:
    st.stop()
live_progress(job_id, key="jobs")

with st.expander("🗑 Delete this job"):
    status = jobs.progress(job_id).status
    if status in ACTIVE:
        st.caption("Cancel the job before deleting it.")
    else:
        sure = st.checkbox(f"Yes, delete {job_id} and all its files", key=f"sure_{job_id}")
        if st.button("Delete", type="primary", disabled=not sure, key=f"del_{job_id}"):
            try:
                jobs.delete(job_id)
                unpublish_job(job_id)
            except SkyfallError as exc:
                st.error(exc.message)
            else:
                st.session_state["job_id"] = None
                st.toast(f"Deleted {job_id}")
                st.rerun()

with st.expander("📜 Log"):
    try:
        st.code(jobs.log_tail(job_id) or "(empty)", language=None)
    except SkyfallError as exc:
        st.error(exc.message)
