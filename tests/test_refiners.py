"""Refiners: classical maths, ``load_refiner`` (fallback / errors), SDEdit and FlowEdit end to end."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch

from skyfall_core.config import Stage2Settings
from skyfall_core.errors import ConfigError, WeightsNotFoundError
from skyfall_core.priors.classical import ClassicalSettings, lab_stats, push_pull_fill, refine_classical
from skyfall_core.priors.refiners import (
    ClassicalRefiner,
    FlowEditRefiner,
    SDEditRefiner,
    load_refiner,
    resolve_dtype,
)

from tiny_models import build_tiny_flux, build_tiny_sd


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _smooth(h=48, w=64, seed=0, lo=0.0, hi=1.0) -> np.ndarray:
    """A smooth random RGB image [H, W, 3] float32 (blurred noise, like a soft render)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(lo, hi, (h // 8, w // 8, 3)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _settings(**kw) -> Stage2Settings:
    return Stage2Settings(**{"steps": 8, "n_min": 2, "n_max": 6, "dtype": "float32", **kw})


# ---- classical -------------------------------------------------------------------------

def test_hole_is_filled_with_surrounding_colours():
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) / 63.0
    truth = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1)  # a smooth gradient
    alpha = np.ones((64, 64), np.float32)
    alpha[20:40, 24:44] = 0.0
    render = truth.copy()
    render[alpha < 0.5] = 0.0  # the renderer's black background in the hole
    filled = push_pull_fill(render, alpha >= 0.5)
    hole = alpha < 0.5
    assert np.abs(filled[hole] - truth[hole]).mean() < 0.05  # close to the surroundings, not black
    np.testing.assert_array_equal(filled[~hole], render[~hole])  # valid pixels untouched
    out = ClassicalRefiner().refine([render], alphas=[alpha])[0]
    assert np.abs(out[hole] - truth[hole]).mean() < 0.06


def test_colour_statistics_move_toward_the_reference():
    image = _smooth(seed=1, lo=0.5, hi=1.0) * np.array([1.0, 0.6, 0.5], np.float32)  # bright, reddish
    reference = [_smooth(seed=k, lo=0.0, hi=0.6) * np.array([0.6, 0.8, 1.0], np.float32) for k in (2, 3)]
    ref_mean, ref_std = lab_stats(reference)
    before_mean, before_std = lab_stats([image])
    out = ClassicalRefiner(ClassicalSettings(sharpen_amount=0.0)).refine([image], reference=reference)[0]
    after_mean, after_std = lab_stats([out])
    assert np.linalg.norm(after_mean - ref_mean) < 0.4 * np.linalg.norm(before_mean - ref_mean)
    assert np.linalg.norm(after_std - ref_std) < 0.6 * np.linalg.norm(before_std - ref_std)


def test_no_holes_and_self_reference_is_nearly_unchanged():
    image = _smooth(seed=4)
    out = refine_classical(image, alpha=np.ones(image.shape[:2]), reference_stats=lab_stats([image]))
    assert np.abs(out - image).mean() < 0.01 and np.abs(out - image).max() < 0.1


def test_classical_says_plainly_it_is_not_diffusion():
    r = ClassicalRefiner()
    assert r.name == "classical" and not r.is_diffusion
    assert "not a diffusion model" in r.description


def test_refine_validates_inputs():
    with pytest.raises(ValueError, match=r"images\[0\] must be \[H, W, 3\]"):
        ClassicalRefiner().refine([np.zeros((8, 8))])
    with pytest.raises(ValueError, match=r"alphas\[0\] must be \[H, W\] = \(8, 8\)"):
        ClassicalRefiner().refine([np.zeros((8, 8, 3))], alphas=[np.ones((4, 4))])


def test_progress_callback_and_stop_between_images():
    images = [_smooth(seed=k) for k in range(4)]
    seen = []
    out = ClassicalRefiner().refine(images, callback=lambda i, n: seen.append((i, n)))
    assert len(out) == 4 and seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    out = ClassicalRefiner().refine(images, should_stop=lambda: len(seen) >= 6,
                                    callback=lambda i, n: seen.append((i, n)))
    assert len(out) == 2  # stopped after the second image, returns what is finished


# ---- load_refiner: missing weights, wrong models ---------------------------------------

def test_classical_needs_no_weights():
    refiner, warnings = load_refiner(_settings(refiner="classical"), "cpu")
    assert isinstance(refiner, ClassicalRefiner) and warnings == []


