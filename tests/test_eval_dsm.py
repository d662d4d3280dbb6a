import numpy as np
import pytest
from rasterio.transform import from_origin

from skyfall_core.errors import CorruptRasterError
from skyfall_core.eval.dsm import compare_dsm
from skyfall_core.geo.dsm import DSMGrid, read_dsm, write_dsm


def _city(shape=(80, 90), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = np.full(shape, 5.0, np.float32)
    for _ in range(8):
        r, c = rng.integers(5, shape[0] - 20), rng.integers(5, shape[1] - 20)
        h[r:r + rng.integers(6, 15), c:c + rng.integers(6, 15)] += rng.uniform(5, 40)
    return h


def test_identical_dsm_has_zero_error():
    t = DSMGrid(_city(), from_origin(436000, 3358000, 0.5, 0.5), 32617)
    m = compare_dsm(t, t)
    assert m.mae_m == pytest.approx(0, abs=1e-5) and m.completeness == pytest.approx(1.0)
    assert (m.shift_east_m, m.shift_north_m) == (0.0, 0.0)


def test_registration_recovers_shift_and_bias_but_not_noise():
    truth = DSMGrid(_city(), from_origin(436000, 3358000, 0.5, 0.5), 32617)
    # the prediction sits 1.0 m east, 0.5 m south and 3 m higher than the truth
    pred = DSMGrid(truth.heights + 3.0, from_origin(436001.0, 3357999.5, 0.5, 0.5), 32617)
    m = compare_dsm(pred, truth)
    assert m.vertical_bias_m == pytest.approx(3.0, abs=1e-4)
    assert (m.shift_east_m, m.shift_north_m) == (-1.0, 0.5)
    assert m.mae_m < 1e-4
    noisy = DSMGrid(truth.heights + np.random.default_rng(1).normal(0, 2.0, truth.heights.shape).astype(np.float32),
                    truth.transform, 32617)
    m = compare_dsm(noisy, truth)
    assert 1.3 < m.mae_m < 1.9  # E|N(0, 2)| = 1.6
    assert 0.3 < m.completeness < 0.5  # P(|N(0,2)| < 1) = 0.38


def test_missing_prediction_lowers_coverage(tmp_path):
    truth = DSMGrid(_city(), from_origin(436000, 3358000, 0.5, 0.5), 32617)
    h = truth.heights.copy()
    h[:, :45] = np.nan
    write_dsm(tmp_path / "p.tif", DSMGrid(h, truth.transform, 32617))
    pred = read_dsm(tmp_path / "p.tif")
    assert pred.epsg == 32617 and np.isnan(pred.heights[:, :45]).all()
    m = compare_dsm(pred, truth)
    assert m.coverage == pytest.approx(0.5, abs=0.03)
    assert m.mae_m < 1e-4


def test_origin_txt_sets_north_up_grid(tmp_path):
    import rasterio

    data = _city((40, 40))
    with rasterio.open(tmp_path / "t.tif", "w", driver="GTiff", width=40, height=40, count=1,
                       dtype="float32") as ds:
        ds.write(data, 1)
    (tmp_path / "t.txt").write_text("436078.99\n3357496.0\n40\n0.5\n")
    with pytest.raises(CorruptRasterError, match="no georeferencing"):
        read_dsm(tmp_path / "t.tif")
    g = read_dsm(tmp_path / "t.tif", origin_txt=tmp_path / "t.txt", epsg=32617)
    # the txt gives the LOWER edge: the top-left corner is 20 m further north
    assert (g.transform.c, g.transform.f) == (436078.99, 3357496.0 + 20.0)


def test_jax_truth_reads(jax_dir):
    g = read_dsm(jax_dir / "truth/JAX_068_DSM.tif", origin_txt=jax_dir / "truth/JAX_068_DSM.txt", epsg=32617)
    assert g.heights.shape == (512, 512)
    assert -40 < np.nanmin(g.heights) < np.nanmax(g.heights) < 60


def _classes(shape) -> np.ndarray:
    """Ground everywhere, a building block, a water strip and an unlabeled patch (DFC2019 codes)."""
    cls = np.full(shape, 2, np.uint8)
    cls[10:30, 10:40] = 6  # building
    cls[60:, :] = 9  # water
    cls[0:5, 80:] = 65  # unlabeled
    return cls


def test_class_raster_excludes_water_and_reports_buildings():
    from skyfall_core.eval.dsm import DFC_CLASSES

    assert DFC_CLASSES[6] == "buildings" and DFC_CLASSES[9] == "water" and DFC_CLASSES[65] == "unlabeled"
    shape = (80, 90)
    cls = _classes(shape)
    truth = DSMGrid(np.full(shape, 5.0, np.float32), from_origin(436000, 3358000, 0.5, 0.5), 32617)
    err = np.zeros(shape, np.float32)
    err[cls == 6] = 2.0  # buildings 2 m too high
    err[cls == 9] = 50.0  # water: garbage that DFC2019 does not score
    err[cls == 65] = -30.0
    err[40:50, 50:60] = -1.0  # some ground 1 m low
    pred = DSMGrid(truth.heights + err, truth.transform, 32617)
    m = compare_dsm(pred, truth, max_shift_m=0.0, truth_cls=cls)
    scored = ~np.isin(cls, (9, 65))
    assert m.n_pixels == int(scored.sum())
    assert m.n_excluded_pixels == int((~scored).sum())
    assert m.n_building_pixels == 20 * 30
    # the registration's vertical bias is the median error (0 here: most scored pixels are exact)
    assert m.vertical_bias_m == pytest.approx(0.0, abs=1e-6)
    e = err[scored]
    assert m.mae_m == pytest.approx(np.mean(np.abs(e)), rel=1e-5)
    assert m.rmse_m == pytest.approx(np.sqrt(np.mean(e ** 2)), rel=1e-5)
    assert m.mae_buildings_m == pytest.approx(2.0, abs=1e-5)
    assert m.rmse_buildings_m == pytest.approx(2.0, abs=1e-5)
    assert m.median_buildings_m == pytest.approx(2.0, abs=1e-5)
    assert m.coverage == pytest.approx(1.0)
    # without the class raster, water and unlabeled pixels dominate the error
    plain = compare_dsm(pred, truth, max_shift_m=0.0)
    assert plain.mae_m > 5 * m.mae_m and plain.mae_buildings_m is None
    # the dict form carries the building figures
    assert compare_dsm(pred, truth, truth_cls=cls).to_dict()["mae_buildings_m"] == pytest.approx(2.0, abs=1e-4)


def test_class_raster_registration_ignores_water():
    shape = (80, 90)
    cls = _classes(shape)
    truth = DSMGrid(_city(shape), from_origin(436000, 3358000, 0.5, 0.5), 32617)
    h = truth.heights.copy()
    h[cls == 9] += 40.0  # water floaters in the prediction
    pred = DSMGrid(h + 1.5, from_origin(436000.5, 3358000, 0.5, 0.5), 32617)  # 0.5 m east, 1.5 m high
    m = compare_dsm(pred, truth, truth_cls=cls)
    assert m.shift_east_m == -0.5 and m.vertical_bias_m == pytest.approx(1.5, abs=1e-4)
    assert m.mae_m < 1e-4 and m.mae_buildings_m < 1e-4


def test_class_raster_found_beside_truth_and_shape_checked(tmp_path):
    import rasterio

    from skyfall_core.geo.dsm import find_class_raster, read_class_raster

    truth = DSMGrid(_city((40, 40)), from_origin(436000, 3358000, 0.5, 0.5), 32617)
    write_dsm(tmp_path / "A_DSM.tif", truth)
    assert find_class_raster(tmp_path / "A_DSM.tif") is None
    for name, n in (("A_CLS.tif", 40), ("B_CLS.tif", 30)):
        with rasterio.open(tmp_path / name, "w", driver="GTiff", width=n, height=n, count=1, dtype="uint8") as ds:
            ds.write(np.full((n, n), 6, np.uint8), 1)
    assert find_class_raster(tmp_path / "A_DSM.tif") == tmp_path / "A_CLS.tif"
    assert (read_class_raster(tmp_path / "A_CLS.tif", truth) == 6).all()
    with pytest.raises(CorruptRasterError, match="class raster"):
        read_class_raster(tmp_path / "B_CLS.tif", truth)


def test_jax_class_raster_codes(jax_dir):
    from skyfall_core.eval.dsm import DFC_CLASSES
    from skyfall_core.geo.dsm import find_class_raster, read_class_raster

    truth_path = jax_dir / "truth/JAX_068_DSM.tif"
    g = read_dsm(truth_path, origin_txt=jax_dir / "truth/JAX_068_DSM.txt", epsg=32617)
    cls = read_class_raster(find_class_raster(truth_path), g)
    assert set(np.unique(cls).tolist()) <= set(DFC_CLASSES)
    assert (cls == 6).mean() > 0.2  # a built-up block


def test_cli_eval_dsm_uses_the_class_raster_beside_the_truth(tmp_path, capsys):
    import json

    import rasterio

    from skyfall_core.cli import main

    shape = (80, 90)
    cls = _classes(shape)
    truth = DSMGrid(np.full(shape, 5.0, np.float32), from_origin(436000, 3358000, 0.5, 0.5), 32617)
    pred = truth.heights.copy()
    pred[cls == 9] += 40.0  # water is not scored
    pred[cls == 6] += 2.0
    (tmp_path / "job" / "stage1").mkdir(parents=True)
    write_dsm(tmp_path / "job" / "stage1" / "dsm.tif", DSMGrid(pred, truth.transform, 32617))
    write_dsm(tmp_path / "T_DSM.tif", truth)
    with rasterio.open(tmp_path / "T_CLS.tif", "w", driver="GTiff", width=90, height=80, count=1, dtype="uint8") as ds:
        ds.write(cls, 1)
    args = ["eval", "dsm", "--job", str(tmp_path / "job"), "--truth", str(tmp_path / "T_DSM.tif"), "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["truth_cls"].endswith("T_CLS.tif") and r["mae_buildings_m"] == pytest.approx(2.0, abs=1e-3)
    assert r["n_excluded_pixels"] == int(np.isin(cls, (9, 65)).sum())
    assert main(args + ["--truth-cls", "none"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["truth_cls"] is None and r["mae_buildings_m"] is None and r["mae_m"] > 5
