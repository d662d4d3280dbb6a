"""Rounds: what the refiner changed in every stage-2 round (before/after renders per camera)."""

from pathlib import Path

import streamlit as st

from skyfall_core.ui.components import before_after_html
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.imagery import data_url
from skyfall_core.ui.jobs import list_rounds
from skyfall_core.ui.outputs import camera_list, camera_summary, refiner_label
from skyfall_core.ui.state import image_thumb
from skyfall_core.ui.widgets import picked_job_or_stop

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

st.title("🔁 Refinement rounds")
info = picked_job_or_stop("rounds", "rounds_job",
                          "No job has finished a refinement round yet. Start one on the **Reconstruct** page.")
job_id = info.id

label, diffusion = refiner_label(info.refiner, info.stage2.get("refiner"))
if diffusion is False:  # said once: the name, then why the images look as they do
    name = str((info.refiner or {}).get("name") or "classical")
    st.info(f"Refiner: **{name}** — classical, not diffusion: these 'after' images come from simple image "
            "filters (hole filling, colour matching, sharpening), not from a diffusion model.")
else:
    st.caption(f"Refiner: **{label}**")


def _rounded(value, digits: int = 2):
    """Floats of a camera summary to ``digits`` decimals (nested lists and dicts too)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return [_rounded(v, digits) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    return value

rounds = list_rounds(info.dir)
if not rounds:
    st.info("No round folders yet.")
    st.stop()


def thumb_url(path: Path | None, size: int) -> str | None:
    if path is None:
        return None
    return data_url(image_thumb(str(path), path.stat().st_mtime_ns, size), "image/jpeg")


tabs = st.tabs([f"Round {r.index + 1} · {r.elevation:g}°" for r in rounds])
for r, tab in zip(rounds, tabs, strict=True):
    with tab:
        cams = camera_list(r.cameras)
        a, b, c = st.columns(3)
        a.metric("Elevation", f"{r.elevation:g}°")
        b.metric("Views", len(r.pairs))
        c.metric("Cameras", len(cams) if cams else "–")
        if not r.pairs:
            st.info("This round has no images yet.")
            continue
        view = st.select_slider("View", options=list(range(len(r.pairs))), key=f"view_{job_id}_{r.index}",
                                format_func=lambda i: f"{i:03d}") if len(r.pairs) > 1 else 0
        before, after = r.pairs[view]
        left, right = st.columns([3, 1], gap="medium")
        with left:
            if before is not None and after is not None:
                import cv2

                h, w = cv2.imread(str(after)).shape[:2]
                st.iframe(before_after_html(thumb_url(before, 768), thumb_url(after, 768), width=w, height=h,
                                            before_label="before: render", after_label="after: refined"),
                          height=540)
            else:
                st.warning("Only one of the pair exists for this view.")
                st.image(str(before or after))
        with right:
            st.markdown("**Camera**")
            if view < len(cams):
                st.json(_rounded(camera_summary(cams[view])), expanded=True)
            else:
                st.caption("no cameras.json entry")
        with st.expander("All views of this round (after)"):
            cols = st.columns(6)
            for i, (_, aft) in enumerate(r.pairs):
                if aft is not None:
                    cols[i % 6].image(image_thumb(str(aft), aft.stat().st_mtime_ns, 256), caption=f"{i:03d}")
