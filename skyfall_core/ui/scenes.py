"""Scene rows and charts for the Scenes page (coverage of the AOI, view geometry)."""

from __future__ import annotations

import math

from skyfall_core.ui.selection import ViewCandidate


def candidates(scenes: list, aoi) -> dict[str, ViewCandidate]:
    """{scene path: ViewCandidate} with the AOI coverage (0 without an AOI).

    The candidate's angle is the scene's **view zenith** (at the ground; what the diversity of
    view directions depends on), not the off-nadir angle at the satellite."""
    from skyfall_core.geo.aoi import coverage

    out = {}
    for s in scenes:
        cov = coverage(aoi, s) if aoi is not None and s.ok else 0.0
        out[str(s.path)] = ViewCandidate(s.id, s.view_azimuth, _zenith(s), cov, ok=s.ok)
    return out


def _zenith(s) -> float | None:
    return s.view_zenith if getattr(s, "view_zenith", None) is not None else s.off_nadir


def scene_table(scenes: list, aoi, chosen: set[str]):
    """A DataFrame of the catalog with a 'use' column (chosen scenes) and the AOI coverage."""
    import pandas as pd

    cands = candidates(scenes, aoi)
    rows = []
    for s in scenes:
        rows.append({
            "use": str(s.path) in chosen,
            "id": s.id,
            "date": s.acquired.strftime("%Y-%m-%d") if s.acquired else None,
            "time": s.acquired.strftime("%H:%M:%S") if s.acquired else None,
            "sun_el": s.sun_elevation, "sun_az": s.sun_azimuth,
            "view_zenith": s.view_zenith, "off_nadir": s.off_nadir, "view_az": s.view_azimuth, "gsd_m": s.gsd_m,
            "coverage": cands[str(s.path)].coverage if aoi is not None else None,
            "sensor": s.sensor, "error": s.error, "path": str(s.path),
        })
    cols = ["use", "id", "date", "time", "sun_el", "sun_az", "view_zenith", "off_nadir", "view_az", "gsd_m", "coverage",
            "sensor", "error", "path"]
    return pd.DataFrame(rows, columns=cols)


def skyplot_points(cands: list[ViewCandidate]) -> list[dict]:
    """Sky-plot coordinates: x = zenith·sin(az) (east), y = zenith·cos(az) (north), degrees (the
    candidates' angle is the view zenith at the ground)."""
    pts = []
    for c in cands:
        if c.view_azimuth is None or c.off_nadir is None:
            continue
        a = math.radians(c.view_azimuth)
        pts.append({"id": c.id, "x": c.off_nadir * math.sin(a), "y": c.off_nadir * math.cos(a),
                    "view_zenith": round(c.off_nadir, 1), "view_az": round(c.view_azimuth), "coverage": c.coverage})
    return pts


def short_labels(ids: list[str]) -> list[str]:
    """Short, unique sky-plot labels: the first "_" part of the ids that tells them all apart (the
    sample's "01", JAX's "001"), else 1, 2, 3, ... (the tooltip keeps the whole id)."""
    parts = [i.split("_") for i in ids]
    for k in range(max((len(p) for p in parts), default=0)):
        labels = [p[k] if k < len(p) else "" for p in parts]
        if len(set(labels)) == len(labels) and all(0 < len(lab) <= 6 for lab in labels):
            return labels
    return [str(k + 1) for k in range(len(ids))]


def label_positions(xy: list[tuple[float, float]], box: tuple[float, float] = (5.0, 3.2),
                    step: float = 3.5) -> list[tuple[float, float]]:
    """Where to write each point's label (plot degrees) so that no two labels overlap and none covers
    a point: pushed outward along the point's azimuth (then sideways) until its ``box`` (half-width
    and half-height of a label) is free. Greedy, in input order."""
    placed: list[tuple[float, float]] = []
    points = list(xy)

    def free(lx: float, ly: float) -> bool:
        if any(abs(lx - px) < box[0] and abs(ly - py) < box[1] for px, py in placed):
            return False
        return not any(abs(lx - px) < box[0] * 0.8 and abs(ly - py) < box[1] for px, py in points)

    for x, y in xy:
        r = math.hypot(x, y)
        ux, uy = (x / r, y / r) if r > 1e-6 else (0.0, 1.0)
        choice = None
        for k in range(1, 12):
            for side in (0.0, 1.0, -1.0):
                lx = x + ux * step * k - uy * side * step
                ly = y + uy * step * k + ux * side * step
                if free(lx, ly):
                    choice = (lx, ly)
                    break
            if choice:
                break
        placed.append(choice or (x + ux * step, y + uy * step))
    return placed


def skyplot(cands: list[ViewCandidate], chosen_ids: set[str]):
    """An Altair sky plot of the view directions with 15°/30°/45° rings; chosen views highlighted."""
    import altair as alt
    import pandas as pd

    pts = pd.DataFrame(skyplot_points(cands), columns=["id", "x", "y", "view_zenith", "view_az", "coverage"])
    pts["chosen"] = pts["id"].isin(chosen_ids).map({True: "chosen", False: "available"})
    ring_rows = []
    for r in (15, 30, 45):
        for t in range(0, 361, 5):
            a = math.radians(t)
            ring_rows.append({"ring": r, "t": t, "x": r * math.sin(a), "y": r * math.cos(a)})
    scale = alt.Scale(domain=[-50, 50])
    rings = alt.Chart(pd.DataFrame(ring_rows)).mark_line(color="#475569", strokeDash=[3, 3]).encode(
        x=alt.X("x:Q", scale=scale, title="east ← view zenith (°) → "), y=alt.Y("y:Q", scale=scale, title="north"),
        detail="ring:N", order="t:Q")
    dots = alt.Chart(pts).mark_circle(size=140, opacity=0.9).encode(
        x=alt.X("x:Q", scale=scale), y=alt.Y("y:Q", scale=scale),
        color=alt.Color("chosen:N", scale=alt.Scale(domain=["chosen", "available"], range=["#f97316", "#64748b"]),
                        legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["id", "view_zenith", "view_az", alt.Tooltip("coverage:Q", format=".0%")])
    pts["label"] = short_labels(list(pts["id"]))
    pos = label_positions(list(zip(pts["x"], pts["y"], strict=True)))
    pts["lx"] = [p[0] for p in pos]
    pts["ly"] = [p[1] for p in pos]
    labels = alt.Chart(pts).mark_text(fontSize=10, color="#cbd5e1").encode(
        x=alt.X("lx:Q", scale=scale), y=alt.Y("ly:Q", scale=scale), text="label:N", tooltip=["id"])
    return (rings + dots + labels).properties(height=400)
