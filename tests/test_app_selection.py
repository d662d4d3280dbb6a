"""Auto-selection of a diverse set of views, and the judgement of a chosen set."""

import numpy as np
import pytest

from skyfall_core.ui.selection import (
    ViewCandidate,
    angle_between_deg,
    azimuth_spread,
    circular_mean_deg,
    judge_selection,
    select_diverse,
    view_vectors,
)


def test_view_vectors_are_unit_and_point_to_the_satellite():
    v = view_vectors([0, 90, 180], [0, 30, 60])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    np.testing.assert_allclose(v[0], [0, 0, 1], atol=1e-12)  # nadir
    np.testing.assert_allclose(v[1], [0.5, 0, np.sqrt(3) / 2], atol=1e-12)  # east, 30 deg off
    assert angle_between_deg(v[0], v[2]) == pytest.approx(60.0)


@pytest.mark.parametrize("az, spread", [([10, 20, 30], 20), ([350, 10], 20), ([0, 90, 180, 270], 270),
                                        ([5], 0), ([0, 120, 240], 240)])
def test_azimuth_spread_is_circular(az, spread):
    assert azimuth_spread(az) == pytest.approx(spread)


def test_circular_mean_wraps():
    mean = circular_mean_deg([350, 10])
    assert mean == pytest.approx(0.0, abs=1e-9) or mean == pytest.approx(360.0)


def _cands():
    # a cluster of near-identical views from the east, plus one view each from N, S, W, and bad ones
    c = [ViewCandidate(f"east{i}", 90 + i, 20 + 0.1 * i, 1.0) for i in range(5)]
    c += [ViewCandidate("north", 0, 25, 1.0), ViewCandidate("south", 180, 22, 1.0), ViewCandidate("west", 270, 18, 1.0),
          ViewCandidate("nadir", 45, 3, 1.0),
          ViewCandidate("too_oblique", 200, 50, 1.0), ViewCandidate("partial", 300, 10, 0.6),
          ViewCandidate("broken", 120, 10, 1.0, ok=False), ViewCandidate("no_angles", None, None, 1.0)]
    return c


def test_select_diverse_starts_at_nadir_and_spreads_azimuths():
    ids = select_diverse(_cands(), 5, max_off_nadir=35, min_coverage=0.95)
    assert ids[0] == "nadir"
    assert set(ids) == {"nadir", "north", "south", "west"} | {ids[-1]} and sum(i.startswith("east") for i in ids) == 1
    assert not {"too_oblique", "partial", "broken", "no_angles"} & set(ids)


def test_select_diverse_beats_the_clustered_choice():
    cands = _cands()
    ids = select_diverse(cands, 4, 35, 0.95)
    by = {c.id: c for c in cands}
    chosen = [by[i] for i in ids]
    clustered = [by["nadir"]] + [by[f"east{i}"] for i in range(3)]
    assert azimuth_spread([c.view_azimuth for c in chosen]) > azimuth_spread([c.view_azimuth for c in clustered]) + 90
    assert len(select_diverse(cands, 50, 35, 0.95)) == 9  # all eligible, no duplicates
    assert select_diverse(cands, 0, 35, 0.95) == []
    assert select_diverse(cands, 3, 35, 0.95) == select_diverse(list(reversed(cands)), 3, 35, 0.95)  # deterministic


def test_judge_selection_errors_and_warnings():
    c = {x.id: x for x in _cands()}
    bad = judge_selection([c["east0"], c["east1"]], min_views=3, min_coverage=0.95)
    assert bad.errors and "at least 3" in bad.errors[0]
    assert any("azimuth" in w for w in bad.warnings) and any("parallax" in w for w in bad.warnings)
    partial = judge_selection([c["north"], c["south"], c["partial"]], 3, 0.95)
    assert any("partial" in e for e in partial.errors)
    good = judge_selection([c[i] for i in ("nadir", "north", "south", "west", "east0")], 3, 0.95)
    assert not good.errors and not good.warnings
    assert good.azimuth_spread_deg == pytest.approx(270, abs=1) and good.max_angle_deg > 40
