"""Densification and pruning of Gaussians: gsplat's `DefaultStrategy` maths (3DGS paper).

`DensifyStrategy` holds hyper-parameters only; its running state is a plain dict created by
`initialize_state()` and passed back on every call. Parameters are a dict (or ParameterDict)
of tensors named as in gsplat ("means", "scales" (log), "quats", "opacities" (logit), ...)
with one optimizer per parameter; when Gaussians are added or removed, the parameters are
replaced and the optimizer state (Adam's moments) is resized to match.

Per refinement step:
  * grad2d = mean over views of |d loss / d means2d| in normalised screen units (the pixel
    gradient times width/2 resp. height/2, times the number of cameras of the batch);
  * grad2d > grow_grad2d and max scale <= grow_scale3d * scene_scale: duplicate (clone);
  * grad2d > grow_grad2d and larger: split into 2 samples of N(mean, Sigma), scale / 1.6;
  * prune opacity < prune_opa, and after the first reset max scale > prune_scale3d * scene_scale;
  * every reset_every steps clamp opacities to 2 * prune_opa (and zero their Adam state).
Difference from gsplat 1.5.3: there, `step % reset_every == 0 & step > 0` parses as a chained
comparison that is always False, so opacities are never reset; here the reset happens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, MutableMapping

import torch
import torch.nn.functional as F
from torch import Tensor

from skyfall_core.splat.projection import quat_to_rotmat

Params = MutableMapping[str, torch.nn.Parameter]
Optimizers = dict[str, torch.optim.Optimizer]
REQUIRED_PARAMS = ("means", "scales", "quats", "opacities")


@dataclass(frozen=True)
class DensifyStrategy:
    """Hyper-parameters of the adaptive density control (defaults: gsplat's DefaultStrategy)."""

    prune_opa: float = 0.005  # prune Gaussians with opacity below this
    grow_grad2d: float = 0.0002  # clone/split above this mean screen-space gradient
    grow_scale3d: float = 0.01  # clone below, split above this scale (x scene_scale)
    grow_scale2d: float = 0.05  # split above this screen radius (fraction of the image), if enabled
    prune_scale3d: float = 0.1  # prune above this scale (x scene_scale), after the first reset
    prune_scale2d: float = 0.15  # prune above this screen radius, if enabled
    refine_scale2d_stop_iter: int = 0  # > 0 enables the screen-radius rules until this step
    refine_start_iter: int = 500  # first step that refines
    refine_stop_iter: int = 15_000  # no refinement from this step on
    reset_every: int = 3_000  # opacity reset period (steps)
    refine_every: int = 100  # refinement period (steps)
    pause_refine_after_reset: int = 0  # steps without refinement after a reset
    revised_opacity: bool = False  # split opacity as in arXiv:2404.06109

    def initialize_state(self, scene_scale: float = 1.0) -> dict[str, Any]:
        """Running state: grad2d / count accumulators (allocated on first use), scene scale."""
        state: dict[str, Any] = {"grad2d": None, "count": None, "scene_scale": scene_scale}
        if self.refine_scale2d_stop_iter > 0:
            state["radii"] = None
        return state

    def check_sanity(self, params: Params, optimizers: Optimizers) -> None:
        """Fail fast when params and optimizers do not have the expected layout."""
        trainable = {name for name, p in params.items() if p.requires_grad}
        if trainable != set(optimizers):
            raise ValueError(f"trainable params {sorted(trainable)} and optimizers "
                             f"{sorted(optimizers)} must have the same keys")
        for name, optimizer in optimizers.items():
            if len(optimizer.param_groups) != 1:
                raise ValueError(f"optimizer {name!r} must have exactly one param_group, "
                                 f"got {len(optimizer.param_groups)}")
        missing = [name for name in REQUIRED_PARAMS if name not in params]
        if missing:
            raise ValueError(f"params is missing {missing}")

    def step_pre_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any],
                          step: int, info: dict[str, Any]) -> None:
        """Call before `loss.backward()`: keeps the gradient of info["means2d"]."""
        if "means2d" not in info:
            raise KeyError("info['means2d'] is required (pass the renderer's info dict)")
        info["means2d"].retain_grad()

    def step_post_backward(self, params: Params, optimizers: Optimizers, state: dict[str, Any],
                           step: int, info: dict[str, Any]) -> dict[str, int]:
        """Call after `loss.backward()`; returns the counts {duplicated, split, pruned, reset}."""
        counts = {"duplicated": 0, "split": 0, "pruned": 0, "reset": 0}
        if step >= self.refine_stop_iter:
            return counts
        self._update_state(params, state, info)
        if (step > self.refine_start_iter and step % self.refine_every == 0
                and step % self.reset_every >= self.pause_refine_after_reset):
            counts["duplicated"], counts["split"] = self._grow(params, optimizers, state, step)
            counts["pruned"] = self._prune(params, optimizers, state, step)
            state["grad2d"].zero_()
            state["count"].zero_()
            if self.refine_scale2d_stop_iter > 0:
                state["radii"].zero_()
        if step % self.reset_every == 0 and step > 0:
            reset_opacities(params, optimizers, value=self.prune_opa * 2.0)
            counts["reset"] = 1
        return counts

    @torch.no_grad()
    def _update_state(self, params: Params, state: dict[str, Any], info: dict[str, Any]) -> None:
        means2d = info["means2d"]
        if means2d.grad is None:
            raise RuntimeError("info['means2d'].grad is None: call step_pre_backward() before "
                               "loss.backward()")
        grads = means2d.grad.clone()  # [C, N, 2]
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        n_gaussians = params["means"].shape[0]
        device = grads.device
        if state["grad2d"] is None:
            state["grad2d"] = torch.zeros(n_gaussians, device=device)
        if state["count"] is None:
            state["count"] = torch.zeros(n_gaussians, device=device)
        if self.refine_scale2d_stop_iter > 0 and state["radii"] is None:
            state["radii"] = torch.zeros(n_gaussians, device=device)
        visible = (info["radii"] > 0).all(dim=-1)  # [C, N]
        gs_ids = torch.where(visible)[1]  # [nnz]
        state["grad2d"].index_add_(0, gs_ids, grads[visible].norm(dim=-1).float())
        state["count"].index_add_(0, gs_ids, torch.ones_like(gs_ids, dtype=torch.float32))
        if self.refine_scale2d_stop_iter > 0:
            radii = info["radii"][visible].max(dim=-1).values.float()  # [nnz]
            normalised = radii / float(max(info["width"], info["height"]))
            state["radii"][gs_ids] = torch.maximum(state["radii"][gs_ids], normalised)

    @torch.no_grad()
    def _grow(self, params: Params, optimizers: Optimizers, state: dict[str, Any],
              step: int) -> tuple[int, int]:
        grads = state["grad2d"] / state["count"].clamp_min(1)  # [N]
        is_grad_high = grads > self.grow_grad2d
        max_scale = torch.exp(params["scales"]).max(dim=-1).values  # [N]
        is_small = max_scale <= self.grow_scale3d * state["scene_scale"]
        is_dupli = is_grad_high & is_small
        is_split = is_grad_high & ~is_small
        if step < self.refine_scale2d_stop_iter:
            is_split |= state["radii"] > self.grow_scale2d
        n_dupli, n_split = int(is_dupli.sum()), int(is_split.sum())
        if n_dupli > 0:
            duplicate(params, optimizers, state, is_dupli)
        # The clones are appended at the end and are never split in the same step.
        is_split = torch.cat([is_split, is_split.new_zeros(n_dupli)])
        if n_split > 0:
            split(params, optimizers, state, is_split, revised_opacity=self.revised_opacity)
        return n_dupli, n_split

    @torch.no_grad()
    def _prune(self, params: Params, optimizers: Optimizers, state: dict[str, Any],
               step: int) -> int:
        is_prune = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        if step > self.reset_every:
            max_scale = torch.exp(params["scales"]).max(dim=-1).values
            is_too_big = max_scale > self.prune_scale3d * state["scene_scale"]
            if step < self.refine_scale2d_stop_iter:
                is_too_big |= state["radii"] > self.prune_scale2d
            is_prune |= is_too_big
        n_prune = int(is_prune.sum())
        if n_prune > 0:
            remove(params, optimizers, state, is_prune)
        return n_prune


