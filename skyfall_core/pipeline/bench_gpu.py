"""`python -m skyfall_core bench gpu [--json]`: the GPU path's figures, measured by one command.

On a CUDA machine it measures, in this order (each part independent; a failed part is reported
with its error and the others still run):

1. ``jax_preview`` / ``jax_standard``: JAX_068 stage 1 with the ``preview`` and ``standard``
   presets (wall time, step time, DSM MAE/RMSE against the truth DSM, peak GPU memory);
2. ``agreement``: gsplat against the compiled CPU rasterizer on three real JAX_068 cameras and the
   stage-1 splats (RGB, alpha and depth differences; cosine of the gradients of every parameter);
3. ``throughput``: forward+backward of gsplat at 100k x 256², 1M x 1024², 2M x 2048²;
4. ``sample_job``: a whole ``sample_aoi`` job with the ``preview`` preset;
5. ``refiner``: a FLUX.1-dev-sized transformer (the published config, random bf16 weights, no
   download) forward at 512² and 1024² with its peak memory, and from it the projected time of
   the ``paper`` preset's stage 2.

Without CUDA it raises :class:`~skyfall_core.splat.device.DeviceError` (the CLI exits 2). The
building blocks take a device and back-ends, so the tests run them on the CPU (cpu vs torch).
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from skyfall_core.jobfolder import JobDir, iter_all_events
from skyfall_core.splat.device import DeviceError

REPO = Path(__file__).resolve().parents[2]
JAX_DIR = REPO.parent / "shared" / "data" / "jax068"
SAMPLE_DIR = REPO / "sample_aoi"
THROUGHPUT_SIZES = ((100_000, 256), (1_000_000, 1024), (2_000_000, 2048))

# FLUX.1-dev transformer (black-forest-labs/FLUX.1-dev, transformer/config.json): 11.9 B parameters
FLUX_DEV_CONFIG = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                       num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768,
                       guidance_embeds=True, axes_dims_rope=(16, 56, 56))
TEXT_TOKENS = 512  # T5 sequence length of FLUX.1-dev


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


# ------------------------------------------------------------------------------ agreement
def _cosine(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    if a is None or b is None:
        return None
    a, b = a.detach().double().cpu().flatten(), b.detach().double().cpu().flatten()
    den = float(a.norm() * b.norm())
    return 1.0 if den == 0.0 else float(a @ b) / den


def _render_with_grads(params: dict[str, torch.Tensor], view, device: torch.device, backend: str,
                       weights: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    from skyfall_core.splat.render import rasterize

    leaves = {k: v.detach().to(device).requires_grad_(True) for k, v in params.items()}
    v = view.to(device)
    rgb, alpha, depth, _ = rasterize(leaves["means"], torch.nn.functional.normalize(leaves["quats"], dim=-1),
                                     torch.exp(leaves["scales"]), torch.sigmoid(leaves["opacities"]),
                                     leaves["colors"], v.viewmat[None], v.K[None], v.width, v.height,
                                     backend=backend)  # type: ignore[arg-type]
    (rgb[0] * weights.to(device)).sum().backward()
    out = {"rgb": rgb[0].detach().cpu(), "alpha": alpha[0, ..., 0].detach().cpu(),
           "depth": depth[0, ..., 0].detach().cpu()}
    return out, {k: t.grad for k, t in leaves.items()}


def backend_agreement(params: dict[str, torch.Tensor], views: list, *, test: tuple[torch.device, str],
                      reference: tuple[torch.device, str] = (torch.device("cpu"), "cpu"), seed: int = 0
                      ) -> list[dict[str, Any]]:
    """Per view: max/mean |RGB diff|, max |alpha diff|, median |depth diff| where both see a surface
    (alpha > 0.5), and the cosine between the two back-ends' gradients of each parameter for the
    loss sum(rgb * w) with fixed random weights w. ``params``: means, quats, scales (log), opacities
    (logit), colors [N, 3]."""
    rows = []
    for view in views:
        gen = torch.Generator().manual_seed(seed)  # host generator: both back-ends get the same weights
        w = torch.rand(view.height, view.width, 3, generator=gen)  # moved to each back-end's device on use
        a, ga = _render_with_grads(params, view, reference[0], reference[1], w)
        b, gb = _render_with_grads(params, view, test[0], test[1], w)
        both = (a["alpha"] > 0.5) & (b["alpha"] > 0.5)
        depth_diff = (a["depth"] - b["depth"]).abs()[both]
        rows.append({
            "view": view.name, "size": [view.width, view.height],
            "rgb_max_abs": round(float((a["rgb"] - b["rgb"]).abs().max()), 5),
            "rgb_mean_abs": float((a["rgb"] - b["rgb"]).abs().mean()),
            "alpha_max_abs": round(float((a["alpha"] - b["alpha"]).abs().max()), 5),
            "depth_median_abs_m": round(float(depth_diff.median()), 4) if depth_diff.numel() else None,
            "grad_cosine": {k: _cosine(ga[k], gb[k]) for k in params},
        })
    return rows


def model_params(model) -> dict[str, torch.Tensor]:
    """A GaussianModel as the raw tensors :func:`backend_agreement` takes (SH degree 0 colours)."""
    from skyfall_core.splat.sh import SH_C0

    colors = (model.params["sh0"][:, 0, :] * SH_C0 + 0.5).clamp_min(0.0)
    return {"means": model.params["means"], "quats": model.params["quats"], "scales": model.params["scales"],
            "opacities": model.params["opacities"], "colors": colors}


# ----------------------------------------------------------------------------- throughput
def _fwd_bwd(args: tuple, backend: str, device: torch.device) -> float:
    from skyfall_core.splat.render import rasterize

    t0 = time.perf_counter()
    rgb, alpha, _, _ = rasterize(*args, backend=backend)
    (rgb.sum() + alpha.sum()).backward()
    _sync(device)
    return time.perf_counter() - t0


def render_throughput(device: torch.device, backend: str, sizes=THROUGHPUT_SIZES, repeats: int = 5
                      ) -> list[dict[str, Any]]:
    """Median forward+backward seconds of the renderer per (N Gaussians, image size)."""
    from skyfall_core.splat.bench import make_scene

    rows = []
    for n, size in sizes:
        scene = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in make_scene(n, size).items()}
        leaves = [scene[k].requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors")]
        args = (*leaves, scene["viewmats"], scene["Ks"], size, size)
        _fwd_bwd(args, backend, device)  # warm-up (and first-use build)
        _peak_reset(device)
        times = [_fwd_bwd(args, backend, device) for _ in range(repeats)]
        rows.append({"gaussians": n, "size": size, "backend": backend, "seconds": round(float(np.median(times)), 5),
                     "peak_gpu_gb": _peak_gb(device)})
    return rows


# ----------------------------------------------------------------------------- refiner
def transformer_forward(device: torch.device, config: dict[str, Any] | None = None, *,
                        image_sizes: tuple[int, ...] = (512, 1024), text_tokens: int = TEXT_TOKENS,
                        dtype: torch.dtype = torch.bfloat16, repeats: int = 3) -> dict[str, Any]:
    """Build a FLUX-type transformer from ``config`` (default: FLUX.1-dev's) with random weights on
    ``device`` and time one forward per image size (latents: size / 8 / 2 tokens a side)."""
    from diffusers import FluxTransformer2DModel

    cfg = dict(FLUX_DEV_CONFIG if config is None else config)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = FluxTransformer2DModel(**cfg).eval()
    finally:
        torch.set_default_dtype(old)
    n_params = sum(p.numel() for p in model.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    out: dict[str, Any] = {"parameters": n_params, "weights_gb": round(weight_bytes / 2**30, 3),
                           "dtype": str(dtype).replace("torch.", ""), "forward": []}
    inner = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    for size in image_sizes:
        side = size // 16
        tokens = side * side
        x = torch.randn(1, tokens, cfg["in_channels"], device=device, dtype=dtype)
        txt = torch.randn(1, text_tokens, cfg["joint_attention_dim"], device=device, dtype=dtype)
        pooled = torch.randn(1, cfg["pooled_projection_dim"], device=device, dtype=dtype)
        ii, jj = torch.meshgrid(torch.arange(side, device=device), torch.arange(side, device=device), indexing="ij")
        img_ids = torch.stack([torch.zeros_like(ii), ii, jj], -1).reshape(-1, 3).to(dtype)
        txt_ids = torch.zeros(text_tokens, 3, device=device, dtype=dtype)
        kwargs = dict(hidden_states=x, encoder_hidden_states=txt, pooled_projections=pooled,
                      timestep=torch.full((1,), 0.5, device=device, dtype=dtype), img_ids=img_ids, txt_ids=txt_ids,
                      return_dict=False)
        if cfg.get("guidance_embeds"):
            kwargs["guidance"] = torch.full((1,), 3.5, device=device, dtype=dtype)
        with torch.no_grad():
            model(**kwargs)
            _sync(device)
            _peak_reset(device)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                y = model(**kwargs)[0]
                _sync(device)
                times.append(time.perf_counter() - t0)
        assert y.shape == x.shape, f"transformer output {tuple(y.shape)} != input {tuple(x.shape)}"
        out["forward"].append({"image_size": size, "tokens": tokens + text_tokens, "inner_dim": inner,
                               "seconds": round(float(np.median(times)), 4), "peak_gpu_gb": _peak_gb(device)})
    del model
    return out


def flowedit_forwards_per_edit(steps: int, n_min: int, n_max: int, n_avg: int) -> int:
    """Transformer calls of one FlowEdit edit: 2 (source and target velocity) x n_avg per step of the
    edit window (steps n_min..n_max), then one per final sampling step (n_min)."""
    return 2 * n_avg * (n_max - n_min) + n_min


def project_stage2(s2, forward_s: float, train_step_s: float, vae_s: float = 0.05) -> dict[str, Any]:
    """Projected stage-2 time of a preset from a measured transformer forward and training step."""
    views = s2.lookat_grid ** 2 * s2.azimuths
    edits = views * s2.edits_per_view
    calls = flowedit_forwards_per_edit(s2.steps, s2.n_min, s2.n_max, s2.n_avg)
    rounds = len(s2.elevations_deg)
    refine = rounds * edits * (calls * forward_s + 2 * vae_s)
    train = rounds * s2.iterations_per_round * train_step_s
    return {"rounds": rounds, "edits_per_round": edits, "transformer_calls_per_edit": calls,
            "refine_s": round(refine, 1), "train_s": round(train, 1), "total_s": round(refine + train, 1)}


# ------------------------------------------------------------------------------- jobs
def _stage1_job(out: Path, scenes_dir: Path, aoi_path: Path, preset: str, overrides: dict[str, Any] | None = None,
                until: str = "stage1") -> tuple[int, float]:
    from skyfall_core.config import load_config
    from skyfall_core.geo.aoi import load_aoi
    from skyfall_core.geo.catalog import find_scene_files
    from skyfall_core.pipeline.run import create_job, run_job

    cfg = load_config(None)
    aoi = load_aoi(aoi_path, cfg.aoi)
    scenes = [str(p) for p in find_scene_files([scenes_dir], cfg.catalog.extensions)]
    create_job(out, cfg=cfg, preset=preset, aoi=aoi.to_geojson(), scenes=scenes, name=out.name,
               overrides=overrides or {}, job_id=out.name)
    t0 = time.perf_counter()
    code = run_job(out, until=until)
    return code, time.perf_counter() - t0


def _job_timings(job: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for e in iter_all_events(JobDir(job).events):
        if e.get("kind") == "timing":
            key = e.get("stage", "?") + (f"_{e['round']}" if "round" in e else "")
            out[key] = e.get("seconds") or sum(e.get(k, 0.0) for k in ("render_s", "refine_s", "train_s"))
    return out


def _dsm_metrics(job: Path, truth: Path, origin_txt: Path | None, stage: str = "stage1") -> dict[str, Any]:
    from skyfall_core.eval.dsm import compare_dsm
    from skyfall_core.geo.dsm import read_dsm

    pred = job / stage / "dsm.tif"
    epsg = json.loads((job / "scene" / "frame.json").read_text())["utm_epsg"] if origin_txt else None
    m = compare_dsm(read_dsm(pred), read_dsm(truth, origin_txt=origin_txt, epsg=epsg)).to_dict()
    return {k: m[k] for k in ("mae_m", "rmse_m", "median_m", "completeness", "coverage")}


def _jax_part(work: Path, preset: str, device: torch.device, jax_dir: Path) -> dict[str, Any]:
    _peak_reset(device)
    job = work / f"jax_{preset}"
    code, seconds = _stage1_job(job, jax_dir / "images", jax_dir / "aoi.geojson", preset)
    if code != 0:
        raise RuntimeError(f"the JAX {preset} job stopped with code {code}; see {job / 'log.txt'}")
    t = _job_timings(job)
    return {"seconds": round(seconds, 1), "timings": t, "peak_gpu_gb": _peak_gb(device),
            "dsm": _dsm_metrics(job, jax_dir / "truth" / "JAX_068_DSM.tif", jax_dir / "truth" / "JAX_068_DSM.txt"),
            "job": str(job)}


def job_agreement(job: Path, test: tuple[torch.device, str],
                  reference: tuple[torch.device, str] = (torch.device("cpu"), "cpu"), n_views: int = 3
                  ) -> dict[str, Any]:
    """:func:`backend_agreement` on a finished stage 1: its splats and its first real cameras."""
    from skyfall_core.pipeline.stage1 import FINAL, load_scene
    from skyfall_core.splat.checkpoint import load_checkpoint

    model, _ = load_checkpoint(JobDir(job).checkpoints / FINAL)
    scene = load_scene(JobDir(job).scene)
    rows = backend_agreement(model_params(model), scene.views[:n_views], test=test, reference=reference)
    return {"gaussians": model.num_gaussians, "views": rows,
            "camera_distance_km": [round(float(np.linalg.norm(c.camera_center)) / 1000, 1)
                                   for c in scene.cameras[:n_views]]}


def _agreement_part(work: Path, device: torch.device) -> dict[str, Any]:
    return job_agreement(work / "jax_preview", test=(device, "gsplat"))


def _sample_part(work: Path, device: torch.device) -> dict[str, Any]:
    _peak_reset(device)
    job = work / "sample_preview"
    code, seconds = _stage1_job(job, SAMPLE_DIR / "scenes", SAMPLE_DIR / "aoi.geojson", "preview", until="all")
    if code != 0:
        raise RuntimeError(f"the sample job stopped with code {code}; see {job / 'log.txt'}")
    return {"seconds": round(seconds, 1), "timings": _job_timings(job), "peak_gpu_gb": _peak_gb(device),
            "dsm": _dsm_metrics(job, SAMPLE_DIR / "truth" / "dsm.tif", None, stage="final")}


def _refiner_part(device: torch.device, results: dict[str, Any]) -> dict[str, Any]:
    from skyfall_core.config import load_config

    fwd = transformer_forward(device)
    cfg = load_config(None)
    s2 = cfg.preset("paper").stage2
    size = s2.image_size
    t_fwd = next((f["seconds"] for f in fwd["forward"] if f["image_size"] == size), fwd["forward"][-1]["seconds"])
    std = results.get("jax_standard", {})
    steps = cfg.preset("standard").stage1.iterations
    step_s = std.get("timings", {}).get("stage1", 0.0) / max(steps, 1)
    fwd["paper_stage2_projection"] = {"image_size": size, "forward_s": t_fwd, "train_step_s": round(step_s, 5),
                                      **project_stage2(s2, t_fwd, step_s)}
    return fwd


def run_gpu_benchmark(*, jax_dir: Path = JAX_DIR, work_dir: Path | None = None, keep: bool = False,
                      parts: tuple[str, ...] = ("jax_preview", "agreement", "jax_standard", "throughput",
                                                "sample_job", "refiner"),
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    """All parts on the first CUDA device; raises DeviceError without CUDA."""
    if not torch.cuda.is_available():
        raise DeviceError(f"bench gpu needs a CUDA GPU; torch {torch.__version__} sees none "
                          f"(CUDA build: {torch.version.cuda or 'no'})",
                          fix="run it on a machine with an NVIDIA GPU and a CUDA build of torch; "
                              "`bench raster` measures the CPU renderer")
    device = torch.device("cuda", torch.cuda.current_device())
    props = torch.cuda.get_device_properties(device)
    results: dict[str, Any] = {"machine": {"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 2**30, 1),
                                           "cuda": torch.version.cuda, "torch": torch.__version__,
                                           "cpu": platform.processor() or platform.machine()}}
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="skyfall_bench_gpu_"))
    work.mkdir(parents=True, exist_ok=True)
    if not (jax_dir / "images").is_dir():
        results["jax_skipped"] = f"JAX_068 not found at {jax_dir}"
        parts = tuple(p for p in parts if p not in ("jax_preview", "agreement", "jax_standard"))
    steps: dict[str, Callable[[], Any]] = {
        "jax_preview": lambda: _jax_part(work, "preview", device, jax_dir),
        "agreement": lambda: _agreement_part(work, device),
        "jax_standard": lambda: _jax_part(work, "standard", device, jax_dir),
        "throughput": lambda: render_throughput(device, "gsplat"),
        "sample_job": lambda: _sample_part(work, device),
        "refiner": lambda: _refiner_part(device, results),
    }
    for name in parts:
        log(f"bench gpu: {name} ...")
        t0 = time.perf_counter()
        try:
            results[name] = steps[name]()
        except Exception as exc:  # one failed part must not hide the others' figures
            results[name] = {"error": repr(exc), "traceback": traceback.format_exc(limit=6)}
        log(f"bench gpu: {name} done in {time.perf_counter() - t0:.1f} s")
        torch.cuda.empty_cache()
    if not keep and work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return results
