"""Command line: ``python -m skyfall_core <command>``.

Each sub-command parses its arguments and calls one function of the core; a
:class:`~skyfall_core.errors.SkyfallError` is printed as one clear line (no traceback) and the
process exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from skyfall_core.errors import SkyfallError
from skyfall_core.jobfolder import EXIT_USER_ERROR, JobDir


def _print(obj: Any, as_json: bool, text: Callable[[Any], str]) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else text(obj))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- commands
def cmd_config(args: argparse.Namespace) -> int:
    from skyfall_core.config import load_config

    cfg = load_config(args.config)
    print(json.dumps(cfg.resolved(args.preset), indent=2))
    return 0


def cmd_scenes(args: argparse.Namespace) -> int:
    from skyfall_core.config import load_config
    from skyfall_core.geo.catalog import catalog_table, require_scene_files, scan_scenes
    from skyfall_core.geo.stac import is_stac_input, stac_scene_files, write_stac

    cfg = load_config(args.config)
    folders = [Path(f) for f in args.folders] or cfg.catalog_folders
    cache = None if args.no_cache else cfg.workspace_root / "cache" / "catalog.json"
    stac = [f for f in folders if is_stac_input(f)]  # STAC Items/ItemCollections: their image assets
    folders = [f for f in folders if f not in stac]
    if folders or not stac:
        require_scene_files(folders, cfg.catalog.extensions)  # none: exit 2 naming what was looked for
    scenes = scan_scenes(folders + stac_scene_files(stac), cfg.catalog.extensions, cache_path=cache)
    if args.stac_out:
        written = write_stac(scenes, Path(args.stac_out))
        print(f"wrote {len(written) - 1} STAC item(s) and {written[-1]}", file=sys.stderr)
    if args.json:
        print(json.dumps([s.to_dict(include_rpc=False) for s in scenes], indent=2, default=str))
    else:
        rows = catalog_table(scenes)
        cols = ["id", "acquired", "sensor", "sun_el", "sun_az", "view_zenith", "off_nadir", "view_az", "gsd_m",
                "size"]
        if any(r.get("error") for r in rows):
            cols.append("error")
        print(_table(rows, cols))
    return 0


def cmd_cameras(args: argparse.Namespace) -> int:
    from skyfall_core.config import load_config
    from skyfall_core.geo.catalog import require_scene_files
    from skyfall_core.pipeline.scene import prepare_scene

    cfg = load_config(args.config)
    preset = cfg.preset(args.preset)
    require_scene_files([Path(args.scenes)], cfg.catalog.extensions)
    out = Path(args.out) if args.out else None
    report = prepare_scene(Path(args.scenes), Path(args.aoi), cfg, preset, out_dir=out,
                           bias_correction=not args.no_bias_correction,
                           reference_rpcs=Path(args.compare_rpcs) if args.compare_rpcs else None)
    summary = report.summary()
    print(json.dumps(summary, indent=2, allow_nan=False) if args.json else _cameras_text(summary))
    return 0


def _cameras_text(summary: dict[str, Any]) -> str:
    cols = ["id", "width", "height", "fit_mean_px", "fit_max_px", "tie_points", "tie_px_after", "bias_drow",
            "bias_dcol"]
    if any("ref_dist_px" in v for v in summary["views"]):
        cols.append("ref_dist_px")
    lines = [_table(summary["views"], cols), ""]
    for key in ("fit_mean_px_worst", "fit_max_px_worst", "tie_median_px_before", "tie_median_px_after",
                "height_range_m", "height_source", "seconds"):
        if key in summary:
            lines.append(f"{key}: {summary[key]}")
    lines += [f"warning: {m}" for m in summary.get("messages", [])]
    return "\n".join(lines)


def cmd_sample(args: argparse.Namespace) -> int:
    from skyfall_core.sample.generate import generate_sample

    summary = generate_sample(Path(args.out), seed=args.seed)
    _print(summary, args.json, lambda s: json.dumps(s, indent=2, default=str))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "raster":
        from skyfall_core.splat.bench import run_raster_benchmark

        result = run_raster_benchmark(quick=args.quick)
    elif args.what == "gpu":
        from skyfall_core.pipeline.bench_gpu import run_gpu_benchmark

        result = run_gpu_benchmark(work_dir=Path(args.work_dir) if args.work_dir else None,
                                   log=lambda m: print(m, file=sys.stderr, flush=True))
    else:  # pragma: no cover - argparse restricts the choices
        raise SystemExit(f"unknown benchmark {args.what}")
    _print(result, args.json, lambda r: json.dumps(r, indent=2, default=str))
    return 0


def cmd_device(args: argparse.Namespace) -> int:
    """The device a job would use here; on CUDA, build gsplat's kernels now (once per machine)."""
    import torch

    from skyfall_core.config import load_config
    from skyfall_core.splat.device import prepare_renderer, resolve_device

    cfg = load_config(args.config)
    device = resolve_device(cfg.device.compute)
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "cuda_build": torch.version.cuda,
                            "renderer": cfg.device.renderer}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        print("building/loading the GPU renderer (gsplat compiles its kernels once, about a minute)...",
              file=sys.stderr, flush=True)
    ready = prepare_renderer(cfg.device.renderer, device)
    info.update(backend=ready.backend, first_render_s=round(ready.seconds, 2))
    _print(info, args.json, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))
    return 0