@torch.no_grad()
def update_params_and_optimizers(
    param_fn: Callable[[str, Tensor], Tensor],
    optimizer_fn: Callable[[str, Tensor], Tensor],
    params: Params,
    optimizers: Optimizers,
    names: list[str] | None = None,
) -> None:
    """Replace params[name] by param_fn(name, old) and map each optimizer state tensor
    (except the step counter) through optimizer_fn(key, value)."""
    for name in names if names is not None else list(params.keys()):
        old = params[name]
        new = torch.nn.Parameter(param_fn(name, old), requires_grad=old.requires_grad)
        params[name] = new
        if name not in optimizers:
            if old.requires_grad:
                raise ValueError(f"parameter {name!r} is trainable but has no optimizer")
            continue
        optimizer = optimizers[name]
        param_state = optimizer.state.pop(old, {})
        for key, value in param_state.items():
            if key != "step" and isinstance(value, Tensor) and value.dim() > 0:
                param_state[key] = optimizer_fn(key, value)
        optimizer.param_groups[0]["params"] = [new]
        optimizer.state[new] = param_state


def _resize_state(state: dict[str, Any], fn: Callable[[Tensor], Tensor]) -> None:
    for key, value in state.items():
        if isinstance(value, Tensor):
            state[key] = fn(value)


