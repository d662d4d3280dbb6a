"""Scene preparation end to end on the real JAX views: crops, cameras, bias correction, files."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from skyfall_core.cameras.pinhole import PinholeCamera
from skyfall_core.config import load_config
from skyfall_core.errors import AOIError, TooFewViewsError
from skyfall_core.pipeline.scene import load_scene_index, prepare_scene

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_preset():
    cfg = load_config(REPO / "config.toml")
    p = cfg.preset("preview")
    return cfg, p.model_copy(update={"cameras": p.cameras.model_copy(update={"max_image_size": 256,
                                                                            "max_features": 1500})})


def test_prepare_scene_on_six_jax_views(jax_dir, small_preset, tmp_path):
    cfg, preset = small_preset
    files = sorted((jax_dir / "images").glob("*.tif"))[:6]
    rep = prepare_scene(files, jax_dir / "aoi.geojson", cfg, preset, out_dir=tmp_path / "scene")
    s = rep.summary()
    assert len(s["views"]) == 6
    assert s["fit_mean_px_worst"] < 0.15 and s["fit_max_px_worst"] < 0.5
    assert s["tie_median_px_after"] < s["tie_median_px_before"]
    assert s["tie_median_px_after"] < 1.0
    cams, frame = load_scene_index(tmp_path / "scene")
    assert abs(frame["lat"] - 30.3488) < 0.01 and frame["utm_epsg"] == 32617
    for entry in cams:
        img = cv2.imread(str(tmp_path / "scene" / entry["image"]))
        cam = PinholeCamera.from_dict(entry["camera"])
        assert img.shape[:2] == (cam.height, cam.width) and max(img.shape[:2]) <= 256
        # the AOI centre (ENU origin) projects inside the crop
        uv, depth = cam.project(np.zeros((1, 3)))
        assert depth[0] > 0 and 0 <= uv[0, 0] < cam.width and 0 <= uv[0, 1] < cam.height
    assert (tmp_path / "scene" / "tie_points.npz").exists()


def test_aoi_outside_the_scenes(jax_dir, small_preset, tmp_path):
    cfg, preset = small_preset
    data = json.loads((jax_dir / "aoi.geojson").read_text())
    ring = data["features"][0]["geometry"]["coordinates"][0]
    data["features"][0]["geometry"]["coordinates"][0] = [[x + 1.0, y] for x, y in ring]
    with pytest.raises(AOIError, match="does not intersect|outside"):
        prepare_scene(jax_dir / "images", data, cfg, preset)


def test_too_few_views(jax_dir, small_preset):
    cfg, preset = small_preset
    files = sorted((jax_dir / "images").glob("*.tif"))[:2]
    with pytest.raises(TooFewViewsError):
        prepare_scene(files, jax_dir / "aoi.geojson", cfg, preset)


def test_cli_cameras_errors_cleanly(jax_dir, tmp_path):
    aoi = tmp_path / "far.geojson"
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [[[10, 10], [10.002, 10], [10.002, 10.002],
                                                                   [10, 10.002], [10, 10]]]}))
    r = subprocess.run([sys.executable, "-m", "skyfall_core", "cameras", "--scenes", str(jax_dir / "images"),
                        "--aoi", str(aoi), "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "far.geojson" in r.stderr and "Traceback" not in r.stderr
