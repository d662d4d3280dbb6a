"""Forward+backward timings of the splat renderer back-ends (`python -m skyfall_core bench raster`).

Scene: N Gaussians in front of one pinhole camera, their centres spread uniformly over the
image, sizes such that the projected blobs have a standard deviation of ~1.5 px, random
orientations, colours and opacities in 0.1..0.9. Each (size, back-end) runs in its own
subprocess so that its peak RSS (`ru_maxrss`) is its own.

The report names the processor and what the compiled kernel was built for (`kernel_isa`: the
compiler's instruction-set macros, e.g. AVX-512 or AVX2). `builds` times several builds of the
kernel in the same run, each a `$SKYFALL_RASTER_MARCH` value (e.g. ["native", "haswell"] for
this CPU's build beside an AVX2-only one); the torch reference is timed once per size.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

FULL_SIZES = ((20_000, 256), (100_000, 256), (300_000, 256),
              (20_000, 512), (100_000, 512), (300_000, 512))
QUICK_SIZES = ((2_000, 64),)
TORCH_MAX_BYTES = 6 * 2**30  # skip the torch reference where it would need more memory
BLOB_SIGMA_PX = 1.5
FOCAL_RATIO = 1.0  # fx = FOCAL_RATIO * width


def make_scene(n_gaussians: int, size: int, seed: int = 0) -> dict[str, Any]:
    """A reproducible benchmark scene for a size x size camera (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)
    fx = FOCAL_RATIO * size
    depth = 2.0 + 2.0 * torch.rand(n_gaussians, generator=gen)  # [N] camera z in 2..4
    pixels = torch.rand(n_gaussians, 2, generator=gen) * size  # [N, 2] where the blobs land
    xy = (pixels - size / 2) / fx * depth[:, None]
    means = torch.cat([xy, depth[:, None]], dim=-1)  # [N, 3] (camera = world frame)
    sigma_world = BLOB_SIGMA_PX * depth / fx  # [N]: 1.5 px at that depth
    aniso = 0.7 + 0.6 * torch.rand(n_gaussians, 3, generator=gen)  # [N, 3]
    return {
        "means": means,
        "quats": torch.randn(n_gaussians, 4, generator=gen),
        "scales": sigma_world[:, None] * aniso,
        "opacities": 0.1 + 0.8 * torch.rand(n_gaussians, generator=gen),
        "colors": torch.rand(n_gaussians, 3, generator=gen),
        "viewmats": torch.eye(4)[None],
        "Ks": torch.tensor([[fx, 0.0, size / 2], [0.0, fx, size / 2], [0.0, 0.0, 1.0]])[None],
        "width": size,
        "height": size,
    }


def _forward_backward(scene: dict[str, Any], backend: str) -> tuple[float, float, int]:
    """One timed forward+backward pass; returns (wall seconds, process CPU seconds, n_isects)."""
    from skyfall_core.splat.render import rasterize

    params = {k: scene[k].clone().requires_grad_(True)
              for k in ("means", "quats", "scales", "opacities", "colors")}
    busy = time.process_time()
    start = time.perf_counter()
    colors, alphas, depths, info = rasterize(
        params["means"], params["quats"], params["scales"], params["opacities"],
        params["colors"], scene["viewmats"], scene["Ks"], scene["width"], scene["height"],
        backend=backend,
    )
    loss = colors.sum() + alphas.sum() + 0.01 * depths.sum()
    loss.backward()
    return time.perf_counter() - start, time.process_time() - busy, int(info["n_isects"])


