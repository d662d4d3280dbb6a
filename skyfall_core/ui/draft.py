"""The draft of the next job (AOI, chosen scenes, extra scene folders), kept in the workspace.

The draft lives in ``<workspace>/ui/draft.json`` (written atomically) rather than in the browser
session, so that it survives a page reload and the pages share it; session state keeps
identifiers only. Skyfall Studio is a local, single-user app: one draft per workspace.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from skyfall_core.atomic import write_json


@dataclass(frozen=True)
class Draft:
    aoi: dict[str, Any] | None = None  # GeoJSON Feature (validated with load_aoi before saving)
    aoi_source: str = ""  # "drawn", "uploaded <name>", "sample"
    scenes: tuple[str, ...] = ()  # absolute paths of the chosen scenes
    folders: tuple[str, ...] = ()  # scene folders added in the app (besides config's and uploads)
    extra: dict[str, Any] = field(default_factory=dict)


def draft_path(workspace: Path) -> Path:
    return Path(workspace) / "ui" / "draft.json"


def load_draft(workspace: Path) -> Draft:
    """The saved draft, or an empty one (also when the file is unreadable: it is only a draft)."""
    path = draft_path(workspace)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return Draft()
    if not isinstance(data, dict):
        return Draft()
    return Draft(aoi=data.get("aoi"), aoi_source=str(data.get("aoi_source") or ""),
                 scenes=tuple(str(s) for s in data.get("scenes") or ()),
                 folders=tuple(str(s) for s in data.get("folders") or ()),
                 extra=dict(data.get("extra") or {}))


def save_draft(workspace: Path, draft: Draft) -> Draft:
    write_json(draft_path(workspace), asdict(draft))
    return draft


def update_draft(workspace: Path, **changes: Any) -> Draft:
    """Load, change some fields (tuples for sequences), save; returns the new draft."""
    for k in ("scenes", "folders"):
        if k in changes:
            changes[k] = tuple(dict.fromkeys(str(s) for s in changes[k]))
    return save_draft(workspace, replace(load_draft(workspace), **changes))


def draft_from_job(workspace: Path, aoi: dict[str, Any] | None, scenes: tuple[str, ...] | list[str], source: str,
                   known_folders: tuple[str, ...] | list[str] = ()) -> Draft:
    """The draft set to a job's AOI and scenes (Clone): the scenes' folders not among
    ``known_folders`` (the catalog's) are added, so the Scenes page and Start find them."""
    draft = load_draft(workspace)
    known = {str(Path(f).resolve()) for f in (*known_folders, *draft.folders)}
    extra_folders = [str(Path(s).parent) for s in scenes if str(Path(s).parent.resolve()) not in known]
    return update_draft(workspace, aoi=aoi, aoi_source=f"copied from job {source}", scenes=tuple(scenes),
                        folders=(*draft.folders, *extra_folders), extra={**draft.extra, "clone_of": source})
