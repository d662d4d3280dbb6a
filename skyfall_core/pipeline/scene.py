"""Scene preparation: scenes + AOI -> crops, bias-corrected pinhole cameras, ENU frame.

Writes the job's ``scene/`` folder (DESIGN.md contract):
``images/<id>.png``, ``masks/<id>.png``, ``cameras.json`` (one entry a view), ``frame.json``
(ENU origin, AOI volume, height range, AOI GeoJSON), ``tie_points.npz`` (ENU xyz + colour) and
``report.json`` (the figures of the camera fit and the bias correction).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from skyfall_core import atomic
from skyfall_core.config import Config, Preset
from skyfall_core.errors import SkyfallError, TooFewViewsError

Bounds = tuple[float, float, float, float, float, float]


@dataclass
class SceneReport:
    views: list[dict[str, Any]]
    frame: dict[str, Any]
    bounds_enu: Bounds
    height_range_m: tuple[float, float]
    tie_median_px_before: float | None = None
    tie_median_px_after: float | None = None
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)
    height_source: str = ""  # where the AOI's heights came from (HeightRange.source)
    heights: dict[str, Any] | None = None  # HeightRange.to_dict(): kind, range, estimate details

    def summary(self) -> dict[str, Any]:
        """JSON-able figures; never NaN (a missing figure is None)."""
        out: dict[str, Any] = {
            "views": self.views,
            "frame": self.frame,
            "bounds_enu": [round(b, 3) for b in self.bounds_enu],
            "height_range_m": [round(h, 2) for h in self.height_range_m],
            "height_source": self.height_source,
            "heights": self.heights,
            "fit_mean_px_worst": round(max(v["fit_mean_px"] for v in self.views), 4),
            "fit_max_px_worst": round(max(v["fit_max_px"] for v in self.views), 4),
            "seconds": round(self.seconds, 2),
            "messages": self.messages,
        }
        before, after = _finite(self.tie_median_px_before), _finite(self.tie_median_px_after)
        if self.tie_median_px_before is not None or self.tie_median_px_after is not None:
            out["tie_median_px_before"] = None if before is None else round(before, 4)
            out["tie_median_px_after"] = None if after is None else round(after, 4)
        ref = [v["ref_dist_px"] for v in self.views if "ref_dist_px" in v]
        if ref:
            out["ref_dist_px_mean"] = round(float(np.mean(ref)), 4)
            out["ref_dist_px_raw_mean"] = round(float(np.mean([v["ref_dist_px_raw"] for v in self.views])), 4)
        return out


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def report_json(summary: dict[str, Any]) -> str:
    """The report as JSON text; raises ValueError on a NaN or infinity rather than writing one."""
    return json.dumps(summary, indent=2, allow_nan=False)


def aoi_bounds_enu(aoi, frame, z_range: tuple[float, float]) -> Bounds:
    """ENU box (xmin, xmax, ymin, ymax, zmin, zmax) of the AOI polygon over a z range."""
    lon, lat = np.asarray(aoi.polygon.exterior.coords).T
    enu = frame.geodetic_to_enu(lon, lat, np.full(lon.shape, frame.h0))
    return (float(enu[:, 0].min()), float(enu[:, 0].max()), float(enu[:, 1].min()),
            float(enu[:, 1].max()), float(z_range[0]), float(z_range[1]))


def _at_height(scene, h: float):
    """The scene with its footprint localised at ellipsoidal height ``h`` (unusable ones as they are)."""
    from dataclasses import replace

    from skyfall_core.geo.catalog import footprint

    if not scene.ok or scene.rpc is None:
        return scene
    return replace(scene, footprint=footprint(scene.rpc, scene.width, scene.height, h))


def _near_aoi(aoi, scenes) -> list:
    """The usable scenes whose image meets the AOI at some height of their RPC's valid range."""
    out = []
    for s in scenes:
        if not s.ok or s.rpc is None or s.footprint is None:
            continue
        r = s.rpc
        hs = np.linspace(r.alt_offset - abs(r.alt_scale), r.alt_offset + abs(r.alt_scale), 5)
        if s.footprint.intersects(aoi.polygon) or any(_at_height(s, h).footprint.intersects(aoi.polygon) for h in hs):
            out.append(s)
    return out


