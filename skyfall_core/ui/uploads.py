"""Scene uploads from the browser: checked, then stored under the workspace (never a shared temp folder).

Accepted: a raster (GeoTIFF/NITF/JPEG 2000, a Maxar .TIL with its tiles, or a PNG/JPEG that comes
with an RPC sidecar) with its sidecars (.RPB, _RPC.TXT, .rpc, DIMAP RPC_*.XML, .IMD, Sat-NeRF
.json), or a .zip of such files. Every name is a plain file name (no folder part); a zip's members are
checked before anything is extracted (count, total size, compression ratio: no zip bombs); each
raster is opened with rasterio and refused when it is not one. Files land in
``<workspace>/uploads/<batch>/`` (a folder per upload batch, written atomically per file).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from skyfall_core.atomic import write_bytes
from skyfall_core.errors import CorruptRasterError, SkyfallError
from skyfall_core.ui.paths import UnsafePathError, inside, safe_filename

RASTER_SUFFIXES = (".tif", ".tiff", ".ntf", ".nitf", ".jp2", ".til", ".png", ".jpg", ".jpeg")
IMAGE_ONLY_SUFFIXES = (".png", ".jpg", ".jpeg")  # rasters that need an RPC sidecar in the batch
SIDECAR_SUFFIXES = (".rpb", ".txt", ".rpc", ".xml", ".imd", ".json")
ZIP_MAX_MEMBERS = 200
ZIP_MAX_RATIO = 50.0  # uncompressed / compressed size of one member (TIFFs compress ~1-5x)


class UploadError(SkyfallError):
    """An uploaded file is refused (too large, not a raster, unsafe name, zip bomb)."""


@dataclass(frozen=True)
class StoredUpload:
    folder: Path  # the batch folder (add it to the catalog)
    rasters: tuple[Path, ...]
    sidecars: tuple[Path, ...]


def _check_raster(path: Path) -> None:
    from skyfall_core.geo.imageio import open_raster

    try:
        with open_raster(path) as ds:
            if ds.width < 1 or ds.height < 1:
                raise UploadError("the raster is empty", path=path.name, fix="upload the image itself")
    except CorruptRasterError as exc:
        raise UploadError(f"not a readable raster ({exc.problem})", path=path.name,
                          fix="upload a GeoTIFF, NITF or JPEG 2000 image as delivered by the vendor "
                              "(a .TIL with all its tiles)") from None
    if path.suffix.lower() in IMAGE_ONLY_SUFFIXES:
        from skyfall_core.geo.catalog import find_satnerf_json
        from skyfall_core.geo.rpc import has_rpc_sidecar, sidecar_hint

        if not has_rpc_sidecar(path) and find_satnerf_json(path) is None:
            raise UploadError("a PNG/JPEG image has no camera model: it needs its RPC sidecar", path=path.name,
                              fix=f"upload it together with its RPC, named like it ({sidecar_hint(path)})")


def _zip_members(data: bytes, max_total: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of a zip's files after the safety checks (nothing is written)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError("not a valid zip archive", fix="upload the files, or a zip made by a standard tool") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > ZIP_MAX_MEMBERS:
            raise UploadError(f"the zip holds {len(infos)} files (at most {ZIP_MAX_MEMBERS})",
                              fix="upload fewer scenes at a time")
        total = sum(i.file_size for i in infos)
        if total > max_total:
            raise UploadError(f"the zip unpacks to {total / 2**20:,.0f} MiB (at most {max_total / 2**20:,.0f} MiB)",
                              fix="upload the scenes one by one or raise [server] max_upload_mb")
        out = []
        for info in infos:
            if "/" in info.filename.rstrip("/") or "\\" in info.filename:
                raise UploadError(f"zip member {info.filename!r} has a folder part",
                                  fix="zip the files themselves, without folders")
            safe_filename(info.filename)
            if info.compress_size and info.file_size / info.compress_size > ZIP_MAX_RATIO:
                raise UploadError(f"zip member {info.filename!r} expands {info.file_size / info.compress_size:,.0f}x "
                                  "(a zip bomb?)", fix="upload the files unzipped")
            with zf.open(info) as f:
                blob = f.read(info.file_size + 1)
            if len(blob) != info.file_size:
                raise UploadError(f"zip member {info.filename!r} is larger than its header says",
                                  fix="re-create the zip with a standard tool")
            out.append((info.filename, blob))
    return out


def store_uploads(files: list[tuple[str, bytes]], workspace: Path, max_upload_mb: int,
                  batch: str | None = None) -> StoredUpload:
    """Check and store uploaded files (``(browser file name, bytes)``) in a new batch folder.

    Raises :class:`UploadError` (or :class:`~skyfall_core.ui.paths.UnsafePathError`) before
    anything is kept: a failed batch leaves no files behind.
    """
    max_bytes = max_upload_mb * 2**20
    items: list[tuple[str, bytes]] = []
    for name, data in files:
        if len(data) > max_bytes:
            raise UploadError(f"{len(data) / 2**20:,.0f} MiB is over the upload limit of {max_upload_mb} MiB",
                              path=name, fix="copy large scenes into a folder and add the folder instead")
        safe_filename(name)
        if name.lower().endswith(".zip"):
            items.extend(_zip_members(data, max_total=4 * max_bytes))
        else:
            items.append((name, data))
    names = [n for n, _ in items]
    for n in names:
        safe_filename(n, RASTER_SUFFIXES + SIDECAR_SUFFIXES)
    if len(set(n.lower() for n in names)) != len(names):
        raise UploadError("two uploaded files have the same name", fix="rename one of them")
    if not any(n.lower().endswith(RASTER_SUFFIXES) for n in names):
        raise UploadError("no raster among the uploaded files",
                          fix="upload the .tif/.ntf/.jp2 images (or a .TIL with its tiles), with their sidecars")
    batch = batch or datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    safe_filename(batch)
    folder = inside(workspace, "uploads", batch)
    if folder.exists():
        raise UnsafePathError(f"upload folder {batch} exists already", path=folder, fix="upload again")
    written: list[Path] = []
    try:
        for n, blob in items:
            target = inside(folder, n)
            write_bytes(target, blob)
            written.append(target)
        for p in written:
            if p.suffix.lower() in RASTER_SUFFIXES:
                _check_raster(p)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise
    rasters = tuple(p for p in written if p.suffix.lower() in RASTER_SUFFIXES)
    return StoredUpload(folder, rasters, tuple(p for p in written if p not in rasters))
