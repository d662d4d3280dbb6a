"""The README of a generated sample; its figures come from the generation itself."""

from __future__ import annotations

from typing import Any

from skyfall_core.sample.city import City


def _views_table(views: list[dict[str, Any]]) -> str:
    head = ("| file | sat | acquired (UTC) | solar time | sun el / az ° | off-nadir ° | incidence ° | sat az ° "
            "| pixels | RPC fit mean / max px | on scene points mean / max px | bias row / col px |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for v in views:
        hh = int(v["local_solar_time_h"])
        mm = round((v["local_solar_time_h"] - hh) * 60)
        rows.append(
            f"| `{v['file']}` | {v['satellite']} | {v['acquisition_utc']} | {hh:02d}:{mm:02d} "
            f"| {v['sun_elevation_deg']:.1f} / {v['sun_azimuth_deg']:.1f} | {v['off_nadir_deg']:.1f} "
            f"| {v['incidence_deg']:.1f} | {v['sat_azimuth_deg']:.0f} | {v['dtype']} {v['width']}×{v['height']} "
            f"| {v['rpc_fit_mean_px']:.1e} / {v['rpc_fit_max_px']:.1e} "
            f"| {v['rpc_scene_mean_px']:.1e} / {v['rpc_scene_max_px']:.1e} "
            f"| {v['bias_row_px']:+.3f} / {v['bias_col_px']:+.3f} |")
    return head + "\n".join(rows)


def render_readme(city: City, seed: int, views: list[dict[str, Any]], dsm: dict[str, Any], small: bool,
                  renders: dict[str, Any]) -> str:
    """The README text. ``renders``: size, radius_m, fov_deg, elevations, azimuths, sun (el, az)."""
    f = city.frame
    rs = renders["size"]
    els = " and ".join(f"{e:.0f}°" for e in renders["elevations"])
    dates = sorted({v["acquisition_utc"][:10] for v in views})
    worst = max(v["rpc_fit_max_px"] for v in views)
    worst_scene = max(v["rpc_scene_max_px"] for v in views)
    ref = next((v["file"] for v in views if v["bias_row_px"] == 0 and v["bias_col_px"] == 0), "none")
    n_b, n_t, n_c = len(city.buildings), len(city.trees), len(city.cars)
    cmd = "python -m skyfall_core.sample.generate --out <folder>" + (" --small" if small else "")
    kind = "REDUCED (test) sample" if small else "sample"
    return f"""# Sample AOI: a synthetic city imaged by synthetic satellites

This folder is a generated {kind}: `PYTHONPATH=. {cmd}` (seed {seed})
writes it again, byte for byte (`manifest.json` lists the sha256 of every file). It is the demo input of Skyfall Studio and
the test bed of the pipeline: the views are ordinary GeoTIFFs with an RPC camera and vendor-like
tags, read exactly as real scenes are, and `truth/` holds what a real scene never comes with —
the exact DSM, the scene description, the true cameras, the RPC biases and low-angle renders.

**The city** (invented) stands in downtown Omaha, Nebraska: ENU origin lon {f.lon0}, lat {f.lat0},
ground {f.h0} m above the WGS84 ellipsoid (flat ground), UTM zone EPSG:{f.utm_epsg}. About 300 m ×
300 m of blocks around a four-lane avenue, the street grid turned {city.rotation_deg}° from east:
{n_b} buildings (5–60 m; rectangles, L-shapes, a courtyard block; flat roofs with rooftop units
and solar panels, gable and hip roofs; facades with window grids), {n_t} trees, {n_c} cars,
parking lots, a park with a pond, lawns, pools, sidewalks and road markings. The AOI
(`aoi.geojson`) is the {2 * city.aoi_half_m:.0f} m × {2 * city.aoi_half_m:.0f} m ENU-aligned square at the centre.

![a view](preview_view.png) ![a truth render](preview_truth.png)

## Layout
```
aoi.geojson              WGS84 polygon of the AOI; properties min_height_m / max_height_m (ellipsoidal)
scenes/NN_SAT_YYYYmmddTHHMMSS.tif   the views: RGB GeoTIFF, sensor geometry + RPC (no geotransform)
truth/dsm.tif            truth DSM, float32, UTM, {dsm['res_m']} m, ellipsoidal heights, nodata -9999 outside the AOI
truth/buildings.geojson  building footprints (WGS84) with heights and roof types
truth/scene.json         the whole scene description (city frame and ENU): buildings, rooftop units, trees, cars, roads, lots
truth/frame.json         the local ENU frame (LocalFrame.to_dict(): lon, lat, h, utm_epsg)
truth/views.json         per view: acquisition, sun, geometry, true pinhole camera, RPC fit errors, bias, gain
truth/rpc_bias.json      the bias added to each view's RPC (pixels)
truth/renders/*.png      truth renders from low elevations + cameras.json
preview_view.png, preview_truth.png, README.md, manifest.json
```

## The views
{len(views)} views on {len(dates)} dates ({', '.join(dates)}), late-morning overpasses (local
solar time 10:30–11:30), off-nadir 5°–30° from varied azimuths, two same-pass stereo pairs.
Two made-up sensors: **SFS2** writes `uint8` display-ready RGB (gamma about 1/2, dynamic range
adjusted per image); **SFS1** writes `uint16` **11-bit linear DN** (0–2047, dark offset about 60,
like raw WorldView-3 pixels) — so radiometric normalisation is needed.

{_views_table(views)}

*RPC fit*: RPC00B fitted by least squares to the true camera (below) on a 21 × 21 × 9 grid of
lon/lat/height over the image's footprint between ground −50 m and +150 m; error measured on the
independent 20 × 20 × 8 grid of cell centres (worst {worst:.1e} px) and on 2,000 visible scene
points per view (worst {worst_scene:.1e} px) — both far below the 0.05 px required.
*Bias*: each RPC written into a file is the fitted one shifted by a known translation of
1–2 px in image space (`truth/rpc_bias.json`); `{ref}` (the nadir-most view) is unbiased, as the
reference a bias correction can hold fixed.

### Tags (GDAL metadata; `rasterio`: `ds.tags()`, `ds.tags(ns="IMAGERY")`, `ds.tags(ns="RPC")`)
- Default domain: `TIFFTAG_DATETIME` = acquisition time, **UTC**, `YYYY:MM:DD HH:MM:SS` (the TIFF
  DateTime tag); `ACQUISITION_DATETIME` = the same, ISO 8601 (`{views[0]["acquisition_utc"]}`);
  `SATELLITE_ID`; `SUN_ELEVATION`, `SUN_AZIMUTH` (degrees; azimuth clockwise from north);
  `SAT_ELEVATION`, `SAT_AZIMUTH` (the satellite seen from the scene centre; elevation = 90 −
  incidence); `OFF_NADIR_ANGLE` (at the satellite), `INCIDENCE_ANGLE` (view zenith at the
  ground); `GSD_M`; `BITS_PER_PIXEL` (8 or 11); `CLOUD_COVER` (percent).
- `IMAGERY` domain (GDAL's standard imagery metadata): `SATELLITEID`, `ACQUISITIONDATETIME`
  (`YYYY-MM-DD HH:MM:SS`, UTC), `CLOUDCOVER`.
- `RPC` domain: the RPC00B (`LINE_OFF` … `SAMP_DEN_COEFF`, `ERR_BIAS`, `ERR_RAND`), stored in
  the GeoTIFF RPC tag; integer image coordinates at pixel centres.
  `skyfall_core.geo.rpc.read_rpc(path)` reads it; GDAL's RPC transformer = ours + 0.5.

## Truth
- `truth/dsm.tif`: {dsm['width']} × {dsm['height']} cells of {dsm['res_m']} m, EPSG:{f.utm_epsg},
  heights in metres above the WGS84 ellipsoid ({dsm['h_min']:.2f} … {dsm['h_max']:.2f}), each the
  exact top surface (roofs, rooftop units, tree crowns, cars, ground) at the cell centre;
  -9999 (nodata) outside the AOI square.
- `truth/buildings.geojson`: one Polygon per building (courtyards have a hole), properties
  `name, use, roof` (flat | gable | hip), `ground_height_m` (ellipsoidal), `eave_height_m`,
  `ridge_height_m`, `top_height_m` (above the ground; top includes rooftop units),
  `roof_height_ellipsoidal_m`, `top_height_ellipsoidal_m`, and `ridge_azimuth_deg` for pitched roofs.
- `truth/views.json` `true_camera`: the camera each image was rendered with — an OpenCV pinhole
  (x right, y down, z forward; world-to-camera `w2c` 4×4 in the local ENU frame; `K` with pixel
  centres at integers) about 600–700 km away along the view direction. The RPC in the file
  projects a ground point to the true pixel + the bias.
- `truth/renders/eEE_aAAA.png`: {rs} × {rs} renders from orbits at {els} elevation,
  {len(renders["azimuths"])} azimuths each, radius {renders["radius_m"]:.0f} m around the ENU origin,
  {renders["fov_deg"]:.0f}° field of view, summer vegetation, sun at {renders["sun"][0]:.0f}° elevation /
  {renders["sun"][1]:.0f}° azimuth, no noise. `cameras.json` is a list of `{{"name", "K", "w2c",
  "width", "height", "elevation_deg", "azimuth_deg", "fov_deg", "radius_m", "look_at_enu"}}`:
  `w2c` is world-to-camera (OpenCV axes) in the local ENU frame of `truth/frame.json`; `K`'s
  principal point follows the pixel-centre-at-integer convention (cx = cy = (W − 1)/2 = {(rs - 1) / 2}, a
  pixel (u, v) sees the ray through K⁻¹[u, v, 1]); `azimuth_deg` is the camera's position seen
  from the look-at point, clockwise from north (0 = north of the city, looking south).

## How it was made (`skyfall_core/sample/`)
`city.py` lays the city out (fixed block plan, sizes/heights/colours/trees/cars from the seed);
`render.py` casts rays exactly (convex polyhedra and ellipsoids, tested only within each
primitive's projected bounding box; the ground plane) with 2 × 2 samples per pixel;
`shading.py` gives procedural materials (value-noise textures, window grids, road and parking
markings), sun + sky light with cast shadows (a second ray toward the sun) and seasonal
vegetation; `solar.py` computes the sun position (the NOAA Solar Calculator algorithm, after Meeus) for each
date, time and place; `satellite.py` places each true camera (off-nadir angle and azimuth, orbits
at 590 km (SFS2) and 617 km (SFS1), Earth curvature for the incidence), renders, applies the sensor (a 3-tap MTF blur,
haze, shot + read noise, 8-bit or 11-bit encoding) and fits the RPC. Everything is numpy with
seeded generators; per-pixel maths avoids library transcendental functions, so the output is
bit-reproducible on this platform.
"""
