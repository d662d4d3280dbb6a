"""Exact, vectorised ray casting of the synthetic city (numpy only, bit-reproducible).

The scene is the ground plane z = 0 (local ENU, metres), convex polyhedra (building parts,
pitched roofs, rooftop units, cars, tree trunks; each a set of half-spaces ``n . x <= d``) and
ellipsoids (tree crowns). Rays are tested analytically, only against the primitives whose
projection can contain them: for a pinhole camera the primitive's image bounding box, for a
bundle of parallel rays (shadows, the DSM) its bounding box on the plane across the rays.

Only ``+ - * /``, ``sqrt`` and comparisons touch per-ray data, so the result does not depend on
the machine's maths library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skyfall_core.sample.city import City

# primitive kinds
BODY, ROOF, UNIT, CAR_BODY, CAR_CABIN, TRUNK, CROWN = range(7)
GROUND_ID, SKY_ID = -1, -2
_MAX_FACES, _MAX_VERTS = 6, 8
_EPS = 1e-6


@dataclass(frozen=True)
class Scene:
    """Primitive tables for the tracer and the shader. P polyhedra, E ellipsoids."""

    planes: np.ndarray  # [P, 6, 4] (nx, ny, nz, d), inside where n.x <= d; padding (0, 0, 0, 1)
    verts: np.ndarray  # [P, 8, 3] vertices (padding repeats a vertex)
    kind: np.ndarray  # [P] int: BODY, ROOF, UNIT, CAR_BODY, CAR_CABIN, TRUNK
    rgb_top: np.ndarray  # [P, 3] roof / top colour (linear albedo)
    rgb_side: np.ndarray  # [P, 3] wall / side colour
    owner: np.ndarray  # [P] building index, or -1
    floor_m: np.ndarray  # [P] storey height of the facade
    window_pitch_m: np.ndarray  # [P]
    eave_z: np.ndarray  # [P] top of the walls (m); windows stop below it
    roof_style: np.ndarray  # [P] flat roofs: 0 membrane, 1 gravel, 2 solar panels
    centre: np.ndarray  # [P, 2] centre of the box footprint (ENU x, y)
    axis: np.ndarray  # [P, 2] unit vector of the box's first footprint axis (ENU)
    half: np.ndarray  # [P, 2] half sizes of the box footprint along axis and its normal
    salt: np.ndarray  # [P] int, texture seed
    ell_centre: np.ndarray  # [E, 3]
    ell_radii: np.ndarray  # [E, 3]
    ell_evergreen: np.ndarray  # [E] bool
    ell_tint: np.ndarray  # [E] 0..1
    z_top: float  # highest point of the scene (m)

    @property
    def n_poly(self) -> int:
        return int(self.planes.shape[0])


@dataclass
class Hits:
    """First hits of N rays: ``prim`` is GROUND_ID, SKY_ID, 0..P-1 (polyhedra) or P.. (ellipsoids)."""

    t: np.ndarray  # [N] distance along the unit ray direction (inf for the sky)
    prim: np.ndarray  # [N] int
    normal: np.ndarray  # [N, 3] unit outward normal


@dataclass(frozen=True)
class PinholeCamera:
    """OpenCV pinhole: x right, y down, z forward; pixel centres at integer coordinates."""

    K: np.ndarray  # [3, 3]
    w2c: np.ndarray  # [4, 4] local ENU -> camera
    width: int
    height: int

    @property
    def centre(self) -> np.ndarray:  # [3] ENU
        R, t = self.w2c[:3, :3], self.w2c[:3, 3]
        return -np.array([R[0, i] * t[0] + R[1, i] * t[1] + R[2, i] * t[2] for i in range(3)])

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ENU points [..., 3] -> (row, col, depth) in pixels (centres at integers) and metres."""
        pts = np.asarray(pts, dtype=np.float64)
        R, t = self.w2c[:3, :3], self.w2c[:3, 3]
        xc = [pts[..., 0] * R[i, 0] + pts[..., 1] * R[i, 1] + pts[..., 2] * R[i, 2] + t[i] for i in range(3)]
        K = self.K
        col = (K[0, 0] * xc[0] + K[0, 1] * xc[1]) / xc[2] + K[0, 2]
        row = K[1, 1] * xc[1] / xc[2] + K[1, 2]
        return row, col, xc[2]


