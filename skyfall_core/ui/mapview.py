"""The Map page's data and deck: a finished job's outputs on a basemap with pydeck.

What it shows, all in true geographic position (WGS84 lon/lat, from the files' own CRS):
- the DSM hillshade (``final/dsm_hillshade.png``, RGBA) as a ``BitmapLayer`` pinned at the four
  corners of the DSM grid (``dsm.cog.tif``, UTM) taken to lon/lat with pyproj (a UTM rectangle is
  not a lon/lat rectangle: the four corners keep it exact to the image's own resolution);
- the error map (prediction − truth, metres) when a truth DSM is known: the prediction resampled
  bilinearly onto the truth grid (:func:`skyfall_core.eval.dsm.resample_to`), no registration
  shift (the Compare/eval tools do that), coloured blue (too low) → white → red (too high) on a
  symmetric scale clipped at the 95th percentile of |error|;
- the AOI polygon (job.json) and the footprints of the job's scenes (their RPCs);
- the splat centres (``splat_points.laz``, UTM + RGB; or ``scene.ply`` through ``georef.json`` for
  older jobs) as a coloured ``PointCloudLayer``, subsampled to at most 100k points;
- a pickable grid of DSM samples (one every few cells) so that hover/click reads the height;
- a scale bar and a north arrow drawn *in map coordinates* (a path of exactly N metres, an arrow
  along the meridian), so they stay right at every zoom and rotation: pydeck has neither;
- on request, the DSM as 3D terrain (deck.gl ``TerrainLayer``, see :class:`Terrain`): the DSM
  reprojected to a lon/lat grid and encoded as a Mapbox terrain-RGB PNG, the hillshade on the same
  grid as its texture, heights exaggerated by a user factor above the DSM's lowest cell.

Heights are metres above the WGS84 ellipsoid (as the DSM and LAZ store them). Basemap tiles
(CARTO) need the internet; without it the deck is drawn with ``map_provider=None`` (no basemap) and
every overlay stays. Streamlit ships deck.gl in its own frontend (Streamlit 1.67: deck.gl 9.4 with
loaders.gl 4.4.3), so no script comes from a CDN, with one exception that we close: the terrain
mesh is built in a web worker that loaders.gl would fetch from unpkg.com; the layer is pointed at
the copy vendored under ``static/vendor/loaders-terrain/`` (:data:`TERRAIN_WORKER`) instead.
"""

from __future__ import annotations

import base64
import json
import math
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skyfall_core.jobfolder import FINAL_FILES, JobDir

MAX_POINTS = 100_000
TERRAIN_SIZE = 512  # cells per side of the terrain image at most (square, a power of two: meshed by Martini)
TERRAIN_WORKER = "loaders-terrain/terrain-worker.js"  # under static/vendor/: the loaders.gl Streamlit's deck.gl uses
TERRAIN_RGB = {"rScaler": 6553.6, "gScaler": 25.6, "bScaler": 0.1, "offset": -10000.0}  # Mapbox terrain-RGB, metres
TERRAIN_PITCH = 50.0  # degrees: the view's tilt when the terrain is on
DSM_SAMPLES = 64  # pickable DSM samples per side (at most)
TILE_HOST = ("basemaps.cartocdn.com", 443)
BASEMAPS = {"CARTO light (internet)": "light", "CARTO dark (internet)": "dark", "None (offline)": None}


