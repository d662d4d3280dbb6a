"""Skyfall Studio - the Streamlit frame: page config, shared sidebar, router.

Pages live in pages/ and stay thin: they read widgets, call skyfall_core and render.
Start it with `make run` (or `python -m skyfall_core serve`), which binds 127.0.0.1.
"""

import streamlit as st

st.set_page_config(page_title="Skyfall Studio", page_icon="🛰️", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
]
st.navigation(pages).run()
