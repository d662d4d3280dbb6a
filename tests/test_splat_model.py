"""GaussianModel initialisation and the densification strategy (against gsplat's own)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from skyfall_core.splat.model import GaussianModel, knn_scales
from skyfall_core.splat.sh import sh0_to_rgb
from skyfall_core.splat.strategy import DensifyStrategy


def grid_points(n_side: int = 4, spacing: float = 0.5) -> torch.Tensor:
    axis = torch.arange(n_side, dtype=torch.float32) * spacing
    return torch.cartesian_prod(axis, axis, axis)  # [n^3, 3]


# ------------------------------------------------------------------------- model

@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_from_points_initialisation(sh_degree: int) -> None:
    points = grid_points()
    colors = torch.rand(len(points), 3, generator=torch.Generator().manual_seed(0))
    model = GaussianModel.from_points(points, colors, sh_degree=sh_degree, init_opacity=0.1)
    N = len(points)
    assert model.num_gaussians == N
    assert model.params["shN"].shape == (N, (sh_degree + 1) ** 2 - 1, 3)
    assert (model.params["shN"] == 0).all()
    torch.testing.assert_close(model.means, points)
    torch.testing.assert_close(model.opacities, torch.full((N,), 0.1))
    torch.testing.assert_close(sh0_to_rgb(model.params["sh0"][:, 0]), colors)
    torch.testing.assert_close(model.quats, torch.tensor([1.0, 0, 0, 0]).expand(N, 4))
    # On a grid with spacing 0.5 the 3 nearest neighbours are all 0.5 away.
    torch.testing.assert_close(model.scales, torch.full((N, 3), 0.5))


def test_knn_scales_are_rms_of_three_nearest() -> None:
    points = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0], [10.0, 10, 10]])
    expected0 = math.sqrt((1 + 4 + 9) / 3)
    assert knn_scales(points)[0] == pytest.approx(expected0)
    assert knn_scales(points[:2]).tolist() == pytest.approx([1.0, 1.0])  # fewer than 4 points
    assert knn_scales(np.zeros((3, 3))).min() > 0  # coincident points get a floor


def test_from_points_rejects_bad_shapes() -> None:
    with pytest.raises(AssertionError, match=r"colors must be \[N, 3\].*\[5, 4\]"):
        GaussianModel.from_points(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="init_opacity"):
        GaussianModel.from_points(torch.rand(5, 3), torch.zeros(5, 3), init_opacity=1.0)


def test_model_renders_and_backpropagates() -> None:
    points = grid_points(3, 0.3) - 0.3
    model = GaussianModel.from_points(points, torch.rand(len(points), 3), sh_degree=1)
    viewmat = torch.eye(4)
    viewmat[2, 3] = 3.0
    K = torch.tensor([[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]])
    colors, alphas, depths, info = model.render(viewmat[None], K[None], 32, 32, backend="torch")
    assert colors.shape == (1, 32, 32, 3) and alphas.max() > 0.5
    (colors.mean() + depths.mean()).backward()
    for name, param in model.params.items():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    assert model.params["shN"].grad.abs().sum() > 0


# ------------------------------------------------------------------------- strategy

def make_training_setup(seed: int = 0, n: int = 60):
    gen = torch.Generator().manual_seed(seed)
    points = torch.rand(n, 3, generator=gen) * 2 - 1
    model = GaussianModel.from_points(points, torch.rand(n, 3, generator=gen), sh_degree=1)
    with torch.no_grad():
        model.params["scales"].copy_(torch.log(torch.rand(n, 3, generator=gen) * 0.03 + 0.002))
        model.params["opacities"].copy_(torch.logit(torch.rand(n, generator=gen) * 0.5 + 0.001))
    optimizers = model.create_optimizers()
    # One optimisation step so that Adam has moments to resize.
    loss = sum((p**2).sum() for p in model.params.values())
    loss.backward()
    for opt in optimizers.values():
        opt.step()
        opt.zero_grad()
    return model, optimizers


def fake_info(n: int, seed: int, n_cameras: int = 2) -> dict:
    gen = torch.Generator().manual_seed(seed)
    means2d = torch.zeros(n_cameras, n, 2, requires_grad=True)
    means2d.grad = torch.randn(n_cameras, n, 2, generator=gen) * 2e-5
    radii = torch.randint(0, 4, (n_cameras, n, 2), generator=gen, dtype=torch.int32)
    return {"means2d": means2d, "radii": radii, "width": 64, "height": 48,
            "n_cameras": n_cameras, "gaussian_ids": None}


def run_strategy_steps(strategy, params, optimizers, state, steps, seed: int) -> list:
    results = []
    for i, step in enumerate(steps):
        n = params["means"].shape[0]
        torch.manual_seed(seed + i)
        results.append(strategy.step_post_backward(params, optimizers, state, step,
                                                   fake_info(n, seed + i)))
    return results


def test_densify_matches_gsplat_default_strategy() -> None:
    """Same inputs and random seed: the same Gaussians, optimizer moments and counts."""
    from gsplat.strategy import DefaultStrategy

    model, optimizers = make_training_setup()
    ref_params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone())
                                         for k, v in model.params.items()})
    ref_optimizers = {k: torch.optim.Adam([ref_params[k]], lr=1e-3) for k in ref_params}
    for name, opt in optimizers.items():  # copy Adam's moments onto the reference params
        ref_optimizers[name].state[ref_params[name]] = copy.deepcopy(opt.state[model.params[name]])
    kwargs = dict(refine_start_iter=1, refine_every=2, reset_every=1000, grow_grad2d=1e-3,
                  grow_scale3d=0.02, prune_opa=0.02)
    ours, theirs = DensifyStrategy(**kwargs), DefaultStrategy(**kwargs)
    state, ref_state = ours.initialize_state(scene_scale=1.0), theirs.initialize_state(1.0)
    steps = [1, 2, 3, 4]
    counts = run_strategy_steps(ours, model.params, optimizers, state, steps, seed=10)
    for i, step in enumerate(steps):
        n = ref_params["means"].shape[0]
        torch.manual_seed(10 + i)
        theirs.step_post_backward(ref_params, ref_optimizers, ref_state, step, fake_info(n, 10 + i))
    assert counts[1]["duplicated"] > 0 and counts[1]["split"] > 0 and counts[1]["pruned"] > 0
    for name in ref_params:
        torch.testing.assert_close(model.params[name], ref_params[name], msg=name)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(optimizers[name].state[model.params[name]][key],
                                       ref_optimizers[name].state[ref_params[name]][key])


def test_densify_counts_and_optimizer_resizing() -> None:
    model, optimizers = make_training_setup(seed=1, n=6)
    params = model.params
    with torch.no_grad():
        params["scales"][:] = math.log(0.005)  # small: clone
        params["scales"][2:4] = math.log(0.05)  # large: split
        params["opacities"][:] = 2.0
        params["opacities"][5] = -8.0  # opacity 3e-4 < 0.005: pruned
    old = {k: v.detach().clone() for k, v in params.items()}
    old_moments = optimizers["means"].state[params["means"]]["exp_avg"].clone()
    strategy = DensifyStrategy(refine_start_iter=0, refine_every=1, reset_every=10_000)
    state = strategy.initialize_state(scene_scale=1.0)
    info = fake_info(6, seed=0, n_cameras=1)
    info["radii"][:] = 3
    info["means2d"].grad = torch.zeros(1, 6, 2)
    info["means2d"].grad[0, [0, 2], 0] = 1e-3  # |grad| * width/2 = 0.032 > 0.0002
    counts = strategy.step_post_backward(params, optimizers, state, step=1, info=info)
    assert counts == {"duplicated": 1, "split": 1, "pruned": 1, "reset": 0}
    # 6 + 1 clone - 1 split parent + 2 children - 1 pruned = 7
    assert params["means"].shape == (7, 3)
    for name, opt in optimizers.items():
        assert opt.param_groups[0]["params"][0] is params[name]
        assert opt.state[params[name]]["exp_avg"].shape == params[name].shape, name
    # Order: survivors [0, 1, 3, 4] (5 pruned), the clone of 0, the 2 children of 2.
    torch.testing.assert_close(params["means"][:4], old["means"][[0, 1, 3, 4]])
    torch.testing.assert_close(params["means"][4], old["means"][0])
    torch.testing.assert_close(params["scales"][5:], torch.log(torch.exp(old["scales"][[2, 2]]) / 1.6))
    moments = optimizers["means"].state[params["means"]]["exp_avg"]
    torch.testing.assert_close(moments[:4], old_moments[[0, 1, 3, 4]])
    assert (moments[4:] == 0).all()
    assert state["grad2d"].shape == (7,) and (state["grad2d"] == 0).all()


def test_opacity_reset_and_refine_window() -> None:
    model, optimizers = make_training_setup(seed=2, n=10)
    with torch.no_grad():
        model.params["opacities"][:] = 3.0
    strategy = DensifyStrategy(refine_start_iter=100, reset_every=50)
    state = strategy.initialize_state()
    counts = strategy.step_post_backward(model.params, optimizers, state, 50, fake_info(10, 0))
    assert counts["reset"] == 1 and counts["duplicated"] == counts["split"] == 0
    torch.testing.assert_close(model.opacities, torch.full((10,), 0.01))
    assert (optimizers["opacities"].state[model.params["opacities"]]["exp_avg"] == 0).all()
    counts = strategy.step_post_backward(model.params, optimizers, state, 49, fake_info(10, 1))
    assert counts["reset"] == 0
    late = strategy.step_post_backward(model.params, optimizers, state, 20_000, fake_info(10, 2))
    assert late == {"duplicated": 0, "split": 0, "pruned": 0, "reset": 0}


def test_strategy_with_the_renderer_in_the_loop() -> None:
    model, optimizers = make_training_setup(seed=3, n=40)
    strategy = DensifyStrategy(refine_start_iter=0, refine_every=2, grow_grad2d=1e-6)
    strategy.check_sanity(model.params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    viewmat = torch.eye(4)
    viewmat[2, 3] = 4.0
    K = torch.tensor([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    target = torch.rand(1, 24, 32, 3, generator=torch.Generator().manual_seed(0))
    n_before = model.num_gaussians
    for step in range(1, 3):
        colors, _, _, info = model.render(viewmat[None], K[None], 32, 24, backend="torch")
        strategy.step_pre_backward(model.params, optimizers, state, step, info)
        (colors - target).abs().mean().backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(model.params, optimizers, state, step, info)
    assert model.num_gaussians > n_before
    colors, *_ = model.render(viewmat[None], K[None], 32, 24, backend="torch")
    assert torch.isfinite(colors).all()
