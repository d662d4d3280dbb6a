"""One renderer interface, modelled on `gsplat.rasterization(..., render_mode="RGB+ED")`.

Back-ends:
  * "gsplat": gsplat's CUDA kernels (only with CUDA),
  * "cpu":    our compiled tile rasterizer (C++, vectorised, multi-threaded),
  * "torch":  the pure-PyTorch reference (slow, exact, needs nothing compiled),
  * "auto":   gsplat when CUDA is available, else cpu, else torch with a warning.
The cpu and torch back-ends share the PyTorch projection and SH code and follow gsplat 1.5's
maths, so all three agree up to float rounding.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch
from torch import Tensor

from skyfall_core.splat.projection import camera_centers, fully_fused_projection, tile_grid
from skyfall_core.splat.raster_cpu import (
    TILE_SIZE,
    load_extension,
    project_gaussians_cpu,
    rasterize_to_pixels_cpu,
)
from skyfall_core.splat.raster_torch import rasterize_to_pixels_torch
from skyfall_core.splat.sh import spherical_harmonics

Backend = Literal["auto", "gsplat", "cpu", "torch"]
BACKENDS = ("auto", "gsplat", "cpu", "torch")


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete back-end for `backend` on tensors living on `device`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError(f"backend 'gsplat' needs CUDA tensors, got tensors on {device}")
    if backend in ("cpu", "torch") and device.type != "cpu":
        raise ValueError(f"backend {backend!r} needs CPU tensors, got tensors on {device}")
    if backend == "cpu" and load_extension() is None:
        raise RuntimeError("backend 'cpu' needs the compiled rasterizer, which is unavailable "
                           "(see the warning above); use backend='auto' or 'torch'")
    if backend != "auto":
        return backend
    if device.type == "cuda":
        return "gsplat"
    if load_extension() is not None:
        return "cpu"
    warnings.warn(
        "The compiled CPU rasterizer is unavailable (no C++ compiler or a failed build): "
        "rendering with the pure-PyTorch reference, which is 20-100x slower.",
        RuntimeWarning,
        stacklevel=3,
    )
    return "torch"


def _check_inputs(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmats: Tensor, Ks: Tensor, width: int, height: int, sh_degree: int | None,
    backgrounds: Tensor | None,
) -> None:
    N = means.shape[0]
    assert means.dim() == 2 and means.shape[1] == 3, f"means must be [N, 3], got {tuple(means.shape)}"
    assert quats.shape == (N, 4), f"quats must be [N, 4] = [{N}, 4], got {tuple(quats.shape)}"
    assert scales.shape == (N, 3), f"scales must be [N, 3] = [{N}, 3], got {tuple(scales.shape)}"
    assert opacities.shape == (N,), f"opacities must be [N] = [{N}], got {tuple(opacities.shape)}"
    assert viewmats.dim() == 3 and viewmats.shape[1:] == (4, 4), (
        f"viewmats must be [C, 4, 4], got {tuple(viewmats.shape)}"
    )
    C = viewmats.shape[0]
    assert Ks.shape == (C, 3, 3), f"Ks must be [C, 3, 3] = [{C}, 3, 3], got {tuple(Ks.shape)}"
    assert width > 0 and height > 0, f"image size must be positive, got {width}x{height}"
    if sh_degree is None:
        assert colors.shape in ((N, 3), (C, N, 3)), (
            f"colors must be [N, 3] or [C, N, 3] when sh_degree is None, got {tuple(colors.shape)}"
        )
    else:
        assert colors.dim() in (3, 4) and colors.shape[-1] == 3 and colors.shape[-3] == N, (
            f"SH colors must be [N, K, 3] or [C, N, K, 3], got {tuple(colors.shape)}"
        )
        assert (sh_degree + 1) ** 2 <= colors.shape[-2], (
            f"sh_degree {sh_degree} needs K >= {(sh_degree + 1) ** 2}, got K = {colors.shape[-2]}"
        )
    if backgrounds is not None:
        assert backgrounds.shape == (C, 3), (
            f"backgrounds must be [C, 3] = [{C}, 3], got {tuple(backgrounds.shape)}"
        )


def view_colors(
    means: Tensor,  # [N, 3]
    colors: Tensor,  # [N, 3] | [C, N, 3] | [N, K, 3] | [C, N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
    sh_degree: int | None,
) -> Tensor:
    """Per-camera RGB [C, N, 3]: colours as given, or SH evaluated as gsplat (+0.5, >= 0)."""
    C, N = viewmats.shape[0], means.shape[0]
    if sh_degree is None:
        return colors.expand(C, N, 3) if colors.dim() == 2 else colors
    dirs = means[None, :, :] - camera_centers(viewmats)[:, None, :]  # [C, N, 3]
    shs = colors.expand(C, *colors.shape) if colors.dim() == 3 else colors  # [C, N, K, 3]
    return torch.clamp_min(spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)  # [C, N, 3]


def rasterize(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4] wxyz, any norm
    scales: Tensor,  # [N, 3] linear
    opacities: Tensor,  # [N] in 0..1
    colors: Tensor,  # [N, 3] / [C, N, 3] RGB, or [N, K, 3] / [C, N, K, 3] SH with sh_degree
    viewmats: Tensor,  # [C, 4, 4] world-to-camera, OpenCV axes
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    *,
    sh_degree: int | None = None,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    backgrounds: Tensor | None = None,  # [C, 3]
    eps2d: float = 0.3,
    backend: Backend = "auto",
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """Render C views of N Gaussians.

    Returns (colors [C, H, W, 3], alphas [C, H, W, 1], depths [C, H, W, 1], info): depths is the
    expected camera-space z (accumulated z / alpha; 0 where nothing was drawn), and info holds
    gsplat's fields `means2d` [C, N, 2] (non-leaf: call `.retain_grad()` before backward for
    densification), `radii` [C, N, 2] int32, `depths` [C, N], `conics`, `opacities`, `width`,
    `height`, `n_cameras`, `gaussian_ids` (None: not packed), `tile_size`, `n_isects`, `backend`.
    Differentiable w.r.t. means, quats, scales, opacities, colors and backgrounds.
    """
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                  sh_degree, backgrounds)
    chosen = resolve_backend(backend, means.device)
    if chosen == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width,
                                 height, sh_degree, near_plane, far_plane, backgrounds, eps2d)
    C = viewmats.shape[0]
    # The compiled projection gives no gradient to the cameras: use PyTorch's when they need one.
    compiled = chosen == "cpu" and not (viewmats.requires_grad or Ks.requires_grad)
    project = project_gaussians_cpu if compiled else fully_fused_projection
    proj = project(means, quats, scales, opacities, viewmats, Ks, width, height,
                   eps2d=eps2d, near_plane=near_plane, far_plane=far_plane)
    rgb = view_colors(means, colors, viewmats, sh_degree)  # [C, N, 3]
    features = torch.cat([rgb, proj.depths[..., None]], dim=-1)  # [C, N, 4]: RGB + z
    view_opacities = opacities[None, :].expand(C, -1)  # [C, N]
    if backgrounds is not None:
        backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)  # [C, 4]
    raster = rasterize_to_pixels_cpu if chosen == "cpu" else rasterize_to_pixels_torch
    render, alphas, n_isects = raster(
        proj.means2d, proj.conics, features, view_opacities, proj.radii, proj.depths,
        width, height, backgrounds=backgrounds,
    )
    depth = render[..., 3:4] / alphas.clamp_min(1e-10)  # [C, H, W, 1] expected depth
    tiles_x, tiles_y = tile_grid(width, height, TILE_SIZE)
    info = {
        "means2d": proj.means2d, "radii": proj.radii, "depths": proj.depths,
        "conics": proj.conics, "opacities": view_opacities, "width": width, "height": height,
        "n_cameras": C, "gaussian_ids": None, "camera_ids": None, "tile_size": TILE_SIZE,
        "tile_width": tiles_x, "tile_height": tiles_y, "n_isects": n_isects, "backend": chosen,
    }
    return render[..., :3], alphas, depth, info


def _rasterize_gsplat(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmats: Tensor, Ks: Tensor, width: int, height: int, sh_degree: int | None,
    near_plane: float, far_plane: float, backgrounds: Tensor | None, eps2d: float,
) -> tuple[Tensor, Tensor, Tensor, dict[str, Any]]:
    """Thin wrapper around gsplat's CUDA rasterization with render_mode="RGB+ED"."""
    import gsplat  # imported on use: only the CUDA path needs it

    render, alphas, meta = gsplat.rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree,
        backgrounds=backgrounds, eps2d=eps2d, render_mode="RGB+ED", packed=False,
    )
    meta["n_cameras"] = viewmats.shape[0]
    meta["backend"] = "gsplat"
    meta["n_isects"] = int(meta["flatten_ids"].numel())
    return render[..., :3], alphas, render[..., 3:4], meta
