"""Folium maps of the AOI, scene footprints and imagery, with every script served by the app.

Folium (and streamlit-folium, which loads each element's ``default_js``/``default_css`` in its
iframe) would fetch Leaflet, jQuery, Bootstrap and Leaflet.draw from CDNs. Every element built
here gets local URLs instead (the vendored copies under ``static/vendor/``), set per instance,
so nothing but the optional basemap tiles comes from the internet. With the basemap "None"
the map is fully offline and still shows the AOI, the footprints and the imagery overlay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from skyfall_core.ui.static import vendor_url

LEAFLET_JS = [("leaflet", vendor_url("leaflet/leaflet.js"))]
LEAFLET_CSS = [("leaflet_css", vendor_url("leaflet/leaflet.css"))]
DRAW_JS = [("leaflet_draw_js", vendor_url("leaflet-draw/leaflet.draw.js"))]
DRAW_CSS = [("leaflet_draw_css", vendor_url("leaflet-draw/leaflet.draw.css"))]

BASEMAPS: dict[str, tuple[str, str] | None] = {
    "OpenStreetMap": ("https://tile.openstreetmap.org/{z}/{x}/{y}.png",
                      "&copy; OpenStreetMap contributors"),
    "Esri World Imagery": ("https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}",
                           "Tiles &copy; Esri, Maxar, Earthstar Geographics"),
    "None (offline)": None,
}
AOI_STYLE = {"color": "#f97316", "weight": 3, "fill": True, "fillOpacity": 0.06, "dashArray": None}
_PIXEL = "data:image/gif;base64,R0lGODlhAQABAAAAACw="  # placeholder image, replaced by the overlay's URL
FOOTPRINT_COLOURS = ["#38bdf8", "#a78bfa", "#34d399", "#fbbf24", "#f472b6", "#60a5fa", "#4ade80",
                     "#facc15", "#c084fc", "#2dd4bf"]


@dataclass(frozen=True)
class Footprint:
    id: str
    geometry: dict[str, Any]  # GeoJSON geometry, WGS84
    label: str  # tooltip text
    selected: bool = False


@dataclass(frozen=True)
class Overlay:
    url: str  # image URL (static file)
    bounds: tuple[float, float, float, float]  # west, south, east, north
    name: str


def localise(element: Any) -> Any:
    """Point a folium element's scripts/styles at the vendored copies (instance attributes)."""
    import folium
    import folium.plugins

    if isinstance(element, folium.Map):
        element.default_js = list(LEAFLET_JS)
        element.default_css = list(LEAFLET_CSS)
    elif isinstance(element, folium.plugins.Draw):
        element.default_js = list(DRAW_JS)
        element.default_css = list(DRAW_CSS)
    elif hasattr(element, "default_js"):
        raise ValueError(f"{type(element).__name__} loads scripts from the internet; vendor them first")
    return element


def all_script_urls(m: Any) -> list[str]:
    """Every script/stylesheet URL the map's elements ask streamlit-folium to load."""
    urls = []

    def walk(el):
        urls.extend(u for _, u in getattr(el, "default_js", []))
        urls.extend(u for _, u in getattr(el, "default_css", []))
        for child in getattr(el, "_children", {}).values():
            walk(child)

    walk(m)
    return urls


def polygon_latlngs(geometry: dict[str, Any]) -> list[list[tuple[float, float]]]:
    """Leaflet (lat, lon) rings of a GeoJSON Polygon (or the first polygon of a MultiPolygon)."""
    coords = geometry["coordinates"]
    if geometry["type"] == "MultiPolygon":
        coords = coords[0]
    return [[(float(lat), float(lon)) for lon, lat, *_ in ring] for ring in coords]


