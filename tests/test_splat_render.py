"""The splat renderer back-ends against a brute-force float64 reference written here.

The reference projects every Gaussian with plain 3x3 matrix algebra (torch.linalg.inv for the
conic), then composites every pixel against every Gaussian in depth order with a Python loop,
keeping gsplat's rules (tile membership from the radii, alpha = min(0.999, o exp(-sigma)),
alpha >= 1/255, stop before T <= 1e-4). Gradients come from autograd through that loop.
"""

from __future__ import annotations

import math
import os
import platform
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import Tensor

from skyfall_core.splat import raster_cpu
from skyfall_core.splat import render as render_module
from skyfall_core.splat.projection import fully_fused_projection
from skyfall_core.splat.raster_cpu import load_extension
from skyfall_core.splat.render import rasterize
from skyfall_core.splat.sh import spherical_harmonics

TILE = 16
PARAM_NAMES = ("means", "quats", "scales", "opacities", "colors")

needs_cpu_ext = pytest.mark.skipif(load_extension() is None, reason="no C++ compiler")


# ------------------------------------------------------------------------- scenes

def look_at(eye: Tensor, target: Tensor, up: Tensor) -> Tensor:
    """World-to-camera [4, 4] (OpenCV axes) for a camera at `eye` looking at `target`."""
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up), dim=0)
    down = torch.linalg.cross(forward, right)
    R = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    viewmat = torch.eye(4, dtype=eye.dtype)
    viewmat[:3, :3] = R
    viewmat[:3, 3] = -R @ eye
    return viewmat


def make_scene(seed: int, n: int, n_cameras: int, width: int, height: int,
               sh_degree: int | None = None, scale_range: tuple[float, float] = (0.03, 0.3),
               opacity_range: tuple[float, float] = (0.05, 0.95)) -> dict:
    """Random Gaussians in a unit-ish box seen by cameras on a circle at distance ~4."""
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=gen, dtype=dtype)

    lo, hi = math.log(scale_range[0]), math.log(scale_range[1])
    scene = {
        "means": (rand(n, 3) - 0.5) * torch.tensor([2.4, 2.0, 1.2], dtype=dtype),
        "quats": torch.randn(n, 4, generator=gen, dtype=dtype),
        "scales": torch.exp(lo + (hi - lo) * rand(n, 3)),
        "opacities": opacity_range[0] + (opacity_range[1] - opacity_range[0]) * rand(n),
    }
    if sh_degree is None:
        scene["colors"] = rand(n, 3)
    else:
        scene["colors"] = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=gen, dtype=dtype) * 0.5
    viewmats, Ks = [], []
    for c in range(n_cameras):
        angle = 0.4 * c
        eye = torch.tensor([4.0 * math.sin(angle), 0.3 * c - 0.2, -4.0 * math.cos(angle)],
                           dtype=dtype)
        viewmats.append(look_at(eye, torch.zeros(3, dtype=dtype), torch.tensor([0.0, 1.0, 0.1], dtype=dtype)))
        f = 1.1 * max(width, height) + 3 * c
        Ks.append(torch.tensor([[f, 0, width / 2 + c], [0, f * 1.02, height / 2 - c], [0, 0, 1]],
                               dtype=dtype))
    scene.update(viewmats=torch.stack(viewmats), Ks=torch.stack(Ks), width=width, height=height,
                 sh_degree=sh_degree)
    return scene


# ------------------------------------------------------------------------- reference