def _parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs (value parsed as JSON when it can be: numbers, lists, booleans)."""
    from skyfall_core.config import parse_override

    return dict(parse_override(p) for p in pairs)


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from skyfall_core.config import load_config
    from skyfall_core.geo.aoi import load_aoi
    from skyfall_core.geo.catalog import no_usable_scene_error, require_scene_files, scan_scenes
    from skyfall_core.pipeline.run import create_job, run_job

    cfg = load_config(args.config)
    out = Path(args.out)
    if not JobDir(out).job_json.exists():
        aoi = load_aoi(Path(args.aoi), cfg.aoi)
        files = require_scene_files([Path(args.scenes)], cfg.catalog.extensions)
        cache = cfg.workspace_root / "cache" / "catalog.json"
        found = scan_scenes(files, cfg.catalog.extensions, cache_path=cache)
        if not any(s.ok for s in found):  # say why here, before creating a job bound to fail
            raise no_usable_scene_error(found)
        scenes = [str(p) for p in files]
        create_job(out, cfg=cfg, preset=args.preset, aoi=aoi.to_geojson(), scenes=scenes,
                   name=args.name or out.name, overrides=_parse_overrides(args.set), job_id=out.name)
    code = run_job(out, until="stage1" if args.stage == "1" else "all")
    print(f"job {out}: {'done' if code == 0 else 'stopped with code %d (see %s)' % (code, out / 'log.txt')}")
    return code


def cmd_run(args: argparse.Namespace) -> int:
    from skyfall_core.pipeline.run import run_job

    return run_job(Path(args.job_dir))


def cmd_eval_dsm(args: argparse.Namespace) -> int:
    from skyfall_core.eval.dsm import compare_dsm
    from skyfall_core.geo.dsm import find_class_raster, read_class_raster, read_dsm

    job = Path(args.job)
    order = ((job / "stage1" / "dsm.tif",) if args.stage == "stage1"
             else (JobDir(job).final_file("dsm"), job / "stage1" / "dsm.tif"))
    pred_path = next((p for p in order if p.exists()), None)
    if pred_path is None:
        from skyfall_core.errors import SkyfallError

        raise SkyfallError("the job has no DSM yet (final/dsm.tif or stage1/dsm.tif)", path=job,
                           fix="run stage 1 first: python -m skyfall_core reconstruct ... --stage 1")
    epsg = args.truth_epsg
    if args.truth_origin_txt and epsg is None and (job / "scene" / "frame.json").exists():
        epsg = json.loads((job / "scene" / "frame.json").read_text())["utm_epsg"]  # the AOI's UTM zone
    truth = read_dsm(args.truth, origin_txt=args.truth_origin_txt, epsg=epsg)
    cls_path = None if args.truth_cls == "none" else (args.truth_cls or find_class_raster(args.truth))
    cls = read_class_raster(cls_path, truth) if cls_path else None  # DFC2019: no water/unlabeled, + buildings
    metrics = compare_dsm(read_dsm(pred_path), truth, max_shift_m=args.max_shift_m, truth_cls=cls)
    result = {"dsm": str(pred_path), "truth": str(args.truth), "truth_cls": str(cls_path) if cls_path else None,
              **metrics.to_dict()}
    _print(result, args.json, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))
    return 0


def cmd_eval_renders(args: argparse.Namespace) -> int:
    from skyfall_core.eval.renders import evaluate_renders

    truth = Path(args.truth)
    frame = Path(args.truth_frame) if args.truth_frame else truth.parent / "frame.json"
    report = evaluate_renders(Path(args.job), truth, frame, save_pairs=not args.no_images)

    def text(r: dict) -> str:
        lines = [f"{r['cameras']} truth cameras ({r['truth']})", "checkpoint   PSNR dB   SSIM"]
        lines += [f"{name:<12} {c['psnr_mean']:>7.2f}   {c['ssim_mean']:.4f}" for name, c in r["checkpoints"].items()]
        return "\n".join(lines)

    _print(report, args.json, text)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the Streamlit app bound to the configured address (127.0.0.1 by default)."""
    from skyfall_core.config import load_config

    cfg = load_config(args.config)
    app = Path(__file__).resolve().parent.parent / "app.py"
    argv = [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", cfg.server.address, "--server.port", str(args.port or cfg.server.port),
            "--server.maxUploadSize", str(cfg.server.max_upload_mb),
            "--browser.gatherUsageStats", "false", "--server.headless", "true"]
    if cfg.source is not None:
        os.environ["SKYFALL_CONFIG"] = str(cfg.source)
    print(f"Skyfall Studio on http://{cfg.server.address}:{args.port or cfg.server.port}", flush=True)
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


