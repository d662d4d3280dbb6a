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


def run_tiny_job(workspace: Path) -> Path:
    """``<workspace>/jobs/tiny``: a finished tiny pipeline job on the bundled sample, written by the
    real pipeline (the ``TINY`` overrides of test_pipeline.py); reused when already there."""
    from test_pipeline import _job

    from skyfall_core.pipeline.run import EXIT_DONE, run_job

    folder = workspace / "jobs" / "tiny"
    if (folder / "state.json").is_file() and "final" in (folder / "state.json").read_text():
        return folder
    job = _job(workspace / "jobs", SAMPLE_DIR)
    assert run_job(job.root) == EXIT_DONE, (job.root / "log.txt").read_text()[-3000:]
    return job.root


@pytest.fixture(scope="session")
def tiny_job(tmp_path_factory, sample_dir) -> Path:
    """A real finished job folder, made once per test session (about a minute on a quiet 2-core
    machine) and shared by every test that reads a job's outputs. ``SKYFALL_TINY_JOB_WS=<folder>``
    keeps it across sessions. Tests that change it copy it first."""
    keep = os.environ.get("SKYFALL_TINY_JOB_WS")
    return run_tiny_job(Path(keep) if keep else tmp_path_factory.getbasetemp() / "tiny_job_ws")