def _reference_rpcs(folder: Path, crops) -> list:
    """Reference (e.g. bundle-adjusted) RPCs of the crops, from Sat-NeRF jsons named <id>.json."""
    from skyfall_core.geo.aoi import rescale_rpc
    from skyfall_core.geo.rpc import read_satnerf_json

    out = []
    for c in crops:
        path = folder / f"{c.scene_id}.json"
        if not path.exists():
            raise SkyfallError(f"no reference RPC for view {c.scene_id}", path=path,
                               fix="give --compare-rpcs a folder with one <image id>.json per view")
        rpc, _ = read_satnerf_json(path)
        out.append(rescale_rpc(rpc.shifted(c.row0, c.col0), *c.scale))
    return out


def prepare_scene(scenes: Path | list[Path], aoi_source: Path | dict, cfg: Config, preset: Preset, *,
                  out_dir: Path | None = None, bias_correction: bool | None = None,
                  reference_rpcs: Path | None = None,
                  log: Callable[[str], None] | None = None) -> SceneReport:
    """Crop every usable scene to the AOI, fit pinhole cameras and correct the RPC biases.

    ``scenes`` is a folder (scanned) or a list of scene files. Raises the typed errors of the
    catalog/AOI code (AOI outside the scenes, too few views, corrupt raster, missing RPC).
    """
    from skyfall_core.cameras.bias import TiePointError, compare_with_reference, correct_bias, diagnose_tie_points
    from skyfall_core.cameras.heights import dem_path_of
    from skyfall_core.cameras.pinhole import fit_pinhole
    from skyfall_core.geo.aoi import crop_scenes, estimate_height_range, load_aoi, select_usable
    from skyfall_core.geo.catalog import read_scene, scan_scenes
    from skyfall_core.geo.imageio import assumed_band_order

    t0 = time.perf_counter()
    say = log or (lambda _m: None)
    cam = preset.cameras
    do_bias = cam.bias_correction if bias_correction is None else bias_correction

    if isinstance(scenes, (str, Path)):
        found = scan_scenes([Path(scenes)], cfg.catalog.extensions)
    else:
        found = [read_scene(p) for p in scenes]
    broken = [s for s in found if not s.ok]
    aoi = load_aoi(aoi_source, cfg.aoi)
    messages = [f"skipped {s.id}: {s.error}" for s in broken]
    for m in messages:
        say(m)

    # The terrain heights first: they decide where each image lies on the ground (a catalog
    # footprint lies at the RPC's HEIGHT_OFF, often hundreds of metres from the AOI's ground).
    near = _near_aoi(aoi, found)
    if len(near) < cfg.aoi.min_views:
        select_usable(aoi, found, cfg.aoi.min_coverage, cfg.aoi.min_views)  # raises the usual, precise error
    dem = dem_path_of(aoi, cfg)  # the AOI's dem_path property (the app's Area page), else [aoi] dem_path
    raw = estimate_height_range(aoi, near, dem_path=dem, from_images=True, crop_margin_m=cfg.aoi.margin_m,
                                log=say)
    usable = select_usable(aoi, [_at_height(s, 0.5 * (raw.low_m + raw.high_m)) for s in found],
                           cfg.aoi.min_coverage, cfg.aoi.min_views)
    # the ground: measured apart from the margins by the image estimate, else the range's low end
    h0 = raw.ground_m if raw.ground_m is not None else raw.low_m
    frame = aoi.frame(h0)
    z_range = (raw.low_m - cfg.aoi.height_margin_m - h0, raw.high_m + cfg.aoi.height_margin_m - h0)
    bounds = aoi_bounds_enu(aoi, frame, z_range)
    say(f"{len(usable)} usable views; heights {raw.low_m:.1f}..{raw.high_m:.1f} m ({raw.source})")
    for note in filter(None, (assumed_band_order(s.path) for s in usable)):  # colours from a guessed band order
        say(note)
        messages.append(note)

    crops = crop_scenes(usable, aoi, (h0 + z_range[0], h0 + z_range[1]), cfg.aoi.margin_m, cam.max_image_size)
    rpcs = [c.rpc for c in crops]
    bias = None
    if do_bias:
        say("finding tie points and correcting RPC biases")
        bias = correct_bias([c.image for c in crops], [c.valid for c in crops], rpcs, frame, bounds,
                            max_features=cam.max_features, min_tie_points=cam.min_tie_points)
        rpcs = list(bias.rpcs)
        warnings, fatal = diagnose_tie_points(bias, [c.scene_id for c in crops], cam.min_tie_points,
                                              (h0 + z_range[0], h0 + z_range[1]), raw.source)
        for w in warnings:
            say(w)
        if fatal is not None:
            raise TiePointError(fatal, path=aoi.source, fix=(
                "give the AOI's heights (min_height_m/max_height_m in its GeoJSON properties, or a DEM "
                "GeoTIFF in [aoi] dem_path), choose views of closer dates without clouds that all cover "
                "the AOI, or run without bias correction (cameras --no-bias-correction) knowingly"))
        messages += warnings
    fits = [fit_pinhole(rpc, frame, bounds, c.image.shape[1], c.image.shape[0], cam.grid_xy, cam.grid_z)
            for rpc, c in zip(rpcs, crops)]

    views = []
    for i, (c, f) in enumerate(zip(crops, fits)):
        v: dict[str, Any] = {"id": c.scene_id, "width": c.image.shape[1], "height": c.image.shape[0],
                             "fit_mean_px": round(f.err_mean_px, 4), "fit_max_px": round(f.err_max_px, 4)}
        if bias is not None:
            v.update(tie_points=int(bias.tie_counts[i]), corrected=bool(bias.corrected[i]),
                     bias_drow=round(float(bias.offsets[i, 0]), 3), bias_dcol=round(float(bias.offsets[i, 1]), 3))
            for key, arr in (("tie_px_before", bias.view_err_before_px), ("tie_px_after", bias.view_err_after_px)):
                f = None if arr is None else _finite(arr[i])
                v[key] = None if f is None else round(f, 4)
        views.append(v)
    if len(views) < cfg.aoi.min_views:
        raise TooFewViewsError(f"only {len(views)} views could be prepared", fix="add scenes of the AOI")

    if reference_rpcs is not None:
        refs = _reference_rpcs(Path(reference_rpcs), crops)
        after = compare_with_reference(rpcs, refs, frame, bounds, remove="gauge")
        before = compare_with_reference([c.rpc for c in crops], refs, frame, bounds, remove="gauge")
        for v, a, b in zip(views, after, before):
            v["ref_dist_px"], v["ref_dist_px_raw"] = round(float(a), 4), round(float(b), 4)

    report = SceneReport(
        views=views, frame=frame.to_dict(), bounds_enu=bounds,
        height_range_m=(h0 + z_range[0], h0 + z_range[1]),
        tie_median_px_before=None if bias is None else _finite(bias.err_before_px),
        tie_median_px_after=None if bias is None else _finite(bias.err_after_px),
        messages=messages, height_source=raw.source, heights=raw.to_dict())
    report.seconds = time.perf_counter() - t0
    if out_dir is not None:
        write_scene(Path(out_dir), crops, fits, bias, frame, bounds, aoi, report)
    return report


