"""Compare: jobs with different elevation schedules side by side (same-camera renders, a slider
between two jobs, their final splats in two linked 3D viewers, settings and metrics, timings, rounds)."""

from pathlib import Path

import streamlit as st

from skyfall_core.errors import SkyfallError
from skyfall_core.jobfolder import JobDir
from skyfall_core.ui.compare import (
    compare_cameras,
    compare_rows,
    default_selection,
    display_names,
    dsm_metrics,
    find_truth_dsm,
    group_cameras,
    settings_table,
    stage1_psnr,
    synced_pair,
    timing_rows,
)
from skyfall_core.ui.components import before_after_html
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.imagery import data_url
from skyfall_core.ui.jobs import list_rounds
from skyfall_core.ui.state import get_config, get_jobs, image_thumb
from skyfall_core.ui.widgets import STATUS_ICON

page_guard()  # when Streamlit started this file without app.py: rerun through app.py


@st.cache_data(show_spinner="Comparing the DSM with the truth DSM…", max_entries=64)
def _dsm_metrics(pred: str, mtime_ns: int, truth: str) -> dict[str, float] | str:
    try:
        return dsm_metrics(Path(pred), Path(truth))
    except SkyfallError as exc:
        return exc.message


@st.cache_data(max_entries=256)
def _png_url(path: str, mtime_ns: int) -> str:
    return data_url(Path(path).read_bytes(), "image/png")


st.title("⚖️ Compare jobs")
jobs = get_jobs()
ids = jobs.ids()
if len(ids) < 2:
    st.info("Compare needs at least two jobs (clone a job and change its elevation schedule).")
    st.stop()

metas, statuses = {}, {}
for i in ids:
    try:
        metas[i] = jobs.info(i)
        statuses[i] = jobs.record(i).status
    except SkyfallError:
        continue
ids = [i for i in ids if i in metas]
names = display_names(list(metas.values()))
default = [i for i in st.session_state.get("compare_ids", []) if i in ids] or default_selection(ids, statuses)
chosen = st.multiselect("Jobs", ids, default=default, key="compare_pick",
                        format_func=lambda i: f"{names[i]} · {metas[i].preset} · {STATUS_ICON.get(statuses[i], '')} "
                                              f"{statuses[i]}",
                        help="Finished jobs are selected at first; cancelled and failed ones can be added.")
st.session_state["compare_ids"] = list(chosen)
if len(chosen) < 2:
    st.info("Pick two or more jobs (finished jobs have the same-camera renders).")
    st.stop()

try:
    infos = [metas[i] for i in chosen]
    progs = [jobs.progress(i) for i in chosen]
except SkyfallError as exc:
    st.error(exc.message)
    st.stop()
labels = [names[i.id] for i in infos]


def _pick_pair(left_col, right_col) -> tuple[int, int]:
    """The Left and Right jobs of the slider and of the linked 3D viewers (indices into infos)."""
    left = left_col.selectbox("Left", range(len(infos)), format_func=lambda k: labels[k], key="compare_left")
    right = right_col.selectbox("Right", range(len(infos)), index=1, format_func=lambda k: labels[k],
                                key="compare_right")
    return left, right


def _synced_3d(left_i: int, right_i: int, heading: bool = True) -> None:
    if heading:
        st.markdown("**Synced 3D**")
    try:
        pair = synced_pair(infos[left_i], infos[right_i], (labels[left_i], labels[right_i]), get_config().aoi)
    except SkyfallError as exc:
        st.error(exc.message)
        return
    if pair.html is None:
        st.info(pair.message)
        return
    st.iframe(pair.html, height=540)
    st.caption(f"Final splats: left **{labels[left_i]}**, right **{labels[right_i]}**, in one AOI's local ENU; the "
               "two cameras move together (drag: orbit · right-drag: pan · wheel: zoom · W/A/S/D/Q/E: fly · R: "
               "reset; the presets of either viewer). " + pair.message)


# ----------------------------------------------------------------------------- same cameras
st.subheader("Same cameras")
cams = compare_cameras([i.dir for i in infos])
if not cams:
    st.info("These jobs share no same-camera renders yet: every finished job writes them to final/compare/ "
            "(a job still running, cancelled or from an older version has none).")
    st.markdown("**Synced 3D**")
    _synced_3d(*_pick_pair(*st.columns(2)), heading=False)
