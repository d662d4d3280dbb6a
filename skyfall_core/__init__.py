"""Skyfall Studio core: satellite scenes -> cameras -> Gaussian splats (Skyfall-GS).

Nothing heavy is imported here; sub-packages load their dependencies on use.
"""

__version__ = "0.1.0"
