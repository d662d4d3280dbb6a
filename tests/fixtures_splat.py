"""Splat models for the export tests (test-only: not in the package)."""

from __future__ import annotations

import torch

from skyfall_core.splat.model import GaussianModel


def random_model(n: int = 300, degree: int = 3, seed: int = 3) -> GaussianModel:
    """``n`` random Gaussians over a 400 m square, SH up to ``degree``, the same for the same ``seed``."""
    g = torch.Generator().manual_seed(seed)
    K = (degree + 1) ** 2
    return GaussianModel({
        "means": torch.rand(n, 3, generator=g) * 400 - 200,
        "scales": torch.rand(n, 3, generator=g) * 6 - 7,
        "quats": torch.randn(n, 4, generator=g),
        "opacities": torch.randn(n, generator=g) * 2 + 1,
        "sh0": torch.rand(n, 1, 3, generator=g) * 3 - 1.5,
        "shN": torch.rand(n, K - 1, 3, generator=g) * 1.6 - 0.8,
    }, sh_degree=degree)
