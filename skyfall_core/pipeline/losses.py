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
    """Per-pixel SSIM (Gaussian 11x11, sigma 1.5, zero padding, as in 3DGS), averaged over channels. [H, W]

    On the CPU, when only ``img`` needs a gradient (the training case), a fused version with an
    analytic backward and OpenCV's Gaussian blur is used (1.5x faster than autograd through
    depthwise conv2d on a quiet machine, benchmarks/bench_ssim.py; far less hurt by a busy CPU);
    elsewhere the autograd reference :func:`ssim_map_reference`.
    """
    assert img.shape == ref.shape and img.ndim == 3, f"expected two [H, W, 3] images, got {img.shape}, {ref.shape}"
    if img.device.type == "cpu" and not ref.requires_grad and img.dtype in (torch.float32, torch.float64):
        return _FusedSSIM.apply(img, ref, window)
    return ssim_map_reference(img, ref, window)


_C1, _C2 = 0.01 ** 2, 0.03 ** 2


def ssim_map_reference(img: torch.Tensor, ref: torch.Tensor, window: int = 11) -> torch.Tensor:
    """SSIM map through autograd (the exact reference, and the GPU path)."""
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
    s = ((2 * mu_x * mu_y + _C1) * (2 * sxy + _C2)) / ((mu_x ** 2 + mu_y ** 2 + _C1) * (sxx + syy + _C2))
    return s[0].mean(0)


def _blur(a: torch.Tensor, window: int) -> torch.Tensor:
    """Gaussian blur (``window`` taps, sigma 1.5) of a CPU [H, W, K] tensor with zero padding (OpenCV)."""
    import cv2

    a = a.contiguous()
    out = torch.empty_like(a)
    src, dst = a.numpy(), out.numpy()
    for k0 in range(0, a.shape[-1], 512):  # OpenCV takes at most 512 channels
        chunk = cv2.GaussianBlur(src[..., k0:k0 + 512], (window, window), 1.5, borderType=cv2.BORDER_CONSTANT)
        dst[..., k0:k0 + 512] = chunk.reshape(dst[..., k0:k0 + 512].shape)
    return out


class _FusedSSIM(torch.autograd.Function):
    """SSIM map with its gradient w.r.t. the first image in closed form.

    With m = G*x, e_xx = G*(x^2), e_xy = G*(xy) (G the blur), S = A1 A2 / (B1 B2) per pixel and
    channel, and upstream gradient g: dL/dx = G*(g dS/dm) + 2x G*(g dS/de_xx) + y G*(g dS/de_xy)
    (the zero-padded symmetric blur is its own adjoint).
    """

    @staticmethod
    def forward(ctx, img: torch.Tensor, ref: torch.Tensor, window: int) -> torch.Tensor:
        x, y = img.detach(), ref.detach().to(img.dtype)
        mu_x, mu_y, exx, eyy, exy = _blur(torch.cat([x, y, x * x, y * y, x * y], -1), window).chunk(5, -1)
        mxy = mu_x * mu_y
        mxx, myy = mu_x.square(), mu_y.square()
        a1 = mxy.mul(2).add_(_C1)
        a2 = exy.sub_(mxy).mul_(2).add_(_C2)
        b1 = (mxx + myy).add_(_C1)
        b2 = exx.sub_(mxx).add_(eyy).sub_(myy).add_(_C2)
        inv = (b1 * b2).reciprocal_()
        s = a1 * a2 * inv
        ctx.window = window
        if img.requires_grad:
            d_m = (a2 - a1).mul_(mu_y).mul_(inv).mul_(2).sub_(
                (b1.reciprocal() - b2.reciprocal()).mul_(s).mul_(mu_x).mul_(2))
            d_exx = (s / b2).neg_()
            d_exy = a1.mul_(inv).mul_(2)
            ctx.save_for_backward(x, y, torch.cat([d_m, d_exx, d_exy], -1))
        return s.mean(-1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, y, ds = ctx.saved_tensors
        g = grad.to(x.dtype).unsqueeze(-1) / x.shape[-1]  # [H, W, 1]
        ga, gb, gc = _blur(ds * g, ctx.window).chunk(3, -1)
        return ga.add_(gb.mul_(x).mul_(2)).add_(gc.mul_(y)), None, None


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
