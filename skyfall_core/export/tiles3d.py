"""The splat as 3D Tiles 1.1: `tileset.json` + one glTF binary with `KHR_gaussian_splatting`.

Extension: KHR_gaussian_splatting, Release Candidate as of KhronosGroup/glTF commit 63770cc
(2026-04-15, "Editorial review (#2567)"), extensions/2.0/Khronos/KHR_gaussian_splatting/README.md.
One mesh primitive, mode POINTS (0), float attributes:
  POSITION                                   VEC3   splat mean (local ENU metres, see below)
  COLOR_0                                    VEC4   fallback colour: sRGB->linear of clamp(0.5 + C0 sh0),
                                                    alpha = opacity (the spec's Fallback Behavior)
  KHR_gaussian_splatting:ROTATION            VEC4   unit quaternion, glTF order x, y, z, w
  KHR_gaussian_splatting:SCALE               VEC3   linear standard deviations (exp of our log scales)
  KHR_gaussian_splatting:OPACITY             SCALAR 0..1 (sigmoid of our logits)
  KHR_gaussian_splatting:SH_DEGREE_0_COEF_0  VEC3   sh0 (no 0.5 bias, no C0 factor)
  KHR_gaussian_splatting:SH_DEGREE_l_COEF_n  VEC3   higher bands, m = -l..l (gsplat's order is the spec's)
extension object: kernel "ellipse", colorSpace "srgb_rec709_display" (trained on display sRGB
images), projection "perspective", sortingMethod "cameraDistance".

Axes (3D Tiles 1.1 spec, section "y-up to z-up"): a runtime rotates glTF content from y-up to
z-up (+90 deg about x) before the tile transform. We follow the spec's informative workflow for
z-up source data: the splat data stay in local ENU (positions, quaternions and SH unchanged) and
the glTF root node carries the z-up -> y-up matrix (-90 deg about x, a proper rotation), so the
two cancel and the tile's `transform` (ENU -> ECEF at the frame origin, column-major) drops the
splat onto the globe in place. The spec asks renderers to rotate SH by the node's rotation.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from skyfall_core.atomic import write_bytes, write_text
from skyfall_core.export.common import enu_to_ecef_matrix, model_arrays
from skyfall_core.geo.frames import LocalFrame
from skyfall_core.splat.model import GaussianModel

EXT = "KHR_gaussian_splatting"
SPEC_VERSION = "KHR_gaussian_splatting Release Candidate (KhronosGroup/glTF 63770cc, 2026-04-15)"
# glTF node matrix, column-major: (x, y, z) -> (x, z, -y): local ENU (z up) -> glTF y up.
Z_UP_TO_Y_UP = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
# 3D Tiles' runtime y-up -> z-up rotation (row-major as printed in the spec).
Y_UP_TO_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
FLOAT, ARRAY_BUFFER, POINTS = 5126, 34962, 0
TYPES = {1: "SCALAR", 3: "VEC3", 4: "VEC4"}


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def glb_bytes(model: GaussianModel, opacity_min: float = 0.0) -> bytes:
    """A binary glTF (GLB) with the splats of `model` (opacity >= `opacity_min`) as one
    `KHR_gaussian_splatting` POINTS primitive under a z-up -> y-up root node."""
    a = model_arrays(model)
    keep = a["opacity"] >= opacity_min
    n = int(keep.sum())
    w, x, y, z = a["quats"][keep].T
    attributes: dict[str, np.ndarray] = {
        "POSITION": a["means"][keep],
        "COLOR_0": np.concatenate([_srgb_to_linear(a["rgb"][keep]), a["opacity"][keep, None]], 1),
        f"{EXT}:ROTATION": np.stack([x, y, z, w], 1),
        f"{EXT}:SCALE": a["scales"][keep],
        f"{EXT}:OPACITY": a["opacity"][keep, None],
        f"{EXT}:SH_DEGREE_0_COEF_0": a["sh0"][keep],
    }
    shN = a["shN"][keep]
    degree = model.sh_degree
    k = 0
    for band in range(1, degree + 1):
        for coef in range(2 * band + 1):
            attributes[f"{EXT}:SH_DEGREE_{band}_COEF_{coef}"] = shN[:, k]
            k += 1
    blob = bytearray()
    buffer_views, accessors, semantic_index = [], [], {}
    for semantic, values in attributes.items():
        data = np.ascontiguousarray(values, dtype="<f4").reshape(n, -1)
        offset = len(blob)
        blob += data.tobytes()
        blob += b"\0" * (-len(blob) % 4)
        buffer_views.append({"buffer": 0, "byteOffset": offset, "byteLength": data.nbytes,
                             "target": ARRAY_BUFFER})
        accessor = {"bufferView": len(buffer_views) - 1, "componentType": FLOAT, "count": n,
                    "type": TYPES[data.shape[1]]}
        if semantic == "POSITION" and n:
            accessor["min"] = data.min(axis=0).astype(float).tolist()
            accessor["max"] = data.max(axis=0).astype(float).tolist()
        accessors.append(accessor)
        semantic_index[semantic] = len(accessors) - 1
    gltf = {
        "asset": {"version": "2.0", "generator": f"Skyfall Studio ({SPEC_VERSION})"},
        "extensionsUsed": [EXT],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": "splats (local ENU, z up -> glTF y up)", "matrix": Z_UP_TO_Y_UP, "mesh": 0}],
        "meshes": [{"primitives": [{
            "attributes": semantic_index, "mode": POINTS,
            "extensions": {EXT: {"kernel": "ellipse", "colorSpace": "srgb_rec709_display",
                                 "projection": "perspective", "sortingMethod": "cameraDistance"}},
        }]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": buffer_views,
        "accessors": accessors,
    }
    json_chunk = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    json_chunk += b" " * (-len(json_chunk) % 4)
    total = 12 + 8 + len(json_chunk) + 8 + len(blob)
    return b"".join([struct.pack("<III", 0x46546C67, 2, total),
                     struct.pack("<II", len(json_chunk), 0x4E4F534A), json_chunk,
                     struct.pack("<II", len(blob), 0x004E4942), bytes(blob)])


def tileset_dict(model: GaussianModel, frame: LocalFrame, content_uri: str,
                 opacity_min: float = 0.0) -> dict:
    """The tileset.json document: one root tile, `transform` = ENU -> ECEF at the frame origin
    (column-major), a box bounding the splats' 3-sigma extents in the tile (ENU) frame."""
    a = model_arrays(model)
    keep = a["opacity"] >= opacity_min
    means = a["means"][keep]
    if len(means):
        reach = 3.0 * a["scales"][keep].max(axis=1, keepdims=True)
        lo, hi = (means - reach).min(axis=0), (means + reach).max(axis=0)
    else:
        lo = hi = np.zeros(3)
    centre, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-3)
    box = [*centre, half[0], 0, 0, 0, half[1], 0, 0, 0, half[2]]
    diagonal = float(2 * np.linalg.norm(half))
    transform = enu_to_ecef_matrix(frame).T.reshape(-1)  # column-major
    return {
        "asset": {"version": "1.1", "generator": "Skyfall Studio",
                  "extras": {"frame": frame.to_dict(), "gltfExtension": SPEC_VERSION}},
        "geometricError": diagonal,
        "root": {
            "transform": [float(v) for v in transform],
            "boundingVolume": {"box": [float(v) for v in box]},
            "geometricError": 0.0,
            "refine": "ADD",
            "content": {"uri": content_uri},
        },
    }


