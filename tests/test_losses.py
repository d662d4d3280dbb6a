import pytest
import torch

from skyfall_core.pipeline.appearance import AppearanceModel
from skyfall_core.pipeline.losses import (
    opacity_entropy,
    pearson_depth_loss,
    photometric_loss,
    psnr,
    ssim_map,
    ssim_map_reference,
)


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


def test_separable_ssim_equals_the_2d_window_reference():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(3)
    a = torch.rand(20, 24, 3, generator=g, dtype=torch.float64)
    b = torch.rand(20, 24, 3, generator=g, dtype=torch.float64)
    x = torch.arange(11, dtype=torch.float64) - 5
    k1 = torch.exp(-x ** 2 / (2 * 1.5 ** 2))
    k1 = k1 / k1.sum()
    w = (k1[:, None] * k1[None, :]).expand(3, 1, 11, 11)
    blur = lambda t: F.conv2d(t.permute(2, 0, 1)[None], w, padding=5, groups=3)[0]  # noqa: E731
    mx, my = blur(a), blur(b)
    sxx, syy, sxy = blur(a * a) - mx ** 2, blur(b * b) - my ** 2, blur(a * b) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ref = (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))).mean(0)
    torch.testing.assert_close(ssim_map(a, b), ref)
    torch.testing.assert_close(ssim_map_reference(a, b), ref)


def test_fused_cpu_ssim_matches_autograd_in_value_and_gradient():
    g = torch.Generator().manual_seed(5)
    a = torch.rand(17, 29, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.rand(17, 29, 3, generator=g, dtype=torch.float64)
    weights = torch.rand(17, 29, generator=g, dtype=torch.float64)
    fused, ref = ssim_map(a, b), ssim_map_reference(a, b)
    assert fused.grad_fn is not None and "Fused" in type(fused.grad_fn).__name__
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
    (g_fused,) = torch.autograd.grad((fused * weights).sum(), a)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), a)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: ssim_map(t, b[:9, :11]), (a[:9, :11].detach().requires_grad_(),))
    # float32 training images: same to float precision
    a32 = a.detach().float().requires_grad_()
    torch.testing.assert_close(ssim_map(a32, b.float()), ssim_map_reference(a32, b.float()), rtol=0, atol=1e-5)


def test_appearance_forward_equals_the_mlp_on_concatenated_inputs():
    torch.manual_seed(0)
    m = AppearanceModel(4)
    torch.nn.init.normal_(m.mlp[2].weight, std=0.2)  # leave the identity start
    feats, cols = torch.randn(300, 16), torch.rand(300, 3)
    for idx in (1, None):
        out = m.mlp(torch.cat([m.embedding(idx).expand(300, -1), feats], -1))
        torch.testing.assert_close(m(cols, feats, idx), (1 + out[:, :3]) * cols + out[:, 3:])
