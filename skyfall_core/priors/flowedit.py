"""FlowEdit: inversion-free, text-based image editing with a rectified-flow model.

Kulikov, Kleiner, Huberman-Spiegelglas, Michaeli, "FlowEdit: Inversion-Free Text-Based Editing
Using Pre-Trained Flow Models" (arXiv 2412.08629; official code: fallenshock/FlowEdit). Our own
implementation on diffusers components (FLUX.1 or Stable Diffusion 3: VAE, text encoders,
transformer, FlowMatchEulerDiscreteScheduler).

Notation (rectified flow, sigma = t in [0, 1], t = 1 is noise): ``z_t = (1 - t) x0 + t eps`` and
the model predicts the velocity ``V(z_t, t, c) = eps - x0``. With x_src the encoded input and
the schedule t_0 = 1 > t_1 > ... > t_T = 0 of ``steps`` = T steps:

    z_edit = x_src
    for i in [T - n_max, T - n_min):                       # the edit window
        dV = mean over n_avg draws of eps ~ N(0, I):
            z_src = (1 - t_i) x_src + t_i eps
            z_tar = z_src + (z_edit - x_src)
            V(z_tar, t_i, target prompt, target guidance) - V(z_src, t_i, source prompt, source guidance)
        z_edit += (t_{i+1} - t_i) dV                       # Euler step of the edit ODE
    if n_min > 0:                                          # last n_min steps: plain sampling
        x = z_edit + t_s (eps - x_src),  s = T - n_min     # noise the edit to level t_s
        for i in [T - n_min, T): x += (t_{i+1} - t_i) V(x, t_i, target prompt, target guidance)
    output = decode(z_edit if n_min == 0 else x)

Identical source and target conditioning give dV = 0 exactly, so the output is the VAE round trip
of the input: our tests check that. FLUX.1-dev is guidance-distilled (the guidance scale is an
input of the transformer); SD3 uses classifier-free guidance with an empty negative prompt.
Paper defaults for FLUX: 28 steps, n_max 24, n_min 0, n_avg 1, guidance 1.5 -> 5.5; Skyfall-GS
uses n_max 10, n_min 4 with those.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from skyfall_core.errors import ConfigError

ModelKind = Literal["flux", "sd3"]
FLUX_PIPELINES = frozenset({"FluxPipeline", "FluxImg2ImgPipeline", "FluxInpaintPipeline"})
SD3_PIPELINES = frozenset({"StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline",
                           "StableDiffusion3InpaintPipeline"})
_MAX_SEQUENCE_LENGTH = {"flux": 512, "sd3": 256}  # T5 tokens, as the diffusers pipelines use


class RefinementInterrupted(Exception):
    """Raised inside a refinement when the caller's ``should_stop()`` returned True."""


@dataclass(frozen=True)
class FlowEditParams:
    """The FlowEdit knobs (names as in the paper and in ``Stage2Settings``)."""

    source_prompt: str  # describes the input (the render, with its artefacts)
    target_prompt: str  # describes the wanted output
    steps: int = 28  # T: steps of the full schedule
    n_min: int = 4  # last n_min steps are plain target sampling (0 = none)
    n_max: int = 10  # the edit starts at step T - n_max (larger = stronger edit)
    n_avg: int = 1  # noise draws averaged per step
    source_guidance: float = 1.5
    target_guidance: float = 5.5

    @classmethod
    def from_settings(cls, s: Any) -> "FlowEditParams":
        """From a ``config.Stage2Settings``."""
        return cls(source_prompt=s.source_prompt, target_prompt=s.target_prompt, steps=s.steps, n_min=s.n_min,
                   n_max=s.n_max, n_avg=s.n_avg, source_guidance=s.source_guidance,
                   target_guidance=s.target_guidance)


@dataclass
class PromptEmbeddings:
    """One prompt encoded for the transformer (batch 1; expanded per call)."""

    embeds: torch.Tensor  # [1, L, D] sequence embeddings (T5, or CLIP+T5 for SD3)
    pooled: torch.Tensor  # [1, P] pooled CLIP embeddings
    text_ids: torch.Tensor | None = None  # [L, 3] FLUX positional ids of the text tokens
    negative_embeds: torch.Tensor | None = None  # [1, L, D] SD3: empty prompt, for CFG
    negative_pooled: torch.Tensor | None = None  # [1, P]


@dataclass
class FlowEditOutput:
    images: torch.Tensor  # [B, 3, H, W] float32 in 0..1, on the CPU
    latents: torch.Tensor  # [B, C, h, w] float32 edited latents (normalised, unpacked), CPU
    source_latents: torch.Tensor  # [B, C, h, w] float32 encoded input, CPU


