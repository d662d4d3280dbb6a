"""Monocular depth prior: a transformers depth-estimation model behind one small class.

Stage 1 supervises the depth rendered from pseudo-cameras with ``1 - Pearson(rendered, prior)``
(Skyfall-GS uses MoGe; any ``AutoModelForDepthEstimation`` works here: Depth Anything V1/V2, DPT,
ZoeDepth, GLPN, ...). That loss is invariant to scale and shift but NOT to sign, so the prior must
order pixels like a depth: **larger = farther**.

Relative models (Depth Anything ``depth_estimation_type="relative"``, DPT/MiDaS) predict an
affine-invariant *disparity* (larger = nearer). We return its negation, ``-disparity``: the same
ordering as depth, and an affine transform of it, which is all a Pearson loss can see (``1 /
disparity`` would need the unknown shift). Metric models (Depth Anything ``"metric"``, ZoeDepth,
GLPN) already predict depth in metres and are returned as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from skyfall_core.priors import download_fix, hub_offline, load_errors, load_failure_cause

# Model types whose raw output is already a depth (larger = farther).
_METRIC_MODEL_TYPES = frozenset({"zoedepth", "glpn"})


def _outputs_disparity(config: Any) -> bool:
    """Whether a depth-estimation model's raw output is disparity-like (larger = nearer)."""
    if getattr(config, "model_type", "") in _METRIC_MODEL_TYPES:
        return False
    return getattr(config, "depth_estimation_type", "relative") != "metric"


@dataclass
class DepthModel:
    """A loaded depth-estimation model and its image processor.

    ``predict(image)`` returns relative depth, LARGER = FARTHER (see the module docstring).
    """

    model: Any  # transformers PreTrainedModel (AutoModelForDepthEstimation)
    processor: Any  # its image processor
    model_id: str
    device: str
    disparity_output: bool  # True: raw output is disparity, negated by predict()

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Relative depth of one RGB image.

        image: [H, W, 3] float in 0..1 (any device). Returns [H, W] float32 on the image's
        device, larger = farther, resized back to H x W (bilinear).
        """
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"DepthModel.predict expects one [H, W, 3] image, got shape {tuple(image.shape)}")
        h, w = image.shape[:2]
        # The processor's standard input is 8-bit RGB: it resizes, rescales and normalises.
        rgb8 = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()
        inputs = self.processor(images=rgb8, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)  # [1, 3, h', w']
        raw = self.model(pixel_values=pixel_values).predicted_depth  # [1, h', w']
        raw = F.interpolate(raw[:, None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        depth = -raw if self.disparity_output else raw  # [H, W]
        return depth.to(image.device)


def load_depth_model(model_id_or_path: str, device: str = "cpu") -> DepthModel:
    """Load a depth-estimation model (hub id or local folder) with its image processor.

    With ``HF_HUB_OFFLINE`` set only the local cache / folder is used. Raises the loader's
    OSError/ValueError when the weights are missing or unreadable: ``try_load_depth_model`` turns
    those into a warning.
    """
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    local_only = hub_offline()
    processor = AutoImageProcessor.from_pretrained(model_id_or_path, local_files_only=local_only)
    model = AutoModelForDepthEstimation.from_pretrained(model_id_or_path, local_files_only=local_only)
    model = model.to(device).eval()
    return DepthModel(model=model, processor=processor, model_id=model_id_or_path, device=device,
                      disparity_output=_outputs_disparity(model.config))


def try_load_depth_model(model_id_or_path: str, device: str = "cpu") -> tuple[DepthModel | None, str | None]:
    """``load_depth_model`` that never raises for missing/corrupt weights.

    Returns ``(model, None)``, or ``(None, warning)`` where the warning names the model, the cause
    and the fix (download it on a connected machine, set ``stage1.depth_model`` to the folder).
    """
    try:
        return load_depth_model(model_id_or_path, device), None
    except load_errors() as exc:
        warning = (f"depth model '{model_id_or_path}' could not be loaded: "
                   f"{load_failure_cause(model_id_or_path, exc)}. "
                   f"Stage 1 runs without the depth prior. "
                   f"Fix: {download_fix(model_id_or_path, 'stage1.depth_model')}.")
        return None, warning
