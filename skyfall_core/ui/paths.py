"""Path safety for names that come from the browser (job ids, file names, uploads).

Everything the app reads or writes on behalf of the browser is resolved (symlinks followed) and
checked to stay inside a known root (the workspace, a job folder, the app's static folder). A
name that tries to leave it (``../``, an absolute path, a drive letter, a NUL) is refused with an
:class:`UnsafePathError` that says what was refused and why.
"""

from __future__ import annotations

import re
from pathlib import Path

from skyfall_core.errors import SkyfallError
from skyfall_core.jobfolder import check_job_id

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+ -]{0,199}$")


class UnsafePathError(SkyfallError):
    """A path or name from the browser would leave its folder, or is not a plain file name."""


def safe_filename(name: str, suffixes: tuple[str, ...] | None = None) -> str:
    """``name`` if it is a plain file name (no folder part, no ``..``, no hidden/odd characters).

    ``suffixes`` (lower case, with the dot) restricts the extension. Raises
    :class:`UnsafePathError` otherwise; the name is never "cleaned" silently.
    """
    if not isinstance(name, str) or not name:
        raise UnsafePathError("empty file name", fix="give the file a name")
    if "/" in name or "\\" in name or "\x00" in name or ":" in name:
        raise UnsafePathError(f"file name {name!r} contains a folder part", fix="upload the file itself, not a path")
    if name in (".", "..") or ".." in name or not _SAFE_NAME.fullmatch(name):
        raise UnsafePathError(f"file name {name!r} is not a plain file name",
                              fix="rename it to letters, digits, '.', '_', '-', '+' or spaces "
                                  "(not starting with a dot)")
    if suffixes is not None and Path(name).suffix.lower() not in suffixes:
        raise UnsafePathError(f"file {name!r} is not one of {', '.join(suffixes)}",
                              fix=f"give a file ending in {' or '.join(suffixes)}")
    return name


def inside(root: str | Path, *parts: str | Path) -> Path:
    """``root / parts...`` resolved, asserting that the result stays inside ``root`` (resolved).

    Absolute parts and ``..`` that climb out of ``root`` raise :class:`UnsafePathError`; so does
    a symlink inside ``root`` that points outside it.
    """
    base = Path(root).resolve()
    for part in parts:
        if Path(part).is_absolute() or re.match(r"^[A-Za-z]:", str(part)):
            raise UnsafePathError(f"absolute path {str(part)!r} refused", path=base,
                                  fix="give a path relative to the folder")
    target = base.joinpath(*[str(p) for p in parts]).resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(f"path {'/'.join(str(p) for p in parts)!r} leaves its folder", path=base,
                              fix="give a path inside the folder")
    return target


def job_folder(workspace: str | Path, job_id: str) -> Path:
    """``<workspace>/jobs/<job_id>`` for a valid job id (see ``check_job_id``), inside the workspace."""
    try:
        check_job_id(job_id)
    except ValueError as exc:
        raise UnsafePathError(str(exc), fix="pick a job from the list") from None
    return inside(Path(workspace) / "jobs", job_id)
