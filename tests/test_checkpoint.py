"""The checkpoint format: atomic writes, verification, and picking a run's latest complete checkpoint."""

from __future__ import annotations

import json

import pytest

from seriesforge import checkpoint, config as C, registry
from seriesforge.errors import CheckpointError, RequestError
from seriesforge.generate import load


def _write(root, name, *, stage="denoiser", stage_index=1, step=10, family="t2s"):
    cfg = registry.preset_config("t2s", "debug", "captions:/unused")
    model = registry.get("t2s")(cfg.model)
    meta = {"family": family, "stage": stage, "stage_index": stage_index, "step": step}
    return checkpoint.write_checkpoint(root / name, config=C.to_dict(cfg), meta=meta, state_dict=model.state_dict())


def test_resolve_picks_latest_complete_checkpoint(tmp_path):
    run = tmp_path / "run"
    _write(run / "ray", "a", stage="autoencoder", stage_index=0, step=50)
    _write(run / "ray", "b", step=10)
    newest = _write(run / "ray", "c", step=20)
    broken = _write(run / "ray", "d", step=30)
    (broken / checkpoint.WEIGHTS).unlink()  # a half-copied checkpoint must be skipped
    assert checkpoint.resolve(run).path == newest


@pytest.mark.parametrize("damage, message", [
    (lambda p: (p / "meta.json").unlink(), "missing file meta.json"),
    (lambda p: (p / "config.json").write_text("{not json"), "corrupt JSON"),
    (lambda p: (p / checkpoint.WEIGHTS).write_bytes(b"xx"), "manifest says"),
    (lambda p: (p / checkpoint.WEIGHTS).unlink(), "missing file weights/model.safetensors"),
])
def test_damaged_checkpoints_are_named(tmp_path, damage, message):
    path = _write(tmp_path, "ckpt")
    damage(path)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.read_checkpoint(path)


def test_run_dir_without_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        checkpoint.resolve(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.resolve(tmp_path / "nope")


def test_checkpoint_of_another_family_or_shape_is_refused(tmp_path):
    path = _write(tmp_path, "ckpt")
    config = json.loads((path / "config.json").read_text())
    config["model"]["depth"] = 5  # weights no longer fit
    (path / "config.json").write_text(json.dumps(config))
    meta = json.loads((path / "meta.json").read_text())
    meta["files"]["config.json"] = (path / "config.json").stat().st_size
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="weights do not match family 't2s'"):
        load(path)
    other = _write(tmp_path, "other")
    meta = json.loads((other / "meta.json").read_text())
    meta["family"] = "timeldm"
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="differs from meta.json family 'timeldm'"):
        load(other)


def test_generator_rejects_bad_requests(tmp_path):
    gen = load(_write(tmp_path, "ckpt"))
    for kwargs, message in [
        ({"n": 0, "length": 24}, "n: must be a positive integer"),
        ({"n": 2, "length": 0}, "length: must be in"),
        ({"n": 2, "length": 10**6}, "length: must be in"),
        ({"n": 1, "length": 24, "captions": ["  "]}, r"captions\[0\]: empty caption"),
        ({"n": 1, "length": 24, "steps": 0}, "steps: must be a positive integer"),
    ]:
        with pytest.raises(RequestError, match=message):
            gen.sample(**kwargs)


def test_weights_are_safetensors_not_pickles(tmp_path):
    path = _write(tmp_path, "ckpt")
    raw = (path / checkpoint.WEIGHTS).read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert header["__metadata__"]["family"] == "t2s"
    assert all(v["dtype"] == "F32" for k, v in header.items() if k != "__metadata__")
