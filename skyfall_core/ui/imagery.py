"""Small images for the pages: AOI-cropped scene thumbnails, map overlays, round thumbnails.

``ortho_overlay`` resamples a scene onto a north-up longitude/latitude grid at one height with
its RPC (a quick orthorectification at constant height: buildings lean, the ground is in place),
so that the map can show the imagery itself without any tile server.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np

MAX_READ_PIXELS = 2048  # longest side read from a scene for an overlay


def to_png(rgb: np.ndarray, alpha: np.ndarray | None = None) -> bytes:
    """PNG bytes of an [H, W, 3] float (0..1) or uint8 image, with an optional [H, W] mask/alpha."""
    import cv2

    img = rgb if rgb.dtype == np.uint8 else (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)
    if alpha is not None:
        a = alpha if alpha.dtype == np.uint8 else (np.clip(alpha.astype(float), 0, 1) * 255).astype(np.uint8)
        ok, buf = cv2.imencode(".png", np.dstack([img[..., ::-1], a]))
    else:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
    if not ok:
        raise ValueError(f"cannot encode a {img.shape} image as PNG")
    return buf.tobytes()


def thumbnail_jpeg(path: Path, max_size: int = 512, quality: int = 85) -> bytes:
    """JPEG bytes of an image file shrunk to at most ``max_size`` pixels a side (alpha on black)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        a = img[..., 3:4].astype(np.float32) / 255.0
        img = (img[..., :3].astype(np.float32) * a).astype(np.uint8)
    h, w = img.shape[:2]
    s = min(1.0, max_size / max(h, w))
    if s < 1.0:
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode {path} as JPEG")
    return buf.tobytes()


def data_url(blob: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(blob).decode("ascii")


def aoi_thumbnail(scene, aoi, height_range, margin_m: float, size: int = 256) -> bytes:
    """PNG of the part of ``scene`` that sees the AOI (see ``crop_scene``), at most ``size`` px a side."""
    from skyfall_core.geo.aoi import crop_scene

    crop = crop_scene(scene, aoi, height_range, margin_m, max_image_size=size)
    return to_png(crop.image, crop.valid)


def ortho_overlay(scene, bounds: tuple[float, float, float, float], height_m: float,
                  size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``scene`` onto a north-up lon/lat grid over ``bounds`` = (west, south, east, north).

    Every grid cell centre is projected with the scene's RPC at ``height_m`` (ellipsoidal metres)
    and sampled bilinearly. Returns (rgb [H, W, 3] float32 0..1, valid [H, W] bool) with the
    longer side ``size`` (the grid's aspect follows the ground distances at the centre).
    """
    import cv2

    from skyfall_core.geo.imageio import read_window

    west, south, east, north = bounds
    aspect = (east - west) * np.cos(np.radians((south + north) / 2)) / max(north - south, 1e-12)
    w_px, h_px = (size, max(1, round(size / aspect))) if aspect >= 1 else (max(1, round(size * aspect)), size)
    lon = west + (np.arange(w_px) + 0.5) / w_px * (east - west)
    lat = north - (np.arange(h_px) + 0.5) / h_px * (north - south)
    LON, LAT = np.meshgrid(lon, lat)  # [H, W]
    rows, cols = scene.rpc.projection(LON.ravel(), LAT.ravel(), np.full(LON.size, height_m))
    rows, cols = rows.reshape(LON.shape), cols.reshape(LON.shape)
    r0 = int(np.clip(np.floor(rows.min()) - 1, 0, scene.height - 1))
    r1 = int(np.clip(np.ceil(rows.max()) + 1, 0, scene.height - 1))
    c0 = int(np.clip(np.floor(cols.min()) - 1, 0, scene.width - 1))
    c1 = int(np.clip(np.ceil(cols.max()) + 1, 0, scene.width - 1))
    empty = (np.zeros((h_px, w_px, 3), np.float32), np.zeros((h_px, w_px), bool))
    if r1 <= r0 or c1 <= c0:
        return empty
    win_h, win_w = r1 - r0 + 1, c1 - c0 + 1
    s = min(1.0, MAX_READ_PIXELS / max(win_h, win_w))
    out_size = (max(1, round(win_h * s)), max(1, round(win_w * s)))
    image, valid = read_window(scene.path, r0, c0, win_h, win_w, out_size=out_size)
    sy, sx = out_size[0] / win_h, out_size[1] / win_w
    map_y = ((rows - r0 + 0.5) * sy - 0.5).astype(np.float32)
    map_x = ((cols - c0 + 0.5) * sx - 0.5).astype(np.float32)
    rgb = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ok = cv2.remap(valid.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                   borderValue=0) > 0.99
    inside = (rows >= -0.5) & (rows <= scene.height - 0.5) & (cols >= -0.5) & (cols <= scene.width - 0.5)
    return rgb.astype(np.float32), ok & inside
