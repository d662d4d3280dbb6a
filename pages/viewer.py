"""Viewer: the final splat in the page (Spark, vendored; local ENU, z up), and the downloads."""

import json

import streamlit as st

from skyfall_core.errors import SkyfallError
from skyfall_core.jobfolder import FINAL_FILES
from skyfall_core.ui.components import job_camera
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.outputs import rounds_zip
from skyfall_core.ui.share import ShareCamera, job_georef, job_splat, round_cameras, viewer_page_html
from skyfall_core.ui.state import get_config
from skyfall_core.ui.static import publish_job_file
from skyfall_core.ui.widgets import picked_job_or_stop

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

st.title("🧊 3D viewer")
cfg = get_config()
info = picked_job_or_stop("final", "viewer_job", "No job has exported a splat yet. Finished jobs appear here.")
job_id = info.id

outs = info.folder.final_outputs()
splat = job_splat(info.dir)
georef = job_georef(info.dir)
view_col, side = st.columns([5, 2], gap="medium")  # downloads wide enough for their labels
with view_col:
    if splat is None:
        st.warning("This job has no splat in final/ yet.")
    else:
        try:
            url = publish_job_file(job_id, splat[0])
        except SkyfallError as exc:
            st.error(exc.message)
        else:
            position, look_at = job_camera(info.aoi, cfg.aoi)
            page = viewer_page_html(url, splat[1], camera=ShareCamera(tuple(position), tuple(look_at)),
                                    georef=georef, cameras=round_cameras(info.dir), height=640)
            st.iframe(page, height=650)
            where = ("the cursor reads lon/lat/height (WGS84, ellipsoidal) from georef.json" if georef
                     else "no georef.json: the cursor reads local ENU only")
            st.caption(f"{splat[0].name} · {splat[0].stat().st_size / 2**20:,.1f} MiB · Spark · local ENU metres, "
                       f"z up, origin at the AOI centre on the ground; {where}. Presets: top-down, oblique from "
                       "N/E/S/W, the rounds' cameras. Drag: orbit · right-drag: pan · wheel: zoom · "
                       "W/A/S/D/Q/E: fly · R: reset. The Map page shows the DSM and the splat centres on a basemap.")

with side:
    st.markdown("**Downloads**")
    for key, path in outs.items():
        if key == "preview":
            continue
        name, label, mime = FINAL_FILES[key]
        st.download_button(f"⬇ {label}", data=lambda p=path: p.read_bytes(), file_name=f"{job_id}_{name}",
                           mime=mime, key=f"dl_{key}", width="stretch",
                           help=f"{path.stat().st_size / 2**20:,.1f} MiB")
    if (info.dir / "rounds").is_dir():
        st.download_button("⬇ Before/after images (zip)", data=lambda: rounds_zip(info.dir),
                           file_name=f"{job_id}_rounds.zip", mime="application/zip", key="dl_rounds",
                           width="stretch")
    if "georef" in outs:
        try:
            georef = json.loads(outs["georef"].read_text())
        except (OSError, json.JSONDecodeError) as exc:
            st.error(f"{outs['georef']}: unreadable ({exc})")
        else:
            st.markdown("**Georeference**")
            st.json(georef, expanded=False)
    if "dsm" in outs:
        st.caption("The DSM GeoTIFF/COG and the LAZ open in QGIS in place (CRS set); the 3D Tiles "
                   "(final/3dtiles/) in CesiumJS/ArcGIS.")
    if "preview" in outs:
        st.image(str(outs["preview"]), caption="preview.png")
