"""Choosing a diverse set of satellite views for a reconstruction, and judging a chosen set.

A view is the direction from the ground to the satellite: azimuth (degrees clockwise from
north) and zenith ("off-nadir" in the catalog: degrees from the vertical). Views that look from
different azimuths and zeniths constrain the 3D shape; several near-identical views (one pass,
or a repeat orbit) add little. The auto-selection is a greedy farthest-point sampling on the
unit sphere of view directions, started from the most nadir view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ViewCandidate:
    id: str
    view_azimuth: float | None  # degrees clockwise from north, satellite seen from the ground
    off_nadir: float | None  # view zenith at the ground, degrees
    coverage: float  # fraction of the AOI the scene covers, 0..1
    ok: bool = True  # the scene is readable and has an RPC


def view_vectors(azimuth_deg: Sequence[float], zenith_deg: Sequence[float]) -> np.ndarray:
    """Unit vectors [N, 3] (east, north, up) from the ground towards each satellite."""
    az = np.radians(np.asarray(azimuth_deg, float))
    ze = np.radians(np.asarray(zenith_deg, float))
    return np.stack([np.sin(ze) * np.sin(az), np.sin(ze) * np.cos(az), np.cos(ze)], axis=-1)


def angle_between_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles (degrees) between unit vectors a [..., 3] and b [..., 3]."""
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def azimuth_spread(azimuths_deg: Sequence[float]) -> float:
    """The circular range (degrees, 0..360) the azimuths span: 360 minus the largest gap."""
    a = np.sort(np.mod(np.asarray(azimuths_deg, float), 360.0))
    if a.size < 2:
        return 0.0
    gaps = np.diff(np.concatenate([a, a[:1] + 360.0]))
    return float(360.0 - gaps.max())


def eligible(cands: Sequence[ViewCandidate], max_off_nadir: float, min_coverage: float) -> list[ViewCandidate]:
    """Candidates that are readable, have view angles, cover enough and are not too oblique."""
    return [c for c in cands if c.ok and c.view_azimuth is not None and c.off_nadir is not None
            and c.coverage >= min_coverage and c.off_nadir <= max_off_nadir]


def select_diverse(cands: Sequence[ViewCandidate], n: int, max_off_nadir: float = 35.0,
                   min_coverage: float = 0.95) -> list[str]:
    """Ids of up to ``n`` eligible views (see :func:`eligible`) spread as widely as possible.

    Greedy farthest-point sampling on view directions: start from the most nadir view (ties:
    higher coverage), then repeatedly add the view whose smallest angle to the chosen ones is
    largest (ties: lower off-nadir). Deterministic; returns ids in the order chosen.
    """
    pool = eligible(cands, max_off_nadir, min_coverage)
    if n <= 0 or not pool:
        return []
    vec = view_vectors([c.view_azimuth for c in pool], [c.off_nadir for c in pool])  # [N, 3]
    first = min(range(len(pool)), key=lambda i: (pool[i].off_nadir, -pool[i].coverage, pool[i].id))
    chosen = [first]
    min_angle = angle_between_deg(vec, vec[first])  # [N]
    while len(chosen) < min(n, len(pool)):
        score = np.where(np.isin(np.arange(len(pool)), chosen), -1.0, min_angle)
        best = max(range(len(pool)), key=lambda i: (round(float(score[i]), 6), -pool[i].off_nadir, pool[i].id))
        chosen.append(best)
        min_angle = np.minimum(min_angle, angle_between_deg(vec, vec[best]))
    return [pool[i].id for i in chosen]


@dataclass(frozen=True)
class SetQuality:
    views: int
    azimuth_spread_deg: float  # see azimuth_spread
    max_angle_deg: float  # largest angle between two view directions
    warnings: tuple[str, ...]
    errors: tuple[str, ...]


def judge_selection(chosen: Sequence[ViewCandidate], min_views: int, min_coverage: float,
                    good_views: int = 5, min_spread_deg: float = 90.0, min_angle_deg: float = 15.0) -> SetQuality:
    """Errors (cannot run) and warnings (will run, likely poorly) for a chosen set of views."""
    errors, warnings = [], []
    if len(chosen) < min_views:
        errors.append(f"{len(chosen)} scene(s) chosen; a reconstruction needs at least {min_views}.")
    low = [c.id for c in chosen if c.coverage < min_coverage]
    if low:
        errors.append(f"{', '.join(low)} cover(s) less than {min_coverage:.0%} of the AOI: drop them or "
                      "redraw the AOI inside their footprints.")
    with_angles = [c for c in chosen if c.view_azimuth is not None and c.off_nadir is not None]
    spread = azimuth_spread([c.view_azimuth for c in with_angles])
    max_angle = 0.0
    if len(with_angles) >= 2:
        v = view_vectors([c.view_azimuth for c in with_angles], [c.off_nadir for c in with_angles])
        max_angle = float(angle_between_deg(v[:, None, :], v[None, :, :]).max())
    if min_views <= len(chosen) < good_views:
        warnings.append(f"Only {len(chosen)} views: {good_views} or more from different directions give "
                        "clearly better geometry.")
    if len(with_angles) >= 2 and spread < min_spread_deg:
        warnings.append(f"The views span only {spread:.0f}° of azimuth: add scenes seen from other sides "
                        f"(aim for {min_spread_deg:.0f}° or more).")
    if len(with_angles) >= 2 and max_angle < min_angle_deg:
        warnings.append(f"The views differ by at most {max_angle:.1f}°: too little parallax for heights; "
                        "add more oblique scenes.")
    return SetQuality(len(chosen), spread, max_angle, tuple(warnings), tuple(errors))


def circular_mean_deg(angles: Sequence[float]) -> float:
    """Mean direction (degrees, 0..360) of angles given in degrees."""
    a = np.radians(np.asarray(angles, float))
    return float(math.degrees(math.atan2(np.sin(a).mean(), np.cos(a).mean())) % 360.0)
