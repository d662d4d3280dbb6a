"""Files the browser fetches from the app itself (Streamlit static serving, ``/app/static/``).

Streamlit serves the ``static/`` folder next to ``app.py`` at ``/app/static/`` when
``server.enableStaticServing`` is on (``.streamlit/config.toml`` beside app.py turns it on). It
holds the vendored JavaScript (``static/vendor/``, committed) and, created on demand and
git-ignored, ``static/_jobs/<job_id>/<file>`` (a job's splat for the viewer: a hard link when
the workspace is on the same disk, else a copy; Streamlit refuses symlinks that leave static/)
and ``static/_cache/<sha>.<ext>`` (map overlays). Names are validated before use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from skyfall_core.jobfolder import check_job_id
from skyfall_core.ui.paths import UnsafePathError, inside, safe_filename

STATIC_ROOT = Path(__file__).resolve().parents[2] / "static"
STATIC_URL = "/app/static"
MAX_STATIC_BYTES = 200 * 2**20  # Streamlit refuses to serve larger static files


def vendor_url(rel: str) -> str:
    """URL of a vendored file (``rel`` under static/vendor/)."""
    return f"{STATIC_URL}/vendor/{rel}"


def vendor_file(rel: str, root: Path = STATIC_ROOT) -> Path:
    return inside(root, "vendor", *rel.split("/"))


def publish_bytes(data: bytes, suffix: str, root: Path = STATIC_ROOT) -> str:
    """Store ``data`` as ``_cache/<sha256>.<suffix>`` (once) and return its URL."""
    if suffix not in ("png", "jpg", "json"):
        raise ValueError(f"unsupported static suffix {suffix!r}")
    name = f"{hashlib.sha256(data).hexdigest()[:32]}.{suffix}"
    target = inside(root, "_cache", name)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return f"{STATIC_URL}/_cache/{name}"


def publish_job_file(job_id: str, src: Path, root: Path = STATIC_ROOT) -> str:
    """Make a job's file fetchable at ``/app/static/_jobs/<job_id>/<name>``; returns the URL.

    Re-publishes only when the source changed (size or mtime). Raises
    :class:`~skyfall_core.ui.paths.UnsafePathError` for a bad id/name or a file too large to serve.
    """
    try:
        check_job_id(job_id)
    except ValueError as exc:
        raise UnsafePathError(str(exc)) from None
    name = safe_filename(src.name)
    st = src.stat()
    if st.st_size > MAX_STATIC_BYTES:
        raise UnsafePathError(f"{name} is {st.st_size / 2**20:,.0f} MiB, too large to show in the browser",
                              path=src, fix="download it and open it in a desktop splat viewer")
    target = inside(root, "_jobs", job_id, name)
    try:
        tst = target.stat()
        fresh = tst.st_size == st.st_size and int(tst.st_mtime) == int(st.st_mtime)
    except OSError:
        fresh = False
    if not fresh:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, target)
    return f"{STATIC_URL}/_jobs/{job_id}/{name}?v={int(st.st_mtime)}"


def unpublish_job(job_id: str, root: Path = STATIC_ROOT) -> None:
    """Remove a job's published files (after the job is deleted)."""
    check_job_id(job_id)
    folder = inside(root, "_jobs", job_id)
    if folder.is_dir():
        shutil.rmtree(folder)
