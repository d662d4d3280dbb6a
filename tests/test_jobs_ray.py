"""The Ray runner against a local Ray started by the test (``ray.init(num_cpus=2)``).

The mechanics test uses trivial commands (a test of the runner); the tiny job runs the REAL
pipeline as a Ray task and is skipped until ``skyfall_core/pipeline/run.py`` exists.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

import pytest

from skyfall_core.config import JobsSettings, WorkspaceConfig, load_config
from skyfall_core.jobs.local import process_alive
from skyfall_core.jobs.manager import JobManager

ray = pytest.importorskip("ray", reason="ray is optional; install it (requirements.txt) to test the Ray runner")

REPO = Path(__file__).resolve().parents[1]
ECHO = ["{python}", "-c", "import sys; print('pipeline ran in', sys.argv[1]); sys.exit(int(sys.argv[2]))",
        "{job_dir}", "0"]
DEAF = ["{python}", "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"]


@pytest.fixture(scope="module")
def ray_address():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def make(tmp_path, sample_dir, ray_address):
    cfg = load_config(REPO / "config.toml").model_copy(update={"workspace": WorkspaceConfig(root=tmp_path / "ws")})
    scenes = sorted((sample_dir / "scenes").glob("*.tif"))

    def factory(command=None, overrides=None, **settings):
        s = JobsSettings(**{"runner": "ray", "ray_address": ray_address, "num_gpus": 0, "num_cpus": 1, **settings})
        m = JobManager(cfg, settings=s, command=command)
        return m, m.submit("on ray", sample_dir / "aoi.geojson", scenes, "preview", overrides)

    return factory


def test_ray_runs_a_job_and_cancels_one_through_ray(make):
    m, job = make(ECHO, max_concurrent=2)
    info = m.wait(job, 120)
    assert info.status == "done" and info.runner == "ray", info.error
    rec = m.record(job)
    assert rec.ray_ref and rec.exit_code == 0
    assert "pipeline ran in" in m.logs(job).text and "ray task on" in m.logs(job).text

    m2, stubborn = make(DEAF, kill_grace_s=1)
    folder = m2.store.folder(m2.record(stubborn))
    deadline = time.time() + 60
    while not (folder / "runner.json").exists():  # the task has started on the worker
        assert time.time() < deadline
        time.sleep(0.1)
    info = m2.cancel(stubborn, timeout_s=1.0, wait=True)
    assert info.status == "cancelled" and "ray.cancel" in info.error
    import json

    pid = json.loads((folder / "runner.json").read_text())["pid"]
    deadline = time.time() + 10
    while process_alive(pid, None) and time.time() < deadline:  # the pipeline went with its worker
        time.sleep(0.1)
    assert not process_alive(pid, None)


def test_cancelling_a_job_still_waiting_for_ray_resources_is_immediate(make):
    m, job = make(ECHO, num_cpus=3)  # the local cluster has 2 CPUs: the task never gets a worker
    deadline = time.time() + 30
    while not m.record(job).ray_ref:
        assert time.time() < deadline
        time.sleep(0.1)
    t0 = time.time()
    info = m.cancel(job, timeout_s=120, wait=True)
    assert info.status == "cancelled" and time.time() - t0 < 20  # no 120 s graceful wait


@pytest.mark.skipif(importlib.util.find_spec("skyfall_core.pipeline.run") is None,
                    reason="the pipeline entry point skyfall_core/pipeline/run.py has not landed yet")
def test_a_tiny_real_job_completes_on_ray(make):
    from test_jobs_pipeline import ROUNDS, TINY, assert_job_files_intact, finished

    m, job = make(None, TINY)
    try:
        info = m.wait(job, 240)
    finally:
        rec = m.record(job)
        if rec.status in ("running", "cancelling") and rec.pid and process_alive(rec.pid, rec.pid_start):
            os.killpg(rec.pid, signal.SIGKILL)
    assert info.status == "done", info.error
    folder = m.store.folder(m.record(job))
    assert [f"round_{k}" in finished(folder) for k in range(ROUNDS)] == [True] * ROUNDS
    assert_job_files_intact(folder)
    assert "ray task on" in m.logs(job).text
