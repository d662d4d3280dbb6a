"""FlowEdit on tiny random FLUX- and SD3-shaped pipelines, loaded through ``load_refiner``.

Checks in latent space on 32x32 images: identical conditioning (or an empty edit window) is the
identity; prompts, guidance and seeds change the result as they should; one step matches the
paper's equations written out by hand.
"""

from __future__ import annotations

import pytest
import torch

from skyfall_core.config import Stage2Settings
from skyfall_core.priors.flowedit import (
    FlowEditParams,
    RefinementInterrupted,
    pack_latents,
    unpack_latents,
)
from skyfall_core.priors.refiners import FlowEditRefiner, load_refiner

from tiny_models import build_tiny_flux, build_tiny_sd3

SRC = "satellite image of a city, blurry, distorted"
TAR = "clear aerial photograph of a city, sharp, detailed"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module", params=["flux", "sd3"])
def pipeline(request, tmp_path_factory):
    """A FlowEditPipeline loaded the way a user's model is: folder -> load_refiner."""
    build = build_tiny_flux if request.param == "flux" else build_tiny_sd3
    folder = build(tmp_path_factory.mktemp(f"tiny_{request.param}") / request.param)
    settings = Stage2Settings(refiner="flowedit", refiner_model=str(folder), fallback_to_classical=False,
                              dtype="float32")
    refiner, warnings = load_refiner(settings, "cpu")
    assert isinstance(refiner, FlowEditRefiner) and warnings == []
    assert refiner.pipeline.kind == request.param
    return refiner.pipeline