@torch.no_grad()
def duplicate(params: Params, optimizers: Optimizers, state: dict[str, Any], mask: Tensor) -> None:
    """Append a copy of the masked Gaussians (fresh zero optimizer moments for the copies)."""
    sel = torch.where(mask)[0]
    update_params_and_optimizers(
        lambda name, p: torch.cat([p, p[sel]]),
        lambda key, v: torch.cat([v, v.new_zeros((len(sel), *v.shape[1:]))]),
        params, optimizers,
    )
    _resize_state(state, lambda v: torch.cat([v, v[sel]]))


@torch.no_grad()
def split(params: Params, optimizers: Optimizers, state: dict[str, Any], mask: Tensor,
          revised_opacity: bool = False) -> None:
    """Replace each masked Gaussian by 2 samples of N(mean, Sigma) with scales / 1.6.

    The survivors keep their order at the front; the 2 x n_split children are appended.
    """
    sel = torch.where(mask)[0]
    rest = torch.where(~mask)[0]
    scales = torch.exp(params["scales"][sel])  # [S, 3]
    rotmats = quat_to_rotmat(F.normalize(params["quats"][sel], dim=-1))  # [S, 3, 3]
    noise = torch.randn(2, len(sel), 3, device=scales.device, dtype=scales.dtype)
    samples = torch.einsum("nij,nj,bnj->bni", rotmats, scales, noise)  # [2, S, 3]

    def param_fn(name: str, p: Tensor) -> Tensor:
        repeats = [2] + [1] * (p.dim() - 1)
        if name == "means":
            children = (p[sel] + samples).reshape(-1, 3)  # [2S, 3]
        elif name == "scales":
            children = torch.log(scales / 1.6).repeat(2, 1)  # [2S, 3]
        elif name == "opacities" and revised_opacity:
            children = torch.logit(1.0 - torch.sqrt(1.0 - torch.sigmoid(p[sel]))).repeat(repeats)
        else:
            children = p[sel].repeat(repeats)
        return torch.cat([p[rest], children])

    update_params_and_optimizers(
        param_fn,
        lambda key, v: torch.cat([v[rest], v.new_zeros((2 * len(sel), *v.shape[1:]))]),
        params, optimizers,
    )
    _resize_state(state, lambda v: torch.cat([v[rest], v[sel].repeat([2] + [1] * (v.dim() - 1))]))


@torch.no_grad()
def remove(params: Params, optimizers: Optimizers, state: dict[str, Any], mask: Tensor) -> None:
    """Delete the masked Gaussians (and their optimizer moments)."""
    keep = torch.where(~mask)[0]
    update_params_and_optimizers(lambda name, p: p[keep], lambda key, v: v[keep],
                                 params, optimizers)
    _resize_state(state, lambda v: v[keep])


@torch.no_grad()
def reset_opacities(params: Params, optimizers: Optimizers, value: float) -> None:
    """Clamp opacities to at most `value` (post-sigmoid) and zero their optimizer moments."""
    max_logit = math.log(value / (1.0 - value))
    update_params_and_optimizers(
        lambda name, p: torch.clamp(p, max=max_logit),
        lambda key, v: torch.zeros_like(v),
        params, optimizers, names=["opacities"],
    )
