import pytest
import torch

from skyfall_core.pipeline.appearance import AppearanceModel
from skyfall_core.pipeline.losses import (opacity_entropy, pearson_depth_loss, photometric_loss, psnr,
                                          ssim_map)


def test_ssim_is_one_for_identical_and_lower_for_noise():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(32, 40, 3, generator=g)
    assert ssim_map(img, img).mean().item() == pytest.approx(1.0, abs=1e-6)
    noisy = (img + 0.2 * torch.randn(32, 40, 3, generator=g)).clamp(0, 1)
    assert ssim_map(noisy, img).mean().item() < 0.9


def test_photometric_loss_ignores_masked_pixels():
    ref = torch.rand(16, 16, 3)
    img = ref.clone()
    img[:, :8] = 1 - img[:, :8]
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:, 13:] = True  # far from the changed half (beyond the SSIM window's reach)
    assert photometric_loss(img, ref, mask).item() < 1e-6
    assert photometric_loss(img, ref).item() > 0.1


def test_opacity_entropy_prefers_binary_opacities():
    assert opacity_entropy(torch.tensor([0.5, 0.5])) > opacity_entropy(torch.tensor([0.99, 0.01]))
    assert opacity_entropy(torch.tensor([0.5])).item() == pytest.approx(0.6931, abs=1e-4)


def test_pearson_is_scale_and_shift_free():
    d = torch.rand(20, 20)
    assert pearson_depth_loss(d, 3 * d + 7).item() == pytest.approx(0.0, abs=1e-5)
    assert pearson_depth_loss(d, -d).item() == pytest.approx(2.0, abs=1e-5)


def test_psnr():
    a = torch.zeros(4, 4, 3)
    assert psnr(a + 0.1, a) == pytest.approx(20.0, abs=1e-4)


def test_appearance_starts_as_identity_and_can_learn_a_colour_shift():
    torch.manual_seed(0)
    app = AppearanceModel(n_images=2, embedding_dim=8, feature_dim=4)
    colors = torch.rand(50, 3)
    feats = app.init_features(50)
    assert torch.allclose(app(colors, feats, 0), colors)
    target = colors * 0.7 + 0.1  # image 1 is darker and hazier
    opt = torch.optim.Adam(app.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = (app(colors, feats, 1) - target).abs().mean() + (app(colors, feats, 0) - colors).abs().mean()
        loss.backward()
        opt.step()
    assert (app(colors, feats, 1) - target).abs().mean() < 0.02
    assert (app(colors, feats, 0) - colors).abs().mean() < 0.02