@dataclass(frozen=True)
class Bitmap:
    """An RGBA PNG pinned at four lon/lat corners: [[lon, lat]] bottom-left, top-left, top-right, bottom-right."""

    png: bytes
    corners: list[list[float]]

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        lons, lats = [c[0] for c in self.corners], [c[1] for c in self.corners]
        return min(lons), min(lats), max(lons), max(lats)

    def data_url(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class ErrorMap:
    bitmap: Bitmap
    limit_m: float  # colour scale: -limit (blue) .. +limit (red)
    mean_m: float
    median_m: float
    mae_m: float
    rmse_m: float
    valid: int
    truth: str


@dataclass(frozen=True)
class Terrain:
    """The DSM as deck.gl terrain: a terrain-RGB PNG and an RGBA texture on one lon/lat grid.

    The grid is ``size`` × ``size`` cells covering ``bounds`` (W, S, E, N in degrees: the outer
    edges of the grid, the box of the DSM's footprint); cell (row, col) holds the DSM reprojected
    bilinearly to its centre. ``png`` stores metres above the WGS84 ellipsoid as Mapbox terrain-RGB
    (:func:`encode_terrain_rgb`, 0.1 m steps); cells without data hold ``fill_m`` (the lowest
    height) and are transparent in ``texture`` (the hillshade resampled onto the mesh, see
    :meth:`layer_bounds`). ``heights`` keeps the reprojected heights (NaN: no data).
    """

    png: bytes
    texture: bytes | None
    bounds: tuple[float, float, float, float]
    size: int
    fill_m: float
    heights: np.ndarray  # [size, size] float32, row 0 north

    def cell(self) -> tuple[float, float]:
        """(dlon, dlat) of one cell, degrees."""
        w, s, e, n = self.bounds
        return (e - w) / self.size, (n - s) / self.size

    def layer_bounds(self) -> list[float]:
        """The ``bounds`` to give deck.gl's TerrainLayer: the grid's, shifted half a cell east and south.

        loaders.gl's terrain mesh puts pixel (col, row) of the image at ``(minX + col·dx, maxY − row·dy)``,
        i.e. at a cell *corner* of the bounds it is given; shifting the bounds by half a cell puts
        every height at its cell's centre. The texture is resampled onto this shifted grid, so texel
        centres and heights line up too (the mesh's texture coordinates are ``col/size``, ``row/size``).
        """
        w, s, e, n = self.bounds
        dlon, dlat = self.cell()
        return [w + dlon / 2, s - dlat / 2, e + dlon / 2, n - dlat / 2]

    def elevation_decoder(self, base_m: float = 0.0, exaggeration: float = 1.0) -> dict[str, float]:
        """deck.gl's decoder drawing ``exaggeration · (h − base_m)`` metres: the terrain-RGB formula
        scaled, so the PNG (true heights) stays the same whatever the factor."""
        k = float(exaggeration)
        return {"rScaler": TERRAIN_RGB["rScaler"] * k, "gScaler": TERRAIN_RGB["gScaler"] * k,
                "bScaler": TERRAIN_RGB["bScaler"] * k, "offset": k * (TERRAIN_RGB["offset"] - base_m)}

    def heights_at(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """The grid's height (metres, ellipsoidal) of the cell holding each lon/lat; ``fill_m``
        outside the grid or where it has no data."""
        w, _, _, n = self.bounds
        dlon, dlat = self.cell()
        col = np.floor((np.asarray(lon, float) - w) / dlon).astype(np.int64)
        row = np.floor((n - np.asarray(lat, float)) / dlat).astype(np.int64)
        inside = (col >= 0) & (col < self.size) & (row >= 0) & (row < self.size)
        h = np.full(col.shape, self.fill_m, np.float64)
        h[inside] = self.heights[row[inside], col[inside]]
        return np.where(np.isfinite(h), h, self.fill_m)


@dataclass
class MapData:
    """Everything the Map page draws for one job (plain data: cacheable)."""

    hillshade: Bitmap | None = None
    points: dict[str, np.ndarray] = field(default_factory=dict)  # lon, lat, h, r, g, b (uint8)
    points_total: int = 0
    points_source: str = ""
    dsm: dict[str, np.ndarray] = field(default_factory=dict)  # lon, lat, h: the pickable samples
    dsm_range: tuple[float, float] | None = None
    error: ErrorMap | None = None
    aoi: dict[str, Any] | None = None  # GeoJSON geometry
    footprints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    terrain: Terrain | None = None
    notes: list[str] = field(default_factory=list)

    def bounds(self) -> tuple[float, float, float, float] | None:
        """lon/lat box of what is drawn (AOI, DSM, points)."""
        boxes = []
        if self.aoi:
            ring = np.asarray(self.aoi["coordinates"][0], float)
            boxes.append((ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(), ring[:, 1].max()))
        if self.hillshade:
            boxes.append(self.hillshade.bounds)
        if len(self.points.get("lon", ())):
            boxes.append((self.points["lon"].min(), self.points["lat"].min(),
                          self.points["lon"].max(), self.points["lat"].max()))
        if not boxes:
            return None
        b = np.array(boxes, float)
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


# ----------------------------------------------------------------------------- geometry
def grid_corners_lonlat(transform: Any, width: int, height: int, epsg: int) -> list[list[float]]:
    """The four outer corners of a raster grid in lon/lat: bottom-left, top-left, top-right, bottom-right."""
    from pyproj import Transformer

    t = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
    px = [(0, height), (0, 0), (width, 0), (width, height)]
    xy = [transform @ p for p in px]
    return [[float(v) for v in t.transform(x, y)] for x, y in xy]


MPP_ZOOM0 = 78271.51696  # deck.gl/MapLibre: the equator is 512 px long at zoom 0 (not 256 as for raster tiles)


def metres_per_pixel(lat: float, zoom: float) -> float:
    """Ground metres per CSS pixel of a deck.gl map view at a latitude and zoom."""
    return MPP_ZOOM0 * math.cos(math.radians(lat)) / 2.0 ** zoom


def fit_zoom(bounds: tuple[float, float, float, float], width_px: int = 900, height_px: int = 560) -> float:
    """The deck.gl zoom that fits a lon/lat box in a viewport (with a 40% margin)."""
    w, s, e, n = bounds
    lat = 0.5 * (s + n)
    span_x = max(1.0, _metres(e - w, 0.0, lat)[0])
    span_y = max(1.0, (n - s) * 111_320.0)
    mpp = 1.4 * max(span_x / width_px, span_y / height_px)  # room for the scale bar and the arrow
    return float(np.clip(math.log2(MPP_ZOOM0 * math.cos(math.radians(lat)) / mpp), 1, 22))


def _metres(dlon: float, dlat: float, lat: float) -> tuple[float, float]:
    return dlon * 111_320.0 * math.cos(math.radians(lat)), dlat * 110_574.0


def nice_length(max_m: float) -> float:
    """The largest 1-2-5 × 10^k metres not above ``max_m``."""
    k = 10 ** math.floor(math.log10(max(max_m, 1e-3)))
    return max(m * k for m in (1, 2, 5) if m * k <= max_m) if max_m >= k else k


def scale_and_north(bounds: tuple[float, float, float, float]) -> dict[str, Any]:
    """A scale bar (a path of exactly ``length_m`` metres along the parallel, below the data's lower
    left corner) and a north arrow (along the meridian, right of the data), in lon/lat."""
    w, s, e, n = bounds
    lat = 0.5 * (s + n)
    width_m = _metres(e - w, 0.0, lat)[0]
    length = nice_length(0.3 * width_m)
    m_per_deg_lon, m_per_deg_lat = _metres(1.0, 1.0, lat)
    y = s - 0.06 * (n - s)
    tick = 0.02 * (n - s)
    x1 = w + length / m_per_deg_lon
    bar = [[w, y + tick], [w, y], [x1, y], [x1, y + tick]]
    ax = e + 0.06 * (e - w)
    arrow_len = 0.25 * (n - s)
    head = 0.25 * arrow_len
    ay0, ay1 = n - arrow_len, n
    dx = head * m_per_deg_lat / m_per_deg_lon * 0.6
    arrow = [[ax - dx, ay1 - head], [ax, ay1], [ax + dx, ay1 - head], [ax, ay1], [ax, ay0]]
    label = f"{length:g} m" if length < 1000 else f"{length / 1000:g} km"
    return {"length_m": length, "bar": bar, "label": label, "label_at": [0.5 * (w + x1), y - 1.5 * tick],
            "arrow": arrow, "north_at": [ax, ay1 + 0.6 * head]}


# ----------------------------------------------------------------------------- readers
def find_dsm(final: Path) -> Path | None:
    for name in (FINAL_FILES["dsm_cog"][0], FINAL_FILES["dsm"][0]):
        if (final / name).is_file():
            return final / name
    return None


def read_hillshade(final: Path) -> Bitmap | None:
    """The hillshade PNG with the corners of its DSM grid (the PNG has the DSM's shape)."""
    import rasterio

    png, dsm = final / FINAL_FILES["hillshade"][0], find_dsm(final)
    if not png.is_file() or dsm is None:
        return None
    with rasterio.open(dsm) as ds:
        corners = grid_corners_lonlat(ds.transform, ds.width, ds.height, ds.crs.to_epsg())
    return Bitmap(png.read_bytes(), corners)


def dsm_samples(dsm_path: Path, per_side: int = DSM_SAMPLES) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """A regular subsample of the DSM (cell centres) in lon/lat with heights; and the height range."""
    import rasterio
    from pyproj import Transformer

    with rasterio.open(dsm_path) as ds:
        z = ds.read(1, masked=True).astype(np.float64).filled(np.nan)
        step = max(1, math.ceil(max(ds.width, ds.height) / per_side))
        rows, cols = np.mgrid[step // 2:ds.height:step, step // 2:ds.width:step]
        xs, ys = rasterio.transform.xy(ds.transform, rows.ravel(), cols.ravel(), offset="center")
        epsg = ds.crs.to_epsg()
    h = z[rows.ravel(), cols.ravel()]
    lon, lat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform(np.asarray(xs),
                                                                                        np.asarray(ys))
    ok = np.isfinite(h)
    rng = (float(np.nanmin(z)), float(np.nanmax(z))) if np.isfinite(z).any() else (0.0, 1.0)
    return {"lon": np.asarray(lon)[ok], "lat": np.asarray(lat)[ok], "h": h[ok]}, rng


def _subsample(n: int, limit: int, seed: int = 0) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def splat_points(final: Path, limit: int = MAX_POINTS) -> tuple[dict[str, np.ndarray], int, str]:
    """Splat centres in lon/lat/h with RGB (uint8), at most ``limit`` (random, seeded), the total
    count and the source file name: the LAZ (UTM, its CRS), else scene.ply with georef.json."""
    from pyproj import Transformer

    laz = final / FINAL_FILES["laz"][0]
    if laz.is_file():
        import laspy

        las = laspy.read(laz)
        n = len(las.points)
        idx = _subsample(n, limit)
        crs = las.header.parse_crs()
        epsg = crs.to_2d().to_epsg() if crs is not None else None
        if epsg is None:
            georef = json.loads((final / FINAL_FILES["georef"][0]).read_text())
            epsg = int(georef.get("origin", georef)["utm_epsg"])
        lon, lat = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True).transform(
            np.asarray(las.x)[idx], np.asarray(las.y)[idx])
        rgb = np.stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)], 1)[idx]
        if rgb.max(initial=0) > 255:  # LAS RGB is 16-bit
            rgb = rgb // 256
        pts = {"lon": np.asarray(lon), "lat": np.asarray(lat), "h": np.asarray(las.z)[idx]}
        pts.update(r=rgb[:, 0].astype(np.uint8), g=rgb[:, 1].astype(np.uint8), b=rgb[:, 2].astype(np.uint8))
        return pts, n, laz.name
    ply, georef_path = final / FINAL_FILES["ply"][0], final / FINAL_FILES["georef"][0]
    if ply.is_file() and georef_path.is_file():
        from plyfile import PlyData

        from skyfall_core.geo.frames import LocalFrame

        v = PlyData.read(str(ply))["vertex"].data
        n = len(v)
        idx = _subsample(n, limit)
        georef = json.loads(georef_path.read_text())
        frame = LocalFrame.from_dict(georef.get("origin", georef))
        enu = np.stack([v["x"][idx], v["y"][idx], v["z"][idx]], 1).astype(np.float64)
        lon, lat, h = frame.enu_to_geodetic(enu)
        c0 = 0.28209479177387814
        rgb = np.stack([v[f"f_dc_{i}"][idx] for i in range(3)], 1) * c0 + 0.5
        rgb = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
        return {"lon": lon, "lat": lat, "h": h, "r": rgb[:, 0], "g": rgb[:, 1], "b": rgb[:, 2]}, n, ply.name
    return {}, 0, ""


