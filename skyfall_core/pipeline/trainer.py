"""The splat trainer shared by stage 1 and the stage-2 rounds.

One optimisation step renders one view, compares it with its target (masked
0.8 L1 + 0.2 D-SSIM), adds the opacity entropy regulariser (and the depth prior when one is
given), back-propagates, densifies/prunes (gsplat's default strategy) and steps one Adam per
parameter. Satellite views are rendered through the per-image appearance model; pseudo views
(stage 2 edits) with the fixed appearance embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from skyfall_core.pipeline.appearance import AppearanceModel
from skyfall_core.pipeline.losses import opacity_entropy, pearson_depth_loss, photometric_loss
from skyfall_core.splat.checkpoint import load_checkpoint, restore_optimizers, save_checkpoint
from skyfall_core.splat.model import GaussianModel
from skyfall_core.splat.render import rasterize, view_colors
from skyfall_core.splat.strategy import DensifyStrategy, remove

APP_FEATURES = "app_features"


@dataclass
class View:
    """One training image with its camera (renderer convention: pixel centres at +0.5)."""

    name: str
    image: Tensor  # [H, W, 3] float32 0..1
    mask: Tensor  # [H, W] bool, True = valid pixel
    viewmat: Tensor  # [4, 4] world-to-camera, OpenCV
    K: Tensor  # [3, 3] render K
    appearance_index: int | None  # satellite image index, None = fixed embedding (pseudo view)

    def to(self, device: torch.device | str) -> "View":
        """This view with its tensors on ``device`` (itself when they already are)."""
        device = torch.device(device)
        if self.image.device == device and self.viewmat.device == device:
            return self
        async_ok = device.type == "cuda"  # a non-blocking copy to the host could be read before it lands
        return View(self.name, self.image.to(device, non_blocking=async_ok),
                    self.mask.to(device, non_blocking=async_ok), self.viewmat.to(device), self.K.to(device),
                    self.appearance_index)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class TrainSettings:
    lambda_dssim: float = 0.2
    opacity_reg: float = 10.0  # weight of the binary-entropy opacity regulariser
    opacity_reg_start: int = 0  # step from which the regulariser is on
    opacity_reg_relax_steps: int = 200  # after an opacity reset the regulariser is off this long
    depth_weight: float = 0.0
    flat_reg: float = 0.0  # weight (per metre) of the mean smallest scale: pushes Gaussians to flat discs
    means_lr_final_ratio: float = 0.01  # exponential decay of the position learning rate
    max_gaussians: int = 200_000
    backend: str = "auto"


class SplatTrainer:
    """Model + appearance + optimizers + densification state, with checkpoints.

    Everything lives on one device (``device``, default: the model's): the model, the appearance
    model, the optimizers' moments and the densification state; views on another device are moved
    to it when rendered. Losses are returned as 0-d tensors on that device, so a step never waits
    for the GPU; :func:`scalars` turns them into floats at the logging cadence.
    """

    def __init__(self, model: GaussianModel, n_images: int, scene_scale: float, total_steps: int,
                 settings: TrainSettings, strategy: DensifyStrategy, *, embedding_dim: int = 32,
                 seed: int = 0, device: torch.device | str | None = None):
        torch.manual_seed(seed)
        self.device = torch.device(device) if device is not None else model.means.device
        self.model = model.to(self.device)
        self.settings = settings
        self.strategy = strategy
        self.scene_scale = scene_scale
        self.total_steps = max(total_steps, 1)
        self.appearance = AppearanceModel(n_images, embedding_dim=embedding_dim).to(self.device)
        if APP_FEATURES not in model.params:
            model.params[APP_FEATURES] = torch.nn.Parameter(
                self.appearance.init_features(model.num_gaussians).to(self.device))
        self.optimizers = model.create_optimizers(scene_scale=scene_scale)
        self.optimizers[APP_FEATURES] = torch.optim.Adam(
            [{"params": [model.params[APP_FEATURES]], "lr": 2.5e-3, "name": APP_FEATURES}], eps=1e-15, fused=True)
        self.app_optimizer = torch.optim.Adam(self.appearance.parameters(), lr=1e-3, fused=True)
        self.means_lr0 = self.optimizers["means"].param_groups[0]["lr"]
        self.state = strategy.initialize_state(scene_scale=scene_scale)
        self.step = 0
        self.last_reset = -10 ** 9

    # --------------------------------------------------------------------------- render
    def render(self, view: View, *, with_grad: bool = True, backgrounds: Tensor | None = None
               ) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
        """(rgb [H, W, 3], alpha [H, W], depth [H, W], info) of one view."""
        m = self.model
        view = view.to(self.device)
        viewmats = view.viewmat[None]  # [1, 4, 4]
        with torch.set_grad_enabled(with_grad):
            rgb_sh = view_colors(m.means, m.shs, viewmats, m.sh_degree)[0]  # [N, 3]
            colors = self.appearance(rgb_sh, m.params[APP_FEATURES], view.appearance_index)
            rgb, alpha, depth, info = rasterize(
                m.means, m.params["quats"], m.scales, m.opacities, colors, viewmats, view.K[None],
                view.width, view.height, backgrounds=backgrounds, backend=self.settings.backend)
        return rgb[0].clamp(0, 1), alpha[0, ..., 0], depth[0, ..., 0], info

    # ----------------------------------------------------------------------------- step
    def train_step(self, view: View, depth_prior: Tensor | None = None) -> dict[str, Tensor | int]:
        """One optimisation step on ``view``; returns the losses as detached 0-d tensors (no host
        sync) and the Gaussian count. Use :func:`scalars` to log them."""
        s = self.settings
        self._schedule_lr()
        view = view.to(self.device)
        rgb, alpha, depth, info = self.render(view)
        self.strategy.step_pre_backward(self.model.params, self.optimizers, self.state, self.step, info)
        photo = photometric_loss(rgb, view.image, view.mask, s.lambda_dssim)
        loss = photo
        losses: dict[str, Tensor | int] = {"photo": photo.detach()}
        on = self.step >= s.opacity_reg_start and self.step - self.last_reset > s.opacity_reg_relax_steps
        opa_w = s.opacity_reg if on else 0.0
        if opa_w > 0:
            ent = opacity_entropy(self.model.opacities)
            loss = loss + opa_w * ent
            losses["opacity_entropy"] = ent.detach()
        if s.flat_reg > 0:
            flat = self.model.scales.min(dim=-1).values.mean()
            loss = loss + s.flat_reg * flat
            losses["flat"] = flat.detach()
        if depth_prior is not None and s.depth_weight > 0:
            dl = pearson_depth_loss(depth, depth_prior, (alpha > 0.5) & view.mask)
            loss = loss + s.depth_weight * dl
            losses["depth"] = dl.detach()
        loss.backward()
        for opt in (*self.optimizers.values(), self.app_optimizer):
            opt.step()
            opt.zero_grad(set_to_none=True)
        counts = self.strategy.step_post_backward(self.model.params, self.optimizers, self.state,
                                                  self.step, info)
        if counts.get("reset"):
            self.last_reset = self.step
        self._cap_gaussians()
        self.step += 1
        losses["loss"] = loss.detach()
        losses["gaussians"] = self.model.num_gaussians
        return losses

    def depth_prior_step(self, view: View, depth_model, weight: float) -> Tensor:
        """One step of the depth prior on a pseudo view: 1 - Pearson(rendered depth, the monocular
        model's depth of the render), weighted; returns the unweighted loss (detached 0-d tensor)."""
        view = view.to(self.device)
        rgb, alpha, depth, _ = self.render(view)
        prior = depth_model.predict(rgb.detach()).to(self.device)  # [H, W], larger = farther
        mask = alpha.detach() > 0.5
        loss = weight * pearson_depth_loss(depth, prior, mask)
        loss.backward()
        for opt in (*self.optimizers.values(), self.app_optimizer):
            opt.step()
            opt.zero_grad(set_to_none=True)
        return loss.detach() / max(weight, 1e-12)

    def _schedule_lr(self) -> None:
        t = min(self.step / self.total_steps, 1.0)
        lr = self.means_lr0 * math.exp(t * math.log(self.settings.means_lr_final_ratio))
        for g in self.optimizers["means"].param_groups:
            g["lr"] = lr

    @torch.no_grad()
    def _cap_gaussians(self) -> None:
        n, cap = self.model.num_gaussians, self.settings.max_gaussians
        if n <= cap:
            return
        order = torch.argsort(self.model.opacities)  # weakest first
        mask = torch.zeros(n, dtype=torch.bool, device=order.device)
        mask[order[: n - cap]] = True
        remove(self.model.params, self.optimizers, self.state, mask)

    # ----------------------------------------------------------------------- checkpoints
    def save(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        tensors = {f"appearance.{k}": v for k, v in self.appearance.state_dict().items()}
        for i, st in self.app_optimizer.state_dict()["state"].items():  # Adam moments of the appearance MLP
            tensors.update({f"appopt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
        save_checkpoint(path, self.model, {**tensors, "step": self.step, "last_reset": self.last_reset,
                                           **(extra or {})}, optimizers=self.optimizers)

    @classmethod
    def resume(cls, path: Path, n_images: int, scene_scale: float, total_steps: int, settings: TrainSettings,
               strategy: DensifyStrategy, *, embedding_dim: int = 32, restore_optim: bool = True,
               device: torch.device | str = "cpu") -> tuple["SplatTrainer", dict[str, Any]]:
        """A trainer restored from a checkpoint written by :meth:`save` (and its ``extra``) onto
        ``device``, whichever device wrote it (checkpoints hold CPU tensors)."""
        model, extra = load_checkpoint(path, device)
        app_features = _app_features_of(path).to(device)
        model.params[APP_FEATURES] = torch.nn.Parameter(app_features)
        trainer = cls(model, n_images, scene_scale, total_steps, settings, strategy, embedding_dim=embedding_dim,
                      device=device)
        trainer.appearance.load_state_dict({k[len("appearance."):]: v for k, v in extra.items()
                                            if k.startswith("appearance.")})
        if restore_optim:
            restore_optimizers(path, model, trainer.optimizers)
            sd = trainer.app_optimizer.state_dict()
            for key, value in extra.items():
                if key.startswith("appopt."):
                    _, i, name = key.split(".", 2)
                    sd["state"].setdefault(int(i), {})[name] = value
            trainer.app_optimizer.load_state_dict(sd)
        trainer.step = int(extra.get("step", 0))
        trainer.last_reset = int(extra.get("last_reset", -10 ** 9))
        return trainer, extra


def _app_features_of(path: Path) -> Tensor:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor(f"params.{APP_FEATURES}")


def scalars(losses: dict[str, Tensor | int | float]) -> dict[str, float]:
    """The losses of :meth:`SplatTrainer.train_step` as floats (one host sync for all of them)."""
    keys = [k for k, v in losses.items() if isinstance(v, Tensor)]
    values = torch.stack([losses[k].float() for k in keys]).tolist() if keys else []
    out = {k: v for k, v in losses.items() if not isinstance(v, Tensor)}
    out.update(zip(keys, values))
    return {k: out[k] for k in losses}


def to_uint8(img: Tensor | np.ndarray) -> np.ndarray:
    a = img.detach().cpu().numpy() if isinstance(img, Tensor) else np.asarray(img)
    return np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)
