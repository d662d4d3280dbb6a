"""`write_gis_outputs`: every standard GIS/3D export of a finished job into its `final/`."""

from __future__ import annotations

from pathlib import Path

from skyfall_core.geo.dsm import DSMGrid
from skyfall_core.geo.frames import LocalFrame
from skyfall_core.splat.model import GaussianModel

GIS_FILES = {
    "dsm_cog": "dsm.cog.tif",
    "hillshade": "dsm_hillshade.png",
    "laz": "splat_points.laz",
    "tileset": "3dtiles/tileset.json",
    "glb": "3dtiles/splats.glb",
    "spz": "scene.spz",
}


def write_gis_outputs(final_dir: str | Path, model: GaussianModel, frame: LocalFrame,
                      dsm_grid: DSMGrid | None) -> dict[str, str]:
    """Write the standard formats into `final_dir`; returns {name: path relative to final_dir}.

    Inputs:
      final_dir  the job's `final/` folder (created if missing).
      model      the trained GaussianModel (means in the job's local ENU frame, metres).
      frame      the job's LocalFrame (`scene.frame`): ENU origin lon/lat/h0 (h0 ellipsoidal).
      dsm_grid   the DSMGrid that `write_dsm` writes to dsm.tif (heights above the WGS84
                 ellipsoid, NaN = no data, UTM transform + EPSG), e.g. `render_dsm(trainer, scene)`;
                 None skips the two DSM files.
    Files (names in GIS_FILES): dsm.cog.tif (COG), dsm_hillshade.png (RGBA, same grid as the
    DSM), splat_points.laz (LAS 1.4 / LAZ, UTM + ellipsoidal heights, opacity >= 0.05),
    3dtiles/tileset.json + 3dtiles/splats.glb (3D Tiles 1.1, KHR_gaussian_splatting) and
    scene.spz (SPZ v3, RUB axes, for Spark). Each file is written atomically.
    """
    from skyfall_core.export.cog import write_dsm_cog, write_hillshade_png
    from skyfall_core.export.las import write_las
    from skyfall_core.export.spz import write_spz
    from skyfall_core.export.tiles3d import write_3dtiles

    final_dir = Path(final_dir)
    final_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    if dsm_grid is not None:
        write_dsm_cog(final_dir / GIS_FILES["dsm_cog"], dsm_grid)
        write_hillshade_png(final_dir / GIS_FILES["hillshade"], dsm_grid)
        written.update(dsm_cog=GIS_FILES["dsm_cog"], hillshade=GIS_FILES["hillshade"])
    write_las(final_dir / GIS_FILES["laz"], model, frame)
    write_3dtiles(final_dir / Path(GIS_FILES["tileset"]).parent, model, frame)
    write_spz(final_dir / GIS_FILES["spz"], model)
    written.update(laz=GIS_FILES["laz"], tileset=GIS_FILES["tileset"], glb=GIS_FILES["glb"],
                   spz=GIS_FILES["spz"])
    return written
