"""EWA projection of 3D Gaussians to the image plane, in PyTorch (autograd gives the backward).

The maths of gsplat 1.5 `fully_fused_projection` (pinhole): world -> camera with the 4x4
world-to-camera matrix (OpenCV: x right, y down, z forward), covariance R S S^T R^T, Jacobian of
the perspective projection evaluated with x/z and y/z clamped to the view frustum widened by
30 % of tan(fov/2) on each side, 2D covariance + eps2d * I (low-pass filter), conic = inverse of
the 2D covariance, opacity-aware per-axis radii. Gaussians outside [near, far] on camera z, with
a non-positive determinant or fully off-screen get radii (0, 0) and are not drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA_THRESHOLD = 1.0 / 255.0  # alphas below this are not composited
RADIUS_SIGMAS = 3.33  # gsplat's widest extent, in standard deviations per axis


@dataclass(frozen=True)
class Projected:
    """Per-camera 2D Gaussians; entries with radii == 0 are culled."""

    means2d: Tensor  # [C, N, 2] pixel coordinates (x right, y down)
    conics: Tensor  # [C, N, 3] upper triangle of the inverse 2D covariance (a, b, c)
    depths: Tensor  # [C, N] camera-space z
    radii: Tensor  # [C, N, 2] int32 pixel radii (x, y); 0 where culled


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Quaternions wxyz [..., 4] (any norm) -> rotation matrices [..., 3, 3]."""
    w, x, y, z = F.normalize(quats, p=2, dim=-1).unbind(-1)
    rotmats = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    )
    return rotmats.reshape(quats.shape[:-1] + (3, 3))


def small_matmul(a: Tensor, b: Tensor) -> Tensor:
    """Batched product of tiny matrices [..., I, K] @ [..., K, J] by broadcasting.

    For 2x3 and 3x3 blocks this is several times faster on CPU than `torch.matmul`, which
    dispatches one tiny GEMM per batch element.
    """
    return (a[..., :, :, None] * b[..., None, :, :]).sum(dim=-2)


def world_to_cam_means(means: Tensor, viewmats: Tensor) -> Tensor:
    """Camera-space means [C, N, 3] from world means [N, 3] and viewmats [C, 4, 4]."""
    R = viewmats[:, None, :3, :3]  # [C, 1, 3, 3]
    t = viewmats[:, None, :3, 3]  # [C, 1, 3]
    return (R * means[None, :, None, :]).sum(dim=-1) + t  # [C, N, 3]


def persp_jacobian(
    tx: Tensor,  # [C, N] camera-space x
    ty: Tensor,  # [C, N]
    tz: Tensor,  # [C, N] camera-space z, > 0
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Pinhole projection of the means [C, N, 2] and its Jacobian J [C, N, 2, 3].

    J is evaluated at the mean with x/z, y/z clamped to the view frustum widened by 30 % of
    tan(fov/2) on each side (gsplat), which keeps off-screen Gaussians from exploding; the mean
    itself is projected without clamping.
    """
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]  # [C, 1]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy  # [C, 1]
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    rz = 1.0 / tz
    jx = tz * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, tx * rz))
    jy = tz * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, ty * rz))
    zeros = torch.zeros_like(tz)
    J = torch.stack(
        [fx * rz, zeros, -fx * jx * rz * rz, zeros, fy * rz, -fy * jy * rz * rz], dim=-1
    ).reshape(tz.shape + (2, 3))  # [C, N, 2, 3]
    means2d = torch.stack([fx * tx * rz + cx, fy * ty * rz + cy], dim=-1)  # [C, N, 2]
    return means2d, J


@torch.no_grad()
def compute_radii(
    means2d: Tensor,  # [C, N, 2]
    cov_xx: Tensor,  # [C, N] 2D variance along x, with the eps2d blur
    cov_yy: Tensor,  # [C, N]
    det: Tensor,  # [C, N] determinant of the blurred 2D covariance
    opacities: Tensor,  # [N]
    valid: Tensor,  # [C, N] bool: depth inside [near, far]
    width: int,
    height: int,
) -> Tensor:
    """Opacity-aware per-axis radii [C, N, 2] int32 (gsplat 1.5, arXiv 2402.00525 B.2)."""
    opac = opacities.detach()[None, :].expand_as(det)  # [C, N]
    extend = torch.sqrt(2.0 * torch.log(opac.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
    extend = extend.clamp_max(RADIUS_SIGMAS)
    radius_x = torch.ceil(extend * torch.sqrt(cov_xx.detach().clamp_min(0)))
    radius_y = torch.ceil(extend * torch.sqrt(cov_yy.detach().clamp_min(0)))
    inside = (
        (means2d[..., 0] + radius_x > 0)
        & (means2d[..., 0] - radius_x < width)
        & (means2d[..., 1] + radius_y > 0)
        & (means2d[..., 1] - radius_y < height)
    )
    keep = valid & (det > 0) & (opac >= ALPHA_THRESHOLD) & ((radius_x > 0) | (radius_y > 0))
    keep = keep & inside & torch.isfinite(radius_x) & torch.isfinite(radius_y)
    radii = torch.stack([radius_x, radius_y], dim=-1)  # [C, N, 2]
    return torch.where(keep[..., None], radii, torch.zeros_like(radii)).to(torch.int32)


def fully_fused_projection(
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
    """Project 3D Gaussians into C pinhole cameras (differentiable except for the radii).

    cov2d = (J W R S)(J W R S)^T + eps2d I, the same matrix as gsplat's J (W Sigma W^T) J^T.
    Culled Gaussians keep finite (meaningless) values so that masked gradients stay finite.
    """
    if not near_plane > 0:
        raise ValueError(f"near_plane must be > 0, got {near_plane}")
    means_c = world_to_cam_means(means, viewmats)  # [C, N, 3]
    depths = means_c[..., 2]  # [C, N]
    valid = (depths >= near_plane) & (depths <= far_plane)  # [C, N]
    safe_z = torch.where(valid, depths, torch.ones_like(depths))
    tx, ty, _ = means_c.unbind(-1)  # [C, N]
    means2d, J = persp_jacobian(tx, ty, safe_z, Ks, width, height)  # [C, N, 2], [C, N, 2, 3]
    RS = quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3]
    JW = small_matmul(J, viewmats[:, None, :3, :3])  # [C, N, 2, 3]
    B = small_matmul(JW, RS[None])  # [C, N, 2, 3] = J W R S
    b0, b1 = B.unbind(-2)  # [C, N, 3] rows of B
    cov_xx = (b0 * b0).sum(-1) + eps2d  # [C, N] entries of the blurred 2D covariance
    cov_xy = (b0 * b1).sum(-1)
    cov_yy = (b1 * b1).sum(-1) + eps2d
    det = cov_xx * cov_yy - cov_xy * cov_xy  # [C, N]
    inv_det = 1.0 / torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([cov_yy * inv_det, -cov_xy * inv_det, cov_xx * inv_det], dim=-1)
    radii = compute_radii(means2d, cov_xx, cov_yy, det, opacities, valid, width, height)
    return Projected(means2d=means2d, conics=conics, depths=depths, radii=radii)


def camera_centers(viewmats: Tensor) -> Tensor:
    """Camera centres in world coordinates [C, 3] from world-to-camera matrices [C, 4, 4]."""
    return torch.linalg.inv(viewmats)[:, :3, 3]  # as gsplat (exact for rigid and scaled views)


def tile_grid(width: int, height: int, tile_size: int = 16) -> tuple[int, int]:
    """(tiles_x, tiles_y) covering a width x height image."""
    return math.ceil(width / tile_size), math.ceil(height / tile_size)
