"""The splat centres as a LAS 1.4 / LAZ point cloud in UTM (QGIS, PDAL, CloudCompare open it).

Point format 7 (x, y, z + 16-bit RGB), scale 1 mm, offsets at the floor of the minimum. X/Y are
easting/northing in the frame's UTM zone, Z the height above the WGS84 ellipsoid (not a geoid);
the CRS is an OGC WKT (WKT2) VLR of the UTM zone promoted to 3D with an ellipsoidal-height axis,
and the global-encoding WKT bit is set. Colour = SH degree 0 (0.5 + C0 sh0, clamped, scaled to
0..65535). Near-transparent splats (opacity < 0.05) are left out: they carry no visible surface.
The opacity (0..1) rides along as an extra float dimension "opacity". `.laz` is compressed with
lazrs (LASzip-compatible).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skyfall_core.atomic import atomic_path
from skyfall_core.export.common import OPACITY_MIN, model_arrays, utm_crs_3d
from skyfall_core.geo.frames import LocalFrame
from skyfall_core.splat.model import GaussianModel

LAS_SCALE = 0.001  # metres


def splat_points_utm(model: GaussianModel, frame: LocalFrame,
                     opacity_min: float = OPACITY_MIN) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(UTM easting/northing/ellipsoidal height [M, 3], RGB 0..1 [M, 3], opacity [M]) of the
    splats with opacity >= `opacity_min`."""
    a = model_arrays(model)
    keep = a["opacity"] >= opacity_min
    xyz = frame.enu_to_utm(a["means"][keep]).reshape(-1, 3)
    return xyz, a["rgb"][keep], a["opacity"][keep]


def write_las(path: str | Path, model: GaussianModel, frame: LocalFrame,
              opacity_min: float = OPACITY_MIN) -> Path:
    """Write the splat centres (see the module docstring); `.laz` suffix -> LAZ. Returns the path."""
    import laspy

    path = Path(path)
    xyz, rgb, opacity = splat_points_utm(model, frame, opacity_min)
    header = laspy.LasHeader(point_format=7, version="1.4")
    header.scales = np.array([LAS_SCALE] * 3)
    header.offsets = np.floor(xyz.min(axis=0)) if len(xyz) else np.zeros(3)
    header.add_extra_dim(laspy.ExtraBytesParams(name="opacity", type=np.float32,
                                                description="splat opacity 0..1"))
    header.add_crs(utm_crs_3d(frame))
    header.system_identifier = "Skyfall Studio"
    header.generating_software = "skyfall_core.export.las"
    las = laspy.LasData(header)
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    colour = np.round(rgb * 65535.0).astype(np.uint16)
    las.red, las.green, las.blue = colour[:, 0], colour[:, 1], colour[:, 2]
    las.opacity = opacity.astype(np.float32)
    compress = laspy.LazBackend.Lazrs if path.suffix.lower() == ".laz" else None
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            las.write(f, do_compress=compress is not None, laz_backend=compress)
    return path
