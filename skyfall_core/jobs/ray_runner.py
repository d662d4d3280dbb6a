"""Ray back-end (``[jobs] runner = "ray"``): a job runs as a Ray task on any node of a cluster.

The job host (:mod:`skyfall_core.jobs.local`, a detached process on the app's machine) is the Ray
driver: it connects to the cluster (``[jobs] ray_address``), submits one task that reserves
``num_gpus``/``num_cpus`` and runs the very same ``python -m skyfall_core run <job_dir>`` as a
subprocess on the worker, waits for it, and writes the outcome into the SQLite store (which
therefore stays on the app's machine). A cancel is first the graceful ``cancel.request`` (read by
the pipeline through the shared workspace); after the timeout the host calls
``ray.cancel(ref, force=True)``, which kills the worker process and, through the parent-death
signal, the pipeline under it.

Requirements: the workspace on storage shared by every node at the same path, and this checkout
(or the same version of ``skyfall_core``) importable on every node. ``ray`` is imported only here.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from skyfall_core.atomic import write_json
from skyfall_core.jobfolder import EXIT_USER_ERROR, EventLog, JobDir
from skyfall_core.jobs.process import (
    POLL_S,
    REPO_ROOT,
    cancel_deadline,
    child_env,
    hostname,
    pipeline_argv,
    shim_argv,
)

RUNNER_FILE = "runner.json"  # where (host, pid) the job runs, written by the Ray task


def ray_available() -> bool:
    """Whether the optional ``ray`` package can be imported."""
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def run_job_process(job_dir: str, command: list[str] | None) -> dict[str, Any]:
    """Body of the Ray task, on the worker: run the pipeline in ``job_dir`` and return its exit code."""
    job = Path(job_dir)
    if not JobDir(job).job_json.is_file():
        raise FileNotFoundError(f"{job / 'job.json'} is not visible on Ray node {hostname()}: put the "
                                f"workspace on storage shared by every node, mounted at the same path")
    argv = shim_argv(pipeline_argv(job, command))
    with open(JobDir(job).log, "ab") as log:
        log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] ray task on {hostname()} "
                  f"(worker pid {os.getpid()})\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                close_fds=True, env=child_env(), cwd=REPO_ROOT)
    write_json(job / RUNNER_FILE, {"host": hostname(), "pid": proc.pid, "worker_pid": os.getpid()})
    code = proc.wait()
    return {"exit_code": code, "host": hostname(), "pid": proc.pid}


def _fail(host: Any, text: str) -> tuple[int, None]:
    """Record a set-up failure as the pipeline would (error event) and report a user error."""
    EventLog(JobDir(host.job_dir).events).emit("error", text=text)
    host.say(text)
    return EXIT_USER_ERROR, None


def run_on_ray(host: Any) -> tuple[int | None, str | None]:
    """Run the host's job as a Ray task; returns (exit code or None, what killed it or None)."""
    if not ray_available():
        return _fail(host, "[jobs] runner = \"ray\" but the ray package is not installed: "
                           "pip install -e '.[cluster]' (or set runner = \"local\")")
    import ray

    settings, rec = host.settings, host.rec
    try:
        ray.init(address=settings.ray_address, namespace="skyfall", log_to_driver=False)
    except (ConnectionError, RuntimeError) as exc:
        return _fail(host, f"cannot connect to the Ray cluster at {settings.ray_address!r} ({exc}); start one "
                           f"with `ray start --head` or correct [jobs] ray_address in config.toml")
    try:
        gpus = ray.cluster_resources().get("GPU", 0.0)
        if settings.num_gpus > gpus:
            return _fail(host, f"the Ray cluster has {gpus:g} GPUs but [jobs] num_gpus = {settings.num_gpus:g}: "
                               f"add a GPU node, or set num_gpus = 0 for CPU-only jobs")
        task = ray.remote(run_job_process).options(num_gpus=settings.num_gpus, num_cpus=settings.num_cpus,
                                                   max_retries=0, name=f"skyfall-job-{rec.id}")
        (host.job_dir / RUNNER_FILE).unlink(missing_ok=True)  # present again = this task has started
        ref = task.remote(str(host.job_dir), rec.command)
        host.store.update(rec.id, attempt=host.attempt, ray_ref=ref.hex())
        host.say(f"submitted Ray task {ref.hex()} (num_gpus={settings.num_gpus:g}, num_cpus={settings.num_cpus:g})")
        forced = None
        while not ray.wait([ref], timeout=POLL_S)[0]:
            host.sync_progress()
            deadline = cancel_deadline(host.job_dir, settings.cancel_timeout_s)
            if deadline is not None and not (host.job_dir / RUNNER_FILE).exists():
                deadline = time.time()  # still waiting for a worker: nothing to stop gracefully
            if forced is None and (host.term_received or (deadline is not None and time.time() >= deadline)):
                host.say("cancel: ray.cancel(force=True)")
                ray.cancel(ref, force=True)
                forced = "ray.cancel(force=True)"
        try:
            result = ray.get(ref)
        except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError) as exc:
            return None, forced or f"a Ray worker failure ({type(exc).__name__})"
        except ray.exceptions.RayTaskError as exc:
            return _fail(host, f"the Ray task failed: {exc.cause if exc.cause is not None else exc}")
        host.say(f"Ray task finished on {result['host']} with exit code {result['exit_code']}")
        code = int(result["exit_code"])
        return code, (forced if code < 0 else None)
    finally:
        ray.shutdown()
