"""Bias correction between views: tie points, multi-view tracks and a small bundle adjustment.

The vendor RPCs of different acquisitions disagree by a few pixels (sometimes tens): each one's
absolute pointing error. Over an AOI of a few hundred metres that error is, to well under a
pixel, a translation of the image (optionally an affine map). We estimate it from the images:

1. SIFT features on a contrast-normalised grey image (RootSIFT descriptors), per view.
2. Per pair of views: mutual nearest neighbours with Lowe's ratio test, then a geometric check
   against the epipolar geometry the raw RPCs predict. Over the AOI a satellite view is affine
   to ~0.1 px, so view j sees a point of view i at ``A uv_i + c + d z`` (``z`` its height);
   an unknown relative bias moves that by a constant, whose component across the epipolar
   direction ``d`` we find as the mode of the matches' residuals. Matches more than
   ``inlier_px`` from the mode, or whose height would fall far outside the volume, are dropped.
3. Matches chained into multi-view tracks (connected components; a track seeing one view
   twice is dropped).
4. Joint robust least squares (Huber loss by iteratively reweighted Gauss-Newton; the points
   eliminated by the Schur complement, as in any bundle adjuster) over per-view corrections and
   the tracks' 3D points in ENU, with the exact RPC projections in the residuals. Outlier
   observations and points outside the volume are rejected between rounds.

Gauge: shifting every point by the same dX moves view v's image by J_v dX (J_v the RPC's local
2x3 Jacobian), which per-view translations absorb, so the corrections are defined up to that
3-parameter freedom. A weak ridge prior on the corrections keeps the solve well posed; the
gauge is then chosen robustly: the dX that minimises the sum of the views' correction lengths
(a geometric median), so one badly-pointed view does not drag the others' geolocation.
Affine corrections add a scale of the world (and near-gauges for views of similar
directions), so their linear part has a prior of standard deviation ``affine_sigma``
(1e-4 = 0.05 px at 500 px from the image centre); on the JAX views they do not beat
translations, which are the default.

Conventions: image coordinates in pixels with integer values at pixel centres (the RPC's and
OpenCV's), ``uv = (col, row)`` internally; public results use (row, col) like the RPC. A
correction maps a raw RPC prediction to the corrected one: ``row' = row + drow`` (translation)
or ``[row', col'] = affine @ [row, col, 1]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from skyfall_core.cameras.pinhole import Bounds, rpc_project_enu, volume_grid
from skyfall_core.errors import CameraFitError
from skyfall_core.geo.rpc import RPCModel


class TiePointError(CameraFitError):
    """Too few tie points in most views: the cameras cannot be corrected (exit code 2)."""


def _finite(x: Any) -> float | None:
    """A float, or None for NaN/inf/missing (JSON has no NaN)."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class AffineCorrectedRPC:
    """An RPC followed by an image-space affine correction: ``[row', col'] = affine @ [row, col, 1]``.

    Duck-types the parts of :class:`RPCModel` that cameras use (projection, localization,
    shifted, scaled, height_range, to_dict).
    """

    rpc: RPCModel
    affine: np.ndarray  # [2, 3] on (row, col, 1)

    def _A3(self) -> np.ndarray:
        return np.vstack([np.asarray(self.affine, float), [0.0, 0.0, 1.0]])

    def projection(self, lon, lat, alt) -> tuple[np.ndarray, np.ndarray]:
        row, col = self.rpc.projection(lon, lat, alt)
        A = np.asarray(self.affine, float)
        return A[0, 0] * row + A[0, 1] * col + A[0, 2], A[1, 0] * row + A[1, 1] * col + A[1, 2]

    def localization(self, row, col, alt, **kw) -> tuple[np.ndarray, np.ndarray]:
        inv = np.linalg.inv(self._A3())
        row, col = np.asarray(row, float), np.asarray(col, float)
        r0 = inv[0, 0] * row + inv[0, 1] * col + inv[0, 2]
        c0 = inv[1, 0] * row + inv[1, 1] * col + inv[1, 2]
        return self.rpc.localization(r0, c0, alt, **kw)

    def shifted(self, row0: float, col0: float) -> "AffineCorrectedRPC":
        A = np.asarray(self.affine, float).copy()
        A[:, 2] -= (row0, col0)
        return AffineCorrectedRPC(self.rpc, A)

    def scaled(self, factor: float) -> "AffineCorrectedRPC":
        S = np.array([[factor, 0.0, 0.5 * factor - 0.5], [0.0, factor, 0.5 * factor - 0.5], [0.0, 0.0, 1.0]])
        return AffineCorrectedRPC(self.rpc.scaled(factor), (S @ self._A3() @ np.linalg.inv(S))[:2])

    @property
    def height_range(self) -> tuple[float, float]:
        return self.rpc.height_range

    def to_dict(self) -> dict[str, Any]:
        return {**self.rpc.to_dict(), "affine_row_col": np.asarray(self.affine, float).tolist()}


