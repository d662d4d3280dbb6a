"""The app frame's shared sidebar: the draft job (AOI, scenes) and the workspace at a glance."""

from __future__ import annotations

import streamlit as st

from skyfall_core.errors import SkyfallError
from skyfall_core.ui.draft import load_draft
from skyfall_core.ui.state import get_config, get_jobs, load_draft_aoi

CSS = """
<style>
section[data-testid="stSidebar"] .block-container {padding-top: 1rem;}
div.block-container {padding-top: 2.2rem; padding-bottom: 1rem;}
h1 {font-size: 1.6rem !important;}
div[data-testid="stMetricValue"] {font-size: 1.15rem;}
</style>
"""


def sidebar() -> None:
    cfg = get_config()
    st.html(CSS)
    with st.sidebar:
        st.caption("DRAFT JOB")
        draft = load_draft(cfg.workspace_root)
        aoi, err = load_draft_aoi()
        if aoi is not None:
            st.markdown(f"**AOI** {aoi.area_m2 / 1e4:,.2f} ha · {aoi.centre[1]:.5f}, {aoi.centre[0]:.5f}")
        elif err:
            st.markdown("**AOI** ⚠️ invalid (see Area)")
        else:
            st.markdown("**AOI** not set")
        st.markdown(f"**Scenes** {len(draft.scenes)} chosen")
        try:
            jobs = get_jobs()
            st.caption("JOBS")
            st.markdown(f"{len(jobs.ids())} in the workspace")
        except SkyfallError as exc:
            st.error(exc.message)
        st.caption(f"Workspace `{cfg.workspace_root}`")