def time_backend(n_gaussians: int, size: int, backend: str, repeats: int,
                 threads: int | None = None) -> dict[str, Any]:
    """Best-of-`repeats` forward+backward time in this process, plus its peak RSS."""
    if threads is not None:
        torch.set_num_threads(threads)
    scene = make_scene(n_gaussians, size)
    _forward_backward(scene, backend)  # warm-up (and extension load)
    times, busy = [], []
    n_isects = 0
    for _ in range(repeats):
        seconds, busy_seconds, n_isects = _forward_backward(scene, backend)
        times.append(seconds)
        busy.append(busy_seconds)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    # busy_seconds: CPU time of the process (all its threads) in the best pass; with 1 thread
    # it hardly moves when other programs compete for the cores, unlike the wall time.
    result = {"seconds": min(times), "times": times, "busy_seconds": min(busy),
              "n_isects": n_isects, "peak_rss_mb": peak_kib / 1024.0,
              "threads": torch.get_num_threads()}
    if backend == "cpu":
        from skyfall_core.splat.raster_cpu import kernel_isa

        result["kernel"] = kernel_isa()
    return result


def _run_in_subprocess(n_gaussians: int, size: int, backend: str, repeats: int,
                       threads: int, march: str | None = None) -> dict[str, Any]:
    code = (
        "import json; from skyfall_core.splat.bench import time_backend; "
        f"print(json.dumps(time_backend({n_gaussians}, {size}, {backend!r}, {repeats}, {threads})))"
    )
    package_root = str(Path(__file__).resolve().parents[2])  # the folder holding skyfall_core
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    if march is not None:
        from skyfall_core.splat.raster_cpu import MARCH_ENV

        env[MARCH_ENV] = march
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def estimated_isects(n_gaussians: int, size: int) -> float:
    """Expected tile entries of the benchmark scene (blob box vs 16-pixel tiles)."""
    box = 2 * math.ceil(3.33 * math.sqrt(BLOB_SIGMA_PX**2 + 0.3))
    return n_gaussians * (1 + box / 16) ** 2


def estimated_torch_bytes(n_gaussians: int, size: int) -> float:
    """Peak memory of the torch reference: ~14 float32 [256 pixels] tensors per tile entry
    kept for autograd (measured: 3.8 GB at 100k x 256^2)."""
    return estimated_isects(n_gaussians, size) * 256 * 4 * 14


def run_raster_benchmark(quick: bool = False, threads: list[int] | None = None,
                         repeats: int | None = None,
                         builds: list[str] | None = None) -> dict[str, Any]:
    """Time forward+backward of the cpu and torch back-ends; a JSON-serialisable report.

    Each (size, back-end, thread count, build) runs in a fresh subprocess (its own peak RSS).
    By default both 1 thread and all of torch's threads are measured; the speed-up compares
    the two back-ends at the same thread count. quick=True runs one tiny size on 1 thread (a
    few seconds, for CI). The torch reference is skipped where its estimated memory exceeds
    TORCH_MAX_BYTES (listed in `skipped`). `builds`: `$SKYFALL_RASTER_MARCH` values to time
    side by side (one row each per size and thread count, in that order, the torch reference
    shared); default: the one build this environment uses. Each build compiles on its first
    use (about a minute, not timed).
    """
    from skyfall_core.splat.raster_cpu import cpu_isa, processor_name

    sizes = QUICK_SIZES if quick else FULL_SIZES
    if threads is None:
        threads = [1] if quick else sorted({1, torch.get_num_threads()})
    repeats = repeats or (2 if quick else 5)
    marches: list[str | None] = list(builds) if builds else [None]
    rows, skipped = [], []
    kernels: dict[str, Any] = {}
    for n_gaussians, size in sizes:
        for n_threads in threads:
            reference: dict[str, Any] | None = None
            if estimated_torch_bytes(n_gaussians, size) <= TORCH_MAX_BYTES:
                reference = _run_in_subprocess(n_gaussians, size, "torch",
                                               max(1, min(repeats, 2)), n_threads)
            else:
                skipped.append(f"torch @ {n_gaussians} x {size}^2, {n_threads} thread(s): "
                               f"~{estimated_torch_bytes(n_gaussians, size) / 2**30:.0f} GiB")
            for march in marches:
                row: dict[str, Any] = {"n_gaussians": n_gaussians, "width": size,
                                       "height": size, "threads": n_threads}
                cpu = _run_in_subprocess(n_gaussians, size, "cpu", repeats, n_threads, march)
                kernel = cpu.get("kernel", {})
                row["build"] = march or _default_march()
                row["isa"] = kernel.get("isa", "?")
                row["cpu"] = cpu
                kernels.setdefault(row["build"], kernel)
                if reference is not None:
                    row["torch"] = reference
                    if "seconds" in cpu and "seconds" in reference:
                        row["speedup"] = reference["seconds"] / cpu["seconds"]
                rows.append(row)
    first = rows[0]["build"] if rows else None
    baseline = {(r["n_gaussians"], r["width"], r["threads"]): r["cpu"].get("seconds")
                for r in rows if r["build"] == first}
    if len(marches) > 1:
        for row in rows:
            base = baseline.get((row["n_gaussians"], row["width"], row["threads"]))
            if base and "seconds" in row["cpu"]:
                row["vs_first_build"] = row["cpu"]["seconds"] / base
    return {
        "benchmark": "raster forward+backward (projection, SH-free colours, binning, "
                     "compositing, and their backward)",
        "scene": f"one camera, blobs ~{BLOB_SIGMA_PX} px sigma spread over the image, "
                 "opacity 0.1..0.9",
        "repeats": repeats,
        "timing": "best of repeats (torch: best of <= 2), wall seconds; busy_seconds = the "
                  "process's CPU time (all threads) in its least busy pass; peak_rss_mb = "
                  "ru_maxrss of a fresh subprocess per measurement",
        "machine": platform.processor() or platform.machine(),
        "processor": processor_name(),
        "cpu_isa": cpu_isa(),  # what the CPU offers; the kernels' own ISA is in `kernels`
        "cpu_count": os.cpu_count(),
        "kernels": kernels,  # per build: isa, compiler macros, target flags, vector width
        "rows": rows,
        "skipped": skipped,
    }


