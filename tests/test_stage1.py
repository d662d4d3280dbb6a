"""Stage 1 behaviour on tiny synthetic scenes: training, appearance, DSM georeferencing, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skyfall_core.cameras.orbits import orbit_cameras
from skyfall_core.config import Stage1Settings
from skyfall_core.geo.frames import LocalFrame
from skyfall_core.pipeline.dsm_render import enu_heights_to_utm, render_height_map
from skyfall_core.pipeline.trainer import SplatTrainer, TrainSettings, View
from skyfall_core.splat.model import GaussianModel
from skyfall_core.splat.strategy import DensifyStrategy

torch.set_num_threads(1)


def _box_points(center=(10.0, -20.0), half=(6.0, 4.0), height=15.0, step=0.6, ground_step=1.5) -> np.ndarray:
    """Points on the roof and walls of a box building standing on z = 0, plus ground."""
    cx, cy = center
    hx, hy = half
    xs, ys = np.arange(cx - hx, cx + hx + 1e-9, step), np.arange(cy - hy, cy + hy + 1e-9, step)
    roof = np.array([[x, y, height] for x in xs for y in ys])
    gx = np.arange(-40, 40, ground_step)
    ground = np.array([[x, y, 0.0] for x in gx for y in gx if not (abs(x - cx) < hx and abs(y - cy) < hy)])
    return np.concatenate([roof, ground])


def _model(points: np.ndarray, rgb=None, opacity=0.95) -> GaussianModel:
    rgb = np.full_like(points, 0.5) if rgb is None else rgb
    return GaussianModel.from_points(torch.tensor(points, dtype=torch.float32), torch.tensor(rgb, dtype=torch.float32),
                                     sh_degree=1, init_opacity=opacity)


def _views(model: GaussianModel, n: int = 4, size: int = 48, elevation: float = 70.0) -> list[View]:
    cams = orbit_cameras(np.zeros(3), elevation, 90.0, [i * 360.0 / n for i in range(n)], 50.0, size, size)
    views = []
    for i, c in enumerate(cams):
        vm = torch.tensor(c.w2c, dtype=torch.float32)
        K = torch.tensor(c.to_render_K(), dtype=torch.float32)
        with torch.no_grad():
            rgb, _, _, _ = model.render(vm[None], K[None], size, size, backend="cpu")
        views.append(View(f"v{i}", rgb[0].clamp(0, 1), torch.ones(size, size, dtype=torch.bool), vm, K, i))
    return views


def _trainer(model, n_images, steps=60, opacity_reg=0.0, flat_reg=0.0) -> SplatTrainer:
    s = TrainSettings(opacity_reg=opacity_reg, flat_reg=flat_reg, max_gaussians=50_000, backend="cpu")
    strat = DensifyStrategy(refine_start_iter=10 ** 6)  # no densification in these tests
    return SplatTrainer(model, n_images, scene_scale=40.0, total_steps=steps, settings=s, strategy=strat, seed=0)


def test_training_decreases_the_loss():
    pts = _box_points()
    rng = np.random.default_rng(0)
    target = _model(pts, rgb=rng.uniform(0.1, 0.9, pts.shape))
    views = _views(target)
    start = _model(pts + rng.normal(0, 0.5, pts.shape), rgb=np.full(pts.shape, 0.5), opacity=0.5)
    tr = _trainer(start, len(views))
    first = np.mean([tr.train_step(v)["photo"] for v in views])
    for _ in range(12):
        for v in views:
            tr.train_step(v)
    last = np.mean([tr.train_step(v)["photo"] for v in views])
    assert last < 0.6 * first, (first, last)


def test_flat_regulariser_thins_the_gaussians_smallest_axis_and_still_fits():
    pts = _box_points()
    rng = np.random.default_rng(0)
    views = _views(_model(pts, rgb=rng.uniform(0.1, 0.9, pts.shape)))
    runs = {}
    for w in (0.0, 1.0):
        tr = _trainer(_model(pts, rgb=np.full(pts.shape, 0.5), opacity=0.5), len(views), flat_reg=w)
        first = np.mean([float(tr.train_step(v)["photo"]) for v in views])
        for _ in range(10):
            for v in views:
                losses = tr.train_step(v)
        assert ("flat" in losses) == (w > 0)
        last = np.mean([float(tr.train_step(v)["photo"]) for v in views])
        runs[w] = (float(tr.model.scales.min(dim=-1).values.mean()), first, last)
    thin0, (thin1, first1, last1) = runs[0.0][0], runs[1.0]
    assert thin1 < 0.9 * thin0, runs  # the smallest axis shrinks (log-scale lr: ~18 % in 44 steps)
    assert last1 < 0.8 * first1, runs  # and the views are still fitted


def test_appearance_absorbs_a_global_colour_change_of_one_view():
    pts = _box_points()
    rng = np.random.default_rng(1)
    target = _model(pts, rgb=rng.uniform(0.2, 0.8, pts.shape))
    views = _views(target)
    # view 2 was taken on a hazier, bluer day
    views[2].image = (views[2].image * torch.tensor([0.7, 0.75, 0.9]) + torch.tensor([0.1, 0.1, 0.15])).clamp(0, 1)
    tr = _trainer(_model(pts, rgb=target.shs[:, 0].detach().numpy() * 0.2820948 + 0.5), len(views))
    colours_before = tr.model.params["sh0"].detach().clone()
    for _ in range(20):
        for v in views:
            tr.train_step(v)
    rgb2, _, _, _ = tr.render(views[2], with_grad=False)
    assert (rgb2 - views[2].image).abs().mean() < 0.03  # the odd view is explained ...
    rgb0, _, _, _ = tr.render(views[0], with_grad=False)
    assert (rgb0 - views[0].image).abs().mean() < 0.03
    # ... by the appearance model, not by repainting the Gaussians
    drift = (tr.model.params["sh0"].detach() - colours_before).abs().mean() * 0.2820948
    assert drift < 0.03, float(drift)


def test_dsm_puts_a_building_on_the_right_utm_pixels():
    frame = LocalFrame(-95.938, 41.2585, 293.0)
    center, half, height = (10.0, -20.0), (6.0, 4.0), 15.0
    model = _model(_box_points(center, half, height, step=0.4, ground_step=0.4), opacity=0.99)
    with torch.no_grad():
        model.params["scales"].fill_(math.log(0.35))

    def render_fn(vm, K, w, h):
        _, a, d, _ = model.render(vm[None], K[None], w, h, backend="cpu")
        return a[0, ..., 0], d[0, ..., 0]

    heights, corner = render_height_map(render_fn, (-40.0, 40.0, -40.0, 40.0), 0.5)
    dsm = enu_heights_to_utm(heights, corner, 0.5, frame)
    assert dsm.epsg == 32615
    # where is the roof centre in UTM, and which pixel holds it?
    e, n, _ = frame.enu_to_utm(np.array([[center[0], center[1], height]]))[0]
    col = int((e - dsm.transform.c) / dsm.transform.a)
    row = int((n - dsm.transform.f) / dsm.transform.e)
    assert dsm.heights[row, col] == pytest.approx(frame.h0 + height, abs=0.5)
    # 10 m west of the building is ground
    e2, n2, _ = frame.enu_to_utm(np.array([[center[0] - half[0] - 10, center[1], 0.0]]))[0]
    col2 = int((e2 - dsm.transform.c) / dsm.transform.a)
    assert dsm.heights[row, col2] == pytest.approx(frame.h0, abs=0.5)
    # the roof's footprint: 12 m x 8 m -> about 24 x 16 pixels above 10 m
    roof = dsm.heights > frame.h0 + 10
    assert 0.7 * 24 * 16 < roof.sum() < 1.4 * 24 * 16


def test_truncated_run_resumes_from_its_checkpoint(tmp_path):
    pts = _box_points()
    target = _model(pts, rgb=np.random.default_rng(2).uniform(0.1, 0.9, pts.shape))
    views = _views(target)
    tr = _trainer(_model(pts, opacity=0.5), len(views))
    for v in views * 2:
        tr.train_step(v)
    tr.save(tmp_path / "partial.safetensors")
    expected = [tr.train_step(v)["photo"] for v in views]

    s = TrainSettings(opacity_reg=0.0, max_gaussians=50_000, backend="cpu")
    back, _ = SplatTrainer.resume(tmp_path / "partial.safetensors", len(views), 40.0, 60, s,
                                  DensifyStrategy(refine_start_iter=10 ** 6))
    assert back.step == 2 * len(views)
    got = [back.train_step(v)["photo"] for v in views]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_depth_prior_step_with_a_tiny_depth_model(tmp_path):
    from skyfall_core.priors.depth import load_depth_model

    from tiny_models import build_tiny_depth

    path = build_tiny_depth(tmp_path / "depth")
    dm = load_depth_model(str(path), "cpu")
    pts = _box_points()
    tr = _trainer(_model(pts, opacity=0.8), 1)
    view = _views(_model(pts), n=1)[0]
    view.appearance_index = None
    before = tr.model.params["means"].detach().clone()
    loss = tr.depth_prior_step(view, dm, weight=0.5)
    assert 0.0 <= loss <= 2.0
    assert not torch.equal(before, tr.model.params["means"].detach())  # the prior moved the geometry


def test_stage1_settings_map_to_trainer_settings():
    from skyfall_core.pipeline.stage1 import densify_strategy, train_settings

    s = Stage1Settings(iterations=1000, densify_until=600, opacity_reg=10.0, opacity_reg_start=0.5, flat_reg=0.1)
    t = train_settings(s, "cpu")
    assert t.opacity_reg == 10.0 and t.opacity_reg_start == 500 and t.flat_reg == 0.1
    d = densify_strategy(s)
    assert d.refine_stop_iter == 600 and d.refine_start_iter < 600
