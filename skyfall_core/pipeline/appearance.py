"""Per-image appearance model (WildGaussians-style, as used by Skyfall-GS).

Satellite views of one place differ by date: sun, season, atmosphere, sensor gain. A learned
embedding per training image and a learned feature per Gaussian (stored with the Gaussians'
other parameters, so densification clones and prunes it with them) go through a small MLP that
outputs a per-channel affine colour transform (``c' = gamma * c + beta``) for that Gaussian in
that image. The geometry then only has to explain what is common to all dates. The last layer is
zero-initialised, so the model starts as the identity. Pseudo views (stage 2) use the
``fixed`` embedding (the mean over training images), so every render has one consistent look.
"""

from __future__ import annotations

import torch
from torch import nn


class AppearanceModel(nn.Module):
    def __init__(self, n_images: int, embedding_dim: int = 32, feature_dim: int = 16, hidden: int = 64):
        super().__init__()
        self.feature_dim = feature_dim
        self.image_embeddings = nn.Parameter(torch.zeros(n_images, embedding_dim))  # [I, E]
        self.mlp = nn.Sequential(nn.Linear(embedding_dim + feature_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 6))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        nn.init.normal_(self.image_embeddings, std=0.1)

    def embedding(self, image_index: int | None) -> torch.Tensor:
        """The embedding of a training image, or the fixed one (mean) for ``None``. [E]"""
        if image_index is None:
            return self.image_embeddings.mean(0)
        return self.image_embeddings[image_index]

    def init_features(self, n_gaussians: int) -> torch.Tensor:
        """Initial per-Gaussian features [N, F] (small random)."""
        return torch.randn(n_gaussians, self.feature_dim) * 0.1

    def forward(self, colors: torch.Tensor, features: torch.Tensor, image_index: int | None) -> torch.Tensor:
        """Apply the image's colour transform: colours [N, 3], features [N, F] -> colours [N, 3]."""
        n = colors.shape[0]
        assert features.shape == (n, self.feature_dim), (
            f"expected features [{n}, {self.feature_dim}], got {tuple(features.shape)}")
        # first layer on cat([e, f]) split in two: the embedding's part is one vector for all N
        first, act, last = self.mlp
        e_dim = self.image_embeddings.shape[1]
        bias = first.bias + first.weight[:, :e_dim] @ self.embedding(image_index)  # [hidden]
        out = last(act(torch.addmm(bias, features, first.weight[:, e_dim:].t())))  # [N, 6]
        gamma, beta = 1.0 + out[:, :3], out[:, 3:]
        return gamma * colors + beta