def reference_render(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                     sh_degree=None, backgrounds=None, near_plane=0.01, far_plane=1e10):
    """Brute-force gsplat-semantics renderer (any dtype; use float64)."""
    C = viewmats.shape[0]
    dtype = means.dtype
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rot = torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], dim=-2)  # [N, 3, 3]
    sigma3d = rot @ torch.diag_embed(scales**2) @ rot.transpose(-1, -2)  # [N, 3, 3]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype),
                            indexing="ij")
    pix = torch.stack([xs.flatten() + 0.5, ys.flatten() + 0.5], dim=-1)  # [P, 2]
    pix_tile = torch.stack([xs.flatten() // TILE, ys.flatten() // TILE], dim=-1)  # [P, 2]
    images, alphas_out, depths_out = [], [], []
    for c in range(C):
        R, t = viewmats[c, :3, :3], viewmats[c, :3, 3]
        fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
        mc = means @ R.T + t  # [N, 3]
        tz = mc[:, 2]
        valid = (tz >= near_plane) & (tz <= far_plane)
        tz = torch.where(valid, tz, torch.ones_like(tz))
        lim_x = (cx / fx + 0.15 * width / fx, (width - cx) / fx + 0.15 * width / fx)
        lim_y = (cy / fy + 0.15 * height / fy, (height - cy) / fy + 0.15 * height / fy)
        u = torch.clamp(mc[:, 0] / tz, -lim_x[0], lim_x[1])
        v = torch.clamp(mc[:, 1] / tz, -lim_y[0], lim_y[1])
        zero = torch.zeros_like(tz)
        J = torch.stack([torch.stack([fx / tz, zero, -fx * u / tz], -1),
                         torch.stack([zero, fy / tz, -fy * v / tz], -1)], dim=-2)  # [N, 2, 3]
        cov2d = J @ (R @ sigma3d @ R.T) @ J.transpose(-1, -2) + 0.3 * torch.eye(2, dtype=dtype)
        conic = torch.linalg.inv(cov2d)  # [N, 2, 2]
        mean2d = torch.stack([fx * mc[:, 0] / tz + cx, fy * mc[:, 1] / tz + cy], dim=-1)
        with torch.no_grad():
            extend = torch.sqrt(2 * torch.log(opacities.clamp_min(1 / 255) * 255)).clamp_max(3.33)
            radius = torch.ceil(extend[:, None] * torch.sqrt(torch.diagonal(cov2d, dim1=-2, dim2=-1)))
            on_screen = ((mean2d + radius > 0) & (mean2d - radius < torch.tensor([width, height],
                                                                              dtype=dtype))).all(-1)
            drawn = valid & on_screen & (opacities >= 1 / 255) & (radius > 0).all(-1)
            tiles = torch.tensor([math.ceil(width / TILE), math.ceil(height / TILE)])
            tile_min = torch.minimum(torch.floor((mean2d - radius) / TILE).clamp_min(0), tiles)
            tile_max = torch.minimum(torch.ceil((mean2d + radius) / TILE).clamp_min(0), tiles)
        if sh_degree is None:
            rgb = colors if colors.dim() == 2 else colors[c]
        else:
            campos = torch.linalg.inv(viewmats[c])[:3, 3]
            rgb = torch.clamp_min(spherical_harmonics(sh_degree, means - campos, colors) + 0.5, 0)
        features = torch.cat([rgb, mc[:, 2:3]], dim=-1)  # [N, 4]
        trans = torch.ones(pix.shape[0], dtype=dtype)
        acc = torch.zeros(pix.shape[0], 4, dtype=dtype)
        done = torch.zeros(pix.shape[0], dtype=torch.bool)
        for g in torch.argsort(mc[:, 2].detach(), stable=True).tolist():
            if not drawn[g]:
                continue
            in_tile = ((pix_tile >= tile_min[g]) & (pix_tile < tile_max[g])).all(-1)
            d = mean2d[g] - pix  # [P, 2]
            sigma = 0.5 * torch.einsum("pi,ij,pj->p", d, conic[g], d)
            alpha = torch.clamp_max(opacities[g] * torch.exp(-sigma), 0.999)
            ok = in_tile & ~done & (sigma.detach() >= 0) & (alpha.detach() >= 1 / 255)
            next_t = trans * (1 - alpha)
            stop = ok & (next_t.detach() <= 1e-4)
            draw = ok & ~stop
            acc = acc + torch.where(draw, alpha * trans, torch.zeros_like(alpha))[:, None] * features[g]
            trans = torch.where(draw, next_t, trans)
            done = done | stop
        if backgrounds is not None:
            acc = acc + trans[:, None] * torch.cat([backgrounds[c], backgrounds.new_zeros(1)])
        alpha_img = (1 - trans).reshape(height, width, 1)
        images.append(acc[:, :3].reshape(height, width, 3))
        alphas_out.append(alpha_img)
        depths_out.append(acc[:, 3:].reshape(height, width, 1) / alpha_img.clamp_min(1e-10))
    return torch.stack(images), torch.stack(alphas_out), torch.stack(depths_out)


# ------------------------------------------------------------------------- helpers

@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with n intra-op threads (restored after)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rel_err(actual: Tensor, expected: Tensor) -> float:
    expected = expected.double()
    return float((actual.double() - expected).norm() / expected.norm().clamp_min(1e-30))


def loss_weights(shape_like: tuple[Tensor, Tensor, Tensor], seed: int = 7) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(t.shape, generator=gen, dtype=torch.float64) for t in shape_like]


def render_with_grads(scene: dict, dtype: torch.dtype, backend: str | None,
                      backgrounds: Tensor | None = None):
    """(colors, alphas, depths), grads of a weighted sum, from a back-end or the reference."""
    params = {k: scene[k].to(dtype).detach().requires_grad_(True) for k in PARAM_NAMES}
    args = (params["means"], params["quats"], params["scales"], params["opacities"],
            params["colors"], scene["viewmats"].to(dtype), scene["Ks"].to(dtype),
            scene["width"], scene["height"])
    bg = None if backgrounds is None else backgrounds.to(dtype)
    if backend is None:
        out = reference_render(*args, sh_degree=scene["sh_degree"], backgrounds=bg)
    else:
        out = rasterize(*args, sh_degree=scene["sh_degree"], backgrounds=bg, backend=backend)[:3]
    weights = loss_weights(out)
    loss = sum((o.double() * w).sum() for o, w in zip(out, weights))
    loss.backward()
    return [o.detach() for o in out], {k: p.grad for k, p in params.items()}


def assert_matches_reference(scene: dict, backend: str, dtype: torch.dtype, image_tol: float,
                             grad_tol: float, backgrounds: Tensor | None = None) -> None:
    # The reference sees exactly the inputs the back-end sees (rounded to dtype).
    rounded = {k: (v.to(dtype).double() if isinstance(v, Tensor) else v) for k, v in scene.items()}
    expected, expected_grads = render_with_grads(rounded, torch.float64, None, backgrounds)
    actual, actual_grads = render_with_grads(rounded, dtype, backend, backgrounds)
    for name, a, e in zip(("colors", "alphas", "depths"), actual, expected):
        assert a.dtype == dtype
        err = rel_err(a, e)
        assert err < image_tol, f"{backend}/{dtype} {name}: relative error {err:.2e}"
    for name in PARAM_NAMES:
        err = rel_err(actual_grads[name], expected_grads[name])
        assert torch.isfinite(actual_grads[name]).all(), f"{name} gradient is not finite"
        assert err < grad_tol, f"{backend}/{dtype} d/d{name}: relative error {err:.2e}"


# ------------------------------------------------------------------------- tests

SCENES = {
    "square": dict(seed=1, n=80, n_cameras=1, width=48, height=48),
    "non_square_2cams": dict(seed=2, n=120, n_cameras=2, width=57, height=35),
    "sh_degree_1": dict(seed=3, n=60, n_cameras=2, width=40, height=36, sh_degree=1),
    "sh_degree_3": dict(seed=4, n=60, n_cameras=1, width=33, height=47, sh_degree=3),
    "dense_opaque": dict(seed=5, n=150, n_cameras=1, width=32, height=32,
                         scale_range=(0.2, 0.5), opacity_range=(0.6, 0.999)),
    # opacity * exp(-sigma) > 0.999 near the centres: the alpha clamp and its zero gradient
    "saturated": dict(seed=6, n=40, n_cameras=1, width=24, height=24,
                      scale_range=(0.3, 0.6), opacity_range=(0.9995, 0.99999)),
}


@needs_cpu_ext
@pytest.mark.parametrize("name", sorted(SCENES))
def test_cpu_float32_matches_float64_reference(name: str) -> None:
    assert_matches_reference(make_scene(**SCENES[name]), "cpu", torch.float32,
                             image_tol=1e-5, grad_tol=1e-4)


@needs_cpu_ext
@pytest.mark.parametrize("name", ["non_square_2cams", "sh_degree_3", "dense_opaque", "saturated"])
def test_cpu_float64_matches_reference_to_rounding(name: str) -> None:
    assert_matches_reference(make_scene(**SCENES[name]), "cpu", torch.float64,
                             image_tol=1e-12, grad_tol=1e-10)


@pytest.mark.parametrize("name", ["non_square_2cams", "sh_degree_1"])
def test_torch_backend_matches_reference(name: str) -> None:
    assert_matches_reference(make_scene(**SCENES[name]), "torch", torch.float64,
                             image_tol=1e-12, grad_tol=1e-10)


@needs_cpu_ext
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_backgrounds_and_their_gradient(backend: str) -> None:
    scene = make_scene(seed=11, n=40, n_cameras=2, width=30, height=20)
    backgrounds = torch.tensor([[0.2, 0.5, 0.9], [1.0, 0.0, 0.3]], dtype=torch.float64,
                               requires_grad=True)
    assert_matches_reference(scene, backend, torch.float64, 1e-12, 1e-10, backgrounds.detach())
    colors, alphas, _, _ = rasterize(*(scene[k] for k in PARAM_NAMES), scene["viewmats"],
                                     scene["Ks"], 30, 20, backgrounds=backgrounds, backend=backend)
    colors.sum().backward()
    expected = (1 - alphas).sum(dim=(1, 2)).expand(2, 3)
    torch.testing.assert_close(backgrounds.grad, expected)


@needs_cpu_ext
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_per_camera_colors(backend: str) -> None:
    """colors [C, N, 3] (e.g. from a per-image appearance model) are used view by view."""
    scene = make_scene(seed=12, n=50, n_cameras=2, width=28, height=22)
    scene["colors"] = torch.rand(2, 50, 3, generator=torch.Generator().manual_seed(3),
                                 dtype=torch.float64)
    assert_matches_reference(scene, backend, torch.float64, 1e-12, 1e-10)


@needs_cpu_ext
def test_dense_scene_reaches_transmittance_floor() -> None:
    """Opaque layers must stop compositing: 1 - alpha stays just above 1e-4, never below."""
    scene = make_scene(**SCENES["dense_opaque"])
    _, alphas, _, _ = rasterize(*(scene[k] for k in PARAM_NAMES), scene["viewmats"], scene["Ks"],
                                32, 32, backend="cpu")
    trans = 1 - alphas
    assert trans.min() > 1e-4 and trans.min() < 2e-3


@needs_cpu_ext
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_gaussians_behind_camera_and_off_screen_are_ignored(backend: str) -> None:
    scene = make_scene(seed=21, n=30, n_cameras=1, width=32, height=24)
    visible = {k: scene[k].clone() for k in PARAM_NAMES}
    viewmat = scene["viewmats"][0]
    eye = torch.linalg.inv(viewmat)[:3, 3]
    forward = viewmat[2, :3]
    right = viewmat[0, :3]
    behind = eye - (1.0 + torch.rand(10, 1, dtype=torch.float64)) * forward  # z < 0
    near = eye + 0.005 * forward + 0.001 * right  # 0 < z < near_plane
    off_screen = eye + 4.0 * forward + 30.0 * right  # far to the right of the image
    extra = torch.cat([behind, near[None], off_screen[None]])
    n_extra = extra.shape[0]
    crowded = {
        "means": torch.cat([visible["means"], extra]),
        "quats": torch.cat([visible["quats"], torch.randn(n_extra, 4, dtype=torch.float64)]),
        "scales": torch.cat([visible["scales"], torch.full((n_extra, 3), 0.5, dtype=torch.float64)]),
        "opacities": torch.cat([visible["opacities"], torch.full((n_extra,), 0.9, dtype=torch.float64)]),
        "colors": torch.cat([visible["colors"], torch.ones(n_extra, 3, dtype=torch.float64)]),
    }
    params = {k: v.clone().requires_grad_(True) for k, v in crowded.items()}
    out = rasterize(*(params[k] for k in PARAM_NAMES), scene["viewmats"], scene["Ks"], 32, 24,
                    backend=backend)
    (out[0].sum() + out[1].sum() + out[2].sum()).backward()
    expected = rasterize(*(visible[k] for k in PARAM_NAMES), scene["viewmats"], scene["Ks"], 32, 24,
                         backend=backend)
    for a, e in zip(out[:3], expected[:3]):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    assert (out[3]["radii"][0, -n_extra:] == 0).all()
    for name, p in params.items():
        assert torch.isfinite(p.grad).all(), name
        assert (p.grad[-n_extra:] == 0).all(), f"culled Gaussians got a {name} gradient"


@needs_cpu_ext
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_degenerate_scales(backend: str) -> None:
    scene = make_scene(seed=31, n=25, n_cameras=1, width=24, height=24)
    scene["scales"][:5] = 0.0
    scene["scales"][5:10, 0] = 1e-9
    scene["scales"][10:12] = 1e-12
    assert_matches_reference(scene, backend, torch.float64, 1e-12, 1e-10)
    assert_matches_reference(scene, backend, torch.float32, 1e-5, 1e-4)


@needs_cpu_ext
@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_empty_scene(backend: str) -> None:
    scene = make_scene(seed=41, n=0, n_cameras=2, width=20, height=10)
    params = {k: scene[k].float().requires_grad_(True) for k in PARAM_NAMES}
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 1.0]])
    colors, alphas, depths, info = rasterize(
        *(params[k] for k in PARAM_NAMES), scene["viewmats"].float(), scene["Ks"].float(), 20, 10,
        backgrounds=bg, backend=backend)
    assert colors.shape == (2, 10, 20, 3) and alphas.shape == depths.shape == (2, 10, 20, 1)
    torch.testing.assert_close(colors, bg[:, None, None, :].expand(2, 10, 20, 3))
    assert (alphas == 0).all() and (depths == 0).all() and info["n_isects"] == 0
    (colors.sum() + alphas.sum()).backward()
    assert params["means"].grad.shape == (0, 3)


