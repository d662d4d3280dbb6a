"""Procedural textures: integer-hash value noise and fractal sums of it (fbm).

Only integer arithmetic, ``+ - * /`` and ``floor`` are used, so results are bit-identical on any
machine (no transcendental functions whose last bit depends on the maths library).
"""

from __future__ import annotations

import numpy as np

_M1, _M2, _M3 = np.uint32(0x7FEB352D), np.uint32(0x846CA68B), np.uint32(0x9E3779B1)


def hash_uniform(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic hash of integer lattice points -> float64 uniform in [0, 1). Same shape."""
    x = (np.asarray(ix, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32)
    y = (np.asarray(iy, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32)
    h = x * _M3 + (y ^ np.uint32(salt & 0xFFFFFFFF)) * _M1
    h = h ^ (h >> np.uint32(16))
    h = h * _M1
    h = h ^ (h >> np.uint32(15))
    h = (h + y * _M3) * _M2
    h = h ^ (h >> np.uint32(16))
    return h.astype(np.float64) * (1.0 / 4294967296.0)


def value_noise(x: np.ndarray, y: np.ndarray, salt: int) -> np.ndarray:
    """Smooth value noise in [0, 1) with unit lattice spacing (smoothstep-interpolated)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    fx, fy = np.floor(x), np.floor(y)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    tx, ty = x - fx, y - fy
    sx, sy = tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty)
    a = hash_uniform(ix, iy, salt)
    b = hash_uniform(ix + 1, iy, salt)
    c = hash_uniform(ix, iy + 1, salt)
    d = hash_uniform(ix + 1, iy + 1, salt)
    top = a + (b - a) * sx
    bottom = c + (d - c) * sx
    return top + (bottom - top) * sy


def fbm(x: np.ndarray, y: np.ndarray, scale: float, salt: int, octaves: int = 4) -> np.ndarray:
    """Fractal sum of value noise (gain 1/2, lacunarity 2); ``scale`` = largest feature size in
    the units of x, y. Returns values in [0, 1), mean about 0.5."""
    x, y = np.asarray(x, dtype=np.float64) / scale, np.asarray(y, dtype=np.float64) / scale
    total = np.zeros(np.broadcast(x, y).shape)
    amplitude, norm = 1.0, 0.0
    for k in range(octaves):
        # rotate-free decorrelation between octaves: an offset per octave
        total += amplitude * value_noise(x + 17.13 * k, y - 31.7 * k, salt + 101 * k)
        norm += amplitude
        x, y, amplitude = x * 2.0, y * 2.0, amplitude * 0.5
    return total / norm


def cell_random(x: np.ndarray, y: np.ndarray, cell: float, salt: int) -> np.ndarray:
    """A constant random value in [0, 1) per square cell of side ``cell`` (e.g. per window)."""
    return hash_uniform(np.floor(np.asarray(x) / cell).astype(np.int64),
                        np.floor(np.asarray(y) / cell).astype(np.int64), salt)
