"""The Compare page's logic: job names, default selection, the transposed settings table, timings,
metrics (DSM MAE against a truth DSM, stage-1 PSNR), the same-camera renders of ``final/compare/``
and two jobs' final splats in linked 3D viewers (:func:`synced_pair`).

Every finished job renders the AOI's same-camera set into ``final/compare/`` (``top.png``,
``e85_a000.png`` … ``e30_a270.png``, described by ``final/compare/cameras.json``; see
:mod:`skyfall_core.pipeline.outputs`), so two jobs' images of one name show the same view.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyfall_core.jobfolder import JobDir, JobMeta, iter_all_events
from skyfall_core.ui.jobs import JobProgress

COMPASS = {0: "north", 90: "east", 180: "south", 270: "west"}
_NAME_RE = re.compile(r"^e(\d+(?:\.\d+)?)_a(\d+(?:\.\d+)?)$")


# ----------------------------------------------------------------------------- names and selection
def display_names(infos: list[JobMeta]) -> dict[str, str]:
    """{job id: the job's name}, made unique (a repeated name gets its job id appended)."""
    counts: dict[str, int] = {}
    for i in infos:
        counts[i.name] = counts.get(i.name, 0) + 1
    return {i.id: (i.name if counts[i.name] == 1 else f"{i.name} ({i.id})") for i in infos}


def default_selection(ids: list[str], statuses: dict[str, str], limit: int = 4) -> list[str]:
    """The finished ("done") jobs, newest first (``ids`` order), at most ``limit``; cancelled,
    failed and running jobs are not selected by default."""
    return [i for i in ids if statuses.get(i) == "done"][:limit]


# ----------------------------------------------------------------------------- same cameras
@dataclass(frozen=True)
class CompareCamera:
    name: str  # "top", "e85_a000", ...
    file: str  # "top.png"
    elevation: float  # degrees (90 = top-down)
    azimuth: float  # degrees clockwise from north, of the camera's position around the AOI
    paths: tuple[Path | None, ...]  # the render of each job (None where that job lacks it)

    @property
    def label(self) -> str:
        if self.name == "top" or self.elevation >= 90:
            return "top-down"
        side = COMPASS.get(int(round(self.azimuth)) % 360)
        where = f"from the {side}" if side else f"azimuth {self.azimuth:g}°"
        return f"{self.elevation:g}° elevation, {where} ({self.azimuth:g}°)"

    @property
    def group(self) -> str:
        return "Top-down" if self.name == "top" or self.elevation >= 90 else f"{self.elevation:g}° elevation"


def _views_of(folder: Path) -> list[dict[str, Any]]:
    """The views of a job's final/compare/cameras.json ([] when absent or unreadable)."""
    try:
        data = json.loads((JobDir(folder).compare / "cameras.json").read_text())
    except (OSError, json.JSONDecodeError):
        return []
    views = data.get("views") if isinstance(data, dict) else None
    return [v for v in views or [] if isinstance(v, dict) and v.get("file")]


def _guess_view(file: str) -> dict[str, Any]:
    stem = Path(file).stem
    if stem == "top":
        return {"name": "top", "file": file, "elevation_deg": 90.0, "azimuth_deg": 0.0}
    m = _NAME_RE.match(stem)
    if m:
        return {"name": stem, "file": file, "elevation_deg": float(m[1]), "azimuth_deg": float(m[2])}
    return {"name": stem, "file": file, "elevation_deg": 0.0, "azimuth_deg": 0.0}


def compare_cameras(folders: list[Path]) -> list[CompareCamera]:
    """The same-camera renders the jobs share: one :class:`CompareCamera` per image present in at
    least two jobs, top-down first, then by elevation (high to low) and azimuth."""
    per_job = [{p.name: p for p in JobDir(f).compare.glob("*.png")} for f in folders]
    known: dict[str, dict[str, Any]] = {}
    for f in folders:
        for v in _views_of(f):
            known.setdefault(str(v["file"]), v)
    files = {n for d in per_job for n in d if sum(n in e for e in per_job) >= 2}
    out = []
    for file in files:
        v = known.get(file) or _guess_view(file)
        out.append(CompareCamera(str(v.get("name") or Path(file).stem), file, float(v.get("elevation_deg") or 0.0),
                                 float(v.get("azimuth_deg") or 0.0), tuple(d.get(file) for d in per_job)))
    return sorted(out, key=lambda c: (-c.elevation, c.azimuth, c.name))


def group_cameras(cams: list[CompareCamera]) -> dict[str, list[CompareCamera]]:
    """{group label ("Top-down", "85° elevation", ...): cameras}, in :func:`compare_cameras` order."""
    out: dict[str, list[CompareCamera]] = {}
    for c in cams:
        out.setdefault(c.group, []).append(c)
    return out


def matching_compare_images(folders: list[Path]) -> dict[str, list[Path | None]]:
    """{image name: [path in each job's final/compare/ or None]} for names present in at least two jobs."""
    return {c.file: list(c.paths) for c in compare_cameras(folders)}


# ----------------------------------------------------------------------------- synced 3D
SAME_ORIGIN_M = 1.0  # two ENU origins closer than this (horizontally) are one AOI's frame


@dataclass(frozen=True)
class PairFrame:
    """How a right job's local ENU relates to a left job's, for linking their viewers' cameras."""

    offset_m: tuple[float, float, float] | None  # right ENU minus left ENU of any point; None: not linked
    reason: str = ""  # why not (offset_m None)


def pair_frame(left: dict[str, float] | None, right: dict[str, float] | None, labels: tuple[str, str] = ("left",
               "right"), same_origin_m: float = SAME_ORIGIN_M) -> PairFrame:
    """Whether two jobs' splats share one local ENU frame, from their georef.json origins {lat, lon, h}
    (:func:`skyfall_core.ui.share.job_georef`).

    Every job's frame has its origin at its AOI's centre (east, north, up axes there), on the ground
    height its own images gave (``h``). Two jobs of one AOI have the same lat/lon origin and so the
    same axes; their ``h`` may differ (different scenes), which is a pure vertical shift: linked,
    with ``offset_m = (0, 0, h_left - h_right)``. Origins farther apart than ``same_origin_m``
    (different AOIs) are not linked: the same camera would look at different places (and the two
    frames' axes turn apart with the distance). Without a georef the frame is unknown: not linked.
    """
    from skyfall_core.geo.frames import LocalFrame

    missing = [lab for lab, g in zip(labels, (left, right), strict=True) if g is None]
    if missing:
        return PairFrame(None, f"No final/georef.json for {' and '.join(missing)}: without it the local frame is "
                               "unknown, so the two cameras are not linked.")
    frame_r = LocalFrame(right["lon"], right["lat"], right.get("h", 0.0))
    offset = frame_r.geodetic_to_enu(left["lon"], left["lat"], left.get("h", 0.0))  # [3] left's origin, right ENU
    apart = math.hypot(float(offset[0]), float(offset[1]))
    if apart > same_origin_m:
        return PairFrame(None, f"{labels[0]} and {labels[1]} are different AOIs: their local frames' origins (the "
                               f"AOI centres) are {apart:,.0f} m apart, so one camera would show different places. "
                               "The cameras are not linked; pick two jobs of one AOI (e.g. a job and its clones).")
    return PairFrame((0.0, 0.0, round(float(offset[2]), 3) + 0.0))  # + 0.0: no -0.0


@dataclass(frozen=True)
class SyncedPair:
    """The Compare page's linked 3D viewers of two jobs: the iframe page, or why there is none."""

    html: str | None
    message: str  # html None: why not; else a note (the height shift), may be ""


def synced_pair(left: JobMeta, right: JobMeta, labels: tuple[str, str], aoi_settings, *,
                height: int = 520) -> SyncedPair:
    """Both jobs' final splats (:func:`skyfall_core.ui.share.job_splat`) in two linked viewers
    (:func:`skyfall_core.ui.share.pair_viewer_html`), published to the app's static files, the
    initial camera framing the left job's AOI. Raises a SkyfallError when a splat cannot be
    published (too large to serve)."""
    from skyfall_core.ui.components import job_camera
    from skyfall_core.ui.share import PairSide, ShareCamera, job_georef, job_splat, pair_viewer_html, round_cameras
    from skyfall_core.ui.static import publish_job_file

    if left.id == right.id:
        return SyncedPair(None, "Pick two different jobs as Left and Right to see them in 3D.")
    splats = [job_splat(i.dir) for i in (left, right)]
    missing = [lab for lab, sp in zip(labels, splats, strict=True) if sp is None]
    if missing:
        return SyncedPair(None, f"No final splat for {' and '.join(missing)} (not finished): nothing to show in 3D.")
    georefs = [job_georef(i.dir) for i in (left, right)]
    frame = pair_frame(georefs[0], georefs[1], labels)
    if frame.offset_m is None:
        return SyncedPair(None, frame.reason)
    sides = [PairSide(publish_job_file(i.id, sp[0]), sp[1], lab, g, round_cameras(i.dir))
             for i, sp, lab, g in zip((left, right), splats, labels, georefs, strict=True)]
    position, look_at = job_camera(left.aoi, aoi_settings)
    page = pair_viewer_html(sides[0], sides[1], camera=ShareCamera(tuple(position), tuple(look_at)),
                            offset_m=frame.offset_m, height=height)
    dz = frame.offset_m[2]
    note = (f"The two jobs' ground heights (their frames' origins) differ by {abs(dz):.2f} m; the linked cameras "
            "allow for it, so both show the same place." if abs(dz) >= 0.01 else "")
    return SyncedPair(page, note)


# ----------------------------------------------------------------------------- metrics
def stage1_psnr(folder: Path) -> float | None:
    """Stage 1's mean PSNR against the satellite views (dB), from its "stage done" event."""
    value = None
    try:
        for ev in iter_all_events(JobDir(folder).events):
            if ev.get("kind") == "stage" and ev.get("stage") == "stage1" and ev.get("state") == "done":
                v = (ev.get("metrics") or {}).get("psnr_mean")
                value = float(v) if isinstance(v, (int, float)) else value
    except OSError:
        return None
    return value


def find_truth_dsm(scene_paths: list[str] | tuple[str, ...]) -> Path | None:
    """A truth DSM next to the job's scenes (the sample's ``truth/dsm.tif``, a DFC2019 ``*_DSM.tif``),
    as the Map page finds it."""
    from skyfall_core.ui.mapview import find_truth

    return find_truth(list(scene_paths))


def dsm_metrics(pred: Path, truth: Path) -> dict[str, float]:
    """{"mae_m", "rmse_m", "completeness"} of a job's DSM against a truth DSM (after the registration
    search of :func:`skyfall_core.eval.dsm.compare_dsm`). Raises a SkyfallError for unreadable rasters."""
    from skyfall_core.eval.dsm import compare_dsm
    from skyfall_core.geo.dsm import read_dsm

    m = compare_dsm(read_dsm(pred), read_dsm(truth))
    return {"mae_m": m.mae_m, "rmse_m": m.rmse_m, "completeness": m.completeness}


# ----------------------------------------------------------------------------- tables
def _total_seconds(p: JobProgress) -> float | None:
    total = 0.0
    for t in p.timings:
        if isinstance(t.get("seconds"), (int, float)):
            total += float(t["seconds"])
        else:
            total += sum(float(t[k]) for k in ("render_s", "refine_s", "train_s") if isinstance(t.get(k), (int, float)))
    return total or None


def _fmt(v: Any) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def compare_rows(infos: list[JobMeta], progs: list[JobProgress],
                 metrics: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per job: schedule, refiner, status, time spent, last loss, metrics (``metrics[i]``:
    extra columns for job i, e.g. DSM MAE)."""
    rows = []
    for n, (info, p) in enumerate(zip(infos, progs, strict=True)):
        total_s = _total_seconds(p)
        last = p.losses[-1] if p.losses else {}
        rows.append({
            "job": info.id, "name": info.name, "status": p.status, "preset": info.preset,
            "elevations (°)": ", ".join(f"{e:g}" for e in info.elevations),
            "radii (m)": ", ".join(f"{r:g}" for r in info.stage2.get("radii_m") or []),
            "refiner": (info.refiner or {}).get("name") or info.stage2.get("refiner"),
            "rounds done": sum(1 for s in p.stages if s.key.startswith("round_") and s.state == "done"),
            "time (s)": round(total_s, 1) if total_s else None,
            "last loss": round(float(last["loss"]), 4) if "loss" in last else None,
            **((metrics or [{}] * len(infos))[n]),
            "parent": info.parent,
        })
    return rows


def settings_table(rows: list[dict[str, Any]], names: list[str]):
    """The rows of :func:`compare_rows` transposed: one row per setting, one column per job (named),
    every cell text (so a column of mixed values stays one type)."""
    import pandas as pd

    keys = list(dict.fromkeys(k for r in rows for k in r if k != "name"))
    data = {name: [_fmt(r.get(k)) for k in keys] for name, r in zip(names, rows, strict=True)}
    return pd.DataFrame(data, index=pd.Index(keys, name="setting"))


def timing_rows(names: list[str], progs: list[JobProgress]) -> list[dict[str, Any]]:
    """{job (name), stage, part, seconds} for the timing chart: scene and stage 1 (one part, their
    total) and each round's render / refine / train."""
    rows = []
    for name, p in zip(names, progs, strict=True):
        for t in p.timings:
            stage = t.get("stage")
            if stage == "round" and t.get("round") is not None:
                label = f"round {int(t['round']) + 1}"
            else:
                label = {"stage1": "stage 1", "scene": "scene & cameras", "final": "export"}.get(str(stage), str(stage))
            parts = {k[:-2]: float(t[k]) for k in ("render_s", "refine_s", "train_s")
                     if isinstance(t.get(k), (int, float))}
            if not parts and isinstance(t.get("seconds"), (int, float)):
                parts = {"total": float(t["seconds"])}
            rows += [{"job": name, "stage": label, "part": part, "seconds": round(s, 2)} for part, s in parts.items()]
    return rows
