"""The splat as Niantic's `.spz` (version 3: gzip of a 16-byte header + attribute streams), the
compact web format Spark (`@sparkjsdev/spark`) and the Niantic/Adobe tools load.

Layout (github.com/nianticlabs/spz, README "File Format" and src/cc/load-spz.cc at 21715c3):
header <I magic 0x5053474e "NGSP", <I version 3, <I numPoints, u8 shDegree, u8 fractionalBits,
u8 flags, u8 reserved; then, all points of one attribute after another: positions (3 x 24-bit
signed fixed point, `fractionalBits` fraction bits), alphas (u8, sigmoid x 255), colours (u8 per
channel, sh0 x 0.15 x 255 + 127.5), scales (u8 per axis, (log s + 10) x 16), rotations (u32 LE
"smallest three" of the unit quaternion in x y z w order: 2-bit index of the largest component,
then per other component a sign bit and 9-bit magnitude / sqrt(1/2)), SH (u8 per coefficient,
x 128 + 128, coefficient-major with the channel inner; degree 1 kept to 5 bits, higher to 4 as
the reference packer does). Version 3 (not 4, which needs ZSTD) because every SPZ reader reads it.

Axes: SPZ stores RUB (x right, y up, z back; the three.js convention). Our data are local ENU
(x east, y north, z up), so the writer rotates by -90 deg about x: (e, n, u) -> (e, u, -n)
(x = east, y = up, z = south), quaternions by the same rotation and the SH bands by their
rotation matrices; `read_spz` undoes it. Splats with opacity < 1/255 are dropped (invisible).
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import torch

from skyfall_core.atomic import write_bytes
from skyfall_core.export.common import model_arrays
from skyfall_core.splat.model import GaussianModel
from skyfall_core.splat.sh import sh_bases

MAGIC, VERSION, COLOR_SCALE = 0x5053474E, 3, 0.15
HEADER = struct.Struct("<IIIBBBB")
ENU_TO_RUB = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # (e, n, u) -> (e, u, -n)
Q_ENU_TO_RUB = np.array([math.sqrt(0.5), -math.sqrt(0.5), 0.0, 0.0])  # w x y z, -90 deg about x


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton products of w x y z quaternions (broadcasting)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def sh_rotation(rotation: np.ndarray, degree: int) -> np.ndarray:
    """[K-1, K-1] matrix M with shN' = M @ shN for a scene rotated by `rotation` (3x3): the
    block-diagonal per-band rotations, fitted exactly on sample directions (bands are closed
    under rotation)."""
    K = (degree + 1) ** 2
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(256, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    basis = sh_bases(degree, torch.from_numpy(dirs)).numpy()[:, 1:]  # Y(d)
    rotated = sh_bases(degree, torch.from_numpy(dirs @ rotation)).numpy()[:, 1:]  # Y(R^T d)
    m, *_ = np.linalg.lstsq(basis, rotated, rcond=None)  # Y(R^T d) = Y(d) m: f(R^T d) = Y(d) (m c)
    return m if K > 1 else np.zeros((0, 0))


def _fractional_bits(positions: np.ndarray) -> int:
    reach = float(np.abs(positions).max()) if len(positions) else 0.0
    bits = 12
    while bits > 0 and reach * (1 << bits) >= (1 << 23) - 1:
        bits -= 1
    return bits


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    bucket = 1 << (8 - bits)
    q = np.round(x * 128.0).astype(np.int64) + 128
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def _pack_rotations(quats_wxyz: np.ndarray) -> np.ndarray:
    q = quats_wxyz[:, [1, 2, 3, 0]]  # x y z w
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)
    negate = q[np.arange(len(q)), largest] < 0
    comp = largest.astype(np.uint64)
    for i in range(4):
        other = largest != i
        neg = ((q[:, i] < 0) ^ negate).astype(np.uint64)
        mag = np.floor(511.0 * np.abs(q[:, i]) / math.sqrt(0.5) + 0.5).astype(np.uint64)
        comp = np.where(other, (comp << np.uint64(10)) | (neg << np.uint64(9)) | mag, comp)
    return comp.astype("<u4")


def _unpack_rotations(comp: np.ndarray) -> np.ndarray:
    comp = comp.astype(np.uint64)
    largest = (comp >> np.uint64(30)).astype(np.int64)
    q = np.zeros((len(comp), 4))
    rest = comp.copy()
    for i in (3, 2, 1, 0):
        other = largest != i
        mag = (rest & np.uint64(511)).astype(np.float64)
        neg = ((rest >> np.uint64(9)) & np.uint64(1)).astype(bool)
        value = math.sqrt(0.5) * mag / 511.0 * np.where(neg, -1.0, 1.0)
        q[:, i] = np.where(other, value, 0.0)
        rest = np.where(other, rest >> np.uint64(10), rest)
    q[np.arange(len(q)), largest] = np.sqrt(np.clip(1.0 - (q * q).sum(axis=1), 0.0, None))
    return q[:, [3, 0, 1, 2]]  # w x y z


def spz_bytes(model: GaussianModel, opacity_min: float = 1 / 255) -> bytes:
    """The .spz (version 3, gzip) of `model` (see the module docstring)."""
    a = model_arrays(model)
    keep = a["opacity"] >= opacity_min
    n, degree = int(keep.sum()), model.sh_degree
    positions = a["means"][keep] @ ENU_TO_RUB.T
    quats = _quat_mul(Q_ENU_TO_RUB, a["quats"][keep])
    shN = np.einsum("jk,nkc->njc", sh_rotation(ENU_TO_RUB, degree), a["shN"][keep]) if degree else a["shN"][keep]
    bits = _fractional_bits(positions)
    fixed = np.round(positions * (1 << bits)).astype(np.int64).reshape(-1) & 0xFFFFFF
    pos_bytes = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, (fixed >> 16) & 0xFF], 1).astype(np.uint8)
    sh = np.zeros((n, 0), np.uint8)
    if degree:
        sh = np.concatenate([_quantize_sh(shN[:, :3], 5).reshape(n, -1),
                             _quantize_sh(shN[:, 3:], 4).reshape(n, -1)], axis=1)
    body = b"".join([
        HEADER.pack(MAGIC, VERSION, n, degree, bits, 0, 0),
        pos_bytes.tobytes(),
        _u8(a["opacity"][keep] * 255.0).tobytes(),
        _u8(a["sh0"][keep] * (COLOR_SCALE * 255.0) + 0.5 * 255.0).tobytes(),
        _u8((a["log_scales"][keep] + 10.0) * 16.0).tobytes(),
        _pack_rotations(quats).tobytes(),
        sh.tobytes(),
    ])
    return gzip.compress(body, compresslevel=9, mtime=0)


def write_spz(path: str | Path, model: GaussianModel, opacity_min: float = 1 / 255) -> Path:
    path = Path(path)
    write_bytes(path, spz_bytes(model, opacity_min))
    return path


def read_spz(path: str | Path) -> dict[str, np.ndarray | int]:
    """Decode a version 2/3 gzip .spz back to our ENU frame: means [N, 3], log_scales [N, 3],
    quats [N, 4] (w x y z), opacity [N] (0..1), sh0 [N, 3], shN [N, K-1, 3], sh_degree."""
    data = gzip.decompress(Path(path).read_bytes())
    magic, version, n, degree, bits, _flags, _ = HEADER.unpack_from(data, 0)
    if magic != MAGIC or version not in (2, 3):
        raise ValueError(f"{path}: not a version 2/3 gzip SPZ (magic {magic:#x}, version {version})")
    offset = HEADER.size

    def take(count: int) -> np.ndarray:
        nonlocal offset
        chunk = np.frombuffer(data, np.uint8, count, offset)
        offset += count
        return chunk

    raw = take(9 * n).reshape(n * 3, 3).astype(np.int64)
    fixed = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    positions = (fixed / float(1 << bits)).reshape(n, 3)
    opacity = take(n) / 255.0
    sh0 = (take(3 * n).reshape(n, 3) / 255.0 - 0.5) / COLOR_SCALE
    log_scales = take(3 * n).reshape(n, 3) / 16.0 - 10.0
    if version >= 3:
        quats = _unpack_rotations(take(4 * n).view("<u4"))
    else:
        xyz = take(3 * n).reshape(n, 3) / 127.5 - 1.0
        quats = np.c_[np.sqrt(np.clip(1 - (xyz ** 2).sum(1), 0, None)), xyz]
    K = (degree + 1) ** 2
    shN = ((take(n * (K - 1) * 3).astype(np.float64) - 128.0) / 128.0).reshape(n, K - 1, 3)
    back = ENU_TO_RUB.T
    q_back = Q_ENU_TO_RUB * np.array([1.0, -1.0, -1.0, -1.0])  # conjugate
    if degree:
        shN = np.einsum("jk,nkc->njc", sh_rotation(back, degree), shN)
    return {"means": positions @ back.T, "log_scales": log_scales, "quats": _quat_mul(q_back, quats),
            "opacity": opacity, "sh0": sh0, "shN": shN, "sh_degree": degree}
