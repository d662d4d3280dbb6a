"""PLY / compressed PLY / georef.json / checkpoints, and the benchmark smoke test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData

from skyfall_core.splat.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_optimizers,
    save_checkpoint,
)
from skyfall_core.splat.io import (
    SplatFileError,
    compressed_ply_bytes,
    load_ply,
    ply_attribute_names,
    read_georef,
    save_compressed_ply,
    save_ply,
    write_georef,
)
from skyfall_core.splat.model import GaussianModel

ORIGIN = {"lat": 30.3, "lon": -81.66, "h": 2.5, "utm_epsg": 32617}


def random_model(n: int = 700, sh_degree: int = 2, seed: int = 0) -> GaussianModel:
    gen = torch.Generator().manual_seed(seed)
    K = (sh_degree + 1) ** 2
    params = {
        "means": torch.randn(n, 3, generator=gen) * torch.tensor([50.0, 40.0, 8.0]),
        "scales": torch.randn(n, 3, generator=gen) - 2.0,
        "quats": torch.randn(n, 4, generator=gen),
        "opacities": torch.randn(n, generator=gen) * 2.0,
        "sh0": torch.randn(n, 1, 3, generator=gen),
        "shN": torch.randn(n, K - 1, 3, generator=gen) * 0.3,
    }
    return GaussianModel(params, sh_degree=sh_degree)


# ------------------------------------------------------------------------- PLY

@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_ply_round_trip_is_exact(tmp_path: Path, sh_degree: int) -> None:
    model = random_model(sh_degree=sh_degree)
    path = save_ply(tmp_path / "scene.ply", model)
    loaded = load_ply(path)
    assert loaded.sh_degree == sh_degree
    for name, param in model.params.items():
        assert torch.equal(loaded.params[name], param), name
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_ply_layout_is_the_inria_one(tmp_path: Path) -> None:
    model = random_model(n=5, sh_degree=1)
    vertex = PlyData.read(str(save_ply(tmp_path / "s.ply", model)))["vertex"]
    assert [p.name for p in vertex.properties] == ply_attribute_names(9)
    assert all(p.val_dtype in ("f4", "float32") for p in vertex.properties)
    # f_rest is channel-major: f_rest_0..2 are the 3 red coefficients of band 1.
    shN = model.params["shN"].detach()
    np.testing.assert_array_equal(vertex["f_rest_1"], shN[:, 1, 0].numpy())
    np.testing.assert_array_equal(vertex["f_rest_3"], shN[:, 0, 1].numpy())
    np.testing.assert_array_equal(vertex["rot_0"], model.params["quats"].detach()[:, 0].numpy())


def test_load_ply_names_the_problem(tmp_path: Path) -> None:
    not_ply = tmp_path / "x.ply"
    not_ply.write_text("hello")
    with pytest.raises(SplatFileError, match="x.ply"):
        load_ply(not_ply)
    cloud = tmp_path / "cloud.ply"
    points = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    from plyfile import PlyElement

    PlyData([PlyElement.describe(points, "vertex")]).write(str(cloud))
    with pytest.raises(SplatFileError, match="lacks 3DGS properties"):
        load_ply(cloud)


# ------------------------------------------------------------------------- compressed PLY

@pytest.mark.parametrize("sh_degree", [1, 3])
def test_compressed_ply_is_byte_identical_to_gsplat(sh_degree: int) -> None:
    from gsplat.exporter import export_splats

    model = random_model(n=700, sh_degree=sh_degree, seed=sh_degree)
    p = {k: v.detach() for k, v in model.params.items()}
    expected = export_splats(p["means"], p["scales"], p["quats"], p["opacities"], p["sh0"],
                             p["shN"], format="ply_compressed")
    assert compressed_ply_bytes(model) == expected


def _decode_compressed(data: bytes) -> dict[str, np.ndarray]:
    """Minimal reader of the compressed PLY (as the web viewers decode it)."""
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:header_end].decode().splitlines()
    counts = {line.split()[1]: int(line.split()[2]) for line in header if line.startswith("element")}
    n_chunks, n = counts["chunk"], counts["vertex"]
    chunks = np.frombuffer(data, "<f4", n_chunks * 18, header_end).reshape(n_chunks, 18)
    packed = np.frombuffer(data, "<u4", n * 4, header_end + n_chunks * 72).reshape(n, 4)
    chunk = np.arange(n) // 256
    pos = packed[:, 0]
    unit = np.stack([(pos >> 21) / 2047.0, ((pos >> 11) & 1023) / 1023.0, (pos & 2047) / 2047.0], 1)
    lo, hi = chunks[chunk, 0:3], chunks[chunk, 3:6]
    color = packed[:, 3]
    return {"means": lo + unit * (hi - lo), "opacity": (color & 255) / 255.0,
            "extent": hi - lo}


def test_compressed_ply_decodes_within_quantisation(tmp_path: Path) -> None:
    model = random_model(n=1000, sh_degree=1, seed=5)
    path = save_compressed_ply(tmp_path / "scene.compressed.ply", model, georef=ORIGIN)
    data = path.read_bytes()
    decoded = _decode_compressed(data)
    keep = torch.sigmoid(model.params["opacities"].detach()) > 1 / 255
    means = model.params["means"].detach()[keep].numpy()
    assert len(decoded["means"]) == keep.sum()
    # Each decoded point is within half a quantisation step of one original point.
    step = decoded["extent"] / np.array([2047.0, 1023.0, 2047.0])
    dist = np.abs(decoded["means"][:, None, :] - means[None, :, :]) <= step[:, None, :] * 0.5 + 1e-4
    assert dist.all(axis=2).any(axis=1).all()
    assert len(data) < 0.3 * (1000 * 26 * 4)  # vs 26 float32 a splat in the degree-1 PLY
    assert (tmp_path / "georef.json").is_file()


def test_compressed_ply_drops_invisible_and_non_finite_splats() -> None:
    model = random_model(n=300, sh_degree=1, seed=6)
    with torch.no_grad():
        model.params["opacities"][:10] = -20.0
        model.params["means"][10, 0] = float("nan")
    decoded = _decode_compressed(compressed_ply_bytes(model))
    assert len(decoded["means"]) == 300 - 11
    assert np.isfinite(decoded["means"]).all()


# ------------------------------------------------------------------------- georef

def test_georef_json(tmp_path: Path) -> None:
    path = write_georef(tmp_path / "georef.json", ORIGIN, files=["scene.ply"])
    document = read_georef(path)
    assert document["origin"] == ORIGIN
    assert document["frame"] == "local ENU metres, z up"
    assert document["files"] == ["scene.ply"]
    with pytest.raises(ValueError, match="missing \\['utm_epsg'\\]"):
        write_georef(tmp_path / "g.json", {"lat": 1.0, "lon": 2.0, "h": 3.0})
    with pytest.raises(ValueError, match="out of range"):
        write_georef(tmp_path / "g.json", {**ORIGIN, "lat": 120.0})


# ------------------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip_with_optimizer_state(tmp_path: Path) -> None:
    model = random_model(n=50, sh_degree=1)
    optimizers = model.create_optimizers()
    sum((p**2).sum() for p in model.params.values()).backward()
    for opt in optimizers.values():
        opt.step()
    extra = {"step": 1234, "round": 2, "elevation": 65.0, "bias": torch.arange(6.0)}
    path = save_checkpoint(tmp_path / "ckpt" / "stage1.safetensors", model, extra, optimizers)
    assert sorted(p.name for p in path.parent.iterdir()) == ["stage1.safetensors"]

    loaded, loaded_extra = load_checkpoint(path)
    for name, param in model.params.items():
        assert torch.equal(loaded.params[name], param.detach()), name
    assert loaded_extra["step"] == 1234 and loaded_extra["elevation"] == 65.0
    assert torch.equal(loaded_extra["bias"], extra["bias"])

    restored = loaded.create_optimizers()
    restore_optimizers(path, loaded, restored)
    for name, opt in optimizers.items():
        old = opt.state[model.params[name]]
        new = restored[name].state[loaded.params[name]]
        assert torch.equal(new["exp_avg"], old["exp_avg"]), name
        assert torch.equal(new["exp_avg_sq"], old["exp_avg_sq"]), name
        assert float(new["step"]) == float(old["step"]) == 1.0
    # A training step runs on the restored state.
    sum((p**2).sum() for p in loaded.params.values()).backward()
    for opt in restored.values():
        opt.step()


def test_checkpoint_errors(tmp_path: Path) -> None:
    model = random_model(n=10, sh_degree=0)
    path = save_checkpoint(tmp_path / "c.safetensors", model, {})
    truncated = tmp_path / "bad.safetensors"
    truncated.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "missing.safetensors")
    loaded, _ = load_checkpoint(path)
    other = random_model(n=10, sh_degree=0)
    with pytest.raises(ValueError, match="create the optimizers from the loaded model"):
        restore_optimizers(path, loaded, other.create_optimizers())


# ------------------------------------------------------------------------- benchmark

def test_quick_benchmark_is_json_serialisable() -> None:
    from skyfall_core.splat.bench import run_raster_benchmark

    report = run_raster_benchmark(quick=True)
    json.dumps(report)
    (row,) = report["rows"]
    assert row["cpu"]["seconds"] > 0 and row["cpu"]["peak_rss_mb"] > 0
    assert row["torch"]["seconds"] > 0 and row["speedup"] > 0


def test_georef_json_carries_exact_ecef_and_utm_transforms(tmp_path):
    from skyfall_core.geo.frames import LocalFrame
    from skyfall_core.splat.io import read_georef, write_georef

    frame = LocalFrame(-81.66, 30.32, 12.5)  # Jacksonville
    write_georef(tmp_path / "georef.json", frame.to_dict(), files=["scene.spz"])
    g = read_georef(tmp_path / "georef.json")
    pts = np.array([[0.0, 0.0, 0.0], [250.0, -180.0, 40.0], [-400.0, 300.0, -10.0]])
    M = np.array(g["enu_to_ecef"]["matrix_row_major"])
    ecef = pts @ M[:3, :3].T + M[:3, 3]
    lon, lat, h = frame.enu_to_geodetic(pts)
    import pyproj

    want = np.column_stack(pyproj.Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, h))
    np.testing.assert_allclose(ecef, want, atol=1e-6)
    A = np.array(g["enu_to_utm"]["affine_row_major"])
    utm = pts[:, :2] @ A[:, :2].T + A[:, 2]
    np.testing.assert_allclose(utm, frame.enu_to_utm(pts)[:, :2], atol=0.01)
    assert g["enu_to_utm"]["crs"] == f"EPSG:{frame.utm_epsg}" and g["files"] == ["scene.spz"]
