"""Connecting to Ray: an embedded local instance by default, a cluster with --address or RAY_ADDRESS."""

from __future__ import annotations

import logging
import os

import ray


def init_ray(address: str | None = None, *, min_cpus: int = 0) -> str:
    """Start or join Ray once per process; returns a one-line description for the user.

    Embedded mode reserves at least `min_cpus` logical CPUs: training workers hold one each for the whole run,
    and Ray Data's read tasks need CPUs of their own beside them, or the pipeline would wait forever.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return "using the Ray instance already initialised in this process"
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    _quiet_data_progress()
    if address:
        ray.init(address=address, **quiet)
        return f"connected to Ray cluster at {address}"
    cpus = max(os.cpu_count() or 1, min_cpus)
    ray.init(num_cpus=cpus, **quiet)  # the dashboard stays: Ray Train's state queries and `ray job` use it
    return f"started an embedded local Ray ({cpus} logical CPUs)"


def _quiet_data_progress() -> None:
    """Ray Data's per-operator bars flood worker logs; training prints its own progress lines instead."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False


def cluster_has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0
