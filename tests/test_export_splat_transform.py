"""Issue 16 exports cross-checked by a maintained third-party tool: PlayCanvas splat-transform.

splat-transform (npm ``@playcanvas/splat-transform``, MIT, pinned in tools/package-lock.json,
installed by ``npm ci --prefix tools``; skipped with the reason when node or it is absent) reads
our ``.spz`` (through Adobe's ``@adobe/spz`` WebAssembly build) and our compressed PLY (its own
format) and writes them as CSV; it writes our ``scene.ply`` as a ``KHR_gaussian_splatting`` GLB,
which we compare attribute by attribute with our own GLB. It cannot read a GLB, so our GLB is
checked through its writer's output, not read by it.

Its conventions, as measured (not ours to change): the .spz is read in the file's own axes (RUB:
east, up, south for our files); the GLB it writes rotates the PLY's data 180° about z
(x, y → −x, −y, SH coefficient of order m times (−1)^m), writes the quaternion unnormalised, and
stores COLOR_0 as 8-bit display sRGB (0.5 + C0·sh0); ours stores linear colour, as glTF's
COLOR_0 is linear, and keeps ENU with a z-up → y-up node matrix. It declares node ≥ 22 and runs
these commands on node 20.
"""

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from skyfall_core.export.spz import ENU_TO_RUB, Q_ENU_TO_RUB, write_spz
from skyfall_core.export.tiles3d import EXT, accessor_array, read_glb, write_3dtiles
from skyfall_core.geo.frames import LocalFrame
from skyfall_core.splat.io import save_compressed_ply, save_ply
from skyfall_core.splat.sh import SH_C0

from fixtures_splat import random_model

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "tools" / "node_modules" / "@playcanvas" / "splat-transform" / "bin" / "cli.mjs"
FRAME = LocalFrame(-81.70, 30.30, 12.5)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot run splat-transform")
    if not CLI.is_file():
        pytest.skip("splat-transform is not installed: run `npm ci --prefix tools`")
    return node


def _run(*args: str | Path, cwd: Path) -> None:
    run = subprocess.run([_node(), str(CLI), "-w", *map(str, args)], capture_output=True, text=True,
                         timeout=300, cwd=cwd)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]


