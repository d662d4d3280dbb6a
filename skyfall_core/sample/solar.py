"""Sun position from date, time and place: the NOAA Solar Calculator algorithm.

Reference: NOAA Global Monitoring Laboratory, *Solar Calculation Details* (the spreadsheet
algorithm after J. Meeus, *Astronomical Algorithms*): the Sun's apparent longitude, the obliquity
of the ecliptic, the declination and the equation of time from the Julian century. Accuracy about
0.01 degree for 1800-2100; no atmospheric refraction (geometric elevation, as RPC metadata use).

Conventions: UTC date-times; longitude east-positive and latitude in degrees; sun azimuth in
degrees clockwise from north (90 = east), elevation in degrees above the horizon.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

_J2000 = datetime(2000, 1, 1, 12, tzinfo=timezone.utc)


def _julian_century(when: datetime) -> float:
    return (when - _J2000).total_seconds() / 86400.0 / 36525.0


def _sun_terms(when: datetime) -> tuple[float, float]:
    """(declination in radians, equation of time in minutes) at a UTC date-time."""
    T = _julian_century(when)
    L0 = math.radians((280.46646 + T * (36000.76983 + 0.0003032 * T)) % 360.0)
    M = math.radians(357.52911 + T * (35999.05029 - 0.0001537 * T))
    e = 0.016708634 - T * (0.000042037 + 0.0000001267 * T)
    C = (math.sin(M) * (1.914602 - T * (0.004817 + 0.000014 * T)) + math.sin(2 * M) * (0.019993 - 0.000101 * T)
         + math.sin(3 * M) * 0.000289)
    omega = math.radians(125.04 - 1934.136 * T)
    lam = math.radians(math.degrees(L0) + C - 0.00569 - 0.00478 * math.sin(omega))
    eps0 = 23.0 + (26.0 + (21.448 - T * (46.815 + T * (0.00059 - T * 0.001813))) / 60.0) / 60.0
    eps = math.radians(eps0 + 0.00256 * math.cos(omega))
    decl = math.asin(math.sin(eps) * math.sin(lam))
    y = math.tan(eps / 2) ** 2
    eot = 4.0 * math.degrees(y * math.sin(2 * L0) - 2 * e * math.sin(M) + 4 * e * y * math.sin(M) * math.cos(2 * L0)
                             - 0.5 * y * y * math.sin(4 * L0) - 1.25 * e * e * math.sin(2 * M))
    return decl, eot


def equation_of_time_min(when: datetime) -> float:
    """Equation of time (minutes): apparent minus mean solar time."""
    return _sun_terms(when)[1]


def declination_rad(when: datetime) -> float:
    """Solar declination (radians)."""
    return _sun_terms(when)[0]


def sun_position(when: datetime, lon: float, lat: float) -> tuple[float, float]:
    """Sun (elevation, azimuth) in degrees at a UTC date-time and place (no refraction)."""
    if when.tzinfo is None or when.utcoffset() != timedelta(0):
        raise ValueError(f"sun_position needs a UTC date-time, got {when!r}")
    decl, eot = _sun_terms(when)
    true_solar_min = when.hour * 60.0 + when.minute + when.second / 60.0 + eot + 4.0 * lon
    hour_angle = math.radians(true_solar_min / 4.0 - 180.0)
    phi = math.radians(lat)
    cos_zen = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour_angle)
    elevation = 90.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zen))))
    azimuth = math.degrees(math.atan2(math.sin(hour_angle),
                                      math.cos(hour_angle) * math.sin(phi) - math.tan(decl) * math.cos(phi)))
    return elevation, (azimuth + 180.0) % 360.0


def utc_for_local_solar_time(day: date, solar_hours: float, lon: float) -> datetime:
    """The UTC date-time (whole seconds) at which the apparent local solar time at ``lon`` is
    ``solar_hours`` (e.g. 10.5 = 10:30) on ``day``."""
    when = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
    for _ in range(3):  # the equation of time depends (weakly) on the time of day
        utc_min = solar_hours * 60.0 - equation_of_time_min(when) - 4.0 * lon
        when = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(minutes=utc_min)
    return when.replace(microsecond=0) + timedelta(seconds=round(when.microsecond / 1e6))
