"""Novel-view accuracy: renders of a job's checkpoints at ground-truth cameras, PSNR and SSIM.

The bundled sample ships truth renders from low elevations (``sample_aoi/truth/renders``: PNGs
and ``cameras.json`` with OpenCV ``w2c``/``K`` in the ENU frame of ``truth/frame.json``, pixel
centres at integer coordinates). Each job checkpoint (stage 1, then every round) is rendered at
those cameras with the fixed appearance embedding, so the figures say what the refinement rounds
changed at viewpoints no satellite saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skyfall_core.errors import SkyfallError
from skyfall_core.geo.frames import LocalFrame


def frame_transform(src: LocalFrame, dst: LocalFrame) -> tuple[np.ndarray, np.ndarray]:
    """(R [3, 3], t [3]) with ``p_dst = R @ p_src + t`` between two local ENU frames (via ECEF)."""
    R = dst.R_ecef_to_enu @ src.R_ecef_to_enu.T
    t = dst.R_ecef_to_enu @ (src.origin_ecef - dst.origin_ecef)
    return R, t


def w2c_in_frame(w2c_src: np.ndarray, src: LocalFrame, dst: LocalFrame) -> np.ndarray:
    """A world-to-camera matrix of ``src``'s ENU frame re-expressed in ``dst``'s ENU frame."""
    R, t = frame_transform(src, dst)
    dst_to_src = np.eye(4)
    dst_to_src[:3, :3] = R.T
    dst_to_src[:3, 3] = -R.T @ t
    return np.asarray(w2c_src, dtype=np.float64) @ dst_to_src


def load_truth_cameras(truth_dir: Path) -> list[dict[str, Any]]:
    path = truth_dir / "cameras.json"
    try:
        cams = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SkyfallError(f"cannot read the truth cameras ({exc})", path=path,
                           fix="point --truth at a folder with cameras.json and the renders (sample_aoi/truth/renders)"
                           ) from None
    for c in cams:
        if not (truth_dir / c["name"]).is_file():
            raise SkyfallError("truth render listed in cameras.json is missing", path=truth_dir / c["name"],
                               fix="regenerate the sample (python -m skyfall_core sample)")
    return cams


def ssim_value(a: torch.Tensor, b: torch.Tensor) -> float:
    from skyfall_core.pipeline.losses import ssim_map_reference

    return float(ssim_map_reference(a, b).mean())


def evaluate_renders(job_dir: Path, truth_dir: Path, truth_frame: Path, *, save_pairs: bool = True
                     ) -> dict[str, Any]:
    """PSNR/SSIM of every checkpoint of a job (stage1, round_0, ...) at the truth cameras."""
    import cv2

    from skyfall_core.pipeline.losses import psnr
    from skyfall_core.pipeline.stage1 import load_scene
    from skyfall_core.pipeline.trainer import SplatTrainer, TrainSettings, View, to_uint8
    from skyfall_core.splat.strategy import DensifyStrategy

    job_dir = Path(job_dir)
    scene_dir = job_dir / "scene"
    if not (scene_dir / "frame.json").is_file():
        raise SkyfallError("the job has no prepared scene", path=scene_dir,
                           fix="run the job first (python -m skyfall_core run JOB)")
    scene = load_scene(scene_dir)
    try:
        src = LocalFrame.from_dict(json.loads(Path(truth_frame).read_text()))
    except (OSError, json.JSONDecodeError, KeyError) as exc:
        raise SkyfallError(f"cannot read the truth frame ({exc})", path=truth_frame,
                           fix="give the frame.json the truth cameras are expressed in") from None
    ckpts = [("stage1", job_dir / "checkpoints" / "stage1.safetensors")]
    k = 0
    while (job_dir / "checkpoints" / f"round_{k}.safetensors").is_file():
        ckpts.append((f"round_{k}", job_dir / "checkpoints" / f"round_{k}.safetensors"))
        k += 1
    ckpts = [(n, p) for n, p in ckpts if p.is_file()]
    if not ckpts:
        raise SkyfallError("the job has no checkpoint yet", path=job_dir / "checkpoints",
                           fix="let stage 1 finish first")
    cams = load_truth_cameras(truth_dir)
    truths, views = [], []
    for c in cams:
        img = cv2.cvtColor(cv2.imread(str(truth_dir / c["name"]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        truths.append(torch.from_numpy(img.astype(np.float32) / 255.0))
        K = np.array(c["K"], dtype=np.float64)
        K[0, 2] += 0.5  # integer pixel centres -> renderer's +0.5 convention
        K[1, 2] += 0.5
        w2c = w2c_in_frame(np.array(c["w2c"]), src, scene.frame)
        h, w = img.shape[:2]
        views.append(View(c["name"], torch.zeros(h, w, 3), torch.ones(h, w, dtype=torch.bool),
                          torch.tensor(w2c, dtype=torch.float32), torch.tensor(K, dtype=torch.float32), None))
    out_dir = job_dir / "eval" / "renders"
    report: dict[str, Any] = {"job": str(job_dir), "truth": str(truth_dir), "cameras": len(cams), "checkpoints": {}}
    for name, path in ckpts:
        trainer, _ = SplatTrainer.resume(path, len(scene.views), scene.scene_scale, 1, TrainSettings(),
                                         DensifyStrategy(), restore_optim=False)
        per = {}
        for view, truth in zip(views, truths):
            rgb, _, _, _ = trainer.render(view, with_grad=False)
            per[view.name] = {"psnr": round(psnr(rgb, truth), 3), "ssim": round(ssim_value(rgb, truth), 4)}
            if save_pairs:
                out_dir.mkdir(parents=True, exist_ok=True)
                pair = np.concatenate([to_uint8(rgb), to_uint8(truth)], axis=1)
                cv2.imwrite(str(out_dir / f"{name}_{view.name}"), cv2.cvtColor(pair, cv2.COLOR_RGB2BGR))
        report["checkpoints"][name] = {
            "psnr_mean": round(float(np.mean([v["psnr"] for v in per.values()])), 3),
            "ssim_mean": round(float(np.mean([v["ssim"] for v in per.values()])), 4),
            "per_camera": per}
    return report
