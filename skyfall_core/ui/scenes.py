"""Scene rows and charts for the Scenes page (coverage of the AOI, view geometry)."""

from __future__ import annotations

import math

from skyfall_core.ui.selection import ViewCandidate


def candidates(scenes: list, aoi) -> dict[str, ViewCandidate]:
    """{scene path: ViewCandidate} with the AOI coverage (0 without an AOI)."""
    from skyfall_core.geo.aoi import coverage

    out = {}
    for s in scenes:
        cov = coverage(aoi, s) if aoi is not None and s.ok else 0.0
        out[str(s.path)] = ViewCandidate(s.id, s.view_azimuth, s.off_nadir, cov, ok=s.ok)
    return out


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
            "off_nadir": s.off_nadir, "view_az": s.view_azimuth, "gsd_m": s.gsd_m,
            "coverage": cands[str(s.path)].coverage if aoi is not None else None,
            "sensor": s.sensor, "error": s.error, "path": str(s.path),
        })
    cols = ["use", "id", "date", "time", "sun_el", "sun_az", "off_nadir", "view_az", "gsd_m", "coverage",
            "sensor", "error", "path"]
    return pd.DataFrame(rows, columns=cols)


def skyplot_points(cands: list[ViewCandidate]) -> list[dict]:
    """Sky-plot coordinates: x = off-nadir·sin(az) (east), y = off-nadir·cos(az) (north), degrees."""
    pts = []
    for c in cands:
        if c.view_azimuth is None or c.off_nadir is None:
            continue
        a = math.radians(c.view_azimuth)
        pts.append({"id": c.id, "x": c.off_nadir * math.sin(a), "y": c.off_nadir * math.cos(a),
                    "off_nadir": round(c.off_nadir, 1), "view_az": round(c.view_azimuth), "coverage": c.coverage})
    return pts


def skyplot(cands: list[ViewCandidate], chosen_ids: set[str]):
    """An Altair sky plot of the view directions with 15°/30°/45° rings; chosen views highlighted."""
    import altair as alt
    import pandas as pd

    pts = pd.DataFrame(skyplot_points(cands), columns=["id", "x", "y", "off_nadir", "view_az", "coverage"])
    pts["chosen"] = pts["id"].isin(chosen_ids).map({True: "chosen", False: "available"})
    ring_rows = []
    for r in (15, 30, 45):
        for t in range(0, 361, 5):
            a = math.radians(t)
            ring_rows.append({"ring": r, "t": t, "x": r * math.sin(a), "y": r * math.cos(a)})
    scale = alt.Scale(domain=[-50, 50])
    rings = alt.Chart(pd.DataFrame(ring_rows)).mark_line(color="#475569", strokeDash=[3, 3]).encode(
        x=alt.X("x:Q", scale=scale, title="east ← off-nadir (°) → "), y=alt.Y("y:Q", scale=scale, title="north"),
        detail="ring:N", order="t:Q")
    dots = alt.Chart(pts).mark_circle(size=140, opacity=0.9).encode(
        x=alt.X("x:Q", scale=scale), y=alt.Y("y:Q", scale=scale),
        color=alt.Color("chosen:N", scale=alt.Scale(domain=["chosen", "available"], range=["#f97316", "#64748b"]),
                        legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["id", "off_nadir", "view_az", alt.Tooltip("coverage:Q", format=".0%")])
    labels = alt.Chart(pts).mark_text(dy=-11, fontSize=10, color="#cbd5e1").encode(
        x="x:Q", y="y:Q", text="id:N")
    return (rings + dots + labels).properties(height=400)
