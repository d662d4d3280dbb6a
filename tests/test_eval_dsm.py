import numpy as np
import pytest
from rasterio.transform import from_origin

from skyfall_core.errors import CorruptRasterError
from skyfall_core.eval.dsm import DSMGrid, compare_dsm, read_dsm, write_dsm


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