def read_model_index(model_id: str, *, local_files_only: bool) -> dict:
    """``model_index.json`` of a diffusers folder or hub id (the hub cache only when offline).

    Raises OSError (missing / not cached / gated) or ValueError (bad JSON or id).
    """
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        return json.loads((folder / "model_index.json").read_text())
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(model_id, "model_index.json", local_files_only=local_files_only))
                      .read_text())


def flow_model_kind(model_index: dict, model_id: str) -> ModelKind:
    """'flux' or 'sd3' from a model_index.json; a ConfigError for any other pipeline."""
    name = model_index.get("_class_name", "?")
    if name in FLUX_PIPELINES:
        return "flux"
    if name in SD3_PIPELINES:
        return "sd3"
    raise ConfigError(f"'{model_id}' is a {name}, not a FLUX.1 or Stable Diffusion 3 rectified-flow model, "
                      f"which FlowEdit needs", path=model_id,
                      fix="set stage2.refiner = \"sdedit\" for this checkpoint, or point stage2.refiner_model "
                          "at FLUX.1-dev or an SD3 model")


def dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``from_pretrained``'s dtype keyword: ``dtype`` in recent diffusers, ``torch_dtype`` before."""
    from diffusers.pipelines import pipeline_utils

    return {"dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype": dtype}


def pack_latents(z: torch.Tensor) -> torch.Tensor:
    """FLUX packing: [B, C, h, w] -> [B, (h/2)(w/2), 4C] (2x2 patches as tokens)."""
    b, c, h, w = z.shape
    z = z.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return z.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of ``pack_latents``: [B, (h/2)(w/2), 4C] -> [B, C, h, w]."""
    b, _, c4 = tokens.shape
    z = tokens.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return z.reshape(b, c4 // 4, h, w)


def _calculate_shift(image_seq_len: int, config: Any) -> float:
    """Resolution-dependent shift mu of FLUX's schedule (linear in the token count, as in diffusers)."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    m = (max_shift - base_shift) / (max_len - base_len)
    return image_seq_len * m + base_shift - m * base_len


