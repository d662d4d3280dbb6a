"""Refiners of stage 2: turn rendered low-angle views into cleaner images to retrain on.

One interface, ``Refiner``, three back-ends:

- ``flowedit``  — FlowEdit (Skyfall-GS's choice) on a rectified-flow model: FLUX.1-dev or SD3.
- ``sdedit``    — SDEdit img2img on any diffusers checkpoint (``AutoPipelineForImage2Image``).
- ``classical`` — no weights; hole filling, colour matching, sharpening. NOT a diffusion model.

``load_refiner(settings, device)`` builds the one the config asks for and, when its weights are
not on this machine, either falls back to the classical refiner with a warning that says so
(``fallback_to_classical``) or raises ``WeightsNotFoundError``. Nothing loads at import.

Images are ``[H, W, 3]`` float32 RGB in 0..1, alphas ``[H, W]`` in 0..1 (rendered opacity;
pixels below 0.5 are holes). Diffusion refiners pre-fill holes from their surroundings (push-pull)
so the model starts from plausible colours instead of the black background of the render.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np
import torch

from skyfall_core.errors import WeightsNotFoundError
from skyfall_core.priors import download_fix, hub_offline, load_errors, load_failure_cause
from skyfall_core.priors.classical import ClassicalSettings, lab_stats, push_pull_fill, refine_classical
from skyfall_core.priors.flowedit import (
    FlowEditParams,
    FlowEditPipeline,
    RefinementInterrupted,
    dtype_kwarg,
    read_model_index,
)

ProgressCallback = Callable[[int, int], None]  # (images done, total)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class Refiner(ABC):
    """Refines a list of rendered views; cooperative progress and cancel between images."""

    name: str = ""
    is_diffusion: bool = False

    def __init__(self, *, batch_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self._stop_requested = False

    @property
    @abstractmethod
    def description(self) -> str:
        """One or two sentences for the UI: what this refiner is and does."""

    def interrupt(self) -> None:
        """Ask a running ``refine`` to stop at the next check (between images or steps)."""
        self._stop_requested = True

    def refine(self, images: list[np.ndarray], *, alphas: list[np.ndarray] | None = None,
               reference: list[np.ndarray] | None = None, seed: int = 0,
               callback: ProgressCallback | None = None,
               should_stop: Callable[[], bool] | None = None) -> list[np.ndarray]:
        """Refine ``images`` ([H, W, 3] float 0..1 each); returns refined [H, W, 3] float32 images.

        alphas: per-image [H, W] opacity (holes below 0.5) or None. reference: satellite views
        ([h, w, 3] any size) used as a pool of colour statistics (classical refiner only).
        Image k uses seed ``seed + k`` whatever the batch size. ``callback(done, total)`` runs
        after each image. When ``should_stop()`` returns True or ``interrupt()`` was called, the
        refinement stops early and returns the images finished so far (a shorter list).
        """
        _check_images(images, alphas)
        stop = lambda: self._stop_requested or (should_stop is not None and should_stop())  # noqa: E731
        context = self._prepare(reference)
        out: list[np.ndarray] = []
        try:
            for idx in _batches(images, self.batch_size):
                if stop():
                    break
                batch_alphas = None if alphas is None else [alphas[i] for i in idx]
                try:
                    refined = self._refine_batch([images[i] for i in idx], batch_alphas,
                                                 [seed + i for i in idx], context, stop)
                except RefinementInterrupted:
                    break
                for img in refined:
                    out.append(np.ascontiguousarray(img, dtype=np.float32))
                    if callback is not None:
                        callback(len(out), len(images))
        finally:
            self._stop_requested = False
        return out

    def _prepare(self, reference: list[np.ndarray] | None) -> Any:
        """Per-call state shared by all batches (e.g. reference statistics)."""
        return None

    @abstractmethod
    def _refine_batch(self, images: list[np.ndarray], alphas: list[np.ndarray] | None, seeds: list[int],
                      context: Any, stop: Callable[[], bool]) -> list[np.ndarray]:
        """Refine one batch of same-sized images."""


class ClassicalRefiner(Refiner):
    """Hole filling + colour matching to the satellite views + mild sharpening. No weights."""

    name = "classical"
    is_diffusion = False

    def __init__(self, settings: ClassicalSettings | None = None, *, batch_size: int = 1):
        super().__init__(batch_size=batch_size)
        self.settings = settings or ClassicalSettings()

    @property
    def description(self) -> str:
        return ("Classical refiner — not a diffusion model and no model weights: it fills empty pixels "
                "from their surroundings, matches colours to the satellite views and sharpens mildly. "
                "It cannot add facade detail the way FlowEdit or SDEdit does.")

    def _prepare(self, reference):
        return lab_stats([np.asarray(r, np.float32) for r in reference]) if reference else None

    def _refine_batch(self, images, alphas, seeds, context, stop):
        return [refine_classical(np.asarray(img, np.float32), alpha=None if alphas is None else alphas[k],
                                 reference_stats=context, settings=self.settings)
                for k, img in enumerate(images)]


class FlowEditRefiner(Refiner):
    """FlowEdit (Kulikov et al.) on FLUX.1 or SD3, as Skyfall-GS refines its renders."""

    name = "flowedit"
    is_diffusion = True

    def __init__(self, pipeline: FlowEditPipeline, params: FlowEditParams, *, model_id: str = "", batch_size: int = 1):
        super().__init__(batch_size=batch_size)
        self.pipeline = pipeline
        self.params = params
        self.model_id = model_id

    @property
    def description(self) -> str:
        p = self.params
        model = "FLUX.1" if self.pipeline.kind == "flux" else "Stable Diffusion 3"
        return (f"FlowEdit diffusion refiner on {self.model_id or model} ({model}): edits each render from the "
                f"source prompt to the target prompt without inversion (edit window: steps {p.steps - p.n_max}"
                f"-{p.steps - p.n_min} of {p.steps}, {p.n_min} final sampling steps, guidance "
                f"{p.source_guidance} -> {p.target_guidance}).")

    def _refine_batch(self, images, alphas, seeds, context, stop):
        x = torch.from_numpy(np.stack(_prefill(images, alphas))).permute(0, 3, 1, 2)  # [B, 3, H, W]
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        out = self.pipeline(x, self.params, generator=generators, should_stop=stop)
        return [im.permute(1, 2, 0).numpy() for im in out.images]


class SDEditRefiner(Refiner):
    """SDEdit (Meng et al., 2022): noise each render to ``strength`` and denoise toward the prompt."""

    name = "sdedit"
    is_diffusion = True

    def __init__(self, pipe: Any, *, prompt: str, negative_prompt: str | None, strength: float, steps: int,
                 guidance: float, model_id: str = "", batch_size: int = 1):
        super().__init__(batch_size=batch_size)
        if not 0 < strength <= 1:
            raise ValueError(f"`strength` must lie in (0, 1], got {strength}")
        self.pipe = pipe
        self.prompt, self.negative_prompt = prompt, negative_prompt
        self.strength, self.steps, self.guidance = strength, steps, guidance
        self.model_id = model_id
        self._call_args = set(inspect.signature(type(pipe).__call__).parameters)

    @property
    def description(self) -> str:
        return (f"SDEdit img2img diffusion refiner on {self.model_id or type(self.pipe).__name__}: noises each "
                f"render to strength {self.strength} and denoises it toward the target prompt "
                f"({max(1, int(self.steps * self.strength))} of {self.steps} steps, guidance {self.guidance}).")

    def _refine_batch(self, images, alphas, seeds, context, stop):
        h, w = images[0].shape[:2]
        m = int(getattr(self.pipe, "vae_scale_factor", 8)) * 2  # latent grid (x2: FLUX-type packing)
        x = torch.from_numpy(np.stack(_prefill(images, alphas))).permute(0, 3, 1, 2)  # [B, 3, H, W]
        x = torch.nn.functional.pad(x, (0, (-w) % m, 0, (-h) % m), mode="replicate")
        b = x.shape[0]

        def on_step_end(pipe, step, timestep, tensors):
            if stop():
                pipe._interrupt = True  # diffusers' cooperative cancel
            return tensors

        kwargs: dict[str, Any] = dict(prompt=[self.prompt] * b, image=x, strength=self.strength,
                                      num_inference_steps=self.steps, guidance_scale=self.guidance,
                                      generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                                      output_type="np")
        if self.negative_prompt and "negative_prompt" in self._call_args:
            kwargs["negative_prompt"] = [self.negative_prompt] * b
        if "callback_on_step_end" in self._call_args:
            kwargs["callback_on_step_end"] = on_step_end
        out = self.pipe(**kwargs).images  # [B, H', W', 3] float 0..1
        if stop():
            raise RefinementInterrupted("stopped during SDEdit")
        return [np.clip(im[:h, :w], 0.0, 1.0) for im in out]


# ---- loading -----------------------------------------------------------------------------

def resolve_dtype(name: str, device: str) -> tuple[torch.dtype, str | None]:
    """The torch dtype for ``stage2.dtype`` on ``device``: as configured on CUDA, float32 elsewhere."""
    if name not in _DTYPES:
        raise ValueError(f"`dtype` must be one of {sorted(_DTYPES)}, got {name!r}")
    if str(device).startswith("cuda"):
        return _DTYPES[name], None
    note = None if name == "float32" else \
        f"stage2.dtype = {name} applies to CUDA only; on {device} the refiner runs in float32"
    return torch.float32, note


GB = 1024 ** 3


def activation_bytes(image_size: int, batch_size: int) -> int:
    """Headroom for one diffusion call's activations (measured order for FLUX-size transformers in
    bf16: ~2 GB at 512 px for one image, growing with the pixels and the batch) plus the VAE."""
    return int((1.5 + 1.0 * batch_size * (image_size / 512) ** 2) * GB)


def choose_offload(component_bytes: dict[str, int], free_bytes: int, needed_activation_bytes: int) -> str:
    """``none`` when every weight fits in the free GPU memory with the activations, ``model`` when
    the largest component does (diffusers' model CPU offload keeps one on the GPU at a time),
    else ``sequential`` (layer by layer: least memory, 5-10x slower)."""
    total = sum(component_bytes.values())
    largest = max(component_bytes.values(), default=0)
    if total + needed_activation_bytes <= 0.92 * free_bytes:
        return "none"
    if largest + needed_activation_bytes <= 0.92 * free_bytes:
        return "model"
    return "sequential"


def _component_bytes(pipe: Any) -> dict[str, int]:
    out = {}
    for name, comp in getattr(pipe, "components", {}).items():
        if isinstance(comp, torch.nn.Module):
            out[name] = sum(p.numel() * p.element_size() for p in comp.parameters())
    return out


def place_pipeline(pipe: Any, device: str, offload: str, *, image_size: int = 512, batch_size: int = 1) -> str:
    """Put a diffusers pipeline on ``device``: on CUDA with no, model or sequential CPU offload
    (``auto``: chosen from the weights' size and the GPU's free memory), else ``.to``. The VAE
    decodes slice by slice (and in tiles above 1024 px) so batches do not spike memory.
    Returns the offload used."""
    on_cuda = str(device).startswith("cuda")
    if on_cuda and offload == "auto":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        offload = choose_offload(_component_bytes(pipe), free, activation_bytes(image_size, batch_size))
    vae = getattr(pipe, "vae", None)
    if on_cuda and vae is not None:
        if batch_size > 1 and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
        if image_size > 1024 and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
    if not on_cuda:
        pipe.to(device)
        return "none"
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)  # one whole component on the GPU at a time
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)  # layer by layer: least memory, slowest
    else:
        pipe.to(device)
    return offload


def _load_flowedit(settings: Any, device: str, dtype: torch.dtype) -> FlowEditRefiner:
    pipeline = FlowEditPipeline.from_pretrained(settings.refiner_model, torch_dtype=dtype,
                                                local_files_only=hub_offline())
    place_pipeline(pipeline.pipe, device, settings.offload, image_size=settings.image_size,
                   batch_size=settings.batch_size)
    return FlowEditRefiner(pipeline, FlowEditParams.from_settings(settings), model_id=settings.refiner_model,
                           batch_size=settings.batch_size)


def _load_sdedit(settings: Any, device: str, dtype: torch.dtype) -> SDEditRefiner:
    from diffusers import AutoPipelineForImage2Image

    local = hub_offline()
    index = read_model_index(settings.refiner_model, local_files_only=local)
    extra = {"safety_checker": None} if "safety_checker" in index else {}  # it blanks false positives
    pipe = AutoPipelineForImage2Image.from_pretrained(settings.refiner_model, local_files_only=local,
                                                      **dtype_kwarg(dtype), **extra)
    pipe.set_progress_bar_config(disable=True)
    place_pipeline(pipe, device, settings.offload, image_size=settings.image_size, batch_size=settings.batch_size)
    return SDEditRefiner(pipe, prompt=settings.target_prompt, negative_prompt=settings.source_prompt,
                         strength=settings.sdedit_strength, steps=settings.steps, guidance=settings.target_guidance,
                         model_id=settings.refiner_model, batch_size=settings.batch_size)


def load_refiner(settings: Any, device: str = "cpu") -> tuple[Refiner, list[str]]:
    """Build the refiner of ``settings`` (a ``config.Stage2Settings``) on ``device``.

    Returns ``(refiner, warnings)``. When the diffusion weights cannot be loaded here (missing,
    not cached while offline, gated, corrupt): with ``fallback_to_classical`` the classical
    refiner and a warning naming the model and the fix; otherwise ``WeightsNotFoundError``.
    A model of the wrong kind for FlowEdit raises ``ConfigError`` (no fallback: it is a mistake).
    """
    warnings: list[str] = []
    if settings.refiner == "classical":
        return ClassicalRefiner(batch_size=settings.batch_size), warnings
    dtype, note = resolve_dtype(settings.dtype, device)
    loader = _load_flowedit if settings.refiner == "flowedit" else _load_sdedit
    try:
        refiner = loader(settings, device, dtype)
    except load_errors() as exc:
        model = settings.refiner_model
        problem = f"{settings.refiner} model '{model}' could not be loaded: {load_failure_cause(model, exc)}"
        fix = download_fix(model, "stage2.refiner_model")
        if not settings.fallback_to_classical:
            raise WeightsNotFoundError(problem, path=model, fix=f"{fix}; or set stage2.refiner = \"classical\" "
                                                                f"or stage2.fallback_to_classical = true") from exc
        warnings.append(f"{problem}. Using the classical refiner instead — it is NOT a diffusion model (hole "
                        f"filling, colour matching, sharpening; no new detail). Fix: {fix}.")
        return ClassicalRefiner(batch_size=settings.batch_size), warnings
    if note:
        warnings.append(note)
    return refiner, warnings


# ---- helpers -----------------------------------------------------------------------------

def _check_images(images: list[np.ndarray], alphas: list[np.ndarray] | None) -> None:
    for k, img in enumerate(images):
        if np.ndim(img) != 3 or np.shape(img)[-1] != 3:
            raise ValueError(f"images[{k}] must be [H, W, 3] RGB, got shape {np.shape(img)}")
    if alphas is not None:
        if len(alphas) != len(images):
            raise ValueError(f"got {len(alphas)} alphas for {len(images)} images: give one [H, W] alpha per image")
        for k, (a, img) in enumerate(zip(alphas, images, strict=True)):
            if np.shape(a) != np.shape(img)[:2]:
                raise ValueError(f"alphas[{k}] must be [H, W] = {np.shape(img)[:2]}, got {np.shape(a)}")


def _batches(images: list[np.ndarray], batch_size: int) -> list[list[int]]:
    """Consecutive index groups of at most ``batch_size`` images of one size."""
    groups: list[list[int]] = []
    for k, img in enumerate(images):
        if groups and len(groups[-1]) < batch_size and np.shape(images[groups[-1][0]]) == np.shape(img):
            groups[-1].append(k)
        else:
            groups.append([k])
    return groups


def _prefill(images: list[np.ndarray], alphas: list[np.ndarray] | None, hole_alpha: float = 0.5) -> list[np.ndarray]:
    """Images as float32 0..1 with their holes (alpha < hole_alpha) filled by push-pull."""
    out = []
    for k, img in enumerate(images):
        img = np.clip(np.asarray(img, np.float32), 0.0, 1.0)
        if alphas is not None:
            img = push_pull_fill(img, np.asarray(alphas[k]) >= hole_alpha)
        out.append(img)
    return out
