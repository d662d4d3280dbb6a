"""Benchmark of the splat rasterizer back-ends (forward + backward).

Usage: python benchmarks/bench_raster.py [--quick] [--json] [--threads 1,2] [--builds native,haswell]
Prints the processor, the compiled kernel's instruction set and a Markdown table (or the JSON
report of `skyfall_core.splat.bench.run_raster_benchmark`). `--builds` times several builds of
the kernel in the same run, each a `$SKYFALL_RASTER_MARCH` value (`haswell`: AVX2+FMA only;
use `;` to separate values that contain spaces, e.g. "native;native -mno-avx512f").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skyfall_core.splat.bench import format_table, run_raster_benchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tiny size (CI smoke test)")
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts (default: 1 and all)")
    parser.add_argument("--builds", default=None,
                        help="kernel builds to time side by side: $SKYFALL_RASTER_MARCH values, "
                             "comma- or ;-separated (default: this environment's build)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per row")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    builds = None
    if args.builds:
        sep = ";" if ";" in args.builds else ","
        builds = [b.strip() for b in args.builds.split(sep) if b.strip()]
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