def build_map(*, center: tuple[float, float], zoom: int, basemap: str, aoi: dict[str, Any] | None = None,
              footprints: list[Footprint] = (), overlays: list[Overlay] = (), draw: bool = False,
              fit: tuple[float, float, float, float] | None = None):
    """A folium Map: basemap (or none), imagery overlays, footprints, the AOI, and the draw tools.

    ``center`` is (lat, lon). With ``draw``, the AOI polygon sits in the draw plugin's feature
    group, so it can be edited and deleted with the toolbar, and new rectangles/polygons land
    beside it (streamlit-folium returns them all as ``all_drawings``).
    """
    import folium
    import folium.plugins

    tiles = BASEMAPS.get(basemap)
    m = localise(folium.Map(location=list(center), zoom_start=zoom, tiles=None, control_scale=True,
                            prefer_canvas=False, max_zoom=21))
    if tiles is not None:
        folium.TileLayer(tiles=tiles[0], attr=tiles[1], name=basemap, max_zoom=21, max_native_zoom=19).add_to(m)
    for ov in overlays:
        w, s, e, n = ov.bounds
        layer = folium.raster_layers.ImageOverlay(image=_PIXEL, bounds=[[s, w], [n, e]], name=ov.name,
                                                  opacity=0.95, interactive=False, cross_origin=False, zindex=1)
        layer.url = ov.url  # folium would read a relative URL as a local file: set it after construction
        layer.add_to(m)
    if footprints:
        fg = folium.FeatureGroup(name="Scene footprints", show=True)
        for i, fp in enumerate(footprints):
            colour = FOOTPRINT_COLOURS[i % len(FOOTPRINT_COLOURS)]
            folium.GeoJson(
                {"type": "Feature", "properties": {"id": fp.id}, "geometry": fp.geometry},
                style_function=lambda _f, c=colour, sel=fp.selected: {
                    "color": c, "weight": 2.5 if sel else 1.2, "fillOpacity": 0.0,
                    "dashArray": None if sel else "4 4"},
                tooltip=fp.label, name=fp.id,
            ).add_to(fg)
        fg.add_to(m)
    aoi_group = folium.FeatureGroup(name="AOI", show=True)
    if aoi is not None:
        geom = aoi.get("geometry", aoi)
        folium.Polygon(locations=polygon_latlngs(geom), tooltip="Area of interest",
                       color=AOI_STYLE["color"], weight=AOI_STYLE["weight"], fill=True,
                       fill_opacity=AOI_STYLE["fillOpacity"]).add_to(aoi_group)
    aoi_group.add_to(m)
    if draw:
        localise(folium.plugins.Draw(
            export=False, feature_group=aoi_group, position="topleft", show_geometry_on_click=False,
            draw_options={"polyline": False, "circle": False, "marker": False, "circlemarker": False,
                          "rectangle": {"shapeOptions": {"color": AOI_STYLE["color"]}},
                          "polygon": {"allowIntersection": False, "showArea": True,
                                      "shapeOptions": {"color": AOI_STYLE["color"]}}},
            edit_options={"edit": True, "remove": True},
        )).add_to(m)
    folium.LayerControl(collapsed=True, position="topright").add_to(m)
    if fit is not None:
        w, s, e, n = fit
        m.fit_bounds([[s, w], [n, e]])
    return m


def latest_polygon(drawings: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The last Polygon feature of streamlit-folium's ``all_drawings`` (None when there is none)."""
    for feat in reversed(drawings or []):
        geom = (feat or {}).get("geometry") or {}
        if geom.get("type") == "Polygon":
            return {"type": "Feature", "properties": {}, "geometry": geom}
    return None


def same_polygon(a: dict[str, Any] | None, b: dict[str, Any] | None, tol_deg: float = 1e-7) -> bool:
    """True when two GeoJSON polygon features have the same outer ring (within ``tol_deg``)."""
    import numpy as np

    if a is None or b is None:
        return a is b
    ra = np.asarray(a.get("geometry", a)["coordinates"][0], float)[:, :2]
    rb = np.asarray(b.get("geometry", b)["coordinates"][0], float)[:, :2]
    return ra.shape == rb.shape and bool(np.allclose(ra, rb, atol=tol_deg))
