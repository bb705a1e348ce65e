"""Serve's config, request rules and batch grouping, without starting Serve (fast, no Ray).

The example serve/config.yaml must validate against our ServeConfig *and* Ray's own ServeDeploySchema, since
both `seriesforge serve --config` and `serve run` read it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from seriesforge.errors import ConfigError, RequestError
from seriesforge.serving import api, sampling
from seriesforge.serving import config as sc

ROOT = Path(__file__).resolve().parents[2]
CARD = {"family": "t2s", "conditions": "caption", "max_length": 64}


def test_example_config_validates_for_both_entry_points():
    from ray.serve.schema import ServeDeploySchema

    path = ROOT / "serve" / "config.yaml"
    cfg, http = sc.load_file(path)
    assert http.host == "127.0.0.1", "the example must bind to loopback"
    assert cfg.models and cfg.batching.enabled and cfg.autoscaling.max_replicas >= cfg.autoscaling.min_replicas
    schema = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    assert schema.applications[0].import_path == sc.IMPORT_PATH


@pytest.mark.parametrize("args, message", [
    ({"batching": {"max_batch_size": 0}}, "args.batching.max_batch_size: must be >= 1"),
    ({"batching": {"max_batch_size": 128}}, "args.replica.max_ongoing_requests: must be >= batching.max_batch_size"),
    ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "args.autoscaling.max_replicas: must be >="),
    ({"replica": {"max_models": 0}}, "args.replica.max_models: must be >= 1"),
    ({"limits": {"max_points": "many"}}, "args.limits.max_points: expected an integer"),
    ({"models": {"bad name!": "/x"}}, "args.models.bad name!: a model name is"),
    ({"api_key_env": "NOT-A-NAME"}, "args.api_key_env: must be an environment variable name"),
    ({"batching": {"size": 4}}, "args.batching.size: unknown key"),
])
def test_bad_config_names_the_key(args, message):
    with pytest.raises(ConfigError) as err:
        sc.from_args(args)
    assert str(err.value).startswith(message), str(err.value)


def test_config_file_must_be_ours(tmp_path):
    other = tmp_path / "c.yaml"
    other.write_text("applications:\n  - name: x\n    import_path: other.app:build\n")
    with pytest.raises(ConfigError, match="applications\\[0\\].import_path"):
        sc.load_file(other)
    other.write_text("http_options: {port: 0}\napplications:\n  - import_path: seriesforge.serving.app:build_app\n")
    with pytest.raises(ConfigError, match="http_options.port: must be in"):
        sc.load_file(other)


def test_checkpoint_flags_and_api_key(monkeypatch, tmp_path):
    cfg = sc.with_checkpoints(sc.ServeConfig(models={"old": "/x"}), [str(tmp_path / "run1"), "ecg=/data/ecg"])
    assert cfg.models == {"run1": str(tmp_path / "run1"), "ecg": "/data/ecg"}
    with pytest.raises(ConfigError, match="given twice"):
        sc.with_checkpoints(cfg, ["m=/a", "m=/b"])
    keyed = sc.ServeConfig(api_key_env="SF_TEST_KEY")
    monkeypatch.delenv("SF_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="SF_TEST_KEY is not set"):
        sc.read_api_key(keyed)  # a server told to require a key must not start open
    monkeypatch.setenv("SF_TEST_KEY", "s3cret")
    assert sc.read_api_key(keyed) == "s3cret" and sc.read_api_key(sc.ServeConfig()) is None


def _req(**kw) -> api.GenerateRequest:
    return api.GenerateRequest.model_validate({"model": "m", "length": 24, "captions": ["up"], **kw})


@pytest.mark.parametrize("kw, status, field", [
    ({"model": "nope"}, 404, "model:"),
    ({"length": 0}, 422, "length:"),
    ({"length": 65}, 422, "length:"),
    ({"captions": ["a", " "]}, 422, "captions[1]:"),
    ({"captions": ["a"], "n": 2}, 422, "captions:"),
    ({"captions": None}, 422, "captions:"),
    ({"captions": []}, 422, "n:"),
    ({"class_labels": [0]}, 422, "class_labels:"),
    ({"steps": 0}, 422, "steps:"),
    ({"seed": -1}, 422, "seed:"),
    ({"captions": ["a"] * 40, "length": 64}, 413, "n x length:"),
])
def test_request_rules(kw, status, field):
    limits = sc.LimitsConfig(max_points=2048)
    with pytest.raises(api.ApiError) as err:
        api.check(_req(**kw), {"m": CARD}, limits)
    assert err.value.status == status and err.value.detail.startswith(field + " "), err.value.detail


def test_strict_types_and_field_names():
    from pydantic import ValidationError

    for body, field in [({"length": "24"}, "length:"), ({"n": 1.5}, "n:"), ({"captions": "up"}, "captions:"),
                        ({"captions": ["a", 3]}, "captions[1]:"), ({"extra": 1}, "extra:")]:
        with pytest.raises(ValidationError) as err:
            _req(**body)
        assert api.validation_message(err.value.errors()).startswith(field), (body, err.value.errors())
    job = api.check(_req(captions=["a", "b"]), {"m": CARD}, sc.LimitsConfig())
    assert (job.n, job.captions, job.seed) == (2, ("a", "b"), None)


def _job(**kw) -> api.Job:
    base = dict(model="a", n=1, length=24, captions=("up",), seed=None, steps=None, guidance=None)
    return api.Job(**{**base, **kw})


def test_grouping_by_model_length_steps_and_seed():
    jobs = [_job(), _job(length=40), _job(n=2, captions=("x", "y")), _job(model="b"), _job(steps=3),
            _job(seed=7), _job(seed=7), _job(length=40)]
    assert sampling.group_jobs(jobs) == [[0, 2], [1, 7], [3], [4], [5], [6]]


@pytest.fixture(scope="module")
def generator(tiny_checkpoints):
    from seriesforge.generate import load

    return load(tiny_checkpoints["a"])


def test_run_batch_splits_rows_and_isolates_a_bad_request(generator):
    jobs = [_job(n=2, captions=("rises", "falls")), _job(length=40), _job(), _job(length=2), _job(seed=5)]
    calls = []

    def counted(gen, members):
        calls.append(len(members))
        return sampling.sample_group(gen, members)

    out = sampling.run_batch(jobs, lambda name: generator, sample=counted)
    assert [o.shape for o in out[:3]] == [(2, 1, 24), (1, 1, 40), (1, 1, 24)]
    assert all(o.dtype == np.float32 for o in out[:3] + out[4:])
    assert isinstance(out[3], RequestError) and "length" in str(out[3])  # only the bad one fails
    # groups: {0, 2} in one call, {1}, {3} and {5} alone
    assert sorted(calls) == [1, 1, 1, 2]
    # a seeded request is sampled alone: exactly what the local sampler gives for that seed
    np.testing.assert_array_equal(out[4], generator.sample(n=1, length=24, captions=["up"], seed=5))


CLASS_CARD = {"family": "timevqvae", "conditions": "class", "max_length": 150, "trained_lengths": [150], "step": 1,
              "scaling": "series_minmax", "num_classes": 2}


@pytest.mark.parametrize("kw, status, field", [
    ({"class_labels": [0, 2]}, 422, "class_labels[1]:"),
    ({"class_labels": [-1]}, 422, "class_labels[0]:"),
    ({"class_labels": [0, 1], "n": 3}, 422, "class_labels:"),
    ({"class_labels": [0], "captions": ["up"]}, 422, "captions:"),
    ({"captions": ["up"]}, 422, "captions:"),
])
def test_class_label_rules(kw, status, field):
    req = api.GenerateRequest.model_validate({"model": "m", "length": 150, **kw})
    with pytest.raises(api.ApiError) as err:
        api.check(req, {"m": CLASS_CARD}, sc.LimitsConfig())
    assert err.value.status == status and err.value.detail.startswith(field + " "), err.value.detail


def test_class_models_take_labels_or_nothing():
    labelled = api.check(api.GenerateRequest.model_validate({"model": "m", "length": 150, "class_labels": [1, 0, 1]}),
                         {"m": CLASS_CARD}, sc.LimitsConfig())
    assert (labelled.n, labelled.labels) == (3, (1, 0, 1))
    plain = api.check(api.GenerateRequest.model_validate({"model": "m", "length": 150, "n": 2}),
                      {"m": CLASS_CARD}, sc.LimitsConfig())
    assert (plain.n, plain.labels) == (2, None)
