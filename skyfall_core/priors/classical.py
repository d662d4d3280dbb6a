"""Classical (no weights) refinement of rendered views: fill holes, match colours, sharpen.

NOT a diffusion model and no substitute for one: it cannot invent facades or detail. It removes
the most visible defects of a splat render (empty pixels, colour drift from the satellite views,
softness) so that a run without diffusion weights still completes and produces something usable.

Images are ``[H, W, 3]`` float32 RGB in 0..1; alphas ``[H, W]`` in 0..1 (rendered opacity).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class ClassicalSettings:
    hole_alpha: float = 0.5  # pixels with alpha below this are holes, filled from their surroundings
    color_strength: float = 0.75  # 0 = keep colours, 1 = match the reference Lab mean/std fully
    sharpen_amount: float = 0.3  # unsharp-mask gain (mild)
    sharpen_sigma: float = 1.0  # unsharp-mask Gaussian sigma, pixels


def push_pull_fill(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill the invalid pixels of ``image`` from the valid ones by a push-pull pyramid.

    Push: 2x2 box sums of ``colour * weight`` and ``weight`` down to 1 pixel. Pull: from the
    coarsest level up, every level keeps its own normalised colour where it has weight >= 1 and
    blends in the upsampled coarser fill where it has less. Valid pixels are returned unchanged;
    a hole gets a smooth weighted average of its surroundings, however large it is.

    image: [H, W, C] float32; valid: [H, W] bool. Returns [H, W, C] float32.
    """
    if image.ndim != 3 or valid.shape != image.shape[:2]:
        raise ValueError(f"push_pull_fill needs [H, W, C] and [H, W], got {image.shape} and {valid.shape}")
    image = image.astype(np.float32)
    if valid.all() or not valid.any():
        return image.copy()
    weight = valid.astype(np.float32)
    colours, weights = [image * weight[..., None]], [weight]  # level 0 = full resolution
    while min(weights[-1].shape) > 1:
        c, w = colours[-1], weights[-1]
        h, wd = w.shape
        ph, pw = h % 2, wd % 2  # pad odd sizes with zero weight
        c = np.pad(c, ((0, ph), (0, pw), (0, 0)))
        w = np.pad(w, ((0, ph), (0, pw)))
        hh, ww = c.shape[0] // 2, c.shape[1] // 2
        colours.append(c.reshape(hh, 2, ww, 2, -1).sum(axis=(1, 3)))
        weights.append(w.reshape(hh, 2, ww, 2).sum(axis=(1, 3)))
    filled = colours[-1] / np.maximum(weights[-1], 1e-8)[..., None]
    for c, w in zip(colours[-2::-1], weights[-2::-1], strict=True):
        h, wd = w.shape
        up = cv2.resize(filled, (wd, h), interpolation=cv2.INTER_LINEAR).reshape(h, wd, -1)
        own = c / np.maximum(w, 1e-8)[..., None]
        a = np.minimum(w, 1.0)[..., None]
        filled = a * own + (1.0 - a) * up
    filled[valid] = image[valid]
    return filled


def lab_stats(images: list[np.ndarray], masks: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled per-channel mean and std of images in CIE Lab (L 0..100, a/b ~ -128..127). ([3], [3])"""
    pixels = []
    for k, img in enumerate(images):
        lab = cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3)
        if masks is not None:
            lab = lab[masks[k].reshape(-1)]
        pixels.append(lab)
    allpix = np.concatenate(pixels, axis=0)
    if len(allpix) == 0:
        raise ValueError("lab_stats: no pixels to measure (all masked out)")
    return allpix.mean(axis=0), allpix.std(axis=0)


def match_colors(image: np.ndarray, ref_mean: np.ndarray, ref_std: np.ndarray, *, strength: float = 1.0,
                 valid: np.ndarray | None = None) -> np.ndarray:
    """Reinhard colour transfer: move the image's Lab mean/std toward ``ref_mean``/``ref_std``.

    The image's own statistics come from its ``valid`` pixels (all when None). ``strength`` blends
    between the input (0) and the fully matched image (1). Returns [H, W, 3] float32 in 0..1.
    """
    lab = cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)
    mean, std = lab_stats([image], None if valid is None else [valid])
    matched = (lab - mean) / np.maximum(std, 1e-3) * ref_std + ref_mean
    lab_out = (1.0 - strength) * lab + strength * matched
    lab_out[..., 0] = np.clip(lab_out[..., 0], 0.0, 100.0)
    return np.clip(cv2.cvtColor(lab_out.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


def unsharp_mask(image: np.ndarray, *, amount: float = 0.3, sigma: float = 1.0) -> np.ndarray:
    """``image + amount * (image - gaussian_blur(image, sigma))``, clipped to 0..1."""
    blurred = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma,
                               borderType=cv2.BORDER_REFLECT)
    return np.clip(image + amount * (image - blurred), 0.0, 1.0).astype(np.float32)


def refine_classical(image: np.ndarray, *, alpha: np.ndarray | None = None,
                     reference_stats: tuple[np.ndarray, np.ndarray] | None = None,
                     settings: ClassicalSettings = ClassicalSettings()) -> np.ndarray:
    """Fill holes (alpha < settings.hole_alpha), match colours to the reference, sharpen mildly.

    image: [H, W, 3] float32 0..1; alpha: [H, W] or None (no holes); reference_stats: Lab
    (mean, std) of the reference views from ``lab_stats``, or None to skip colour matching.
    """
    valid = np.ones(image.shape[:2], bool) if alpha is None else alpha >= settings.hole_alpha
    out = push_pull_fill(image, valid) if not valid.all() else image.astype(np.float32)
    if reference_stats is not None and settings.color_strength > 0 and valid.any():
        out = match_colors(out, *reference_stats, strength=settings.color_strength, valid=valid)
    if settings.sharpen_amount > 0:
        out = unsharp_mask(out, amount=settings.sharpen_amount, sigma=settings.sharpen_sigma)
    return out
