"""Pseudo-camera orbits: virtual pinhole cameras around look-at points of the AOI.

Conventions: the local ENU frame (metres, z up); cameras in the OpenCV convention (x right,
y down, z forward) as :class:`~skyfall_core.cameras.pinhole.PinholeCamera` with integer pixel
centres. An azimuth is the direction **from the look-at point to the camera**, in degrees
clockwise from north (like a satellite's azimuth in image metadata): azimuth 0 puts the camera
north of the point, looking south. Elevation is the angle of the camera above the horizon seen
from the look-at point (90 = straight down). Image "up" is world up (+z) projected; straight
down (elevation 90), image up is the horizontal direction pointing away from the azimuth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from skyfall_core.cameras.pinhole import PinholeCamera


def look_at_w2c(center: np.ndarray, target: np.ndarray, azimuth_deg: float) -> np.ndarray:
    """World-to-camera [4, 4] of a camera at ``center`` [3] looking at ``target`` [3] (OpenCV axes).

    The camera's x axis is horizontal; ``azimuth_deg`` (of the camera seen from the target)
    fixes it when the camera looks straight down.
    """
    center = np.asarray(center, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - center
    norm = np.linalg.norm(forward)
    if norm == 0:
        raise ValueError("camera centre and look-at point coincide")
    forward /= norm
    az = np.radians(azimuth_deg)
    # x = forward x up, normalised; equal to (-cos az, sin az, 0) for a camera on azimuth az,
    # which also holds in the limit of a camera looking straight down.
    right = np.array([-np.cos(az), np.sin(az), 0.0])
    right -= forward * (right @ forward)  # exact orthogonality if target is off the azimuth plane
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([right, down, forward])
    w2c[:3, 3] = -w2c[:3, :3] @ center
    return w2c


def intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """K [3, 3] with horizontal field of view ``fov_deg``, square pixels, principal point at the
    image centre ((width - 1) / 2, (height - 1) / 2) in the integer-pixel-centre convention."""
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg must lie in (0, 180), got {fov_deg}")
    f = 0.5 * width / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def orbit_cameras(lookat: np.ndarray, elevation_deg: float, radius_m: float,
                  azimuths: int | Sequence[float], fov_deg: float, width: int, height: int
                  ) -> list[PinholeCamera]:
    """Cameras at ``radius_m`` from each look-at point, ``elevation_deg`` above its horizon,
    on each azimuth (a count -> evenly spaced from 0, or a list of degrees clockwise from north).

    ``lookat``: one ENU point [3] or several [M, 3]. Returns M * len(azimuths) cameras, ordered
    look-at point major, azimuth minor; each looks at its point, which projects to the image centre.
    """
    points = np.atleast_2d(np.asarray(lookat, dtype=np.float64))
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"lookat must be [3] or [M, 3], got {np.shape(lookat)}")
    if not 0 < elevation_deg <= 90:
        raise ValueError(f"elevation_deg must lie in (0, 90], got {elevation_deg}")
    if radius_m <= 0:
        raise ValueError(f"radius_m must be positive, got {radius_m}")
    if isinstance(azimuths, (int, np.integer)):
        if azimuths < 1:
            raise ValueError(f"azimuths must be >= 1, got {azimuths}")
        az_list = list(np.arange(int(azimuths)) * 360.0 / int(azimuths))
    else:
        az_list = [float(a) for a in azimuths]
    K = intrinsics(fov_deg, width, height)
    el = np.radians(elevation_deg)
    cameras = []
    for target in points:
        for az_deg in az_list:
            az = np.radians(az_deg)
            offset = radius_m * np.array([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)])
            cameras.append(PinholeCamera(K.copy(), look_at_w2c(target + offset, target, az_deg), width, height))
    return cameras


def lookat_grid(bounds_enu: Sequence[float], n: int, z: float = 0.0) -> np.ndarray:
    """n x n look-at points [n*n, 3] at the centres of an n x n tiling of the AOI's
    (xmin, xmax, ymin, ymax, ...) box, at height ``z`` (n = 1 gives the AOI centre)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    xmin, xmax, ymin, ymax = (float(b) for b in bounds_enu[:4])
    fx = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(xmin + fx * (xmax - xmin), ymin + fx * (ymax - ymin), indexing="xy")
    return np.stack([x.ravel(), y.ravel(), np.full(n * n, float(z))], axis=-1)
