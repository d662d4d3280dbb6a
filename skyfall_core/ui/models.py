"""Are the configured models here, and will they fit? (for the Reconstruct page)

Nothing is loaded or downloaded: a local path is checked on disk, a hub id in the local Hugging
Face cache (``huggingface_hub.try_to_load_from_cache``). GPU memory figures are the measured
peaks of the published pipelines at 1024 px in bf16 (FLUX.1-dev: ~36 GB without offload, ~27 GB
with model CPU offload, a few GB with sequential offload; SD3-medium: ~17 / ~11 / ~3 GB).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from skyfall_core.priors import hub_offline, looks_like_path

# (model family, offload) -> GPU GB at 1024 px, bf16
REFINER_GPU_GB = {
    ("flux", "none"): 36.0, ("flux", "model"): 27.0, ("flux", "sequential"): 4.0,
    ("sd3", "none"): 17.0, ("sd3", "model"): 11.0, ("sd3", "sequential"): 3.0,
    ("sd", "none"): 5.0, ("sd", "model"): 4.0, ("sd", "sequential"): 2.0,
}
MARKER_FILES = ("model_index.json", "config.json")  # a diffusers pipeline / a transformers model


@dataclass(frozen=True)
class ModelStatus:
    model_id: str
    available: bool
    where: str  # the local folder or cache file found, or why not
    offline: bool  # HF_HUB_OFFLINE is set: a missing model cannot be fetched at run time


def model_status(model_id: str) -> ModelStatus:
    """Whether ``model_id`` (a hub id or a local folder) can be loaded without a download."""
    offline = hub_offline()
    if not model_id:
        return ModelStatus(model_id, False, "no model configured", offline)
    if looks_like_path(model_id):
        folder = Path(os.path.expanduser(model_id))
        if not folder.is_dir():
            return ModelStatus(model_id, False, f"no such folder: {folder}", offline)
        found = [f for f in MARKER_FILES if (folder / f).is_file()]
        return ModelStatus(model_id, bool(found),
                           str(folder) if found else f"{folder} holds no model_index.json/config.json", offline)
    from huggingface_hub import try_to_load_from_cache

    for marker in MARKER_FILES:
        try:
            hit = try_to_load_from_cache(model_id, marker)
        except ValueError as exc:  # not a valid repo id
            return ModelStatus(model_id, False, f"not a valid model id ({exc})", offline)
        if isinstance(hit, str):
            return ModelStatus(model_id, True, f"Hugging Face cache ({Path(hit).parent})", offline)
    return ModelStatus(model_id, False, "not in the local Hugging Face cache", offline)


def model_family(model_id: str) -> str:
    mid = model_id.lower()
    if "flux" in mid:
        return "flux"
    if "stable-diffusion-3" in mid or "sd3" in mid:
        return "sd3"
    return "sd"


def refiner_gpu_gb(refiner: str, model_id: str, offload: str) -> float | None:
    """GPU memory (GB) the refiner needs, or None for the classical refiner (no model)."""
    if refiner == "classical":
        return None
    return REFINER_GPU_GB.get((model_family(model_id), offload))


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "cuda" | "cpu"
    name: str
    memory_gb: float | None  # GPU memory, or None on CPU


def device_info() -> DeviceInfo:
    """The compute device this machine offers (imports torch: call it from a cached function)."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        return DeviceInfo("cuda", props.name, props.total_memory / 1e9)
    return DeviceInfo("cpu", f"CPU ({os.cpu_count()} threads)", None)
