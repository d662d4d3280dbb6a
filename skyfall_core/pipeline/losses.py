"""Training losses of stage 1 and stage 2 (Skyfall-GS / 3DGS).

Images are ``[H, W, 3]`` float tensors in 0..1 and masks ``[H, W]`` bool (True = valid pixel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian_1d(size: int = 11, sigma: float = 1.5, device=None, dtype=torch.float32) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()  # [size]


def ssim_map(img: torch.Tensor, ref: torch.Tensor, window: int = 11) -> torch.Tensor:
    """Per-pixel SSIM (Gaussian 11x11, sigma 1.5, as in 3DGS), averaged over channels. [H, W]"""
    assert img.shape == ref.shape and img.ndim == 3, f"expected two [H, W, 3] images, got {img.shape}, {ref.shape}"
    c = img.shape[-1]
    x, y = img.permute(2, 0, 1)[None], ref.permute(2, 0, 1)[None]  # [1, C, H, W]
    g = _gaussian_1d(window, device=img.device, dtype=img.dtype)
    pad = window // 2
    # the 2D Gaussian window is separable: blur rows then columns, the five maps in one batch
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [1, 5C, H, W]
    n = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, 1, window).expand(n, 1, 1, window), padding=(0, pad), groups=n)
    stack = F.conv2d(stack, g.view(1, 1, window, 1).expand(n, 1, window, 1), padding=(pad, 0), groups=n)
    mu_x, mu_y, exx, eyy, exy = stack.split(c, dim=1)
    sxx = exx - mu_x ** 2
    syy = eyy - mu_y ** 2
    sxy = exy - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return s[0].mean(0)


def photometric_loss(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None,
                     lambda_dssim: float = 0.2) -> torch.Tensor:
    """(1 - lambda) * L1 + lambda * (1 - SSIM), over the valid pixels only."""
    l1 = (img - ref).abs().mean(-1)  # [H, W]
    dssim = 1.0 - ssim_map(img, ref)  # [H, W]
    per_pixel = (1 - lambda_dssim) * l1 + lambda_dssim * dssim
    if mask is None:
        return per_pixel.mean()
    m = mask.to(per_pixel.dtype)
    return (per_pixel * m).sum() / m.sum().clamp_min(1.0)


def opacity_entropy(opacities: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Binary entropy of the opacities, mean over Gaussians: pushes each to 0 or 1."""
    o = opacities.clamp(eps, 1 - eps)
    return -(o * torch.log(o) + (1 - o) * torch.log(1 - o)).mean()


def pearson_depth_loss(depth: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 - Pearson correlation between a rendered depth and a (scale-free) monocular prior.

    Monocular models predict relative depth or disparity: pass ``-disparity`` or depth so that
    larger means farther in both.
    """
    d, p = depth.reshape(-1), prior.reshape(-1)
    if mask is not None:
        keep = mask.reshape(-1)
        d, p = d[keep], p[keep]
    if d.numel() < 2:
        return depth.sum() * 0.0
    d = d - d.mean()
    p = p - p.mean()
    corr = (d * p).sum() / (d.norm() * p.norm()).clamp_min(1e-8)
    return 1.0 - corr


def psnr(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB for images in 0..1."""
    se = ((img - ref) ** 2).mean(-1)
    mse = se.mean() if mask is None else se[mask].mean()
    return float(-10.0 * torch.log10(mse.clamp_min(1e-12)))