def _images(b=1, h=32, w=32, seed=0) -> torch.Tensor:
    """Smooth random images [B, 3, H, W] in 0..1 (low-pass noise, like a blurry render)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(b, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _params(**kw) -> FlowEditParams:
    base = dict(source_prompt=SRC, target_prompt=TAR, steps=8, n_min=2, n_max=6, n_avg=1,
                source_guidance=1.5, target_guidance=5.5)
    return FlowEditParams(**{**base, **kw})


def test_identical_conditioning_is_vae_round_trip(pipeline):
    x = _images()
    p = _params(target_prompt=SRC, n_min=0, source_guidance=3.0, target_guidance=3.0)
    out = pipeline(x, p, generator=_gens(0))
    torch.testing.assert_close(out.latents, out.source_latents, rtol=0, atol=1e-6)
    round_trip = pipeline.decode(pipeline.prepare_latents(x))
    torch.testing.assert_close(out.images, round_trip, rtol=0, atol=1e-5)


def test_empty_edit_window_is_vae_round_trip(pipeline):
    out = pipeline(_images(), _params(n_min=0, n_max=0), generator=_gens(0))
    torch.testing.assert_close(out.latents, out.source_latents, rtol=0, atol=0)


@pytest.mark.parametrize("n_min", [0, 2])
def test_different_prompts_change_the_latent(pipeline, n_min):
    out = pipeline(_images(), _params(n_min=n_min), generator=_gens(0))
    assert (out.latents - out.source_latents).abs().max() > 1e-2


def test_guidance_is_wired(pipeline):
    """Same prompt, different guidance: FLUX's guidance embedding / SD3's CFG must change V."""
    out = pipeline(_images(), _params(target_prompt=SRC, n_min=0, source_guidance=1.5, target_guidance=5.5),
                   generator=_gens(0))
    assert (out.latents - out.source_latents).abs().max() > 1e-3


def test_seed_determinism(pipeline):
    x, p = _images(), _params()
    a = pipeline(x, p, generator=_gens(3))
    b = pipeline(x, p, generator=_gens(3))
    c = pipeline(x, p, generator=_gens(4))
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
    assert (a.images - c.images).abs().max() > 1e-3


def test_batch_matches_single_images(pipeline):
    x, p = _images(b=2), _params()
    both = pipeline(x, p, generator=_gens(0, 1))
    first = pipeline(x[:1], p, generator=_gens(0))
    second = pipeline(x[1:], p, generator=_gens(1))
    torch.testing.assert_close(both.latents, torch.cat([first.latents, second.latents]), rtol=1e-4, atol=1e-4)


def test_one_step_matches_the_paper_equations(pipeline):
    """steps=T, n_max=1, n_min=0: a single Euler step of the FlowEdit ODE from t_{T-1} to 0."""
    x, p = _images(), _params(n_max=1, n_min=0)
    out = pipeline(x, p, generator=_gens(7))
    x_src = pipeline.prepare_latents(x)
    t = pipeline.prepare_sigmas(p.steps, x_src)[p.steps - 1]
    eps = torch.randn(x_src.shape, generator=torch.Generator().manual_seed(7))
    src, tar = pipeline.encode_prompts(p)
    z_src = (1 - t) * x_src + t * eps
    z_tar = z_src  # z_edit = x_src before the first step
    dv = pipeline.velocity(z_tar, t, tar, p.target_guidance) - pipeline.velocity(z_src, t, src, p.source_guidance)
    torch.testing.assert_close(out.latents, x_src + (0.0 - t) * dv, rtol=1e-5, atol=1e-5)


def test_sizes_off_the_latent_grid_are_padded_and_cropped(pipeline):
    x = _images(h=30, w=38)
    out = pipeline(x, _params(), generator=_gens(0))
    assert out.images.shape == (1, 3, 30, 38)
    assert 0.0 <= float(out.images.min()) and float(out.images.max()) <= 1.0


def test_progress_and_interrupt(pipeline):
    seen = []
    pipeline(_images(), _params(), generator=_gens(0), callback_on_step_end=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 6) for i in range(1, 7)]
    with pytest.raises(RefinementInterrupted):
        pipeline(_images(), _params(), generator=_gens(0), should_stop=lambda: True)


@pytest.mark.parametrize("change, match", [
    (dict(n_max=9), r"`n_max` must lie in \[0, steps=8\], got 9"),
    (dict(n_min=7), r"`n_min` must lie in \[0, n_max=6\], got 7"),
    (dict(n_avg=0), r"`n_avg` must be >= 1, got 0"),
    (dict(target_prompt=" "), r"`target_prompt` must be a non-empty string"),
])
def test_check_inputs_names_argument_range_and_value(pipeline, change, match):
    with pytest.raises(ValueError, match=match):
        pipeline(_images(), _params(**change))


def test_check_inputs_rejects_bad_images(pipeline):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        pipeline(torch.rand(3, 32, 32), _params())
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        pipeline(_images() * 255, _params())


def test_pack_unpack_round_trip():
    z = torch.randn(2, 16, 6, 10)
    tokens = pack_latents(z)
    assert tokens.shape == (2, 15, 64)
    torch.testing.assert_close(unpack_latents(tokens, 6, 10), z, rtol=0, atol=0)
    # token k holds the 2x2 patch at (row, col) = divmod(k, w/2), channels major
    torch.testing.assert_close(tokens[0, 6].view(16, 2, 2), z[0, :, 2:4, 2:4])


@pytest.fixture(scope="module")
def schnell_pipeline(tmp_path_factory):
    """A FLUX.1-schnell-shaped pipeline: no guidance embedding (timestep-distilled), static shift."""
    import json

    from diffusers import FluxTransformer2DModel

    folder = build_tiny_flux(tmp_path_factory.mktemp("tiny_schnell") / "flux")
    cfg = dict(FluxTransformer2DModel.load_config(folder / "transformer"))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    torch.manual_seed(0)
    FluxTransformer2DModel(**{**cfg, "guidance_embeds": False}).save_pretrained(folder / "transformer")
    sched = folder / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps({**json.loads(sched.read_text()), "use_dynamic_shifting": False, "shift": 1.0}))
    settings = Stage2Settings(refiner="flowedit", refiner_model=str(folder), fallback_to_classical=False,
                              dtype="float32")
    refiner, warnings = load_refiner(settings, "cpu")
    assert isinstance(refiner, FlowEditRefiner) and warnings == []
    pipe = refiner.pipeline
    assert pipe.kind == "flux" and not pipe.pipe.transformer.config.guidance_embeds
    return pipe


def test_schnell_without_guidance_embedding(schnell_pipeline):
    """FLUX.1-schnell (Apache-2.0): few steps, no guidance input; guidance values are ignored, the
    identity and the prompt edit still hold."""
    p = _params(steps=4, n_min=0, n_max=3)
    same = schnell_pipeline(_images(), _params(steps=4, n_min=0, n_max=3, target_prompt=SRC,
                                               source_guidance=0.0, target_guidance=0.0), generator=_gens(0))
    assert torch.allclose(same.latents, same.source_latents, atol=1e-5)
    a = schnell_pipeline(_images(), p, generator=_gens(0))
    b = schnell_pipeline(_images(), _params(steps=4, n_min=0, n_max=3, source_guidance=0.0, target_guidance=9.0),
                         generator=_gens(0))
    assert (a.latents - a.source_latents).abs().max() > 1e-3  # the prompts edit
    assert torch.allclose(a.latents, b.latents, atol=1e-6)  # no guidance embedding: guidance has no effect


def test_refiner_model_licence_notes():
    from skyfall_core.ui.reconstruct import FLUX_DEV, FLUX_SCHNELL, REFINER_MODELS, refiner_model_licence

    assert FLUX_SCHNELL in REFINER_MODELS and FLUX_DEV in REFINER_MODELS
    assert "non-commercial" in refiner_model_licence(FLUX_DEV) and "schnell" in refiner_model_licence(FLUX_DEV)
    assert "non-commercial" in refiner_model_licence("/models/FLUX.1-dev/")
    assert "Apache-2.0" in refiner_model_licence(FLUX_SCHNELL)
    assert refiner_model_licence("") == ""
