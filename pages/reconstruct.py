"""Reconstruct: preset, key settings and elevation schedule, model availability, start, live progress."""

import json
from typing import get_args

import streamlit as st

from skyfall_core.config import Stage2Settings
from skyfall_core.errors import SkyfallError
from skyfall_core.geo.aoi import select_usable
from skyfall_core.ui.draft import load_draft
from skyfall_core.ui.frame import page_guard
from skyfall_core.ui.jobs import check_overrides
from skyfall_core.ui.models import refiner_gpu_gb
from skyfall_core.ui.reconstruct import (
    KEY_SETTINGS,
    REFINER_MODELS,
    FormValues,
    build_overrides,
    clone_prefill,
    get_dotted,
    parse_advanced,
    prefill_state,
    refiner_model_licence,
    schedule_rows,
)
from skyfall_core.ui.state import catalog_scenes, get_config, get_device, get_jobs, load_draft_aoi, model_status_cached
from skyfall_core.ui.widgets import live_progress, running_job, running_job_of_draft

page_guard()  # when Streamlit started this file without app.py: rerun through app.py

cfg = get_config()
jobs = get_jobs()
st.title("⚙️ Reconstruct")

draft = load_draft(cfg.workspace_root)
aoi, aoi_error = load_draft_aoi()
ready = True
usable = []
cover_error = None  # why the chosen scenes cannot reconstruct this AOI
chosen_scenes = [s for s in catalog_scenes() if str(s.path) in set(draft.scenes)]
if aoi is not None and len(draft.scenes) >= cfg.aoi.min_views:
    try:
        usable = select_usable(aoi, chosen_scenes, cfg.aoi.min_coverage, cfg.aoi.min_views)
    except SkyfallError as exc:
        cover_error = exc.message
c1, c2 = st.columns(2)
with c1:
    if aoi is None:
        (st.error if aoi_error else st.info)(aoi_error or "No AOI yet.")
        st.page_link("pages/area.py", label="Set the AOI on the Area page", icon="🗺️")
        ready = False
    else:
        (st.warning if cover_error else st.success)(
            f"AOI: {aoi.area_m2 / 1e4:,.2f} ha around {aoi.centre[1]:.5f}, {aoi.centre[0]:.5f}")
with c2:
    if not draft.scenes:
        st.info(f"No scenes chosen yet; a reconstruction needs at least {cfg.aoi.min_views}.")
        st.page_link("pages/scenes.py", label="Choose scenes on the Scenes page", icon="🛰️")
        ready = False
    elif len(draft.scenes) < cfg.aoi.min_views:
        st.warning(f"{len(draft.scenes)} scene(s) chosen; at least {cfg.aoi.min_views} are needed.")
        st.page_link("pages/scenes.py", label="Choose scenes on the Scenes page", icon="🛰️")
        ready = False
    elif cover_error:
        st.error(f"The chosen scenes do not cover this AOI: {cover_error}")
        st.page_link("pages/scenes.py", label="Choose scenes on the Scenes page", icon="🛰️")
        ready = False
    elif aoi is not None:
        st.success(f"{len(draft.scenes)} scenes chosen; {len(usable)} cover the AOI")
    else:
        st.caption(f"{len(draft.scenes)} scenes chosen")

presets = sorted(cfg.presets)
if not presets:
    st.error(f"{cfg.source}: no presets defined. Fix: add [presets.preview] (see the shipped config.toml).")
    st.stop()
default_preset = "preview" if "preview" in presets else presets[0]
seeded: set[str] = set()  # widget keys set from a clone on this run (their defaults are not passed)
clone_src = st.session_state.pop("clone_from", None)
if clone_src:
    try:
        src = jobs.info(clone_src)
    except SkyfallError as exc:
        st.error(exc.message)
    else:
        if src.preset not in presets:
            st.error(f"Job {src.name} used preset {src.preset!r}, which config.toml no longer defines; "
                     "the form keeps its own preset.")
        else:
            pre = clone_prefill(src.id, src.name, src.preset, (src.resolved.get("presets") or {}).get(src.preset) or {},
                                cfg.resolved(src.preset)["presets"][src.preset], src.overrides)
            st.session_state.pop(f"{src.preset}:schedule", None)  # the editor's edits of the old rows
            st.session_state[f"{src.preset}:schedule_rows"] = pre.schedule_rows
            for k, v in prefill_state(pre).items():
                st.session_state[k] = v
                seeded.add(k)
            st.session_state["clone_of"] = src.name
            st.session_state["clone_parent"] = src.id
