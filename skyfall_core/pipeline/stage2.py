"""Stage 2: the Skyfall-GS curriculum (iterative dataset update).

For round k at elevation e_k: render "before" images of the current splats on orbits around a
look-at grid (fixed appearance embedding) -> edit every render with the refiner -> save the
before/after pairs -> retrain mixing the edited views (probability 0.75) with the satellite
views -> checkpoint ``checkpoints/round_<k>.safetensors``. Each round's edits replace the last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from skyfall_core import atomic
from skyfall_core.cameras.orbits import lookat_grid, orbit_cameras
from skyfall_core.cameras.pinhole import PinholeCamera
from skyfall_core.config import Stage2Settings
from skyfall_core.jobfolder import EventLog, JobDir
from skyfall_core.pipeline.stage1 import SceneData
from skyfall_core.pipeline.trainer import SplatTrainer, View, scalars, to_uint8

PAPER_AOI_SIZE_M = 256.0  # the JAX tiles the published radii were chosen for


@dataclass(frozen=True)
class RoundPlan:
    index: int
    elevation_deg: float
    radius_m: float
    cameras: list[PinholeCamera]
    azimuths: list[float]
    lookats: np.ndarray  # [V, 3]


def plan_round(k: int, s: Stage2Settings, bounds_enu, aoi_size_m: float) -> RoundPlan:
    """Cameras of round k: an n x n look-at grid, ``azimuths`` directions each (rotated by half a
    step every other round so successive rounds see new sides), radius scaled to the AOI size."""
    elev = float(s.elevations_deg[k])
    radius = float(s.radii_m[k]) * aoi_size_m / PAPER_AOI_SIZE_M
    step = 360.0 / s.azimuths
    az = [(i * step + (k % 2) * step / 2) % 360.0 for i in range(s.azimuths)]
    z_ground = 0.0
    looks = lookat_grid(bounds_enu, s.lookat_grid, z=z_ground) if s.lookat_grid > 1 else np.zeros((1, 3))
    cams, azs, lks = [], [], []
    for p in looks:
        for a, cam in zip(az, orbit_cameras(p, elev, radius, az, s.fov_deg, s.image_size, s.image_size)):
            cams.append(cam)
            azs.append(a)
            lks.append(p)
    return RoundPlan(k, elev, radius, cams, azs, np.asarray(lks))


def _png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    atomic.write_bytes(path, data.tobytes())


def _camera_view(cam: PinholeCamera, image: torch.Tensor | None = None, name: str = "") -> View:
    h, w = cam.height, cam.width
    img = image if image is not None else torch.zeros(h, w, 3)
    viewmat, K = (torch.tensor(m, dtype=torch.float32) for m in cam.render_matrices())
    return View(name, img, torch.ones(h, w, dtype=torch.bool), viewmat, K, None)


def run_round(trainer: SplatTrainer, scene: SceneData, plan: RoundPlan, s: Stage2Settings, refiner,
              job: JobDir, events: EventLog, *, should_stop: Callable[[], bool] = lambda: False,
              seed: int = 0) -> bool:
    """One IDU round; returns False when stopped before it finished (nothing is checkpointed)."""
    out = job.round_dir(plan.index, plan.elevation_deg)
    (out / "before").mkdir(parents=True, exist_ok=True)
    (out / "after").mkdir(parents=True, exist_ok=True)
    rnd = {"round": plan.index, "elevation": plan.elevation_deg}
    events.emit("stage", stage="round", state="start", **rnd, views=len(plan.cameras))

    t0 = time.perf_counter()
    befores, alphas = [], []
    for cam in plan.cameras:
        rgb, alpha, _, _ = trainer.render(_camera_view(cam), with_grad=False)
        befores.append(rgb.cpu().numpy())
        alphas.append(alpha.cpu().numpy())
    t_render = time.perf_counter() - t0
    if should_stop():
        return False

    t0 = time.perf_counter()
    reference = [v.image.cpu().numpy() for v in scene.views]
    afters: list[np.ndarray] = []
    entries = []
    n = len(plan.cameras)
    for e in range(s.edits_per_view):
        edited = refiner.refine(
            befores, alphas=alphas, reference=reference, seed=seed + 1000 * plan.index + 100_000 * e,
            callback=lambda i, total, e=e: events.emit("progress", stage="refine", step=e * n + i,
                                                       total=n * s.edits_per_view, **rnd),
            should_stop=should_stop)
        if len(edited) < n:
            return False
        afters += edited
        for i, cam in enumerate(plan.cameras):
            entries.append({"index": len(entries), "camera_index": i, "edit": e, "camera": cam.to_dict(),
                            "elevation_deg": plan.elevation_deg, "azimuth_deg": plan.azimuths[i],
                            "radius_m": plan.radius_m, "lookat": plan.lookats[i].tolist(), "refiner": refiner.name})
    t_refine = time.perf_counter() - t0
    for entry, after in zip(entries, afters):
        name = f"{entry['index']:03d}.png"
        _png(out / "before" / name, to_uint8(befores[entry["camera_index"]]))
        _png(out / "after" / name, to_uint8(after))
    atomic.write_json(out / "cameras.json", {"round": plan.index, "elevation_deg": plan.elevation_deg,
                                             "radius_m": plan.radius_m, "refiner": refiner.name,
                                             "is_diffusion": refiner.is_diffusion, "views": entries})

    t0 = time.perf_counter()
    edited_views = [_camera_view(plan.cameras[en["camera_index"]], torch.from_numpy(np.asarray(a, np.float32)),
                                 f"r{plan.index}_{en['index']:03d}").to(trainer.device)
                    for en, a in zip(entries, afters)]
    rng = np.random.default_rng(seed + plan.index)
    for it in range(s.iterations_per_round):
        if should_stop():
            return False
        if rng.random() < s.edited_view_probability:
            view = edited_views[rng.integers(len(edited_views))]
        else:
            view = scene.views[rng.integers(len(scene.views))]
        losses = trainer.train_step(view)
        if (it + 1) % 25 == 0 or it + 1 == s.iterations_per_round:
            events.emit("progress", stage="round", step=it + 1, total=s.iterations_per_round,
                        losses=scalars(losses), **rnd)
    t_train = time.perf_counter() - t0
    trainer.save(job.checkpoints / f"round_{plan.index}.safetensors", {"round": plan.index})
    events.emit("timing", stage="round", render_s=round(t_render, 2), refine_s=round(t_refine, 2),
                train_s=round(t_train, 2), **rnd)
    events.emit("stage", stage="round", state="done", **rnd)
    return True