def write_scene(out: Path, crops, fits, bias, frame, bounds: Bounds, aoi, report: SceneReport) -> None:
    """Write the ``scene/`` folder; every file atomically, cameras.json last (it marks completion)."""
    import cv2

    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    entries = []
    for c, f, v in zip(crops, fits, report.views):
        img = np.clip(np.round(c.image * 255), 0, 255).astype(np.uint8)
        ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        atomic.write_bytes(out / "images" / f"{c.scene_id}.png", png.tobytes())
        ok, png = cv2.imencode(".png", c.valid.astype(np.uint8) * 255)
        atomic.write_bytes(out / "masks" / f"{c.scene_id}.png", png.tobytes())
        entries.append({**v, **c.meta(), "image": f"images/{c.scene_id}.png", "mask": f"masks/{c.scene_id}.png",
                        "camera": f.camera.to_dict()})
    if bias is not None and len(bias.points_enu):
        with atomic.atomic_path(out / "tie_points.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, xyz=np.asarray(bias.points_enu, np.float32), rgb=np.asarray(bias.colors, np.float32))
    tie_z = None
    if bias is not None and bias.height_range is not None:
        tie_z = [float(bias.height_range[0]), float(bias.height_range[1])]
    atomic.write_json(out / "frame.json", {**frame.to_dict(), "bounds_enu": list(bounds),
                                           "tie_height_range_enu": tie_z, "aoi": aoi.to_geojson()})
    atomic.write_text(out / "report.json", report_json(report.summary()) + "\n")
    atomic.write_json(out / "cameras.json", entries)


def load_scene_index(scene_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(cameras.json entries, frame.json) of a prepared scene folder."""
    cams = json.loads((scene_dir / "cameras.json").read_text())
    frame = json.loads((scene_dir / "frame.json").read_text())
    return cams, frame