@dataclass
class BiasResult:
    """Per-view image-space corrections and the tie points they were estimated from."""

    offsets: np.ndarray  # [V, 2] (drow, dcol) px: corrected = raw + offset (translation part)
    affines: np.ndarray  # [V, 2, 3] on (row, col, 1): the full correction (translation -> identity + offset)
    rpcs: list  # [V] corrected RPCs (RPCModel; AffineCorrectedRPC in affine mode); raw where not corrected
    corrected: np.ndarray  # [V] bool: False = too few tie points, raw RPC kept
    points_enu: np.ndarray  # [M, 3] triangulated tie points (ENU metres)
    colors: np.ndarray  # [M, 3] mean colour of each tie point over its views (0..1)
    track_views: np.ndarray  # [M] number of views of each tie point
    tie_counts: np.ndarray  # [V] inlier tie-point observations per view
    err_before_px: float  # median reprojection error of the tie points with the raw RPCs
    err_after_px: float  # ... with the corrected RPCs
    height_range: tuple[float, float] | None  # ENU z (m) 1st..99th percentile of the tie points
    n_pairs: int  # pairs of views matched
    n_matches: int  # verified pairwise matches
    tracks: "Tracks | None" = None  # the inlier observations behind points_enu (track index = point index)
    residuals_px: np.ndarray | None = None  # [K] reprojection error of each observation, corrected RPCs
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    messages: list[str] = field(default_factory=list)  # what a user should know (flagged views, ...)
    view_err_before_px: np.ndarray | None = None  # [V] median tie-point error per view, raw RPCs (NaN: none)
    view_err_after_px: np.ndarray | None = None  # [V] ... corrected RPCs
    match_counts: np.ndarray | None = None  # [V] descriptor matches (ratio test, mutual) with any partner
    verified_counts: np.ndarray | None = None  # [V] of those, consistent with the RPC epipolar geometry
    outside_counts: np.ndarray | None = None  # [V] observations dropped: their point fell outside the volume

    def summary(self) -> dict[str, Any]:
        """JSON-able summary (no point arrays; no NaN: missing figures are None)."""
        def per_view(a):
            return None if a is None else [_finite(x) for x in np.asarray(a, float).round(4)]

        return {"offsets_row_col": self.offsets.round(4).tolist(), "corrected": self.corrected.tolist(),
                "tie_counts": self.tie_counts.tolist(), "n_points": int(len(self.points_enu)),
                "err_before_px": _finite(self.err_before_px), "err_after_px": _finite(self.err_after_px),
                "view_err_before_px": per_view(self.view_err_before_px),
                "view_err_after_px": per_view(self.view_err_after_px),
                "match_counts": None if self.match_counts is None else np.asarray(self.match_counts).tolist(),
                "verified_counts": None if self.verified_counts is None else np.asarray(self.verified_counts).tolist(),
                "height_range": self.height_range, "n_pairs": self.n_pairs, "n_matches": self.n_matches,
                "timings": self.timings, "messages": self.messages}


# ----------------------------------------------------------------------------- features
@dataclass
class Features:
    xy: np.ndarray  # [N, 2] (col, row) px, integer pixel centres
    desc: np.ndarray  # [N, 128] float32 RootSIFT (unit L2 norm)


