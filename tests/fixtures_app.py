"""Fabricated job folders that follow the job-folder contract, for the page tests (test-only: not in the package).

Nothing here runs the pipeline: the images are synthetic, the splat is a small antimatter15
``.splat`` (32 bytes a splat: position 3xf32, scale 3xf32, RGBA u8, quaternion u8 w,x,y,z
mapped by q*128+128) of a ground plane with a few blocks, in local ENU metres (z up).
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from skyfall_core.atomic import write_json

DEFAULT_AOI = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
    [-95.93925, 41.25755], [-95.93675, 41.25755], [-95.93675, 41.25945], [-95.93925, 41.25945],
    [-95.93925, 41.25755]]]}}
SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def synthetic_splat(n: int = 6000, half_size_m: float = 100.0, seed: int = 0) -> bytes:
    """An antimatter15 .splat of a ground plane with blocks, coloured by height (bytes, 32 a splat)."""
    rng = np.random.default_rng(seed)
    pos = np.zeros((n, 3), np.float32)
    pos[:, :2] = rng.uniform(-half_size_m, half_size_m, (n, 2))
    blocks = [(-40, -30, 25, 18), (30, 20, 30, 35), (0, 50, 20, 12), (-50, 45, 18, 24)]  # cx, cy, half, height
    for cx, cy, half, height in blocks:
        inside = (np.abs(pos[:, 0] - cx) < half) & (np.abs(pos[:, 1] - cy) < half)
        pos[inside, 2] = height
    rec = np.zeros(n, SPLAT_DTYPE)
    rec["position"] = pos
    rec["scale"] = half_size_m / math.sqrt(n) * 0.9
    z = pos[:, 2] / 35.0
    rec["rgba"][:, 0] = (90 + 150 * z).clip(0, 255)
    rec["rgba"][:, 1] = (140 + 60 * (1 - z)).clip(0, 255)
    rec["rgba"][:, 2] = (80 + 100 * z).clip(0, 255)
    rec["rgba"][:, 3] = 240
    rec["rot"] = (255, 128, 128, 128)  # identity quaternion
    return rec.tobytes()


def _png(path: Path, seed: int, size: int = 96, after: bool = False) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    img = np.stack([(x * 255 // size), (y * 255 // size), np.full_like(x, 120)], -1).astype(np.float32)
    img += rng.normal(0, 40 if not after else 6, img.shape)
    if after:
        img = cv2.GaussianBlur(img, (5, 5), 1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))


def _camera(elev_deg: float, az_deg: float, radius: float, size: int) -> dict[str, Any]:
    e, a = math.radians(elev_deg), math.radians(az_deg)
    pos = radius * np.array([math.cos(e) * math.sin(a), math.cos(e) * math.cos(a), math.sin(e)])
    fwd = -pos / np.linalg.norm(pos)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, pos
    f = size / (2 * math.tan(math.radians(30)))
    return {"w2c": np.linalg.inv(c2w).tolist(), "K": [[f, 0, size / 2], [0, f, size / 2], [0, 0, 1]],
            "width": size, "height": size, "elevation": elev_deg, "azimuth": az_deg, "radius": radius}


def fabricate_job(workspace: Path, job_id: str, *, config: dict[str, Any], preset: str = "preview",
                  elevations: list[float] = (85.0, 60.0), status: str = "done", rounds_done: int | None = None,
                  views: int = 4, aoi: dict[str, Any] | None = None, name: str | None = None,
                  refiner: dict[str, Any] | None = None, parent: str | None = None, with_final: bool | None = None
                  ) -> Path:
    """Write ``<workspace>/jobs/<job_id>/`` as the pipeline would have (see the contract).

    ``config`` is a resolved config dict (``Config.resolved(preset)``); the elevation schedule is
    set to ``elevations``. ``status`` "running" leaves the last round unfinished and no final/.
    """
    folder = Path(workspace) / "jobs" / job_id
    folder.mkdir(parents=True, exist_ok=False)
    cfg = json.loads(json.dumps(config))
    st2 = cfg["presets"][preset]["stage2"]
    st2["elevations_deg"] = list(elevations)
    st2["radii_m"] = [250.0] * len(elevations)
    n_rounds = len(elevations)
    done_rounds = n_rounds if rounds_done is None and status == "done" else (rounds_done or 0)
    refiner = refiner or {"name": "classical", "is_diffusion": False,
                          "description": "hole filling + colour matching + unsharp mask", "model": None}
    write_json(folder / "job.json", {
        "id": job_id, "name": name or job_id, "created": datetime.now(timezone.utc).isoformat(),
        "aoi": aoi or DEFAULT_AOI, "scenes": [], "preset": preset, "config": cfg,
        "overrides": {"stage2.elevations_deg": list(elevations)}, "parent": parent,
        "versions": {"skyfall_core": "test"}, "refiner": refiner, "warnings": []})
    t = time.time() - 100
    ev: list[dict[str, Any]] = []

    def emit(kind: str, **kw: Any) -> None:
        nonlocal t
        t += 0.5
        ev.append({"t": round(t, 3), "kind": kind, **kw})

    emit("status", status="running")
    emit("stage", stage="scene", state="start")
    emit("stage", stage="scene", state="done")
    emit("stage", stage="stage1", state="start")
    for i in (10, 20, 30):
        emit("progress", stage="stage1", step=i, total=30, losses={"loss": 0.3 / i, "l1": 0.2 / i}, seconds=i * 0.1)
    emit("stage", stage="stage1", state="done")
    emit("timing", stage="stage1", train_s=3.0)
    emit("warning", text="depth prior off: no depth model weights on this machine")
    for k, e in enumerate(elevations[: done_rounds + (1 if status == "running" else 0)]):
        emit("stage", stage="round", state="start", round=k, elevation=e)
        finished = k < done_rounds
        for i in ((5, 10) if finished else (5,)):
            emit("progress", stage="round", round=k, elevation=e, step=i, total=10,
                 losses={"loss": 0.05 / (i + k)}, seconds=i * 0.2)
        d = folder / "rounds" / f"{k}_e{e:g}"
        cams = [_camera(e, 360.0 * v / views, 250.0, 96) for v in range(views)]
        write_json(d / "cameras.json", {"cameras": cams})
        for v in range(views):
            _png(d / "before" / f"{v:03d}.png", seed=100 * k + v)
            _png(d / "after" / f"{v:03d}.png", seed=100 * k + v, after=True)
        if finished:
            emit("timing", stage="round", round=k, render_s=0.4, refine_s=0.2 + 0.1 * k, train_s=2.0)
            emit("stage", stage="round", state="done", round=k, elevation=e)
    write_json(folder / "state.json", {"finished": ["scene", "stage1"] + [f"round_{k}" for k in range(done_rounds)],
                                       "rounds_total": n_rounds})
    if with_final if with_final is not None else status == "done":
        emit("stage", stage="final", state="start")
        final = folder / "final"
        final.mkdir(parents=True, exist_ok=True)
        (final / "scene.splat").write_bytes(synthetic_splat())
        write_json(final / "georef.json", {"lat": 41.2585, "lon": -95.938, "h": 300.0, "utm_epsg": 32615,
                                           "frame": "local ENU metres, z up"})
        _png(final / "preview.png", seed=7, size=128, after=True)
        _write_dsm(final / "dsm.tif")
        emit("stage", stage="final", state="done")
    if status != "running":
        emit("status", status=status, **({"text": "stopped by test"} if status != "done" else {}))
    with open(folder / "events.jsonl", "w") as f:
        f.writelines(json.dumps(e) + "\n" for e in ev)
    (folder / "log.txt").write_text("\n".join(f"[{e['kind']}] {e.get('text', e.get('stage', ''))}" for e in ev) + "\n")
    return folder


def _write_dsm(path: Path) -> None:
    import rasterio
    from affine import Affine

    z = (300 + np.random.default_rng(0).normal(0, 5, (32, 32))).astype(np.float32)
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype="float32",
                       crs="EPSG:32615", transform=Affine(5.0, 0.0, 257000.0, 0.0, -5.0, 4571000.0),
                       nodata=-9999) as ds:
        ds.write(z, 1)
