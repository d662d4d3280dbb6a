"""Processes of the job runners: the pipeline's command line, its environment, the parent-death
shim, process identity (pid + start time) and signals, and the cancel deadline. Both runners
(:mod:`skyfall_core.jobs.local`, :mod:`skyfall_core.jobs.ray_runner`) use these; neither imports
the other at module level.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Sequence

from skyfall_core.jobfolder import JobDir

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINE_COMMAND = ("{python}", "-m", "skyfall_core", "run", "{job_dir}")
POLL_S = 0.2


# ------------------------------------------------------------------------------- processes
def hostname() -> str:
    return socket.gethostname()


def process_start_time(pid: int | None) -> str | None:
    """A token identifying process ``pid`` (its start time); None if no such live process.

    Linux: field 22 of ``/proc/<pid>/stat`` (clock ticks after boot); a zombie counts as gone.
    Elsewhere: ``"?"`` when ``kill(pid, 0)`` succeeds (pid reuse is then not detected).
    """
    if not pid or pid <= 0:
        return None
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        fields = text[text.rfind(")") + 2:].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "?"
    return "?"


def process_alive(pid: int | None, start: str | None) -> bool:
    """Whether ``pid`` is still the process that was recorded with start token ``start``."""
    now = process_start_time(pid)
    return now is not None and (start is None or now == start or "?" in (now, start))


def signal_group(pgid: int | None, sig: int) -> bool:
    """Send ``sig`` to a process group; False if the group is gone."""
    if not pgid or pgid <= 0:
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def exec_with_parent_death_signal(parent_pid: int, argv: Sequence[str]) -> None:
    """Replace this process by ``argv``, SIGKILLed by Linux if ``parent_pid`` dies (no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:  # the parent died before prctl: do not start orphaned
            os._exit(128 + signal.SIGKILL)
    os.execvp(argv[0], list(argv))


def shim_argv(argv: Sequence[str], parent_pid: int | None = None) -> list[str]:
    """``argv`` wrapped in the parent-death shim (the final process image is ``argv`` itself)."""
    return [sys.executable, "-m", "skyfall_core.jobs.local", "exec", str(parent_pid or os.getpid()), "--",
            *argv]


def pipeline_argv(job_dir: Path, template: Sequence[str] | None = None) -> list[str]:
    """The job's command: ``python -m skyfall_core run <job_dir>`` or a test template."""
    subs = {"{python}": sys.executable, "{job_dir}": str(job_dir)}
    return [subs.get(a, a) for a in (template or PIPELINE_COMMAND)]


def child_env() -> dict[str, str]:
    """The environment of job processes: this one, unbuffered (the package is installed: ``pip install -e .``)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def cancel_deadline(job_dir: Path, default_timeout_s: float) -> float | None:
    """Unix time after which a requested cancel is forced; None when no cancel was requested."""
    path = JobDir(Path(job_dir)).cancel_request
    try:
        text = path.read_text(encoding="utf-8")
        st = path.stat()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = {}
    data = data if isinstance(data, dict) else {}
    requested = data.get("requested", st.st_mtime)
    timeout = data.get("timeout_s", default_timeout_s)
    return float(requested) + float(timeout)
