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


_FRAME_FORCED = False  # page_guard has switched Streamlit's pages/-folder mode off in this process


def page_guard() -> None:
    """Make a page run inside the app's frame (app.py) when Streamlit started the page file alone.

    With a ``pages/`` folder next to app.py, Streamlit keeps its old multipage mode (it runs the
    requested page file by itself: no page config, no shared sidebar, the raw file names as
    navigation) until some script calls ``st.navigation``. So when the first request a freshly
    started server gets is a page URL (a bookmark of /viewer, a reload of /area), that page ran
    without app.py, and every later visitor got the same until someone opened the root URL.
    Called first by every page: it switches that mode off as ``st.navigation`` does and reruns,
    so app.py runs and routes to the same page. A server never goes back to that mode, so this
    acts once a process; streamlit's AppTest puts the mode back before every run (a fresh server
    each time), where a rerun every time would drop the button click the run carries.
    """
    global _FRAME_FORCED
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not _FRAME_FORCED:
        _FRAME_FORCED = True
        PagesManager.uses_pages_directory = False
        st.rerun()