def diverging_rgba(err: np.ndarray, limit: float) -> np.ndarray:
    """Blue (−limit) → white (0) → red (+limit), alpha 0 where NaN: [H, W, 4] uint8 (RGBA)."""
    t = np.clip(np.nan_to_num(err / max(limit, 1e-6)), -1, 1)
    pos, neg = np.clip(t, 0, 1), np.clip(-t, 0, 1)
    r = 1 - 0.75 * neg
    g = 1 - 0.8 * np.maximum(pos, neg)
    b = 1 - 0.75 * pos
    rgba = np.stack([r, g, b, np.where(np.isfinite(err), 0.85, 0.0)], -1)
    return (rgba * 255).round().astype(np.uint8)


def error_map(pred_path: Path, truth_path: Path) -> ErrorMap | None:
    """Prediction − truth on the truth grid (see the module docstring); None when nothing overlaps."""
    import cv2

    from skyfall_core.eval.dsm import resample_to
    from skyfall_core.geo.dsm import read_dsm

    pred, truth = read_dsm(pred_path), read_dsm(truth_path)
    err = resample_to(pred, truth) - truth.heights.astype(np.float32)
    ok = np.isfinite(err)
    if ok.sum() < 10:
        return None
    e = err[ok].astype(np.float64)
    limit = float(max(0.5, np.percentile(np.abs(e), 95)))
    rgba = diverging_rgba(err, limit)
    good, png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    h, w = truth.heights.shape
    corners = grid_corners_lonlat(truth.transform, w, h, truth.epsg)
    return ErrorMap(Bitmap(png.tobytes(), corners), limit, float(e.mean()), float(np.median(e)),
                    float(np.abs(e).mean()), float(np.sqrt((e ** 2).mean())), int(ok.sum()), str(truth_path))


