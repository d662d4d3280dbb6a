"""Materials and lighting of the synthetic city: procedural albedo, sun + sky shading, shadows.

Radiance is linear and unitless (a white Lambertian surface facing a high sun is about 1).
Seasons change vegetation only: ``greenness`` 0 (mid-January) .. 1 (mid-July).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skyfall_core.sample import city as C
from skyfall_core.sample.render import (
    BODY,
    CAR_BODY,
    CAR_CABIN,
    GROUND_ID,
    ROOF,
    SKY_ID,
    TRUNK,
    UNIT,
    Hits,
    Scene,
    trace_parallel,
)
from skyfall_core.sample.textures import cell_random, fbm, value_noise


@dataclass(frozen=True)
class Lighting:
    sun_dir: tuple[float, float, float]  # unit ENU vector toward the sun
    sun_rgb: tuple[float, float, float] = (1.00, 0.96, 0.90)  # irradiance, surface facing the sun
    sky_rgb: tuple[float, float, float] = (0.17, 0.20, 0.27)  # sky irradiance on an upward surface
    greenness: float = 1.0  # vegetation: 0 winter .. 1 summer


def sun_direction(elevation_deg: float, azimuth_deg: float) -> tuple[float, float, float]:
    """Unit ENU vector toward the sun (azimuth clockwise from north)."""
    el, az = math.radians(elevation_deg), math.radians(azimuth_deg)
    return (math.cos(el) * math.sin(az), math.cos(el) * math.cos(az), math.sin(el))


def greenness(day_of_year: int) -> float:
    """Vegetation state for a day of the year: 0 mid-January .. 1 mid-July."""
    return 0.5 - 0.5 * math.cos(2.0 * math.pi * (day_of_year - 15) / 365.0)


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _lerp(a, b, t) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a + (b - a) * np.asarray(t, np.float64)[..., None]


# ---------------------------------------------------------------------------------- ground
_GROUND_RGB = {
    C.CONCRETE: (0.55, 0.53, 0.50), C.ASPHALT: (0.15, 0.15, 0.16), C.LOT: (0.19, 0.19, 0.20),
    C.SIDEWALK: (0.50, 0.49, 0.46), C.PATH: (0.48, 0.43, 0.34), C.DRIVEWAY: (0.52, 0.50, 0.47),
    C.POOL: (0.08, 0.33, 0.42), C.POND: (0.05, 0.10, 0.10),
}
_WHITE, _YELLOW = (0.72, 0.72, 0.68), (0.68, 0.55, 0.18)


def ground_material(city: C.City, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Ground material code (city.GRASS, ...) at city-frame points. [n] int"""
    mat = np.full(u.shape, C.GRASS, dtype=np.int64)
    for (u0, v0, u1, v1), m in city.patches:
        mat[(u >= u0) & (u < u1) & (v >= v0) & (v < v1)] = m
    for road in city.roads:
        across = (u if road.axis == "v" else v) - road.pos
        mat[np.abs(across) <= road.half_width_m + C.SIDEWALK_M] = C.SIDEWALK
    for road in city.roads:
        across = (u if road.axis == "v" else v) - road.pos
        mat[np.abs(across) <= road.half_width_m] = C.ASPHALT
    return mat


