"""A whole job: scene -> stage 1 -> stage-2 rounds -> final exports, resumable at every stage.

``state.json`` lists the finished stages (``scene``, ``stage1``, ``round_<k>``, ``final``); a
restarted job skips them and continues from the last checkpoint, so a crash or a cancel loses at
most the unfinished stage or round. Cancel = the file ``cancel.request`` in the job folder.
"""

from __future__ import annotations

import platform
import time
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from skyfall_core import __version__, atomic
from skyfall_core.config import Config, apply_overrides
from skyfall_core.errors import SkyfallError
from skyfall_core.jobfolder import (  # noqa: F401  (EXIT_* and CANCEL_FILE: re-exported for callers)
    CANCEL_FILE,
    EXIT_CANCELLED,
    EXIT_CRASH,
    EXIT_DONE,
    EXIT_USER_ERROR,
    EventLog,
    JobDir,
    JobMeta,
    load_job,
    update_job_json,
)
from skyfall_core.splat.device import check_renderer, prepare_renderer, resolve_device


def create_job(job_root: Path, *, cfg: Config, preset: str, aoi: dict[str, Any], scenes: list[str],
               name: str = "", overrides: dict[str, Any] | None = None, parent: str | None = None,
               job_id: str | None = None) -> JobDir:
    """Write a new job folder with its ``job.json`` (resolved config with overrides, validated)."""
    import torch

    resolved = apply_overrides(cfg.resolved(preset), preset, overrides or {})
    job_id = job_id or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    job = JobDir(job_root / job_id if job_root.name != job_id else job_root)
    job.root.mkdir(parents=True, exist_ok=True)
    atomic.write_json(job.job_json, {
        "id": job.root.name, "name": name or job.root.name, "created": datetime.now(timezone.utc).isoformat(),
        "aoi": aoi, "scenes": [str(Path(s).resolve()) for s in scenes], "preset": preset,
        "config": resolved, "overrides": overrides or {}, "parent": parent,
        "versions": {"skyfall_core": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "refiner": None, "warnings": []})
    return job


def run_job(job_dir: Path, should_stop: Callable[[], bool] | None = None, *, until: str = "all") -> int:
    """Run or resume a job; returns an exit code (0 done, 3 cancelled, 2 user error, 1 crash).

    ``until="stage1"`` stops after stage 1 (a later run with "all" continues from there)."""
    job = JobDir(Path(job_dir))
    stop = should_stop or job.cancel_requested
    events = EventLog.of(job)
    try:
        meta = load_job(job.root)
        cfg = meta.config()
        events.emit("status", status="running")
        code = _run(job, meta, cfg, events, stop, until)
    except SkyfallError as exc:
        events.emit("error", text=exc.message)
        events.emit("status", status="failed", text=exc.message)
        return EXIT_USER_ERROR
    except MemoryError:
        text = "out of memory: use a smaller AOI, the preview preset, or lower stage1.max_gaussians"
        events.emit("error", text=text)
        events.emit("status", status="failed", text=text)
        return EXIT_USER_ERROR
    except Exception as exc:  # a crash: keep the traceback in the log, the job stays resumable
        if not _is_gpu_oom(exc):
            with open(job.log, "a") as f:
                f.write(traceback.format_exc())
            events.emit("error", text=f"internal error: {exc!r} (see log.txt); the job can be resumed")
            events.emit("status", status="failed", text=repr(exc))
            return EXIT_CRASH
        text = (f"the GPU ran out of memory ({str(exc).splitlines()[0][:200]}). The job's finished stages and "
                "checkpoints are kept; resume it after: lowering stage1.max_gaussians or cameras.max_image_size "
                "(stage 1), or setting stage2.offload = \"model\" or \"sequential\", stage2.batch_size = 1 or a "
                "smaller stage2.image_size (rounds); or closing other programs using the GPU")
        events.emit("error", text=text)
        events.emit("status", status="failed", text=text)
        return EXIT_USER_ERROR
    events.emit("status", status="done" if code == EXIT_DONE else "cancelled")
    return code


def _run(job: JobDir, meta: JobMeta, cfg: Config, events: EventLog, stop: Callable[[], bool],
         until: str = "all") -> int:
    import torch

    from skyfall_core.pipeline.scene import prepare_scene
    from skyfall_core.pipeline.stage1 import (
        FINAL,
        densify_strategy,
        load_scene,
        run_stage1,
        train_settings,
        write_stage1_outputs,
    )
    from skyfall_core.pipeline.trainer import SplatTrainer

    preset = cfg.preset(meta.preset)
    state = job.read_state()
    device = resolve_device(cfg.device.compute)
    if cfg.device.threads:
        torch.set_num_threads(cfg.device.threads)
    backend = cfg.device.renderer
    check_renderer(backend, device)
    if device.type == "cuda":
        events.message(f"device: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}); preparing the "
                       "GPU renderer (gsplat builds its kernels once per machine, about a minute)")
        ready = prepare_renderer(backend, device)
        events.emit("timing", stage="gpu_kernels", seconds=round(ready.seconds, 2))
        events.message(f"GPU renderer {ready.backend} ready in {ready.seconds:.1f} s"
                       + (" (kernels built; later jobs start at once)" if ready.built else ""))
    else:
        events.message("device: CPU (compiled rasterizer)")

    if "scene" not in state["finished"]:
        events.emit("stage", stage="scene", state="start")
        t0 = time.perf_counter()
        report = prepare_scene([Path(p) for p in meta.scenes], meta.aoi, cfg, preset, out_dir=job.scene,
                               log=events.message)
        for m in report.messages:
            events.warning(m)
        events.emit("timing", stage="scene", seconds=round(time.perf_counter() - t0, 2))
        events.emit("stage", stage="scene", state="done", summary={
            k: v for k, v in report.summary().items() if k != "views"})
        job.finish(state, "scene")
    if stop():
        return EXIT_CANCELLED

    s1 = preset.stage1
    if "stage1" not in state["finished"]:
        events.emit("stage", stage="stage1", state="start")
        t0 = time.perf_counter()
        trainer = run_stage1(job.scene, job.root, s1, events, backend=backend, device=device, should_stop=stop)
        if trainer is None:
            return EXIT_CANCELLED
        metrics = write_stage1_outputs(trainer, job.scene, job.stage1)
        events.emit("timing", stage="stage1", seconds=round(time.perf_counter() - t0, 2))
        events.emit("stage", stage="stage1", state="done", metrics={k: v for k, v in metrics.items() if k != "psnr"})
        job.finish(state, "stage1")
    if until == "stage1":
        return EXIT_DONE

    scene = load_scene(job.scene, device)
    s2 = preset.stage2
    n_rounds = len(s2.elevations_deg)
    state["rounds_total"] = n_rounds
    done_rounds = [int(x.split("_")[1]) for x in state["finished"] if x.startswith("round_")]
    last = max(done_rounds, default=-1)
    ckpt = job.checkpoints / (f"round_{last}.safetensors" if last >= 0 else FINAL)
    trainer, _ = SplatTrainer.resume(ckpt, len(scene.views), scene.scene_scale, s1.iterations,
                                     train_settings(s1, backend), densify_strategy(s1),
                                     embedding_dim=s1.appearance_embedding_dim, device=device)
    if last + 1 < n_rounds:
        code = _run_rounds(job, meta, cfg, s2, scene, trainer, events, stop, device, state, last + 1)
        if code != EXIT_DONE:
            return code

    if "final" not in state["finished"]:
        events.emit("stage", stage="final", state="start")

        def load_splats(key: str):  # "stage1" or "round_<k>": a checkpoint of this job, for the fly-down
            path = job.checkpoints / (FINAL if key == "stage1" else f"{key}.safetensors")
            return SplatTrainer.resume(path, len(scene.views), scene.scene_scale, s1.iterations,
                                       train_settings(s1, backend), densify_strategy(s1),
                                       embedding_dim=s1.appearance_embedding_dim, restore_optim=False,
                                       device=device)[0]

        write_final(job, trainer, scene, load_splats, render_size=s2.image_size, elevations=s2.elevations_deg)
        events.emit("stage", stage="final", state="done")
        job.finish(state, "final")
    return EXIT_DONE


def _run_rounds(job, meta, cfg, s2, scene, trainer, events, stop, device, state, first: int) -> int:
    from skyfall_core.pipeline.stage2 import plan_round, run_round
    from skyfall_core.priors.refiners import load_refiner

    refiner, warnings = load_refiner(s2, str(device))
    for w in warnings:
        events.warning(w)
    update_job_json(job.root, refiner={"name": refiner.name, "is_diffusion": refiner.is_diffusion,
                                       "description": refiner.description, "model": s2.refiner_model or None},
                    warnings=sorted(set(meta.warnings) | set(warnings)))
    x0, x1, y0, y1 = scene.bounds_enu[:4]
    aoi_size = max(x1 - x0, y1 - y0)
    for k in range(first, len(s2.elevations_deg)):
        if stop():
            return EXIT_CANCELLED
        plan = plan_round(k, s2, scene.bounds_enu, aoi_size)
        if not run_round(trainer, scene, plan, s2, refiner, job, events, should_stop=stop, seed=s2.seed):
            return EXIT_CANCELLED
        job.finish(state, f"round_{k}")
    return EXIT_DONE


def _is_gpu_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.OutOfMemoryError) or "CUDA out of memory" in str(exc)


