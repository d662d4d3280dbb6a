"""Issue 16 exports: the .spz web splat (round trip through our reader) and write_gis_outputs."""

import gzip
import json
import math

import numpy as np
import torch
from rasterio.transform import from_origin

from skyfall_core.export import GIS_FILES, write_gis_outputs
from skyfall_core.export.spz import ENU_TO_RUB, read_spz, sh_rotation, write_spz
from skyfall_core.geo.dsm import DSMGrid
from skyfall_core.geo.frames import LocalFrame
from skyfall_core.splat.sh import sh_bases

from fixtures_splat import random_model

FRAME = LocalFrame(-81.70, 30.30, 12.5)


def test_sh_rotation_rotates_the_colour_field():
    d = np.random.default_rng(0).normal(size=(20, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    c = np.random.default_rng(1).normal(size=15)
    m = sh_rotation(ENU_TO_RUB, 3)
    before = sh_bases(3, torch.from_numpy(d)).numpy()[:, 1:] @ c
    after = sh_bases(3, torch.from_numpy(d @ ENU_TO_RUB.T)).numpy()[:, 1:] @ (m @ c)
    np.testing.assert_allclose(after, before, atol=1e-9)


def test_spz_round_trip(tmp_path):
    model = random_model(degree=2)
    path = write_spz(tmp_path / "scene.spz", model)
    raw = gzip.decompress(path.read_bytes())
    assert raw[:4] == b"NGSP" and int.from_bytes(raw[4:8], "little") == 3
    back = read_spz(path)
    p = {k: v.detach().double().numpy() for k, v in model.params.items()}
    opacity = 1 / (1 + np.exp(-p["opacities"]))
    keep = opacity >= 1 / 255
    assert len(back["means"]) == keep.sum() and back["sh_degree"] == 2
    assert np.abs(back["means"] - p["means"][keep]).max() <= 0.5 / 4096 + 1e-6  # 12 fraction bits
    assert np.abs(back["opacity"] - opacity[keep]).max() <= 0.5 / 255 + 1e-9
    assert np.abs(back["log_scales"] - p["scales"][keep]).max() <= 0.5 / 16 + 1e-6
    assert np.abs(back["sh0"] - p["sh0"][keep, 0]).max() <= 0.5 / (0.15 * 255) + 1e-6
    q = p["quats"][keep] / np.linalg.norm(p["quats"][keep], axis=1, keepdims=True)
    angle = 2 * np.degrees(np.arccos(np.clip(np.abs((back["quats"] * q).sum(1)), 0, 1)))
    assert angle.max() < 0.5  # degrees ("smallest three", 9 bits + sign)
    # SH: degree 1 kept to 5 bits (step 1/16), 2+ to 4 bits (1/8), plus the ENU<->RUB rotation
    err = np.abs(back["shN"] - p["shN"][keep])
    assert err[:, :3].max() <= 1 / 32 * math.sqrt(3) + 1e-6 and err[:, 3:].max() <= 1 / 16 * 3 + 1e-6


def test_spz_stores_rub_axes(tmp_path):
    model = random_model(4, degree=0)
    with torch.no_grad():
        model.params["means"][:] = torch.tensor([[10.0, 20.0, 30.0]] * 4)
    raw = gzip.decompress(write_spz(tmp_path / "a.spz", model).read_bytes())
    fixed = np.frombuffer(raw, np.uint8, 9, 16).reshape(3, 3).astype(np.int64)
    values = (fixed[:, 0] | fixed[:, 1] << 8 | fixed[:, 2] << 16)
    values = np.where(values & 0x800000, values - (1 << 24), values) / 4096.0
    np.testing.assert_allclose(values, [10.0, 30.0, -20.0])  # east, up, south


def test_write_gis_outputs_writes_every_file(tmp_path):
    rng = np.random.default_rng(0)
    grid = DSMGrid((rng.random((64, 80)) * 10).astype(np.float32),
                   from_origin(432000.0, 3353000.0, 1.0, 1.0), FRAME.utm_epsg)
    written = write_gis_outputs(tmp_path / "final", random_model(120, degree=1), FRAME, grid)
    assert written == GIS_FILES
    for rel in written.values():
        assert (tmp_path / "final" / rel).stat().st_size > 0
    tileset = json.loads((tmp_path / "final" / written["tileset"]).read_text())
    assert tileset["root"]["content"]["uri"] == "splats.glb"
    no_dsm = write_gis_outputs(tmp_path / "f2", random_model(10, degree=0), FRAME, None)
    assert "dsm_cog" not in no_dsm and "spz" in no_dsm