# ------------------------------------------------------------------------------ primitives
def _d3(a, b) -> float:
    """Dot product of two 3-vectors in plain floats (no BLAS: bit-reproducible)."""
    return float(a[0]) * float(b[0]) + float(a[1]) * float(b[1]) + float(a[2]) * float(b[2])


def _unit(a: np.ndarray) -> np.ndarray:
    return a / math.sqrt(_d3(a, a))


def _box(cx: float, cy: float, ax: tuple[float, float], h1: float, h2: float, z0: float, z1: float):
    """Oriented box: footprint centre, unit axis (ENU), half sizes, z range -> (planes, verts)."""
    a = np.array([ax[0], ax[1], 0.0])
    b = np.array([-ax[1], ax[0], 0.0])
    c = np.array([cx, cy, 0.0])
    ez = np.array([0.0, 0.0, 1.0])
    planes = [(a, _d3(a, c) + h1), (-a, -_d3(a, c) + h1), (b, _d3(b, c) + h2), (-b, -_d3(b, c) + h2),
              (ez, z1), (-ez, -z0)]
    verts = [c + sa * h1 * a + sb * h2 * b + z * ez for z in (z0, z1) for sa in (-1, 1) for sb in (-1, 1)]
    return np.array([[*n, d] for n, d in planes]), np.array(verts)


def _pitched(cx: float, cy: float, ax: tuple[float, float], h1: float, h2: float, z0: float, rise: float,
             hip: bool):
    """Gable (ridge along ``ax``, vertical ends) or hip roof over a box footprint, h1 >= h2."""
    a = np.array([ax[0], ax[1], 0.0])
    b = np.array([-ax[1], ax[0], 0.0])
    c = np.array([cx, cy, z0])
    ez = np.array([0.0, 0.0, 1.0])
    planes = []
    for sb in (-1.0, 1.0):  # the long slopes through the eave lines and the ridge
        n = _unit(sb * rise * b + h2 * ez)
        planes.append((n, _d3(n, c + sb * h2 * b)))
    ridge_half = h1 - h2 if hip else h1
    for sa in (-1.0, 1.0):
        if hip:  # the end slopes, same pitch
            n = _unit(sa * rise * a + h2 * ez)
            planes.append((n, _d3(n, c + sa * h1 * a)))
        else:
            planes.append((sa * a, sa * _d3(a, c) + h1))
    planes.append((-ez, -z0))
    verts = [c + sa * h1 * a + sb * h2 * b for sa in (-1, 1) for sb in (-1, 1)]
    verts += [c + sa * ridge_half * a + rise * ez for sa in (-1, 1)]
    return np.array([[*n, d] for n, d in planes]), np.array(verts)


