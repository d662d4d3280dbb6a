"""Synthetic satellites: acquisition plans, true pinhole cameras, RPC fitting, the sensor.

Conventions
-----------
- Cameras are OpenCV pinholes (x right, y down, z forward) in the local ENU frame, world-to-camera
  4x4 + K 3x3, pixel centres at integer coordinates (as the RPC00B convention and
  :mod:`skyfall_core.geo.rpc`).
- ``off_nadir_deg`` is the angle at the satellite between nadir and the line of sight;
  ``incidence_deg`` (the view zenith) is the same line's angle from the vertical at the target
  (larger, by the Earth's curvature). Azimuths are degrees clockwise from north; the satellite
  azimuth is the direction from the target to the satellite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from skyfall_core.geo.frames import LocalFrame
from skyfall_core.geo.rpc import RPCModel, _monomials
from skyfall_core.geo.sun import sun_position, utc_for_local_solar_time
from skyfall_core.sample.render import PinholeCamera

EARTH_RADIUS_M = 6_371_000.0


@dataclass(frozen=True)
class Acquisition:
    """One planned image: who, when (local solar time), from where."""

    satellite: str  # made-up sensor ids, "SFS1" (11-bit) / "SFS2" (8-bit)
    day: date
    solar_time_h: float  # apparent local solar time at the site, hours
    off_nadir_deg: float
    sat_azimuth_deg: float  # target -> satellite, clockwise from north
    orbit_altitude_m: float
    bits: int  # 8 (uint8, display-ready) or 11 (uint16, linear DN 0..2047)
    heading_deg: float  # image 'up' direction (the along-track direction), clockwise from north
    seconds_after: float = 0.0  # same-pass stereo: seconds after the first image of the pass


# The acquisition plan: 10 images on 8 dates in one year (two in-track stereo pairs).
PLAN: tuple[Acquisition, ...] = (
    Acquisition("SFS2", date(2023, 1, 18), 10.87, 12.0, 108.0, 590_000.0, 8, -8.5),
    Acquisition("SFS1", date(2023, 3, 27), 10.68, 18.5, 196.0, 617_000.0, 11, -9.0),
    Acquisition("SFS1", date(2023, 3, 27), 10.68, 22.0, 342.0, 617_000.0, 11, -9.0, seconds_after=72.0),
    Acquisition("SFS2", date(2023, 5, 14), 11.08, 7.0, 288.0, 590_000.0, 8, -8.2),
    Acquisition("SFS2", date(2023, 6, 30), 10.57, 27.0, 74.0, 590_000.0, 8, -7.6),
    Acquisition("SFS2", date(2023, 6, 30), 10.57, 14.5, 128.0, 590_000.0, 8, -7.6, seconds_after=55.0),
    Acquisition("SFS1", date(2023, 8, 9), 11.33, 19.5, 233.0, 617_000.0, 11, -9.3),
    Acquisition("SFS2", date(2023, 9, 21), 10.80, 28.5, 158.0, 590_000.0, 8, -8.0),
    Acquisition("SFS1", date(2023, 10, 30), 11.20, 5.5, 38.0, 617_000.0, 11, -8.8),
    Acquisition("SFS2", date(2023, 12, 6), 10.97, 16.0, 302.0, 590_000.0, 8, -8.4),
)
REFERENCE_VIEW = 3  # the nadir-most view keeps an unbiased RPC


@dataclass(frozen=True)
class ViewGeometry:
    acquisition: Acquisition
    utc: datetime
    sun_elevation_deg: float
    sun_azimuth_deg: float
    incidence_deg: float  # view zenith at the target
    slant_range_m: float
    camera: PinholeCamera


def incidence_and_range(off_nadir_deg: float, altitude_m: float) -> tuple[float, float]:
    """View zenith at the target (deg) and slant range (m) for a spherical Earth."""
    th = math.radians(off_nadir_deg)
    zen = math.asin(min(1.0, (EARTH_RADIUS_M + altitude_m) / EARTH_RADIUS_M * math.sin(th)))
    gamma = zen - th  # angle at the Earth's centre
    rng = altitude_m if th == 0 else EARTH_RADIUS_M * math.sin(gamma) / math.sin(th)
    return math.degrees(zen), rng


def look_at(centre: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera 4x4 (OpenCV) of a camera at ``centre`` looking at ``target``; image 'up'
    (the -y axis) as close as possible to ``up``."""
    f = np.asarray(target, float) - np.asarray(centre, float)
    f = f / math.sqrt(float(f[0] ** 2 + f[1] ** 2 + f[2] ** 2))
    x = np.cross(f, np.asarray(up, float))
    x = x / math.sqrt(float(x[0] ** 2 + x[1] ** 2 + x[2] ** 2))
    y = np.cross(f, x)
    R = np.stack([x, y, f])
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -np.array([R[i, 0] * centre[0] + R[i, 1] * centre[1] + R[i, 2] * centre[2] for i in range(3)])
    return w2c


