"""The synthetic city: a plain description (buildings, trees, cars, roads, ground patches).

Everything is laid out in a *city frame* (u, v) in metres: the local ENU frame rotated by
``City.rotation_deg`` counter-clockwise (street grids are rarely exactly north-aligned), with
the same origin (the AOI centre on the ground) and ``z`` up, ground at z = 0. The ENU frame is
``City.frame`` (a :class:`~skyfall_core.geo.frames.LocalFrame`), so everything can be taken to
WGS84/UTM. The layout is fixed (block types, roads); sizes, heights, colours, counts of trees and
cars are drawn from ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skyfall_core.geo.frames import LocalFrame

Rect = tuple[float, float, float, float]  # (u0, v0, u1, v1) in the city frame, metres
RGB = tuple[float, float, float]  # linear albedo, 0..1

# Where the sample sits: downtown Omaha, Nebraska (the buildings are invented). Ground height
# 293 m above the WGS84 ellipsoid (about 321 m above sea level; geoid undulation about -28 m).
SITE_LON, SITE_LAT, SITE_H = -95.9380, 41.2585, 293.0
ROTATION_DEG = 9.0  # street grid, counter-clockwise from east
MODELLED_HALF_M = 150.0  # buildings, trees, cars within |u|, |v| <= this
AOI_HALF_M = 105.0  # the AOI: an ENU-aligned square of this half side
SIDEWALK_M = 3.5

# ground materials
GRASS, CONCRETE, ASPHALT, LOT, SIDEWALK, PATH, DRIVEWAY, POOL, POND, SOIL = range(10)
GROUND_MATERIALS = ("grass", "concrete", "asphalt", "parking", "sidewalk", "path", "driveway",
                    "pool", "pond", "soil")


@dataclass(frozen=True)
class Building:
    """A building: the union of rectangular parts, walls up to ``eave_m``, then the roof."""

    name: str
    use: str  # tower, office, apartments, store, house, pavilion, ...
    parts: tuple[Rect, ...]
    eave_m: float  # height of the walls (= the flat roof) above the ground
    roof: str  # "flat" | "gable" | "hip"; pitched roofs only on single-part buildings
    ridge_m: float  # height of the ridge above the eave (0 for flat roofs)
    wall_rgb: RGB
    roof_rgb: RGB
    floor_m: float  # storey height (window rows)
    window_pitch_m: float  # window spacing along the facade
    roof_style: int  # flat roofs: 0 membrane, 1 gravel, 2 solar panels
    hvac: tuple[tuple[float, float, float, float, float], ...]  # (u0, v0, u1, v1, height above roof)

    @property
    def top_m(self) -> float:
        """Highest point above the ground (ridge or rooftop equipment)."""
        return self.eave_m + max([self.ridge_m] + [h[4] for h in self.hvac])


@dataclass(frozen=True)
class Tree:
    u: float
    v: float
    crown_radius_m: float  # horizontal semi-axis of the ellipsoidal crown
    crown_half_height_m: float  # vertical semi-axis
    trunk_m: float  # height of the crown's bottom above the ground
    evergreen: bool
    tint: float  # colour variation, 0..1

    @property
    def crown_centre_z(self) -> float:
        return self.trunk_m + self.crown_half_height_m


@dataclass(frozen=True)
class Car:
    u: float
    v: float
    yaw_deg: float  # direction of the car's length, counter-clockwise from the city u axis
    rgb: RGB
    length_m: float = 4.5
    width_m: float = 1.8


@dataclass(frozen=True)
class Road:
    """A straight road along a city axis: ``axis='v'`` runs along v at u = ``pos`` (an avenue)."""

    axis: str
    pos: float
    half_width_m: float  # half the carriageway
    lines: tuple[tuple[float, str], ...]  # (offset from the centre line, "yellow2"|"white"|"dash")


@dataclass(frozen=True)
class ParkingLot:
    rect: Rect
    stall_w_m: float = 2.7  # along u
    stall_d_m: float = 5.4  # along v
    aisle_m: float = 6.6


@dataclass(frozen=True)
class City:
    frame: LocalFrame
    rotation_deg: float
    buildings: tuple[Building, ...]
    trees: tuple[Tree, ...]
    cars: tuple[Car, ...]
    roads: tuple[Road, ...]
    lots: tuple[ParkingLot, ...]
    patches: tuple[tuple[Rect, int], ...]  # ground patches painted in order over grass
    modelled_half_m: float = MODELLED_HALF_M
    aoi_half_m: float = AOI_HALF_M

    def to_enu(self, u, v) -> tuple[np.ndarray, np.ndarray]:
        """City frame -> ENU (x east, y north), metres."""
        c, s = math.cos(math.radians(self.rotation_deg)), math.sin(math.radians(self.rotation_deg))
        u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
        return u * c - v * s, u * s + v * c

    def to_city(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """ENU (x, y) -> city frame (u, v), metres."""
        c, s = math.cos(math.radians(self.rotation_deg)), math.sin(math.radians(self.rotation_deg))
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        return x * c + y * s, -x * s + y * c

    @property
    def max_height_m(self) -> float:
        """Highest point of the scene above the ground (buildings, trees)."""
        tops = [b.top_m for b in self.buildings] + [t.trunk_m + 2 * t.crown_half_height_m for t in self.trees]
        return max(tops)


# ----------------------------------------------------------------------------------- layout
_WALLS: tuple[RGB, ...] = (
    (0.42, 0.22, 0.16), (0.60, 0.54, 0.44), (0.50, 0.50, 0.48), (0.72, 0.70, 0.66),
    (0.58, 0.47, 0.33), (0.36, 0.34, 0.33), (0.55, 0.36, 0.26), (0.66, 0.62, 0.52),
)
_FLAT_ROOFS: tuple[RGB, ...] = ((0.62, 0.62, 0.60), (0.78, 0.78, 0.76), (0.30, 0.30, 0.29),
                                (0.20, 0.20, 0.21), (0.48, 0.46, 0.43))
_PITCHED_ROOFS: tuple[RGB, ...] = ((0.50, 0.22, 0.13), (0.22, 0.22, 0.24), (0.34, 0.25, 0.18),
                                   (0.18, 0.30, 0.22), (0.40, 0.40, 0.42))
_CARS: tuple[RGB, ...] = ((0.75, 0.75, 0.74), (0.05, 0.05, 0.06), (0.45, 0.46, 0.48),
                          (0.55, 0.08, 0.06), (0.08, 0.16, 0.42), (0.28, 0.28, 0.30), (0.60, 0.55, 0.45))
_CAR_P = (0.26, 0.22, 0.18, 0.09, 0.09, 0.11, 0.05)


def _roads() -> tuple[Road, ...]:
    two_lane = ((0.0, "yellow2"), (-3.5, "white"), (3.5, "white"))  # parking lanes outside +-3.5
    return (
        Road("v", -202.0, 6.0, two_lane),
        Road("v", -72.0, 9.0, ((0.0, "yellow2"), (-4.5, "dash"), (4.5, "dash"))),  # 4-lane avenue
        Road("v", 58.0, 6.0, two_lane),
        Road("v", 188.0, 6.0, two_lane),
        Road("u", -196.0, 6.0, two_lane),
        Road("u", -66.0, 6.0, two_lane),
        Road("u", 62.0, 7.5, ((0.0, "yellow2"), (-5.5, "white"), (5.5, "white"))),  # bike lanes
        Road("u", 192.0, 6.0, two_lane),
    )


def _blocks(roads: tuple[Road, ...]) -> dict[tuple[int, int], Rect]:
    """Block interiors (inside the sidewalks) around the centre, clipped to the modelled area."""
    av = sorted((r.pos, r.half_width_m) for r in roads if r.axis == "v")
    st = sorted((r.pos, r.half_width_m) for r in roads if r.axis == "u")
    out: dict[tuple[int, int], Rect] = {}
    L = MODELLED_HALF_M
    for i in range(3):
        u0 = max(av[i][0] + av[i][1] + SIDEWALK_M, -L)
        u1 = min(av[i + 1][0] - av[i + 1][1] - SIDEWALK_M, L)
        for j in range(3):
            v0 = max(st[j][0] + st[j][1] + SIDEWALK_M, -L)
            v1 = min(st[j + 1][0] - st[j + 1][1] - SIDEWALK_M, L)
            out[(i, j)] = (u0, v0, u1, v1)
    return out


class _Layout:
    """Mutable accumulator used while building the city (local to :func:`build_city`)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.buildings: list[Building] = []
        self.trees: list[Tree] = []
        self.cars: list[Car] = []
        self.lots: list[ParkingLot] = []
        self.patches: list[tuple[Rect, int]] = []

    def j(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def hvac(self, parts: tuple[Rect, ...], n: int, big: bool = False) -> tuple:
        units = []
        for _ in range(n):
            u0, v0, u1, v1 = parts[int(self.rng.integers(len(parts)))]
            w, d = (self.j(4.0, 7.0), self.j(5.0, 9.0)) if big else (self.j(1.8, 4.5), self.j(1.8, 4.5))
            if u1 - u0 < w + 4 or v1 - v0 < d + 4:
                continue
            cu, cv = self.j(u0 + 2 + w / 2, u1 - 2 - w / 2), self.j(v0 + 2 + d / 2, v1 - 2 - d / 2)
            h = self.j(3.5, 4.5) if big else self.j(1.2, 2.6)
            units.append((round(cu - w / 2, 2), round(cv - d / 2, 2), round(cu + w / 2, 2),
                          round(cv + d / 2, 2), round(h, 2)))
        return tuple(units)

    def add(self, name: str, use: str, parts: tuple[Rect, ...], eave: float, *, roof: str = "flat",
            ridge: float = 0.0, wall: RGB | None = None, roof_rgb: RGB | None = None,
            floor_m: float = 3.6, pitch: float = 3.0, roof_style: int | None = None,
            hvac: int = 0, big_hvac: int = 0) -> None:
        parts = tuple(tuple(round(x, 2) for x in p) for p in parts)
        units = self.hvac(parts, big_hvac, big=True) + self.hvac(parts, hvac) if roof == "flat" else ()
        self.buildings.append(Building(
            name=name, use=use, parts=parts, eave_m=round(eave, 2), roof=roof, ridge_m=round(ridge, 2),
            wall_rgb=wall if wall is not None else self.pick(_WALLS),
            roof_rgb=roof_rgb if roof_rgb is not None else self.pick(_PITCHED_ROOFS if roof != "flat" else _FLAT_ROOFS),
            floor_m=floor_m, window_pitch_m=pitch,
            roof_style=roof_style if roof_style is not None else int(self.rng.integers(2)),
            hvac=units))

    def tree(self, u: float, v: float, r: float | None = None) -> None:
        r = r if r is not None else self.j(2.4, 4.2)
        self.trees.append(Tree(round(u, 2), round(v, 2), round(r, 2), round(r * self.j(0.75, 1.0), 2),
                               round(self.j(2.0, 3.5), 2), bool(self.rng.random() < 0.25),
                               round(self.j(0.0, 1.0), 3)))

    def car(self, u: float, v: float, yaw: float) -> None:
        rgb = _CARS[int(self.rng.choice(len(_CARS), p=_CAR_P))]
        self.cars.append(Car(round(u, 2), round(v, 2), round(yaw, 1), rgb,
                             round(self.j(4.2, 4.9), 2), round(self.j(1.75, 1.9), 2)))

    def lot(self, rect: Rect, fill: float) -> None:
        lot = ParkingLot(rect)
        self.lots.append(lot)
        self.patches.append((rect, LOT))
        for cu, cv, yaw in stall_centres(lot):
            if self.rng.random() < fill:
                self.car(cu + self.j(-0.2, 0.2), cv + self.j(-0.3, 0.3), yaw + self.j(-3, 3))


def stall_centres(lot: ParkingLot) -> list[tuple[float, float, float]]:
    """Centres (u, v) and yaw of the parking stalls of a lot (double rows along u)."""
    u0, v0, u1, v1 = lot.rect
    period = 2 * lot.stall_d_m + lot.aisle_m
    out = []
    n_u = int((u1 - u0 - 2.0) // lot.stall_w_m)
    k = 0
    while v0 + 1.0 + k * period + 2 * lot.stall_d_m <= v1 - 1.0 + 1e-9:
        base = v0 + 1.0 + k * period
        for row in range(2):
            cv = base + (row + 0.5) * lot.stall_d_m
            for i in range(n_u):
                out.append((u0 + 1.0 + (i + 0.5) * lot.stall_w_m, cv, 90.0))
        k += 1
    return out


def _downtown(L: _Layout, b: Rect) -> None:
    u0, v0, u1, v1 = b
    L.patches.append((b, CONCRETE))
    # courtyard block, south-west
    W, D, a = L.j(38, 44), L.j(38, 44), L.j(10, 12)
    cu0, cv0 = u0 + 4, v0 + 4
    cu1, cv1 = cu0 + W, cv0 + D
    L.add("courtyard", "apartments",
          ((cu0, cv0, cu1, cv0 + a), (cu0, cv1 - a, cu1, cv1), (cu0, cv0 + a, cu0 + a, cv1 - a),
           (cu1 - a, cv0 + a, cu1, cv1 - a)),
          L.j(20, 28), floor_m=3.2, pitch=2.8, hvac=3)
    L.patches.append(((cu0 + a, cv0 + a, cu1 - a, cv1 - a), GRASS))
    L.tree((cu0 + cu1) / 2 + L.j(-2, 2), (cv0 + cv1) / 2 + L.j(-2, 2), L.j(3.0, 3.8))
    # tower with a low annex, north-east
    tw, td = L.j(20, 25), L.j(22, 26)
    tu1, tv1 = u1 - 5, v1 - 5
    L.add("tower", "office", ((tu1 - tw, tv1 - td, tu1, tv1),), L.j(50, 58),
          wall=(0.26, 0.32, 0.38), floor_m=3.8, pitch=1.6, roof_style=0, hvac=2, big_hvac=1)
    L.add("tower annex", "office", ((tu1 - tw - 8, tv1 - td - 16, tu1, tv1 - td),), L.j(7, 9),
          floor_m=4.0, pitch=3.2, roof_style=2, hvac=1)
    # L-shaped office, north-west
    lu0, lv1 = u0 + 4, v1 - 4
    arm, span_u, span_v = L.j(12, 14), L.j(32, 38), L.j(30, 36)
    L.add("L office", "office", ((lu0, lv1 - arm, lu0 + span_u, lv1), (lu0, lv1 - span_v, lu0 + arm, lv1 - arm)),
          L.j(14, 20), floor_m=3.6, pitch=3.0, hvac=2)
    # plaza trees, south-east
    for k in range(4):
        L.tree(u1 - 28 + 12 * (k % 2) + L.j(-1, 1), v0 + 10 + 13 * (k // 2) + L.j(-1, 1), L.j(2.6, 3.4))


def _midrise(L: _Layout, b: Rect) -> None:
    u0, v0, u1, v1 = b
    L.patches.append(((u1 - 36, v0, u1, v1), CONCRETE))
    L.add("brick office", "office", ((u1 - 26, v0 + 5, u1 - 3, v0 + 5 + L.j(30, 36)),), L.j(12, 22),
          wall=(0.45, 0.23, 0.16), floor_m=3.5, pitch=2.6, hvac=2)
    L.add("apartments west", "apartments", ((u1 - 31, v1 - L.j(40, 44), u1 - 3, v1 - 4),), L.j(18, 30),
          floor_m=3.0, pitch=3.2, hvac=3)
    L.add("garage", "workshop", ((u0 + 6, v0 + 14, u0 + 24, v0 + 30),), L.j(5, 7), roof_style=1, hvac=1)
    L.patches.append(((u0 + 3, v0 + 3, u0 + 27, v0 + 14), DRIVEWAY))
    for k in range(5):
        L.tree(u0 + 8 + L.j(-2, 2) + 10 * (k % 2), v1 - 10 - 11 * k + L.j(-1.5, 1.5))


def _big_box(L: _Layout, b: Rect) -> None:
    u0, v0, u1, v1 = b
    L.add("store", "store", ((u0 + 32, v0 + 46, u1 - 4, v1 - 4),), L.j(8, 9.5),
          roof_rgb=(0.80, 0.80, 0.78), roof_style=0, floor_m=9.5, pitch=6.0, hvac=5)
    L.lot((u0 + 2, v0 + 2, u1 - 4, v0 + 40), 0.55)
    for k in range(6):
        L.tree(u0 + 6 + 12 * k + L.j(-1, 1), v0 + 41 + L.j(-0.3, 0.3), L.j(2.2, 3.0))


def _houses(L: _Layout, b: Rect, n: int, face_north: bool, prefix: str) -> None:
    """A row of houses with driveways to the street on their north (or south) side."""
    u0, v0, u1, v1 = b
    lot_w = (u1 - u0) / n
    for k in range(n):
        cu = u0 + (k + 0.5) * lot_w + L.j(-2, 2)
        w, d = L.j(9.5, 13), L.j(8.5, 11.5)
        set_back = L.j(7, 10)
        hv1 = v1 - set_back if face_north else v0 + set_back + d
        rect = (cu - w / 2, hv1 - d, cu + w / 2, hv1)
        roof = "gable" if L.rng.random() < 0.6 else "hip"
        L.add(f"{prefix} house {k + 1}", "house", (rect,), L.j(5.5, 7.2), roof=roof,
              ridge=L.j(2.5, 3.8), floor_m=3.0, pitch=3.4)
        # driveway to the street beside the house, a car on half of them
        du = cu + w / 2 + 1.8 if k % 2 == 0 else cu - w / 2 - 1.8
        drive = (du - 1.6, hv1 - 6, du + 1.6, v1) if face_north else (du - 1.6, v0, du + 1.6, hv1 - d + 6)
        L.patches.append((drive, DRIVEWAY))
        if L.rng.random() < 0.5:
            L.car(du, (drive[1] + drive[3]) / 2 + L.j(-1, 1), 90.0 + L.j(-4, 4))
        # back yard: trees, sometimes a pool
        yard_v = hv1 - d - 7 if face_north else hv1 + 7
        if L.rng.random() < 0.35:
            pu, pv = cu + L.j(-3, 3), yard_v + (-1 if face_north else 1) * 1.0
            L.patches.append(((pu - 2.5, pv - 1.8, pu + 2.5, pv + 1.8), POOL))
            L.tree(cu + (lot_w / 2 - 3.5) * (1 if k % 2 else -1), yard_v, L.j(2.5, 3.5))
        else:
            L.tree(cu + L.j(-2, 2), yard_v + L.j(-1, 1))
        if L.rng.random() < 0.5:
            L.tree(cu + (lot_w / 2 - 3.0) * (-1 if k % 2 else 1), hv1 - d / 2 + L.j(-2, 2), L.j(2.2, 3.0))


def _school(L: _Layout, b: Rect) -> None:
    """A two-storey school and a sports field in the south of a residential block."""
    u0, v0, u1, v1 = b
    L.add("school", "school", ((u0 + 16, v0 + 8, u0 + 56, v0 + 26),), L.j(7.5, 8.5), floor_m=3.8,
          pitch=3.6, roof_style=2, hvac=2)
    L.patches.append(((u0 + 12, v0 + 2, u0 + 60, v0 + 31), CONCRETE))
    L.patches.append(((u1 - 44, v0 + 3, u1 - 6, v0 + 33), SOIL))
    L.patches.append(((u1 - 41, v0 + 6, u1 - 9, v0 + 30), GRASS))


def _park(L: _Layout, b: Rect) -> None:
    u0, v0, u1, v1 = b
    cu, cv = (u0 + u1) / 2, (v0 + v1) / 2
    L.patches.append(((cu - 1.5, v0, cu + 1.5, v1), PATH))
    L.patches.append(((u0, cv - 1.5, u1, cv + 1.5), PATH))
    L.patches.append(((cu - 9, cv - 9, cu + 9, cv + 9), PATH))
    pond_u = u0 + 24
    L.patches.append(((pond_u - 9, cv + 12, pond_u + 9, cv + 24), POND))
    L.patches.append(((u1 - 30, v0 + 6, u1 - 8, v0 + 20), SOIL))  # community garden
    L.add("pavilion", "pavilion", ((cu - 4.5, cv - 4.5, cu + 4.5, cv + 4.5),), 3.2, roof="hip",
          ridge=L.j(2.5, 3.0), floor_m=3.2, pitch=2.2, wall=(0.70, 0.68, 0.62))
    spots = [(u0 + 8, v0 + 8), (u0 + 8, v1 - 8), (u1 - 8, v1 - 8), (u0 + 38, v0 + 10), (u0 + 40, v1 - 12),
             (u1 - 30, v1 - 14), (u1 - 20, cv - 10), (u1 - 12, cv + 10), (u0 + 10, cv - 12),
             (cu + 20, cv + 20), (cu - 20, cv - 22), (cu + 18, cv - 18), (u0 + 45, cv + 28)]
    for su, sv in spots:
        L.tree(su + L.j(-2, 2), sv + L.j(-2, 2), L.j(3.0, 5.5))


def _l_apartments(L: _Layout, b: Rect) -> None:
    u0, v0, u1, v1 = b
    L.patches.append(((u0, v0, u1, v0 + 50), CONCRETE))
    arm = L.j(12, 14)
    L.add("L apartments", "apartments",
          ((u1 - 40, v0 + 5, u1 - 4, v0 + 5 + arm), (u1 - 4 - arm, v0 + 5 + arm, u1 - 4, v0 + 44)),
          L.j(15, 24), floor_m=3.0, pitch=3.0, hvac=2)
    for k in range(4):
        L.tree(u0 + 10 + 9 * k + L.j(-1, 1), v0 + 30 + L.j(-3, 3))


def _corner_shop(L: _Layout, b: Rect) -> None:
    u0, v0, u1, v1 = b
    L.add("shop", "store", ((u1 - 36, v1 - 28, u1 - 6, v1 - 4),), L.j(5, 6.5), roof_style=1, hvac=2,
          floor_m=5.5, pitch=4.0)
    L.lot((u0 + 3, v1 - 58, u0 + 36, v1 - 2), 0.6)
    L.patches.append(((u1 - 40, v1 - 60, u1 - 2, v1 - 32), GRASS))


def _street_furniture(L: _Layout, roads: tuple[Road, ...]) -> None:
    """Street trees on some sidewalks, cars in the parking lanes, a few moving cars."""
    lim = MODELLED_HALF_M

    def clear_of_crossings(road: Road, s: float, margin: float) -> bool:
        return all(abs(s - o.pos) > o.half_width_m + SIDEWALK_M + margin for o in roads if o.axis != road.axis)

    for road in roads:
        if abs(road.pos) > lim:
            continue
        sides = (-1.0, 1.0)
        # street trees
        if road.pos in (62.0, -72.0):
            for side in sides:
                s = -lim + L.j(0, 6)
                while s < lim:
                    if clear_of_crossings(road, s, 3.0):
                        off = side * (road.half_width_m + SIDEWALK_M / 2)
                        u, v = (road.pos + off, s) if road.axis == "v" else (s, road.pos + off)
                        L.tree(u, v, L.j(2.2, 3.2))
                    s += L.j(10, 13)
        # parked cars in the parking lanes of two-lane streets
        if road.half_width_m == 6.0:
            for side in sides:
                s = -lim + L.j(0, 5)
                while s < lim:
                    if clear_of_crossings(road, s, 6.0) and L.rng.random() < 0.4:
                        off = side * 4.75
                        u, v = (road.pos + off, s) if road.axis == "v" else (s, road.pos + off)
                        L.car(u, v, (90.0 if road.axis == "v" else 0.0) + L.j(-2, 2))
                    s += L.j(6.0, 7.0)
        # moving cars in the lanes of the avenue
        if road.half_width_m == 9.0:
            for lane in (-6.75, -2.25, 2.25, 6.75):
                s = -lim + L.j(0, 30)
                while s < lim:
                    if clear_of_crossings(road, s, 2.0):
                        u, v = (road.pos + lane, s) if road.axis == "v" else (s, road.pos + lane)
                        L.car(u, v, (90.0 if road.axis == "v" else 0.0) + L.j(-1, 1))
                    s += L.j(25, 60)


def _remove_conflicts(L: _Layout, roads: tuple[Road, ...]) -> tuple[list[Tree], list[Car]]:
    """Drop trees that touch buildings, roads or other trees, and cars that touch buildings."""
    from shapely.geometry import Point, box
    from shapely.ops import unary_union

    fp = unary_union([box(*p) for bl in L.buildings for p in bl.parts])
    carriage = unary_union([box(r.pos - r.half_width_m, -1e4, r.pos + r.half_width_m, 1e4) if r.axis == "v"
                            else box(-1e4, r.pos - r.half_width_m, 1e4, r.pos + r.half_width_m) for r in roads])
    trees: list[Tree] = []
    for t in L.trees:
        crown = Point(t.u, t.v).buffer(t.crown_radius_m + 1.0)
        trunk = Point(t.u, t.v).buffer(1.0)
        if crown.intersects(fp) or trunk.intersects(carriage):
            continue
        if any(math.hypot(t.u - o.u, t.v - o.v) < 0.8 * (t.crown_radius_m + o.crown_radius_m) for o in trees):
            continue
        if max(abs(t.u), abs(t.v)) > MODELLED_HALF_M:
            continue
        trees.append(t)
    cars = [c for c in L.cars if not car_outline(c).buffer(0.3).intersects(fp)
            and max(abs(c.u), abs(c.v)) <= MODELLED_HALF_M]
    return trees, cars


def car_outline(car: Car):
    """The car's footprint (shapely polygon) in the city frame."""
    from shapely.affinity import rotate
    from shapely.geometry import box

    rect = box(car.u - car.length_m / 2, car.v - car.width_m / 2, car.u + car.length_m / 2, car.v + car.width_m / 2)
    return rotate(rect, car.yaw_deg, origin=(car.u, car.v))


def build_city(seed: int) -> City:
    """The synthetic city for ``seed`` (deterministic): 9 blocks around a 4-lane avenue."""
    rng = np.random.default_rng(seed)
    L = _Layout(rng)
    roads = _roads()
    blocks = _blocks(roads)
    _downtown(L, blocks[(1, 1)])
    _midrise(L, blocks[(0, 1)])
    _big_box(L, blocks[(2, 1)])
    _houses(L, blocks[(1, 0)], 4, True, "north row")
    _school(L, blocks[(1, 0)])
    _houses(L, blocks[(0, 0)], 2, True, "west")
    _corner_shop(L, blocks[(2, 0)])
    _l_apartments(L, blocks[(0, 2)])
    _park(L, blocks[(1, 2)])
    b = blocks[(2, 2)]
    _houses(L, (b[0], b[1], b[2], b[1] + 30), 3, False, "east")
    _street_furniture(L, roads)
    trees, cars = _remove_conflicts(L, roads)
    return City(frame=LocalFrame(SITE_LON, SITE_LAT, SITE_H), rotation_deg=ROTATION_DEG,
                buildings=tuple(L.buildings), trees=tuple(trees), cars=tuple(cars), roads=roads,
                lots=tuple(L.lots), patches=tuple(L.patches))


# ------------------------------------------------------------------------------ descriptions
def footprint_city(building: Building):
    """The building's footprint (shapely polygon) in the city frame."""
    from shapely.geometry import box
    from shapely.ops import unary_union

    return unary_union([box(*p) for p in building.parts])


def footprint_enu(city: City, building: Building):
    """The building's footprint (shapely polygon) in local ENU (x, y) metres."""
    from shapely import transform

    return transform(footprint_city(building), lambda uv: np.stack(city.to_enu(uv[:, 0], uv[:, 1]), axis=-1))
