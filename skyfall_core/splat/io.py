"""Splat files: the standard 3DGS PLY, the PlayCanvas compressed PLY for the web, georef.json.

* `save_ply` / `load_ply`: the INRIA 3DGS layout read by every splat tool: x y z nx ny nz,
  f_dc_0..2, f_rest_* (channel-major: all red coefficients, then green, then blue), opacity
  (logit), scale_0..2 (log), rot_0..3 (w x y z), all float32 little endian. Exact round trip.
* `save_compressed_ply`: PlayCanvas "compressed PLY" (SuperSplat, Spark and GaussianSplats3D
  load it): splats sorted along a Morton curve, chunks of 256 with float min/max bounds, per
  splat 4 uint32 (position 11/10/11, rotation "smallest three" 2+10/10/10, log-scale 11/10/11,
  colour+opacity 8/8/8/8) and 8-bit SH bands. Byte-identical to gsplat's
  `export_splats(format="ply_compressed")` (except that a chunk with zero extent on an axis
  stores 0 there instead of NaN, and an SH element is only written when there are bands);
  about 16 bytes + SH bytes a splat instead of 248 for degree 3.
* `write_georef`: `georef.json` beside an export with the ENU origin and the frame convention.
"""

from __future__ import annotations

import json
import math
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import torch
from plyfile import PlyData, PlyElement, PlyParseError
from torch import Tensor

from skyfall_core.atomic import atomic_path, write_bytes, write_text
from skyfall_core.errors import SkyfallError
from skyfall_core.splat.model import GaussianModel
from skyfall_core.splat.sh import SH_C0

FRAME_CONVENTION = "local ENU metres, z up"
CHUNK_SIZE = 256  # splats per chunk of the compressed PLY
GEOREF_KEYS = ("lat", "lon", "h", "utm_epsg")


class SplatFileError(SkyfallError):
    """A splat file cannot be read (not a PLY, or a PLY without 3DGS properties)."""


def ply_attribute_names(n_rest: int) -> list[str]:
    """Vertex property names of a 3DGS PLY with `n_rest` f_rest values (3 x (K - 1))."""
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _model_arrays(model: GaussianModel) -> dict[str, np.ndarray]:
    """Raw parameters as float32 numpy arrays in the PLY layout."""
    p = {name: t.detach().cpu().float() for name, t in model.params.items()}
    N = model.num_gaussians
    return {
        "means": p["means"].numpy(),
        "f_dc": p["sh0"].reshape(N, 3).numpy(),
        "f_rest": p["shN"].transpose(1, 2).reshape(N, -1).numpy(),  # [N, 3 (K-1)] channel-major
        "opacities": p["opacities"].reshape(N, 1).numpy(),
        "scales": p["scales"].numpy(),
        "quats": p["quats"].numpy(),
    }


def save_ply(path: str | Path, model: GaussianModel) -> Path:
    """Write the standard 3DGS binary PLY (atomically). Returns the path."""
    a = _model_arrays(model)
    N = model.num_gaussians
    names = ply_attribute_names(a["f_rest"].shape[1])
    values = np.concatenate(
        [a["means"], np.zeros((N, 3), np.float32), a["f_dc"], a["f_rest"], a["opacities"],
         a["scales"], a["quats"]], axis=1,
    ).astype("<f4")  # [N, len(names)]
    vertices = np.empty(N, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertices[name] = values[:, i]
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")], text=False,
                byte_order="<").write(str(tmp))
    return path