# ------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m skyfall_core",
                                description="Skyfall Studio: satellite scenes -> 3D Gaussian splats (Skyfall-GS).")
    p.add_argument("--config", help="config.toml to use (default: $SKYFALL_CONFIG or the repository's)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("config", help="print the resolved configuration")
    s.add_argument("--preset", help="only this preset")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("scenes", help="scan folders and list the satellite scenes found")
    s.add_argument("folders", nargs="*", help="folders to scan, or STAC Item/ItemCollection jsons (or folders of "
                                              "them) whose image assets to catalog (default: catalog.folders)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--no-cache", action="store_true", help="re-read every file")
    s.add_argument("--stac-out", metavar="DIR", help="also write the catalog as STAC 1.0 Items (+ items.json) in DIR")
    s.set_defaults(func=cmd_scenes)

    s = sub.add_parser("cameras", help="crop scenes to an AOI and fit bias-corrected pinhole cameras")
    s.add_argument("--scenes", required=True, help="folder of scenes")
    s.add_argument("--aoi", required=True, help="AOI GeoJSON (WGS84 polygon)")
    s.add_argument("--preset", default="preview")
    s.add_argument("--out", help="write crops, cameras.json and frame.json to this folder")
    s.add_argument("--no-bias-correction", action="store_true")
    s.add_argument("--compare-rpcs", help="folder of reference (e.g. bundle-adjusted) Sat-NeRF json RPCs")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_cameras)

    s = sub.add_parser("reconstruct", help="create a job and run it here (stage 1, or the whole pipeline)")
    s.add_argument("--scenes", required=True, help="folder of scenes")
    s.add_argument("--aoi", required=True, help="AOI GeoJSON")
    s.add_argument("--preset", default="preview")
    s.add_argument("--out", required=True, help="job folder (created; an existing job is resumed)")
    s.add_argument("--stage", choices=["1", "all"], default="all", help="stop after stage 1, or run everything")
    s.add_argument("--name", help="job name")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset setting, e.g. --set stage1.iterations=500 (repeatable)")
    s.set_defaults(func=cmd_reconstruct)

    s = sub.add_parser("run", help="run or resume a job folder (what the job runner starts)")
    s.add_argument("job_dir")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("eval", help="evaluate a job")
    ev = s.add_subparsers(dest="what", required=True)
    e = ev.add_parser("dsm", help="DSM accuracy against a truth DSM (MAE, RMSE, median, completeness)")
    e.add_argument("--job", required=True)
    e.add_argument("--truth", required=True, help="truth DSM GeoTIFF")
    e.add_argument("--truth-origin-txt", help="origin .txt for a truth TIFF without georeferencing")
    e.add_argument("--truth-epsg", type=int, help="EPSG of the truth grid when given by a .txt")
    e.add_argument("--truth-cls", help="DFC2019 class raster on the truth grid (default: X_CLS.tif beside "
                   "X_DSM.tif when present; 'none' = off): water/unlabeled left out, buildings reported")
    e.add_argument("--max-shift-m", type=float, default=2.0)
    e.add_argument("--stage", choices=["latest", "stage1"], default="latest",
                   help="latest = final/dsm.tif when the job has finished, else stage1/dsm.tif")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval_dsm)
    e = ev.add_parser("renders", help="PSNR/SSIM of every checkpoint (stage 1, each round) at truth cameras")
    e.add_argument("--job", required=True)
    e.add_argument("--truth", required=True, help="folder with cameras.json and truth PNGs (sample_aoi/truth/renders)")
    e.add_argument("--truth-frame", help="frame.json of the truth cameras (default: beside --truth)")
    e.add_argument("--no-images", action="store_true", help="do not write render|truth pairs to JOB/eval/renders")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_eval_renders)

    s = sub.add_parser("sample", help="(re)generate the bundled synthetic sample AOI")
    s.add_argument("--out", default="sample_aoi")
    s.add_argument("--seed", type=int, default=20261122)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_sample)

    s = sub.add_parser("device", help="the device jobs use here; on CUDA, build the GPU kernels ahead")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_device)

    s = sub.add_parser("bench", help="benchmarks")
    s.add_argument("what", choices=["raster", "gpu"],
                   help="raster: the CPU renderer against the PyTorch reference; gpu: the whole GPU path (CUDA only)")
    s.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run (raster)")
    s.add_argument("--work-dir", default=None, help="gpu: keep the benchmark's job folders here")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_bench)

    from skyfall_core.jobs.cli import add_jobs_parser

    add_jobs_parser(sub)

    s = sub.add_parser("serve", help="start the web app (Streamlit) on the configured address")
    s.add_argument("--port", type=int)
    s.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SkyfallError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_USER_ERROR
