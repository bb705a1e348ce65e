"""What the embedded Ray's processes inherit from `seriesforge.runtime`."""

from seriesforge.runtime import NODE_ENV, node_env, worker_env


def test_embedded_ray_workers_use_the_system_arrow_allocator(ray_local):
    @ray_local.remote
    def arrow_backend() -> str:
        import pyarrow as pa

        return pa.default_memory_pool().backend_name

    assert ray_local.get(arrow_backend.remote()) == "system"


def test_the_embedded_raylet_starts_with_the_node_environment(ray_local):
    """Ray's daemons read their settings from RAY_* variables when they start (NODE_ENV says which and why)."""
    import psutil

    raylets = [p for p in psutil.Process().children(recursive=True) if p.name() == "raylet"]
    assert raylets, "no raylet under this process: is Ray embedded?"
    for raylet in raylets:
        environ = raylet.environ()
        assert {k: environ.get(k) for k in NODE_ENV} == node_env()


def test_a_value_the_user_set_wins(monkeypatch):
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    assert worker_env()["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc"
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL")
    assert worker_env()["ARROW_DEFAULT_MEMORY_POOL"] == "system"
    monkeypatch.setenv("RAY_free_objects_period_milliseconds", "1000")
    assert node_env()["RAY_free_objects_period_milliseconds"] == "1000"


def test_release_reaches_the_pooled_workers(ray_local):
    from seriesforge.runtime import release_pooled_memory

    @ray_local.remote(num_cpus=1)
    def busy() -> int:
        import os
        import time

        time.sleep(0.5)
        return os.getpid()

    # workers now idle in the pool (up to 4: earlier tests' actors may still hold CPUs)
    pooled = set(ray_local.get([busy.remote() for _ in range(4)]))
    assert len(pooled) >= 2
    assert release_pooled_memory() >= 2  # each request holds its worker, so they spread over the pool
