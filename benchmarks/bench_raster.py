"""Benchmark of the splat rasterizer back-ends (forward + backward).

Usage: python benchmarks/bench_raster.py [--quick] [--json] [--threads 1,2] [--builds native,haswell]
Prints the processor, the compiled kernel's instruction set and a Markdown table (or the JSON
report of `skyfall_core.splat.bench.run_raster_benchmark`). `--builds` times several builds of
the kernel in the same run, each a `$SKYFALL_RASTER_MARCH` value (`haswell`: AVX2+FMA only;
use `;` to separate values that contain spaces, e.g. "native;native -mno-avx512f").

Training steps: `--train-steps JOB_DIR [--checkpoint FILE] [--steps 40] [--rounds 2]` times
stage-1 training steps (`preview` settings) on a prepared job's `scene/`, resumed from its
stage-1 checkpoint (default `JOB_DIR/checkpoints/stage1.safetensors`, so the Gaussian count is
the trained one), once per build and thread count, builds interleaved over `--rounds`, each run
in a fresh subprocess after 3 untimed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from skyfall_core.splat.bench import format_table, run_raster_benchmark  # noqa: E402


def time_train_steps(job_dir: Path, checkpoint: Path, n_steps: int, threads: int,
                     preset: str = "preview") -> dict[str, Any]:
    """Mean/median wall and process-CPU seconds per stage-1 step, in this process."""
    import numpy as np
    import torch

    from skyfall_core.config import load_config
    from skyfall_core.pipeline.stage1 import densify_strategy, load_scene, train_settings
    from skyfall_core.pipeline.trainer import SplatTrainer
    from skyfall_core.splat.raster_cpu import kernel_isa, load_extension

    torch.set_num_threads(threads)
    if load_extension() is None:
        raise SystemExit("the CPU rasterizer did not build (see the warning)")
    s1 = load_config().preset(preset).stage1
    scene = load_scene(job_dir / "scene")
    trainer, _ = SplatTrainer.resume(checkpoint, len(scene.views), scene.scene_scale, s1.iterations,
                                     train_settings(s1, "cpu"), densify_strategy(s1),
                                     embedding_dim=s1.appearance_embedding_dim)
    order = [int(i) for i in np.random.default_rng(0).permutation(len(scene.views))]
    order = order * (n_steps // len(order) + 2)
    wall, busy = [], []
    for i, view in enumerate(order[: n_steps + 3]):
        c0, t0 = time.process_time(), time.perf_counter()
        trainer.train_step(scene.views[view])
        if i >= 3:  # warm-up steps are not timed
            wall.append(time.perf_counter() - t0)
            busy.append(time.process_time() - c0)
    return {"kernel": kernel_isa(), "gaussians": trainer.model.num_gaussians, "threads": threads,
            "steps": len(wall), "mean_s": statistics.mean(wall), "median_s": statistics.median(wall),
            "busy_mean_s": statistics.mean(busy)}


def run_train_step_benchmark(job_dir: Path, checkpoint: Path, builds: list[str], threads: list[int],
                             n_steps: int, rounds: int) -> dict[str, Any]:
    from skyfall_core.splat.raster_cpu import MARCH_ENV, cpu_isa, processor_name

    rows = []
    for n_threads in threads:
        for round_ in range(rounds):
            for build in builds:
                env = dict(os.environ, **{MARCH_ENV: build})
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
                cmd = [sys.executable, __file__, "--_one-train-run", str(job_dir), str(checkpoint),
                       str(n_steps), str(n_threads)]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if done.returncode != 0:
                    lines = done.stderr.strip().splitlines()
                    row = {"error": lines[-1] if lines else f"exit status {done.returncode}"}
                else:
                    row = json.loads(done.stdout.strip().splitlines()[-1])
                rows.append({"build": build, "round": round_, **row})
    return {"benchmark": "stage-1 training steps resumed from a checkpoint", "job": str(job_dir),
            "checkpoint": str(checkpoint), "processor": processor_name(), "cpu_isa": cpu_isa(),
            "rows": rows}


def format_train_table(report: dict[str, Any]) -> str:
    lines = [f"processor: {report['processor']} ({report['cpu_isa']})", "",
             "| build | kernel ISA | threads | round | Gaussians | steps | mean s/step | median s/step "
             "| busy s/step |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        if "error" in r:
            lines.append(f"| {r['build']} | error: {r['error']} |")
            continue
        lines.append(f"| {r['build']} | {r['kernel']['isa']} | {r['threads']} | {r['round']} "
                     f"| {r['gaussians']:,} | {r['steps']} | {r['mean_s']:.3f} | {r['median_s']:.3f} "
                     f"| {r['busy_mean_s']:.3f} |")
    return "\n".join(lines)


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    sep = ";" if ";" in value else ","
    return [b.strip() for b in value.split(sep) if b.strip()]


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--_one-train-run":  # a subprocess of --train-steps
        job, ckpt, steps, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        print(json.dumps(time_train_steps(Path(job), Path(ckpt), steps, threads)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny size (CI smoke test)")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts (default: 1 and all)")
    parser.add_argument("--builds", default=None,
                        help="kernel builds to time side by side: $SKYFALL_RASTER_MARCH values, "
                             "comma- or ;-separated (default: this environment's build)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per row")
    parser.add_argument("--train-steps", metavar="JOB_DIR", default=None,
                        help="time stage-1 training steps of this prepared job instead")
    parser.add_argument("--checkpoint", default=None,
                        help="stage-1 checkpoint to resume (default: the job's stage1.safetensors)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run (--train-steps)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per build, interleaved (--train-steps)")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    builds = _split(args.builds)
    if args.train_steps:
        job = Path(args.train_steps)
        ckpt = Path(args.checkpoint) if args.checkpoint else job / "checkpoints" / "stage1.safetensors"
        import torch

        report = run_train_step_benchmark(job, ckpt, builds or [os.environ.get("SKYFALL_RASTER_MARCH", "native")],
                                          threads or [torch.get_num_threads()], args.steps, args.rounds)
        print(json.dumps(report, indent=2) if args.json else format_train_table(report))
        return
    report = run_raster_benchmark(quick=args.quick, threads=threads, repeats=args.repeats,
                                  builds=builds)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        for line in report["skipped"]:
            print(f"skipped: {line}")


if __name__ == "__main__":
    main()
