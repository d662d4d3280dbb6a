"""Imagery as delivered: DIMAP RPC XML (V1/V2 layouts), JPEG 2000, ``.rpc`` sidecars, PNG + sidecar,
Maxar ``.TIL`` mosaics, a truthful ``rpc_source``, and errors that name the file and the fix.

Every scene here is a copy of a bundled sample view (its pixels and its RPC): the RPC written in
each format and read back must project like the original GeoTIFF tags.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from skyfall_core.errors import CorruptRasterError, MissingRPCError, TooFewViewsError
from skyfall_core.geo.catalog import find_scene_files, read_scene, require_scene_files, scan_scenes
from skyfall_core.geo.imageio import read_window
from skyfall_core.geo.rpc import RPCModel, read_dimap_rpc, read_rpc

REPO = Path(__file__).resolve().parents[1]
SAMPLE_SCENE = REPO / "sample_aoi" / "scenes" / "01_SFS2_20230118T172621.tif"
EXTENSIONS = [".tif", ".tiff", ".ntf", ".nitf", ".jp2", ".til", ".png", ".jpg", ".jpeg"]  # the config's
CROP = 96  # pixels a side of the copies (the RPC is shifted to the crop)

pytestmark = pytest.mark.skipif(not SAMPLE_SCENE.is_file(), reason=f"bundled sample not found ({SAMPLE_SCENE})")


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, RPCModel]:
    """A 96 x 96 crop of a sample view (uint8 [3, H, W]) and the RPC of that crop."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(SAMPLE_SCENE) as ds:
        data = ds.read(window=Window(200, 300, CROP, CROP))
    return data, read_rpc(SAMPLE_SCENE).shifted(300, 200)