@needs_cpu_ext
def test_cpu_and_torch_agree_in_float32_on_a_bigger_scene() -> None:
    scene = make_scene(seed=51, n=600, n_cameras=2, width=70, height=50, sh_degree=2)
    out_cpu, grads_cpu = render_with_grads(scene, torch.float32, "cpu")
    with torch_threads(1):  # the torch reference is slow on a shared, busy machine otherwise
        out_torch, grads_torch = render_with_grads(scene, torch.float32, "torch")
    for a, e in zip(out_cpu, out_torch):
        assert rel_err(a, e) < 1e-5
    for name in PARAM_NAMES:
        assert rel_err(grads_cpu[name], grads_torch[name]) < 1e-4, name


@needs_cpu_ext
def test_cpu_results_do_not_depend_on_the_thread_count() -> None:
    """Tiles are handed out dynamically; gradients are summed in a fixed order."""
    scene = make_scene(seed=55, n=2000, n_cameras=3, width=96, height=80, sh_degree=1,
                       scale_range=(0.01, 0.1))
    with torch_threads(1):
        out_1, grads_1 = render_with_grads(scene, torch.float32, "cpu")
    with torch_threads(2):
        out_2, grads_2 = render_with_grads(scene, torch.float32, "cpu")
    for a, b in zip(out_1, out_2):
        assert torch.equal(a, b)
    for name in PARAM_NAMES:
        assert torch.equal(grads_1[name], grads_2[name]), name