def load_ply(path: str | Path) -> GaussianModel:
    """Read a 3DGS PLY (ours, INRIA's, gsplat's, nerfstudio's) into a GaussianModel."""
    path = Path(path)
    try:
        vertex = PlyData.read(str(path))["vertex"]
    except (OSError, ValueError, KeyError, PlyParseError) as error:
        raise SplatFileError(f"cannot read a 3DGS PLY ({error})", path=path,
                             fix="export the splat again as a standard 3DGS .ply") from error
    names = {prop.name for prop in vertex.properties}
    rest = sorted((n for n in names if n.startswith("f_rest_")), key=lambda n: int(n[7:]))
    needed = set(ply_attribute_names(len(rest))) - {"nx", "ny", "nz"}
    if not needed <= names:
        raise SplatFileError(f"PLY lacks 3DGS properties {sorted(needed - names)}", path=path,
                             fix="export a 3DGS splat PLY (not a plain point cloud)")
    n_bases = len(rest) // 3 + 1
    sh_degree = round(math.sqrt(n_bases)) - 1
    if (sh_degree + 1) ** 2 != n_bases or len(rest) % 3:
        raise SplatFileError(f"{len(rest)} f_rest properties match no SH degree", path=path)

    def column(*keys: str) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[k], dtype=np.float32) for k in keys], 1))

    N = len(vertex.data)
    params = {
        "means": column("x", "y", "z"),
        "sh0": column("f_dc_0", "f_dc_1", "f_dc_2").reshape(N, 1, 3),
        "shN": (column(*rest).reshape(N, 3, n_bases - 1).transpose(1, 2)
                if rest else torch.zeros(N, 0, 3)),
        "opacities": column("opacity").reshape(N),
        "scales": column("scale_0", "scale_1", "scale_2"),
        "quats": column("rot_0", "rot_1", "rot_2", "rot_3"),
    }
    return GaussianModel(params, sh_degree=sh_degree)


# ---------------------------------------------------------------- compressed PLY (PlayCanvas)

def morton_order(means: Tensor) -> Tensor:
    """Indices sorting points [N, 3] along a 3D Morton curve over their bounding box
    (10 bits an axis, as gsplat's exporter)."""
    lo = means.min(dim=0).values
    extent = means.max(dim=0).values - lo
    extent = torch.where(extent == 0, torch.ones_like(extent), extent)
    cells = ((means - lo) / extent * 1024).floor().to(torch.int64)  # [N, 3]

    def spread(v: Tensor) -> Tensor:  # interleave 10 bits with two zeros each
        v = v & 0x000003FF
        v = (v ^ (v << 16)) & 0xFF0000FF
        v = (v ^ (v << 8)) & 0x0300F00F
        v = (v ^ (v << 4)) & 0x030C30C3
        return (v ^ (v << 2)) & 0x09249249

    codes = (spread(cells[:, 2]) << 2) + (spread(cells[:, 1]) << 1) + spread(cells[:, 0])
    return torch.argsort(codes, stable=True)


def pack_unorm(value: Tensor, bits: int) -> Tensor:
    """Quantise values in 0..1 to `bits`-bit unsigned integers (round to nearest, clamped)."""
    top = (1 << bits) - 1
    return torch.clamp(torch.floor(value * top + 0.5), 0, top).to(torch.int64)


def pack_111011(v: Tensor) -> Tensor:
    """[M, 3] values in 0..1 -> uint32 codes x:11 | y:10 | z:11 bits [M]."""
    return (pack_unorm(v[:, 0], 11) << 21) | (pack_unorm(v[:, 1], 10) << 11) | pack_unorm(v[:, 2], 11)


def pack_8888(v: Tensor) -> Tensor:
    """[M, 4] values in 0..1 -> uint32 codes of 4 bytes [M]."""
    return ((pack_unorm(v[:, 0], 8) << 24) | (pack_unorm(v[:, 1], 8) << 16)
            | (pack_unorm(v[:, 2], 8) << 8) | pack_unorm(v[:, 3], 8))


