"""The Reconstruct form's logic: key settings of a preset -> the job's dotted-key overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from skyfall_core.ui.jobs import JobError

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