# ----------------------------------------------------------------------------- terrain
def encode_terrain_rgb(heights: np.ndarray) -> tuple[np.ndarray, float]:
    """Heights (metres; NaN = no data) as Mapbox terrain-RGB: [H, W, 3] uint8 and the fill height.

    ``h = −10000 + 0.1 · (R · 65536 + G · 256 + B)`` (:data:`TERRAIN_RGB`): 0.1 m steps, rounded to
    the nearest (error ≤ 0.05 m) from −10 km to +1,667 km. No-data cells get the lowest valid height
    (0 when there is none): terrain-RGB has no no-data value, and the lowest height lays those cells
    flat on the floor of the model instead of inventing relief.
    """
    h = np.asarray(heights, np.float64)
    if h.ndim != 2:
        raise ValueError(f"heights must be [H, W], got shape {h.shape}")
    ok = np.isfinite(h)
    fill = float(h[ok].min()) if ok.any() else 0.0
    code = np.rint((np.where(ok, h, fill) - TERRAIN_RGB["offset"]) / TERRAIN_RGB["bScaler"])
    code = np.clip(code, 0, 2**24 - 1).astype(np.uint32)
    rgb = np.stack([code >> 16, (code >> 8) & 255, code & 255], -1).astype(np.uint8)
    return rgb, fill


