"""Cached access for the Streamlit pages: config, jobs, scene catalog, thumbnails; session keys.

``st.cache_resource`` holds the shared singletons (config, :class:`~skyfall_core.ui.jobs.Jobs`,
device info); ``st.cache_data`` the serialisable results (catalog rows, scene dicts, PNG bytes),
keyed by the files' sizes and mtimes so that a changed file is re-read. Session state holds
identifiers only (the selected job id), initialised once by :func:`init_session`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from skyfall_core.config import Config, load_config

SESSION_DEFAULTS: dict[str, Any] = {"job_id": None, "compare_ids": []}


def init_session() -> None:
    """Create the session keys once (identifiers only)."""
    for key, value in SESSION_DEFAULTS.items():
        st.session_state.setdefault(key, value)


@st.cache_resource
def get_config() -> Config:
    """The app's config (``$SKYFALL_CONFIG`` or the repository's ``config.toml``)."""
    return load_config()


@st.cache_resource
def get_jobs():
    """The one :class:`~skyfall_core.ui.jobs.Jobs` of this server (job store or folder runner)."""
    from skyfall_core.ui.jobs import Jobs

    return Jobs.from_config(get_config())


@st.cache_resource
def get_device():
    from skyfall_core.ui.models import device_info

    return device_info()


def workspace() -> Path:
    return get_config().workspace_root


def scene_folders() -> tuple[str, ...]:
    """Folders scanned for scenes: the config's, the app's uploads, and folders added in the app."""
    from skyfall_core.ui.draft import load_draft

    cfg = get_config()
    folders = [str(f) for f in cfg.catalog_folders]
    uploads = cfg.workspace_root / "uploads"
    if uploads.is_dir():
        folders.append(str(uploads))
    folders.extend(load_draft(cfg.workspace_root).folders)
    return tuple(dict.fromkeys(folders))


def _signature(folders: tuple[str, ...]) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime_ns) of every scene file in ``folders`` (existing folders only)."""
    from skyfall_core.geo.catalog import find_scene_files

    cfg = get_config()
    present = [f for f in folders if Path(f).exists()]
    sig = []
    for p in find_scene_files(present, cfg.catalog.extensions):
        s = p.stat()
        sig.append((str(p), s.st_size, s.st_mtime_ns))
    return tuple(sig)


@st.cache_data(show_spinner="Scanning scene folders…")
def _scene_dicts(folders: tuple[str, ...], signature: tuple) -> list[dict[str, Any]]:
    from skyfall_core.geo.catalog import scan_scenes

    cfg = get_config()
    present = [f for f in folders if Path(f).exists()]
    scenes = scan_scenes(present, cfg.catalog.extensions, cache_path=cfg.workspace_root / "cache" / "catalog.json")
    return [s.to_dict(include_rpc=True) for s in scenes]


def catalog_scenes(folders: tuple[str, ...] | None = None) -> list:
    """The catalog's :class:`~skyfall_core.geo.catalog.Scene` objects (cached; re-read on change)."""
    from skyfall_core.geo.catalog import Scene

    folders = scene_folders() if folders is None else folders
    return [Scene.from_dict(d) for d in _scene_dicts(folders, _signature(folders))]


def missing_folders(folders: tuple[str, ...] | None = None) -> list[str]:
    folders = scene_folders() if folders is None else folders
    return [f for f in folders if not Path(f).exists()]


@st.cache_data(show_spinner="Scanning scene folders…")
def catalog_rows(folders: tuple[str, ...]) -> list[dict[str, Any]]:
    """Catalog rows (json-able) of the scenes found in ``folders``."""
    from skyfall_core.geo.catalog import catalog_table

    return catalog_table(catalog_scenes(folders))


def load_draft_aoi():
    """(validated AOI or None, error message or None) of the draft's AOI."""
    from skyfall_core.errors import SkyfallError
    from skyfall_core.geo.aoi import load_aoi
    from skyfall_core.ui.draft import load_draft

    draft = load_draft(workspace())
    if draft.aoi is None:
        return None, None
    try:
        return load_aoi(draft.aoi, get_config().aoi), None
    except SkyfallError as exc:
        return None, exc.message


@st.cache_data(show_spinner=False, max_entries=256)
def aoi_thumbnail_png(scene_path: str, mtime_ns: int, aoi_json: str, size: int) -> bytes | None:
    """PNG of a scene cropped to the AOI (cached per file version and AOI); None if it cannot be cropped."""
    from skyfall_core.errors import SkyfallError
    from skyfall_core.geo.aoi import estimate_height_range, load_aoi
    from skyfall_core.geo.catalog import read_scene
    from skyfall_core.ui.imagery import aoi_thumbnail

    cfg = get_config()
    scene = read_scene(scene_path)
    if not scene.ok:
        return None
    try:
        aoi = load_aoi(json.loads(aoi_json), cfg.aoi)
        hr = estimate_height_range(aoi, [scene], cfg.aoi.height_margin_m)
        return aoi_thumbnail(scene, aoi, hr, cfg.aoi.margin_m, size)
    except SkyfallError:
        return None


@st.cache_data(show_spinner="Resampling imagery for the map…", max_entries=64)
def ortho_png(scene_path: str, mtime_ns: int, bounds: tuple[float, float, float, float], height_m: float,
              size: int = 768) -> bytes | None:
    """PNG (RGBA) of a scene resampled north-up over ``bounds`` at ``height_m``; None if unusable."""
    from skyfall_core.geo.catalog import read_scene
    from skyfall_core.ui.imagery import ortho_overlay, to_png

    scene = read_scene(scene_path)
    if not scene.ok:
        return None
    rgb, valid = ortho_overlay(scene, bounds, height_m, size)
    if not valid.any():
        return None
    return to_png(rgb, valid)


@st.cache_data(show_spinner=False, max_entries=512)
def image_thumb(path: str, mtime_ns: int, max_size: int = 512) -> bytes:
    """JPEG thumbnail of a round image (cached per file version)."""
    from skyfall_core.ui.imagery import thumbnail_jpeg

    return thumbnail_jpeg(Path(path), max_size)


@st.cache_data(show_spinner=False, max_entries=64)
def model_status_cached(model_id: str):
    from skyfall_core.ui.models import model_status

    return model_status(model_id)