@pytest.mark.parametrize("refiner", ["flowedit", "sdedit"])
def test_missing_weights_fall_back_with_a_warning(refiner, tmp_path):
    model = str(tmp_path / "FLUX.1-dev")
    r, warnings = load_refiner(_settings(refiner=refiner, refiner_model=model), "cpu")
    assert isinstance(r, ClassicalRefiner)
    (w,) = warnings
    assert model in w and "no such folder" in w and "NOT a diffusion model" in w and "stage2.refiner_model" in w


def test_uncached_hub_model_offline_names_the_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    r, (w,) = load_refiner(_settings(refiner_model="skyfall-tests/no-such-flux"), "cpu")
    assert isinstance(r, ClassicalRefiner) and "hf download skyfall-tests/no-such-flux" in w


def test_missing_weights_without_fallback_raise(tmp_path):
    model = str(tmp_path / "nothing-here")
    with pytest.raises(WeightsNotFoundError) as info:
        load_refiner(_settings(refiner_model=model, fallback_to_classical=False), "cpu")
    assert info.value.path == model and "stage2.refiner_model" in info.value.fix


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "sd")


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory):
    return build_tiny_flux(tmp_path_factory.mktemp("tiny_flux") / "flux")


def test_flowedit_on_a_non_flow_model_is_a_config_error(tiny_sd):
    with pytest.raises(ConfigError, match="not a FLUX.1 or Stable Diffusion 3"):
        load_refiner(_settings(refiner="flowedit", refiner_model=str(tiny_sd)), "cpu")


def test_corrupt_weights_fall_back(tiny_flux, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_flux, broken)
    for f in (broken / "transformer").glob("*.safetensors"):
        f.write_bytes(b"\0" * 64)
    r, (w,) = load_refiner(_settings(refiner_model=str(broken)), "cpu")
    assert isinstance(r, ClassicalRefiner) and str(broken) in w


def test_dtype_is_float32_off_cuda():
    assert resolve_dtype("bfloat16", "cuda:0") == (torch.bfloat16, None)
    dtype, note = resolve_dtype("bfloat16", "cpu")
    assert dtype == torch.float32 and "float32" in note


# ---- diffusion refiners end to end (tiny random models) --------------------------------

def test_sdedit_runs_with_the_right_shapes(tiny_sd):
    r, warnings = load_refiner(_settings(refiner="sdedit", refiner_model=str(tiny_sd)), "cpu")
    assert isinstance(r, SDEditRefiner) and r.is_diffusion and warnings == []
    images = [_smooth(30, 36, seed=0), _smooth(32, 32, seed=1)]
    alphas = [np.ones((30, 36)), np.ones((32, 32))]
    out = r.refine(images, alphas=alphas, seed=5)
    assert [o.shape for o in out] == [(30, 36, 3), (32, 32, 3)]
    assert all(o.dtype == np.float32 and 0 <= o.min() and o.max() <= 1 for o in out)
    again = r.refine(images, alphas=alphas, seed=5)
    np.testing.assert_array_equal(out[0], again[0])
    assert np.abs(r.refine(images[:1], seed=6)[0] - out[0]).max() > 1e-3


def test_flowedit_refiner_batches_like_single_images(tiny_flux):
    r1, _ = load_refiner(_settings(refiner_model=str(tiny_flux)), "cpu")
    r2, _ = load_refiner(_settings(refiner_model=str(tiny_flux), batch_size=2), "cpu")
    assert isinstance(r1, FlowEditRefiner) and r1.is_diffusion and "FlowEdit" in r1.description
    images = [_smooth(32, 32, seed=k) for k in range(3)]
    alphas = [np.ones((32, 32), np.float32) for _ in images]
    alphas[1][8:16, 8:16] = 0.0  # a hole, pre-filled before the edit
    one = r1.refine(images, alphas=alphas, seed=11)
    two = r2.refine(images, alphas=alphas, seed=11)
    assert [o.shape for o in two] == [(32, 32, 3)] * 3
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_flowedit_refiner_stops_between_images(tiny_flux):
    r, _ = load_refiner(_settings(refiner_model=str(tiny_flux)), "cpu")
    done = []
    out = r.refine([_smooth(32, 32, seed=k) for k in range(3)], callback=lambda i, n: done.append(i),
                   should_stop=lambda: len(done) >= 1)
    assert len(out) == 1
