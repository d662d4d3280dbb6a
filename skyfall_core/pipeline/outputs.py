"""A finished job's ``final/`` folder: splat files, DSM, preview, same-camera renders, fly-down.

``final/compare/`` holds renders at a camera set derived from the AOI only (its centre and size),
so two jobs of one AOI are rendered from exactly the same viewpoints and the Compare page can put
them side by side: ``top.png`` (straight down over the whole AOI) and ``e<elev>_a<az>.png`` at
85°/65°/45°/30° elevation from the four sides, with ``cameras.json`` describing every camera.

``final/flydown.{gif,mp4}``: a descent around the AOI through the job's rounds, for stakeholder
decks: **one segment per round**, in the schedule's order. Segment k descends through round k's
elevation and shows the splats before that round (stage 1 for the first, else round k-1's
checkpoint; left) beside the splats after it (round k's checkpoint; right); a strip under the
frames marks the segment (one cell a round, the current one lit). The elevation falls from the
first round's to the last round's (segment boundaries halfway between two rounds' elevations)
and the azimuth turns 0 -> 180° over the whole video. ``final/flydown.json`` lists the segments
(round, elevation, frame range, seconds, which splats are shown).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from skyfall_core import atomic
from skyfall_core.cameras.orbits import orbit_cameras
from skyfall_core.cameras.pinhole import PinholeCamera

COMPARE_ELEVATIONS = (85.0, 65.0, 45.0, 30.0)
COMPARE_AZIMUTHS = (0.0, 90.0, 180.0, 270.0)
COMPARE_SIZE = 384  # pixels a side (at most: a job renders them at 1.5x its round renders' size)
COMPARE_FOV_DEG = 50.0
FLYDOWN_FRAMES = 48  # in all (split between the segments, at least FLYDOWN_MIN_SEGMENT_FRAMES each)
FLYDOWN_MIN_SEGMENT_FRAMES = 4
FLYDOWN_SIZE = 320
FLYDOWN_FPS = 12
FLYDOWN_MANIFEST = "flydown.json"  # beside flydown.gif/.mp4 in final/
FLYDOWN_GAP = 4  # white pixels between before and after
FLYDOWN_STRIP = 8  # pixels of the segment strip under the frames (even: H.264)
STRIP_ON, STRIP_OFF = (255, 170, 0), (70, 70, 70)


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
                    elevations: tuple[float, float] = (85.0, 45.0), fov_deg: float = COMPARE_FOV_DEG,
                    azimuths: tuple[float, float] = (0.0, 180.0)) -> list[PinholeCamera]:
    """A descending orbit arc: elevation from ``elevations[0]`` to ``[1]``, azimuth from
    ``azimuths[0]`` to ``[1]``, both linear over the frames (ends included)."""
    centre, radius = _framing(bounds_enu, fov_deg)
    cams = []
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        elev = elevations[0] + (elevations[1] - elevations[0]) * t
        az = azimuths[0] + (azimuths[1] - azimuths[0]) * t
        cams += orbit_cameras(centre, elev, radius, [az], fov_deg, size, size)
    return cams


@dataclass(frozen=True)
class FlydownSegment:
    """One segment of the fly-down: one round of the job."""

    round: int  # the round's index k (0-based)
    elevation_deg: float  # the round's elevation
    elevation_from: float  # the segment's first frame's elevation
    elevation_to: float  # its last frame's elevation
    first_frame: int
    frames: int
    before: str  # splats on the left: "stage1" or "round_<k-1>" (a checkpoint of the job)
    after: str  # splats on the right: "round_<k>"

    @property
    def label(self) -> str:
        return f"round {self.round + 1} · {self.elevation_deg:g}°"


def flydown_segments(elevations: Sequence[float], n_frames: int = FLYDOWN_FRAMES) -> list[FlydownSegment]:
    """The fly-down's segments for a job whose rounds ran at ``elevations`` (in order): one a round.

    Segment k spans from halfway between rounds k-1 and k (the first: round 0's elevation) to
    halfway between rounds k and k+1 (the last: its own elevation), so the descent passes every
    round's elevation inside that round's segment. Frames are split evenly (the first segments
    get the remainder), at least ``FLYDOWN_MIN_SEGMENT_FRAMES`` each. A job without rounds gets
    one segment of stage 1 beside itself (round -1)."""
    elevs = [float(e) for e in elevations]
    if not elevs:
        return [FlydownSegment(-1, 90.0, 85.0, 45.0, 0, max(n_frames, 2), "stage1", "stage1")]
    n = len(elevs)
    n_frames = max(n_frames, n * FLYDOWN_MIN_SEGMENT_FRAMES)
    bounds = [elevs[0], *((a + b) / 2 for a, b in zip(elevs, elevs[1:])), elevs[-1]]
    out, first = [], 0
    for k, e in enumerate(elevs):
        frames = n_frames // n + (1 if k < n_frames % n else 0)
        out.append(FlydownSegment(k, e, bounds[k], bounds[k + 1], first, frames,
                                  "stage1" if k == 0 else f"round_{k - 1}", f"round_{k}"))
        first += frames
    return out


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


def write_flydown(out_dir: Path, segments: Sequence[FlydownSegment], render_of: Callable[[str], RenderFn],
                  bounds_enu, *, size: int = FLYDOWN_SIZE, fps: int = FLYDOWN_FPS) -> list[Path]:
    """``flydown.gif`` (always), ``flydown.mp4`` (when imageio-ffmpeg is installed) and
    ``flydown.json`` (the segments): each segment's frames show ``render_of(segment.before)`` |
    ``render_of(segment.after)``. ``render_of`` is asked for each segment's two splats once, in
    segment order (so a caller can load checkpoints one at a time). Returns the written files."""
    from PIL import Image

    total = sum(s.frames for s in segments)
    azimuth = 180.0 / max(total - 1, 1)  # degrees a frame: one continuous half orbit
    frames = []
    for index, seg in enumerate(segments):
        before, after = render_of(seg.before), render_of(seg.after)
        cams = flydown_cameras(bounds_enu, seg.frames, size, (seg.elevation_from, seg.elevation_to),
                               azimuths=(seg.first_frame * azimuth, (seg.first_frame + seg.frames - 1) * azimuth))
        texts = ("before", "after") if seg.round < 0 else (
            f"before round {seg.round + 1}", f"after round {seg.round + 1} · {seg.elevation_deg:g}°")
        for cam in cams:
            left, right = _label(before(cam), texts[0]), _label(after(cam), texts[1])
            pair = np.concatenate([left, np.full((cam.height, FLYDOWN_GAP, 3), 255, np.uint8), right], axis=1)
            strip = segment_strip(pair.shape[1], len(segments), index, (len(frames) + 1) / total)
            frames.append(Image.fromarray(np.concatenate([pair, strip], axis=0)))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    gif = out_dir / "flydown.gif"
    with atomic.atomic_path(gif) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)
    written.append(gif)
    w, h = frames[0].size
    manifest = {"fps": fps, "frames": len(frames), "width": w, "height": h, "view_size": size,
                "strip_px": FLYDOWN_STRIP, "files": ["flydown.gif"],
                "segments": [asdict(s) | {"label": s.label, "start_s": round(s.first_frame / fps, 3),
                                          "end_s": round((s.first_frame + s.frames) / fps, 3)} for s in segments]}
    try:
        import imageio_ffmpeg
    except ImportError:
        imageio_ffmpeg = None
    if imageio_ffmpeg is not None:
        mp4 = out_dir / "flydown.mp4"
        w2, h2 = w - w % 2, h - h % 2  # H.264 wants even sizes
        with atomic.atomic_path(mp4) as tmp:
            writer = imageio_ffmpeg.write_frames(str(tmp), (w2, h2), fps=fps, codec="libx264", pix_fmt_out="yuv420p",
                                                 macro_block_size=1, output_params=["-f", "mp4"])
            writer.send(None)
            for f in frames:
                writer.send(np.ascontiguousarray(np.asarray(f)[:h2, :w2]))
            writer.close()
        written.append(mp4)
        manifest["files"].append("flydown.mp4")
    atomic.write_json(out_dir / FLYDOWN_MANIFEST, manifest)
    written.append(out_dir / FLYDOWN_MANIFEST)
    return written


def _label(rgb: np.ndarray, text: str) -> np.ndarray:
    """``rgb`` with ``text`` written in its top-left corner (clipped to it)."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(rgb))
    ImageDraw.Draw(img).text((5, 3), text, fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(img)


def segment_strip(width: int, n: int, current: int, done: float = 0.0, height: int = FLYDOWN_STRIP) -> np.ndarray:
    """The strip under a fly-down frame: ``n`` equal cells (2 px apart), cell ``current`` lit, and
    under them a white line over the share ``done`` of the video (so no two frames are the same:
    a GIF would merge them)."""
    strip = np.zeros((height, width, 3), np.uint8)
    for k in range(n):
        x0, x1 = round(k * width / n), round((k + 1) * width / n) - 2
        strip[1:height - 2, x0:max(x0 + 1, x1)] = STRIP_ON if k == current else STRIP_OFF
    strip[height - 1, :round(width * min(max(done, 0.0), 1.0))] = 255
    return strip


def strip_segment(frame: np.ndarray, n: int, strip_px: int = FLYDOWN_STRIP) -> int | None:
    """The lit cell of a (decoded) fly-down frame's strip, or None when no cell is clearly lit."""
    row = frame[frame.shape[0] - strip_px // 2].astype(float)
    w = frame.shape[1]
    lit = []
    for k in range(n):
        x0, x1 = round(k * w / n), round((k + 1) * w / n) - 2
        cell = row[x0 + 2:max(x0 + 3, x1 - 2)].mean(axis=0)
        lit.append(cell[0] > 180 and cell[2] < 120)  # orange, not grey
    return lit.index(True) if sum(lit) == 1 else None
