"""Rows and image matching for the Compare page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyfall_core.jobfolder import JobDir, JobMeta
from skyfall_core.ui.jobs import JobProgress


def compare_rows(infos: list[JobMeta], progs: list[JobProgress]) -> list[dict[str, Any]]:
    """One row per job: schedule, refiner, status, time spent, last losses."""
    rows = []
    for info, p in zip(infos, progs, strict=True):
        total_s = sum(float(t.get(k) or 0.0) for t in p.timings for k in ("render_s", "refine_s", "train_s"))
        last = p.losses[-1] if p.losses else {}
        rows.append({
            "job": info.id, "name": info.name, "status": p.status, "preset": info.preset,
            "elevations (°)": ", ".join(f"{e:g}" for e in info.elevations),
            "radii (m)": ", ".join(f"{r:g}" for r in info.stage2.get("radii_m") or []),
            "refiner": (info.refiner or {}).get("name") or info.stage2.get("refiner"),
            "rounds done": sum(1 for s in p.stages if s.key.startswith("round_") and s.state == "done"),
            "time (s)": round(total_s, 1) if total_s else None,
            "last loss": round(float(last["loss"]), 4) if "loss" in last else None,
            "parent": info.parent,
        })
    return rows


def matching_compare_images(folders: list[Path]) -> dict[str, list[Path | None]]:
    """{image name: [path in each job's final/compare/ or None]} for names present in at least two jobs."""
    per_job = [{p.name: p for p in JobDir(f).compare.glob("*.png")} for f in folders]
    names = sorted({n for d in per_job for n in d})
    return {n: [d.get(n) for d in per_job] for n in names if sum(n in d for d in per_job) >= 2}
