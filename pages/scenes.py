"""Scenes: the catalog against the AOI, choosing the views, adding scene folders and uploads."""

from pathlib import Path

import streamlit as st
from streamlit_folium import st_folium

from skyfall_core.errors import SkyfallError
from skyfall_core.ui.draft import load_draft, update_draft
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.mapdata import scene_map
from skyfall_core.ui.scenes import candidates, scene_table, skyplot
from skyfall_core.ui.selection import judge_selection, select_diverse
from skyfall_core.ui.state import (
    aoi_thumbnail_png,
    catalog_scenes,
    get_config,
    load_draft_aoi,
    missing_folders,
    scene_folders,
)
from skyfall_core.ui.uploads import RASTER_SUFFIXES, SIDECAR_SUFFIXES, store_uploads

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

cfg = get_config()
ws = cfg.workspace_root
st.title("🛰️ Scenes")

draft = load_draft(ws)
aoi, aoi_error = load_draft_aoi()
for f in missing_folders():
    st.warning(f"Scene folder not found: {f}. Fix: create it or remove it below / in config.toml.")
try:
    scenes = catalog_scenes()
except SkyfallError as exc:
    st.error(exc.message)
    scenes = []
if aoi_error:
    st.error(aoi_error)
elif aoi is None:
    st.info("No AOI yet: draw one on the **Area** page to see each scene's coverage and to auto-select.")

cands = candidates(scenes, aoi)
chosen_paths = set(draft.scenes)

# ------------------------------------------------------------------ selection tools
tools, quality = st.columns([2, 3], gap="medium")
with tools:
    st.subheader("Choose views")
    eligible_n = sum(1 for c in cands.values() if c.ok)
    n = st.number_input("Views to pick", min_value=cfg.aoi.min_views, max_value=max(cfg.aoi.min_views, 64),
                        value=min(max(cfg.aoi.min_views, 8), max(cfg.aoi.min_views, eligible_n)), step=1)
    max_off = st.slider("Max view zenith (°)", 5.0, 60.0, 35.0, 1.0,
                        help="Angle at the ground between the vertical and the satellite (a few degrees more than "
                             "the off-nadir angle at the satellite). More oblique views see façades but blur roofs; "
                             "Skyfall-GS uses ≤ ~35°")
    if st.button("Auto-select a diverse set", icon=":material/auto_awesome:", disabled=aoi is None, width="stretch",
                 help="Spread of view azimuths, view zenith within the limit, full AOI coverage"):
        ids = select_diverse(list(cands.values()), int(n), max_off, cfg.aoi.min_coverage)
        if not ids:
            st.error("No scene covers the AOI within these limits. Fix: raise the view zenith limit or redraw the AOI.")
        else:
            by_id = {s.id: s for s in scenes}
            update_draft(ws, scenes=[str(by_id[i].path) for i in ids])
            st.rerun()
    if st.button("Clear selection", icon=":material/deselect:", width="stretch", disabled=not chosen_paths):
        update_draft(ws, scenes=[])
        st.rerun()
with quality:
    st.subheader("Selection")
    chosen = [cands[str(s.path)] for s in scenes if str(s.path) in chosen_paths and str(s.path) in cands]
    q = judge_selection(chosen, cfg.aoi.min_views, cfg.aoi.min_coverage)
    m1, m2, m3 = st.columns(3)
    m1.metric("Views", q.views)
    m2.metric("Azimuth spread", f"{q.azimuth_spread_deg:.0f}°")
    m3.metric("Max angle between views", f"{q.max_angle_deg:.0f}°")
    if not chosen:  # nothing done yet: a hint, not an error
        st.info(f"No views chosen yet: auto-select a diverse set or tick **Use** in the catalog "
                f"(at least {cfg.aoi.min_views}).")
    else:
        for e in q.errors:
            st.error(e)
        for w in q.warnings:
            st.warning(w)
    if chosen and not q.errors and not q.warnings:
        st.success("A good spread of views: ready to reconstruct.")

# ------------------------------------------------------------------ catalog table
st.subheader(f"Catalog · {len(scenes)} scenes")
table = scene_table(scenes, aoi, chosen_paths)
if table.empty:
    st.info("No scenes found. Add a folder or upload scenes below.")
