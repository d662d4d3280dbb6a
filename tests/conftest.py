"""Shared test fixtures. Nothing may reach a model hub from a test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
JAX_DIR = REPO.parent / "shared" / "data" / "jax068"
SAMPLE_DIR = REPO / "sample_aoi"


@pytest.fixture(scope="session")
def jax_dir() -> Path:
    """The real JAX_068 data (../shared/data/jax068); the test is skipped when it is absent."""
    if not (JAX_DIR / "images").is_dir():
        pytest.skip(f"real JAX_068 data not found at {JAX_DIR} (it lives in ../shared, never in the repo)")
    return JAX_DIR


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE_DIR / "scenes").is_dir():
        pytest.skip(f"bundled sample not found at {SAMPLE_DIR}; run `python -m skyfall_core sample`")
    return SAMPLE_DIR
