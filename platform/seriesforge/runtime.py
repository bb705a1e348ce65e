"""Connecting to Ray: an embedded local instance by default, a cluster with --address or RAY_ADDRESS."""

from __future__ import annotations

import logging
import os

import ray

# Environment for Ray's processes, where the user has not set these already (embedded Ray inherits it from this
# process; cluster jobs get it through their runtime_env). Arrow's default mimalloc pool keeps the pages a task
# freed, so pooled Ray workers stay near the largest batch they ever held: after the one-off 600k-row table pass the
# three pooled workers held 1.54 GB with mimalloc, 1.24 GB with the system allocator, at the same streaming rate
# within this VM's noise (single runs and alternating runs, 2026-11-30; docs/results.md, issue #3).
WORKER_ENV = {"ARROW_DEFAULT_MEMORY_POOL": "system"}


# Settings of Ray's node daemons (raylet, GCS), read from their environment when a node starts: embedded Ray here,
# `ray start` on clusters (cluster/local/local_cluster.py, ray_cluster.yaml and cluster/Dockerfile set the same).
# The raylet frees objects whose last reference is gone in batches, once a second by default. A training stream of
# ~4-9 MB blocks then lands about a second's worth of blocks at fresh object-store addresses, and every store page
# a Train worker has once mapped stays in its resident memory: after 5 epochs of the 600k-row corpus the two
# workers held 353 MB of store pages, against 137-147 MB when freed every 100 ms, at the same later-epoch streaming
# rate. It costs no training speed we could measure: eight alternating demo runs gave the DiT stage a median 22.4
# steps/s at 100 ms against 22.5 at Ray's default (docs/results.md, issue #3). 0 would free on every release, one
# flush per object; 100 ms bounds the flushes.
NODE_ENV = {"RAY_free_objects_period_milliseconds": "100"}


def worker_env() -> dict[str, str]:
    """WORKER_ENV, with any value the user set in this process's environment taking precedence."""
    return _user_first(WORKER_ENV)


def node_env() -> dict[str, str]:
    """NODE_ENV, with any value the user set in this process's environment taking precedence."""
    return _user_first(NODE_ENV)


def _user_first(defaults: dict[str, str]) -> dict[str, str]:
    return {key: os.environ.get(key, value) for key, value in defaults.items()}


def init_ray(address: str | None = None, *, min_cpus: int = 0) -> str:
    """Start or join Ray once per process; returns a one-line description for the user.

    Embedded mode reserves at least `min_cpus` logical CPUs: training workers hold one each for the whole run,
    and Ray Data's read tasks need CPUs of their own beside them, or the pipeline would wait forever.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return "using the Ray instance already initialised in this process"
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    configure_ray_data()
    if address:
        ray.init(address=address, **quiet)
        return f"connected to Ray cluster at {address}"
    cpus = max(os.cpu_count() or 1, min_cpus)
    # before ray.init: the local GCS, raylet and every worker the raylet starts inherit this environment
    os.environ.update({**worker_env(), **node_env()})
    ray.init(num_cpus=cpus, **quiet)  # the dashboard stays: Ray Train's state queries and `ray job` use it
    return f"started an embedded local Ray ({cpus} logical CPUs)"


def configure_ray_data() -> None:
    """Ray Data settings for this process's datasets (plans are fixed when a dataset is created, in the driver).

    - Per-operator progress bars flood worker logs; training prints its own progress lines instead.
    - Parquet reads use Ray Data's V1 datasource unless RAY_DATA_USE_DATASOURCE_V2 says otherwise. The V2 reader
      (the 2.60 default) lists files through a pool of 32 footer-reader actors started afresh for every read;
      on a 2-core node that took 20-40 s and ~0.5 GB before the first row of a 6 000-row table, against 1-8 s
      with V1 (measured, 2026-11-23). Our tables have a handful of files, so V2's parallel footer reads buy
      nothing here.
    """
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    if "RAY_DATA_USE_DATASOURCE_V2" not in os.environ:
        ctx.use_datasource_v2 = False


def cluster_has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


# At most this many release tasks: one per logical CPU reaches every pooled worker of a small cluster; a large
# one keeps most of its pool, which only costs memory, not correctness.
RELEASE_TASKS_MAX = 64


def release_pooled_memory(hold_s: float = 0.3) -> int:
    """Ask Ray's pooled workers to hand freed memory back to the OS; returns how many workers ran the request.

    After a one-off heavy pass (the caption table's write tasks gather ~100 000 rows each), the workers that ran
    it stay in Ray's pool holding the allocator's freed pages, ~360 MB each after the 600k pass, through the whole
    training run. One short task per logical CPU, each holding its worker `hold_s` seconds so that the others land
    on other workers, runs the garbage collector and malloc_trim: the node's memory fell by 376 MB after the 600k
    pass (2 325 -> 1 949 MB, measured 2026-12-01), in 0.7 s.
    """
    count = min(RELEASE_TASKS_MAX, max(1, int(ray.cluster_resources().get("CPU", 1))))
    task = _release_unused_memory.options(scheduling_strategy="SPREAD")
    return len(set(ray.get([task.remote(hold_s) for _ in range(count)])))


@ray.remote(num_cpus=1)
def _release_unused_memory(hold_s: float) -> int:
    import ctypes
    import gc
    import time

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc only; elsewhere the collector's work is all there is
    except (OSError, AttributeError):
        pass
    time.sleep(hold_s)
    return os.getpid()
