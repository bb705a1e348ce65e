"""The Serve application over real HTTP on 127.0.0.1: every endpoint, batching, multiplexing, bad input, API key.

Two applications share one Serve instance (started once for this module on the session Ray, torn down after):
  /      "keyed": models a and b, API key required, batches of up to 8 gathered for 0.1 s
  /lru   "lru":   models a, b and "broken", no key, one model per replica, so every switch evicts
  /slow  "slow":  model a with a 10 ms request timeout, which no sampling call meets
  /win   "win":   untrained fixed-length checkpoints: stdiff, timeldm (unconditional, L = 24, K = 5) and timevqvae
                   (class-conditional, L = 150, 2 classes)
Nothing is mocked: the generator replicas load the checkpoints through `seriesforge.generate` and sample.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from seriesforge.cli import main
from seriesforge.client import Client
from seriesforge.errors import EndpointError

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}
GOOD = {"model": "a", "length": 24, "captions": ["rises"]}


@pytest.fixture(scope="module")
def served(ray_local, tiny_checkpoints, tmp_path_factory, free_port, make_checkpoint, make_window_checkpoint):
    from ray import serve

    from seriesforge.serving import config as sc
    from seriesforge.serving.app import deploy

    broken = make_checkpoint(tmp_path_factory.mktemp("broken") / "broken", weight_seed=3)
    models = {name: str(path) for name, path in tiny_checkpoints.items()}
    common = {"autoscaling": {"min_replicas": 1, "max_replicas": 1}, "ingress": {"num_cpus": 0.05}}
    keyed = sc.from_args({**common, "models": models, "api_key_env": "UNUSED_IN_DEPLOY",
                          "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.1},
                          "replica": {"num_cpus": 0.5, "max_models": 2},
                          "limits": {"max_n": 16, "max_points": 4096, "max_steps": 50}})
    lru = sc.from_args({**common, "models": {**models, "broken": str(broken)},
                        "replica": {"num_cpus": 0.5, "max_models": 1}})
    http = sc.HttpConfig(port=free_port())
    url = deploy(keyed, http, api_key=KEY)
    lru_url = deploy(lru, http, name="lru", route_prefix="/lru")
    slow = sc.from_args({**common, "models": {"a": models["a"]}, "replica": {"num_cpus": 0.25},
                         "limits": {"request_timeout_s": 0.01}})
    slow_url = deploy(slow, http, name="slow", route_prefix="/slow")
    windows = {fam: str(make_window_checkpoint(tmp_path_factory.mktemp(fam) / fam, fam))
               for fam in ("stdiff", "timeldm", "timevqvae")}
    win = sc.from_args({**common, "models": windows, "replica": {"num_cpus": 0.25, "max_models": 3}})
    win_url = deploy(win, http, name="win", route_prefix="/win")
    (broken / "weights" / "model.safetensors").write_bytes(b"not safetensors")  # a fault only a replica meets
    httpx.post(f"{url}/v1/generate", json=GOOD, headers=AUTH, timeout=120).raise_for_status()  # warm: load, encoder
    yield {"url": url, "lru": lru_url, "slow": slow_url, "win": win_url, "checkpoints": tiny_checkpoints}
    serve.shutdown()


def post(url: str, body, headers=AUTH) -> httpx.Response:
    kw = {"content": body} if isinstance(body, (str, bytes)) else {"json": body}
    return httpx.post(f"{url}/v1/generate", headers={"content-type": "application/json", **headers}, timeout=120,
                      **kw)


def test_every_endpoint(served):
    url = served["url"]
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "models": 2}
    cards = httpx.get(f"{url}/v1/models", headers=AUTH).json()["models"]
    assert [(c["name"], c["family"], c["conditions"]) for c in cards] == [("a", "t2s", "caption"),
                                                                        ("b", "t2s", "caption")]
    assert "checkpoint" not in cards[0], "server paths stay private"
    assert httpx.get(f"{url}/docs").status_code == 200
    spec = httpx.get(f"{url}/openapi.json").json()
    assert {"/v1/generate", "/v1/models", "/v1/stats", "/healthz"} <= set(spec["paths"])
    r = post(url, {**GOOD, "captions": ["rises", "falls"], "seed": 3})
    body = r.json()
    assert r.status_code == 200 and body["shape"] == [2, 1, 24] and body["seed"] == 3 and body["model"] == "a"
    assert np.asarray(body["series"]).shape == (2, 1, 24)
    npy = post(url, {**GOOD, "format": "npy", "seed": 3})
    assert npy.headers["content-type"] == "application/octet-stream"
    with Client(url, api_key=KEY) as client:
        assert client.health()["status"] == "ok" and len(client.models()) == 2
        x = client.generate("a", length=24, captions=["rises", "falls"], seed=3)
        assert client.stats()["requests"] >= 3
    assert x.dtype == np.float32 and np.array_equal(x, np.asarray(body["series"], dtype=np.float32))


def test_window_families_serve_unconditionally_at_their_one_length(served):
    """TimeLDM and ST-Diff go through the same registry path: no captions, (n, K, L) back, other lengths 422."""
    url = served["win"]
    cards = {c["name"]: c for c in httpx.get(f"{url}/v1/models").json()["models"]}
    assert {(c["family"], c["conditions"], c["max_length"]) for c in cards.values()} == {
        ("stdiff", "none", 24), ("timeldm", "none", 24), ("timevqvae", "class", 150)}
    for model in ("stdiff", "timeldm"):
        r = post(url, {"model": model, "n": 2, "length": 24, "seed": 1, "steps": 3}, headers={})
        assert r.status_code == 200 and r.json()["shape"] == [2, 5, 24], r.text
        bad = post(url, {"model": model, "n": 1, "length": 25}, headers={})
        assert bad.status_code == 422 and "length" in bad.text
        captioned = post(url, {"model": model, "length": 24, "captions": ["rises"]}, headers={})
        assert captioned.status_code == 422 and "captions" in captioned.text
    assert post(url, {"model": "stdiff", "n": 1, "length": 24, "steps": 2}, headers={}).status_code == 200


def test_a_class_model_serves_labels_and_the_null_class(served):
    """TimeVQVAE over HTTP: one sample per class label, unconditional without labels; a class it lacks is 422 and
    the server answers the next request."""
    url = served["win"]
    card = {c["name"]: c for c in httpx.get(f"{url}/v1/models").json()["models"]}["timevqvae"]
    assert card["num_classes"] == 2
    r = post(url, {"model": "timevqvae", "length": 150, "class_labels": [0, 1, 1], "seed": 2}, headers={})
    assert r.status_code == 200 and r.json()["shape"] == [3, 1, 150], r.text
    bad = post(url, {"model": "timevqvae", "length": 150, "class_labels": [0, 5]}, headers={})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("class_labels[1]:"), bad.text
    r = post(url, {"model": "timevqvae", "length": 150, "n": 2}, headers={})
    assert r.status_code == 200 and r.json()["shape"] == [2, 1, 150], r.text
    unrefined = post(url, {"model": "timevqvae", "length": 150, "n": 1, "refine": True}, headers={})
    assert unrefined.status_code == 422 and unrefined.json()["detail"].startswith("refine:"), unrefined.text


def test_served_samples_are_the_local_samplers(served):
    """A seeded request is sampled alone: bit for bit what `Generator.sample` gives locally, per model."""
    from seriesforge.generate import load

    with Client(served["url"], api_key=KEY) as client:
        remote = {m: client.generate(m, length=30, captions=["rises", "falls"], seed=11) for m in ("a", "b")}
    for name, x in remote.items():
        local = load(served["checkpoints"][name]).sample(n=2, length=30, captions=["rises", "falls"], seed=11)
        np.testing.assert_allclose(x, local, atol=1e-5)
    assert not np.allclose(remote["a"], remote["b"]), "the two models must differ (routing by model name)"


def test_concurrent_requests_are_batched_and_grouped(served):
    """8 requests at once of two models and two lengths: batches > 1 are observed, every answer has its shape."""
    url, barrier = served["url"], threading.Barrier(8)
    bodies = [{"model": "ab"[i % 2], "length": (24, 40)[i // 2 % 2], "captions": ["wave"] * (1 + i % 3)}
              for i in range(8)]

    def call(body):
        barrier.wait()
        return post(url, {**body, "format": "npy"})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, bodies))
    from seriesforge.serving.api import decode_npy

    for body, r in zip(bodies, responses):
        assert r.status_code == 200, r.text
        assert decode_npy(r.content).shape == (len(body["captions"]), 1, body["length"])
    sizes = [int(r.headers["x-batch-size"]) for r in responses]
    assert max(sizes) > 1, f"no batching observed: {sizes}"
    assert httpx.get(f"{url}/v1/stats", headers=AUTH).json()["max_batch_size_seen"] > 1


@pytest.mark.parametrize("body, status, field", [
    ({**GOOD, "model": "nope"}, 404, "model:"),
    ({**GOOD, "length": "24"}, 422, "length:"),
    ({**GOOD, "n": 1.5}, 422, "n:"),
    ({**GOOD, "captions": "rises"}, 422, "captions:"),
    ({**GOOD, "colour": "red"}, 422, "colour:"),
    ('{"model": "a", "length": ', 422, "body:"),
    ({**GOOD, "captions": ["ok", "  "]}, 422, "captions[1]:"),
    ({**GOOD, "captions": []}, 422, "n:"),
    ({**GOOD, "n": 2}, 422, "captions:"),
    ({**GOOD, "captions": ["x"] * 17}, 422, "n:"),
    ({**GOOD, "length": 0}, 422, "length:"),
    ({**GOOD, "length": 4096}, 422, "length:"),
    ({**GOOD, "length": 2}, 422, "length:"),  # within the API's range, refused by the family's sampler
    ({**GOOD, "captions": ["x"] * 3, "length": 2000}, 413, "n x length:"),
    ({**GOOD, "class_labels": [1]}, 422, "class_labels:"),
    ({"model": "a", "length": 24}, 422, "captions:"),
    ({**GOOD, "steps": 0}, 422, "steps:"),
    ({**GOOD, "steps": 51}, 422, "steps:"),
    ({**GOOD, "seed": -1}, 422, "seed:"),
])
def test_bad_input_is_named_and_the_server_keeps_serving(served, body, status, field):
    r = post(served["url"], body)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(field), r.json()
    assert post(served["url"], GOOD).status_code == 200


def test_api_key_both_ways(served):
    url = served["url"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        for r in (post(url, GOOD, headers=headers), httpx.get(f"{url}/v1/models", headers=headers)):
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    assert post(url, {"model": "a"}, headers={}).status_code == 401, "auth is checked before the body"
    assert httpx.get(f"{url}/healthz").status_code == 200, "liveness stays open"
    assert post(url, GOOD).status_code == 200
    with pytest.raises(EndpointError) as err:
        Client(url).models()
    assert err.value.status == 401


def test_multiplexing_loads_and_evicts(served):
    with Client(served["lru"]) as client:
        client.generate("b", length=24, captions=["up"])  # a known start: b alone is loaded
        before = client.stats()
        for model in ("a", "b", "a"):
            assert client.generate(model, length=24, captions=["up"]).shape == (1, 1, 24)
        after = client.stats()
    loads = {m: after["loads"].get(m, 0) - before["loads"].get(m, 0) for m in ("a", "b")}
    evictions = {m: after["evictions"].get(m, 0) - before["evictions"].get(m, 0) for m in ("a", "b")}
    assert before["loaded"] == ["b"] and after["loaded"] == ["a"], "one model per replica: only the last stays"
    assert loads == {"a": 2, "b": 1} and evictions == {"a": 1, "b": 2}, (before, after)


def test_a_fault_answers_500_to_its_request_only(served):
    r = post(served["lru"], {**GOOD, "model": "broken"}, headers={})
    assert r.status_code == 500 and "internal error" in r.json()["detail"], r.text
    assert post(served["lru"], GOOD, headers={}).status_code == 200


def test_request_timeout_answers_504_and_the_server_keeps_serving(served):
    r = post(served["slow"], GOOD, headers={})
    assert r.status_code == 504 and r.json()["detail"].startswith("request: no answer within"), r.text
    assert httpx.get(f"{served['slow']}/healthz").status_code == 200
    assert post(served["url"], GOOD).status_code == 200


def test_cli_generate_from_an_endpoint(served, tmp_path, monkeypatch, capsys):
    from seriesforge.generate import load

    monkeypatch.setenv("SF_TEST_API_KEY", KEY)
    base = ["generate", "--endpoint", served["url"], "--model", "b", "--api-key-env", "SF_TEST_API_KEY"]
    out = tmp_path / "x.npy"
    assert main([*base, "--caption", "rises", "--samples-per-caption", "2", "--length", "24", "--out", str(out)]) == 0
    local = load(served["checkpoints"]["b"]).sample(n=2, length=24, captions=["rises"] * 2, seed=0)
    np.testing.assert_allclose(np.load(out), local, atol=1e-5)
    capsys.readouterr()
    assert main([*base, "--caption", "", "--length", "24", "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]  # not Ray's logs
    assert len(err) == 1 and "422 captions[0]: empty caption" in err[0], err
    assert main(["generate", "--endpoint", served["url"], "--caption", "x", "--length", "24", "--out", str(out)]) == 2
    assert "--model: required with --endpoint" in capsys.readouterr().err
