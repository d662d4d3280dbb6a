"""Home: what Skyfall Studio does, and the scenes of the configured catalog folders."""

import streamlit as st

from skyfall_core.errors import SkyfallError
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.state import catalog_rows, get_config

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

st.title("🛰️ Skyfall Studio")
st.markdown(
    "Turn several satellite images of one place, taken on different dates, into an explorable "
    "**3D Gaussian splat** of the city — on your own machine.\n\n"
    "1. **Area** — draw the area of interest on a map.\n"
    "2. **Scenes** — pick the satellite scenes that cover it.\n"
    "3. **Reconstruct** — stage 1 fits splats to the satellite views; stage 2 (Skyfall-GS) "
    "renders lower and lower orbits, has a diffusion model repair each render, and retrains.\n"
    "4. **Rounds / Viewer** — compare the before/after renders of every round and explore the "
    "result in 3D; download the PLY, the web splat and a georeferenced DSM for your GIS."
)

cfg = get_config()
folders = tuple(str(f) for f in cfg.catalog_folders)
st.subheader("Scenes in the catalog")
st.caption("Folders: " + ", ".join(folders))
try:
    rows = catalog_rows(folders)
except SkyfallError as exc:
    st.error(exc.message)
    rows = []
if rows:
    st.dataframe(rows, hide_index=True, width="stretch")
else:
    st.info("No scenes found yet. The bundled sample lives in `sample_aoi/scenes`; add your own "
            "folders under `[catalog] folders` in config.toml.")