def build_scene(city: City) -> Scene:
    """Turn the city description into primitive tables (ENU)."""
    rows: list[dict] = []
    th = math.radians(city.rotation_deg)
    axis_u = (math.cos(th), math.sin(th))

    def rect_geom(r):
        (u0, v0, u1, v1) = r
        cx, cy = city.to_enu((u0 + u1) / 2, (v0 + v1) / 2)
        return float(cx), float(cy), (u1 - u0) / 2, (v1 - v0) / 2

    def add(planes, verts, kind, top, side, *, owner=-1, floor_m=3.0, pitch=3.0, eave=0.0, style=0,
            centre=(0.0, 0.0), ax=axis_u, half=(1.0, 1.0)):
        P = np.zeros((_MAX_FACES, 4))
        P[:, 3] = 1.0
        P[: len(planes)] = planes
        V = np.repeat(verts[:1], _MAX_VERTS, axis=0)
        V[: len(verts)] = verts
        rows.append(dict(planes=P, verts=V, kind=kind, rgb_top=top, rgb_side=side, owner=owner,
                         floor_m=floor_m, window_pitch_m=pitch, eave_z=eave, roof_style=style,
                         centre=centre, axis=ax, half=half, salt=len(rows) * 7919 + 13))

    for bi, bl in enumerate(city.buildings):
        common = dict(owner=bi, floor_m=bl.floor_m, pitch=bl.window_pitch_m, eave=bl.eave_m, style=bl.roof_style)
        for part in bl.parts:
            cx, cy, h1, h2 = rect_geom(part)
            planes, verts = _box(cx, cy, axis_u, h1, h2, 0.0, bl.eave_m)
            add(planes, verts, BODY, bl.roof_rgb, bl.wall_rgb, centre=(cx, cy), half=(h1, h2), **common)
            if bl.roof != "flat":
                ax, g1, g2 = (axis_u, h1, h2) if h1 >= h2 else ((-axis_u[1], axis_u[0]), h2, h1)
                planes, verts = _pitched(cx, cy, ax, g1, g2, bl.eave_m, bl.ridge_m, bl.roof == "hip")
                add(planes, verts, ROOF, bl.roof_rgb, bl.wall_rgb, centre=(cx, cy), ax=ax, half=(g1, g2), **common)
        for (u0, v0, u1, v1, h) in bl.hvac:
            cx, cy, h1, h2 = rect_geom((u0, v0, u1, v1))
            planes, verts = _box(cx, cy, axis_u, h1, h2, bl.eave_m, bl.eave_m + h)
            add(planes, verts, UNIT, (0.60, 0.61, 0.62), (0.52, 0.53, 0.54), owner=bi, centre=(cx, cy),
                half=(h1, h2), eave=bl.eave_m + h)
    for car in city.cars:
        cx, cy = (float(v) for v in city.to_enu(car.u, car.v))
        yaw = th + math.radians(car.yaw_deg)
        ax = (math.cos(yaw), math.sin(yaw))
        planes, verts = _box(cx, cy, ax, car.length_m / 2, car.width_m / 2, 0.0, 0.95)
        add(planes, verts, CAR_BODY, car.rgb, car.rgb, centre=(cx, cy), ax=ax, half=(car.length_m / 2, car.width_m / 2))
        ox, oy = cx - 0.15 * ax[0], cy - 0.15 * ax[1]
        planes, verts = _box(ox, oy, ax, car.length_m * 0.27, car.width_m / 2 - 0.12, 0.95, 1.45)
        add(planes, verts, CAR_CABIN, car.rgb, (0.05, 0.06, 0.07), centre=(ox, oy), ax=ax,
            half=(car.length_m * 0.27, car.width_m / 2 - 0.12))
    for tree in city.trees:
        cx, cy = (float(v) for v in city.to_enu(tree.u, tree.v))
        planes, verts = _box(cx, cy, axis_u, 0.18, 0.18, 0.0, tree.crown_centre_z)
        add(planes, verts, TRUNK, (0.25, 0.18, 0.12), (0.25, 0.18, 0.12), centre=(cx, cy), half=(0.18, 0.18))

    def stack(key, dtype=np.float64):
        return np.array([r[key] for r in rows], dtype=dtype)

    ell_c = np.array([[*(float(v) for v in city.to_enu(t.u, t.v)), t.crown_centre_z] for t in city.trees])
    ell_r = np.array([[t.crown_radius_m, t.crown_radius_m, t.crown_half_height_m] for t in city.trees])
    return Scene(
        planes=stack("planes"), verts=stack("verts"), kind=stack("kind", np.int64),
        rgb_top=stack("rgb_top"), rgb_side=stack("rgb_side"), owner=stack("owner", np.int64),
        floor_m=stack("floor_m"), window_pitch_m=stack("window_pitch_m"), eave_z=stack("eave_z"),
        roof_style=stack("roof_style", np.int64), centre=stack("centre"), axis=stack("axis"),
        half=stack("half"), salt=stack("salt", np.int64),
        ell_centre=ell_c.reshape(-1, 3), ell_radii=ell_r.reshape(-1, 3),
        ell_evergreen=np.array([t.evergreen for t in city.trees], dtype=bool),
        ell_tint=np.array([t.tint for t in city.trees]),
        z_top=float(max(np.max(stack("verts")[..., 2]), np.max(ell_c[:, 2] + ell_r[:, 2], initial=0.0))),
    )


def _ell_verts(scene: Scene, e: int) -> np.ndarray:
    """The 8 corners of an ellipsoid's axis-aligned bounding box. [8, 3]"""
    c, r = scene.ell_centre[e], scene.ell_radii[e]
    s = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    return c + s * r


