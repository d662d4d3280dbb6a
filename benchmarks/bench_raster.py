"""Benchmark of the splat rasterizer back-ends (forward + backward).

Usage: python benchmarks/bench_raster.py [--quick] [--json] [--threads 1,2]
Prints a Markdown table (or the JSON report of
`skyfall_core.splat.bench.run_raster_benchmark`).
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
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")] if args.threads else None
    report = run_raster_benchmark(quick=args.quick, threads=threads)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        for line in report["skipped"]:
            print(f"skipped: {line}")


if __name__ == "__main__":
    main()