def write_final(job: JobDir, trainer, scene, load_splats=None, render_size: int = 256,
                elevations: list[float] | tuple[float, ...] = ()) -> None:
    """final/: scene.ply, the web splats (compressed PLY, .spz), georef.json, dsm.tif and its COG and
    hillshade, the splat centres as LAZ, 3D Tiles with KHR_gaussian_splatting, preview.png, the
    same-camera renders (compare/) and, with ``load_splats`` (checkpoint key -> trainer), the
    fly-down: one segment per round of ``elevations``, each round's splats before | after it."""
    import cv2

    from skyfall_core.cameras.orbits import orbit_cameras
    from skyfall_core.export import write_gis_outputs
    from skyfall_core.geo.dsm import write_dsm
    from skyfall_core.pipeline.outputs import (
        COMPARE_SIZE,
        FLYDOWN_SIZE,
        flydown_segments,
        write_compare_renders,
        write_flydown,
    )
    from skyfall_core.pipeline.stage1 import render_dsm
    from skyfall_core.pipeline.stage2 import _camera_view
    from skyfall_core.pipeline.trainer import to_uint8
    from skyfall_core.splat.io import save_compressed_ply, save_ply, write_georef

    out = job.final
    out.mkdir(parents=True, exist_ok=True)
    save_ply(out / "scene.ply", trainer.model)
    save_compressed_ply(out / "scene.compressed.ply", trainer.model)
    dsm = render_dsm(trainer, scene)
    write_dsm(out / "dsm.tif", dsm)
    gis = write_gis_outputs(out, trainer.model, scene.frame, dsm)  # COG, hillshade, LAZ, 3D Tiles, .spz
    write_georef(out / "georef.json", scene.frame.to_dict(),
                 files=["scene.ply", "scene.compressed.ply", "dsm.tif", *gis.values()])

    def renderer(tr):
        return lambda cam: to_uint8(tr.render(_camera_view(cam), with_grad=False)[0])

    cam = orbit_cameras([0.0, 0.0, 0.0], 45.0, 2.2 * scene.scene_scale, [200.0], 50.0, 640, 480)[0]
    ok, png = cv2.imencode(".png", cv2.cvtColor(renderer(trainer)(cam), cv2.COLOR_RGB2BGR))
    atomic.write_bytes(out / "preview.png", png.tobytes())
    # the same-camera set and the fly-down at the scale of the job's round renders (a tiny test job: tiny)
    write_compare_renders(out / "compare", renderer(trainer), scene.bounds_enu,
                          size=min(COMPARE_SIZE, max(64, round(1.5 * render_size))))
    if load_splats is not None:
        segments = flydown_segments(elevations)
        last = segments[-1].after  # the final splats: the trainer in hand
        loaded: dict[str, object] = {}

        def render_of(key: str):
            if key == last:
                return renderer(trainer)
            if key not in loaded:  # segments come in order: keep only this segment's "before" loaded
                keep = {s.before for s in segments if s.after == key}
                for old in [k for k in loaded if k not in keep]:
                    del loaded[old]
                loaded[key] = load_splats(key)
            return renderer(loaded[key])

        write_flydown(out, segments, render_of, scene.bounds_enu,
                      size=min(FLYDOWN_SIZE, max(64, round(1.25 * render_size))))