# ------------------------------------------------------------------------------ intersection
def _dot3(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot product of [..., 3] arrays (explicit sums: no BLAS, bit-reproducible)."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def intersect_convex(planes: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays o + t d (o, d [n, 3]) against one convex polyhedron (planes [F, 4]).

    Returns (t [n], face [n]): the entry distance (inf where missed or entered behind the origin)
    and the index of the entry face.
    """
    n = planes[None, :, :3]  # [1, F, 3]
    denom = d[:, None, 0] * n[..., 0] + d[:, None, 1] * n[..., 1] + d[:, None, 2] * n[..., 2]  # [n, F]
    num = planes[None, :, 3] - (o[:, None, 0] * n[..., 0] + o[:, None, 1] * n[..., 1] + o[:, None, 2] * n[..., 2])
    with np.errstate(divide="ignore", invalid="ignore"):
        tp = num / denom
    t_in = np.where(denom < 0, tp, -np.inf)
    t_out = np.where(denom > 0, tp, np.inf)
    face = np.argmax(t_in, axis=1)
    t_enter = np.take_along_axis(t_in, face[:, None], axis=1)[:, 0]
    t_exit = np.min(t_out, axis=1)
    outside_parallel = np.any((denom == 0) & (num < 0), axis=1)
    hit = (t_enter <= t_exit) & (t_enter > _EPS) & ~outside_parallel
    return np.where(hit, t_enter, np.inf), face


def intersect_ellipsoid(centre: np.ndarray, radii: np.ndarray, o: np.ndarray, d: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Rays against an axis-aligned ellipsoid. Returns (t [n] (inf = miss), normal [n, 3])."""
    oo = (o - centre) / radii
    dd = d / radii
    a = _dot3(dd, dd)
    b = _dot3(oo, dd)
    c = _dot3(oo, oo) - 1.0
    disc = b * b - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t = (-b - root) / a
    hit = (disc >= 0) & (t > _EPS)
    t = np.where(hit, t, np.inf)
    p = o + d * np.where(hit, t, 0.0)[:, None]
    nrm = (p - centre) / (radii * radii)
    nrm = nrm / np.sqrt(_dot3(nrm, nrm))[:, None]
    return t, nrm


def _ground(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rays against the ground plane z = 0 (from above). Returns (t, prim id)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -o[:, 2] / d[:, 2]
    down = (d[:, 2] < 0) & (o[:, 2] >= 0)
    return np.where(down, t, np.inf), np.where(down, GROUND_ID, SKY_ID)


def _update(hits: Hits, idx: np.ndarray, t: np.ndarray, prim: int, normal: np.ndarray) -> None:
    better = t < hits.t[idx]
    if np.any(better):
        sel = idx[better]
        hits.t[sel] = t[better]
        hits.prim[sel] = prim
        hits.normal[sel] = normal[better]


# ------------------------------------------------------------------------------ pinhole rays
def camera_rays(cam: PinholeCamera, ss: int, z_start: float) -> tuple[np.ndarray, np.ndarray]:
    """Ray origins and unit directions of an ss x ss supersampled pinhole image.

    Sample (i, j) of the [H*ss, W*ss] grid sits at pixel coordinates ((j + .5)/ss - .5,
    (i + .5)/ss - .5). Origins are moved along the ray to the plane z = ``z_start`` when the
    camera is above it (far satellite cameras), for precision. Returns ([M, 3], [M, 3]) row-major.
    """
    H, W = cam.height * ss, cam.width * ss
    xs = (np.arange(W) + 0.5) / ss - 0.5
    ys = (np.arange(H) + 0.5) / ss - 0.5
    K = cam.K
    yc = (ys - K[1, 2]) / K[1, 1]  # [H]
    xc = (xs[None, :] - K[0, 2] - K[0, 1] * yc[:, None]) / K[0, 0]  # [H, W]
    R = cam.w2c[:3, :3]
    dirs = (xc[..., None] * R[0] + yc[:, None, None] * R[1] + R[2]).reshape(-1, 3)  # R^T [x, y, 1]
    dirs = dirs / np.sqrt(_dot3(dirs, dirs))[:, None]
    C = cam.centre
    origins = np.broadcast_to(C, dirs.shape).copy()
    if C[2] > z_start:
        with np.errstate(divide="ignore"):
            t0 = np.where(dirs[:, 2] < 0, (C[2] - z_start) / -dirs[:, 2], 0.0)
        origins = C + dirs * t0[:, None]
    return origins, dirs


def trace_pinhole(scene: Scene, cam: PinholeCamera, ss: int) -> tuple[np.ndarray, np.ndarray, Hits]:
    """First hits of the supersampled pixel rays of ``cam``. Returns (origins, dirs, hits), [M]."""
    Hs, Ws = cam.height * ss, cam.width * ss
    o, d = camera_rays(cam, ss, scene.z_top + 1.0)
    t, prim = _ground(o, d)
    hits = Hits(t=t, prim=prim.astype(np.int64), normal=np.tile([0.0, 0.0, 1.0], (len(t), 1)))

    def block(verts: np.ndarray) -> np.ndarray | None:
        row, col, depth = cam.project(verts)
        if np.any(depth <= 1e-3):
            i0, i1, j0, j1 = 0, Hs - 1, 0, Ws - 1
        else:
            i0 = max(int(math.floor((row.min() + 0.5) * ss - 0.5)) - 1, 0)
            i1 = min(int(math.ceil((row.max() + 0.5) * ss - 0.5)) + 1, Hs - 1)
            j0 = max(int(math.floor((col.min() + 0.5) * ss - 0.5)) - 1, 0)
            j1 = min(int(math.ceil((col.max() + 0.5) * ss - 0.5)) + 1, Ws - 1)
        if i0 > i1 or j0 > j1:
            return None
        return (np.arange(i0, i1 + 1)[:, None] * Ws + np.arange(j0, j1 + 1)[None, :]).reshape(-1)

    for p in range(scene.n_poly):
        idx = block(scene.verts[p])
        if idx is not None:
            tp, face = intersect_convex(scene.planes[p], o[idx], d[idx])
            _update(hits, idx, tp, p, scene.planes[p, face, :3])
    for e in range(len(scene.ell_centre)):
        idx = block(_ell_verts(scene, e))
        if idx is not None:
            te, nrm = intersect_ellipsoid(scene.ell_centre[e], scene.ell_radii[e], o[idx], d[idx])
            _update(hits, idx, te, scene.n_poly + e, nrm)
    return o, d, hits


# ------------------------------------------------------------------------------ parallel rays
def _across_basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to ``direction`` (and to each other)."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = _unit(np.cross(direction, helper))
    return e1, np.cross(direction, e1)


def trace_parallel(scene: Scene, origins: np.ndarray, direction: np.ndarray, *, any_hit: bool = False
                   ) -> Hits | np.ndarray:
    """Rays from ``origins`` [n, 3] along one unit ``direction`` [3] (the sun, the vertical).

    With ``any_hit`` returns a bool mask [n] of the rays that hit a primitive (shadow test, the
    ground ignored); else the first hits (ground included) as :class:`Hits`.
    """
    direction = np.asarray(direction, dtype=np.float64)
    n = len(origins)
    d = np.broadcast_to(direction, (n, 3))
    e1, e2 = _across_basis(direction)
    pu, pw, ps = _dot3(origins, e1), _dot3(origins, e2), _dot3(origins, direction)
    order = np.argsort(pu, kind="stable")
    pu_sorted = pu[order]
    if any_hit:
        blocked = np.zeros(n, dtype=bool)
    else:
        t, prim = _ground(origins, d)
        hits = Hits(t=t, prim=prim.astype(np.int64), normal=np.tile([0.0, 0.0, 1.0], (n, 1)))

    def candidates(verts: np.ndarray) -> np.ndarray:
        vu, vw, vs = _dot3(verts, e1), _dot3(verts, e2), _dot3(verts, direction)
        lo, hi = np.searchsorted(pu_sorted, [vu.min() - 1e-6, vu.max() + 1e-6])
        idx = order[lo:hi]
        keep = (pw[idx] >= vw.min() - 1e-6) & (pw[idx] <= vw.max() + 1e-6) & (ps[idx] < vs.max())
        idx = idx[keep]
        return idx[~blocked[idx]] if any_hit else idx

    for p in range(scene.n_poly):
        idx = candidates(scene.verts[p])
        if len(idx):
            tp, face = intersect_convex(scene.planes[p], origins[idx], d[idx])
            if any_hit:
                blocked[idx[np.isfinite(tp)]] = True
            else:
                _update(hits, idx, tp, p, scene.planes[p, face, :3])
    for e in range(len(scene.ell_centre)):
        idx = candidates(_ell_verts(scene, e))
        if len(idx):
            te, nrm = intersect_ellipsoid(scene.ell_centre[e], scene.ell_radii[e], origins[idx], d[idx])
            if any_hit:
                blocked[idx[np.isfinite(te)]] = True
            else:
                _update(hits, idx, te, scene.n_poly + e, nrm)
    return blocked if any_hit else hits


def surface_height(scene: Scene, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height (ENU z, m) of the top surface at (x, y): vertical rays from above. Same shape."""
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    z0 = scene.z_top + 10.0
    o = np.stack([x.ravel(), y.ravel(), np.full(x.size, z0)], axis=-1)
    hits = trace_parallel(scene, o, np.array([0.0, 0.0, -1.0]))
    return (z0 - hits.t).reshape(x.shape)
