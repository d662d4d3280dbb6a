"""Terrain heights without hints (issue 13 A): the camera step on synthetic scenes whose RPC
HEIGHT_OFF lies far from the ground, and on JAX_068 with its Sat-NeRF json hints removed.

Usage: python benchmarks/bench_heights.py [--work DIR] [--jax DIR] [--json]

For each case (mountains at 2,300 m with HEIGHT_OFF 500 m below; a coast at 2 m with HEIGHT_OFF
1,000 m above; hills at 450 m with HEIGHT_OFF 300 m above; 4 views of 256 px at 1 m) it runs the
camera step with no height hint, with a GLO-30-like DEM in ellipsoidal heights, and with the same
DEM in geoid heights (N = -27 m, no geoid grid installed), and prints the estimated range against
the truth DSM's, the tie-point medians before/after per view and the seconds. With --jax, the 17
JAX_068 views copied without their Sat-NeRF jsons (a temporary folder), against the bundle-adjusted
RPCs, beside the same run with the hints.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

REPO = Path(__file__).resolve().parents[1]
CASES = {"mountain": (2300.0, -500.0), "coast": (2.0, 1000.0), "hills": (450.0, 300.0)}


def _run(scenes, aoi, cfg, preset, **kw) -> dict:
    from skyfall_core.pipeline.scene import prepare_scene

    t = time.perf_counter()
    s = prepare_scene(scenes, aoi, cfg, preset, **kw).summary()
    s["wall_s"] = round(time.perf_counter() - t, 1)
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, help="folder for the generated scenes (default: a temporary one)")
    parser.add_argument("--jax", type=Path, help="the JAX_068 folder (../shared/data/jax068)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from test_heights import truth_range, write_dem  # the tests' DEM writer (GLO-30-like, max-aggregated)

    from skyfall_core.config import load_config
    from skyfall_core.sample.generate import generate_sample

    cfg = load_config(REPO / "config.toml")
    p = cfg.preset("preview")
    preset = p.model_copy(update={"cameras": p.cameras.model_copy(update={"max_image_size": 256,
                                                                         "max_features": 2000})})
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_heights_"))
    rows = []
    for name, (ground, offset) in CASES.items():
        d = work / name
        if not (d / "manifest.json").exists():
            generate_sample(d, ground_height_m=ground, rpc_height_offset_m=offset, views=(0, 3, 6, 8), size_px=256,
                            gsd_m=1.0, small=True)
        data = json.loads((d / "aoi.geojson").read_text())
        props = data["features"][0]["properties"]
        props.pop("min_height_m", None), props.pop("max_height_m", None)
        truth = truth_range(d)
        runs = {"no hint": (cfg, None)}
        write_dem(d, d / "dem_ellipsoidal.tif", geoid_n=None)
        write_dem(d, d / "dem_geoid.tif", geoid_n=-27.0)
        for label, dem in (("DEM (ellipsoidal)", "dem_ellipsoidal.tif"), ("DEM (geoid, no grid)", "dem_geoid.tif")):
            runs[label] = (cfg.model_copy(update={"aoi": cfg.aoi.model_copy(update={"dem_path": d / dem})}), None)
        for label, (c, _) in runs.items():
            s = _run(d / "scenes", data, c, preset)
            h = s["heights"]
            rows.append({"case": name, "source": label, "truth_m": [round(truth[0], 1), round(truth[1], 1)],
                         "rpc_height_off_m": ground + offset, "estimate_m": [h["low_m"], h["high_m"]],
                         "kind": h["kind"],  # float32 DEM cells: 0.05 m of slack
                         "contains": h["low_m"] <= truth[0] + 0.05 and h["high_m"] >= truth[1] - 0.05,
                         "tie_px_before": [v["tie_px_before"] for v in s["views"]],
                         "tie_px_after": [v["tie_px_after"] for v in s["views"]], "seconds": s["wall_s"]})
    if args.jax:
        tmp = Path(tempfile.mkdtemp(prefix="jax_nohints_"))
        shutil.copytree(args.jax / "images", tmp / "images")  # no ../rpcs_raw beside it: no Sat-NeRF hints
        for label, folder in (("Sat-NeRF json hints", args.jax / "images"), ("no hint", tmp / "images")):
            s = _run(folder, args.jax / "aoi.geojson", cfg, cfg.preset("preview"), reference_rpcs=args.jax / "rpcs_ba")
            h = s["heights"]
            rows.append({"case": "JAX_068 (17 views)", "source": label, "truth_m": [-26.0, 29.0],
                         "estimate_m": [h["low_m"], h["high_m"]], "kind": h["kind"],
                         "contains": h["low_m"] <= -26.0 and h["high_m"] >= 29.0,
                         "tie_median_px": [s["tie_median_px_before"], s["tie_median_px_after"]],
                         "worst_view_after_px": max(v["tie_px_after"] for v in s["views"]),
                         "ref_dist_px_mean": s.get("ref_dist_px_mean"), "seconds": s["wall_s"]})
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2, allow_nan=False))
        return
    for r in rows:
        print(json.dumps(r, allow_nan=False))


if __name__ == "__main__":
    main()
