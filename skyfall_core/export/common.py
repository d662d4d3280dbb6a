"""Shared helpers of the exporters: model arrays, the ENU->ECEF matrix, the 3D UTM CRS."""

from __future__ import annotations

import numpy as np

from skyfall_core.geo.frames import LocalFrame
from skyfall_core.splat.model import GaussianModel
from skyfall_core.splat.sh import SH_C0

OPACITY_MIN = 0.05  # splats below this opacity are near-transparent: left out of the point exports


def model_arrays(model: GaussianModel) -> dict[str, np.ndarray]:
    """Activated splat parameters as float64 numpy arrays (rows with a non-finite value dropped):
    means [N, 3] (ENU m), scales [N, 3] (linear m), quats [N, 4] (w x y z, unit), opacity [N]
    (0..1), sh0 [N, 3], shN [N, K-1, 3], rgb [N, 3] (0.5 + C0 sh0, clamped to 0..1)."""
    p = {name: t.detach().cpu().double().numpy() for name, t in model.params.items()}
    N = len(p["means"])
    sh0 = p["sh0"].reshape(N, 3)
    shN = p["shN"].reshape(N, -1, 3)
    finite = np.ones(N, bool)
    for a in (p["means"], p["scales"], p["quats"], p["opacities"][:, None], sh0, shN.reshape(N, -1)):
        finite &= np.isfinite(a).all(axis=1)
    quats = p["quats"][finite]
    norm = np.linalg.norm(quats, axis=1, keepdims=True)
    quats = np.where(norm > 0, quats / np.where(norm > 0, norm, 1), [1.0, 0.0, 0.0, 0.0])
    return {
        "means": p["means"][finite],
        "log_scales": p["scales"][finite],
        "scales": np.exp(p["scales"][finite]),
        "quats": quats,
        "logit_opacity": p["opacities"][finite],
        "opacity": 1.0 / (1.0 + np.exp(-p["opacities"][finite])),
        "sh0": sh0[finite],
        "shN": shN[finite],
        "rgb": np.clip(0.5 + SH_C0 * sh0[finite], 0.0, 1.0),
    }


def enu_to_ecef_matrix(frame: LocalFrame) -> np.ndarray:
    """4x4 (row-major numpy) matrix taking local ENU metres to ECEF (EPSG:4978) metres:
    columns 0..2 are the east, north and up unit vectors in ECEF, column 3 the origin."""
    m = np.eye(4)
    m[:3, :3] = frame.R_ecef_to_enu.T
    m[:3, 3] = frame.origin_ecef
    return m


def utm_crs_3d(frame: LocalFrame):
    """The frame's UTM zone promoted to 3D (pyproj CRS): easting, northing, ellipsoidal height
    (WGS84), all metres. Written as WKT2, it records that heights are above the ellipsoid."""
    from pyproj import CRS

    return CRS.from_epsg(frame.utm_epsg).to_3d()


def utm_crs_3d_from_epsg(epsg: int):
    from pyproj import CRS

    return CRS.from_epsg(int(epsg)).to_3d()
