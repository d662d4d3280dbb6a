"""Stage-1 training step time on the CPU, for comparing two checkouts in the same run.

    python benchmarks/bench_step.py [--gaussians 50000] [--size 256] [--steps 30]

Run it with PYTHONPATH pointing at each checkout in turn (interleaved, A B A B) so that both see
the same machine load; it prints one JSON line: median seconds per step and the loss it reached.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gaussians", type=int, default=50_000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()

    import skyfall_core
    from skyfall_core.cameras.orbits import orbit_cameras
    from skyfall_core.pipeline.trainer import SplatTrainer, TrainSettings, View
    from skyfall_core.splat.model import GaussianModel
    from skyfall_core.splat.strategy import DensifyStrategy

    rng = np.random.default_rng(0)
    n = args.gaussians
    xy = rng.uniform(-60, 60, (n, 2))
    z = np.where((np.abs(xy[:, 0]) < 20) & (np.abs(xy[:, 1]) < 15), 25.0, 0.0)
    pts = torch.tensor(np.column_stack([xy, z]), dtype=torch.float32)
    cols = torch.tensor(rng.uniform(0.1, 0.9, (n, 3)), dtype=torch.float32)
    cams = orbit_cameras(np.zeros(3), 70.0, 200.0, [0.0, 90.0, 180.0, 270.0], 50.0, args.size, args.size)
    target = GaussianModel.from_points(pts, cols, sh_degree=1, init_opacity=0.9)
    views = []
    for i, c in enumerate(cams):
        vm, K = (torch.tensor(m, dtype=torch.float32) for m in c.render_matrices())
        with torch.no_grad():
            rgb, _, _, _ = target.render(vm[None], K[None], args.size, args.size, backend="cpu")
        views.append(View(f"v{i}", rgb[0].clamp(0, 1), torch.ones(args.size, args.size, dtype=torch.bool), vm, K, i))
    model = GaussianModel.from_points(pts + 0.5 * torch.randn_like(pts), torch.full_like(cols, 0.5), sh_degree=1)
    tr = SplatTrainer(model, len(views), 80.0, args.steps, TrainSettings(backend="cpu", max_gaussians=10 * n),
                      DensifyStrategy(refine_start_iter=10**6), seed=0)
    times, loss = [], math.nan
    for k in range(args.steps + 3):
        t0 = time.perf_counter()
        losses = tr.train_step(views[k % len(views)])
        loss = float(losses["loss"])  # what a logging step does; the new trainer returns tensors
        if k >= 3:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"code": skyfall_core.__file__, "gaussians": n, "size": args.size, "steps": args.steps,
                      "median_step_s": round(float(np.median(times)), 4), "loss": round(loss, 5),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
