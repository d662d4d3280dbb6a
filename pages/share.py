"""Share: a job's splat as ONE self-contained HTML file (viewer + data inlined) that opens from disk."""

import streamlit as st

from skyfall_core.ui.components import job_camera
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.share import (
    ShareCamera,
    job_flydown,
    job_georef,
    job_splat,
    round_cameras,
    share_html,
    splat_format,
)
from skyfall_core.ui.state import get_config
from skyfall_core.ui.widgets import picked_job_or_stop

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

st.title("📤 Share")
st.caption("One HTML file with the viewer and the splat inside: e-mail it or put it on a share; it opens in "
           "any modern browser from disk, offline, with no server.")
cfg = get_config()
info = picked_job_or_stop("final", "share_job", "No job has exported a splat yet.")
job_id = info.id
splat = job_splat(info.dir)
if splat is None:
    st.warning("This job has no splat in final/.")
    st.stop()
title = st.text_input("Title", value=info.name)
video = job_flydown(info.dir, name_prefix=f"{job_id}_")
with_video = video is not None and st.checkbox(
    "Include the fly-down video", value=True,
    help="Played in a panel over the viewer (one button a round: the video has one segment per round, "
         "before | after), with a link that saves it; embedded in the file, so it works offline too.")
size = splat[0].stat().st_size + (len(video.data) if with_video else 0)
bundle_mib = 3.0  # three.js + Spark (its WASM inlined), see static/vendor/VERSIONS.json
st.markdown(f"Splat: `{splat[0].name}` · {splat[0].stat().st_size / 2**20:,.1f} MiB"
            + (f" + fly-down `{video.name}` · {len(video.data) / 2**20:,.1f} MiB" if with_video else "")
            + f" → HTML ≈ {size * 4 / 3 / 2**20 + bundle_mib:,.1f} MiB")
if video is None:
    st.caption("This job has no fly-down video (final/flydown.mp4 or .gif), so the file holds the splat only.")


def build() -> bytes:
    pos, look = job_camera(info.aoi, cfg.aoi)
    meta = {"job": job_id, "preset": info.preset, "created": info.created[:19],
            "frame": "local ENU metres, z up"}
    return share_html(splat[0].read_bytes(), splat_format(splat[0]), title=title,
                      camera=ShareCamera(tuple(pos), tuple(look)), meta=meta, georef=job_georef(info.dir),
                      cameras=round_cameras(info.dir), video=video if with_video else None).encode("utf-8")


st.download_button("⬇ Download the self-contained HTML", data=build, file_name=f"{job_id}_splat.html",
                   mime="text/html", type="primary")
