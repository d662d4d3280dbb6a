"""The Reconstruct form's logic: key settings of a preset -> the job's dotted-key overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from skyfall_core.ui.jobs import JobError

# FlowEdit models the Reconstruct page offers to pick (the field also takes any hub id or folder)
FLUX_DEV = "black-forest-labs/FLUX.1-dev"
FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
REFINER_MODELS = [FLUX_DEV, FLUX_SCHNELL, "stabilityai/stable-diffusion-3.5-medium"]


def refiner_model_licence(model_id: str) -> str:
    """A one-line note on the licence of a refiner model, for the caption under the model choice."""
    mid = (model_id or "").rstrip("/").lower()
    if "flux.1-dev" in mid:
        return ("FLUX.1-dev is licensed for **non-commercial use only** (FLUX.1 [dev] Non-Commercial License): "
                "for commercial work pick FLUX.1-schnell (Apache-2.0).")
    if "flux.1-schnell" in mid:
        return ("FLUX.1-schnell: **Apache-2.0** (commercial use allowed). Distilled for few steps and without a "
                "guidance input: use few steps (4-8); the guidance values are ignored.")
    if "stable-diffusion-3" in mid:
        return "Stable Diffusion 3.x: Stability AI Community License (read its terms before commercial use)."
    return "Check the model's licence on its model card before commercial use." if mid else ""


# (dotted key, label, help) of the settings the form shows besides the elevation schedule
KEY_SETTINGS = [
    ("stage1.iterations", "Stage 1 iterations", "Fitting the splats to the satellite views"),
    ("stage2.iterations_per_round", "Iterations per round", "Retraining on the refined renders, per round"),
    ("cameras.max_image_size", "Max crop size (px)", "Scene crops larger than this are downsampled"),
    ("stage2.image_size", "Render size (px)", "Size of the renders the refiner edits"),
    ("stage2.azimuths", "Azimuths per look-at point", "Virtual cameras per orbit"),
    ("stage1.depth_prior_weight", "Depth prior weight", "0 = no monocular depth model"),
]


def get_dotted(d: dict[str, Any], key: str) -> Any:
    node: Any = d
    for p in key.split("."):
        node = node[p]
    return node


def schedule_rows(stage2: dict[str, Any]) -> list[dict[str, float]]:
    """The preset's elevation schedule as editor rows [{"elevation_deg", "radius_m"}]."""
    return [{"elevation_deg": float(e), "radius_m": float(r)}
            for e, r in zip(stage2["elevations_deg"], stage2["radii_m"], strict=True)]


