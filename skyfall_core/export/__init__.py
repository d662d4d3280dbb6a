"""Standard GIS exports of a job (issue 16): DSM COG + hillshade, LAS/LAZ, 3D Tiles, SPZ.

`write_gis_outputs(final_dir, model, frame, dsm_grid)` writes them all into a job's `final/`.
"""

from skyfall_core.export.outputs import GIS_FILES, write_gis_outputs

__all__ = ["GIS_FILES", "write_gis_outputs"]