@needs_cpu_ext
def test_info_means2d_gradient_for_densification() -> None:
    scene = make_scene(seed=61, n=50, n_cameras=2, width=32, height=32)
    params = {k: scene[k].float().requires_grad_(True) for k in PARAM_NAMES}
    colors, _, _, info = rasterize(*(params[k] for k in PARAM_NAMES), scene["viewmats"].float(),
                                   scene["Ks"].float(), 32, 32, backend="cpu")
    info["means2d"].retain_grad()
    colors.sum().backward()
    grad = info["means2d"].grad
    assert grad.shape == (2, 50, 2) and info["radii"].shape == (2, 50, 2)
    visible = (info["radii"] > 0).all(-1)
    assert (grad[~visible] == 0).all() and grad[visible].abs().sum() > 0
    assert info["n_cameras"] == 2 and info["width"] == 32 and info["backend"] == "cpu"


def test_projection_matches_gsplat_torch_reference() -> None:
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    scene = make_scene(seed=71, n=200, n_cameras=3, width=64, height=40)
    covars, _ = _quat_scale_to_covar_preci(scene["quats"], scene["scales"], compute_preci=False)
    _, means2d, depths, conics, _ = _fully_fused_projection(
        scene["means"], covars, scene["viewmats"], scene["Ks"], 64, 40)
    ours = fully_fused_projection(scene["means"], scene["quats"], scene["scales"],
                                  scene["opacities"], scene["viewmats"], scene["Ks"], 64, 40)
    visible = (ours.radii > 0).all(-1)
    assert visible.sum() > 100
    torch.testing.assert_close(ours.means2d[visible], means2d[visible])
    torch.testing.assert_close(ours.depths, depths)
    torch.testing.assert_close(ours.conics[visible], conics[visible])


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_match_gsplat(degree: int) -> None:
    from gsplat.cuda._torch_impl import _spherical_harmonics

    gen = torch.Generator().manual_seed(degree)
    dirs = torch.randn(100, 3, generator=gen, dtype=torch.float64)
    coeffs = torch.randn(100, 16, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(spherical_harmonics(degree, dirs, coeffs),
                               _spherical_harmonics(degree, dirs, coeffs))


def test_shape_errors_name_the_bad_shape() -> None:
    scene = make_scene(seed=81, n=10, n_cameras=1, width=16, height=16)
    args = [scene[k] for k in PARAM_NAMES] + [scene["viewmats"], scene["Ks"], 16, 16]
    bad_quats = list(args)
    bad_quats[1] = torch.zeros(10, 3)
    with pytest.raises(AssertionError, match=r"quats must be \[N, 4\].*\(10, 3\)"):
        rasterize(*bad_quats, backend="torch")
    bad_ks = list(args)
    bad_ks[6] = torch.zeros(2, 3, 3)
    with pytest.raises(AssertionError, match=r"Ks must be \[C, 3, 3\].*\(2, 3, 3\)"):
        rasterize(*bad_ks, backend="torch")
    with pytest.raises(ValueError, match="backend must be one of"):
        rasterize(*args, backend="vulkan")


def test_auto_backend_falls_back_to_torch_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render_module, "load_extension", lambda: None)
    scene = make_scene(seed=91, n=10, n_cameras=1, width=16, height=16)
    with pytest.warns(RuntimeWarning, match="pure-PyTorch"):
        *_, info = rasterize(*(scene[k] for k in PARAM_NAMES), scene["viewmats"], scene["Ks"],
                             16, 16, backend="auto")
    assert info["backend"] == "torch"


