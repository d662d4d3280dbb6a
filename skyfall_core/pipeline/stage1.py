"""Stage 1: fit Gaussian splats to the satellite views of a prepared scene folder.

Inputs: ``scene/`` (crops, bias-corrected pinhole cameras, frame, tie points).
Outputs: ``checkpoints/stage1.safetensors``, ``stage1/scene.ply``, ``stage1/renders/<id>.png``
(render beside its input), ``stage1/dsm.tif`` (UTM, ellipsoidal heights) and ``stage1/metrics.json``.
A run that is stopped (cancel, crash) resumes from ``checkpoints/stage1_partial.safetensors``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from skyfall_core import atomic
from skyfall_core.cameras.pinhole import PinholeCamera
from skyfall_core.config import Stage1Settings
from skyfall_core.geo.frames import LocalFrame
from skyfall_core.jobfolder import EventLog, JobDir
from skyfall_core.pipeline.trainer import SplatTrainer, TrainSettings, View, scalars, to_uint8
from skyfall_core.splat.model import GaussianModel
from skyfall_core.splat.strategy import DensifyStrategy

PARTIAL = "stage1_partial.safetensors"
FINAL = "stage1.safetensors"


@dataclass
class SceneData:
    views: list[View]
    cameras: list[PinholeCamera]
    frame: LocalFrame
    bounds_enu: tuple[float, float, float, float, float, float]
    tie_xyz: np.ndarray  # [M, 3]
    tie_rgb: np.ndarray  # [M, 3]
    names: list[str]

    @property
    def scene_scale(self) -> float:
        """Half the AOI's horizontal diagonal (m): the 'extent' that scales lrs and densification."""
        x0, x1, y0, y1 = self.bounds_enu[:4]
        return 0.5 * math.hypot(x1 - x0, y1 - y0)


def _read_png(path: Path, grey: bool = False) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if img is None:
        from skyfall_core.errors import CorruptRasterError

        raise CorruptRasterError("cannot read image", path=path, fix="re-run the scene preparation of the job")
    return img if grey else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def load_scene(scene_dir: Path, device: torch.device | str = "cpu") -> SceneData:
    """Views (images, masks, cameras) of a prepared ``scene/`` folder, their tensors on ``device``."""
    from skyfall_core.pipeline.scene import load_scene_index

    entries, frame_d = load_scene_index(scene_dir)
    views, cams, names = [], [], []
    for i, e in enumerate(entries):
        cam = PinholeCamera.from_dict(e["camera"])
        img = torch.from_numpy(_read_png(scene_dir / e["image"]).astype(np.float32) / 255.0)
        mask = torch.from_numpy(_read_png(scene_dir / e["mask"], grey=True) > 127)
        viewmat, K = (torch.tensor(m, dtype=torch.float32) for m in cam.render_matrices())
        views.append(View(e["id"], img, mask, viewmat, K, i).to(device))
        cams.append(cam)
        names.append(e["id"])
    tie = scene_dir / "tie_points.npz"
    if tie.exists():
        data = np.load(tie)
        xyz, rgb = data["xyz"].astype(np.float64), data["rgb"].astype(np.float64)
    else:
        xyz, rgb = np.zeros((0, 3)), np.zeros((0, 3))
    return SceneData(views, cams, LocalFrame.from_dict(frame_d), tuple(frame_d["bounds_enu"]), xyz, rgb, names)


