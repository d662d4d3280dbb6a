"""Solar position from date, time and place (the NOAA solar calculator, after Meeus).

Accuracy: about 0.01 degree in elevation and azimuth for dates 1950-2050 (the NOAA calculator's
own claim is "within a minute of arc" for |latitude| < 72 degrees), far inside the ~0.1 degree
that shadow directions need. Angles are in degrees; the azimuth is measured clockwise from
true north (90 = east), the elevation above the horizon. Times are UTC.

Reference: NOAA ESRL Global Monitoring Laboratory, "General Solar Position Calculations" and the
NOAA solar calculator spreadsheet; J. Meeus, "Astronomical Algorithms" (1991), ch. 25.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np

_J2000 = 2451545.0  # Julian day of 2000-01-01 12:00 TT (UTC here: the 69 s difference is 0.0003 deg)


def julian_day(when: datetime) -> float:
    """Julian day of a UTC datetime (a naive datetime is taken as UTC)."""
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    days = (when - datetime(2000, 1, 1, 12)).total_seconds() / 86400.0
    return _J2000 + days


def _sun_terms(T: float) -> tuple[float, float]:
    """(declination in radians, equation of time in minutes) at T Julian centuries since J2000."""
    # Sun's ecliptic longitude and the obliquity (degrees)
    mean_long = (280.46646 + T * (36000.76983 + T * 0.0003032)) % 360.0
    mean_anom = 357.52911 + T * (35999.05029 - 0.0001537 * T)
    ecc = 0.016708634 - T * (0.000042037 + 0.0000001267 * T)
    M = np.radians(mean_anom)
    centre = (np.sin(M) * (1.914602 - T * (0.004817 + 0.000014 * T))
              + np.sin(2 * M) * (0.019993 - 0.000101 * T) + np.sin(3 * M) * 0.000289)
    omega = np.radians(125.04 - 1934.136 * T)
    app_long = np.radians(mean_long + centre - 0.00569 - 0.00478 * np.sin(omega))
    obliq0 = 23.0 + (26.0 + (21.448 - T * (46.815 + T * (0.00059 - T * 0.001813))) / 60.0) / 60.0
    obliq = np.radians(obliq0 + 0.00256 * np.cos(omega))

    decl = np.arcsin(np.sin(obliq) * np.sin(app_long))  # radians
    y = np.tan(obliq / 2.0) ** 2
    L0 = np.radians(mean_long)
    eq_time_min = 4.0 * np.degrees(
        y * np.sin(2 * L0) - 2 * ecc * np.sin(M) + 4 * ecc * y * np.sin(M) * np.cos(2 * L0)
        - 0.5 * y * y * np.sin(4 * L0) - 1.25 * ecc * ecc * np.sin(2 * M))

    return float(decl), float(eq_time_min)


def solar_position(when: datetime, lon, lat, *, refraction: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Sun (elevation, azimuth) in degrees seen from (lon, lat) at UTC time ``when``.

    ``lon``/``lat`` are WGS84 degrees (east and north positive), scalars or arrays (broadcast).
    The azimuth is clockwise from true north in [0, 360). With ``refraction`` the elevation is
    the apparent one (NOAA's approximate atmospheric refraction added); without, geometric.
    """
    lon, lat = np.broadcast_arrays(np.asarray(lon, float), np.asarray(lat, float))
    T = (julian_day(when) - _J2000) / 36525.0  # Julian centuries since J2000

    decl, eq_time_min = _sun_terms(T)

    utc = when.astimezone(timezone.utc) if when.tzinfo is not None else when
    minutes = utc.hour * 60.0 + utc.minute + (utc.second + utc.microsecond * 1e-6) / 60.0
    true_solar_min = (minutes + eq_time_min + 4.0 * lon) % 1440.0
    hour_angle = np.radians(true_solar_min / 4.0 - 180.0)  # 0 at local solar noon, + afternoon

    phi = np.radians(lat)
    cos_zen = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)
    elevation = 90.0 - np.degrees(np.arccos(np.clip(cos_zen, -1.0, 1.0)))
    # Azimuth from south (west positive), turned into clockwise from north.
    az_south = np.arctan2(np.sin(hour_angle),
                          np.cos(hour_angle) * np.sin(phi) - np.tan(decl) * np.cos(phi))
    azimuth = (np.degrees(az_south) + 180.0) % 360.0
    if refraction:
        elevation = elevation + _refraction_deg(elevation)
    return elevation, azimuth


def _refraction_deg(elevation: np.ndarray) -> np.ndarray:
    """NOAA's approximate atmospheric refraction (degrees) at a geometric elevation (degrees)."""
    e = np.asarray(elevation, float)
    te = np.tan(np.radians(np.clip(e, -0.575, 89.9)))
    arcsec = np.where(
        e > 85.0, 0.0,
        np.where(e > 5.0, 58.1 / te - 0.07 / te ** 3 + 0.000086 / te ** 5,
                 np.where(e > -0.575,
                          1735.0 + e * (-518.2 + e * (103.4 + e * (-12.79 + e * 0.711))),
                          -20.772 / te)))
    return arcsec / 3600.0


def declination_rad(when: datetime) -> float:
    """Solar declination (radians) at a UTC date-time."""
    return _sun_terms((julian_day(when) - _J2000) / 36525.0)[0]


def equation_of_time_min(when: datetime) -> float:
    """Equation of time (minutes): apparent minus mean solar time."""
    return _sun_terms((julian_day(when) - _J2000) / 36525.0)[1]


def sun_position(when: datetime, lon: float, lat: float) -> tuple[float, float]:
    """Sun (elevation, azimuth) in degrees, as floats, at an aware UTC date-time (no refraction)."""
    if when.tzinfo is None or when.utcoffset() != timedelta(0):
        raise ValueError(f"sun_position needs a UTC date-time, got {when!r}")
    elevation, azimuth = solar_position(when, lon, lat)
    return float(elevation), float(azimuth)


def utc_for_local_solar_time(day: date, solar_hours: float, lon: float) -> datetime:
    """The UTC date-time (whole seconds) at which the apparent local solar time at ``lon`` is
    ``solar_hours`` (e.g. 10.5 = 10:30) on ``day``."""
    when = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc)
    for _ in range(3):  # the equation of time depends (weakly) on the time of day
        utc_min = solar_hours * 60.0 - equation_of_time_min(when) - 4.0 * lon
        when = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(minutes=utc_min)
    return when.replace(microsecond=0) + timedelta(seconds=round(when.microsecond / 1e6))