def _default_march() -> str:
    from skyfall_core.splat.raster_cpu import MARCH_ENV

    return os.environ.get(MARCH_ENV, "").strip() or "native"


def format_table(report: dict[str, Any]) -> str:
    """Markdown table of a `run_raster_benchmark` report (processor and kernel ISA above it).

    `cpu s` is the wall time of the compiled back-end, `cpu busy s` its process CPU time (see
    `time_backend`); `vs first build` compares wall times with the first build's, same run."""
    lines = [f"processor: {report.get('processor', report.get('machine', '?'))} "
             f"({report.get('cpu_isa', '?')}), {report.get('cpu_count', '?')} logical CPUs"]
    for build, kernel in report.get("kernels", {}).items():
        lines.append(f"kernel build `{build}`: {kernel.get('isa', '?')} "
                     f"({' '.join(kernel.get('flags', [])) or 'default flags'}; "
                     f"{kernel.get('vector_bits', '?')}-bit vectors)")
    multi = len(report.get("kernels", {})) > 1
    lines.append("")
    header = "| N | image | threads | build | kernel ISA | cpu s | cpu busy s | cpu peak MB |"
    rule = "|---|---|---|---|---|---|---|---|"
    if multi:
        header += " vs first build |"
        rule += "---|"
    lines += [header + " torch s | torch peak MB | speed-up |", rule + "---|---|---|"]
    nan = float("nan")
    for row in report["rows"]:
        cpu, ref = row["cpu"], row.get("torch", {})
        line = (f"| {row['n_gaussians']:,} | {row['width']}x{row['height']} | {row['threads']} "
                f"| {row.get('build', '?')} | {row.get('isa', '?')} "
                f"| {cpu.get('seconds', nan):.3f} | {cpu.get('busy_seconds', nan):.3f} "
                f"| {cpu.get('peak_rss_mb', nan):.0f} |")
        if multi:
            line += f" {row.get('vs_first_build', nan):.2f} |"
        line += (f" {ref.get('seconds', nan):.3f} | {ref.get('peak_rss_mb', nan):.0f} "
                 f"| {row.get('speedup', nan):.1f} |")
        lines.append(line)
    return "\n".join(lines)