def init_points(scene: SceneData, n_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tie points, filled out with random points over the AOI volume coloured from the most
    nadir view (the view whose optical axis is closest to straight down)."""
    rng = np.random.default_rng(seed)
    x0, x1, y0, y1, z0, z1 = scene.bounds_enu
    n_fill = max(n_points - len(scene.tie_xyz), n_points // 2)
    fill = np.column_stack([rng.uniform(x0, x1, n_fill), rng.uniform(y0, y1, n_fill), rng.uniform(z0, z1, n_fill)])
    nadir = int(np.argmin([c.R[2] @ np.array([0.0, 0.0, 1.0]) for c in scene.cameras]))
    cam, view = scene.cameras[nadir], scene.views[nadir]
    uv, _ = cam.project(fill)
    cols = np.clip(np.round(uv[:, 0]).astype(int), 0, cam.width - 1)
    rows = np.clip(np.round(uv[:, 1]).astype(int), 0, cam.height - 1)
    fill_rgb = view.image.cpu().numpy()[rows, cols]
    xyz = np.concatenate([scene.tie_xyz, fill])
    rgb = np.concatenate([scene.tie_rgb, fill_rgb])
    return xyz, np.clip(rgb, 0.0, 1.0)


def train_settings(s: Stage1Settings, backend: str) -> TrainSettings:
    return TrainSettings(lambda_dssim=s.lambda_dssim, opacity_reg=s.opacity_reg,
                         opacity_reg_start=int(s.opacity_reg_start * s.iterations),
                         opacity_reg_relax_steps=max(s.iterations // 20, 10),
                         depth_weight=s.depth_prior_weight, flat_reg=s.flat_reg, max_gaussians=s.max_gaussians,
                         backend=backend)


def densify_strategy(s: Stage1Settings) -> DensifyStrategy:
    every = max(s.iterations // 30, 25)
    return DensifyStrategy(refine_start_iter=min(every * 2, s.densify_until), refine_stop_iter=s.densify_until,
                           refine_every=every, reset_every=max(s.densify_until // 2, every * 4),
                           pause_refine_after_reset=every)


def pseudo_views(scene: SceneData, n: int, size: int = 128, seed: int = 0,
                 device: torch.device | str = "cpu") -> list[View]:
    """Cameras over the AOI from 80 deg down to 45 deg elevation (depth prior), fixed appearance."""
    from skyfall_core.cameras.orbits import orbit_cameras

    rng = np.random.default_rng(seed)
    radius = 2.0 * scene.scene_scale
    views = []
    for k in range(n):
        elev = 80.0 - 35.0 * k / max(n - 1, 1)
        cam = orbit_cameras(np.zeros(3), elev, radius, [float(rng.uniform(0, 360))], 50.0, size, size)[0]
        img = torch.zeros(size, size, 3)
        viewmat, K = (torch.tensor(m, dtype=torch.float32) for m in cam.render_matrices())
        views.append(View(f"pseudo_{k}", img, torch.ones(size, size, dtype=torch.bool), viewmat, K, None).to(device))
    return views


def run_stage1(scene_dir: Path, job_root: Path, s: Stage1Settings, events: EventLog, *, backend: str = "auto",
               device: torch.device | str = "cpu", should_stop: Callable[[], bool] = lambda: False,
               checkpoint_every: int = 200, seed: int = 0) -> SplatTrainer | None:
    """Train stage 1 on ``device`` (resuming a partial run, whichever device wrote it); returns the
    trainer, or None when stopped. Losses reach the host only at the logging cadence (25 steps)."""
    device = torch.device(device)
    scene = load_scene(scene_dir, device)
    ckpt_dir = JobDir(job_root).checkpoints
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    settings = train_settings(s, backend)
    strategy = densify_strategy(s)
    n_images = len(scene.views)
    partial = ckpt_dir / PARTIAL
    if partial.exists():
        trainer, _ = SplatTrainer.resume(partial, n_images, scene.scene_scale, s.iterations, settings, strategy,
                                         embedding_dim=s.appearance_embedding_dim, device=device)
        events.message(f"stage 1 resumed at step {trainer.step}")
    else:
        xyz, rgb = init_points(scene, s.init_points, seed)
        model = GaussianModel.from_points(xyz, rgb, sh_degree=s.sh_degree, init_opacity=0.1, device=device)
        trainer = SplatTrainer(model, n_images, scene.scene_scale, s.iterations, settings, strategy,
                               embedding_dim=s.appearance_embedding_dim, seed=seed, device=device)

    depth_model, pseudo = None, []
    if s.depth_prior_weight > 0:
        from skyfall_core.priors.depth import try_load_depth_model

        depth_model, warning = try_load_depth_model(s.depth_model, str(device))
        if depth_model is None:
            events.warning(f"depth prior switched off: {warning}")
        else:
            pseudo = pseudo_views(scene, 16, seed=seed, device=device)
    warmup = s.iterations // 5

    rng = np.random.default_rng(seed + trainer.step)
    order: list[int] = []
    t0 = time.perf_counter()
    start = trainer.step
    while trainer.step < s.iterations:
        if should_stop():
            trainer.save(partial)
            return None
        if not order:
            order = list(rng.permutation(n_images))
        losses = trainer.train_step(scene.views[order.pop()])
        if depth_model is not None and trainer.step > warmup and trainer.step % 4 == 0:
            losses["depth"] = trainer.depth_prior_step(pseudo[trainer.step // 4 % len(pseudo)], depth_model,
                                                       s.depth_prior_weight)
        if trainer.step % 25 == 0 or trainer.step == s.iterations:
            elapsed = time.perf_counter() - t0
            events.emit("progress", stage="stage1", step=trainer.step, total=s.iterations, losses=scalars(losses),
                        seconds=round(elapsed, 2),
                        eta_s=round(elapsed / max(trainer.step - start, 1) * (s.iterations - trainer.step), 1))
        if trainer.step % checkpoint_every == 0 and trainer.step < s.iterations:
            trainer.save(partial)
    trainer.save(ckpt_dir / FINAL)
    partial.unlink(missing_ok=True)
    return trainer


def write_stage1_outputs(trainer: SplatTrainer, scene_dir: Path, out_dir: Path, *, dsm_resolution: float = 0.5
                         ) -> dict:
    """PLY, renders beside inputs, DSM GeoTIFF and PSNR per view; returns the metrics."""
    import cv2

    from skyfall_core.geo.dsm import write_dsm
    from skyfall_core.pipeline.losses import psnr
    from skyfall_core.splat.io import save_ply

    scene = load_scene(scene_dir, trainer.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_ply(out_dir / "scene.ply", trainer.model)
    (out_dir / "renders").mkdir(exist_ok=True)
    metrics = {"psnr": {}}
    for v in scene.views:
        rgb, _, _, _ = trainer.render(v, with_grad=False)
        metrics["psnr"][v.name] = round(psnr(rgb, v.image, v.mask), 3)
        pair = np.concatenate([to_uint8(rgb), to_uint8(v.image)], axis=1)
        ok, png = cv2.imencode(".png", cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
        atomic.write_bytes(out_dir / "renders" / f"{v.name}.png", png.tobytes())
    metrics["psnr_mean"] = round(float(np.mean(list(metrics["psnr"].values()))), 3)
    dsm = render_dsm(trainer, scene, dsm_resolution)
    write_dsm(out_dir / "dsm.tif", dsm)
    metrics["gaussians"] = trainer.model.num_gaussians
    metrics["dsm_valid_fraction"] = round(float(np.isfinite(dsm.heights).mean()), 4)
    atomic.write_json(out_dir / "metrics.json", metrics)
    return metrics


def render_dsm(trainer: SplatTrainer, scene: SceneData, resolution: float = 0.5, method: str | None = None,
               filter_px: int | None = None, tie_floor: bool = True):
    """The splats' DSM on a UTM grid covering the AOI box (see :mod:`dsm_render`); ``method`` is one
    of ``dsm_render.DSM_METHODS`` (default ``DEFAULT_DSM_METHOD``), median-filtered over
    ``filter_px`` pixels (default ``DEFAULT_FILTER_PX``; 0 = off), raised to the scene's tie-point
    floor (``tie_floor``; see :func:`dsm_render.tie_point_floor`)."""
    from skyfall_core.pipeline import dsm_render as dr

    cameras = [(v.viewmat, v.K, v.width, v.height) for v in scene.views]
    x0, x1, y0, y1 = scene.bounds_enu[:4]
    heights, corner = dr.dsm_heights(dr.Splats.from_model(trainer.model), (x0, x1, y0, y1), resolution,
                                     method or dr.DEFAULT_DSM_METHOD, cameras=cameras, backend=trainer.settings.backend,
                                     filter_px=dr.DEFAULT_FILTER_PX if filter_px is None else filter_px,
                                     floor_points=scene.tie_xyz if tie_floor and len(scene.tie_xyz) else None)
    return dr.enu_heights_to_utm(heights, corner, resolution, scene.frame)