@needs_cpu_ext
def test_auto_backend_is_cpu_without_cuda() -> None:
    scene = make_scene(seed=92, n=10, n_cameras=1, width=16, height=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        *_, info = rasterize(*(scene[k] for k in PARAM_NAMES), scene["viewmats"], scene["Ks"],
                             16, 16)
    assert info["backend"] == ("gsplat" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="gsplat back-end needs CUDA")
def test_gsplat_backend_matches_cpu() -> None:  # pragma: no cover - needs a GPU
    scene = make_scene(seed=101, n=300, n_cameras=2, width=64, height=48, sh_degree=1)
    cpu = rasterize(*(scene[k].float() for k in PARAM_NAMES), scene["viewmats"].float(),
                    scene["Ks"].float(), 64, 48, sh_degree=1, backend="cpu")
    gpu = rasterize(*(scene[k].float().cuda() for k in PARAM_NAMES), scene["viewmats"].float().cuda(),
                    scene["Ks"].float().cuda(), 64, 48, sh_degree=1, backend="gsplat")
    for a, e in zip(gpu[:3], cpu[:3]):
        assert rel_err(a.cpu(), e) < 1e-4


# ------------------------------------------------------------------------- builds (issue 18)
# The kernel must be as correct (and, measured in BENCHMARKS.md, as fast) when built for an
# AVX2-only CPU as for this machine's: the AVX2 build is compiled here with
# SKYFALL_RASTER_MARCH=haswell, once per machine: it goes into the rasterizer's own cache under its
# own key (the sources, the flags, torch, Python and the CPU), beside the default build.

def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith(("flags", "Features")) and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.fixture(scope="session")
def avx2_build():
    """(module, build dir) of the kernel built with -march=haswell (AVX2 + FMA, no AVX-512)."""
    if not raster_cpu.compiler_available():
        pytest.skip("no C++ compiler: cannot build the AVX2-only variant of the CPU rasterizer")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"the AVX2-only build is an x86-64 build; this is {platform.machine()}")
    if not {"avx2", "fma"} <= _cpu_flags():
        pytest.skip("this CPU has no AVX2/FMA: an AVX2 build could not run here")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(raster_cpu.MARCH_ENV, "haswell")
        build_dir = raster_cpu.extension_dir()
        module = raster_cpu.build_extension()  # 25 s to a minute the first time
    if module is None:
        pytest.fail("a C++ compiler is available but the -march=haswell build failed")
    assert build_dir != raster_cpu.extension_dir() and any(build_dir.glob("*.so"))  # not the default build's
    return module, build_dir