def decode_terrain_rgb(rgb: np.ndarray, decoder: dict[str, float] = TERRAIN_RGB) -> np.ndarray:
    """deck.gl's decoding of a terrain image: ``R·rScaler + G·gScaler + B·bScaler + offset`` [H, W]."""
    c = np.asarray(rgb)[..., :3].astype(np.float64)
    return c[..., 0] * decoder["rScaler"] + c[..., 1] * decoder["gScaler"] + c[..., 2] * decoder["bScaler"] \
        + decoder["offset"]


def terrain_grid_size(width: int, height: int, limit: int = TERRAIN_SIZE) -> int:
    """Cells per side of the terrain image: the power of two at or above the DSM's larger side, at most ``limit``."""
    return int(min(limit, 2 ** math.ceil(math.log2(max(2, width, height)))))


def _png(rgb_or_rgba: np.ndarray) -> bytes:
    import cv2

    code = cv2.COLOR_RGBA2BGRA if rgb_or_rgba.shape[-1] == 4 else cv2.COLOR_RGB2BGR
    good, png = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb_or_rgba), code))
    if not good:
        raise ValueError("PNG encoding failed")
    return png.tobytes()


def read_terrain(final: Path, size_limit: int = TERRAIN_SIZE) -> Terrain | None:
    """The job's DSM as :class:`Terrain` (None without a DSM): reprojected from its CRS (UTM) to
    EPSG:4326 with rasterio, bilinear, NaN as no data, on a square grid over the box of its footprint;
    the hillshade PNG (which has the DSM's grid) resampled the same way as the texture."""
    import rasterio
    from rasterio.transform import from_bounds
    from rasterio.warp import Resampling, reproject, transform_bounds

    dsm = find_dsm(final)
    if dsm is None:
        return None
    with rasterio.open(dsm) as ds:
        z = ds.read(1, masked=True).astype(np.float32).filled(np.nan)
        src_transform, src_crs = ds.transform, ds.crs
        bounds = tuple(float(v) for v in transform_bounds(src_crs, "EPSG:4326", *ds.bounds, densify_pts=21))
        n = terrain_grid_size(ds.width, ds.height, size_limit)
    heights = np.full((n, n), np.nan, np.float32)
    reproject(z, heights, src_transform=src_transform, src_crs=src_crs, src_nodata=np.nan,
              dst_transform=from_bounds(*bounds, n, n), dst_crs="EPSG:4326", dst_nodata=np.nan,
              resampling=Resampling.bilinear)
    rgb, fill = encode_terrain_rgb(heights)
    terrain = Terrain(_png(rgb), None, bounds, n, fill, heights)
    texture = None
    shade = final / FINAL_FILES["hillshade"][0]
    if shade.is_file():
        import cv2

        img = cv2.imread(str(shade), cv2.IMREAD_UNCHANGED)
        if img is not None and img.shape[:2] == z.shape:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.ndim == 3 and img.shape[2] == 4 else
                               cv2.COLOR_BGR2RGBA if img.ndim == 3 else cv2.COLOR_GRAY2RGBA)
            out = np.zeros((4, n, n), np.uint8)  # alpha 0 outside the DSM
            reproject(np.moveaxis(img, -1, 0), out, src_transform=src_transform, src_crs=src_crs,
                      dst_transform=from_bounds(*terrain.layer_bounds(), n, n), dst_crs="EPSG:4326",
                      resampling=Resampling.bilinear)
            texture = _png(np.moveaxis(out, 0, -1))
    return Terrain(terrain.png, texture, bounds, n, fill, heights)


