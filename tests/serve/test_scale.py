"""Serve at scale, over real HTTP: a hundred checkpoints behind one replica through multiplexing (LRU-bounded), and
the generator deployment autoscaling out under concurrent load and serving on.

The checkpoints are untrained ST-Diff windows (no text encoder: loading one is cheap), one per model name, the way
per-dataset UCR checkpoints would be served."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from seriesforge.client import Client

pytestmark = pytest.mark.slow

MODELS = 100


@pytest.fixture(scope="module")
def scaled(ray_local, tmp_path_factory, free_port, make_window_checkpoint):
    from ray import serve

    from seriesforge.serving import config as sc
    from seriesforge.serving.app import deploy

    root = tmp_path_factory.mktemp("many")
    # a hundred checkpoint directories (distinct files, as a hundred datasets' runs would be)
    models = {f"ds{i:03d}": str(make_window_checkpoint(root / f"ds{i:03d}", "stdiff", weight_seed=i % 3))
              for i in range(MODELS)}
    http = sc.HttpConfig(port=free_port())
    many = sc.from_args({"models": models, "ingress": {"num_cpus": 0.05},
                         "autoscaling": {"min_replicas": 1, "max_replicas": 1},
                         "replica": {"num_cpus": 0.25, "max_models": 4}})
    auto = sc.from_args({"models": {"w": models["ds000"]}, "ingress": {"num_cpus": 0.05},
                         "batching": {"enabled": False},
                         "autoscaling": {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1,
                                         "upscale_delay_s": 0.5, "downscale_delay_s": 600},
                         "replica": {"num_cpus": 0.25}, "limits": {"max_steps": 400}})
    urls = {"many": deploy(many, http, name="many", route_prefix="/many"),
            "auto": deploy(auto, http, name="auto", route_prefix="/auto")}
    yield urls
    serve.shutdown()


def test_a_hundred_models_behind_one_replica_load_and_evict_lru(scaled):
    with Client(scaled["many"]) as client:
        assert len(client.models()) == MODELS
        before = client.stats()
        for i in range(MODELS):
            assert client.generate(f"ds{i:03d}", length=24, n=1, seed=0).shape == (1, 5, 24)
        after = client.stats()
        for i in range(MODELS - 4, MODELS):  # the last four are still held: no new loads
            client.generate(f"ds{i:03d}", length=24, n=1, seed=0)
        again = client.stats()
    loads = sum(after["loads"].values()) - sum(before["loads"].values())
    evictions = sum(after["evictions"].values()) - sum(before["evictions"].values())
    assert loads >= MODELS - len(before["loaded"]) and len(after["loaded"]) <= 4, after
    assert evictions >= loads - 4, (loads, evictions)
    assert sorted(after["loaded"]) == [f"ds{i:03d}" for i in range(MODELS - 4, MODELS)]
    assert again["loads"] == after["loads"], "an LRU hit must not load again"


def _replicas(app: str) -> int:
    from ray import serve

    deployments = serve.status().applications[app].deployments
    states = next(d for name, d in deployments.items() if name.startswith("Generator")).replica_states
    return int(states.get("RUNNING", 0))


def test_the_generator_scales_out_under_load_and_keeps_serving(scaled):
    assert _replicas("auto") == 1
    stop = threading.Event()
    codes: list[int] = []

    def client_loop() -> None:
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                r = http.post(f"{scaled['auto']}/v1/generate", json={"model": "w", "length": 24, "n": 4,
                                                                      "steps": 200})
                codes.append(r.status_code)

    with ThreadPoolExecutor(6) as pool:
        for _ in range(6):
            pool.submit(client_loop)
        deadline = time.monotonic() + 120
        while _replicas("auto") < 2 and time.monotonic() < deadline:
            time.sleep(1)
        scaled_to = _replicas("auto")
        time.sleep(2)  # both replicas take requests
        stop.set()
    assert scaled_to == 2, f"still {scaled_to} replica(s) after 120 s of load above target"
    assert codes and set(codes) == {200}, sorted(set(codes))
