"""Local pinhole cameras, and fitting one to an RPC over the AOI volume.

Conventions
-----------
- World: the job's local ENU frame (metres, z up), see :class:`~skyfall_core.geo.frames.LocalFrame`.
- Camera: OpenCV (x right, y down, z forward); ``w2c`` maps homogeneous ENU points to camera
  coordinates in metres, so ``depth`` is the distance along the optical axis in metres.
- Image: ``uv[:, 0] = u`` = column (x, right), ``uv[:, 1] = v`` = row (y, down), in pixels with
  **integer values at pixel centres** -- the RPC convention, so ``u == rpc col`` and
  ``v == rpc row``. ``K`` uses this convention.
- Renderers in the gsplat/3DGS convention put pixel centres at (x + 0.5, y + 0.5):
  :meth:`PinholeCamera.to_render_K` returns K with (cx, cy) shifted by +0.5 for them.

Satellite cameras are ~600 km away with a field of view well under a degree, so the pinhole
fit is done in Hartley-normalised coordinates (both the 3D points and the pixels centred and
isotropically scaled), which keeps the DLT and the refinement well conditioned; the result is
then taken back to metres and pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from skyfall_core.errors import CameraFitError

Bounds = tuple[float, float, float, float, float, float]  # xmin, xmax, ymin, ymax, zmin, zmax (m)


# ----------------------------------------------------------------------------- small maths
def rodrigues(rvec: np.ndarray) -> np.ndarray:
    """Rotation matrix [3, 3] of an axis-angle vector [3] (radians)."""
    rvec = np.asarray(rvec, dtype=np.float64)
    theta = float(np.linalg.norm(rvec))
    kx = np.array([[0.0, -rvec[2], rvec[1]], [rvec[2], 0.0, -rvec[0]], [-rvec[1], rvec[0], 0.0]])
    if theta < 1e-12:
        return np.eye(3) + kx
    kx /= theta
    return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * (kx @ kx)


def rq3(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RQ decomposition of a 3x3 matrix: M = Kup @ R with Kup upper triangular with a positive
    diagonal and R orthonormal (det R = sign(det M))."""
    flip = np.eye(3)[::-1]
    q, r = np.linalg.qr((flip @ M).T)
    Kup = flip @ r.T @ flip
    R = flip @ q.T
    signs = np.diag(np.sign(np.diag(Kup)))
    return Kup @ signs, signs @ R