def find_truth(scene_paths: list[str]) -> Path | None:
    """A truth DSM next to the job's scenes: ``<scenes>/../truth/dsm.tif`` (the bundled sample) or a
    DFC2019-style ``*_DSM.tif`` in ``<scenes>/..`` or ``<scenes>/../truth`` (JAX)."""
    for folder in dict.fromkeys(Path(p).parent.parent for p in scene_paths):
        for cand in (folder / "truth" / "dsm.tif", *sorted(folder.glob("*_DSM.tif")),
                     *sorted((folder / "truth").glob("*_DSM.tif"))):
            if cand.is_file():
                return cand
    return None


def scene_footprints(scene_paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(scene id, GeoJSON footprint) of the job's scenes that still exist and have an RPC."""
    from shapely.geometry import mapping

    from skyfall_core.errors import SkyfallError
    from skyfall_core.geo.catalog import read_scene

    out = []
    for p in scene_paths:
        try:
            s = read_scene(p)
        except (SkyfallError, OSError, ValueError):
            continue
        if s.footprint is not None:
            out.append((s.id, mapping(s.footprint)))
    return out


def load_map_data(job_dir: Path, *, aoi: dict[str, Any] | None, scenes: list[str],
                  truth: Path | None = None, max_points: int = MAX_POINTS) -> MapData:
    """Everything the Map page draws for the job in ``job_dir`` (read from ``final/``)."""
    final = JobDir(Path(job_dir)).final
    data = MapData()
    if aoi:
        data.aoi = aoi.get("geometry", aoi) if aoi.get("type") == "Feature" else aoi
    data.hillshade = read_hillshade(final)
    dsm = find_dsm(final)
    if dsm is not None:
        data.dsm, data.dsm_range = dsm_samples(dsm)
        if truth is not None:
            if Path(truth).is_file():
                data.error = error_map(dsm, Path(truth))
                if data.error is None:
                    data.notes.append(f"The truth DSM {truth} does not overlap this job's DSM.")
            else:
                data.notes.append(f"Truth DSM not found: {truth}")
    else:
        data.notes.append("No DSM in final/ (dsm.cog.tif or dsm.tif): the hillshade and error layers are off.")
    data.points, data.points_total, data.points_source = splat_points(final, max_points)
    data.footprints = scene_footprints(scenes)
    data.terrain = read_terrain(final)
    return data


# ----------------------------------------------------------------------------- network
def tiles_reachable(host: tuple[str, int] = TILE_HOST, timeout: float = 1.0) -> bool:
    """Whether the basemap tile server answers a TCP connection (the app and the browser run on the
    same machine, so this is what the browser will see)."""
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- the deck
def layer_ids(data: MapData) -> list[str]:
    """The layers available for ``data`` (those the page offers to switch)."""
    ids = []
    if data.hillshade:
        ids.append("hillshade")
    if data.error:
        ids.append("error")
    if data.aoi:
        ids.append("aoi")
    if data.footprints:
        ids.append("footprints")
    if len(data.points.get("lon", ())):
        ids.append("points")
    if len(data.dsm.get("lon", ())):
        ids.append("dsm-samples")
    return ids


def terrain_base(data: MapData) -> float:
    """The height drawn at z = 0 in 3D (metres, ellipsoidal): the DSM's lowest cell, so the terrain
    rests on the basemap (which has no relief of its own)."""
    if data.dsm_range is not None:
        return float(data.dsm_range[0])
    return data.terrain.fill_m if data.terrain is not None else 0.0


def terrain_layer(terrain: Terrain, base_m: float, exaggeration: float) -> Any:
    """deck.gl's TerrainLayer of ``terrain``: drawn ``exaggeration · (h − base_m)`` metres high, the
    hillshade as texture, its mesh built by the vendored loaders.gl worker (no CDN)."""
    import pydeck as pdk

    from skyfall_core.ui.static import vendor_url

    def data_url(png: bytes) -> str:
        return "data:image/png;base64," + base64.b64encode(png).decode("ascii")

    url = data_url(terrain.png)
    extra: dict[str, Any] = {}
    if terrain.texture is not None:
        extra["texture"] = pdk.types.String(data_url(terrain.texture))
    else:
        extra["color"] = [203, 213, 225]
    return pdk.Layer("TerrainLayer", id="terrain", elevation_data=pdk.types.String(url),
                     elevation_decoder=terrain.elevation_decoder(base_m, exaggeration),
                     bounds=terrain.layer_bounds(), mesh_max_error=0.5,  # metres of drawn height
                     load_options={"terrain": {"workerUrl": vendor_url(TERRAIN_WORKER)}},
                     pickable=False, **extra)


def _draped_ring(ring: np.ndarray, terrain: Terrain, base_m: float, exaggeration: float,
                 per_edge: int = 64) -> list[list[float]]:
    """A closed lon/lat ring densified and lifted onto the terrain (0.5 m above it): [[lon, lat, z]]."""
    ring = np.asarray(ring, float)[:, :2]
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
    pts = np.concatenate([a + t[:, None] * (b - a) for a, b in zip(ring[:-1], ring[1:])] + [ring[-1:]])
    z = exaggeration * (terrain.heights_at(pts[:, 0], pts[:, 1]) - base_m) + 0.5
    return np.c_[pts, z].tolist()


def build_deck(data: MapData, *, basemap: str | None = "light", layers: list[str] | None = None,
               point_size: float = 2.0, terrain: float | None = None) -> Any:
    """The pydeck Deck of ``data``: ``basemap`` 'light'/'dark' (CARTO tiles, internet) or None
    (no basemap: offline); ``layers`` the ids of :func:`layer_ids` to draw (default all).

    ``terrain``: a height exaggeration factor turns the 3D terrain on (when ``data.terrain`` exists):
    the DSM as a TerrainLayer textured with the hillshade, the view pitched; the flat hillshade and
    error bitmaps are then left out (the terrain would hide them), the AOI is draped on the terrain and
    the points and DSM samples are lifted by the same factor."""
    import pandas as pd
    import pydeck as pdk

    show = set(layer_ids(data) if layers is None else layers)
    k = float(terrain) if terrain is not None and data.terrain is not None else None
    base = terrain_base(data)
    out: list[Any] = []
    if k is not None:
        out.append(terrain_layer(data.terrain, base, k))
    if "hillshade" in show and data.hillshade and k is None:
        out.append(pdk.Layer("BitmapLayer", id="hillshade", image=pdk.types.String(data.hillshade.data_url()),
                             bounds=data.hillshade.corners, opacity=0.9, pickable=False))
    if "error" in show and data.error and k is None:
        out.append(pdk.Layer("BitmapLayer", id="error", image=pdk.types.String(data.error.bitmap.data_url()),
                             bounds=data.error.bitmap.corners, opacity=0.7, pickable=False))
    if "footprints" in show and data.footprints:
        fp = [{"name": f"scene {sid}", "polygon": geom["coordinates"][0]} for sid, geom in data.footprints
              if geom.get("type") == "Polygon"]
        out.append(pdk.Layer("PolygonLayer", id="footprints", data=fp, get_polygon="polygon", filled=False,
                             stroked=True, get_line_color=[56, 189, 248, 200], line_width_min_pixels=1,
                             pickable=True))
    if "aoi" in show and data.aoi:
        if k is None:
            out.append(pdk.Layer("PolygonLayer", id="aoi",
                                 data=[{"name": "AOI", "polygon": data.aoi["coordinates"][0]}],
                                 get_polygon="polygon", filled=False, stroked=True,
                                 get_line_color=[249, 115, 22, 255], line_width_min_pixels=3, pickable=False))
        else:
            path = _draped_ring(np.asarray(data.aoi["coordinates"][0], float), data.terrain, base, k)
            out.append(pdk.Layer("PathLayer", id="aoi-3d", data=[{"name": "AOI", "path": path}], get_path="path",
                                 get_color=[249, 115, 22, 255], width_min_pixels=3, pickable=False))
    lift = 1.0 if k is None else k
    if "points" in show and len(data.points.get("lon", ())):
        p = data.points
        base_p = data.dsm_range[0] if data.dsm_range else float(np.nanmin(p["h"]))
        df = pd.DataFrame({"lon": p["lon"], "lat": p["lat"], "h": np.round(p["h"], 2),
                           "z": lift * np.maximum(p["h"] - base_p, 0.0), "r": p["r"], "g": p["g"], "b": p["b"]})
        df["name"] = "splat centre"
        out.append(pdk.Layer("PointCloudLayer", id="points", data=df, get_position=["lon", "lat", "z"],
                             get_color=["r", "g", "b"], point_size=point_size, pickable=True))
    if "dsm-samples" in show and len(data.dsm.get("lon", ())):
        d = data.dsm
        df = pd.DataFrame({"lon": d["lon"], "lat": d["lat"], "h": np.round(d["h"], 2)})
        df["z"] = 0.0 if k is None else k * (d["h"] - base) + 0.5  # on the terrain, not under it
        df["name"] = "DSM"
        out.append(pdk.Layer("ScatterplotLayer", id="dsm-samples", data=df, get_position=["lon", "lat", "z"],
                             get_radius=1.5, radius_min_pixels=2, get_fill_color=[255, 255, 255, 24],
                             pickable=True, auto_highlight=True))
    bounds = data.bounds()
    if bounds is not None:
        sn = scale_and_north(bounds)
        out.append(pdk.Layer("PathLayer", id="scale-north",
                             data=[{"path": sn["bar"]}, {"path": sn["arrow"]}], get_path="path",
                             get_color=[250, 204, 21, 255], width_min_pixels=3, pickable=False))  # on light and dark
        out.append(pdk.Layer("TextLayer", id="scale-north-labels",
                             data=[{"t": sn["label"], "at": sn["label_at"]}, {"t": "N", "at": sn["north_at"]}],
                             get_position="at", get_text="t", get_size=15, get_color=[15, 23, 42, 255],
                             background=True, get_background_color=[255, 255, 255, 210], pickable=False))
        lon, lat = 0.5 * (bounds[0] + bounds[2]), 0.5 * (bounds[1] + bounds[3])
        view = pdk.ViewState(longitude=lon, latitude=lat, zoom=fit_zoom(bounds),
                             pitch=0 if k is None else TERRAIN_PITCH, bearing=0)
    else:
        view = pdk.ViewState(longitude=0, latitude=0, zoom=1)
    tooltip = {"html": "<b>{name}</b><br/>h {h} m (WGS84 ellipsoid)<br/>lon {lon} · lat {lat}",
               "style": {"font-size": "12px"}}
    if basemap is None:
        return pdk.Deck(layers=out, initial_view_state=view, map_provider=None, map_style=None, tooltip=tooltip)
    return pdk.Deck(layers=out, initial_view_state=view, map_provider="carto", map_style=basemap, tooltip=tooltip)


def colour_scale_html(limit: float) -> str:
    """A horizontal legend of :func:`diverging_rgba` from −limit to +limit metres."""
    stops = np.linspace(-limit, limit, 9)
    cols = diverging_rgba(stops[None, :], limit)[0]
    grad = ", ".join(f"rgb({c[0]},{c[1]},{c[2]})" for c in cols)
    return (f'<div style="font:12px system-ui;display:flex;align-items:center;gap:6px">'
            f'<span>{-limit:.1f} m (too low)</span><span style="display:inline-block;width:220px;height:12px;'
            f'border:1px solid #94a3b8;background:linear-gradient(to right, {grad})"></span>'
            f'<span>+{limit:.1f} m (too high)</span></div>')