def schedule_from_rows(rows: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """(elevations, radii) from editor rows, dropping blank rows; raises JobError for bad values."""
    elev, radii = [], []
    for i, row in enumerate(rows, 1):
        e, r = row.get("elevation_deg"), row.get("radius_m")
        if e is None and r is None:
            continue
        try:
            e_f, r_f = float(e), float(r)
        except (TypeError, ValueError):
            raise JobError(f"schedule row {i}: elevation and radius must both be numbers (got {e!r}, {r!r})",
                           fix="fill in both columns or delete the row") from None
        if not 0 < e_f <= 90:
            raise JobError(f"schedule row {i}: elevation {e_f:g}° is outside (0, 90]", fix="use 5° to 90°")
        if r_f <= 0:
            raise JobError(f"schedule row {i}: radius {r_f:g} m must be positive",
                           fix="give the orbit radius in metres")
        elev.append(e_f)
        radii.append(r_f)
    if not elev:
        raise JobError("the elevation schedule is empty", fix="give at least one round (elevation and radius)")
    return elev, radii


def parse_advanced(text: str) -> dict[str, Any]:
    """Extra overrides typed as a JSON object of dotted keys (empty text = none)."""
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JobError(f"advanced overrides are not valid JSON ({exc})",
                       fix='write an object such as {"stage2.fov_deg": 50}') from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise JobError("advanced overrides must be a JSON object of dotted keys",
                       fix='write an object such as {"stage2.fov_deg": 50}')
    return data


@dataclass(frozen=True)
class FormValues:
    values: dict[str, Any]  # dotted key -> value, for the KEY_SETTINGS and the refiner fields
    schedule_rows: list[dict[str, Any]]
    advanced: str = ""


def build_overrides(preset_dict: dict[str, Any], form: FormValues) -> dict[str, Any]:
    """Only what differs from the preset: {dotted key: value}. Advanced JSON wins over the form."""
    out: dict[str, Any] = {}
    for key, value in form.values.items():
        if get_dotted(preset_dict, key) != value:
            out[key] = value
    elev, radii = schedule_from_rows(form.schedule_rows)
    stage2 = preset_dict["stage2"]
    if [float(e) for e in stage2["elevations_deg"]] != elev or [float(r) for r in stage2["radii_m"]] != radii:
        out["stage2.elevations_deg"] = elev
        out["stage2.radii_m"] = radii
    out.update(parse_advanced(form.advanced))
    return out


# ----------------------------------------------------------------------------- clone = an editable copy
FORM_KEYS = [k for k, _, _ in KEY_SETTINGS] + ["stage2.refiner", "stage2.refiner_model", "stage2.offload"]
SCHEDULE_KEYS = ("stage2.elevations_deg", "stage2.radii_m")


@dataclass(frozen=True)
class ClonePrefill:
    """What the Reconstruct form shows for a copy of a job: its preset, name, the form's fields (by
    dotted key), its schedule rows, and its other overrides as the advanced JSON."""

    source: str  # the job id
    preset: str
    name: str
    values: dict[str, Any]
    schedule_rows: list[dict[str, float]]
    advanced: str


def clone_prefill(job_id: str, name: str, preset: str, job_preset: dict[str, Any], today_preset: dict[str, Any],
                  overrides: dict[str, Any]) -> ClonePrefill:
    """The form of a job's copy: its resolved settings (``job_preset``: the preset section of its
    stored config) where the form has a field, typed like today's preset (``today_preset``), and its
    overrides the form has no field for as the advanced JSON."""
    values = {}
    for key in FORM_KEYS:
        try:
            value = get_dotted(job_preset, key)
        except (KeyError, TypeError):
            value = get_dotted(today_preset, key)
        default = get_dotted(today_preset, key)
        if isinstance(default, float):
            value = float(value)
        elif isinstance(default, int) and not isinstance(default, bool):
            value = int(value)
        values[key] = value
    stage2 = job_preset.get("stage2") or today_preset["stage2"]
    rows = schedule_rows(stage2)
    rest = {k: v for k, v in overrides.items() if k not in FORM_KEYS and k not in SCHEDULE_KEYS}
    return ClonePrefill(job_id, preset, f"{name} (copy)", values, rows, json.dumps(rest) if rest else "")


def prefill_state(p: ClonePrefill) -> dict[str, Any]:
    """{Reconstruct widget key: value} for a :class:`ClonePrefill` (the page's keys)."""
    state: dict[str, Any] = {"preset": p.preset, "job_name": p.name, f"{p.preset}:advanced": p.advanced}
    short = {"stage2.refiner": "refiner", "stage2.refiner_model": "model", "stage2.offload": "offload"}
    for key, value in p.values.items():
        state[f"{p.preset}:{short.get(key, key)}"] = value
    return state


# ----------------------------------------------------------------------------- the job of this draft
def same_draft(job_aoi: dict[str, Any] | None, job_scenes: tuple[str, ...] | list[str],
               draft_aoi: dict[str, Any] | None, draft_scenes: tuple[str, ...] | list[str]) -> bool:
    """Whether a job was started from this draft: the same AOI geometry and its scenes among the draft's."""
    if not job_aoi or not draft_aoi:
        return False
    geom = (job_aoi.get("geometry") if job_aoi.get("type") == "Feature" else job_aoi)
    dgeom = (draft_aoi.get("geometry") if draft_aoi.get("type") == "Feature" else draft_aoi)
    if geom is None or dgeom is None:
        return False
    try:
        from shapely.geometry import shape

        a, b = shape(geom), shape(dgeom)
        same = a.equals_exact(b, 1e-9) or (a.symmetric_difference(b).area <= 1e-6 * max(a.area, 1e-12))
    except (ValueError, TypeError, AttributeError):
        same = geom == dgeom
    return same and bool(job_scenes) and set(job_scenes) <= set(draft_scenes)