def write_3dtiles(folder: str | Path, model: GaussianModel, frame: LocalFrame,
                  opacity_min: float = 1 / 255) -> dict[str, Path]:
    """Write `folder/tileset.json` + `folder/splats.glb`. Splats with opacity below
    `opacity_min` (invisible) are dropped. Returns {"tileset": path, "glb": path}."""
    folder = Path(folder)
    glb = folder / "splats.glb"
    write_bytes(glb, glb_bytes(model, opacity_min))
    tileset = folder / "tileset.json"
    write_text(tileset, json.dumps(tileset_dict(model, frame, glb.name, opacity_min), indent=2) + "\n")
    return {"tileset": tileset, "glb": glb}


def read_glb(path: str | Path) -> tuple[dict, bytes]:
    """(glTF JSON, BIN chunk) of a GLB file (for tests and tools)."""
    data = Path(path).read_bytes()
    magic, version, total = struct.unpack_from("<III", data, 0)
    if magic != 0x46546C67 or version != 2 or total != len(data):
        raise ValueError(f"{path}: not a glTF 2.0 binary")
    json_len, _ = struct.unpack_from("<II", data, 12)
    gltf = json.loads(data[20:20 + json_len])
    bin_len, _ = struct.unpack_from("<II", data, 20 + json_len)
    return gltf, data[28 + json_len:28 + json_len + bin_len]


def accessor_array(gltf: dict, blob: bytes, index: int) -> np.ndarray:
    acc = gltf["accessors"][index]
    view = gltf["bufferViews"][acc["bufferView"]]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[acc["type"]]
    return np.frombuffer(blob, "<f4", acc["count"] * width, view.get("byteOffset", 0)).reshape(-1, width)


def column_major(m: list[float]) -> np.ndarray:
    """4x4 numpy matrix of a glTF/3D Tiles column-major array."""
    return np.asarray(m, float).reshape(4, 4).T
