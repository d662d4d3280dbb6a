"""Typed, user-facing errors.

Every error names what went wrong, the file (or key) it concerns, and the fix, so that the CLI
and the app can print it as is, without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class SkyfallError(Exception):
    """Base class: a failure the user can act on."""

    def __init__(self, problem: str, *, path: str | Path | None = None, fix: str | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.problem if self.path is None else f"{self.path}: {self.problem}"]
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        return " ".join(parts)


class ConfigError(SkyfallError):
    """A key of config.toml is unknown or holds a bad value."""


class MissingRPCError(SkyfallError):
    """A raster carries no RPC camera model, in its tags or in a sidecar."""


class CorruptRasterError(SkyfallError):
    """A raster cannot be opened or read (truncated, not a raster, bad tags)."""


class RPCInversionError(SkyfallError):
    """The iterative RPC localisation did not converge."""


class AOIError(SkyfallError):
    """The area of interest is invalid, too large, too small, or outside the scenes."""


class TooFewViewsError(SkyfallError):
    """Fewer usable views than a reconstruction needs."""


class MixedUnitsError(SkyfallError):
    """Inputs mix incompatible units or data types (e.g. reflectance floats with 8-bit DNs)."""


class CameraFitError(SkyfallError):
    """A pinhole camera could not be fitted to an RPC within tolerance."""


class WeightsNotFoundError(SkyfallError):
    """Model weights are not available locally and cannot be downloaded."""
