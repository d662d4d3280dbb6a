"""D-SSIM loss forward+backward on one training-size image: the fused CPU version (closed-form
backward on OpenCV's blur) against autograd through depthwise conv2d, in the same run.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_ssim.py [--size 512 490] [--repeats 10]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from skyfall_core.pipeline.losses import ssim_map, ssim_map_reference


def time_fn(fn, img, ref, repeats: int) -> float:
    fn(img, ref).mean().backward()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        img.grad = None
        t = time.perf_counter()
        fn(img, ref).mean().backward()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, nargs=2, default=[512, 490], metavar=("H", "W"))
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    img = torch.rand(*a.size, 3, generator=g).requires_grad_()
    ref = torch.rand(*a.size, 3, generator=g)
    fused = time_fn(ssim_map, img, ref, a.repeats)
    autograd = time_fn(ssim_map_reference, img, ref, a.repeats)
    print(json.dumps({"image": a.size, "threads": torch.get_num_threads(), "fused_s": round(fused, 4),
                      "autograd_s": round(autograd, 4), "speedup": round(autograd / fused, 1)}))


if __name__ == "__main__":
    main()
