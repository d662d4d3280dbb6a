"""The job host: a small detached process that runs one job and reports it to the store.

For every job the scheduler starts ``python -m skyfall_core.jobs.local host ...`` in a new session
(``start_new_session=True``), so the job outlives the app's reruns and restarts. The host:

1. records its pid in the store, then starts the pipeline ``python -m skyfall_core run <job_dir>``
   in its own process group, stdout/stderr appended to ``log.txt`` (local runner), or submits it
   as a Ray task (ray runner, :mod:`skyfall_core.jobs.ray_runner`);
2. while it runs: mirrors stage/round into the store and, once a ``cancel.request`` is older than
   its timeout, sends SIGTERM then SIGKILL to the pipeline's process group (or ``ray.cancel``);
3. maps the exit code to a status (0 done, 3 cancelled, 2/1 failed with the last error event,
   a signal: interrupted, or cancelled when a cancel was asked) and writes it to the store;
4. starts the next queued jobs, so the queue keeps going with the app closed.

The pipeline is exec'ed through a tiny shim that asks Linux to SIGKILL it when its parent dies
(``PR_SET_PDEATHSIG``): no orphan pipeline can keep writing into a job folder that reconcile
has declared interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from skyfall_core.jobfolder import EXIT_CANCELLED, EXIT_DONE, EXIT_USER_ERROR, JobDir
from skyfall_core.jobs.process import (  # noqa: F401  (re-exported for the manager)
    POLL_S,
    REPO_ROOT,
    cancel_deadline,
    child_env,
    exec_with_parent_death_signal,
    hostname,
    pipeline_argv,
    process_alive,
    process_start_time,
    shim_argv,
    signal_group,
)

STORE_SYNC_S = 1.0


# ---------------------------------------------------------------------------- outcomes
@dataclass(frozen=True)
class Outcome:
    status: str  # done | cancelled | failed | interrupted
    error: str | None


def outcome(exit_code: int | None, *, cancel_requested: bool, last_error: str | None,
            killed_by: str | None = None) -> Outcome:
    """The job status for a pipeline exit code (the contract: 0 done, 3 cancelled, 2 user error, 1 crash)."""
    if exit_code == EXIT_DONE:
        return Outcome("done", None)
    if exit_code == EXIT_CANCELLED:
        return Outcome("cancelled", None)
    if cancel_requested and (exit_code is None or exit_code < 0 or killed_by):
        how = killed_by or (f"signal {signal.Signals(-exit_code).name}" if exit_code else "the runner")
        return Outcome("cancelled", f"stopped by {how} after the cancel timeout; finished rounds are kept")
    if exit_code is None or exit_code < 0:
        how = killed_by or (f"signal {signal.Signals(-exit_code).name}" if exit_code else "an unknown cause")
        return Outcome("interrupted", f"the job process was killed by {how}; resume it to continue "
                                      f"from its last finished round")
    what = "stopped on a user error" if exit_code == EXIT_USER_ERROR else "crashed"
    detail = f": {last_error}" if last_error else "; see log.txt"
    return Outcome("failed", f"{what} (exit code {exit_code}){detail}")


# -------------------------------------------------------------------------- the host
def spawn_host(store_path: Path, workspace: Path, job_id: str, attempt: int, log_path: Path) -> subprocess.Popen:
    """Start the detached host of one claimed job (new session; output appended to ``log_path``)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "skyfall_core.jobs.local", "host", "--store", str(store_path),
            "--workspace", str(workspace), "--job", job_id, "--attempt", str(attempt)]
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, env=child_env(), cwd=REPO_ROOT)


def start_queued(store: Any, settings: Any, *, spawn: Callable[..., Any] = spawn_host) -> list[tuple[str, Any]]:
    """Claim queued jobs while slots are free and start a host for each; [(job id, handle)]."""
    started = []
    while True:
        rec = store.claim_next(settings.max_concurrent, settings.runner, hostname())
        if rec is None:
            return started
        folder = store.folder(rec)
        handle = spawn(store.path, store.workspace, rec.id, rec.attempt, JobDir(folder).log)
        store.update(rec.id, attempt=rec.attempt, pid=handle.pid, pid_start=process_start_time(handle.pid))
        started.append((rec.id, handle))


