"""Area: draw, upload or pick the area of interest on a map of the catalogued scenes."""

import json

import streamlit as st
from streamlit_folium import st_folium

from skyfall_core.config import REPO_ROOT
from skyfall_core.errors import SkyfallError
from skyfall_core.geo.aoi import coverage, load_aoi
from skyfall_core.ui.draft import load_draft, update_draft
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.mapdata import overlay_scene, scene_map
from skyfall_core.ui.maps import BASEMAPS, latest_polygon, same_polygon
from skyfall_core.ui.state import catalog_scenes, get_config, load_draft_aoi

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

SAMPLE_AOI = REPO_ROOT / "sample_aoi" / "aoi.geojson"

cfg = get_config()
ws = cfg.workspace_root
st.title("🗺️ Area of interest")
st.caption("Draw a rectangle or polygon with the tools at the top left of the map (edit or delete it "
           "there too), upload a GeoJSON, or use the bundled sample's AOI. Dashed outlines are the "
           "footprints of the catalogued scenes.")


rejected: list[str] = []  # labels of new AOIs refused on this run (the draft keeps the previous one)


def set_aoi(source, label: str) -> bool:
    """Validate and store an AOI in the draft; show the typed error otherwise."""
    try:
        aoi = load_aoi(source, cfg.aoi)
    except SkyfallError as exc:
        st.error(exc.message)
        rejected.append(label)
        return False
    update_draft(ws, aoi=aoi.to_geojson(), aoi_source=label)
    return True


try:
    scenes = catalog_scenes()
except SkyfallError as exc:
    st.error(exc.message)
    scenes = []
draft = load_draft(ws)
aoi, aoi_error = load_draft_aoi()

map_col, side = st.columns([3, 1], gap="medium")
with side:
    st.subheader("AOI")
    if st.button("📍 Use the sample AOI", width="stretch", disabled=not SAMPLE_AOI.is_file(),
                 help=f"{SAMPLE_AOI}"):
        if set_aoi(SAMPLE_AOI, "sample"):
            st.rerun()
    upload = st.file_uploader("Upload a GeoJSON polygon (WGS84)", type=["geojson", "json"], key="aoi_upload")
    if upload is not None and st.session_state.get("aoi_upload_done") != upload.file_id:
        st.session_state["aoi_upload_done"] = upload.file_id
        try:
            text = upload.getvalue().decode("utf-8")
        except UnicodeDecodeError:
            st.error(f"{upload.name}: not a UTF-8 text file. Fix: save the AOI as GeoJSON.")
        else:
            if set_aoi(text, f"uploaded {upload.name}"):
                st.rerun()
    if draft.aoi is not None and st.button("🗑 Clear AOI", width="stretch"):
        update_draft(ws, aoi=None, aoi_source="")
        st.rerun()

    st.divider()
    st.subheader("Map")
    basemap = st.radio("Basemap", list(BASEMAPS), key="basemap",
                       help="Tiles come from the internet; 'None' works offline.")
    imagery = st.toggle("Imagery overlay", value=True, key="imagery_overlay",
                        help="The most nadir scene resampled onto the map with its RPC (works offline)")
    ids = [s.id for s in scenes if s.ok]
    default = overlay_scene(scenes, aoi)
    overlay_id = st.selectbox("Overlay scene", ids, index=ids.index(default.id) if default else 0,
                              key="overlay_scene", disabled=not imagery) if ids else None

with map_col:
    m = scene_map(aoi=aoi, aoi_feature=draft.aoi, scenes=scenes, basemap=basemap, imagery=imagery, draw=True,
                  selected=set(draft.scenes), overlay_id=overlay_id)
    out = st_folium(m, height=640, use_container_width=True, returned_objects=["all_drawings"], key="area_map")
    drawn = latest_polygon((out or {}).get("all_drawings"))
    if drawn is not None and not same_polygon(drawn, draft.aoi, tol_deg=2e-6):
        if set_aoi(drawn, "drawn"):
            st.rerun()

with side:
    st.divider()
    if aoi_error:
        st.error(aoi_error)
    elif aoi is None:
        st.info("No AOI yet." if not rejected else "No AOI yet: the new one was refused (see the error).")
    elif rejected:
        st.warning(f"The {rejected[-1]} AOI was refused (see the error); the draft still holds the previous AOI "
                   f"({draft.aoi_source or 'unknown source'}, {aoi.area_m2 / 1e4:,.2f} ha). Fix the new one, or "
                   "delete it on the map to keep the previous.")
    else:
        lon, lat = aoi.centre
        w, s, e, n = aoi.polygon.bounds
        st.metric("Area", f"{aoi.area_m2 / 1e4:,.2f} ha", f"{aoi.area_m2:,.0f} m²", delta_color="off")
        st.markdown(f"**Centre** {lat:.6f}, {lon:.6f}  \n**UTM** EPSG:{aoi.utm_epsg}  \n"
                    f"**Bounds** W {w:.5f} S {s:.5f} E {e:.5f} N {n:.5f}  \n"
                    f"**Source** {draft.aoi_source or '–'}")
        usable = [sc for sc in scenes if sc.ok and sc.footprint is not None
                  and coverage(aoi, sc) >= cfg.aoi.min_coverage]
        msg = f"{len(usable)} of {len(scenes)} scenes cover ≥ {cfg.aoi.min_coverage:.0%} of the AOI"
        (st.success if len(usable) >= cfg.aoi.min_views else st.warning)(msg)
        # terrain heights: where the camera step will take them from (a DEM can be given here)
        from skyfall_core.cameras.heights import dem_path_of, planned_height_source

        props = dict(draft.aoi.get("properties") or {})
        if aoi.height_range is None:
            dem_in = st.text_input("DEM GeoTIFF for the terrain heights (optional)", value=props.get("dem_path", ""),
                                   key="dem_path", placeholder=str(cfg.aoi.dem_path or "e.g. /data/glo30_tile.tif"),
                                   help="A DEM of the area you already have (Copernicus GLO-30, SRTM), any CRS; "
                                        "stored with the AOI. Without it the heights are found from the images.")
            if dem_in.strip() != props.get("dem_path", ""):
                if dem_in.strip():
                    props["dem_path"] = dem_in.strip()
                else:
                    props.pop("dem_path", None)
                update_draft(ws, aoi={**draft.aoi, "properties": props}, aoi_source=draft.aoi_source)
                st.rerun()
        try:
            _, heights = planned_height_source(aoi, usable, dem_path_of(aoi, cfg))
            st.markdown(f"**Heights from** {heights}")
        except SkyfallError as exc:
            st.error(exc.message)
        st.download_button("⬇ AOI GeoJSON", json.dumps(draft.aoi, indent=1), file_name="aoi.geojson",
                           mime="application/geo+json", width="stretch")