if st.session_state.get("clone_of"):
    st.info(f"A copy of job **{st.session_state['clone_of']}**: its AOI, scenes, preset and settings are filled in. "
            "Change what you want to compare (e.g. the elevation schedule) and press Start.")


def _kw(key: str, **defaults):
    """The widget's default, unless a clone set its value on this run."""
    return {} if key in seeded else defaults


left, right = st.columns([3, 2], gap="large")
with left:
    preset = st.selectbox("Preset", presets, key="preset", **_kw("preset", index=presets.index(default_preset)))
    pdict = cfg.resolved(preset)["presets"][preset]
    st.caption(pdict.get("description") or "")
    name = st.text_input("Job name", key="job_name", **_kw("job_name", value=f"{preset} run"))
    values = {}
    cols = st.columns(3)
    for i, (key, label, help_text) in enumerate(KEY_SETTINGS):
        default = get_dotted(pdict, key)
        with cols[i % 3]:
            if isinstance(default, float):
                values[key] = float(st.number_input(label, min_value=0.0, step=0.1, help=help_text,
                                                    key=f"{preset}:{key}", **_kw(f"{preset}:{key}", value=default)))
            else:
                values[key] = int(st.number_input(label, min_value=1, step=1, help=help_text, key=f"{preset}:{key}",
                                                  **_kw(f"{preset}:{key}", value=int(default))))
    st.markdown("**Refiner** (stage 2)")
    r1, r2, r3 = st.columns([1, 2, 1])
    if st.session_state.pop("_refiner_model_picked", None) == f"{preset}:model":
        seeded.add(f"{preset}:model")  # set by the known-models pick below: no default this run
    refiners = ["flowedit", "sdedit", "classical"]
    values["stage2.refiner"] = r1.selectbox("Refiner", refiners, key=f"{preset}:refiner",
                                            **_kw(f"{preset}:refiner",
                                                  index=refiners.index(pdict["stage2"]["refiner"])),
                                            help="flowedit: FLUX.1-dev/schnell or SD3 (the paper: FLUX.1-dev); "
                                                 "sdedit: any img2img checkpoint; classical: no model, NOT diffusion")
    values["stage2.refiner_model"] = r2.text_input("Refiner model (hub id or local folder)", key=f"{preset}:model",
                                                   **_kw(f"{preset}:model", value=pdict["stage2"]["refiner_model"]),
                                                   disabled=values["stage2.refiner"] == "classical",
                                                   help="Or pick a known one below: " + ", ".join(REFINER_MODELS))
    if values["stage2.refiner"] != "classical":
        def _pick_model(key: str = f"{preset}:model", pick: str = f"{preset}:model_pick") -> None:
            if st.session_state.get(pick) in REFINER_MODELS:
                st.session_state[key] = st.session_state[pick]
                st.session_state["_refiner_model_picked"] = key

        st.selectbox("Known refiner models", ["(keep the model above)", *REFINER_MODELS], key=f"{preset}:model_pick",
                     on_change=_pick_model, help="Sets the refiner model field above")
        licence = refiner_model_licence(values["stage2.refiner_model"])
        if licence:
            st.caption(licence)
    offloads = list(get_args(Stage2Settings.model_fields["offload"].annotation))  # what the config accepts
    values["stage2.offload"] = r3.selectbox("CPU offload", offloads, key=f"{preset}:offload",
                                            **_kw(f"{preset}:offload",
                                                  index=offloads.index(pdict["stage2"]["offload"])))
    st.markdown("**Elevation schedule** — one row per refinement round, from high to low")
    base_rows = st.session_state.get(f"{preset}:schedule_rows") or schedule_rows(pdict["stage2"])
    rows = st.data_editor(base_rows, num_rows="dynamic", key=f"{preset}:schedule",
                          width="stretch", column_config={
                              "elevation_deg": st.column_config.NumberColumn("Elevation (°)", min_value=1.0,
                                                                             max_value=90.0, step=1.0),
                              "radius_m": st.column_config.NumberColumn("Orbit radius (m)", min_value=1.0, step=5.0)})
    advanced = st.text_area("Advanced overrides (JSON of dotted keys)", key=f"{preset}:advanced",
                            placeholder='{"stage2.fov_deg": 50, "stage1.max_gaussians": 50000}', height=80)

