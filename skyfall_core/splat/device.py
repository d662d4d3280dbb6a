"""The one device of a job, and the renderer that goes with it.

A job decides its device once, from ``[device] compute`` (``auto`` = CUDA when torch sees a GPU),
and creates every tensor on it; the renderer follows the tensors' device (gsplat on CUDA, the
compiled CPU rasterizer elsewhere), as gsplat's own trainer does.

gsplat from PyPI compiles its CUDA kernels the first time it is used on a machine (about a
minute with ``nvcc``; cached in ``~/.cache/torch_extensions`` afterwards). :func:`prepare_renderer`
does that up front, so a job can say so instead of seeming to hang on its first step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from skyfall_core.errors import SkyfallError

GPU_NEEDS = ("a CUDA build of the pinned torch (pip install torch==<pinned> --index-url "
             "https://download.pytorch.org/whl/cu1xx), an NVIDIA driver, and for gsplat's first build the CUDA "
             "toolkit's nvcc on PATH")


class DeviceError(SkyfallError):
    """The configured device or renderer cannot be used on this machine."""


def resolve_device(compute: str) -> torch.device:
    """The job's device for ``[device] compute`` (auto | cpu | cuda)."""
    if compute not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"[device] compute must be auto, cpu or cuda, got {compute!r}", path="config.toml",
                          fix='set compute = "auto"')
    if compute == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if compute == "cuda":
        raise DeviceError("[device] compute = \"cuda\" but torch sees no CUDA GPU "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})",
                          path="config.toml",
                          fix=f'set compute = "auto" or "cpu" to run on the CPU, or install {GPU_NEEDS}')
    return torch.device("cpu")


def check_renderer(renderer: str, device: torch.device) -> None:
    """Fail early, with the fix, when ``[device] renderer`` cannot render tensors on ``device``."""
    if renderer == "gsplat" and device.type != "cuda":
        raise DeviceError(f'[device] renderer = "gsplat" needs a CUDA device, but this job runs on {device}',
                          path="config.toml", fix='set renderer = "auto" (the compiled CPU rasterizer on the CPU)')
    if renderer in ("cpu", "torch") and device.type != "cpu":
        raise DeviceError(f'[device] renderer = "{renderer}" renders CPU tensors only, but this job runs on {device}',
                          path="config.toml",
                          fix='set renderer = "auto" (gsplat on CUDA), or compute = "cpu" to train on the CPU')


@dataclass(frozen=True)
class RendererReady:
    backend: str  # the back-end that rendered the warm-up
    seconds: float  # time of the first render (includes a first build of the kernels)
    built: bool  # True when this call compiled kernels (slow first use on the machine)


def prepare_renderer(renderer: str, device: torch.device) -> RendererReady:
    """Load (first use on a machine: compile) the renderer for ``device`` with one tiny render.

    Raises :class:`DeviceError` with the fix when gsplat is missing or fails to build."""
    from skyfall_core.splat.render import rasterize

    check_renderer(renderer, device)
    t0 = time.perf_counter()
    means = torch.tensor([[0.0, 0.0, 5.0]], device=device)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], device=device)
    scales = torch.full((1, 3), 0.5, device=device)
    opacities = torch.full((1,), 0.9, device=device)
    colors = torch.ones(1, 3, device=device)
    viewmats = torch.eye(4, device=device)[None]
    Ks = torch.tensor([[[16.0, 0.0, 8.0], [0.0, 16.0, 8.0], [0.0, 0.0, 1.0]]], device=device)
    try:
        _, alpha, _, info = rasterize(means, quats, scales, opacities, colors, viewmats, Ks, 16, 16,
                                      backend=renderer)  # type: ignore[arg-type]
        float(alpha.sum())  # wait for the kernel
    except ImportError as exc:
        raise DeviceError(f"the GPU renderer gsplat cannot be imported ({exc})",
                          fix=f"pip install -r requirements.txt (gsplat); it needs {GPU_NEEDS}") from exc
    except (RuntimeError, OSError) as exc:
        if device.type != "cuda":
            raise
        raise DeviceError(f"gsplat could not build or run its CUDA kernels ({str(exc).splitlines()[0][:300]})",
                          fix=f"check that nvcc matches torch's CUDA version ({torch.version.cuda}); "
                              "set TORCH_CUDA_ARCH_LIST to your GPU (e.g. 9.0 for H100/H200) and MAX_JOBS; or set "
                              '[device] compute = "cpu"') from exc
    seconds = time.perf_counter() - t0
    return RendererReady(info["backend"], seconds, built=seconds > 10.0)
