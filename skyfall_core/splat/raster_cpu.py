"""The compiled CPU rasterizer: build/load of the C++ extension and its autograd wrapper.

The extension (`csrc/rasterize.cpp`) is compiled once with `torch.utils.cpp_extension.load`
into `$SKYFALL_CACHE_DIR/torch_extensions/<key>` (default `~/.cache/skyfall_studio/...`), where
`<key>` hashes the sources, the flags, the torch and Python versions and the CPU model/flags (the
code is built with `-march=native` by default, so a cache shared between different machines
never hands one machine a binary built for another's instruction set). `$SKYFALL_RASTER_MARCH`
replaces the target (e.g. `haswell` for an AVX2-only build, or `native -mno-avx512f`); it is
part of the key. `kernel_isa()` reports what the binary was really compiled for (the
compiler's `__AVX512F__`/`__AVX2__`/`__FMA__`/`__ARM_NEON` macros and the vector width).

Parallelism uses ATen's intra-op thread pool (`at::parallel_for`, OpenMP in the CPU wheels;
`torch.set_num_threads` applies): the extension is compiled and linked with `-fopenmp`, without
which those OpenMP pragmas compile to serial loops; it links the `libgomp.so.1` that torch has
already loaded, so the process keeps one OpenMP runtime. Vectorisation uses GCC/Clang vector
extensions of one register's width (kernels.h), so the kernels run at the same speed per
instruction on AVX2-only and AVX-512 CPUs (issue 18).
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from skyfall_core.splat.projection import Projected

CSRC_DIR = Path(__file__).resolve().parent / "csrc"
SOURCES = ("rasterize.cpp",)  # compiled
HEADERS = ("kernels.h",)  # included; part of the cache key
BASE_CXX_FLAGS = ("-O3", "-DNDEBUG", "-std=c++17", "-Wno-psabi", "-fopenmp")
MARCH_ENV = "SKYFALL_RASTER_MARCH"  # target of the build: "native" (default), "haswell", ...
TILE_SIZE = 16  # fixed in the C++ kernel (kTile)


def march_flags(march: str | None = None) -> tuple[str, ...]:
    """Target flags of the build from `march` (default `$SKYFALL_RASTER_MARCH`, else "native").

    A bare word is a `-march=` value ("native", "haswell", "znver3", "x86-64-v3"); words
    starting with "-" are passed as they are, so "native -mno-avx512f" builds for this CPU
    without AVX-512. An empty value or "none" adds no target flag (the compiler's default).
    """
    if march is None:
        march = os.environ.get(MARCH_ENV, "").strip() or "native"
    flags = []
    for word in march.split():
        if word.lower() == "none":
            continue
        flags.append(word if word.startswith("-") else f"-march={word}")
    return tuple(flags)


def cxx_flags(march: str | None = None) -> tuple[str, ...]:
    """All compiler flags of the build (see `march_flags`)."""
    return BASE_CXX_FLAGS + march_flags(march)


CXX_FLAGS = cxx_flags("native")  # the default build's flags


def cache_root() -> Path:
    """Folder holding Skyfall Studio's caches (`$SKYFALL_CACHE_DIR` or ~/.cache/skyfall_studio)."""
    env = os.environ.get("SKYFALL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "skyfall_studio"


def _cpu_fingerprint() -> str:
    """Machine type plus the CPU model and feature flags (Linux), for the cache key."""
    parts = [platform.machine(), platform.processor()]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("model name", "flags", "Features")):
                parts.append(line)
            if line.strip() == "":
                break  # the first processor is enough
    return "\n".join(parts)


def extension_key(march: str | None = None) -> str:
    """Hash of everything the compiled binary depends on (sources, flags, versions, CPU, and the
    Python environment: its torch headers' path is in the build's commands, so two environments
    sharing one folder would rebuild it in turn)."""
    digest = hashlib.sha256()
    for name in SOURCES + HEADERS:
        digest.update((CSRC_DIR / name).read_bytes())
    for part in (" ".join(cxx_flags(march)), torch.__version__, sys.version, sys.prefix, _cpu_fingerprint()):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def extension_dir(march: str | None = None) -> Path:
    """Build folder of the extension for this machine, these sources and this target."""
    return cache_root() / "torch_extensions" / extension_key(march)


def compiler_available() -> bool:
    """True when a C++ compiler is on PATH (`$CXX`, else c++)."""
    return shutil.which(os.environ.get("CXX", "c++")) is not None


@functools.lru_cache(maxsize=1)
def load_extension(verbose: bool = False) -> ModuleType | None:
    """Compile (first call on a machine, about a minute) or load the extension; None on failure.

    The target comes from `$SKYFALL_RASTER_MARCH` (default "native", see `march_flags`). A
    failure (no compiler, no Python headers, a compiler error) is reported with a warning
    naming the cause; callers then fall back to the pure-PyTorch rasterizer.
    """
    return build_extension(verbose=verbose)


def build_extension(march: str | None = None, verbose: bool = False) -> ModuleType | None:
    """Compile or load the extension for `march` (see `march_flags`); None on failure.

    Not cached: `load_extension` is the process-wide entry point. Builds for different
    targets have different module names and folders, so they can be loaded side by side.
    """
    if not compiler_available():
        warnings.warn(
            "No C++ compiler found (set $CXX or install g++): the splat renderer falls back to "
            "the slow pure-PyTorch rasterizer.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    from torch.utils import cpp_extension

    build_dir = extension_dir(march)
    build_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        module = cpp_extension.load(
            name=f"skyfall_splat_cpu_{extension_key(march)}",
            sources=[str(CSRC_DIR / name) for name in SOURCES],
            extra_cflags=list(cxx_flags(march)),
            extra_ldflags=["-fopenmp"],  # at::parallel_for's OpenMP pragmas; links torch's own libgomp.so.1
            build_directory=str(build_dir),
            verbose=verbose,
        )
    except (RuntimeError, OSError, ImportError, subprocess.CalledProcessError) as error:
        warnings.warn(
            f"Building the CPU rasterizer in {build_dir} failed ({error}); the splat renderer "
            "falls back to the slow pure-PyTorch rasterizer. Fix: install a C++17 compiler and "
            "the Python development headers, then delete that folder.",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    (build_dir / "load_seconds.txt").write_text(f"{time.perf_counter() - start:.2f}\n")
    module.skyfall_target_flags = march_flags(march)  # type: ignore[attr-defined]
    return module


def kernel_isa(module: ModuleType | None = None) -> dict[str, object]:
    """What the compiled kernel was built for: {"isa": "AVX-512+FMA" | "AVX2+FMA" | ..., "macros":
    [the instruction-set macros the compiler defined], "flags": the target flags, "vector_bits":
    width of the tile kernels' vectors}.

    Read from the binary itself (`isa_macros()` in rasterize.cpp), not from the CPU, so it
    shows what `-march` really gave. {"isa": "none"} when the extension is not available.
    """
    module = load_extension() if module is None else module
    if module is None:
        return {"isa": "none", "macros": [], "flags": [], "vector_bits": 0}
    if not hasattr(module, "isa_macros"):  # a binary built before the ISA was reported
        return {"isa": "unknown", "macros": [], "flags": [], "vector_bits": 0}
    macros = list(module.isa_macros())
    flags = list(getattr(module, "skyfall_target_flags", ()))
    vector_bytes = module.vector_bytes() if hasattr(module, "vector_bytes") else 0
    return {"isa": isa_label(macros), "macros": macros, "flags": flags,
            "vector_bits": 8 * int(vector_bytes)}


def isa_label(macros: list[str]) -> str:
    """Short name of the widest vector instruction set among the compiler macros."""
    present = set(macros)
    if "__AVX512F__" in present:
        return "AVX-512" + ("+FMA" if "__FMA__" in present else "")
    if "__AVX2__" in present:
        return "AVX2" + ("+FMA" if "__FMA__" in present else "")
    if "__AVX__" in present:
        return "AVX"
    if "__ARM_FEATURE_SVE" in present:
        return "SVE"
    if "__ARM_NEON" in present:
        return "NEON"
    if "__SSE2__" in present:
        return "SSE2"
    return "scalar"


def cpu_isa() -> str:
    """The widest vector instruction set this CPU offers (from /proc/cpuinfo's flags), in
    `isa_label`'s words: what a -march=native build can use. "unknown" without /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return "unknown"
    flags: set[str] = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            flags = set(line.split(":", 1)[1].split())
            break
    names = {"sse2": "__SSE2__", "avx": "__AVX__", "avx2": "__AVX2__", "fma": "__FMA__",
             "avx512f": "__AVX512F__", "asimd": "__ARM_NEON", "sve": "__ARM_FEATURE_SVE"}
    return isa_label([macro for flag, macro in names.items() if flag in flags])


def processor_name() -> str:
    """The CPU's model name (/proc/cpuinfo "model name", else platform.processor())."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


class _ProjectCPU(torch.autograd.Function):
    """gsplat's EWA projection in C++ with its hand-written vector-Jacobian product."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4]
        scales: Tensor,  # [N, 3]
        opacities: Tensor,  # [N] (only for the radii: no gradient)
        viewmats: Tensor,  # [C, 4, 4]
        Ks: Tensor,  # [C, 3, 3]
        settings: tuple[int, int, float, float, float],  # width, height, eps2d, near, far
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        means2d, conics, depths, radii = load_extension().project_forward(
            means, quats, scales, opacities, viewmats, Ks, *settings)
        ctx.save_for_backward(means, quats, scales, viewmats, Ks, radii, conics)
        ctx.settings = settings
        ctx.mark_non_differentiable(radii)
        return means2d, conics, depths, radii

    @staticmethod
    def backward(ctx, v_means2d: Tensor, v_conics: Tensor, v_depths: Tensor, _v_radii: Tensor):  # type: ignore[override]
        means, quats, scales, viewmats, Ks, radii, conics = ctx.saved_tensors
        width, height, eps2d, _, _ = ctx.settings
        v_means, v_quats, v_scales = load_extension().project_backward(
            means, quats, scales, viewmats, Ks, width, height, eps2d, radii, conics,
            v_means2d.contiguous(), v_conics.contiguous(), v_depths.contiguous())
        return v_means, v_quats, v_scales, None, None, None, None


def project_gaussians_cpu(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Projected:
    """Compiled `projection.fully_fused_projection` (same outputs; no gradient to the cameras)."""
    if not near_plane > 0:
        raise ValueError(f"near_plane must be > 0, got {near_plane}")
    dtype = means.dtype
    means2d, conics, depths, radii = _ProjectCPU.apply(
        means.contiguous(), quats.contiguous(), scales.contiguous(),
        opacities.detach().contiguous(), viewmats.detach().to(dtype).contiguous(),
        Ks.detach().to(dtype).contiguous(), (width, height, eps2d, near_plane, far_plane))
    return Projected(means2d=means2d, conics=conics, depths=depths, radii=radii)


class _RasterizeToPixelsCPU(torch.autograd.Function):
    """Differentiable alpha compositing with the compiled kernel (inputs already binned)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        means2d: Tensor,  # [C, N, 2]
        conics: Tensor,  # [C, N, 3]
        colors: Tensor,  # [C, N, D]
        opacities: Tensor,  # [C, N]
        backgrounds: Tensor | None,  # [C, D]
        bins: tuple[Tensor, Tensor, Tensor],  # offsets, flatten_ids, boxes
        width: int,
        height: int,
    ) -> tuple[Tensor, Tensor]:
        offsets, flatten_ids, boxes = bins
        render, alphas, last_ids, packed = load_extension().rasterize_forward(
            means2d, conics, colors, opacities, backgrounds, boxes, offsets, flatten_ids,
            width, height,
        )
        ctx.save_for_backward(packed, backgrounds, offsets, flatten_ids, alphas, last_ids)
        ctx.sizes = (*colors.shape, width, height)  # C, N, D, W, H
        return render, alphas[..., None]  # [C, H, W, D], [C, H, W, 1]

    @staticmethod
    def backward(ctx, v_render: Tensor, v_alphas: Tensor):  # type: ignore[override]
        packed, backgrounds, offsets, flatten_ids, alphas, last_ids = ctx.saved_tensors
        v_means2d, v_conics, v_colors, v_opacities = load_extension().rasterize_backward(
            packed, backgrounds, offsets, flatten_ids, *ctx.sizes, alphas, last_ids,
            v_render.contiguous(), v_alphas.contiguous(),
        )
        v_backgrounds = None
        if backgrounds is not None and ctx.needs_input_grad[4]:
            v_backgrounds = (v_render * (1.0 - alphas)[..., None]).sum(dim=(1, 2))  # [C, D]
        return v_means2d, v_conics, v_colors, v_opacities, v_backgrounds, None, None, None


def rasterize_to_pixels_cpu(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    colors: Tensor,  # [C, N, D], D <= 4
    opacities: Tensor,  # [C, N]
    radii: Tensor,  # [C, N, 2] int32
    depths: Tensor,  # [C, N] sort keys
    width: int,
    height: int,
    backgrounds: Tensor | None = None,  # [C, D]
) -> tuple[Tensor, Tensor, int]:
    """Composite projected Gaussians: (colors [C, H, W, D], alphas [C, H, W, 1], n_isects)."""
    ext = load_extension()
    if ext is None:
        raise RuntimeError("the CPU rasterizer extension is not available (see the warning)")
    means2d, conics, colors, opacities = (
        t.contiguous() for t in (means2d, conics, colors, opacities)
    )
    with torch.no_grad():
        bins = ext.bin_gaussians(
            means2d.detach(), conics.detach(), opacities.detach(), radii.contiguous(),
            depths.detach().contiguous(), width, height,
        )
    if backgrounds is not None:
        backgrounds = backgrounds.contiguous()
    render, alphas = _RasterizeToPixelsCPU.apply(
        means2d, conics, colors, opacities, backgrounds, tuple(bins), width, height
    )
    return render, alphas, int(bins[1].numel())
