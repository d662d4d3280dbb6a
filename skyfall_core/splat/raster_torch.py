"""Pure-PyTorch tile rasterizer: the readable reference and the fallback of the C++ kernel.

Same semantics as gsplat's `rasterize_to_pixels` (and the C++ kernel): a Gaussian is tested
by every pixel of every 16x16 tile that its radii touch, in front-to-back depth order;
alpha = min(0.999, opacity * exp(-sigma)) with sigma = 0.5 d^T conic d, d = mean2d - pixel
centre; alphas < 1/255 are skipped; compositing stops before the Gaussian that would bring the
transmittance to <= 1e-4. Autograd provides the backward pass. Each tile is one dense
[pixels, Gaussians] computation, so memory grows with the longest tile list.
"""

from __future__ import annotations

import torch
from torch import Tensor

from skyfall_core.splat.projection import ALPHA_THRESHOLD, tile_grid

TRANSMITTANCE_MIN = 1e-4  # compositing stops before T reaches this
ALPHA_MAX = 0.999


@torch.no_grad()
def isect_tiles(
    means2d: Tensor,  # [C, N, 2]
    radii: Tensor,  # [C, N, 2] int32
    depths: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int = 16,
) -> tuple[Tensor, Tensor]:
    """Tile lists: (offsets [C * n_tiles + 1], flatten_ids [M] = camera * N + gaussian).

    The ids of tile t are flatten_ids[offsets[t]:offsets[t + 1]], sorted by depth (ties by
    Gaussian index).
    """
    C, N = depths.shape
    tiles_x, tiles_y = tile_grid(width, height, tile_size)
    n_tiles = tiles_x * tiles_y
    tile_xy = means2d / tile_size  # [C, N, 2]
    tile_r = radii.to(means2d.dtype) / tile_size  # [C, N, 2]
    hi = torch.tensor([tiles_x, tiles_y], device=means2d.device)
    tile_min = torch.minimum(torch.floor(tile_xy - tile_r).clamp_min(0), hi).long()  # [C, N, 2]
    tile_max = torch.minimum(torch.ceil(tile_xy + tile_r).clamp_min(0), hi).long()  # [C, N, 2]
    extent = (tile_max - tile_min) * (radii > 0).all(dim=-1, keepdim=True)  # [C, N, 2]
    counts = (extent[..., 0] * extent[..., 1]).flatten()  # [C * N]
    owner = torch.repeat_interleave(torch.arange(C * N, device=depths.device), counts)  # [M]
    first = torch.cumsum(counts, 0) - counts  # [C * N]
    local = torch.arange(owner.numel(), device=depths.device) - first[owner]  # [M]
    span_x = extent[..., 0].flatten()[owner]
    tx = tile_min[..., 0].flatten()[owner] + local % span_x.clamp_min(1)
    ty = tile_min[..., 1].flatten()[owner] + local // span_x.clamp_min(1)
    tile_ids = (owner // N) * n_tiles + ty * tiles_x + tx  # [M] global tile index
    depth_rank = torch.empty_like(depths, dtype=torch.long)  # [C, N]
    order = torch.argsort(depths, dim=1, stable=True)
    depth_rank.scatter_(1, order, torch.arange(N, device=depths.device).expand(C, N))
    keys = tile_ids * max(N, 1) + depth_rank.flatten()[owner]
    flatten_ids = owner[torch.argsort(keys)]
    per_tile = torch.bincount(tile_ids, minlength=C * n_tiles)
    offsets = torch.cat([per_tile.new_zeros(1), torch.cumsum(per_tile, 0)])
    return offsets, flatten_ids


def composite_tile(
    pixels: Tensor,  # [P, 2] pixel centres
    means2d: Tensor,  # [L, 2] front to back
    conics: Tensor,  # [L, 3]
    colors: Tensor,  # [L, D]
    opacities: Tensor,  # [L]
) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing of L Gaussians over P pixels: (colors [P, D], T_final [P])."""
    delta = means2d[None, :, :] - pixels[:, None, :]  # [P, L, 2]
    dx, dy = delta.unbind(-1)
    a, b, c = conics.unbind(-1)  # [L]
    sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy  # [P, L]
    alpha = torch.clamp_max(opacities * torch.exp(-sigma), ALPHA_MAX)  # [P, L]
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
    # Stop before the first Gaussian whose compositing would bring T to <= 1e-4.
    drawn = torch.cumprod(1.0 - alpha.detach(), dim=1) > TRANSMITTANCE_MIN  # [P, L]
    alpha = torch.where(drawn, alpha, torch.zeros_like(alpha))
    trans_after = torch.cumprod(1.0 - alpha, dim=1)  # [P, L]
    ones = pixels.new_ones(pixels.shape[0], 1)  # [P, 1]
    trans_before = torch.cat([ones, trans_after[:, :-1]], dim=1)  # [P, L]
    weights = alpha * trans_before  # [P, L]
    t_final = trans_after[:, -1] if trans_after.shape[1] > 0 else ones[:, 0]
    return weights @ colors, t_final


def rasterize_to_pixels_torch(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    colors: Tensor,  # [C, N, D]
    opacities: Tensor,  # [C, N]
    radii: Tensor,  # [C, N, 2] int32
    depths: Tensor,  # [C, N]
    width: int,
    height: int,
    backgrounds: Tensor | None = None,  # [C, D]
    tile_size: int = 16,
) -> tuple[Tensor, Tensor, int]:
    """Composite projected Gaussians: (colors [C, H, W, D], alphas [C, H, W, 1], n_isects)."""
    C, N, D = colors.shape
    tiles_x, tiles_y = tile_grid(width, height, tile_size)
    offsets, flatten_ids = isect_tiles(means2d, radii, depths, width, height, tile_size)
    offsets_list = offsets.tolist()
    local = torch.arange(tile_size, dtype=means2d.dtype, device=means2d.device) + 0.5
    local_y, local_x = torch.meshgrid(local, local, indexing="ij")
    tile_pixels = torch.stack([local_x, local_y], dim=-1).reshape(-1, 2)  # [P, 2]
    flat = (means2d.reshape(C * N, 2), conics.reshape(C * N, 3), colors.reshape(C * N, D),
            opacities.reshape(C * N))
    images, alphas = [], []
    for cam in range(C):
        tile_colors, tile_trans = [], []
        for tile in range(tiles_x * tiles_y):
            begin, end = offsets_list[cam * tiles_x * tiles_y + tile: cam * tiles_x * tiles_y + tile + 2]
            ids = flatten_ids[begin:end]
            origin = torch.tensor(
                [(tile % tiles_x) * tile_size, (tile // tiles_x) * tile_size],
                dtype=means2d.dtype, device=means2d.device,
            )
            rgb, t_final = composite_tile(
                tile_pixels + origin, flat[0][ids], flat[1][ids], flat[2][ids], flat[3][ids]
            )
            if backgrounds is not None:
                rgb = rgb + t_final[:, None] * backgrounds[cam]
            tile_colors.append(rgb)
            tile_trans.append(t_final)
        images.append(_untile(torch.stack(tile_colors), tiles_x, tiles_y, tile_size, width, height))
        trans = _untile(torch.stack(tile_trans)[..., None], tiles_x, tiles_y, tile_size, width, height)
        alphas.append(1.0 - trans)
    return torch.stack(images), torch.stack(alphas), int(flatten_ids.numel())


def _untile(
    tiles: Tensor, tiles_x: int, tiles_y: int, tile_size: int, width: int, height: int
) -> Tensor:
    """[tiles_y * tiles_x, tile_size^2, D] -> image [height, width, D]."""
    D = tiles.shape[-1]
    image = tiles.reshape(tiles_y, tiles_x, tile_size, tile_size, D).permute(0, 2, 1, 3, 4)
    return image.reshape(tiles_y * tile_size, tiles_x * tile_size, D)[:height, :width]