class FlowEditPipeline:
    """FlowEdit on a loaded diffusers ``FluxPipeline`` or ``StableDiffusion3Pipeline``.

    Only the pipeline's components are used (VAE, text encoders via ``encode_prompt``, transformer,
    scheduler for the sigma schedule); the loop is ours. Works with the pipeline on one device or
    with diffusers' model / sequential CPU offload.
    """

    def __init__(self, pipe: Any, *, max_sequence_length: int | None = None):
        name = type(pipe).__name__
        if name in FLUX_PIPELINES:
            self.kind: ModelKind = "flux"
        elif name in SD3_PIPELINES:
            self.kind = "sd3"
        else:
            raise TypeError(f"FlowEditPipeline needs a FluxPipeline or StableDiffusion3Pipeline, got {name}")
        self.pipe = pipe
        self.max_sequence_length = max_sequence_length or _MAX_SEQUENCE_LENGTH[self.kind]
        self._prompt_cache: dict[str, PromptEmbeddings] = {}

    @classmethod
    def from_pretrained(cls, model_id: str, *, torch_dtype: torch.dtype = torch.float32,
                        local_files_only: bool = False) -> "FlowEditPipeline":
        """Load FLUX.1 or SD3 (hub id or folder), choosing the class from its model_index.json."""
        kind = flow_model_kind(read_model_index(model_id, local_files_only=local_files_only), model_id)
        from diffusers import FluxPipeline, StableDiffusion3Pipeline

        pipe_cls = FluxPipeline if kind == "flux" else StableDiffusion3Pipeline
        pipe = pipe_cls.from_pretrained(model_id, local_files_only=local_files_only, **dtype_kwarg(torch_dtype))
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe)

    # ---- geometry of the latent grid -------------------------------------------------------

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)

    @property
    def pixel_multiple(self) -> int:
        """Image sides must be multiples of this (VAE downsampling x transformer patch)."""
        patch = 2 if self.kind == "flux" else self.pipe.transformer.config.patch_size
        return self.vae_scale_factor * patch

    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    # ---- the call ------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, params: FlowEditParams, *,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 callback_on_step_end: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> FlowEditOutput:
        """Edit ``images`` [B, 3, H, W] (0..1) from ``params.source_prompt`` to ``params.target_prompt``.

        ``generator``: one per image for batch-independent results (CPU generators are fine).
        ``callback_on_step_end(step, total)`` after every step; ``should_stop()`` is checked at the
        top of every step and raises ``RefinementInterrupted`` when it returns True.
        """
        # 1. Check inputs
        self.check_inputs(images, params)
        h, w = images.shape[-2:]
        # 2. Encode the source and target prompts (cached per prompt)
        src, tar = self.encode_prompts(params)
        # 3. Encode the images into normalised latents (padded to the latent grid)
        x_src = self.prepare_latents(images)
        # 4. The sigma schedule of `steps` steps
        sigmas = self.prepare_sigmas(params.steps, x_src)
        # 5. FlowEdit ODE over the edit window, then n_min plain target steps
        z = self.edit_loop(x_src, src, tar, sigmas, params, generator=generator,
                           callback_on_step_end=callback_on_step_end, should_stop=should_stop)
        # 6. Decode and crop the padding
        out = self.decode(z)[..., :h, :w]
        return FlowEditOutput(images=out, latents=z.float().cpu(), source_latents=x_src.float().cpu())

    def check_inputs(self, images: torch.Tensor, params: FlowEditParams) -> None:
        """Fail fast, naming the argument, the allowed range and the value received."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"`images` must be a [B, 3, H, W] tensor, got {got}")
        if min(images.shape[-2:]) < 8:
            raise ValueError(f"`images` must be at least 8x8 pixels, got {tuple(images.shape[-2:])}")
        lo, hi = float(images.min()), float(images.max())
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"`images` values must lie in [0, 1], got [{lo:.4g}, {hi:.4g}]")
        p = params
        if p.steps < 1:
            raise ValueError(f"`steps` must be >= 1, got {p.steps}")
        if not 0 <= p.n_max <= p.steps:
            raise ValueError(f"`n_max` must lie in [0, steps={p.steps}], got {p.n_max}")
        if not 0 <= p.n_min <= p.n_max:
            raise ValueError(f"`n_min` must lie in [0, n_max={p.n_max}], got {p.n_min}")
        if p.n_avg < 1:
            raise ValueError(f"`n_avg` must be >= 1, got {p.n_avg}")
        for name in ("source_guidance", "target_guidance"):
            if not getattr(p, name) >= 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(p, name)}")
        for name in ("source_prompt", "target_prompt"):
            if not isinstance(getattr(p, name), str) or not getattr(p, name).strip():
                raise ValueError(f"`{name}` must be a non-empty string, got {getattr(p, name)!r}")

    def encode_prompts(self, params: FlowEditParams) -> tuple[PromptEmbeddings, PromptEmbeddings]:
        """(source, target) prompt embeddings; each prompt is encoded once per pipeline."""
        return self._encode(params.source_prompt), self._encode(params.target_prompt)

    def _encode(self, prompt: str) -> PromptEmbeddings:
        if prompt not in self._prompt_cache:
            dev, n = self.device, self.max_sequence_length
            if self.kind == "flux":
                embeds, pooled, text_ids = self.pipe.encode_prompt(prompt=prompt, prompt_2=None, device=dev,
                                                                   max_sequence_length=n)
                enc = PromptEmbeddings(embeds=embeds, pooled=pooled, text_ids=text_ids)
            else:
                embeds, neg, pooled, neg_pooled = self.pipe.encode_prompt(
                    prompt=prompt, prompt_2=None, prompt_3=None, device=dev, do_classifier_free_guidance=True,
                    negative_prompt="", max_sequence_length=n)
                enc = PromptEmbeddings(embeds=embeds, pooled=pooled, negative_embeds=neg, negative_pooled=neg_pooled)
            self._prompt_cache[prompt] = enc
        return self._prompt_cache[prompt]

    @torch.no_grad()
    def prepare_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Encode [B, 3, H, W] 0..1 images to normalised latents [B, C, h, w] float32.

        Sides are padded (edge replication) up to ``pixel_multiple``; the latent is the mode of
        the VAE posterior, normalised as ``(z - shift_factor) * scaling_factor``.
        """
        vae = self.pipe.vae
        m = self.pixel_multiple
        h, w = images.shape[-2:]
        x = F.pad(images.float(), (0, (-w) % m, 0, (-h) % m), mode="replicate")
        x = (x * 2.0 - 1.0).to(self.device, dtype=vae.dtype)
        z = vae.encode(x).latent_dist.mode()  # [B, C, h, w]
        shift = vae.config.get("shift_factor", None) or 0.0
        return ((z.float() - shift) * vae.config.scaling_factor).to(self.device)

    def prepare_sigmas(self, steps: int, x_src: torch.Tensor) -> list[float]:
        """The T + 1 noise levels t_0 = 1 > ... > t_T = 0 of the model's scheduler.

        FLUX: sigmas linspace(1, 1/T, T) with the resolution-dependent shift mu (as FluxPipeline);
        SD3: the scheduler's own spacing and static shift (as StableDiffusion3Pipeline).
        """
        scheduler = self.pipe.scheduler
        h, w = x_src.shape[-2:]
        patch = 2 if self.kind == "flux" else self.pipe.transformer.config.patch_size
        kwargs: dict[str, Any] = {}
        if scheduler.config.get("use_dynamic_shifting", False):
            kwargs["mu"] = _calculate_shift((h // patch) * (w // patch), scheduler.config)
        if self.kind == "flux":
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 1.0 / steps, steps), device="cpu", **kwargs)
        else:
            scheduler.set_timesteps(num_inference_steps=steps, device="cpu", **kwargs)
        sigmas = [float(s) for s in scheduler.sigmas]
        if len(sigmas) != steps + 1:
            raise RuntimeError(f"scheduler gave {len(sigmas)} sigmas for {steps} steps")
        return sigmas

    @torch.no_grad()
    def velocity(self, z: torch.Tensor, sigma: float, prompt: PromptEmbeddings, guidance: float) -> torch.Tensor:
        """The model's velocity V(z, t = sigma, prompt) [B, C, h, w] float32, guidance included."""
        tr = self.pipe.transformer
        b, _, h, w = z.shape
        dev, dtype = z.device, tr.dtype
        if self.kind == "flux":
            img_ids = self.pipe._prepare_latent_image_ids(b, h // 2, w // 2, dev, dtype)  # [(h/2)(w/2), 3]
            g = torch.full([b], guidance, device=dev, dtype=torch.float32) if tr.config.guidance_embeds else None
            v = tr(hidden_states=pack_latents(z.to(dtype)), timestep=torch.full([b], sigma, device=dev, dtype=dtype),
                   guidance=g, pooled_projections=prompt.pooled.expand(b, -1).to(dtype),
                   encoder_hidden_states=prompt.embeds.expand(b, -1, -1).to(dtype),
                   txt_ids=prompt.text_ids, img_ids=img_ids, return_dict=False)[0]
            return unpack_latents(v, h, w).float()
        # SD3: classifier-free guidance against the empty prompt when guidance > 1
        cfg = guidance > 1.0
        x = torch.cat([z, z]) if cfg else z
        embeds = prompt.embeds.expand(b, -1, -1)
        pooled = prompt.pooled.expand(b, -1)
        if cfg:
            embeds = torch.cat([prompt.negative_embeds.expand(b, -1, -1), embeds])
            pooled = torch.cat([prompt.negative_pooled.expand(b, -1), pooled])
        t = torch.full([x.shape[0]], sigma * self.pipe.scheduler.config.num_train_timesteps, device=dev, dtype=dtype)
        v = tr(hidden_states=x.to(dtype), timestep=t, encoder_hidden_states=embeds.to(dtype),
               pooled_projections=pooled.to(dtype), return_dict=False)[0].float()
        if cfg:
            v_uncond, v_text = v.chunk(2)
            v = v_uncond + guidance * (v_text - v_uncond)
        return v

    @torch.no_grad()
    def edit_loop(self, x_src: torch.Tensor, src: PromptEmbeddings, tar: PromptEmbeddings, sigmas: list[float],
                  params: FlowEditParams, *, generator: torch.Generator | list[torch.Generator] | None = None,
                  callback_on_step_end: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
        """The FlowEdit ODE (module docstring) on latents [B, C, h, w]; returns the edited latents."""
        from diffusers.utils.torch_utils import randn_tensor

        steps, n_avg = params.steps, params.n_avg
        first, switch = steps - params.n_max, steps - params.n_min
        noise = lambda: randn_tensor(tuple(x_src.shape), generator=generator, device=x_src.device,  # noqa: E731
                                     dtype=torch.float32)
        z_edit = x_src.clone()
        x_tar = None  # the plain-sampling state of the last n_min steps
        for i in range(first, steps):
            if should_stop is not None and should_stop():
                raise RefinementInterrupted(f"stopped at FlowEdit step {i - first} of {steps - first}")
            t, t_next = sigmas[i], sigmas[i + 1]
            if i < switch:
                dv = torch.zeros_like(x_src)
                for _ in range(n_avg):
                    z_src = (1.0 - t) * x_src + t * noise()
                    z_tar = z_src + (z_edit - x_src)
                    dv += (self.velocity(z_tar, t, tar, params.target_guidance)
                           - self.velocity(z_src, t, src, params.source_guidance)) / n_avg
                z_edit = z_edit + (t_next - t) * dv
            else:
                if x_tar is None:  # noise the edit to level t (SDEdit-style start)
                    x_tar = z_edit + t * (noise() - x_src)
                x_tar = x_tar + (t_next - t) * self.velocity(x_tar, t, tar, params.target_guidance)
            if callback_on_step_end is not None:
                callback_on_step_end(i - first + 1, steps - first)
        return z_edit if x_tar is None else x_tar

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, C, h, w] -> images [B, 3, H, W] float32 0..1 on the CPU."""
        vae = self.pipe.vae
        shift = vae.config.get("shift_factor", None) or 0.0
        z = (latents.float() / vae.config.scaling_factor + shift).to(self.device, dtype=vae.dtype)
        x = vae.decode(z, return_dict=False)[0]
        return ((x.float() + 1.0) / 2.0).clamp(0.0, 1.0).cpu()
