"""Cameras: RPC -> local pinhole fits, bias correction between views, pseudo-camera orbits.

All in the job's local ENU frame (metres, z up), cameras in the OpenCV convention with integer
pixel centres (see :mod:`skyfall_core.cameras.pinhole`). Heavy dependencies (OpenCV, torch)
load only when bias correction runs.
"""

from skyfall_core.cameras.bias import (
                                       AffineCorrectedRPC,
                                       BiasResult,
                                       Tracks,
                                       adjust_tracks,
                                       compare_with_reference,
                                       correct_bias,
)
from skyfall_core.cameras.orbits import lookat_grid, orbit_cameras
from skyfall_core.cameras.pinhole import PinholeCamera, PinholeFit, fit_pinhole

__all__ = ["AffineCorrectedRPC", "BiasResult", "PinholeCamera", "PinholeFit", "Tracks", "adjust_tracks",
           "compare_with_reference", "correct_bias", "fit_pinhole", "lookat_grid", "orbit_cameras"]