def _csv(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    data = np.asarray(rows[1:], np.float64)
    return {name: data[:, i] for i, name in enumerate(rows[0])}


def _params(model) -> dict[str, np.ndarray]:
    p = {k: v.detach().double().numpy() for k, v in model.params.items()}
    p["quats"] = p["quats"] / np.linalg.norm(p["quats"], axis=1, keepdims=True)
    p["opacity"] = 1 / (1 + np.exp(-p["opacities"]))
    return p


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product, w x y z."""
    w1, x1, y1, z1 = np.moveaxis(a, -1, 0)
    w2, x2, y2, z2 = np.moveaxis(b, -1, 0)
    return np.stack([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2], -1)


def _angle_deg(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    q2 = q2 / np.linalg.norm(q2, axis=-1, keepdims=True)
    return 2 * np.degrees(np.arccos(np.clip(np.abs((q1 * q2).sum(-1)), 0, 1)))


def _match(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """Index into ``ours`` of the nearest point to each of ``theirs``; one to one."""
    d = np.linalg.norm(theirs[:, None, :] - ours[None, :, :], axis=-1)
    idx = d.argmin(1)
    assert len(set(idx.tolist())) == len(idx)
    return idx


def test_splat_transform_reads_our_spz(tmp_path):
    model = random_model()
    write_spz(tmp_path / "scene.spz", model)
    _run("scene.spz", "spz.csv", cwd=tmp_path)
    t = _csv(tmp_path / "spz.csv")
    p = _params(model)
    keep = p["opacity"] >= 1 / 255  # what our writer keeps
    assert len(t["x"]) == keep.sum()
    # the file's axes (RUB): ours taken there, then compared within the format's quantisation
    means = p["means"][keep] @ ENU_TO_RUB.T
    assert np.abs(np.c_[t["x"], t["y"], t["z"]] - means).max() <= 0.5 / 4096 + 1e-6  # 12 fraction bits
    scales = np.c_[t["scale_0"], t["scale_1"], t["scale_2"]]
    assert np.abs(scales - p["scales"][keep]).max() <= 0.5 / 16 + 1e-6  # log scale, 1/16 steps
    opacity = 1 / (1 + np.exp(-t["opacity"]))
    assert np.abs(opacity - p["opacity"][keep]).max() <= 0.5 / 255 + 1e-6
    dc = np.c_[t["f_dc_0"], t["f_dc_1"], t["f_dc_2"]]
    assert np.abs(dc - p["sh0"][keep, 0]).max() <= 0.5 / (0.15 * 255) + 1e-6
    q_rub = _quat_mul(np.broadcast_to(Q_ENU_TO_RUB, p["quats"][keep].shape), p["quats"][keep])
    assert _angle_deg(np.c_[t["rot_0"], t["rot_1"], t["rot_2"], t["rot_3"]], q_rub).max() < 0.5
    assert sum(k.startswith("f_rest_") for k in t) == 45  # degree 3 kept


def test_splat_transform_reads_our_compressed_ply(tmp_path):
    model = random_model(degree=0)
    save_compressed_ply(tmp_path / "scene.compressed.ply", model)
    _run("scene.compressed.ply", "cply.csv", cwd=tmp_path)
    t = _csv(tmp_path / "cply.csv")
    p = _params(model)
    keep = np.flatnonzero(p["opacity"] >= 1 / 255)
    assert len(t["x"]) == len(keep)
    theirs = np.c_[t["x"], t["y"], t["z"]]
    idx = keep[_match(p["means"][keep], theirs)]  # the file is in Morton order
    # 11/10/11-bit positions and log scales inside each chunk's range (bounded by the whole range)
    step = np.ptp(p["means"], 0) / np.array([2047, 1023, 2047])
    assert (np.abs(theirs - p["means"][idx]) <= step / 2 + 1e-4).all()
    scales = np.c_[t["scale_0"], t["scale_1"], t["scale_2"]]
    step = np.ptp(p["scales"], 0) / np.array([2047, 1023, 2047])
    assert (np.abs(scales - p["scales"][idx]) <= step / 2 + 1e-4).all()
    rgb = 0.5 + SH_C0 * p["sh0"][:, 0]
    theirs_rgb = 0.5 + SH_C0 * np.c_[t["f_dc_0"], t["f_dc_1"], t["f_dc_2"]]
    assert (np.abs(theirs_rgb - rgb[idx]) <= np.ptp(rgb, 0) / 255 / 2 + 1e-4).all()  # 8 bits per chunk range
    opacity = 1 / (1 + np.exp(-t["opacity"]))
    assert np.abs(opacity - p["opacity"][idx]).max() <= 0.5 / 255 + 1e-4
    assert _angle_deg(np.c_[t["rot_0"], t["rot_1"], t["rot_2"], t["rot_3"]], p["quats"][idx]).max() < 0.5


def test_our_glb_agrees_with_splat_transforms_glb_of_the_same_ply(tmp_path):
    """Same attribute names and extension object; the same values once its documented 180° turn
    about z is undone; its COLOR_0 is display sRGB where ours is linear (see the module docstring)."""
    model = random_model(degree=3)
    save_ply(tmp_path / "scene.ply", model)
    _run("scene.ply", "theirs.glb", cwd=tmp_path)
    ours, ours_blob = read_glb(write_3dtiles(tmp_path / "tiles", model, FRAME)["glb"])
    theirs, theirs_blob = read_glb(tmp_path / "theirs.glb")
    prim_o, prim_t = ours["meshes"][0]["primitives"][0], theirs["meshes"][0]["primitives"][0]
    assert set(prim_o["attributes"]) == set(prim_t["attributes"])
    assert len(prim_t["attributes"]) == 2 + 3 + 16  # POSITION COLOR_0, ROTATION SCALE OPACITY, SH 0..3
    assert prim_o["extensions"][EXT] == prim_t["extensions"][EXT] and prim_o["mode"] == prim_t["mode"] == 0
    assert ours["extensionsUsed"] == theirs["extensionsUsed"] == [EXT]

    def o(name):
        return accessor_array(ours, ours_blob, prim_o["attributes"][name]).astype(np.float64)

    def t(name):
        return accessor_array(theirs, theirs_blob, prim_t["attributes"][name]).astype(np.float64)

    flip = np.array([-1.0, -1.0, 1.0])  # 180 deg about z
    np.testing.assert_allclose(t("POSITION") * flip, o("POSITION"), atol=1e-4)
    np.testing.assert_allclose(t(f"{EXT}:SCALE"), o(f"{EXT}:SCALE"), rtol=1e-5)
    np.testing.assert_allclose(t(f"{EXT}:OPACITY"), o(f"{EXT}:OPACITY"), atol=1e-6)
    np.testing.assert_allclose(t(f"{EXT}:SH_DEGREE_0_COEF_0"), o(f"{EXT}:SH_DEGREE_0_COEF_0"), atol=1e-6)
    for band in range(1, 4):
        for coef in range(2 * band + 1):
            name = f"{EXT}:SH_DEGREE_{band}_COEF_{coef}"
            np.testing.assert_allclose(t(name) * (-1) ** (coef - band), o(name), atol=1e-6, err_msg=name)
    x, y, z, w = t(f"{EXT}:ROTATION").T  # glTF order
    turned = _quat_mul(np.array([0.0, 0.0, 0.0, 1.0]), np.c_[w, x, y, z])  # (-180 deg = +180 deg) about z
    xo, yo, zo, wo = o(f"{EXT}:ROTATION").T
    assert _angle_deg(turned, np.c_[wo, xo, yo, zo]).max() < 1e-3
    acc = theirs["accessors"][prim_t["attributes"]["COLOR_0"]]
    assert acc["componentType"] == 5121 and acc.get("normalized")  # UNSIGNED_BYTE, normalised
    view = theirs["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    colour = np.frombuffer(theirs_blob, np.uint8, acc["count"] * 4, start).reshape(-1, 4) / 255.0
    linear = o("COLOR_0")
    srgb = np.where(linear[:, :3] <= 0.0031308, 12.92 * linear[:, :3], 1.055 * linear[:, :3] ** (1 / 2.4) - 0.055)
    assert np.abs(colour[:, :3] - srgb).max() <= 1 / 255 + 1e-6
    assert np.abs(colour[:, 3] - linear[:, 3]).max() <= 1 / 255 + 1e-6