def _road_markings(city: C.City, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks (white, yellow) of lane lines and crosswalks on asphalt points."""
    white = np.zeros(u.shape, dtype=bool)
    yellow = np.zeros(u.shape, dtype=bool)
    inside = [np.abs((u if r.axis == "v" else v) - r.pos) <= r.half_width_m for r in city.roads]
    n_roads = np.sum(inside, axis=0)
    for road, on in zip(city.roads, inside):
        across = (u if road.axis == "v" else v) - road.pos
        along = v if road.axis == "v" else u
        single = on & (n_roads == 1)
        for off, style in road.lines:
            dist = np.abs(across - off)
            if style == "yellow2":
                yellow |= single & (dist > 0.10) & (dist < 0.30)
            elif style == "white":
                white |= single & (dist < 0.10)
            else:
                white |= single & (dist < 0.10) & (_frac(along / 9.0) < 0.35)
        for other in city.roads:  # zebra crossings just outside each intersection
            if other.axis == road.axis or abs(other.pos) > city.modelled_half_m or abs(road.pos) > city.modelled_half_m:
                continue
            gap = np.abs(along - other.pos) - other.half_width_m
            white |= single & (gap > 0.8) & (gap < 3.8) & (_frac(across / 1.2) < 0.5)
    return white, yellow


def _lot_markings(city: C.City, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks (stall lines, oil stains) of the parking lots."""
    lines = np.zeros(u.shape, dtype=bool)
    stains = np.zeros(u.shape, dtype=bool)
    for lot in city.lots:
        u0, v0, u1, v1 = lot.rect
        lu, lv = u - u0 - 1.0, v - v0 - 1.0
        n_u = int((u1 - u0 - 2.0) // lot.stall_w_m)
        period = 2 * lot.stall_d_m + lot.aisle_m
        q = lv - np.floor(lv / period) * period
        n_rows = len({round(c[1], 3) for c in C.stall_centres(lot)}) // 2
        in_rows = (lu >= -0.1) & (lu <= n_u * lot.stall_w_m + 0.1) & (q < 2 * lot.stall_d_m) & \
                  (lv >= 0) & (lv < n_rows * period)
        sep = np.abs(lu - np.round(lu / lot.stall_w_m) * lot.stall_w_m) < 0.1
        mid = np.abs(q - lot.stall_d_m) < 0.08
        lines |= in_rows & (sep | mid)
        cu = lu - (np.floor(lu / lot.stall_w_m) + 0.5) * lot.stall_w_m
        cv = q - (np.floor(q / lot.stall_d_m) + 0.5) * lot.stall_d_m
        spot = (cu * cu + cv * cv * 0.5) < 0.5
        rnd = cell_random(lu, q + np.floor(lv / period) * 100.0, lot.stall_w_m, 977)
        stains |= in_rows & spot & (rnd < 0.45)
    return lines, stains


def ground_albedo(city: C.City, x: np.ndarray, y: np.ndarray, green: float) -> np.ndarray:
    """Albedo of the ground at ENU (x, y) points for a vegetation state. [n, 3]"""
    u, v = city.to_city(x, y)
    mat = ground_material(city, u, v)
    out = np.zeros(u.shape + (3,))
    coarse = fbm(x, y, 8.0, 11, 3)
    fine = value_noise(x / 0.45, y / 0.45, 12)
    for m, rgb in _GROUND_RGB.items():
        sel = mat == m
        if np.any(sel):
            out[sel] = rgb
    # grass and soil: seasonal
    grass = mat == C.GRASS
    if np.any(grass):
        gx, gy = x[grass], y[grass]
        patch = fbm(gx, gy, 14.0, 21, 3)
        g = np.clip(green * (0.75 + 0.5 * patch) - 0.1 * (1 - green), 0.0, 1.0)
        col = _lerp((0.30, 0.27, 0.17), (0.09, 0.19, 0.055), g)
        in_city = np.maximum(np.abs(u[grass]), np.abs(v[grass])) < city.modelled_half_m
        mow = 1.0 + 0.05 * np.sign(_frac(u[grass] / 3.0) - 0.5) * in_city
        # outside the city: fields of 40 m x 60 m, some ploughed, in rows
        field = cell_random(u[grass], v[grass] * (40.0 / 60.0), 40.0, 17)
        rows = np.where(_frac(u[grass] / 2.5 + 0.5 * field) < 0.5, 1.0, 0.85)
        ploughed = ~in_city & (field < 0.3)
        col = np.where(ploughed[:, None], _lerp((0.30, 0.23, 0.16), (0.14, 0.22, 0.07), green * field / 0.3)
                       * rows[:, None], col * (0.8 + 0.4 * np.where(in_city, 0.5, field))[:, None])
        out[grass] = col * mow[:, None]
    soil = mat == C.SOIL
    if np.any(soil):
        rows = np.where(_frac(v[soil] / 1.2) < 0.5, 1.0, 0.78)
        crop = green * 0.7 * (rows > 0.9)
        out[soil] = _lerp((0.30, 0.22, 0.15), (0.11, 0.20, 0.06), crop) * rows[:, None]
    # texture: large-scale stains and fine grain, everything on the ground
    shade = (0.78 + 0.44 * coarse) * (0.88 + 0.24 * fine)
    water = (mat == C.POOL) | (mat == C.POND)
    shade = np.where(water, 0.95 + 0.1 * fine, shade)
    # paving joints
    paved = (mat == C.CONCRETE) | (mat == C.SIDEWALK) | (mat == C.DRIVEWAY)
    joints = paved & ((_frac(u / 1.8) < 0.07) | (_frac(v / 1.8) < 0.07))
    shade = np.where(joints, shade * 0.8, shade)
    slabs = (mat == C.CONCRETE) & (cell_random(u, v, 5.4, 19) < 0.3)  # tinted paving bands
    shade = np.where(slabs, shade * 0.88, shade)
    asphalt = (mat == C.ASPHALT) | (mat == C.LOT)
    repaired = asphalt & (fbm(x, y, 18.0, 31, 2) > 0.62)
    shade = np.where(repaired, shade * 1.3, shade)
    out *= shade[:, None]
    if np.any(asphalt):
        white, yellow = _road_markings(city, u, v)
        lines, stains = _lot_markings(city, u, v)
        wear = (0.75 + 0.25 * coarse)[:, None]
        out = np.where(((white | lines) & asphalt)[:, None], np.asarray(_WHITE) * wear, out)
        out = np.where((yellow & asphalt)[:, None], np.asarray(_YELLOW) * wear, out)
        out = np.where(((mat == C.LOT) & stains & ~lines)[:, None], out * 0.65, out)
    return out


# ---------------------------------------------------------------------------------- objects
def _facade(scene: Scene, prim: np.ndarray, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Walls with window grids (BODY sides; gable ends have no windows above the eave)."""
    s = -n[:, 1] * p[:, 0] + n[:, 0] * p[:, 1]
    z = p[:, 2]
    floor_m, pitch, eave = scene.floor_m[prim], scene.window_pitch_m[prim], scene.eave_z[prim]
    salt = scene.salt[prim]
    storey = np.floor(z / floor_m)
    fz = z / floor_m - storey
    fs = _frac(s / pitch + (salt % 97) / 97.0)
    curtain = pitch < 2.0
    fz_lo, fz_hi = np.where(curtain, 0.10, 0.30), np.where(curtain, 0.92, 0.80)
    fs_lo, fs_hi = np.where(curtain, 0.06, 0.18), np.where(curtain, 0.94, 0.82)
    window = (fz > fz_lo) & (fz < fz_hi) & (fs > fs_lo) & (fs < fs_hi) & (z < eave - 0.6) & (z > 0.4)
    wall = scene.rgb_side[prim] * (0.86 + 0.28 * fbm(s, z, 3.0, 41, 2))[:, None]
    wall = np.where((fz < 0.06)[:, None] & (z > 1.0)[:, None], wall * 0.82, wall)
    wid = np.floor(s / pitch + (salt % 97) / 97.0) * 131.0 + storey
    rnd = cell_random(wid, salt.astype(np.float64), 1.0, 53)
    glass = np.where((rnd > 0.82)[:, None], (0.34, 0.32, 0.29),
                     np.asarray((0.05, 0.07, 0.09)) * (0.7 + 0.6 * rnd)[:, None])
    return np.where(window[:, None], glass, wall)


def _flat_roof(scene: Scene, prim: np.ndarray, p: np.ndarray) -> np.ndarray:
    dx, dy = p[:, 0] - scene.centre[prim, 0], p[:, 1] - scene.centre[prim, 1]
    ax = scene.axis[prim]
    a = dx * ax[:, 0] + dy * ax[:, 1]
    b = -dx * ax[:, 1] + dy * ax[:, 0]
    edge = np.minimum(scene.half[prim, 0] - np.abs(a), scene.half[prim, 1] - np.abs(b))
    style = scene.roof_style[prim]
    grain = np.where(style == 1, 0.6 + 0.8 * value_noise(p[:, 0] / 0.3, p[:, 1] / 0.3, 61),
                     0.9 + 0.2 * value_noise(p[:, 0] / 0.6, p[:, 1] / 0.6, 62))
    col = scene.rgb_top[prim] * ((0.82 + 0.36 * fbm(p[:, 0], p[:, 1], 5.0, 63, 3)) * grain)[:, None]
    seams = (style == 0) & (_frac(a / 1.5) < 0.05)
    col = np.where(seams[:, None], col * 0.9, col)
    panel = (style == 2) & (edge > 2.5) & (_frac(b / 2.6) < 0.72) & (_frac(a / 1.1) < 0.93)
    col = np.where(panel[:, None], (0.05, 0.07, 0.15), col)
    return np.where((edge < 0.45)[:, None], col * 0.72, col)


def _pitched_roof(scene: Scene, prim: np.ndarray, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    s = -n[:, 1] * p[:, 0] + n[:, 0] * p[:, 1]
    tile = cell_random(s + 0.5 * np.floor(p[:, 2] / 0.35), p[:, 2], 0.35, 71)
    shade = (0.85 + 0.3 * fbm(p[:, 0], p[:, 1], 3.0, 72, 2)) * (0.88 + 0.24 * tile)
    rows = np.where(_frac(p[:, 2] / 0.35) < 0.15, 0.8, 1.0)
    return scene.rgb_top[prim] * (shade * rows)[:, None]


def _unit_colour(scene: Scene, prim: np.ndarray, p: np.ndarray, n: np.ndarray, top: np.ndarray) -> np.ndarray:
    dx, dy = p[:, 0] - scene.centre[prim, 0], p[:, 1] - scene.centre[prim, 1]
    r = np.minimum(scene.half[prim, 0], scene.half[prim, 1]) * 0.6
    fan = top & (dx * dx + dy * dy < r * r)
    s = -n[:, 1] * p[:, 0] + n[:, 0] * p[:, 1]
    louvre = ~top & (_frac(p[:, 2] / 0.25) < 0.4)
    col = np.where(top[:, None], scene.rgb_top[prim], scene.rgb_side[prim])
    col = col * (0.9 + 0.2 * value_noise(s / 0.5 + p[:, 2], p[:, 0] + p[:, 1], 81))[:, None]
    col = np.where(fan[:, None], (0.10, 0.10, 0.11), col)
    return np.where(louvre[:, None], col * 0.75, col)


def _crowns(scene: Scene, e: np.ndarray, p: np.ndarray, n: np.ndarray, green: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """Tree crown albedo and a bumpy shading normal. ([n, 3], [n, 3])"""
    tint = scene.ell_tint[e]
    summer = _lerp((0.05, 0.13, 0.035), (0.10, 0.17, 0.05), tint)
    winter = np.where(scene.ell_evergreen[e][:, None], np.asarray((0.045, 0.10, 0.045)), _lerp(
        (0.22, 0.19, 0.15), (0.27, 0.22, 0.16), tint))
    col = winter + (summer - winter) * green
    qx, qy = p[:, 0] + 0.6 * p[:, 2], p[:, 1] - 0.45 * p[:, 2]
    clumps = fbm(qx, qy, 1.6, 91 + 0, 3)
    col = col * (0.55 + 0.9 * clumps)[:, None]
    bump = np.stack([value_noise(qx / 0.9, qy / 0.9, 92 + k) - 0.5 for k in range(3)], axis=-1)
    nn = n + 1.2 * bump
    nn = nn / np.sqrt(nn[:, 0] ** 2 + nn[:, 1] ** 2 + nn[:, 2] ** 2)[:, None]
    return col, nn


def albedo_and_normals(scene: Scene, city: C.City, p: np.ndarray, hits: Hits, green: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Albedo [n, 3], shading normal [n, 3] and a glass mask [n] at the hit points ``p``."""
    n_all = hits.normal.copy()
    alb = np.zeros_like(p)
    glass = np.zeros(len(p), dtype=bool)
    prim = hits.prim
    ground = prim == GROUND_ID
    if np.any(ground):
        alb[ground] = ground_albedo(city, p[ground, 0], p[ground, 1], green)
    poly = (prim >= 0) & (prim < scene.n_poly)
    if np.any(poly):
        idx = np.nonzero(poly)[0]
        pr, pp, nn = prim[idx], p[idx], n_all[idx]
        kind = scene.kind[pr]
        top = nn[:, 2] > 0.99
        side = np.abs(nn[:, 2]) < 0.05
        sloped = ~top & ~side & (nn[:, 2] > 0)
        col = np.zeros_like(pp)
        building = (kind == BODY) | (kind == ROOF)
        sel = building & side
        if np.any(sel):
            col[sel] = _facade(scene, pr[sel], pp[sel], nn[sel])
            w = col[sel]
            glass_idx = idx[sel][(w[:, 0] < 0.12) & (w[:, 2] > w[:, 0])]
            glass[glass_idx] = True
        sel = (kind == BODY) & top
        if np.any(sel):
            col[sel] = _flat_roof(scene, pr[sel], pp[sel])
        sel = (kind == ROOF) & sloped
        if np.any(sel):
            col[sel] = _pitched_roof(scene, pr[sel], pp[sel], nn[sel])
        sel = kind == UNIT
        if np.any(sel):
            col[sel] = _unit_colour(scene, pr[sel], pp[sel], nn[sel], top[sel])
        sel = (kind == CAR_BODY) | ((kind == CAR_CABIN) & top)
        if np.any(sel):
            noise = value_noise(pp[sel, 0] / 0.3, pp[sel, 1] / 0.3, 101)
            col[sel] = scene.rgb_top[pr[sel]] * (0.95 + 0.1 * noise)[:, None]
        sel = (kind == CAR_CABIN) & ~top
        if np.any(sel):
            col[sel] = scene.rgb_side[pr[sel]]
        sel = kind == TRUNK
        if np.any(sel):
            col[sel] = scene.rgb_side[pr[sel]]
        alb[idx] = col
    crown = prim >= scene.n_poly
    if np.any(crown):
        idx = np.nonzero(crown)[0]
        alb[idx], n_all[idx] = _crowns(scene, prim[idx] - scene.n_poly, p[idx], n_all[idx], green)
    return alb, n_all, glass


def sky_radiance(d: np.ndarray) -> np.ndarray:
    """Radiance of the clear sky along unit directions d [n, 3] (a zenith-horizon gradient)."""
    h = np.sqrt(np.clip(d[:, 2], 0.0, 1.0))[:, None]
    return _lerp((0.62, 0.68, 0.76), (0.28, 0.42, 0.68), h[:, 0])


def shade(scene: Scene, city: C.City, origins: np.ndarray, dirs: np.ndarray, hits: Hits, light: Lighting,
          *, fog_m: float = 0.0) -> np.ndarray:
    """Linear radiance [n, 3] of the rays' first hits: sun (with cast shadows) + sky light.

    ``fog_m`` > 0 adds aerial perspective (blend toward the horizon sky over that distance).
    """
    n = len(hits.t)
    out = np.zeros((n, 3))
    sky = hits.prim == SKY_ID
    if np.any(sky):
        out[sky] = sky_radiance(dirs[sky])
    solid = np.nonzero(~sky)[0]
    p = origins[solid] + dirs[solid] * hits.t[solid, None]
    sub = Hits(t=hits.t[solid], prim=hits.prim[solid], normal=hits.normal[solid])
    alb, nrm, glass = albedo_and_normals(scene, city, p, sub, light.greenness)
    s = np.asarray(light.sun_dir, dtype=np.float64)
    geo_ndl = sub.normal[:, 0] * s[0] + sub.normal[:, 1] * s[1] + sub.normal[:, 2] * s[2]
    ndl = np.clip(nrm[:, 0] * s[0] + nrm[:, 1] * s[1] + nrm[:, 2] * s[2], 0.0, 1.0)
    crown = sub.prim >= scene.n_poly
    ndl = np.where(crown, 0.35 + 0.65 * ndl, ndl)  # foliage scatters light around the crown
    lit = np.nonzero((geo_ndl > 0) | crown)[0]
    shadow = np.zeros(len(p), dtype=bool)
    if len(lit):
        start = p[lit] + sub.normal[lit] * 0.02 + s * 0.02
        shadow[lit] = trace_parallel(scene, start, s, any_hit=True)
    sun = np.where(shadow | ((geo_ndl <= 0) & ~crown), 0.0, ndl)
    sky_w = 0.5 + 0.5 * nrm[:, 2]
    irr = np.asarray(light.sun_rgb) * sun[:, None] + np.asarray(light.sky_rgb) * sky_w[:, None]
    rad = alb * irr
    rad = np.where(glass[:, None], rad + 0.18 * np.asarray(light.sky_rgb) + 0.02, rad)
    if fog_m > 0:
        k = hits.t[solid] / fog_m
        keep = 1.0 / (1.0 + k + 0.5 * k * k)  # ~exp(-k) without a maths-library call
        rad = rad * keep[:, None] + sky_radiance(np.tile([0.0, 0.0, 0.05], (len(k), 1))) * (1 - keep)[:, None]
    out[solid] = rad
    return out
