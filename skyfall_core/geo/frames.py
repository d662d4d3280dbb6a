"""Coordinate frames: WGS84 geodetic <-> ECEF <-> local ENU (metres, z up) <-> UTM.

The local frame of a job is East-North-Up with its origin at the AOI centre on the ground
(``h0`` = ellipsoidal height of the ground there). Every artefact that stores local coordinates
stores this frame too (:meth:`LocalFrame.to_dict`), so that it can be taken back to WGS84/UTM.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

WGS84_GEODETIC_3D = "EPSG:4979"  # lon, lat (degrees), ellipsoidal height (m)
WGS84_ECEF = "EPSG:4978"


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone containing (lon, lat) (WGS84; 326xx north, 327xx south)."""
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class LocalFrame:
    """A local ENU frame at (lon0, lat0, h0): degrees, degrees, metres above the ellipsoid."""

    lon0: float
    lat0: float
    h0: float = 0.0

    @cached_property
    def _to_ecef(self):
        from pyproj import Transformer

        return Transformer.from_crs(WGS84_GEODETIC_3D, WGS84_ECEF, always_xy=True)

    @cached_property
    def _from_ecef(self):
        from pyproj import Transformer

        return Transformer.from_crs(WGS84_ECEF, WGS84_GEODETIC_3D, always_xy=True)

    @cached_property
    def origin_ecef(self) -> np.ndarray:  # [3]
        return np.array(self._to_ecef.transform(self.lon0, self.lat0, self.h0))

    @cached_property
    def R_ecef_to_enu(self) -> np.ndarray:  # [3, 3], rows = east, north, up in ECEF
        lam, phi = np.radians(self.lon0), np.radians(self.lat0)
        sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
        return np.array([[-sl, cl, 0.0],
                         [-sp * cl, -sp * sl, cp],
                         [cp * cl, cp * sl, sp]])

    @property
    def utm_epsg(self) -> int:
        return utm_epsg(self.lon0, self.lat0)

    def geodetic_to_enu(self, lon, lat, h) -> np.ndarray:
        """(lon, lat, h) arrays -> ENU points [..., 3] in metres."""
        x, y, z = self._to_ecef.transform(*np.broadcast_arrays(
            np.asarray(lon, float), np.asarray(lat, float), np.asarray(h, float)))
        ecef = np.stack([x, y, z], axis=-1) - self.origin_ecef
        return ecef @ self.R_ecef_to_enu.T

    def enu_to_geodetic(self, enu) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ENU points [..., 3] -> (lon, lat, h)."""
        ecef = np.asarray(enu, float) @ self.R_ecef_to_enu + self.origin_ecef
        lon, lat, h = self._from_ecef.transform(ecef[..., 0], ecef[..., 1], ecef[..., 2])
        return np.asarray(lon), np.asarray(lat), np.asarray(h)

    def enu_to_utm(self, enu) -> np.ndarray:
        """ENU points [..., 3] -> UTM (easting, northing, h) [..., 3] in this frame's UTM zone."""
        from pyproj import Transformer

        lon, lat, h = self.enu_to_geodetic(enu)
        t = Transformer.from_crs("EPSG:4326", f"EPSG:{self.utm_epsg}", always_xy=True)
        e, n = t.transform(lon, lat)
        return np.stack([e, n, h], axis=-1)

    def utm_to_enu(self, easting, northing, h) -> np.ndarray:
        """UTM (this frame's zone) -> ENU points [..., 3]."""
        from pyproj import Transformer

        t = Transformer.from_crs(f"EPSG:{self.utm_epsg}", "EPSG:4326", always_xy=True)
        lon, lat = t.transform(np.asarray(easting, float), np.asarray(northing, float))
        return self.geodetic_to_enu(lon, lat, h)

    def to_dict(self) -> dict[str, Any]:
        return {"lon": self.lon0, "lat": self.lat0, "h": self.h0, "utm_epsg": self.utm_epsg,
                "convention": "local ENU, metres, z up, origin at (lon, lat, h) WGS84 ellipsoidal"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LocalFrame":
        return cls(float(d["lon"]), float(d["lat"]), float(d.get("h", 0.0)))