def contrast_normalised_grey(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint8 grey [H, W]: mean of RGB, stretched between the 1st and 99th percentile of the
    valid pixels, then CLAHE (local contrast) so that views of different dates look alike."""
    import cv2

    grey = np.asarray(image, dtype=np.float32).mean(axis=-1) if image.ndim == 3 else np.asarray(image, np.float32)
    values = grey[valid] if valid.any() else grey.ravel()
    lo, hi = np.percentile(values, [1.0, 99.0])
    u8 = np.clip((grey - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    u8[~valid] = 0
    return cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(u8)


def detect_features(image: np.ndarray, valid: np.ndarray, max_features: int) -> Features:
    """SIFT keypoints (at most ``max_features``) with RootSIFT descriptors, away from invalid pixels."""
    import cv2

    grey = contrast_normalised_grey(image, valid)
    mask = cv2.erode(valid.astype(np.uint8) * 255, np.ones((9, 9), np.uint8))
    kps, desc = cv2.SIFT_create(nfeatures=int(max_features)).detectAndCompute(grey, mask)
    if desc is None or len(kps) == 0:
        return Features(np.zeros((0, 2)), np.zeros((0, 128), np.float32))
    desc = desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-12)  # RootSIFT: L1, then sqrt
    return Features(np.array([kp.pt for kp in kps], dtype=np.float64), np.sqrt(desc).astype(np.float32))


def match_descriptors(da: np.ndarray, db: np.ndarray, ratio: float = 0.8, chunk: int = 1024
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours passing Lowe's ratio test (on L2 distances) -> (ia [K], ib [K]).

    Descriptors are unit vectors, so squared distances are 2 - 2 cos; the similarity matrix is
    computed in row chunks (cache-friendly) while keeping the best row of every column.
    """
    import torch

    if len(da) < 2 or len(db) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    ta, tb = torch.from_numpy(np.ascontiguousarray(da)), torch.from_numpy(np.ascontiguousarray(db))
    top = torch.empty(len(da), 2)
    idx = torch.empty(len(da), 2, dtype=torch.long)
    col_best = torch.full((len(db),), -np.inf)
    col_arg = torch.zeros(len(db), dtype=torch.long)
    for s in range(0, len(da), chunk):
        sim = ta[s:s + chunk] @ tb.T  # [n, Nb] cosine similarities
        top[s:s + chunk], idx[s:s + chunk] = torch.topk(sim, 2, dim=1)
        best, arg = sim.max(dim=0)
        better = best > col_best
        col_best = torch.where(better, best, col_best)
        col_arg = torch.where(better, arg + s, col_arg)
    d2 = (2.0 - 2.0 * top).clamp_min(0.0)  # squared distances of the two best
    ok = (d2[:, 0] < (ratio ** 2) * d2[:, 1]) & (col_arg[idx[:, 0]] == torch.arange(len(da)))
    ia = torch.nonzero(ok).flatten()
    return ia.numpy(), idx[ia, 0].numpy()


# ----------------------------------------------------------------------------- RPC geometry
@dataclass
class LocalAffine:
    """The affine approximation uv = J @ X + u0 of a camera over the AOI volume."""

    J: np.ndarray  # [2, 3] px per metre
    u0: np.ndarray  # [2] px
    err_max_px: float  # worst deviation from the RPC over the volume


def local_affine(rpc, frame, bounds_enu: Bounds) -> LocalAffine:
    """Least-squares affine camera of ``rpc`` over the AOI volume (uv = (col, row))."""
    X = volume_grid(bounds_enu, 7, 5)
    uv = rpc_project_enu(rpc, frame, X)
    Xh = np.hstack([X, np.ones((len(X), 1))])
    sol = np.linalg.lstsq(Xh, uv, rcond=None)[0]  # [4, 2]
    err = np.linalg.norm(Xh @ sol - uv, axis=1).max()
    return LocalAffine(sol[:3].T.copy(), sol[3].copy(), float(err))


def pair_transfer(ai: LocalAffine, aj: LocalAffine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """View j's prediction of a point seen at uv_i with height z: uv_j = A uv_i + c + d z.

    Returns (A [2, 2], c [2], d [2] px per metre)."""
    inv = np.linalg.inv(ai.J[:, :2])
    A = aj.J[:, :2] @ inv
    c = aj.u0 - A @ ai.u0
    d = aj.J[:, 2] - A @ ai.J[:, 2]
    return A, c, d


def _mode_1d(values: np.ndarray, half_range: float, refine_px: float) -> float:
    """Robust location of the densest cluster of ``values`` (1 px histogram, then a local median)."""
    inside = values[np.abs(values) <= half_range]
    if len(inside) == 0:
        return 0.0
    nbins = max(int(2 * half_range), 1)
    hist, edges = np.histogram(inside, bins=nbins, range=(-half_range, half_range))
    hist = np.convolve(hist, [1, 2, 1], mode="same")
    peak = 0.5 * (edges[hist.argmax()] + edges[hist.argmax() + 1])
    near = inside[np.abs(inside - peak) <= refine_px]
    return float(np.median(near)) if len(near) else float(peak)


def verify_pair(xy_i: np.ndarray, xy_j: np.ndarray, ai: LocalAffine, aj: LocalAffine,
                z_range: tuple[float, float], max_bias_px: float, inlier_px: float) -> np.ndarray:
    """Boolean mask [K] of matches xy_i[k] <-> xy_j[k] consistent with the RPC epipolar geometry
    up to an unknown relative bias (see the module docstring)."""
    A, c, d = pair_transfer(ai, aj)
    r = xy_j - (xy_i @ A.T + c)  # [K, 2] = d z + bias + noise
    dn = float(np.linalg.norm(d))
    along = d / dn if dn > 1e-9 else np.array([1.0, 0.0])
    across = np.array([-along[1], along[0]])
    r_across, r_along = r @ across, r @ along
    b_across = _mode_1d(r_across, max_bias_px, 2.0 * inlier_px)
    ok = np.abs(r_across - b_across) <= inlier_px
    span = dn * (z_range[1] - z_range[0])
    if span < 4 * inlier_px:  # heights barely move the point: the along offset clusters too
        b_along = _mode_1d(r_along - dn * 0.5 * (z_range[0] + z_range[1]), max_bias_px, 2.0 * inlier_px + span)
        ok &= np.abs(r_along - dn * 0.5 * (z_range[0] + z_range[1]) - b_along) <= inlier_px + span
    else:
        ok &= (r_along >= dn * z_range[0] - max_bias_px) & (r_along <= dn * z_range[1] + max_bias_px)
    return ok


# ----------------------------------------------------------------------------- tracks
@dataclass
class Tracks:
    """Observations of multi-view tie points, sorted by track."""

    track: np.ndarray  # [K] track index of each observation, sorted
    view: np.ndarray  # [K] view index
    uv: np.ndarray  # [K, 2] (col, row) px
    n_tracks: int

    def subset(self, keep_obs: np.ndarray) -> tuple["Tracks", np.ndarray]:
        """Keep the observations ``keep_obs`` [K] bool, drop tracks left with < 2, renumber.
        Returns (the new tracks, the old index of each new track [M'])."""
        track, view, uv = self.track[keep_obs], self.view[keep_obs], self.uv[keep_obs]
        counts = np.bincount(track, minlength=self.n_tracks)
        ok = counts[track] >= 2
        track, view, uv = track[ok], view[ok], uv[ok]
        used, new = np.unique(track, return_inverse=True)
        return Tracks(new, view, uv, len(used)), used

    def lengths(self) -> np.ndarray:
        return np.bincount(self.track, minlength=self.n_tracks)


def build_tracks(features: list[Features], matches: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]
                 ) -> Tracks:
    """Chain pairwise matches into tracks (connected components of the match graph). A
    component that holds two keypoints of the same view is inconsistent and dropped."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    starts = np.cumsum([0] + [len(f.xy) for f in features])
    n = int(starts[-1])
    rows = [starts[i] + ia for (i, _), (ia, _) in matches.items()]
    cols = [starts[j] + ib for (_, j), (_, ib) in matches.items()]
    if not rows or n == 0:
        return Tracks(np.zeros(0, int), np.zeros(0, int), np.zeros((0, 2)), 0)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    node_view = np.repeat(np.arange(len(features)), np.diff(starts))
    size = np.bincount(label)
    # a component is consistent when its number of distinct views equals its size
    distinct = np.bincount(np.unique(label * len(features) + node_view) // len(features), minlength=len(size))
    good = (size >= 2) & (distinct == size)
    nodes = np.nonzero(good[label])[0]
    nodes = nodes[np.argsort(label[nodes], kind="stable")]
    _, track = np.unique(label[nodes], return_inverse=True)
    xy = np.concatenate([f.xy for f in features]) if n else np.zeros((0, 2))
    return Tracks(track, node_view[nodes], xy[nodes], int(track.max() + 1) if len(track) else 0)


# ----------------------------------------------------------------------------- adjustment
def _apply(uv: np.ndarray, theta: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Correct raw predictions uv [K, 2] with per-observation parameters theta [K, p]
    (p = 2: offset; p = 6: offset + 2x2 matrix M, uv' = uv + M (uv - centre) + offset)."""
    out = uv + theta[:, :2]
    if theta.shape[1] == 6:
        rel = uv - centre
        out = out + np.stack([theta[:, 2] * rel[:, 0] + theta[:, 3] * rel[:, 1],
                              theta[:, 4] * rel[:, 0] + theta[:, 5] * rel[:, 1]], axis=-1)
    return out


def _project_obs(rpcs, frame, X: np.ndarray, tracks: Tracks) -> np.ndarray:
    """Raw RPC predictions [K, 2] (col, row) of each observation's point."""
    lon, lat, h = frame.enu_to_geodetic(X)
    out = np.empty((len(tracks.track), 2))
    for v in np.unique(tracks.view):
        k = tracks.view == v
        t = tracks.track[k]
        row, col = rpcs[v].projection(lon[t], lat[t], h[t])
        out[k, 0], out[k, 1] = col, row
    return out


def _adjust(rpcs, frame, affs: list[LocalAffine], centres: np.ndarray, tracks: Tracks, X: np.ndarray,
            theta: np.ndarray, free: np.ndarray, huber_px: float, prior: np.ndarray, iters: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust Gauss-Newton (Huber, IRLS) on points X [M, 3] and the per-view parameters
    theta [V, p] of the views marked ``free`` [V] (others stay fixed), with a Gaussian prior
    theta ~ 0 of inverse variances ``prior`` [p] (gauge and regularisation). Points are eliminated
    by the Schur complement. The Jacobian of a raw RPC is its local affine J (exact to ~1e-4
    relative over the AOI). Returns (X, theta, residuals [K, 2] in px)."""
    V, p = theta.shape
    tr, vw = tracks.track, tracks.view
    J = np.stack([a.J for a in affs])[vw]  # [K, 2, 3]
    cen = centres[vw]  # [K, 2]
    # pairs of observations in the same track (for the reduced camera system)
    start = np.searchsorted(tr, np.arange(tracks.n_tracks))
    length = tracks.lengths()
    kk = np.repeat(np.arange(len(tr)), length[tr])
    ll = start[tr[kk]] + (np.arange(len(kk)) - np.repeat(np.cumsum(length[tr]) - length[tr], length[tr]))
    for _ in range(iters):
        raw = _project_obs(rpcs, frame, X, tracks)
        r = _apply(raw, theta[vw], cen) - tracks.uv  # [K, 2]
        e = np.linalg.norm(r, axis=1)
        w = np.where(e <= huber_px, 1.0, huber_px / np.maximum(e, 1e-12))  # [K]
        # d r / d theta  [K, 2, p];  d r / d X  [K, 2, 3]
        Jt = np.zeros((len(tr), 2, p))
        Jt[:, 0, 0] = Jt[:, 1, 1] = 1.0
        B = J
        if p == 6:
            rel = raw - cen
            Jt[:, 0, 2], Jt[:, 0, 3], Jt[:, 1, 4], Jt[:, 1, 5] = rel[:, 0], rel[:, 1], rel[:, 0], rel[:, 1]
            Mv = theta[vw][:, 2:].reshape(-1, 2, 2)
            B = J + Mv @ J
        Jt[~free[vw]] = 0.0
        # blocks of the normal equations
        Vt = np.zeros((tracks.n_tracks, 3, 3))
        np.add.at(Vt, tr, w[:, None, None] * np.einsum("kai,kaj->kij", B, B))
        Vt += 1e-6 * np.eye(3)  # tiny damping for near-degenerate two-view tracks
        bX = np.zeros((tracks.n_tracks, 3))
        np.add.at(bX, tr, -w[:, None] * np.einsum("kai,ka->ki", B, r))
        U = np.zeros((V, p, p))
        np.add.at(U, vw, w[:, None, None] * np.einsum("kai,kaj->kij", Jt, Jt))
        bt = np.zeros((V, p))
        np.add.at(bt, vw, -w[:, None] * np.einsum("kai,ka->ki", Jt, r))
        W = w[:, None, None] * np.einsum("kai,kaj->kij", Jt, B)  # [K, p, 3]
        Vinv = np.linalg.inv(Vt)  # [M, 3, 3]
        Y = W @ Vinv[tr]  # [K, p, 3]
        S = np.zeros((V, V, p, p))
        np.add.at(S, (vw[kk], vw[ll]), -Y[kk] @ np.swapaxes(W[ll], 1, 2))
        np.add.at(S, (np.arange(V), np.arange(V)), U)
        rhs = bt.copy()
        np.add.at(rhs, vw, -(Y @ bX[tr][:, :, None])[:, :, 0])
        # weak prior theta ~ 0 (gauge) and fixed views
        S[np.arange(V), np.arange(V)] += np.diag(prior)
        rhs -= prior * theta
        S[~free] = 0.0
        S[:, ~free] = 0.0
        S[~free, ~free] = np.eye(p)
        rhs[~free] = 0.0
        Sm = S.transpose(0, 2, 1, 3).reshape(V * p, V * p)
        dtheta = np.linalg.solve(Sm, rhs.reshape(-1)).reshape(V, p)
        corr = np.zeros((tracks.n_tracks, 3))
        np.add.at(corr, tr, (np.swapaxes(W, 1, 2) @ dtheta[vw][:, :, None])[:, :, 0])
        dX = (Vinv @ (bX - corr)[:, :, None])[:, :, 0]
        X = X + dX
        theta = theta + dtheta
        if np.abs(dtheta).max(initial=0.0) < 1e-5 and np.abs(dX).max(initial=0.0) < 1e-4:
            break
    raw = _project_obs(rpcs, frame, X, tracks)
    return X, theta, _apply(raw, theta[vw], cen) - tracks.uv


def robust_gauge(offsets: np.ndarray, J: np.ndarray, free: np.ndarray, iters: int = 50) -> np.ndarray:
    """The world shift dX [3] (ENU m) minimising sum_v |offsets_v - J_v dX| over the ``free`` views
    (offsets [V, 2] px, J [V, 2, 3] px/m): moving every point by dX and each offset by -J_v dX
    changes no prediction, and this choice keeps the corrections of most views small even when
    one view's RPC is far off (a geometric median; IRLS)."""
    o, Jf = offsets[free], J[free]
    if len(o) == 0:
        return np.zeros(3)
    dX = np.zeros(3)
    for _ in range(iters):
        w = 1.0 / np.maximum(np.linalg.norm(o - Jf @ dX, axis=1), 1e-3)  # [V]
        A = np.einsum("v,vai,vaj->ij", w, Jf, Jf) + 1e-9 * np.eye(3)
        b = np.einsum("v,vai,va->i", w, Jf, o)
        new = np.linalg.solve(A, b)
        if np.abs(new - dX).max() < 1e-7:
            return new
        dX = new
    return dX


def triangulate(rpcs, frame, affs: list[LocalAffine], tracks: Tracks, theta: np.ndarray | None = None,
                centres: np.ndarray | None = None, iters: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares triangulation (ENU) of every track with the (corrected) RPCs.
    Returns (X [M, 3], residuals [K, 2] px)."""
    V = len(rpcs)
    theta = np.zeros((V, 2)) if theta is None else theta
    centres = np.zeros((V, 2)) if centres is None else centres
    X = np.zeros((tracks.n_tracks, 3))
    X, _, r = _adjust(rpcs, frame, affs, centres, tracks, X, theta, np.zeros(V, bool), np.inf,
                      np.zeros(theta.shape[1]), iters)
    return X, r


def _sample_colours(images: list[np.ndarray], tracks: Tracks) -> np.ndarray:
    """Mean bilinear colour [M, 3] of each track over its observations."""
    total = np.zeros((tracks.n_tracks, 3))
    for v in np.unique(tracks.view):
        k = tracks.view == v
        img = np.asarray(images[v], dtype=np.float64)
        H, W = img.shape[:2]
        x = np.clip(tracks.uv[k, 0], 0, W - 1.001)
        y = np.clip(tracks.uv[k, 1], 0, H - 1.001)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        c = ((1 - fx) * (1 - fy) * img[y0, x0] + fx * (1 - fy) * img[y0, x0 + 1]
             + (1 - fx) * fy * img[y0 + 1, x0] + fx * fy * img[y0 + 1, x0 + 1])
        np.add.at(total, tracks.track[k], c[:, :3] if c.shape[1] >= 3 else np.repeat(c, 3, axis=1))
    return total / tracks.lengths()[:, None]


def select_pairs(affs: list[LocalAffine], max_pairs_per_view: int | None) -> list[tuple[int, int]]:
    """Pairs of views to match: all, or for each view its ``max_pairs_per_view`` partners with the
    most similar viewing geometry (smallest parallax per metre of height: easiest to match)."""
    V = len(affs)
    pairs = [(i, j) for i in range(V) for j in range(i + 1, V)]
    if max_pairs_per_view is None or max_pairs_per_view >= V - 1:
        return pairs
    par = np.full((V, V), np.inf)
    for i, j in pairs:
        par[i, j] = par[j, i] = np.linalg.norm(pair_transfer(affs[i], affs[j])[2])
    keep = set()
    for i in range(V):
        for j in np.argsort(par[i])[:max_pairs_per_view]:
            keep.add((min(i, int(j)), max(i, int(j))))
    return sorted(keep)


# ----------------------------------------------------------------------------- entry points
def adjust_tracks(tracks: Tracks, rpcs: list, frame, bounds_enu: Bounds, image_sizes: list[tuple[int, int]], *,
                  min_tie_points: int = 30, model: Literal["translation", "affine"] = "translation",
                  height_margin_m: float = 10.0, huber_px: float = 1.0, affine_sigma: float = 1e-4
                  ) -> BiasResult:
    """The adjustment half of :func:`correct_bias`: per-view corrections from given tie-point tracks.

    image_sizes: V (height, width) of the images (their centres anchor affine corrections).
    Rounds of robust adjustment (Huber 4 px, then ``huber_px``), each followed by the rejection
    of observations off by more than 8, 3, then 2 px and of points outside the volume (with
    ``height_margin_m`` slack in z). ``colors`` of the result are left empty (no images here).
    """
    V = len(rpcs)
    if len(image_sizes) != V:
        raise ValueError(f"image_sizes must have one entry per view ({V}), got {len(image_sizes)}")
    if model not in ("translation", "affine"):
        raise ValueError(f"model must be 'translation' or 'affine', got {model!r}")
    p = 2 if model == "translation" else 6
    # inverse prior variances: offsets 1e-3 px^-2 (gauge only), linear part 1 / affine_sigma^2
    prior = np.array([1e-3, 1e-3] + ([affine_sigma ** -2] * 4 if p == 6 else []))
    zlo, zhi = float(bounds_enu[4]) - height_margin_m, float(bounds_enu[5]) + height_margin_m
    affs = [local_affine(r, frame, bounds_enu) for r in rpcs]
    centres = np.array([[(w - 1) / 2, (h - 1) / 2] for h, w in image_sizes])  # (col, row)

    theta = np.zeros((V, p))
    free = np.ones(V, bool)
    outside = np.zeros(V, int)  # observations dropped because their point left the volume
    X = triangulate(rpcs, frame, affs, tracks)[0] if tracks.n_tracks else np.zeros((0, 3))
    r = np.zeros((0, 2))
    for huber, reject_px, iters in ((4.0, 8.0, 8), (huber_px, 3.0, 8), (huber_px, 2.0, 8), (huber_px, None, 10)):
        free = np.bincount(tracks.view, minlength=V) >= min_tie_points
        theta[~free] = 0.0
        tracks, used = tracks.subset(free[tracks.view])  # views left uncorrected do not vote
        X = X[used]
        if tracks.n_tracks == 0:
            break
        X, theta, r = _adjust(rpcs, frame, affs, centres, tracks, X, theta, free, huber, prior, iters)
        if reject_px is None:
            break
        in_volume = (X[:, 2] >= zlo) & (X[:, 2] <= zhi)
        outside += np.bincount(tracks.view[~in_volume[tracks.track]], minlength=V)
        tracks, used = tracks.subset((np.linalg.norm(r, axis=1) <= reject_px) & in_volume[tracks.track])
        X = X[used]
    if tracks.n_tracks:  # choose the gauge robustly (a median view, not a mean one), then re-measure
        dX = robust_gauge(theta[:, :2], np.stack([a.J for a in affs]), free)
        theta[free, :2] -= np.stack([a.J for a in affs])[free] @ dX
        X = X + dX
        r = _apply(_project_obs(rpcs, frame, X, tracks), theta[tracks.view], centres[tracks.view]) - tracks.uv
    residuals = np.linalg.norm(r, axis=1) if tracks.n_tracks else np.zeros(0)
    view_before, view_after = np.full(V, np.nan), np.full(V, np.nan)
    if tracks.n_tracks:
        err_after = float(np.median(residuals))
        raw_res = np.linalg.norm(triangulate(rpcs, frame, affs, tracks)[1], axis=1)
        err_before = float(np.median(raw_res))
        for v in np.unique(tracks.view):
            k = tracks.view == v
            view_before[v], view_after[v] = float(np.median(raw_res[k])), float(np.median(residuals[k]))
    else:
        err_before = err_after = float("nan")

    counts = np.bincount(tracks.view, minlength=V) if tracks.n_tracks else np.zeros(V, int)
    corrected = (counts >= min_tie_points) & free
    theta[~corrected] = 0.0
    messages = [f"view {v}: {counts[v]} tie points (< {min_tie_points}); its raw RPC is kept"
                for v in np.nonzero(~corrected)[0]]
    affines = np.zeros((V, 2, 3))
    for v in range(V):
        A_uv = np.eye(2) + (theta[v, 2:].reshape(2, 2) if p == 6 else 0.0)  # on (col, row)
        o_uv = theta[v, :2] - (A_uv - np.eye(2)) @ centres[v]
        affines[v, :, :2] = A_uv[::-1, ::-1]  # (col, row) -> (row, col)
        affines[v, :, 2] = o_uv[::-1]
    # the correction at the image centre
    offsets = affines[:, :, 2] + np.einsum("vij,vj->vi", affines[:, :, :2] - np.eye(2), centres[:, ::-1])
    if p == 2:
        out_rpcs = [r.shifted(-float(o[0]), -float(o[1])) if c else r for r, o, c in zip(rpcs, offsets, corrected)]
    else:
        out_rpcs = [AffineCorrectedRPC(r, a) if c else r for r, a, c in zip(rpcs, affines, corrected)]
    height = (float(np.percentile(X[:, 2], 1)), float(np.percentile(X[:, 2], 99))) if len(X) >= 20 else None
    return BiasResult(offsets=offsets, affines=affines, rpcs=out_rpcs, corrected=corrected, points_enu=X,
                      colors=np.zeros((len(X), 3)), track_views=tracks.lengths(), tie_counts=counts,
                      err_before_px=err_before, err_after_px=err_after, height_range=height, n_pairs=0,
                      n_matches=0, tracks=tracks, residuals_px=residuals, messages=messages,
                      view_err_before_px=view_before, view_err_after_px=view_after, outside_counts=outside)


def correct_bias(images: list[np.ndarray], valid: list[np.ndarray], rpcs: list, frame, bounds_enu: Bounds, *,
                 max_features: int = 6000, min_tie_points: int = 30,
                 model: Literal["translation", "affine"] = "translation", ratio: float = 0.8,
                 max_bias_px: float = 60.0, inlier_px: float = 1.5, max_pairs_per_view: int | None = None,
                 height_margin_m: float = 10.0, huber_px: float = 1.0, affine_sigma: float = 1e-4) -> BiasResult:
    """Estimate per-view image-space corrections of ``rpcs`` from tie points (module docstring).

    images: V arrays [H, W, 3] float 0..1 (the crops the RPCs describe); valid: V masks [H, W]
    bool; rpcs: V RPCs; frame: the job's LocalFrame; bounds_enu: the AOI volume (ENU metres),
    used to predict the epipolar geometry and to reject points outside it (with
    ``height_margin_m`` slack in z). ``max_bias_px`` bounds the raw RPCs' relative error;
    ``max_pairs_per_view`` (None = all pairs) limits matching to each view's partners of most
    similar geometry. Views with fewer than ``min_tie_points`` inlier observations keep their
    raw RPC and are flagged (``corrected`` False).
    """
    V = len(images)
    if not (len(valid) == len(rpcs) == V):
        raise ValueError(f"images, valid and rpcs must have one entry per view, got {V}, {len(valid)}, {len(rpcs)}")
    if V < 2:
        raise ValueError(f"bias correction needs at least 2 views, got {V}")
    for v, (img, m) in enumerate(zip(images, valid)):
        if img.ndim != 3 or np.shape(m) != img.shape[:2]:
            raise ValueError(f"view {v}: image must be [H, W, C] and valid [H, W], got {img.shape} and {np.shape(m)}")
    t0 = time.perf_counter()
    zlo, zhi = float(bounds_enu[4]) - height_margin_m, float(bounds_enu[5]) + height_margin_m
    affs = [local_affine(r, frame, bounds_enu) for r in rpcs]
    features = [detect_features(img, np.asarray(m, bool), max_features) for img, m in zip(images, valid)]
    t1 = time.perf_counter()

    pairs = select_pairs(affs, max_pairs_per_view)
    matches: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    n_match, n_verified = np.zeros(V, int), np.zeros(V, int)
    for i, j in pairs:
        ia, ib = match_descriptors(features[i].desc, features[j].desc, ratio)
        if len(ia) == 0:
            continue
        ok = verify_pair(features[i].xy[ia], features[j].xy[ib], affs[i], affs[j], (zlo, zhi),
                         max_bias_px, inlier_px)
        n_match[[i, j]] += len(ia)
        if ok.sum() >= 8:
            matches[(i, j)] = (ia[ok], ib[ok])
            n_verified[[i, j]] += int(ok.sum())
    tracks = build_tracks(features, matches)
    t2 = time.perf_counter()

    result = adjust_tracks(tracks, rpcs, frame, bounds_enu, [img.shape[:2] for img in images],
                           min_tie_points=min_tie_points, model=model, height_margin_m=height_margin_m,
                           huber_px=huber_px, affine_sigma=affine_sigma)
    t3 = time.perf_counter()
    colors = _sample_colours(images, result.tracks) if result.tracks.n_tracks else np.zeros((0, 3))
    timings = {"features": t1 - t0, "matching": t2 - t1, "adjustment": t3 - t2,
               "total": time.perf_counter() - t0}
    return replace(result, colors=colors, n_pairs=len(pairs),
                   n_matches=int(sum(len(a) for a, _ in matches.values())), timings=timings,
                   match_counts=n_match, verified_counts=n_verified)


def diagnose_tie_points(result: BiasResult, names: Sequence[str], min_tie_points: int,
                        height_range: tuple[float, float] | None = None, height_source: str = ""
                        ) -> tuple[list[str], str | None]:
    """What to tell a user about the views left uncorrected: (one warning a view, fatal message).

    Each warning names the view, its tie points, the likely cause read from where its matches
    were lost (few descriptor matches at all: overlap, clouds, seasons; matches that do not fit
    the RPC geometry inside the height range, or whose points triangulate outside it: the height
    range or a far-off RPC; matches lost otherwise in the adjustment: inconsistent views), and
    what to do. The fatal message (None when most
    views were corrected) is for :class:`TiePointError`: more than half the views uncorrected.
    """
    V = len(names)
    bad = [v for v in range(V) if not bool(result.corrected[v])]
    hr = "" if height_range is None else f" {height_range[0]:.0f}..{height_range[1]:.0f} m"
    src = f" ({height_source})" if height_source else ""
    warnings, causes = [], set()
    for v in bad:
        n = int(result.tie_counts[v])
        m = None if result.match_counts is None else int(result.match_counts[v])
        k = None if result.verified_counts is None else int(result.verified_counts[v])
        out = None if result.outside_counts is None else int(result.outside_counts[v])
        head = f"view {names[v]}: {n} tie points (< {min_tie_points}); its raw RPC is kept, uncorrected"
        if m is not None and m < min_tie_points:
            causes.add("images")
            why = (f" — only {m} feature matches with the other views: likely too little overlap with them over "
                   "the AOI, clouds or haze, or a different season or lighting. Look at its crop; drop the view "
                   "or add views of closer dates")
        elif k is not None and k < min_tie_points:
            causes.add("heights")
            why = (f" — {m} feature matches but only {k} fit the RPC geometry inside the height range{hr}{src}: "
                   "likely a wrong height range (or an RPC off by more than the allowed bias). Give the AOI's "
                   "min_height_m/max_height_m or a DEM ([aoi] dem_path), or drop the view")
        elif out is not None and out >= max(min_tie_points, n):
            causes.add("heights")
            why = (f" — {m} feature matches, {k} fit the RPC geometry, but {out} of their observations "
                   f"triangulate outside the height range{hr}{src}: likely a wrong height range. Give the AOI's "
                   "min_height_m/max_height_m or a DEM ([aoi] dem_path), or drop the view")
        else:
            causes.add("adjustment")
            why = (" — its matches disagree with the other views in the adjustment (points outside the height "
                   f"range{hr}, or the scene changed between dates). Check the height range, or drop the view")
        warnings.append(head + why)
    if 2 * len(bad) <= V:
        return warnings, None
    likely = []
    if "heights" in causes:
        likely.append(f"the height range{hr}{src} is probably wrong — give min_height_m/max_height_m in the AOI's "
                      "properties or a DEM GeoTIFF in [aoi] dem_path")
    if "images" in causes:
        likely.append("the views overlap too little over the AOI, are clouded, or differ too much (seasons, "
                      "lighting) — choose views of closer dates without clouds")
    if "adjustment" in causes or not likely:
        likely.append("the tie points disagree between views — check the height range and the views")
    fatal = (f"too few tie points in {len(bad)} of {V} views ({', '.join(names[v] for v in bad)}; fewer than "
             f"{min_tie_points} each): their RPC biases cannot be corrected, and the reconstruction would be "
             f"blurred or doubled. Likely: {'; '.join(likely)}")
    return warnings, fatal


def compare_with_reference(rpcs_a: list, rpcs_b: list, frame, bounds_enu: Bounds, *,
                           remove: Literal["none", "mean", "gauge"] = "none", n: int = 11) -> list[float]:
    """Per-view mean pixel distance between two sets of RPCs over an n x n x 5 grid of the AOI volume.

    remove="mean" first subtracts the mean (over views) of the per-view mean offsets; "gauge"
    subtracts the best common 3D shift of the world (the exact gauge freedom of bias correction:
    view v's image moves by J_v dX).
    """
    if len(rpcs_a) != len(rpcs_b):
        raise ValueError(f"rpcs_a and rpcs_b must have one RPC per view, got {len(rpcs_a)} and {len(rpcs_b)}")
    X = volume_grid(bounds_enu, n, 5)
    diffs = np.stack([rpc_project_enu(b, frame, X) - rpc_project_enu(a, frame, X)
                      for a, b in zip(rpcs_a, rpcs_b)])  # [V, N, 2]
    if remove == "mean":
        diffs = diffs - diffs.mean(axis=(0, 1))
    elif remove == "gauge":
        Js = np.stack([local_affine(a, frame, bounds_enu).J for a in rpcs_a])  # [V, 2, 3]
        dX = np.linalg.lstsq(Js.reshape(-1, 3), diffs.mean(axis=1).reshape(-1), rcond=None)[0]
        diffs = diffs - (Js @ dX)[:, None, :]
    elif remove != "none":
        raise ValueError(f"remove must be 'none', 'mean' or 'gauge', got {remove!r}")
    return [float(d) for d in np.linalg.norm(diffs, axis=2).mean(axis=1)]
