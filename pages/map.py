"""Map: a finished job on a basemap (pydeck): DSM hillshade, error vs a truth DSM, AOI, footprints,
the splat centres in true geographic position, optionally the DSM as 3D terrain; hover/click reads
height and coordinates."""

import json
from pathlib import Path

import streamlit as st

from skyfall_core.jobfolder import FINAL_FILES
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.mapview import (
    BASEMAPS,
    MAX_POINTS,
    build_deck,
    colour_scale_html,
    find_truth,
    fit_zoom,
    layer_ids,
    load_map_data,
    metres_per_pixel,
    scale_and_north,
    terrain_base,
    tiles_reachable,
)
from skyfall_core.ui.widgets import picked_job_or_stop

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

LAYER_LABELS = {"hillshade": "DSM hillshade", "error": "Error vs truth", "aoi": "AOI", "footprints": "Scene footprints",
                "points": "Splat centres", "dsm-samples": "DSM samples (hover)"}


@st.cache_data(ttl=300, show_spinner=False)
def _online() -> bool:
    return tiles_reachable()


@st.cache_data(max_entries=8, show_spinner="Reading the job's DSM and splat centres…")
def _data(job_dir: str, stamp: tuple, aoi_json: str, scenes: tuple[str, ...], truth: str | None):
    return load_map_data(Path(job_dir), aoi=json.loads(aoi_json) if aoi_json else None, scenes=list(scenes),
                         truth=Path(truth) if truth else None)


def _stamp(final: Path) -> tuple:
    files = [FINAL_FILES[k][0] for k in ("dsm_cog", "dsm", "hillshade", "laz", "ply", "georef")]
    return tuple((f, (final / f).stat().st_mtime_ns) for f in files if (final / f).is_file())


st.title("🗺️ Map")
info = picked_job_or_stop("final", "map_job", "No job has finished yet. Finished jobs appear here.")
scenes = [str(s) for s in info.scenes]

online = _online()
c1, c2, c3 = st.columns([2, 3, 2])
with c1:
    names = list(BASEMAPS)
    basemap = st.selectbox("Basemap", names, index=0 if online else names.index("None (offline)"), key="map_basemap",
                           help="Basemap tiles (CARTO) come from the internet; offline, the overlays stay on a "
                                "blank background.")
with c2:
    guess = find_truth(scenes)
    truth = st.text_input("Truth DSM (GeoTIFF, optional)", value=str(guess) if guess else "", key="map_truth",
                          help="With a truth DSM (the sample's truth/dsm.tif, a DFC2019 *_DSM.tif), the map shows "
                               "prediction − truth. Found automatically next to the job's scenes.").strip()
with c3:
    point_size = st.slider("Point size (px)", 1.0, 6.0, 2.0, 0.5, key="map_point_size")

final = info.folder.final
data = _data(str(info.dir), _stamp(final), json.dumps(info.aoi) if info.aoi else "", tuple(scenes), truth or None)
for note in data.notes:
    st.warning(note)
available = layer_ids(data)
shown = st.multiselect("Layers", available, default=available, format_func=LAYER_LABELS.get, key="map_layers")
if not online and BASEMAPS[basemap] is not None:
    st.info("The basemap tile server is not reachable from here: the tiles may stay blank; the overlays are drawn.")
exaggeration = None
if data.terrain is not None:
    t1, t2 = st.columns([1, 3])
    with t1:
        terrain_on = st.toggle("3D terrain", value=False, key="map_terrain",
                               help="The DSM as 3D terrain with the hillshade as its texture; the view tilts "
                                    "(right-drag or Ctrl-drag to tilt and turn it).")
    with t2:
        factor = st.slider("Height exaggeration", 1.0, 10.0, 1.0, 0.5, key="map_exaggeration",
                           disabled=not terrain_on, help="Heights drawn this many times their true value, "
                                                         "above the DSM's lowest cell.")
    exaggeration = factor if terrain_on else None

deck = build_deck(data, basemap=BASEMAPS[basemap], layers=shown, point_size=point_size, terrain=exaggeration)
event = st.pydeck_chart(deck, height=560, on_select="rerun", selection_mode="single-object", key="map_deck")

bounds = data.bounds()
if bounds is not None:
    lat = 0.5 * (bounds[1] + bounds[3])
    zoom = fit_zoom(bounds)
    sn = scale_and_north(bounds)
    st.caption(f"North is up (the arrow marked N runs along the meridian; right-drag rotates the map, the arrow "
               f"turns with it). Scale bar: {sn['label']}, drawn in map coordinates so it stays true at every zoom; "
               f"at the opening zoom 1 px ≈ {metres_per_pixel(lat, zoom):.2f} m, "
               f"{sn['label']} ≈ {sn['length_m'] / metres_per_pixel(lat, zoom):.0f} px. "
               "Heights: metres above the WGS84 ellipsoid.")

if exaggeration is not None:
    st.caption(f"3D terrain: the DSM on a lon/lat grid of {data.terrain.size}² cells, drawn {exaggeration:g}× its "
               f"height above its lowest cell ({terrain_base(data):.1f} m, WGS84 ellipsoid), the hillshade as its "
               "texture; the splat centres and the AOI follow it. The flat hillshade and error layers are off in 3D. "
               "Basemap tiles need the internet; offline the terrain and the overlays stand on a blank background.")

picked = None
if event is not None:
    for objs in (event.selection.get("objects") or {}).values():
        if objs:
            picked = objs[0]
if picked and "h" in picked:
    st.success(f"{picked.get('name', 'point')}: h {picked['h']:.2f} m (WGS84 ellipsoid) · "
               f"lon {picked['lon']:.6f}° · lat {picked['lat']:.6f}°")
else:
    st.caption("Hover a splat centre or a DSM sample for its height; click it to keep the reading here.")

if data.points_total:
    st.caption(f"Splat centres: {len(data.points['lon']):,} of {data.points_total:,} from `{data.points_source}` "
               f"(random subsample above {MAX_POINTS:,}), lifted by their height above the DSM's lowest cell.")
if data.error is not None:
    e = data.error
    if exaggeration is None:  # the error layer is drawn on the flat map only
        st.markdown(colour_scale_html(e.limit_m), unsafe_allow_html=True)
    st.caption(f"Prediction − truth ({Path(e.truth).name}), bilinear on the truth grid, no registration shift: "
               f"mean {e.mean_m:+.2f} m · median {e.median_m:+.2f} m · MAE {e.mae_m:.2f} m · RMSE {e.rmse_m:.2f} m "
               f"over {e.valid:,} cells.")