else:
    missing = [lab for lab, info in zip(labels, infos, strict=True) if not JobDir(info.dir).compare.is_dir()]
    if missing:
        st.caption("No same-camera renders for: " + ", ".join(missing) + " (not finished).")
    st.markdown("**Slider between two jobs**")
    s1, s2, s3 = st.columns([2, 2, 3])
    left_i, right_i = _pick_pair(s1, s2)
    cam_i = s3.selectbox("Camera", range(len(cams)), format_func=lambda k: cams[k].label, key="compare_cam")
    cam = cams[cam_i]
    a, b = cam.paths[left_i], cam.paths[right_i]
    if a is not None and b is not None:
        st.iframe(before_after_html(_png_url(str(a), a.stat().st_mtime_ns), _png_url(str(b), b.stat().st_mtime_ns),
                                    width=384, height=384, before_label=labels[left_i], after_label=labels[right_i]),
                  height=520)
        st.caption(f"{cam.label}: drag the handle; left of it **{labels[left_i]}**, right of it **{labels[right_i]}**.")
    else:
        st.caption(f"{cam.label}: one of the two jobs has no render of this camera.")
    _synced_3d(left_i, right_i)

    st.markdown("**Side by side, per camera**")
    groups = group_cameras(cams)
    for tab, members in zip(st.tabs(list(groups)), groups.values(), strict=True):
        with tab:
            for c in members:
                st.markdown(f"**{c.label}** · `{c.file}`")
                cols = st.columns(len(infos))
                for col, lab, path in zip(cols, labels, c.paths, strict=True):
                    with col:
                        if path is not None:
                            st.image(image_thumb(str(path), path.stat().st_mtime_ns, 512), caption=lab, width="stretch")
                        else:
                            st.caption(f"{lab}: —")

# ----------------------------------------------------------------------------- settings and metrics
st.subheader("Settings and metrics")
metrics = []
truths = []
for info in infos:
    m = {"stage-1 PSNR (dB, satellite views)": stage1_psnr(info.dir)}
    truth = find_truth_dsm(info.scenes)
    dsm = JobDir(info.dir).final_file("dsm")
    if truth is not None and dsm.is_file():
        res = _dsm_metrics(str(dsm), dsm.stat().st_mtime_ns, str(truth))
        if isinstance(res, dict):
            m |= {"DSM MAE (m)": round(res["mae_m"], 2), "DSM RMSE (m)": round(res["rmse_m"], 2),
                  "DSM completeness (<1 m)": round(res["completeness"], 3)}
        else:
            m["DSM MAE (m)"] = res
        truths.append(truth)
    else:
        m["DSM MAE (m)"] = None if truth is None else "no final DSM"
    metrics.append(m)
table = settings_table(compare_rows(infos, progs, metrics), labels)
st.dataframe(table, width="stretch", height=min(38 + 35 * len(table), 720))
if truths:
    st.caption(f"DSM errors against the truth DSM `{truths[0]}` (after a ±2 m registration search); PSNR is "
               "stage 1's fit to the satellite views.")
else:
    st.caption("No truth DSM next to these jobs' scenes: no DSM error. PSNR is stage 1's fit to the satellite views.")

# ----------------------------------------------------------------------------- timings
st.subheader("Timings")
rows = timing_rows(labels, progs)
if rows:
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(rows)
    st.altair_chart(alt.Chart(df).mark_bar().encode(
        x=alt.X("sum(seconds):Q", title="seconds"), y=alt.Y("job:N", title=None, sort=labels),
        color=alt.Color("part:N", title="part"),
        row=alt.Row("stage:N", title=None, sort=list(dict.fromkeys(r["stage"] for r in rows)),
                    header=alt.Header(labelAngle=0, labelAlign="left")),
        tooltip=["job", "stage", "part", "seconds"]).properties(height=24 * len(labels)), width="stretch")
else:
    st.caption("No timing events yet.")

# ----------------------------------------------------------------------------- per round
st.subheader("Per round (each job's own cameras)")
rounds = [list_rounds(i.dir) for i in infos]
n = max((len(r) for r in rounds), default=0)
for k in range(n):
    cols = st.columns(len(infos))
    for col, lab, rr in zip(cols, labels, rounds, strict=True):
        with col:
            if k < len(rr):
                r = rr[k]
                st.caption(f"{lab} · round {k + 1} · {r.elevation:g}°")
                afters = [a for _, a in r.pairs if a is not None][:3]
                if afters:
                    st.image([image_thumb(str(a), a.stat().st_mtime_ns, 256) for a in afters], width=120)
            else:
                st.caption(f"{lab} · no round {k + 1}")
