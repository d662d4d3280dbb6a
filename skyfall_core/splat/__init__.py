"""Gaussian splat core: model, densification, renderer (gsplat / compiled CPU / PyTorch), I/O.

Public API:
    rasterize(...)                       -> colors, alphas, depths, info   (render.py)
    GaussianModel.from_points(...)       -> model                          (model.py)
    DensifyStrategy(...)                 densification / pruning policy     (strategy.py)
    save_ply / load_ply / save_compressed_ply / write_georef               (io.py)
    save_checkpoint / load_checkpoint                                      (checkpoint.py)
    run_raster_benchmark(quick=False)    -> dict                           (bench.py)
Nothing is compiled at import: the CPU rasterizer is built on first use (raster_cpu.py).
"""

from skyfall_core.splat.bench import run_raster_benchmark
from skyfall_core.splat.checkpoint import load_checkpoint, restore_optimizers, save_checkpoint
from skyfall_core.splat.io import (
    load_ply,
    save_compressed_ply,
    save_ply,
    write_georef,
)
from skyfall_core.splat.model import GaussianModel
from skyfall_core.splat.render import rasterize
from skyfall_core.splat.strategy import DensifyStrategy

__all__ = [
    "DensifyStrategy",
    "GaussianModel",
    "load_checkpoint",
    "load_ply",
    "restore_optimizers",
    "rasterize",
    "run_raster_benchmark",
    "save_checkpoint",
    "save_compressed_ply",
    "save_ply",
    "write_georef",
]
