"""Reconstruction jobs: a durable queue (SQLite store + job folders) and its runners.

- :mod:`.store` — the SQLite job table and the folder <-> store rebuilds;
- :mod:`.manager` — :class:`JobManager`: submit, cancel, resume, clone, delete, list, logs, progress;
- :mod:`.local` — the detached job host and the local (subprocess) runner;
- :mod:`.ray_runner` — the Ray runner (optional ``ray``);
- :mod:`.progress` — incremental ``events.jsonl`` reader with ETAs;
- :mod:`.process` — process helpers both runners use; :mod:`.cli` — ``python -m skyfall_core jobs``.
  (The ``[jobs]`` settings are ``skyfall_core.config.JobsSettings``.)

Nothing is imported eagerly (``python -m skyfall_core.jobs.local`` must start fast).
"""

from __future__ import annotations

from typing import Any

__all__ = ["JobManager", "JobInfo", "JobStore", "JobRecord", "Progress"]
_HOMES = {"JobManager": "manager", "JobInfo": "manager", "JobStore": "store", "JobRecord": "store",
          "Progress": "progress"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
