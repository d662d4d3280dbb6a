"""A finished job's ``final/`` folder: splat files, DSM, preview, same-camera renders, fly-down.

``final/compare/`` holds renders at a camera set derived from the AOI only (its centre and size),
so two jobs of one AOI are rendered from exactly the same viewpoints and the Compare page can put
them side by side: ``top.png`` (straight down over the whole AOI) and ``e<elev>_a<az>.png`` at
85°/65°/45°/30° elevation from the four sides, with ``cameras.json`` describing every camera.

``final/flydown.{gif,mp4}``: a descent from 85° to 45° elevation around the AOI, the stage-1
splats ("before", left) beside the final ones ("after", right), for stakeholder decks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from skyfall_core import atomic
from skyfall_core.cameras.orbits import orbit_cameras
from skyfall_core.cameras.pinhole import PinholeCamera

COMPARE_ELEVATIONS = (85.0, 65.0, 45.0, 30.0)
COMPARE_AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
COMPARE_SIZE = 384  # pixels a side (at most: a job renders them at 1.5x its round renders' size)
COMPARE_FOV_DEG = 50.0
FLYDOWN_FRAMES = 48
FLYDOWN_SIZE = 320


def _framing(bounds_enu, fov_deg: float) -> tuple[np.ndarray, float]:
    """(AOI centre on the ground, camera distance at which the AOI's diagonal fills ~90 % of the view)."""
    x0, x1, y0, y1 = (float(b) for b in bounds_enu[:4])
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
    return centre, 0.5 * math.hypot(x1 - x0, y1 - y0) / math.tan(math.radians(fov_deg) / 2) / 0.9


def compare_cameras(bounds_enu, size: int = COMPARE_SIZE, fov_deg: float = COMPARE_FOV_DEG
                    ) -> list[tuple[str, PinholeCamera, dict[str, Any]]]:
    """(name, camera, description) of the AOI's same-camera set. The oblique cameras frame the AOI
    (distance so that its diagonal fills ~90 % of the view); the top-down one covers it."""
    centre, radius = _framing(bounds_enu, fov_deg)
    out = []
    top = orbit_cameras(centre, 90.0, radius, [0.0], fov_deg, size, size)[0]
    out.append(("top", top, {"elevation_deg": 90.0, "azimuth_deg": 0.0, "radius_m": round(radius, 2)}))
    for elev in COMPARE_ELEVATIONS:
        cams = orbit_cameras(centre, elev, radius, list(COMPARE_AZIMUTHS), fov_deg, size, size)
        for az, cam in zip(COMPARE_AZIMUTHS, cams):
            out.append((f"e{elev:02.0f}_a{az:03.0f}", cam,
                        {"elevation_deg": elev, "azimuth_deg": az, "radius_m": round(radius, 2)}))
    return out


def flydown_cameras(bounds_enu, n_frames: int = FLYDOWN_FRAMES, size: int = FLYDOWN_SIZE,
                    elevations: tuple[float, float] = (85.0, 45.0), fov_deg: float = COMPARE_FOV_DEG
                    ) -> list[PinholeCamera]:
    """A descending half orbit: elevation from ``elevations[0]`` to ``[1]``, azimuth 0 -> 180°."""
    centre, radius = _framing(bounds_enu, fov_deg)
    cams = []
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        elev = elevations[0] + (elevations[1] - elevations[0]) * t
        cams += orbit_cameras(centre, elev, radius, [180.0 * t], fov_deg, size, size)
    return cams


RenderFn = Callable[[PinholeCamera], np.ndarray]  # camera -> [H, W, 3] uint8


def write_compare_renders(out_dir: Path, render: RenderFn, bounds_enu, size: int = COMPARE_SIZE) -> list[str]:
    """Render the AOI's same-camera set into ``out_dir`` (PNG + cameras.json); returns the names."""
    import cv2

    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, cam, desc in compare_cameras(bounds_enu, size):
        ok, png = cv2.imencode(".png", cv2.cvtColor(render(cam), cv2.COLOR_RGB2BGR))
        atomic.write_bytes(out_dir / f"{name}.png", png.tobytes())
        entries.append({"name": name, "file": f"{name}.png", **desc, "camera": cam.to_dict()})
    atomic.write_json(out_dir / "cameras.json", {"aoi_bounds_enu": [float(b) for b in bounds_enu[:4]],
                                                 "fov_deg": COMPARE_FOV_DEG, "views": entries})
    return [e["name"] for e in entries]


def write_flydown(out_dir: Path, before: RenderFn, after: RenderFn, bounds_enu, *,
                  n_frames: int = FLYDOWN_FRAMES, size: int = FLYDOWN_SIZE, fps: int = 12) -> list[Path]:
    """``flydown.gif`` (always) and ``flydown.mp4`` (when imageio-ffmpeg is installed): before | after."""
    from PIL import Image, ImageDraw

    frames = []
    for cam in flydown_cameras(bounds_enu, n_frames, size):
        pair = np.concatenate([before(cam), np.full((cam.height, 4, 3), 255, np.uint8), after(cam)], axis=1)
        img = Image.fromarray(pair)
        draw = ImageDraw.Draw(img)
        draw.text((6, 4), "before (stage 1)", fill=(255, 255, 255))
        draw.text((cam.width + 10, 4), "after (final)", fill=(255, 255, 255))
        frames.append(img)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    gif = out_dir / "flydown.gif"
    with atomic.atomic_path(gif) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    written.append(gif)
    try:
        import imageio_ffmpeg
    except ImportError:
        return written
    mp4 = out_dir / "flydown.mp4"
    w, h = frames[0].size
    w2, h2 = w - w % 2, h - h % 2  # H.264 wants even sizes
    with atomic.atomic_path(mp4) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (w2, h2), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                             macro_block_size=1, output_params=["-f", "mp4"])
        writer.send(None)
        for f in frames:
            writer.send(np.ascontiguousarray(np.asarray(f)[:h2, :w2]))
        writer.close()
    written.append(mp4)
    return written
