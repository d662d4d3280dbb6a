"""Standard GIS exports of a job (issue 16): DSM COG + hillshade, LAS/LAZ, 3D Tiles, SPZ.

`write_gis_outputs` (in `skyfall_core.export.outputs`) writes them all into a job's `final/`.
"""
