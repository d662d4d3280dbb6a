"""Cached access to the config and the scene catalog for the Streamlit pages."""

from __future__ import annotations

from typing import Any

import streamlit as st

from skyfall_core.config import Config, load_config


@st.cache_resource
def get_config() -> Config:
    """The app's config (``$SKYFALL_CONFIG`` or the repository's ``config.toml``)."""
    return load_config()


@st.cache_data(show_spinner="Scanning scene folders…")
def catalog_rows(folders: tuple[str, ...]) -> list[dict[str, Any]]:
    """Catalog rows (json-able) of the scenes found in ``folders``; re-reads only changed files."""
    from pathlib import Path

    from skyfall_core.geo.catalog import catalog_table, scan_scenes

    cfg = get_config()
    scenes = scan_scenes([Path(f) for f in folders], cfg.catalog.extensions,
                         cache_path=cfg.workspace_root / "cache" / "catalog.json")
    return catalog_table(scenes)
