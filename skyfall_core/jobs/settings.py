"""The ``[jobs]`` section of ``config.toml``: which runner starts jobs, and how many at a time.

Self-contained (no import of :mod:`skyfall_core.config`) so that ``config.py`` can import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class JobsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    runner: Literal["local", "ray"] = "local"  # local = one OS process a job on this machine; ray = a Ray task
    ray_address: str = "auto"  # "auto" = the running cluster (`ray start --head`), or "host:6379"
    max_concurrent: int = Field(1, ge=1)  # jobs running at once (local: 1 a GPU; ray: the cluster's GPUs)
    cancel_timeout_s: float = Field(60.0, gt=0)  # graceful cancel; then SIGTERM (local) / ray.cancel
    kill_grace_s: float = Field(10.0, gt=0)  # after SIGTERM, before SIGKILL of the process group
    num_gpus: float = Field(1.0, ge=0)  # Ray: GPUs a job reserves; 0 = a CPU-only job
    num_cpus: float = Field(1.0, gt=0)  # Ray: CPUs a job reserves
    store: Path | None = None  # the job store; None = <workspace>/jobs.sqlite (keep it on a local disk)


def jobs_settings(config: Any) -> JobsSettings:
    """The ``[jobs]`` settings of a loaded :class:`~skyfall_core.config.Config` (defaults if absent)."""
    settings = getattr(config, "jobs", None)
    return settings if isinstance(settings, JobsSettings) else JobsSettings()