def pack_rotation(quats: Tensor) -> Tensor:
    """Quaternions [M, 4] (wxyz) -> "smallest three" uint32 codes [M]: index of the largest
    component (2 bits), then the other three in 10 bits each, scaled by sqrt(2)/2 around 0.5."""
    q = quats / torch.linalg.norm(quats, dim=-1, keepdim=True)
    largest = torch.argmax(q.abs(), dim=-1)  # [M]
    rows = torch.arange(len(q))
    q = torch.where((q[rows, largest] < 0)[:, None], -q, q)
    others = torch.tensor([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]  # [M, 3]
    packed = pack_unorm(q[rows[:, None], others] * (math.sqrt(2) * 0.5) + 0.5, 10)  # [M, 3]
    return (largest << 30) | (packed[:, 0] << 20) | (packed[:, 1] << 10) | packed[:, 2]


def _chunk_bounds(values: Tensor, n_chunks: int) -> tuple[Tensor, Tensor]:
    """Per-chunk min and max [n_chunks, D] of values [M, D] in chunk order (last chunk short)."""
    pad = n_chunks * CHUNK_SIZE - len(values)
    padded = torch.cat([values, values[-1:].expand(pad, -1)]) if pad else values
    chunks = padded.reshape(n_chunks, CHUNK_SIZE, -1)
    return chunks.min(dim=1).values, chunks.max(dim=1).values


def _normalise_in_chunks(values: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    chunk = torch.arange(len(values)) // CHUNK_SIZE
    span = hi - lo
    safe = torch.where(span == 0, torch.ones_like(span), span)
    return torch.where(span[chunk] == 0, torch.zeros_like(values), (values - lo[chunk]) / safe[chunk])


def compressed_ply_bytes(model: GaussianModel, opacity_threshold: float = 1 / 255) -> bytes:
    """The PlayCanvas compressed PLY of `model` (see the module docstring)."""
    p = {name: t.detach().cpu().float() for name, t in model.params.items()}
    N = model.num_gaussians
    f_rest = p["shN"].transpose(1, 2).reshape(N, -1)  # [N, 3 (K-1)] channel-major
    finite = torch.ones(N, dtype=torch.bool)
    for t in (p["means"], p["scales"], p["quats"], p["opacities"][:, None],
              p["sh0"].reshape(N, 3), f_rest):
        finite &= torch.isfinite(t).all(dim=1)
    keep = finite & (torch.sigmoid(p["opacities"]) > opacity_threshold)
    means, scales, quats = p["means"][keep], p["scales"][keep], p["quats"][keep]
    colors = (p["sh0"].reshape(N, 3) * SH_C0 + 0.5)[keep]
    opacities, f_rest = torch.sigmoid(p["opacities"][keep]), f_rest[keep]
    M = len(means)
    n_chunks = math.ceil(M / CHUNK_SIZE)
    if M:
        order = morton_order(means)
        means, scales, quats = means[order], scales[order], quats[order]
        colors, opacities, f_rest = colors[order], opacities[order], f_rest[order]

    header = ["ply", "format binary_little_endian 1.0", f"element chunk {n_chunks}"]
    header += [f"property float {kind}_{axis}" for kind in ("min", "max") for axis in "xyz"]
    header += [f"property float {kind}_scale_{axis}" for kind in ("min", "max") for axis in "xyz"]
    header += [f"property float {kind}_{c}" for kind in ("min", "max") for c in "rgb"]
    header += [f"element vertex {M}"] + [f"property uint packed_{name}" for name in
                                           ("position", "rotation", "scale", "color")]
    if f_rest.shape[1]:
        header += [f"element sh {M}"] + [f"property uchar f_rest_{j}" for j in range(f_rest.shape[1])]
    header += ["end_header"]
    out = BytesIO()
    out.write(("\n".join(header) + "\n").encode("ascii"))
    if not M:
        return out.getvalue()

    mean_lo, mean_hi = _chunk_bounds(means, n_chunks)
    scale_lo, scale_hi = _chunk_bounds(scales, n_chunks)
    scale_lo, scale_hi = scale_lo.clamp(-20, 20), scale_hi.clamp(-20, 20)
    color_lo, color_hi = _chunk_bounds(colors, n_chunks)
    chunk_table = torch.cat([mean_lo, mean_hi, scale_lo, scale_hi, color_lo, color_hi], dim=1)
    packed = torch.stack([
        pack_111011(_normalise_in_chunks(means, mean_lo, mean_hi)),
        pack_rotation(quats),
        pack_111011(_normalise_in_chunks(scales, scale_lo, scale_hi)),
        pack_8888(torch.cat([_normalise_in_chunks(colors, color_lo, color_hi),
                             opacities[:, None]], dim=1)),
    ], dim=1)  # [M, 4]
    sh_bytes = torch.clamp(torch.trunc((f_rest / 8 + 0.5) * 256), 0, 255).to(torch.uint8)
    out.write(chunk_table.numpy().astype("<f4").tobytes())
    out.write(packed.numpy().astype("<u4").tobytes())
    out.write(sh_bytes.numpy().tobytes())
    return out.getvalue()


def save_compressed_ply(path: str | Path, model: GaussianModel,
                        georef: dict[str, Any] | None = None) -> Path:
    """Write the web splat (`*.compressed.ply` by convention) and, with `georef`, a
    `georef.json` beside it. Returns the path of the splat."""
    path = Path(path)
    write_bytes(path, compressed_ply_bytes(model))
    if georef is not None:
        write_georef(path.parent / "georef.json", georef, files=[path.name])
    return path


def write_georef(path: str | Path, origin: dict[str, Any], files: list[str] | None = None) -> Path:
    """Write georef.json: the ENU origin {lat, lon (degrees WGS84), h (metres, ellipsoidal),
    utm_epsg} and the frame convention of the splat coordinates."""
    missing = [key for key in GEOREF_KEYS if key not in origin]
    if missing:
        raise ValueError(f"georef origin needs keys {GEOREF_KEYS}, missing {missing}")
    for key in ("lat", "lon", "h"):
        if not isinstance(origin[key], (int, float)) or not math.isfinite(origin[key]):
            raise ValueError(f"georef {key} must be a finite number, got {origin[key]!r}")
    if not -90.0 <= origin["lat"] <= 90.0 or not -180.0 <= origin["lon"] <= 180.0:
        raise ValueError(f"georef lat/lon out of range: {origin['lat']}, {origin['lon']}")
    document = {
        "origin": {key: origin[key] for key in GEOREF_KEYS},
        **georef_transforms(origin),
        "frame": FRAME_CONVENTION,
        "axes": {"x": "east", "y": "north", "z": "up"},
        "units": {"lat": "degrees (WGS84)", "lon": "degrees (WGS84)",
                  "h": "metres above the WGS84 ellipsoid", "xyz": "metres"},
        "files": files or [],
    }
    path = Path(path)
    write_text(path, json.dumps(document, indent=2) + "\n")
    return path


def georef_transforms(origin: dict[str, Any]) -> dict[str, Any]:
    """The ENU frame's exact ENU->ECEF 4x4 (EPSG:4978, metres; row-major, applied to [x, y, z, 1])
    and the ENU->UTM affine (the frame's UTM zone; linear at the origin: grid convergence and
    scale factor, exact to < 1 cm within 1 km of it; pyproj gives the exact conversion)."""
    from skyfall_core.geo.frames import LocalFrame

    frame = LocalFrame(float(origin["lon"]), float(origin["lat"]), float(origin["h"]))
    enu_to_ecef = np.eye(4)
    enu_to_ecef[:3, :3] = frame.R_ecef_to_enu.T  # columns = east, north, up in ECEF
    enu_to_ecef[:3, 3] = frame.origin_ecef
    step = 100.0
    e0, ex, ey = frame.enu_to_utm(np.array([[0.0, 0.0, 0.0], [step, 0.0, 0.0], [0.0, step, 0.0]]))[:, :2]
    affine = [[(ex[0] - e0[0]) / step, (ey[0] - e0[0]) / step, e0[0]],
              [(ex[1] - e0[1]) / step, (ey[1] - e0[1]) / step, e0[1]]]
    return {
        "enu_to_ecef": {"crs": "EPSG:4978", "matrix_row_major": enu_to_ecef.tolist()},
        "enu_to_utm": {"crs": f"EPSG:{frame.utm_epsg}", "affine_row_major": affine,
                       "note": "easting, northing = A @ [x, y, 1]; heights: h = origin h + z (ellipsoidal; "
                               "Earth curvature ignored, < 2 cm within 500 m)"},
    }


def read_georef(path: str | Path) -> dict[str, Any]:
    """Read a georef.json written by `write_georef`."""
    return json.loads(Path(path).read_text())
