"""What the Area and Scenes maps show: footprints, the view to fit, the imagery overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shapely.geometry import mapping

from skyfall_core.ui.maps import Footprint, Overlay, build_map
from skyfall_core.ui.state import ortho_png
from skyfall_core.ui.static import publish_bytes


def footprints_of(scenes: list, selected: set[str] | None = None) -> list[Footprint]:
    """Map footprints of the scenes that have one (tooltips: date, angles, GSD)."""
    out = []
    for s in scenes:
        if s.footprint is None:
            continue
        date = s.acquired.strftime("%Y-%m-%d %H:%M") if s.acquired else "date unknown"
        angles = (f"off-nadir {s.off_nadir:.1f}°, view az {s.view_azimuth:.0f}°"
                  if s.off_nadir is not None and s.view_azimuth is not None else "")
        gsd = f", GSD {s.gsd_m:.2f} m" if s.gsd_m else ""
        out.append(Footprint(s.id, mapping(s.footprint), f"{s.id} · {date} · {angles}{gsd}",
                             selected=selected is not None and str(s.path) in selected))
    return out


def view_bounds(aoi, scenes: list) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) to fit: the AOI with a margin, else the footprints' union."""
    if aoi is not None:
        w, s, e, n = aoi.buffered(max(60.0, 0.4 * aoi.area_m2 ** 0.5)).bounds
        return w, s, e, n
    polys = [sc.footprint for sc in scenes if sc.footprint is not None]
    if not polys:
        return None
    from shapely.ops import unary_union

    return tuple(unary_union(polys).bounds)


def overlay_scene(scenes: list, aoi=None):
    """The scene to drape on the map: the most nadir usable one (covering the AOI when given)."""
    from skyfall_core.geo.aoi import coverage

    ok = [s for s in scenes if s.ok and s.footprint is not None and s.off_nadir is not None]
    if aoi is not None:
        ok = [s for s in ok if coverage(aoi, s) > 0.5] or ok
    return min(ok, key=lambda s: (s.off_nadir, s.id)) if ok else None


def overlay_for(scene, aoi=None, size: int = 768) -> Overlay | None:
    """The scene resampled north-up over its footprint (at the AOI's mid height, else the RPC's
    height offset), published as a static PNG."""
    w, s, e, n = scene.footprint.bounds
    if aoi is not None and aoi.height_range is not None:
        h = 0.5 * (aoi.height_range[0] + aoi.height_range[1])
    else:
        h = float(scene.mean_height or 0.0)
    png = ortho_png(str(scene.path), Path(scene.path).stat().st_mtime_ns, (w, s, e, n), h, size)
    if png is None:
        return None
    return Overlay(publish_bytes(png, "png"), (w, s, e, n), f"Imagery: {scene.id}")


def scene_map(*, aoi, aoi_feature: dict[str, Any] | None, scenes: list, basemap: str, imagery: bool,
              draw: bool, selected: set[str] | None = None, overlay_id: str | None = None):
    """The folium map of the AOI, the footprints and (optionally) one scene's imagery."""
    bounds = view_bounds(aoi, scenes)
    center = ((bounds[1] + bounds[3]) / 2, (bounds[0] + bounds[2]) / 2) if bounds else (20.0, 0.0)
    overlays = []
    if imagery:
        by_id = {s.id: s for s in scenes}
        scene = by_id.get(overlay_id) if overlay_id else overlay_scene(scenes, aoi)
        ov = overlay_for(scene, aoi) if scene is not None and scene.ok and scene.footprint is not None else None
        if ov is not None:
            overlays.append(ov)
    return build_map(center=center, zoom=16 if bounds else 2, basemap=basemap, aoi=aoi_feature,
                     footprints=footprints_of(scenes, selected), overlays=overlays, draw=draw, fit=bounds)