def _hartley(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Similarity T [d+1, d+1] that centres ``points`` [N, d] and scales their mean distance to
    sqrt(d). Returns (T, normalised points [N, d])."""
    d = points.shape[1]
    mean = points.mean(axis=0)
    scale = np.sqrt(d) / np.mean(np.linalg.norm(points - mean, axis=1))
    T = np.eye(d + 1)
    T[:d, :d] *= scale
    T[:d, d] = -scale * mean
    return T, (points - mean) * scale


# ----------------------------------------------------------------------------- the camera
@dataclass
class PinholeCamera:
    """A pinhole camera in the local ENU frame (OpenCV convention, see the module docstring).

    ``K`` [3, 3] has integer pixel centres (like the RPC); ``w2c`` [4, 4] maps ENU metres to
    camera metres; ``width``/``height`` are the image size in pixels.
    """

    K: np.ndarray  # [3, 3]
    w2c: np.ndarray  # [4, 4]
    width: int
    height: int

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.w2c = np.asarray(self.w2c, dtype=np.float64)
        if self.K.shape != (3, 3):
            raise ValueError(f"K must be [3, 3], got {self.K.shape}")
        if self.w2c.shape != (4, 4):
            raise ValueError(f"w2c must be [4, 4], got {self.w2c.shape}")
        self.width, self.height = int(self.width), int(self.height)

    @property
    def R(self) -> np.ndarray:  # [3, 3] world -> camera rotation
        return self.w2c[:3, :3]

    @property
    def t(self) -> np.ndarray:  # [3]
        return self.w2c[:3, 3]

    @property
    def camera_center(self) -> np.ndarray:  # [3] ENU metres
        return -self.R.T @ self.t

    @property
    def P(self) -> np.ndarray:  # [3, 4] projection matrix (integer pixel centres)
        return self.K @ self.w2c[:3, :]

    def project(self, points_enu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project ENU points [N, 3] -> (uv [N, 2] = (col, row), integer pixel centres; depth [N] m)."""
        X = np.asarray(points_enu, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != 3:
            raise ValueError(f"points_enu must be [N, 3], got {X.shape}")
        cam = X @ self.R.T + self.t  # [N, 3]
        depth = cam[:, 2]
        pix = cam @ self.K.T  # [N, 3]
        return pix[:, :2] / pix[:, 2:3], depth

    def to_render_K(self) -> np.ndarray:
        """K [3, 3] for renderers that put pixel centres at (x + 0.5, y + 0.5) (gsplat, 3DGS)."""
        K = self.K.copy()
        K[0, 2] += 0.5
        K[1, 2] += 0.5
        return K

    def render_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """(viewmat [4, 4], K [3, 3]) for splat renderers, which read only fx, fy, cx, cy of K.

        RPC-fitted cameras have a skew s (a few % of fx for off-nadir pushbroom views: thousands
        of pixels at the image's far rows), which those renderers would drop. It is folded into
        the view matrix as a shear of camera x, x' = x + (s / fx) y, which gives exactly
        u = fx x'/z + cx = (fx x + s y)/z + cx with depth z untouched; EWA splatting is linear in
        camera coordinates before the perspective divide, so the 2D covariances follow exactly.
        Pixel centres at +0.5 as in :meth:`to_render_K`.
        """
        K = self.to_render_K()
        shear = np.eye(4)
        shear[0, 1] = K[0, 1] / K[0, 0]
        K[0, 1] = 0.0
        return shear @ self.w2c, K

    def scaled(self, factor: float) -> "PinholeCamera":
        """This camera for the image resampled by ``factor`` (as :meth:`RPCModel.scaled`):
        a pixel centre u maps to (u + 0.5) * factor - 0.5."""
        S = np.array([[factor, 0.0, 0.5 * factor - 0.5], [0.0, factor, 0.5 * factor - 0.5], [0.0, 0.0, 1.0]])
        return PinholeCamera(S @ self.K, self.w2c.copy(), round(self.width * factor), round(self.height * factor))

    def shifted(self, row0: float, col0: float, width: int, height: int) -> "PinholeCamera":
        """This camera for a crop of size (width, height) whose top-left pixel is (row0, col0)."""
        K = self.K.copy()
        K[0, 2] -= col0
        K[1, 2] -= row0
        return PinholeCamera(K, self.w2c.copy(), width, height)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (lists of floats) with the conventions spelled out."""
        return {"K": self.K.tolist(), "w2c": self.w2c.tolist(), "width": self.width, "height": self.height,
                "convention": "OpenCV (x right, y down, z forward); w2c maps ENU metres to camera metres; "
                              "K has integer pixel centres (renderers at +0.5 use K with cx, cy + 0.5)"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PinholeCamera":
        return cls(np.asarray(d["K"], float), np.asarray(d["w2c"], float), int(d["width"]), int(d["height"]))


def camera_from_P(P: np.ndarray, width: int, height: int) -> PinholeCamera:
    """Decompose a projection matrix P [3, 4] = K [R | t] into a :class:`PinholeCamera`
    (K with a positive diagonal and K[2, 2] = 1, skew allowed; det R = +1). P's overall sign is
    chosen so that det R = +1; points then lie in front when their depth is positive."""
    P = np.asarray(P, dtype=np.float64)
    if np.linalg.det(P[:, :3]) < 0:
        P = -P
    K, R = rq3(P[:, :3])
    t = np.linalg.solve(K, P[:, 3])
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = R, t
    return PinholeCamera(K / K[2, 2], w2c, width, height)


# ----------------------------------------------------------------------------- the fit
@dataclass
class PinholeFit:
    """A pinhole fitted to an RPC, with its reprojection error on a separate dense check grid."""

    camera: PinholeCamera
    err_mean_px: float
    err_max_px: float
    n_points: int  # points of the fitting grid


def volume_grid(bounds_enu: Bounds, nxy: int, nz: int) -> np.ndarray:
    """Regular grid over the AOI box: nxy x nxy x nz ENU points [N, 3] (corners included)."""
    xmin, xmax, ymin, ymax, zmin, zmax = (float(b) for b in bounds_enu)
    if not (xmax > xmin and ymax > ymin and zmax >= zmin):
        raise ValueError(f"bounds_enu must be (xmin, xmax, ymin, ymax, zmin, zmax) ordered, got {bounds_enu}")
    x, y, z = np.meshgrid(np.linspace(xmin, xmax, nxy), np.linspace(ymin, ymax, nxy),
                          np.linspace(zmin, zmax, nz), indexing="ij")
    return np.stack([x.ravel(), y.ravel(), z.ravel()], axis=-1)


def rpc_project_enu(rpc, frame, points_enu: np.ndarray) -> np.ndarray:
    """Project ENU points [N, 3] with an RPC -> uv [N, 2] = (col, row), integer pixel centres."""
    lon, lat, h = frame.enu_to_geodetic(points_enu)
    row, col = rpc.projection(lon, lat, h)
    return np.stack([col, row], axis=-1)


def _dlt(X: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Normalised DLT: P [3, 4] with uv ~ P X (X [N, 3], uv [N, 2]); Hartley-normalised inside."""
    TX, Xn = _hartley(X)
    Tu, un = _hartley(uv)
    n = len(X)
    Xh = np.hstack([Xn, np.ones((n, 1))])
    A = np.zeros((2 * n, 12))
    A[0::2, 0:4] = Xh
    A[0::2, 8:12] = -un[:, :1] * Xh
    A[1::2, 4:8] = Xh
    A[1::2, 8:12] = -un[:, 1:2] * Xh
    Pn = np.linalg.svd(A)[2][-1].reshape(3, 4)
    return np.linalg.inv(Tu) @ Pn @ TX


def _refine(P0: np.ndarray, X: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Levenberg-Marquardt refinement of K (fx, fy, cx, cy, skew), R (axis-angle, about the
    DLT's rotation) and t, minimising the reprojection error (px). Done in normalised
    coordinates (Hartley in 3D and 2D) for conditioning; returns the refined P [3, 4] in
    ENU metres / pixels."""
    from scipy.optimize import least_squares

    TX, Xn = _hartley(X)
    Tu, un = _hartley(uv)
    cam0 = camera_from_P(Tu @ P0 @ np.linalg.inv(TX), 1, 1)
    K0, R0, t0 = cam0.K, cam0.R, cam0.t
    Xh = np.hstack([Xn, np.ones((len(Xn), 1))])
    px_per_unit = 1.0 / Tu[0, 0]

    def unpack(p: np.ndarray) -> np.ndarray:
        K = np.array([[p[0], p[4], p[2]], [0.0, p[1], p[3]], [0.0, 0.0, 1.0]])
        Rt = np.hstack([rodrigues(p[5:8]) @ R0, p[8:11, None]])
        return K @ Rt

    def residuals(p: np.ndarray) -> np.ndarray:
        proj = Xh @ unpack(p).T
        return ((proj[:, :2] / proj[:, 2:3]) - un).ravel() * px_per_unit

    p0 = np.array([K0[0, 0], K0[1, 1], K0[0, 2], K0[1, 2], K0[0, 1], 0.0, 0.0, 0.0, *t0])
    sol = least_squares(residuals, p0, method="lm", x_scale="jac", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                        max_nfev=2000)
    return np.linalg.inv(Tu) @ unpack(sol.x) @ TX


def fit_pinhole(rpc, frame, bounds_enu: Bounds, width: int, height: int, grid_xy: int = 11,
                grid_z: int = 7, *, max_error_px: float | None = None) -> PinholeFit:
    """Fit a pinhole camera to ``rpc`` over the AOI volume ``bounds_enu`` (ENU metres).

    Samples a ``grid_xy`` x ``grid_xy`` x ``grid_z`` grid over the volume, projects it with the
    RPC, fits P by the Hartley-normalised DLT, decomposes it (RQ) into K (positive diagonal,
    skew allowed) and [R | t], refines all 11 parameters by Levenberg-Marquardt on the
    reprojection error, and measures the error against the RPC on a denser check grid
    (about 2x the samples a side). Raises :class:`CameraFitError` when the volume projects
    behind the camera or, if ``max_error_px`` is given, when the worst check error exceeds it.
    """
    if grid_xy < 3 or grid_z < 2:
        raise ValueError(f"grid_xy must be >= 3 and grid_z >= 2, got {grid_xy} and {grid_z}")
    X = volume_grid(bounds_enu, grid_xy, grid_z)  # [N, 3]
    uv = rpc_project_enu(rpc, frame, X)  # [N, 2]
    if not np.all(np.isfinite(uv)):
        raise CameraFitError("the RPC does not project the AOI volume to finite pixels",
                             fix="check that the AOI lies inside the scene and its height range is sane")
    P = _refine(_dlt(X, uv), X, uv)
    camera = camera_from_P(P, width, height)

    Xc = volume_grid(bounds_enu, 2 * grid_xy + 1, 2 * grid_z + 1)
    uv_rpc = rpc_project_enu(rpc, frame, Xc)
    uv_cam, depth = camera.project(Xc)
    if np.any(depth <= 0):
        raise CameraFitError("the fitted pinhole camera sees part of the AOI volume behind it",
                             fix="check the AOI and the scene's RPC (is the AOI inside the image?)")
    err = np.linalg.norm(uv_cam - uv_rpc, axis=1)
    fit = PinholeFit(camera, float(err.mean()), float(err.max()), len(X))
    if max_error_px is not None and fit.err_max_px > max_error_px:
        raise CameraFitError(
            f"the pinhole approximation of the RPC errs by up to {fit.err_max_px:.2f} px over the AOI "
            f"(tolerance {max_error_px} px)",
            fix="use a smaller AOI or a tighter height range; large areas need several tiles")
    return fit