@pytest.fixture
def use_build(monkeypatch: pytest.MonkeyPatch):
    """Route the cpu back-end to a given extension module for one test."""
    def use(module) -> None:
        monkeypatch.setattr(raster_cpu, "load_extension", lambda verbose=False: module)
        monkeypatch.setattr(render_module, "load_extension", lambda verbose=False: module)
    return use


def test_march_setting_selects_flags_and_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(raster_cpu.MARCH_ENV, raising=False)
    assert raster_cpu.march_flags() == ("-march=native",)
    assert raster_cpu.march_flags("haswell") == ("-march=haswell",)
    assert raster_cpu.march_flags("native -mno-avx512f") == ("-march=native", "-mno-avx512f")
    assert raster_cpu.march_flags("none") == ()
    native_key = raster_cpu.extension_key()
    assert raster_cpu.extension_key("native") == native_key
    monkeypatch.setenv(raster_cpu.MARCH_ENV, "haswell")
    assert raster_cpu.cxx_flags()[-1] == "-march=haswell"
    assert raster_cpu.extension_key() == raster_cpu.extension_key("haswell") != native_key
    assert raster_cpu.isa_label(["__SSE2__", "__AVX__", "__AVX2__", "__FMA__"]) == "AVX2+FMA"
    assert raster_cpu.isa_label(["__AVX2__", "__FMA__", "__AVX512F__"]) == "AVX-512+FMA"
    assert raster_cpu.isa_label(["__ARM_NEON"]) == "NEON"


