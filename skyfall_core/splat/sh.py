"""Real spherical harmonics (degree 0..3) with gsplat's constants and conventions.

View direction = Gaussian mean - camera centre (normalised here); colour = sum_k SH_k(dir) c_k,
and the renderer adds 0.5 and clamps at 0, as gsplat does to match the INRIA code.
"""

from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814  # 1 / (2 sqrt(pi))
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients per channel for `degree`: (degree + 1)^2."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    return (degree + 1) ** 2


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis functions at unit directions `dirs` [..., 3] -> [..., (degree + 1)^2].

    Same polynomials, signs and ordering as gsplat's `_eval_sh_bases_fast` (Sloan, JCGT 2013).
    """
    x, y, z = dirs.unbind(-1)
    bases = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        bases += [-0.48860251190292 * y, 0.48860251190292 * z, -0.48860251190292 * x]
    if degree >= 2:
        z2 = z * z
        fc1 = x * x - y * y
        fs1 = 2 * x * y
        bases += [
            0.5462742152960395 * fs1,
            -1.092548430592079 * z * y,
            0.9461746957575601 * z2 - 0.3153915652525201,
            -1.092548430592079 * z * x,
            0.5462742152960395 * fc1,
        ]
    if degree >= 3:
        fc2 = x * fc1 - y * fs1
        fs2 = x * fs1 + y * fc1
        tmp_c = -2.285228997322329 * z2 + 0.4570457994644658
        tmp_b = 1.445305721320277 * z
        bases += [
            -0.5900435899266435 * fs2,
            tmp_b * fs1,
            tmp_c * y,
            z * (1.865881662950577 * z2 - 1.119528997770346),
            tmp_c * x,
            tmp_b * fc1,
            -0.5900435899266435 * fc2,
        ]
    return torch.stack(bases, dim=-1)


def spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH colours: dirs [..., 3] (any length), coeffs [..., K, 3] -> [..., 3].

    Only the first (degree + 1)^2 coefficients are used, so a model can raise its degree
    during training without reallocating.
    """
    n_bases = num_sh_bases(degree)
    assert dirs.shape[-1] == 3, f"dirs must be [..., 3], got {tuple(dirs.shape)}"
    assert coeffs.dim() == dirs.dim() + 1 and coeffs.shape[-1] == 3, (
        f"coeffs must be [..., K, 3] matching dirs {tuple(dirs.shape)}, got {tuple(coeffs.shape)}"
    )
    assert coeffs.shape[-2] >= n_bases, (
        f"sh_degree {degree} needs K >= {n_bases} coefficients, got K = {coeffs.shape[-2]}"
    )
    dirs = torch.nn.functional.normalize(dirs, p=2, dim=-1)
    bases = sh_bases(degree, dirs)  # [..., n_bases]
    return (bases[..., None] * coeffs[..., :n_bases, :]).sum(dim=-2)  # [..., 3]


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """Colour in 0..1 -> degree-0 coefficient (inverse of SH_C0 * c + 0.5)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    """Degree-0 coefficient -> colour (before clamping)."""
    return sh0 * SH_C0 + 0.5
