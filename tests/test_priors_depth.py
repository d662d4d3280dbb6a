"""Depth prior: a tiny random Depth Anything saved and reloaded through ``load_depth_model``."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch

from skyfall_core.priors.depth import _outputs_disparity, load_depth_model, try_load_depth_model

from tiny_models import build_tiny_depth


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run far faster on one thread than on two contended cores."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def depth_dir(tmp_path_factory):
    return build_tiny_depth(tmp_path_factory.mktemp("tiny_depth") / "depth-anything-tiny")


@pytest.fixture(scope="module")
def depth_model(depth_dir):
    return load_depth_model(str(depth_dir), "cpu")


def _image(h=40, w=52, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(h, w, 3, generator=g)


def test_predict_shape_dtype_and_determinism(depth_model, depth_dir):
    img = _image()
    d1 = depth_model.predict(img)
    assert d1.shape == (40, 52) and d1.dtype == torch.float32
    assert torch.isfinite(d1).all() and d1.std() > 0
    torch.testing.assert_close(depth_model.predict(img), d1, rtol=0, atol=0)
    # the weights survive save_pretrained -> from_pretrained: a second load predicts the same
    again = load_depth_model(str(depth_dir), "cpu")
    torch.testing.assert_close(again.predict(img), d1)
    # a different image gives a different depth map
    assert (depth_model.predict(_image(seed=1)) - d1).abs().max() > 1e-3 * d1.abs().max()


def test_relative_output_is_negated_disparity(depth_model):
    """Depth Anything's relative output is disparity: predict() must return its negation."""
    assert depth_model.disparity_output
    img = _image(28, 28)  # the processor's own size: no resize ambiguity
    inputs = depth_model.processor(images=(img * 255).round().to(torch.uint8).numpy(), return_tensors="pt")
    with torch.no_grad():
        raw = depth_model.model(**inputs).predicted_depth[0]  # [28, 28]
    torch.testing.assert_close(depth_model.predict(img), -raw, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config, disparity", [
    (SimpleNamespace(model_type="depth_anything", depth_estimation_type="relative"), True),
    (SimpleNamespace(model_type="depth_anything", depth_estimation_type="metric"), False),
    (SimpleNamespace(model_type="dpt"), True),
    (SimpleNamespace(model_type="zoedepth"), False),
])
def test_which_models_output_disparity(config, disparity):
    assert _outputs_disparity(config) is disparity


def test_predict_rejects_bad_shape(depth_model):
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        depth_model.predict(torch.rand(3, 32, 32))


def test_missing_folder_gives_warning_not_exception(tmp_path):
    missing = str(tmp_path / "no-such-model")
    model, warning = try_load_depth_model(missing, "cpu")
    assert model is None
    assert missing in warning and "no such folder" in warning and "stage1.depth_model" in warning


def test_uncached_hub_id_offline_gives_download_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, warning = try_load_depth_model("skyfall-tests/no-such-depth-model", "cpu")
    assert model is None
    assert "hf download skyfall-tests/no-such-depth-model" in warning and "stage1.depth_model" in warning


def test_corrupt_weights_give_warning(depth_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(depth_dir, broken)
    (broken / "model.safetensors").write_bytes(b"this is not a safetensors file")
    model, warning = try_load_depth_model(str(broken), "cpu")
    assert model is None and str(broken) in warning
