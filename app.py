"""Skyfall Studio - the Streamlit frame: page config, shared sidebar, router.

Pages live in pages/ and stay thin: they read widgets, call skyfall_core and render.
Start it with `make run` (or `python -m skyfall_core serve`), which binds 127.0.0.1.
"""

import streamlit as st

from skyfall_core.ui.frame import sidebar
from skyfall_core.ui.state import init_session

st.set_page_config(page_title="Skyfall Studio", page_icon="🛰️", layout="wide")
init_session()

pages = {
    "Project": [
        st.Page("pages/home.py", title="Home", icon="🏠", default=True),
        st.Page("pages/area.py", title="Area", icon="🗺️", url_path="area"),
        st.Page("pages/scenes.py", title="Scenes", icon="🛰️", url_path="scenes"),
        st.Page("pages/reconstruct.py", title="Reconstruct", icon="⚙️", url_path="reconstruct"),
    ],
    "Results": [
        st.Page("pages/rounds.py", title="Rounds", icon="🔁", url_path="rounds"),
        st.Page("pages/viewer.py", title="Viewer", icon="🧊", url_path="viewer"),
        st.Page("pages/map.py", title="Map", icon="🌍", url_path="map"),
        st.Page("pages/compare.py", title="Compare", icon="⚖️", url_path="compare"),
        st.Page("pages/share.py", title="Share", icon="📤", url_path="share"),
        st.Page("pages/jobs.py", title="Jobs", icon="📋", url_path="jobs"),
    ],
}
page = st.navigation(pages)
sidebar()
page.run()