class _Host:
    """State of one job host run (kept off module level)."""

    def __init__(self, store: Any, job_id: str, attempt: int):
        from skyfall_core.config import JobsSettings
        from skyfall_core.jobs.progress import ProgressTracker

        self.store, self.job_id, self.attempt = store, job_id, attempt
        self.rec = store.require(job_id)
        self.settings = JobsSettings.model_validate_json(store.meta("settings") or "{}")
        self.job_dir = store.folder(self.rec)
        self.tracker = ProgressTracker(JobDir(self.job_dir).events, self.rec.rounds_total)
        self.term_received = False
        self._last_sync = 0.0
        self._synced: tuple[Any, Any] = (self.rec.stage, self.rec.round)

    def say(self, text: str) -> None:
        print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] job host: {text}", flush=True)

    def sync_progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_sync < STORE_SYNC_S:
            return
        self._last_sync = now
        p = self.tracker.update()
        if (p.stage, p.round) != self._synced:
            self._synced = (p.stage, p.round)
            self.store.update(self.job_id, attempt=self.attempt, stage=p.stage, round=p.round)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        rec = self.store.update(self.job_id, attempt=self.attempt, pid=os.getpid(),
                                pid_start=process_start_time(os.getpid()), host=hostname())
        if rec is None or rec.status not in ("running", "cancelling"):
            self.say(f"attempt {self.attempt} of job {self.job_id} is no longer current; nothing to do")
            return 0
        if rec.status == "cancelling":
            self.finish(Outcome("cancelled", None), None)
            return 0
        self.say(f"starting job {self.job_id} (attempt {self.attempt}, runner {rec.runner})")
        if rec.runner == "ray":
            from skyfall_core.jobs.ray_runner import run_on_ray

            code, killed_by = run_on_ray(self)
        else:
            code, killed_by = self.run_local()
        cancelling = (self.store.get(self.job_id) or rec).status == "cancelling"
        self.sync_progress(force=True)
        if self.term_received and not cancelling:
            killed_by = "SIGTERM (the job host was asked to stop)"
        result = outcome(code, cancel_requested=cancelling,
                         last_error=self.tracker.progress.last_error, killed_by=killed_by)
        self.finish(result, code)
        return 0

    def run_local(self) -> tuple[int | None, str | None]:
        argv = shim_argv(pipeline_argv(self.job_dir, self.rec.command))
        with open(JobDir(self.job_dir).log, "ab") as log:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     process_group=0, close_fds=True, env=child_env(), cwd=REPO_ROOT)
        self.store.update(self.job_id, attempt=self.attempt, child_pid=child.pid,
                          child_start=process_start_time(child.pid))
        self.say(f"pipeline pid {child.pid}: {' '.join(argv[argv.index('--') + 1:])}")
        sent: set[int] = set()
        killed_by = None
        while child.poll() is None:
            time.sleep(POLL_S)
            self.sync_progress()
            deadline = cancel_deadline(self.job_dir, self.settings.cancel_timeout_s)
            now = time.time()
            if self.term_received and signal.SIGTERM not in sent:
                deadline = now  # the host itself is asked to stop: pass it on
            if deadline is not None and now >= deadline and signal.SIGTERM not in sent:
                self.say("cancel timeout reached: SIGTERM to the pipeline's process group")
                signal_group(child.pid, signal.SIGTERM)
                sent.add(signal.SIGTERM)
                killed_by = "SIGTERM"
            if deadline is not None and now >= deadline + self.settings.kill_grace_s and signal.SIGKILL not in sent:
                self.say("still running after SIGTERM: SIGKILL to the pipeline's process group")
                signal_group(child.pid, signal.SIGKILL)
                sent.add(signal.SIGKILL)
                killed_by = "SIGKILL"
        signal_group(child.pid, signal.SIGKILL)  # stray grandchildren of the pipeline
        return child.returncode, killed_by if child.returncode < 0 else None

    def finish(self, result: Outcome, code: int | None) -> None:
        from skyfall_core.jobs.store import JOB_KEYS, BrokenJobError, read_job_json, utc_now

        extra = None
        try:
            data = read_job_json(self.job_dir)
            extra = {k: v for k, v in data.items() if k not in JOB_KEYS}
        except BrokenJobError as exc:  # reported; the status must still be written
            self.say(f"{exc.message} (keeping the store's copy)")
        updates: dict[str, Any] = {"finished": utc_now(), "exit_code": code, "error": result.error}
        if extra is not None:
            updates["extra"] = extra
        rec = self.store.transition(self.job_id, result.status, expect=("running", "cancelling"),
                                    attempt=self.attempt, strict=False, **updates)
        self.say(f"exit code {code} -> {result.status}" + (f" ({result.error})" if result.error else "")
                 + ("" if rec else " [not recorded: the job was changed meanwhile]"))
        if result.status == "cancelled":
            JobDir(self.job_dir).clear_cancel()

    def _on_term(self, signum: int, frame: Any) -> None:
        self.term_received = True


def run_host(store_path: Path, workspace: Path, job_id: str, attempt: int) -> int:
    """Entry of ``python -m skyfall_core.jobs.local host``: run one job, then start the queued ones."""
    from skyfall_core.config import JobsSettings
    from skyfall_core.jobs.store import JobStore

    store = JobStore(workspace, store_path)
    host = _Host(store, job_id, attempt)
    try:
        host.run()
    except Exception as exc:
        host.finish(Outcome("failed", f"the job host failed: {type(exc).__name__}: {exc} (see log.txt)"), None)
        raise
    if not host.term_received:
        settings = JobsSettings.model_validate_json(store.meta("settings") or "{}")
        for next_id, _ in start_queued(store, settings):
            host.say(f"started the next queued job {next_id}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["exec"]:
        sep = argv.index("--")
        exec_with_parent_death_signal(int(argv[1]), argv[sep + 1:])
        return 127  # pragma: no cover - exec does not return
    p = argparse.ArgumentParser(prog="python -m skyfall_core.jobs.local")
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("host", help="run one claimed job (started by the scheduler, not by hand)")
    h.add_argument("--store", required=True)
    h.add_argument("--workspace", required=True)
    h.add_argument("--job", required=True)
    h.add_argument("--attempt", type=int, required=True)
    args = p.parse_args(argv)
    return run_host(Path(args.store), Path(args.workspace), args.job, args.attempt)


if __name__ == "__main__":
    sys.exit(main())
