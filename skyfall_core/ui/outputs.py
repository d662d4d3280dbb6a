"""Job outputs for the pages: camera summaries, refiner labels, archives, timings."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from skyfall_core.jobfolder import JobDir


def camera_list(cameras_json: Any) -> list[dict[str, Any]]:
    """The per-view camera dicts of a rounds/<k>/cameras.json (a list, or {"cameras"|"views": [...]}).

    The pipeline writes each view as its round metadata with the pinhole under ``"camera"``
    (K, w2c, width, height); that camera is merged into the view's dict."""
    views: list[Any] = []
    if isinstance(cameras_json, list):
        views = cameras_json
    elif isinstance(cameras_json, dict):
        views = next((cameras_json[k] for k in ("cameras", "views", "frames")
                      if isinstance(cameras_json.get(k), list)), [])
    out = []
    for v in views:
        if isinstance(v, dict):
            cam = v.get("camera")
            out.append({**{k: x for k, x in v.items() if k != "camera"}, **cam} if isinstance(cam, dict) else v)
    return out


def camera_summary(cam: dict[str, Any]) -> dict[str, Any]:
    """Position (ENU metres), viewing elevation/azimuth, image size and FOV of one camera dict.

    Reads a world-to-camera 4x4 (``w2c``/``world_to_camera``/``viewmat``) or camera-to-world
    (``c2w``) in the OpenCV convention and ``K`` 3x3; missing parts are left out.
    """
    out: dict[str, Any] = {}
    w2c = next((cam[k] for k in ("w2c", "world_to_camera", "viewmat") if k in cam), None)
    c2w = np.asarray(cam["c2w"], float) if "c2w" in cam else None
    if c2w is None and w2c is not None:
        c2w = np.linalg.inv(np.asarray(w2c, float))
    if c2w is not None and c2w.shape == (4, 4):
        pos = c2w[:3, 3]
        fwd = c2w[:3, 2]  # OpenCV: +z looks forward
        out["position_m"] = [round(float(v), 1) for v in pos]
        out["look_down_deg"] = round(float(math.degrees(math.asin(np.clip(-fwd[2], -1, 1)))), 1)
        out["azimuth_deg"] = round(float(math.degrees(math.atan2(fwd[0], fwd[1])) % 360), 1)
    w, h = cam.get("width"), cam.get("height")
    if w and h:
        out["size_px"] = f"{int(w)}×{int(h)}"
    K = cam.get("K")
    if K is not None and w:
        fx = float(np.asarray(K, float)[0, 0])
        out["fov_x_deg"] = round(math.degrees(2 * math.atan(float(w) / (2 * fx))), 1)
    for key in ("elevation", "elevation_deg", "azimuth", "radius", "radius_m"):
        if key in cam:
            out[key] = cam[key]
    return out


def refiner_label(refiner: dict[str, Any] | None, configured: str | None = None) -> tuple[str, bool | None]:
    """(label, is_diffusion) of the refiner a job used (job.json "refiner"), or of the configured one."""
    if refiner:
        name = str(refiner.get("name") or "?")
        diffusion = refiner.get("is_diffusion")
        model = refiner.get("model")
        label = name + (f" ({model})" if model else "")
        if diffusion is False:
            label += " — classical, not diffusion"
        return label, diffusion
    if configured:
        return f"{configured} (configured; the pipeline has not reported yet)", configured != "classical"
    return "unknown", None


def rounds_zip(folder: Path) -> bytes:
    """A zip of every round's before/after PNGs and cameras.json (paths rounds/<k>_e<elev>/...)."""
    buf = io.BytesIO()
    jd = JobDir(folder)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for d in jd.round_dirs():
            for sub in ("before", "after"):
                for p in sorted((d / sub).glob("*.png")):
                    zf.write(p, f"rounds/{d.name}/{sub}/{p.name}")
            if (d / "cameras.json").is_file():
                zf.write(d / "cameras.json", f"rounds/{d.name}/cameras.json")
    return buf.getvalue()


def timing_table(job_id: str, timings: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Rows {job, stage, round, render_s, refine_s, train_s} from a job's "timing" events."""
    rows = []
    for t in timings:
        stage = t.get("stage")
        label = f"round {int(t['round']) + 1}" if stage == "round" and t.get("round") is not None else str(stage)
        rows.append({"job": job_id, "stage": label, **{k: float(t[k]) for k in ("render_s", "refine_s", "train_s")
                                                        if isinstance(t.get(k), (int, float))}})
    return rows