def intrinsics(focal_px: float, width: int, height: int) -> np.ndarray:
    """K with the principal point at the image centre, pixel centres at integers."""
    return np.array([[focal_px, 0.0, (width - 1) / 2.0], [0.0, focal_px, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def view_geometry(acq: Acquisition, frame: LocalFrame, *, size: int, gsd_m: float,
                  aim_enu: tuple[float, float, float]) -> ViewGeometry:
    """Sun angles and the true camera of an acquisition (camera ENU, looking at ``aim_enu``)."""
    when = utc_for_local_solar_time(acq.day, acq.solar_time_h, frame.lon0)
    when = when.replace(microsecond=0) + _seconds(acq.seconds_after)
    sun_el, sun_az = sun_position(when, frame.lon0, frame.lat0)
    zen, rng = incidence_and_range(acq.off_nadir_deg, acq.orbit_altitude_m)
    z, a = math.radians(zen), math.radians(acq.sat_azimuth_deg)
    aim = np.asarray(aim_enu, dtype=np.float64)
    centre = aim + rng * np.array([math.sin(z) * math.sin(a), math.sin(z) * math.cos(a), math.cos(z)])
    h = math.radians(acq.heading_deg)
    up = np.array([math.sin(h), math.cos(h), 0.0])
    cam = PinholeCamera(K=intrinsics(rng / gsd_m, size, size), w2c=look_at(centre, aim, up), width=size, height=size)
    return ViewGeometry(acq, when, sun_el, sun_az, zen, rng, cam)


def _seconds(s: float):
    from datetime import timedelta

    return timedelta(seconds=round(s))


# ------------------------------------------------------------------------------ RPC fitting
@dataclass(frozen=True)
class RPCFit:
    rpc: RPCModel
    mean_px: float  # on independent check points over the fit volume
    max_px: float
    n_fit: int
    n_check: int


def _project_geodetic(cam: PinholeCamera, frame: LocalFrame, lon, lat, h) -> tuple[np.ndarray, np.ndarray]:
    row, col, _ = cam.project(frame.geodetic_to_enu(lon, lat, h))
    return row, col


def _fit_rational(m: np.ndarray, target: np.ndarray, reg: float, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Least squares for target ~ (m . num) / (m . den), den[0] = 1, linearised with the
    denominator and re-weighted by it (Tao & Hu 2001), with Tikhonov regularisation ``reg``."""
    n = len(target)
    A = np.concatenate([m, -target[:, None] * m[:, 1:]], axis=1)  # [n, 39]
    weights = np.ones(n)
    num = den = None
    for _ in range(iterations):
        Aw = A * weights[:, None]
        bw = target * weights
        lhs = np.concatenate([Aw, math.sqrt(reg) * np.eye(39)])
        rhs = np.concatenate([bw, np.zeros(39)])
        x, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
        num, den = x[:20], np.concatenate([[1.0], x[20:]])
        weights = 1.0 / np.abs(m @ den)
    return num, den


def fit_rpc(cam: PinholeCamera, frame: LocalFrame, h_range: tuple[float, float], *, grid_xy: int = 21,
            grid_h: int = 9, reg: float = 1e-12, iterations: int = 3) -> RPCFit:
    """Fit an RPC00B to a true camera over the volume it images between two ellipsoidal heights.

    The terrain-independent scheme: a lon/lat/h grid covering the image footprint at both
    heights, projected by the camera; normalisation offsets/scales from the grid; the rational
    fit per image axis; the error measured on an independent grid (cell centres).
    """
    W, H = cam.width, cam.height
    h0, h1 = h_range
    # footprint: back-project the image border at both heights
    border = np.concatenate([
        np.stack([np.linspace(-0.5, W - 0.5, 9), np.full(9, -0.5)], 1),
        np.stack([np.linspace(-0.5, W - 0.5, 9), np.full(9, H - 0.5)], 1),
        np.stack([np.full(9, -0.5), np.linspace(-0.5, H - 0.5, 9)], 1),
        np.stack([np.full(9, W - 0.5), np.linspace(-0.5, H - 0.5, 9)], 1)])
    lons, lats = [], []
    for h in (h0, h1):
        enu = backproject(cam, border[:, 1], border[:, 0], h - frame.h0)
        lo, la, _ = frame.enu_to_geodetic(enu)
        lons.append(lo)
        lats.append(la)
    lon_min, lon_max = float(np.min(lons)), float(np.max(lons))
    lat_min, lat_max = float(np.min(lats)), float(np.max(lats))
    lon_off, lat_off, h_off = (lon_min + lon_max) / 2, (lat_min + lat_max) / 2, (h0 + h1) / 2
    lon_sc, lat_sc, h_sc = (lon_max - lon_min) / 2, (lat_max - lat_min) / 2, (h1 - h0) / 2
    row_off, col_off, row_sc, col_sc = (H - 1) / 2, (W - 1) / 2, H / 2, W / 2

    def grid(n_xy: int, n_h: int, centred: bool):
        t = (np.arange(n_xy) + 0.5) / n_xy if centred else np.linspace(0, 1, n_xy)
        th = (np.arange(n_h) + 0.5) / n_h if centred else np.linspace(0, 1, n_h)
        L, P, Hh = np.meshgrid(lon_min + t * (lon_max - lon_min), lat_min + t * (lat_max - lat_min),
                               h0 + th * (h1 - h0), indexing="ij")
        return L.ravel(), P.ravel(), Hh.ravel()

    lon, lat, h = grid(grid_xy, grid_h, False)
    row, col = _project_geodetic(cam, frame, lon, lat, h)
    m = _monomials((lon - lon_off) / lon_sc, (lat - lat_off) / lat_sc, (h - h_off) / h_sc)
    row_num, row_den = _fit_rational(m, (row - row_off) / row_sc, reg, iterations)
    col_num, col_den = _fit_rational(m, (col - col_off) / col_sc, reg, iterations)
    rpc = RPCModel(row_offset=row_off, col_offset=col_off, lat_offset=lat_off, lon_offset=lon_off,
                   alt_offset=h_off, row_scale=row_sc, col_scale=col_sc, lat_scale=lat_sc, lon_scale=lon_sc,
                   alt_scale=h_sc, row_num=row_num, row_den=row_den, col_num=col_num, col_den=col_den)
    lon, lat, h = grid(grid_xy - 1, grid_h - 1, True)
    row, col = _project_geodetic(cam, frame, lon, lat, h)
    r2, c2 = rpc.projection(lon, lat, h)
    err = np.hypot(r2 - row, c2 - col)
    return RPCFit(rpc, float(err.mean()), float(err.max()), grid_xy * grid_xy * grid_h, err.size)


def backproject(cam: PinholeCamera, row: np.ndarray, col: np.ndarray, z: float) -> np.ndarray:
    """ENU points where the rays of pixels (row, col) cross the plane z (ENU metres). [n, 3]"""
    K, R = cam.K, cam.w2c[:3, :3]
    yc = (np.asarray(row, float) - K[1, 2]) / K[1, 1]
    xc = (np.asarray(col, float) - K[0, 2] - K[0, 1] * yc) / K[0, 0]
    d = xc[:, None] * R[0] + yc[:, None] * R[1] + R[2]
    C = cam.centre
    t = (z - C[2]) / d[:, 2]
    return C + d * t[:, None]


def biased(rpc: RPCModel, d_row: float, d_col: float) -> RPCModel:
    """The RPC whose projections are shifted by (d_row, d_col) pixels: rpc' = rpc + bias."""
    from dataclasses import replace

    return replace(rpc, row_offset=rpc.row_offset + d_row, col_offset=rpc.col_offset + d_col)


# ------------------------------------------------------------------------------ the sensor
def mtf_blur(img: np.ndarray, a: float = 0.12) -> np.ndarray:
    """Separable 3-tap blur [a, 1-2a, a] (edges replicated): a mild optical MTF. [H, W, C]"""
    p = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = a * p[:-2] + (1 - 2 * a) * p[1:-1] + a * p[2:]
    return a * rows[:, :-2] + (1 - 2 * a) * rows[:, 1:-1] + a * rows[:, 2:]


def encode(radiance: np.ndarray, bits: int, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Sensor + product: linear radiance [H, W, 3] -> uint8 (display-ready, gamma 1/2) or
    uint16 (linear 11-bit DN with a dark offset), with shot + read noise."""
    haze = np.array([0.018, 0.024, 0.040])
    lin = np.clip(mtf_blur(radiance) * gain + haze, 0.0, None)
    if bits == 11:
        dn = 60.0 + 1500.0 * lin
        dn = dn + rng.standard_normal(dn.shape) * np.sqrt(9.0 + 0.6 * dn)
        return np.clip(np.round(dn), 0, 2047).astype(np.uint16)
    val = 255.0 * np.sqrt(np.clip(lin, 0.0, 1.0))
    val = val + rng.standard_normal(val.shape) * (0.9 + 0.012 * val)
    return np.clip(np.round(val), 0, 255).astype(np.uint8)