@needs_cpu_ext
def test_default_build_reports_the_isa_it_was_compiled_for(monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = raster_cpu.kernel_isa()
    macros = set(kernel["macros"])
    assert kernel["isa"] == raster_cpu.isa_label(kernel["macros"]) != "none"
    assert kernel["vector_bits"] in (128, 256, 512)
    if os.environ.get(raster_cpu.MARCH_ENV, "native").strip() in ("", "native"):
        flags = _cpu_flags()  # -march=native: the macros follow this CPU's flags
        assert ("__AVX512F__" in macros) == ("avx512f" in flags)
        assert ("__AVX2__" in macros) == ("avx2" in flags)
        assert ("__FMA__" in macros) == ("fma" in flags)


@pytest.mark.slow
def test_avx2_build_reports_avx2_without_avx512(avx2_build) -> None:
    module, _ = avx2_build
    kernel = raster_cpu.kernel_isa(module)
    assert kernel["flags"] == ["-march=haswell"]
    assert {"__AVX2__", "__FMA__"} <= set(kernel["macros"])
    assert "__AVX512F__" not in kernel["macros"]
    assert kernel["isa"] == "AVX2+FMA" and kernel["vector_bits"] == 256


@pytest.mark.slow
@pytest.mark.parametrize("name", ["non_square_2cams", "dense_opaque", "saturated"])
def test_avx2_build_matches_float64_reference(avx2_build, use_build, name: str) -> None:
    use_build(avx2_build[0])
    scene = make_scene(**SCENES[name])
    assert_matches_reference(scene, "cpu", torch.float32, image_tol=1e-5, grad_tol=1e-4)
    assert_matches_reference(scene, "cpu", torch.float64, image_tol=1e-12, grad_tol=1e-10)


@pytest.mark.slow
@needs_cpu_ext
def test_avx2_build_agrees_with_the_default_build(avx2_build, use_build) -> None:
    scene = make_scene(seed=57, n=1500, n_cameras=2, width=80, height=64, sh_degree=1,
                       scale_range=(0.01, 0.1))
    out_default, grads_default = render_with_grads(scene, torch.float32, "cpu")
    use_build(avx2_build[0])
    out_avx2, grads_avx2 = render_with_grads(scene, torch.float32, "cpu")
    for a, b in zip(out_avx2, out_default):
        assert rel_err(a, b) < 1e-6
    for name in PARAM_NAMES:
        assert rel_err(grads_avx2[name], grads_default[name]) < 1e-5, name