def ground_points(rpc: RPCModel, n: int = 200, seed: int = 0):
    """Ground points (lon, lat, h) seen inside the crop, over the RPC's height range."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(*rpc.height_range, n)
    lon, lat = rpc.localization(rng.uniform(-0.5, CROP - 0.5, n), rng.uniform(-0.5, CROP - 0.5, n), h)
    return lon, lat, h


def worst_px(a: RPCModel, b: RPCModel) -> float:
    lon, lat, h = ground_points(a)
    return float(np.abs(np.stack(a.projection(lon, lat, h)) - np.stack(b.projection(lon, lat, h))).max())


def write_image(path: Path, data: np.ndarray, rpc: RPCModel | None = None) -> Path:
    """``data`` in the format of ``path``'s extension (JPEG 2000 lossless), with RPC tags if given."""
    import rasterio

    driver, opts = {".tif": ("GTiff", {}), ".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95}),
                    ".jp2": ("JP2OpenJPEG", {"reversible": "YES", "quality": 100})}[path.suffix.lower()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "not georeferenced" while writing a raw image
        with rasterio.open(path, "w", driver=driver, count=data.shape[0], height=data.shape[1],
                           width=data.shape[2], dtype=data.dtype, **opts) as ds:
            ds.write(data)
            if rpc is not None:
                ds.update_tags(ns="RPC", **rpc.to_gdal())
    return path


# ------------------------------------------------------------------- writers of the vendors' layouts
_COEFF_TAGS = (("SAMP_NUM_COEFF", "col_num"), ("SAMP_DEN_COEFF", "col_den"),
               ("LINE_NUM_COEFF", "row_num"), ("LINE_DEN_COEFF", "row_den"))


def _coeffs(rpc: RPCModel, names=None) -> str:
    out = []
    for tag, attr in _COEFF_TAGS:
        tag = (names or {}).get(tag, tag)
        out += [f"        <{tag}_{i + 1}>{float(v)!r}</{tag}_{i + 1}>" for i, v in enumerate(getattr(rpc, attr))]
    return "\n".join(out)


def _validity_scalars(rpc: RPCModel, first_px: float) -> str:
    return "\n".join(f"        <{tag}>{float(value)!r}</{tag}>" for tag, value in (
        ("LONG_SCALE", rpc.lon_scale), ("LONG_OFF", rpc.lon_offset), ("LAT_SCALE", rpc.lat_scale),
        ("LAT_OFF", rpc.lat_offset), ("HEIGHT_SCALE", rpc.alt_scale), ("HEIGHT_OFF", rpc.alt_offset),
        ("SAMP_SCALE", rpc.col_scale), ("SAMP_OFF", rpc.col_offset + first_px),
        ("LINE_SCALE", rpc.row_scale), ("LINE_OFF", rpc.row_offset + first_px)))


def dimap_v1(rpc: RPCModel, width: int, height: int) -> str:
    """A Pléiades 1A/1B / SPOT 6/7 ``RPC_*.XML`` (DIMAP V2 document, ``Inverse_Model`` layout).

    Image coordinates 1-based, as in those files. The direct (image to ground) model is not used
    by GDAL or Skyfall; the test writes the inverse model's numbers in its place.
    """
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<Dimap_Document xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" version="2.0">
  <Metadata_Identification>
    <METADATA_FORMAT version="2.0">DIMAP</METADATA_FORMAT>
    <METADATA_PROFILE>PHR_SENSOR</METADATA_PROFILE>
    <METADATA_SUBPROFILE>RPC</METADATA_SUBPROFILE>
    <METADATA_LANGUAGE>en</METADATA_LANGUAGE>
  </Metadata_Identification>
  <Rational_Function_Model>
    <Resource_Reference>
      <RESOURCE_TITLE version="2.1">NITF</RESOURCE_TITLE>
      <RESOURCE_ID>RPC00B</RESOURCE_ID>
    </Resource_Reference>
    <Global_RFM>
      <Direct_Model>
{_coeffs(rpc)}
        <ERR_BIAS_X>1.0E-8</ERR_BIAS_X>
        <ERR_BIAS_Y>1.0E-8</ERR_BIAS_Y>
      </Direct_Model>
      <Inverse_Model>
{_coeffs(rpc)}
        <ERR_BIAS_ROW>-1.4E-5</ERR_BIAS_ROW>
        <ERR_BIAS_COL>7.7E-4</ERR_BIAS_COL>
      </Inverse_Model>
      <RFM_Validity>
        <Direct_Model_Validity_Domain>
          <FIRST_ROW>1</FIRST_ROW>
          <FIRST_COL>1</FIRST_COL>
          <LAST_ROW>{height}</LAST_ROW>
          <LAST_COL>{width}</LAST_COL>
        </Direct_Model_Validity_Domain>
        <Inverse_Model_Validity_Domain>
          <FIRST_LON>{float(rpc.lon_offset - rpc.lon_scale)!r}</FIRST_LON>
          <FIRST_LAT>{float(rpc.lat_offset - rpc.lat_scale)!r}</FIRST_LAT>
          <LAST_LON>{float(rpc.lon_offset + rpc.lon_scale)!r}</LAST_LON>
          <LAST_LAT>{float(rpc.lat_offset + rpc.lat_scale)!r}</LAST_LAT>
        </Inverse_Model_Validity_Domain>
{_validity_scalars(rpc, 1.0)}
      </RFM_Validity>
    </Global_RFM>
  </Rational_Function_Model>
</Dimap_Document>
"""


def dimap_v2(rpc: RPCModel, width: int, height: int) -> str:
    """A Pléiades Neo ``RPC_*.XML`` (DIMAP V3 document, ``GroundtoImage_Values`` layout), 0-based pixels."""
    lonlat = {"SAMP_NUM_COEFF": "LON_NUM_COEFF", "SAMP_DEN_COEFF": "LON_DEN_COEFF",
              "LINE_NUM_COEFF": "LAT_NUM_COEFF", "LINE_DEN_COEFF": "LAT_DEN_COEFF"}
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Dimap_Document version="3.0">
  <Metadata_Identification>
    <METADATA_FORMAT version="3.0">DIMAP</METADATA_FORMAT>
    <METADATA_PROFILE>PNEO_SENSOR</METADATA_PROFILE>
    <METADATA_SUBPROFILE>RPC</METADATA_SUBPROFILE>
    <METADATA_LANGUAGE>en</METADATA_LANGUAGE>
  </Metadata_Identification>
  <Rational_Function_Model>
    <Global_RFM>
      <ImagetoGround_Values>
{_coeffs(rpc, lonlat)}
        <ERR_BIAS_LON>1.0E-8</ERR_BIAS_LON>
        <ERR_BIAS_LAT>1.0E-8</ERR_BIAS_LAT>
      </ImagetoGround_Values>
      <GroundtoImage_Values>
{_coeffs(rpc)}
        <ERR_BIAS_ROW>0.1</ERR_BIAS_ROW>
        <ERR_BIAS_COL>0.1</ERR_BIAS_COL>
      </GroundtoImage_Values>
      <RFM_Validity>
        <ImagetoGround_Validity_Domain>
          <FIRST_ROW>0</FIRST_ROW>
          <FIRST_COL>0</FIRST_COL>
          <LAST_ROW>{height - 1}</LAST_ROW>
          <LAST_COL>{width - 1}</LAST_COL>
        </ImagetoGround_Validity_Domain>
        <GroundtoImage_Validity_Domain>
          <FIRST_LON>{float(rpc.lon_offset - rpc.lon_scale)!r}</FIRST_LON>
          <FIRST_LAT>{float(rpc.lat_offset - rpc.lat_scale)!r}</FIRST_LAT>
          <LAST_LON>{float(rpc.lon_offset + rpc.lon_scale)!r}</LAST_LON>
          <LAST_LAT>{float(rpc.lat_offset + rpc.lat_scale)!r}</LAST_LAT>
        </GroundtoImage_Validity_Domain>
{_validity_scalars(rpc, 0.0)}
      </RFM_Validity>
    </Global_RFM>
  </Rational_Function_Model>
</Dimap_Document>
"""


def write_rpc_keyvalue(rpc: RPCModel, path: Path) -> Path:
    """A ``KEY: value`` RPC text (the ``.rpc`` / ``_RPC.TXT`` layout)."""
    units = {"row_offset": "pixels", "col_offset": "pixels", "row_scale": "pixels", "col_scale": "pixels",
             "lat_offset": "degrees", "lon_offset": "degrees", "lat_scale": "degrees", "lon_scale": "degrees",
             "alt_offset": "meters", "alt_scale": "meters"}
    md = rpc.to_gdal()
    lines = []
    for key in ("LINE_OFF", "SAMP_OFF", "LAT_OFF", "LONG_OFF", "HEIGHT_OFF",
                "LINE_SCALE", "SAMP_SCALE", "LAT_SCALE", "LONG_SCALE", "HEIGHT_SCALE"):
        attr = {"LINE_OFF": "row_offset", "SAMP_OFF": "col_offset", "LAT_OFF": "lat_offset",
                "LONG_OFF": "lon_offset", "HEIGHT_OFF": "alt_offset", "LINE_SCALE": "row_scale",
                "SAMP_SCALE": "col_scale", "LAT_SCALE": "lat_scale", "LONG_SCALE": "lon_scale",
                "HEIGHT_SCALE": "alt_scale"}[key]
        lines.append(f"{key}: {float(md[key]):+.12f} {units[attr]}")
    for key in ("LINE_NUM_COEFF", "LINE_DEN_COEFF", "SAMP_NUM_COEFF", "SAMP_DEN_COEFF"):
        lines += [f"{key}_{i + 1}: {float(v):+.15E}" for i, v in enumerate(md[key].split())]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_rpb(rpc: RPCModel, path: Path) -> Path:
    """A Maxar ``.RPB``."""
    md = rpc.to_gdal()
    names = {"LINE_OFF": "lineOffset", "SAMP_OFF": "sampOffset", "LAT_OFF": "latOffset",
             "LONG_OFF": "longOffset", "HEIGHT_OFF": "heightOffset", "LINE_SCALE": "lineScale",
             "SAMP_SCALE": "sampScale", "LAT_SCALE": "latScale", "LONG_SCALE": "longScale",
             "HEIGHT_SCALE": "heightScale"}
    lines = ['satId = "WV02";', 'bandId = "P";', 'SpecId = "RPC00B";', "BEGIN_GROUP = IMAGE",
             "\terrBias = 1.0;", "\terrRand = 0.1;"]
    lines += [f"\t{v} = {float(md[k]):+.15g};" for k, v in names.items()]
    for k, v in (("LINE_NUM_COEFF", "lineNumCoef"), ("LINE_DEN_COEFF", "lineDenCoef"),
                 ("SAMP_NUM_COEFF", "sampNumCoef"), ("SAMP_DEN_COEFF", "sampDenCoef")):
        lines.append(f"\t{v} = (\n" + ",\n".join(f"\t\t\t{float(c):+.15E}" for c in md[k].split()) + ");")
    lines += ["END_GROUP = IMAGE", "END;"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _gdal_md(path: Path) -> dict[str, str]:
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as ds:
            return ds.tags(ns="RPC")


def _has_driver(name: str) -> bool:
    import rasterio

    with rasterio.Env() as env:
        return name in env.drivers()


# ------------------------------------------------------------------------------------- DIMAP
@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_dimap_rpc_xml_alone_projects_like_the_tags(tmp_path, sample, layout):
    """DIMAP V1 (Inverse_Model, 1-based) and V2 (GroundtoImage_Values, Pléiades Neo, 0-based) RPC
    XML beside an image without RPC tags: read by GDAL (Pléiades naming) and by the fallback
    parser (any other naming), both project like the original RPC tags to 1e-3 px."""
    data, rpc = sample
    xml = (dimap_v1 if layout == "v1" else dimap_v2)(rpc, CROP, CROP)

    # 1. as delivered: IMG_<product>_R1C1.TIF + RPC_<product>.XML -> GDAL's Pléiades reader finds it
    product = "PHR1A_P_201202250025329_SEN_PRG_FC_5847-001" if layout == "v1" else "PNEO3_202212181621109_PAN_SEN"
    img = write_image(tmp_path / f"IMG_{product}_R1C1.TIF", data)
    (tmp_path / f"RPC_{product}.XML").write_text(xml)
    gdal_md = _gdal_md(img)
    assert gdal_md, "GDAL did not read the DIMAP RPC of a Pléiades-named image"
    by_gdal = RPCModel.from_gdal(gdal_md)
    by_hand = read_dimap_rpc(tmp_path / f"RPC_{product}.XML")
    assert worst_px(rpc, by_gdal) < 1e-3
    assert worst_px(rpc, by_hand) < 1e-3
    assert worst_px(by_gdal, by_hand) < 1e-6  # the fallback follows GDAL's pixel convention exactly
    scene = read_scene(img)
    assert scene.ok, scene.error
    assert scene.rpc_source == f"RPC_{product}.XML"
    assert worst_px(rpc, scene.rpc) < 1e-3

    # 2. renamed: scene.tif + RPC_scene.XML -> GDAL does not see it; the fallback parser reads it
    other = tmp_path / "renamed"
    other.mkdir()
    img2 = write_image(other / "scene.tif", data)
    (other / "RPC_scene.XML").write_text(xml)
    assert not _gdal_md(img2)
    scene2 = read_scene(img2)
    assert scene2.ok, scene2.error
    assert scene2.rpc_source == "RPC_scene.XML"
    assert worst_px(rpc, scene2.rpc) < 1e-3 and worst_px(rpc, read_rpc(img2)) < 1e-3


def test_dimap_namespaced_and_broken_files(tmp_path, sample):
    data, rpc = sample
    ns = dimap_v1(rpc, CROP, CROP).replace("<Dimap_Document ", '<Dimap_Document xmlns="http://example.org/dimap" ', 1)
    (tmp_path / "RPC_ns.XML").write_text(ns)
    assert worst_px(rpc, read_dimap_rpc(tmp_path / "RPC_ns.XML")) < 1e-3

    write_image(tmp_path / "cut.tif", data)
    (tmp_path / "RPC_cut.XML").write_text(dimap_v1(rpc, CROP, CROP)[:3000])  # a truncated download
    err = read_scene(tmp_path / "cut.tif").error
    assert "RPC_cut.XML" in err and "DIMAP" in err and "Fix:" in err

    write_image(tmp_path / "part.tif", data)
    (tmp_path / "RPC_part.XML").write_text(dimap_v1(rpc, CROP, CROP).replace("<LINE_OFF>", "<LINE_OFFSET>")
                                           .replace("</LINE_OFF>", "</LINE_OFFSET>"))
    with pytest.raises(MissingRPCError, match=r"RPC_part\.XML.*incomplete \(missing LINE_OFF\)"):
        read_rpc(tmp_path / "part.tif")

    write_image(tmp_path / "other.tif", data)
    (tmp_path / "RPC_other.XML").write_text("<Dimap_Document><Dataset_Identification/></Dimap_Document>")
    with pytest.raises(MissingRPCError, match=r"RPC_other\.XML: not a DIMAP RPC file") as info:
        read_rpc(tmp_path / "other.tif")
    assert "Inverse_Model" in info.value.fix


# ------------------------------------------------------------------------------ JPEG 2000, .rpc, PNG
@pytest.mark.skipif(not _has_driver("JP2OpenJPEG"), reason="this rasterio wheel has no JPEG 2000 (OpenJPEG) driver")
def test_jp2_scene_reads_like_the_geotiff(tmp_path, sample):
    data, rpc = sample
    tif = write_image(tmp_path / "IMG_PHR1B_P_201301011200000_SEN_1_R1C1.tif", data, rpc=rpc)
    folder = tmp_path / "jp2"
    folder.mkdir()
    jp2 = write_image(folder / "IMG_PHR1B_P_201301011200000_SEN_1_R1C1.JP2", data)
    (folder / "RPC_PHR1B_P_201301011200000_SEN_1.XML").write_text(dimap_v1(rpc, CROP, CROP))
    (folder / "PREVIEW_PHR1B_P_201301011200000_SEN_1.JPG").write_bytes(b"not a scene: no RPC")
    assert find_scene_files([folder], EXTENSIONS) == [jp2.resolve()]  # the quicklook is no scene
    [scene] = scan_scenes([folder], EXTENSIONS)
    assert scene.ok, scene.error
    assert scene.rpc_source == "RPC_PHR1B_P_201301011200000_SEN_1.XML" and (scene.width, scene.height) == (CROP, CROP)
    assert worst_px(rpc, scene.rpc) < 1e-3
    a, va = read_window(tif, 10, 20, 50, 40)
    b, vb = read_window(jp2, 10, 20, 50, 40)
    assert np.array_equal(va, vb) and np.array_equal(a, b)  # lossless JPEG 2000: the same view
    # an RPC inside the JPEG 2000 itself is reported as such
    inside = write_image(tmp_path / "tagged.jp2", data, rpc=rpc)
    s = read_scene(inside)
    assert s.ok and s.rpc_source == "JPEG 2000 metadata" and worst_px(rpc, s.rpc) < 1e-3


def test_rpc_keyvalue_sidecar(tmp_path, sample):
    data, rpc = sample
    img = write_image(tmp_path / "view.tif", data)
    write_rpc_keyvalue(rpc, tmp_path / "view.rpc")
    s = read_scene(img)
    assert s.ok, s.error
    assert s.rpc_source == "view.rpc" and worst_px(rpc, s.rpc) < 1e-3
    # '=' separators and lower-case keys are read too
    text = (tmp_path / "view.rpc").read_text().replace(": ", " = ").lower()
    (tmp_path / "view.rpc").write_text(text)
    assert worst_px(rpc, read_rpc(img)) < 1e-3
    # a broken value names the sidecar
    (tmp_path / "view.rpc").write_text(re.sub(r"(?m)^line_off = .*$", "line_off = unknown", text))
    err = read_scene(img).error
    assert "view.rpc" in err and "Fix:" in err


@pytest.mark.parametrize("suffix,sidecar", [(".png", "{stem}.rpc"), (".png", "{stem}_RPC.TXT"),
                                            (".jpg", "{stem}.RPB"), (".png", "RPC_{stem}.XML")])
def test_png_or_jpeg_with_a_sidecar_is_a_scene(tmp_path, sample, suffix, sidecar):
    data, rpc = sample
    img = write_image(tmp_path / f"view{suffix}", data)
    side = tmp_path / sidecar.format(stem="view")
    if side.suffix.lower() == ".xml":
        side.write_text(dimap_v1(rpc, CROP, CROP))
    elif side.suffix.lower() == ".rpb":
        write_rpb(rpc, side)
    else:
        write_rpc_keyvalue(rpc, side)
    assert not _gdal_md(img)  # GDAL reads no sidecar for PNG/JPEG: the hand-written readers do
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        [scene] = scan_scenes([tmp_path], EXTENSIONS)
        image, valid = read_window(img, 0, 0, CROP, CROP)
    assert not [w for w in caught if "NotGeoreferenced" in type(w.message).__name__]
    assert scene.ok, scene.error
    assert scene.rpc_source == side.name and worst_px(rpc, scene.rpc) < 1e-3
    assert valid.all() and image.shape == (CROP, CROP, 3)


# ----------------------------------------------------------------------------------- Maxar .TIL
def _write_til(folder: Path, data: np.ndarray, stem: str, imd: bool) -> Path:
    half_r, half_c = data.shape[1] // 2, data.shape[2] // 2
    tiles = []
    for r0, c0 in ((0, 0), (0, half_c), (half_r, 0), (half_r, half_c)):
        name = f"{stem.replace('-P1BS', f'-P1BS_R{r0 // half_r + 1}C{c0 // half_c + 1}')}.TIF"
        write_image(folder / name, data[:, r0:r0 + half_r, c0:c0 + half_c])
        tiles.append((name, r0, c0))
    lines = ['bandId = "P";', f"numTiles = {len(tiles)};", f"tileSizeX = {half_c};", f"tileSizeY = {half_r};",
             'tileUnits = "Pixels";', "tileOverlap = 0;"]
    for i, (name, r0, c0) in enumerate(tiles, 1):
        lines += [f"BEGIN_GROUP = TILE_{i}", f'\tfilename = "{name}";', f"\tULColOffset = {c0};",
                  f"\tULRowOffset = {r0};", f"\tLRColOffset = {c0 + half_c - 1};",
                  f"\tLRRowOffset = {r0 + half_r - 1};", f"END_GROUP = TILE_{i}"]
    (folder / f"{stem}.TIL").write_text("\n".join(lines + ["END;"]) + "\n")
    if imd:
        (folder / f"{stem}.IMD").write_text(
            f'version = "28.3";\nnumRows = {data.shape[1]};\nnumColumns = {data.shape[2]};\nbitsPerPixel = 8;\n'
            'BEGIN_GROUP = IMAGE_1\n\tsatId = "WV03";\n\tfirstLineTime = 2016-03-21T16:05:01.000000Z;\n'
            "\tmeanSunAz = 150.0;\n\tmeanSunEl = 50.0;\nEND_GROUP = IMAGE_1\nEND;\n")
    return folder / f"{stem}.TIL"


@pytest.mark.parametrize("imd", [True, False], ids=["gdal-til-driver", "vrt-of-the-tiles"])
def test_til_mosaic_is_one_scene(tmp_path, sample, imd):
    data, rpc = sample
    stem = "16MAR21160501-P1BS-0123456789_01_P001"
    til = _write_til(tmp_path, data, stem, imd=imd)
    write_rpb(rpc, tmp_path / f"{stem}.RPB")
    assert find_scene_files([tmp_path], EXTENSIONS) == [til.resolve()]  # the tiles are not scenes
    [scene] = scan_scenes([tmp_path], EXTENSIONS)
    assert scene.ok, scene.error
    assert (scene.width, scene.height) == (CROP, CROP) and scene.rpc_source == f"{stem}.RPB"
    assert worst_px(rpc, scene.rpc) < 1e-3
    if imd:
        assert scene.sensor == "WV03" and scene.sun_source == "metadata"
    ref = write_image(tmp_path.parent / f"{tmp_path.name}_ref.tif", data)
    a, _ = read_window(til, 20, 30, 60, 50)  # across the four tiles
    b, _ = read_window(ref, 20, 30, 60, 50)
    assert np.array_equal(a, b)


def test_til_with_a_missing_tile_names_it(tmp_path, sample):
    data, rpc = sample
    stem = "16MAR21160501-P1BS-0123456789_01_P001"
    til = _write_til(tmp_path, data, stem, imd=False)
    write_rpb(rpc, tmp_path / f"{stem}.RPB")
    gone = sorted(tmp_path.glob("*R2C2*.TIF"))[0]
    gone.unlink()
    err = read_scene(til).error
    assert f"{stem}.TIL" in err and gone.name in err and "Fix:" in err


# ---------------------------------------------------------------------------------- rpc_source
def test_rpc_source_tells_tags_from_sidecars(tmp_path, sample):
    data, rpc = sample
    tagged = write_image(tmp_path / "tagged.tif", data, rpc=rpc)
    assert read_scene(tagged).rpc_source == "GeoTIFF tags"
    # GDAL lets a .RPB override the GeoTIFF tags: the source is the sidecar, and its RPC is used
    moved = replace(rpc, row_offset=rpc.row_offset + 7.0)
    write_rpb(moved, tmp_path / "tagged.RPB")
    s = read_scene(tagged)
    assert s.rpc_source == "tagged.RPB" and worst_px(moved, s.rpc) < 1e-3
    # an image without tags whose .RPB GDAL reads
    plain = write_image(tmp_path / "plain.tif", data)
    write_rpb(rpc, tmp_path / "plain.RPB")
    assert read_scene(plain).rpc_source == "plain.RPB"
    # a PNG whose RPC GDAL keeps in a .aux.xml
    png = write_image(tmp_path / "aux.png", data, rpc=rpc)
    assert (tmp_path / "aux.png.aux.xml").is_file()
    s = read_scene(png)
    assert s.ok and s.rpc_source == "aux.png.aux.xml" and worst_px(rpc, s.rpc) < 1e-3


# ------------------------------------------------------------------------- errors that name files
def test_empty_folder_and_folder_without_scenes(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TooFewViewsError) as info:
        require_scene_files([empty], EXTENSIONS)
    msg = str(info.value)
    assert str(empty) in msg and "empty" in msg and ".jp2" in msg and ".til" in msg and info.value.fix
    zips = tmp_path / "zips"
    zips.mkdir()
    (zips / "delivery.zip").write_bytes(b"PK")
    with pytest.raises(TooFewViewsError, match=r"delivery\.zip") as info:
        require_scene_files([zips], EXTENSIONS)
    assert "unzip" in info.value.fix


def test_pngs_without_sidecar_are_named_with_the_fix(tmp_path, sample):
    data, _ = sample
    for name in ("a.png", "b.jpg"):
        write_image(tmp_path / name, data)
    with pytest.raises(TooFewViewsError) as info:
        require_scene_files([tmp_path], EXTENSIONS)
    msg = str(info.value)
    assert "a.png" in msg and "b.jpg" in msg and "no RPC" in msg
    assert "a.RPB" in info.value.fix and "a_RPC.TXT" in info.value.fix and "a.rpc" in info.value.fix


def test_upload_of_a_png_needs_its_sidecar(tmp_path, sample):
    from skyfall_core.ui.uploads import UploadError, store_uploads

    data, rpc = sample
    png = write_image(tmp_path / "view.png", data).read_bytes()
    with pytest.raises(UploadError, match="view.png") as info:
        store_uploads([("view.png", png)], tmp_path / "ws", max_upload_mb=5, batch="b1")
    assert "view.rpc" in info.value.fix
    assert not (tmp_path / "ws" / "uploads" / "b1").exists()
    rpc_text = write_rpc_keyvalue(rpc, tmp_path / "view.rpc").read_bytes()
    stored = store_uploads([("view.png", png), ("view.rpc", rpc_text)], tmp_path / "ws", 5, batch="b2")
    assert [p.name for p in stored.rasters] == ["view.png"]
    assert read_scene(stored.rasters[0]).ok
    jp2 = write_image(tmp_path / "v.jp2", data).read_bytes() if _has_driver("JP2OpenJPEG") else None
    if jp2 is not None:
        xml = dimap_v1(rpc, CROP, CROP).encode()
        stored = store_uploads([("v.jp2", jp2), ("RPC_v.XML", xml)], tmp_path / "ws", 5, batch="b3")
        assert read_scene(stored.rasters[0]).rpc_source == "RPC_v.XML"


# ------------------------------------------------------------------------------------------ CLI
def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    cfg = (REPO / "config.toml").read_text().replace('root = "workspace"', f'root = "{tmp_path / "ws"}"', 1)
    (tmp_path / "config.toml").write_text(cfg)
    return subprocess.run([sys.executable, "-m", "skyfall_core", "--config", str(tmp_path / "config.toml"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def _commands(folder: Path, out: Path) -> dict[str, list[str]]:
    aoi = str(REPO / "sample_aoi" / "aoi.geojson")
    return {"scenes": ["scenes", str(folder)],
            "cameras": ["cameras", "--scenes", str(folder), "--aoi", aoi],
            "reconstruct": ["reconstruct", "--scenes", str(folder), "--aoi", aoi, "--out", str(out)]}


def test_cli_empty_folder_and_pngs_without_sidecars_exit_2(tmp_path, sample):
    data, _ = sample
    empty = tmp_path / "empty"
    empty.mkdir()
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    write_image(pngs / "quicklook.png", data)
    for folder, expect in ((empty, "the folder is empty"), (pngs, "quicklook.png")):
        for name, args in _commands(folder, tmp_path / f"job_{folder.name}").items():
            r = _cli(tmp_path, *args)
            assert r.returncode == 2, (name, r.stdout, r.stderr)
            assert str(folder) in r.stderr and expect in r.stderr and ".jp2" in r.stderr, (name, r.stderr)
            assert "Fix:" in r.stderr and "Traceback" not in r.stderr and "Warning" not in r.stderr, (name, r.stderr)
        assert not (tmp_path / f"job_{folder.name}").exists()  # no job was created


def test_cli_every_scene_unusable_lists_each_file(tmp_path, sample):
    data, _ = sample
    bad = tmp_path / "bad"
    bad.mkdir()
    write_image(bad / "norpc.tif", data)
    (bad / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 64)
    write_image(bad / "lonely.png", data)
    (bad / "lonely.rpc").write_text("LINE_OFF: 12\n")  # incomplete
    aoi = REPO / "sample_aoi" / "aoi.geojson"
    cmds = _commands(bad, tmp_path / "job")
    for name in ("cameras", "reconstruct"):
        r = _cli(tmp_path, *cmds[name])
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        err = r.stderr
        assert "no usable scene" in err and "none of the 3 scene file(s)" in err, err
        for f, why in (("norpc.tif", "norpc.RPB"), ("broken.tif", "cannot open"), ("lonely.rpc", "missing")):
            assert any(f in line and why in line for line in err.splitlines()), (name, f, err)
        assert str(aoi) not in err  # the AOI is not to blame
        assert "Traceback" not in err and "Warning" not in err
    assert not (tmp_path / "job").exists()
    r = _cli(tmp_path, *cmds["scenes"], "--json")  # listing them is not an error
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3 and "Warning" not in r.stderr


def test_scene_listing_has_no_georeferencing_warnings(tmp_path, sample):
    data, rpc = sample
    write_image(tmp_path / "a.tif", data)
    write_rpb(rpc, tmp_path / "a.RPB")
    write_image(tmp_path / "b.png", data)
    write_rpc_keyvalue(rpc, tmp_path / "b.rpc")
    r = _cli(tmp_path, "scenes", str(tmp_path), "--json", "--no-cache")
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in json.loads(r.stdout)}
    assert rows["a"]["rpc_source"] == "a.RPB" and rows["b"]["rpc_source"] == "b.rpc"
    assert all(row["error"] is None for row in rows.values())
    assert "NotGeoreferenced" not in r.stderr and r.stderr.strip() == ""


def test_missing_files_are_corrupt_raster_errors(tmp_path):
    with pytest.raises(CorruptRasterError, match="nothing.jp2"):
        read_rpc(tmp_path / "nothing.jp2")
