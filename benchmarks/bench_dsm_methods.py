"""DSM extraction ablation (issue 14): every ``dsm_method`` on ONE stage-1 checkpoint, evaluated as
DFC2019 against a truth DSM (water/unlabeled out, MAE on all pixels and on buildings).

    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_dsm_methods.py /tmp/jax_preview \\
        [--truth-dir ../shared/data/jax068/truth] [--methods expected median fusion] \\
        [--bin-m 0.5] [--fusion-depth median] [--filters 0 5] [--floors none default 16:0.02:1] [--json out.json]

The job folder needs ``scene/`` and ``checkpoints/stage1.safetensors`` (``reconstruct --stage 1``).
Each method's DSM is written to ``JOB/eval/dsm_methods/<method>.tif``; prints a Markdown table and
JSON. "expected" is the original method (the baseline, measured in the same run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path

from skyfall_core.eval.dsm import compare_dsm
from skyfall_core.geo.dsm import find_class_raster, read_class_raster, read_dsm, write_dsm
from skyfall_core.pipeline import dsm_render
from skyfall_core.pipeline.dsm_render import DSM_METHODS

REPO = Path(__file__).resolve().parents[1]

DEFAULT_TRUTH = REPO.parent / "shared" / "data" / "jax068" / "truth"


def run(job: Path, truth_dir: Path, methods: list[str], bin_m: float, fusion_depth: str = "median",
        filters: tuple[int, ...] = (0,), floors: tuple[tuple[float, float, float] | None, ...] = (None,)) -> dict:
    import torch

    from skyfall_core.pipeline.stage1 import load_scene
    from skyfall_core.pipeline.trainer import SplatTrainer, TrainSettings
    from skyfall_core.splat.strategy import DensifyStrategy

    torch.set_grad_enabled(False)
    scene = load_scene(job / "scene")
    trainer, _ = SplatTrainer.resume(job / "checkpoints" / "stage1.safetensors", len(scene.views),
                                     scene.scene_scale, 1, TrainSettings(), DensifyStrategy(), restore_optim=False)
    truth_path = _truth_dsm(truth_dir)
    origin = truth_path.with_suffix(".txt")  # DFC2019 truths: a bare raster and an origin .txt
    truth = read_dsm(truth_path, origin_txt=origin if origin.exists() else None, epsg=scene.frame.utm_epsg)
    cls_path = find_class_raster(truth_path)
    cls = read_class_raster(cls_path, truth) if cls_path else None
    splats = dsm_render.Splats.from_model(trainer.model)
    cameras = [(v.viewmat, v.K, v.width, v.height) for v in scene.views]
    x0, x1, y0, y1 = scene.bounds_enu[:4]
    out_dir = job / "eval" / "dsm_methods"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = {}
    for method in methods:
        t0 = time.perf_counter()
        raw, corner = dsm_render.dsm_heights(splats, (x0, x1, y0, y1), 0.5, method, cameras=cameras,
                                             backend=trainer.settings.backend, bin_m=bin_m, fusion_depth=fusion_depth)
        seconds = time.perf_counter() - t0
        for k, fl in itertools.product(filters, floors):
            t1 = time.perf_counter()
            heights = dsm_render.median_filtered(raw, k)
            name = f"fusion_{fusion_depth}" if method == "fusion" else method
            label = f"fusion ({fusion_depth} depth per view)" if method == "fusion" else method
            if k > 1:
                name, label = f"{name}_filter{k}", f"{label} + {k}x{k} median filter"
            if fl is not None:
                radius, quantile, margin = fl
                floor = dsm_render.tie_point_floor(scene.tie_xyz, (x0, x1, y0, y1), 0.5, heights.shape,
                                                   radius_m=radius, quantile=quantile, margin_m=margin)
                heights = dsm_render.raised_to_floor(heights, floor)
                name = f"{name}_floor_r{radius:g}_q{quantile:g}_m{margin:g}"
                label = f"{label} + tie-point floor (r {radius:g} m, q {quantile:g}, margin {margin:g} m)"
            grid = dsm_render.enu_heights_to_utm(heights, corner, 0.5, scene.frame)
            write_dsm(out_dir / f"{name}.tif", grid)
            dfc = compare_dsm(grid, truth, truth_cls=cls).to_dict()
            plain = compare_dsm(grid, truth).to_dict()  # the pre-issue-14 figure (every valid truth pixel)
            rows[label] = {"seconds": round(seconds + time.perf_counter() - t1, 2), "dfc2019": dfc,
                           "all_truth_pixels": plain}
            print(f"{label}: {json.dumps(rows[label])}", file=sys.stderr, flush=True)
    return {"job": str(job), "truth": str(truth_path), "truth_cls": str(cls_path) if cls_path else None,
            "gaussians": trainer.model.num_gaussians, "views": len(scene.views), "bin_m": bin_m,
            "fusion_depth": fusion_depth,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "threads": torch.get_num_threads(), "methods": rows}


def _truth_dsm(truth_dir: Path) -> Path | None:
    """A DFC2019 ``*_DSM.tif`` (JAX_068) or the bundled sample's ``dsm.tif``."""
    return next(truth_dir.glob("*_DSM.tif"), None) or next(truth_dir.glob("dsm.tif"), None)


def _floor_arg(text: str) -> tuple[float, float, float] | None:
    if text == "none":
        return None
    if text == "default":
        return dsm_render.FLOOR_RADIUS_M, dsm_render.FLOOR_QUANTILE, dsm_render.FLOOR_MARGIN_M
    radius, quantile, margin = (float(v) for v in text.split(":"))
    return radius, quantile, margin


def table(result: dict) -> str:
    lines = ["| method | MAE all (m) | MAE buildings (m) | RMSE (m) | median (m) | completeness < 1 m | coverage "
             "| MAE, no class mask (m) | time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, r in result["methods"].items():
        d, p = r["dfc2019"], r["all_truth_pixels"]
        b = d.get("mae_buildings_m")
        lines.append(f"| {m} | {d['mae_m']:.3f} | {b if b is None else f'{b:.3f}'} | {d['rmse_m']:.3f} "
                     f"| {d['median_m']:.3f} | {d['completeness']:.3f} | {d['coverage']:.3f} | {p['mae_m']:.3f} "
                     f"| {r['seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("job", type=Path)
    ap.add_argument("--truth-dir", type=Path, default=DEFAULT_TRUTH)
    ap.add_argument("--methods", nargs="+", default=list(DSM_METHODS), choices=DSM_METHODS)
    ap.add_argument("--bin-m", type=float, default=0.5, help="depth bin of the median method (m)")
    ap.add_argument("--fusion-depth", choices=["median", "expected"], default="median",
                    help="the per-view depth the fusion method back-projects")
    ap.add_argument("--filters", type=int, nargs="+", default=[0],
                    help="median filter sizes (pixels) to evaluate each method with; 0 = unfiltered")
    ap.add_argument("--floors", nargs="+", default=["none"],
                    help="tie-point floors to evaluate: 'none', 'default', or RADIUS_M:QUANTILE:MARGIN_M")
    ap.add_argument("--json", type=Path, help="also write the result here")
    args = ap.parse_args(argv)
    if _truth_dsm(args.truth_dir) is None:
        print(f"no truth DSM in {args.truth_dir}: skipped", file=sys.stderr)
        return 0
    floors = tuple(_floor_arg(f) for f in args.floors)
    result = run(args.job, args.truth_dir, args.methods, args.bin_m, args.fusion_depth, tuple(args.filters), floors)
    print(table(result))
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
