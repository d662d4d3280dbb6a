"""Compare: jobs with different elevation schedules side by side (renders, rounds, timings, metrics)."""

import streamlit as st

from skyfall_core.errors import SkyfallError
from skyfall_core.ui.compare import compare_rows, matching_compare_images
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.jobs import list_rounds
from skyfall_core.ui.outputs import timing_table
from skyfall_core.ui.state import get_jobs, image_thumb
from skyfall_core.ui.widgets import job_label

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

st.title("⚖️ Compare jobs")
jobs = get_jobs()
ids = jobs.ids()
if len(ids) < 2:
    st.info("Compare needs at least two jobs (clone a job and change its elevation schedule).")
    st.stop()
default = [i for i in st.session_state.get("compare_ids", []) if i in ids] or ids[:2]
chosen = st.multiselect("Jobs", ids, default=default, format_func=job_label, key="compare_pick")
st.session_state["compare_ids"] = list(chosen)
if len(chosen) < 2:
    st.info("Pick two or more jobs.")
    st.stop()

try:
    infos = [jobs.info(i) for i in chosen]
    progs = [jobs.progress(i) for i in chosen]
except SkyfallError as exc:
    st.error(exc.message)
    st.stop()

st.subheader("Settings and metrics")
st.dataframe(compare_rows(infos, progs), hide_index=True, width="stretch")

st.subheader("Timings")
rows = [r for info, p in zip(infos, progs, strict=True) for r in timing_table(info.id, p.timings)]
if rows:
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(rows).melt(id_vars=["job", "stage"], var_name="part", value_name="seconds").dropna()
    st.altair_chart(alt.Chart(df).mark_bar().encode(
        x=alt.X("sum(seconds):Q", title="seconds"), y=alt.Y("job:N", title=None), color="part:N",
        row=alt.Row("stage:N", title=None), tooltip=["job", "stage", "part", "seconds"]).properties(height=40),
        width="stretch")
else:
    st.caption("No timing events yet.")

st.subheader("Same cameras")
pairs = matching_compare_images([i.dir for i in infos])
if pairs:
    name = st.select_slider("Camera", options=sorted(pairs), key="compare_cam")
    cols = st.columns(len(infos))
    for col, info, path in zip(cols, infos, pairs[name], strict=True):
        with col:
            st.caption(info.name)
            if path is not None:
                st.image(image_thumb(str(path), path.stat().st_mtime_ns, 640), width="stretch")
            else:
                st.caption("—")
else:
    st.caption("No final/compare/ renders (the pipeline writes them when it renders every job at shared cameras); "
               "the per-round 'after' images below are from each job's own cameras.")

st.subheader("Per round")
rounds = [list_rounds(i.dir) for i in infos]
n = max((len(r) for r in rounds), default=0)
for k in range(n):
    cols = st.columns(len(infos))
    for col, info, rr in zip(cols, infos, rounds, strict=True):
        with col:
            if k < len(rr):
                r = rr[k]
                st.caption(f"{info.name} · round {k + 1} · {r.elevation:g}°")
                afters = [a for _, a in r.pairs if a is not None][:3]
                if afters:
                    st.image([image_thumb(str(a), a.stat().st_mtime_ns, 256) for a in afters], width=120)
            else:
                st.caption(f"{info.name} · no round {k + 1}")