else:
    key = "scene_table_" + str(abs(hash(tuple(sorted(chosen_paths)))))
    edited = st.data_editor(
        table, key=key, hide_index=True, width="stretch", disabled=[c for c in table.columns if c != "use"],
        column_order=["use", "id", "date", "time", "sun_el", "sun_az", "view_zenith", "off_nadir", "view_az", "gsd_m",
                      "coverage", "sensor", "error"],
        column_config={
            "use": st.column_config.CheckboxColumn("Use", width="small"),
            "sun_el": st.column_config.NumberColumn("Sun el °", format="%.1f"),
            "sun_az": st.column_config.NumberColumn("Sun az °", format="%.0f"),
            "view_zenith": st.column_config.NumberColumn(
                "View zenith °", format="%.1f",
                help="At the ground, between the vertical and the satellite (STAC view:incidence_angle)"),
            "off_nadir": st.column_config.NumberColumn(
                "Off-nadir °", format="%.1f",
                help="At the satellite, between nadir and the line of sight (STAC view:off_nadir): from the "
                     "metadata, else from the view zenith and the sensor's nominal orbit altitude"),
            "view_az": st.column_config.NumberColumn("View az °", format="%.0f"),
            "gsd_m": st.column_config.NumberColumn("GSD m", format="%.2f"),
            "coverage": st.column_config.ProgressColumn("AOI coverage", min_value=0.0, max_value=1.0, format="percent"),
        })
    picked = set(edited.loc[edited["use"], "path"])
    if picked != chosen_paths:
        update_draft(ws, scenes=[p for p in table["path"] if p in picked])
        st.rerun()

# ------------------------------------------------------------------ map + skyplot
map_col, sky_col = st.columns([3, 2], gap="medium")
with map_col:
    st.caption("Footprints (solid = chosen) and the AOI")
    m = scene_map(aoi=aoi, aoi_feature=draft.aoi, scenes=scenes,
                  basemap=st.session_state.get("basemap", "OpenStreetMap"),
                  imagery=st.session_state.get("imagery_overlay", True), draw=False, selected=chosen_paths)
    st_folium(m, height=430, use_container_width=True, returned_objects=[], key="scenes_map")
with sky_col:
    st.caption("Sky plot of the views (centre = nadir, ring = 30° view zenith; north up)")
    if cands:
        st.altair_chart(skyplot(list(cands.values()), {cands[p].id for p in chosen_paths if p in cands}),
                        width="stretch")

# ------------------------------------------------------------------ thumbnails
if aoi is not None and draft.aoi is not None:
    import json

    st.subheader("The AOI in each scene")
    show = [s for s in scenes if s.ok and cands.get(str(s.path)) and cands[str(s.path)].coverage > 0]
    aoi_json = json.dumps(draft.aoi, sort_keys=True)
    cols = st.columns(6)
    for i, s in enumerate(show):
        png = aoi_thumbnail_png(str(s.path), Path(s.path).stat().st_mtime_ns, aoi_json, 256)
        with cols[i % 6]:
            mark = "✅ " if str(s.path) in chosen_paths else ""
            if png is not None:
                st.image(png, caption=f"{mark}{s.id}", width="stretch")
            else:
                st.caption(f"{s.id}: no crop")

# ------------------------------------------------------------------ adding scenes
st.subheader("Add scenes")
fcol, ucol = st.columns(2, gap="medium")
with fcol:
    st.markdown("**A folder on this machine** (scanned recursively; files stay where they are)")
    folder = st.text_input("Folder path", key="add_folder", placeholder="/data/worldview/jax_068")
    if st.button("Add folder", disabled=not folder):
        p = Path(folder).expanduser()
        if not p.is_dir():
            st.error(f"{p}: not a folder. Fix: give the absolute path of a folder of GeoTIFF/NITF scenes.")
        else:
            update_draft(ws, folders=[*draft.folders, str(p.resolve())])
            st.rerun()
    for f in scene_folders():
        c_a, c_b = st.columns([5, 1])
        c_a.code(f, language=None)
        if f in draft.folders and c_b.button("✕", key=f"rm_{f}", help="Remove this folder from the catalog"):
            update_draft(ws, folders=[x for x in draft.folders if x != f])
            st.rerun()
with ucol:
    st.markdown(f"**Upload** (≤ {cfg.server.max_upload_mb} MiB a file; stored in the workspace)")
    files = st.file_uploader("Rasters with their RPC sidecars, or a .zip of them", accept_multiple_files=True,
                             type=[s.lstrip(".") for s in RASTER_SUFFIXES + SIDECAR_SUFFIXES] + ["zip"],
                             key="scene_upload")
    if files and st.button("Store uploads"):
        try:
            stored = store_uploads([(f.name, f.getvalue()) for f in files], ws, cfg.server.max_upload_mb)
        except SkyfallError as exc:
            st.error(exc.message)
        else:
            st.success(f"Stored {len(stored.rasters)} raster(s) in {stored.folder}")
            st.rerun()