with right:
    st.markdown("**Models and device**")
    dev = get_device()
    st.markdown(f"Device: **{dev.name}**" + (f" · {dev.memory_gb:.0f} GB" if dev.memory_gb else ""))
    refiner = values["stage2.refiner"]
    if refiner == "classical":
        st.info("Classical refiner: hole filling, colour matching and sharpening — **not a diffusion model**; "
                "results are far below the paper's. Use flowedit with FLUX.1-dev on a GPU for Skyfall-GS proper.")
    else:
        ms = model_status_cached(values["stage2.refiner_model"])
        offload = values["stage2.offload"]
        need = refiner_gpu_gb(refiner, values["stage2.refiner_model"], offload)
        (st.success if ms.available else st.warning)(
            f"Refiner model `{ms.model_id}`: {'found — ' + ms.where if ms.available else ms.where}")
        needs = {o: refiner_gpu_gb(refiner, values["stage2.refiner_model"], o) for o in ("none", "model", "sequential")}
        if offload == "auto" and None not in needs.values():
            have = dev.memory_gb
            fits = [o for o, gb in needs.items() if have is not None and gb <= have]
            msg = ("Offload 'auto' picks from the free GPU memory when the model loads: needs ~"
                   + ", ~".join(f"{gb:g} GB ({o})" for o, gb in needs.items()))
            if have is None:
                st.warning(msg + " — no GPU here: it would run on the CPU (very slow).")
            else:
                st.caption(msg + (f" — this {have:.0f} GB GPU gets '{fits[0]}'." if fits
                                  else f" — this GPU has {have:.0f} GB: even 'sequential' may not fit."))
        elif need is not None:
            have = dev.memory_gb
            msg = f"Needs ~{need:g} GB of GPU memory with offload '{offload}'"
            if have is None:
                st.warning(msg + " — no GPU here: it would run on the CPU (very slow).")
            elif have < need:
                st.warning(msg + f" — this GPU has {have:.0f} GB: choose offload 'sequential'.")
            else:
                st.caption(msg + ".")
        if not ms.available and cfg.presets[preset].stage2.fallback_to_classical:
            st.caption("Without the weights the job falls back to the classical refiner and says so.")
    depth_w = values["stage1.depth_prior_weight"]
    if depth_w > 0:
        ds = model_status_cached(pdict["stage1"]["depth_model"])
        (st.success if ds.available else st.warning)(
            f"Depth model `{ds.model_id}`: {'found — ' + ds.where if ds.available else ds.where}")
    try:
        overrides = build_overrides(pdict, FormValues(values, rows, advanced))
        check_overrides(cfg, preset, overrides)
        overrides_error = None
    except SkyfallError as exc:
        overrides, overrides_error = {}, exc.message
    st.markdown("**Overrides of the preset**")
    if overrides_error:
        st.error(overrides_error)
    else:
        st.code(json.dumps(overrides, indent=1) if overrides else "(none: the preset as is)", language="json")
        clash = sorted(set(parse_advanced(advanced)) & set(values))
        if clash:
            st.caption("The advanced JSON wins over the fields on the left for: " + ", ".join(f"`{k}`" for k in clash))
    busy = running_job_of_draft(jobs, draft)
    if busy is not None:
        st.caption(f"Job **{busy[1]}** of this AOI and scenes is still running: Start is enabled again when it "
                   "ends (or cancel it below).")
    start = st.button("Start reconstruction", icon=":material/rocket_launch:", type="primary", width="stretch",
                      disabled=not ready or overrides_error is not None or busy is not None)
    if start:
        try:
            parent = st.session_state.get("clone_parent") if st.session_state.get("clone_of") else None
            job_id = jobs.submit(name, draft.aoi, [str(s.path) for s in usable], preset, overrides, parent=parent)
        except SkyfallError as exc:
            st.error(exc.message)
        else:
            st.session_state["job_id"] = job_id
            st.session_state.pop("clone_of", None)
            st.session_state.pop("clone_parent", None)
            st.toast(f"Started job {job_id}")
            st.rerun()

job_id = st.session_state.get("job_id")
if not job_id or job_id not in jobs.ids():  # a new tab or a reload: the running job, if any
    job_id = running_job(jobs)
    if job_id:
        st.session_state["job_id"] = job_id
if job_id and job_id in jobs.ids():
    st.divider()
    st.subheader("Progress")
    live_progress(job_id, key="reconstruct")
