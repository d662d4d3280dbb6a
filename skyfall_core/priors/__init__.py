"""Model back-ends: the monocular depth prior and the diffusion refiners of stage 2.

- ``depth``      — a transformers depth-estimation model (Depth Anything, DPT, ...), relative
                   depth with LARGER = FARTHER.
- ``refiners``   — one ``Refiner`` interface, three back-ends: FlowEdit on a rectified-flow model
                   (FLUX.1-dev or SD3), SDEdit img2img on any diffusers checkpoint, and a
                   classical no-weights refiner; ``load_refiner(settings, device)`` picks one.
- ``flowedit``   — our FlowEdit implementation (Kulikov et al., 2024) on diffusers components.
- ``classical``  — hole filling, colour matching and mild sharpening (no model at all).
- ``tiny_models``— builders of tiny random-weight models for tests and offline demos.

Nothing here loads weights, or even imports diffusers/transformers, at import time: models load
only inside ``load_depth_model`` / ``load_refiner``.
"""

from __future__ import annotations

import os

# Shared helpers first: the submodules import them from this package (keep them above the
# re-exports at the bottom).


def hub_offline() -> bool:
    """True when Hugging Face downloads are switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(f.strip().lower() in {"1", "true", "yes", "on"} for f in flags)


def load_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "these weights cannot be loaded here" (missing, offline, gated,
    corrupt, not a model folder). Out-of-memory and programming errors are not among them."""
    from safetensors import SafetensorError

    # OSError: missing file/folder, offline cache miss, gated or unknown repo (huggingface_hub
    # errors subclass OSError); ValueError: bad repo id, unreadable JSON (JSONDecodeError).
    return (OSError, ValueError, SafetensorError)


def looks_like_path(model_id: str) -> bool:
    """True for a filesystem path (absolute, ./ ../ ~, or a Windows drive), False for a hub id."""
    return model_id.startswith(("/", "./", "../", "~", "\\")) or (len(model_id) > 1 and model_id[1] == ":") \
        or model_id.count("/") > 1


def download_fix(model_id: str, settings_key: str) -> str:
    """The user-facing fix for weights that are not available on this machine."""
    if looks_like_path(model_id):
        return (f"check that {settings_key} = '{model_id}' is a complete downloaded model folder, or download one "
                f"on a machine with internet access (`hf download <hub id> --local-dir <folder>`), copy it here "
                f"and set {settings_key} to its path")
    gated = " (a gated model: accept its licence on huggingface.co and run `hf auth login` first)" \
        if "FLUX.1-dev" in model_id or "stable-diffusion-3" in model_id else ""
    return (f"on a machine with internet access run `hf download {model_id} --local-dir <folder>` "
            f"(older huggingface_hub: `huggingface-cli download {model_id} --local-dir <folder>`){gated}, "
            f"copy <folder> to this machine and set {settings_key} to its path")


def load_failure_cause(model_id: str, exc: BaseException) -> str:
    """A one-line cause for a failed load: 'no such folder', or the loader's first line."""
    if looks_like_path(model_id) and not os.path.isdir(os.path.expanduser(model_id)):
        return f"no such folder: {model_id}"
    text = str(exc).strip()
    first = text.splitlines()[0].rstrip(". ") if text else type(exc).__name__
    offline = " (Hugging Face downloads are off: HF_HUB_OFFLINE is set)" if hub_offline() else ""
    return first + offline


from skyfall_core.priors.depth import DepthModel, load_depth_model, try_load_depth_model  # noqa: E402
from skyfall_core.priors.refiners import (  # noqa: E402
    ClassicalRefiner,
    FlowEditRefiner,
    Refiner,
    SDEditRefiner,
    load_refiner,
)

__all__ = [
    "ClassicalRefiner", "DepthModel", "FlowEditRefiner", "Refiner", "SDEditRefiner",
    "download_fix", "hub_offline", "load_depth_model", "load_errors", "load_failure_cause", "load_refiner",
    "looks_like_path", "try_load_depth_model",
]
