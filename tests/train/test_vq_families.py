"""Real Ray Train runs of the VQ families (TimeVQVAE + NM, TimeVQVDM) on a UCR dataset: labels in every batch,
stages chained in one job with a stored checkpoint per stage, between-stage work (NM's τ search, TimeVQVDM's latent
scalers) on every rank, a stage re-run alone from a stored stage checkpoint, and class-conditional generation.
Slow: Ray starts for real (2 workers, DDP over gloo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from seriesforge import registry
from seriesforge.checkpoint import load_weights, read_checkpoint
from seriesforge.errors import ConfigError, RequestError
from seriesforge.generate import load
from seriesforge.train import launch

pytestmark = pytest.mark.slow

GUNPOINT = Path(__file__).resolve().parents[1] / "fixtures" / "ucr" / "GunPoint"
SPEC = f"ucr:{GUNPOINT}"


def _stage_dirs(run_dir: Path) -> list[str]:
    return sorted(p.name for p in (run_dir / "stages").iterdir())


def test_timevqvae_chains_its_three_stages_and_generates_by_class(ray_local, tmp_path):
    cfg = registry.build_run_config("timevqvae", preset="debug", data_spec=SPEC, sets=["scaling.num_workers=2"])
    run = tmp_path / "run"
    result = launch.run(cfg, run)
    assert _stage_dirs(run) == ["0_vqvae", "1_prior", "2_mapper"]
    # each stage's checkpoint names the stored checkpoint of the stage before it
    origins = [read_checkpoint(run / "stages" / d).meta["from_checkpoint"] for d in _stage_dirs(run)]
    assert origins == [None, str(run / "stages" / "0_vqvae"), str(run / "stages" / "1_prior")]
    meta = result.checkpoint.meta
    assert (meta["stage"], meta["world_size"], meta["stages_done"]) == ("mapper", 2, ["vqvae", "prior", "mapper"])
    weights = load_weights(result.checkpoint)
    assert bool(weights["tau_searched"]) and min(abs(float(weights["tau"]) - t) for t in cfg.model.tau_grid) < 1e-6
    assert int(weights["mapper_steps"]) == cfg.stages["mapper"].steps
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {m["stage"] for m in logged} == {"vqvae", "prior", "mapper"}

    gen = load(run)
    labels = [0, 1, 1, 0]
    a = gen.sample(n=4, length=150, labels=labels, seed=3)
    b = gen.sample(n=4, length=150, labels=labels, seed=3)
    assert a.shape == (4, 1, 150) and np.isfinite(a).all() and np.array_equal(a, b)
    refined = gen.sample(n=4, length=150, labels=labels, seed=3, refine=True)
    assert refined.shape == a.shape and not np.allclose(refined, a)
    with pytest.raises(RequestError, match=r"labels\[1\]"):
        gen.sample(n=2, length=150, labels=[0, 2], seed=0)  # GunPoint has classes 0 and 1


def test_a_stage_reruns_alone_from_a_stored_stage_checkpoint(ray_local, tmp_path):
    """TimeVQVDM: train both stages, then re-run only `prior` from the stored tokenizer with another budget."""
    cfg = registry.build_run_config("timevqvdm", preset="debug", data_spec=SPEC, sets=["scaling.num_workers=2"])
    first = tmp_path / "first"
    launch.run(cfg, first)
    tokenizer = first / "stages" / "0_vqvae"
    stats = load_weights(read_checkpoint(first / "stages" / "1_prior"))["latent_stats"]
    assert not torch.equal(stats, torch.tensor([[0.0, 1.0], [0.0, 1.0]])), "latent scalers were not fitted"

    again = launch.config_from_checkpoint(tokenizer, stages=["prior"], sets=["stages.prior.steps=10"])
    second = tmp_path / "second"
    result = launch.run(again, second)
    assert _stage_dirs(second) == ["1_prior"]  # the tokenizer stage did not run again
    assert result.checkpoint.meta["from_checkpoint"] == str(tokenizer.resolve())
    assert result.checkpoint.meta["step"] == 10
    before, after = load_weights(read_checkpoint(tokenizer)), load_weights(result.checkpoint)
    for key in before:
        if key.startswith("tokenizer."):
            assert torch.equal(before[key], after[key]), f"{key} changed while re-running the prior"
    out = load(second).sample(n=2, length=150, labels=[1, 0], seed=0)
    assert out.shape == (2, 1, 150) and np.isfinite(out).all()

    with pytest.raises(ConfigError, match="not finished"):  # the prior needs a finished tokenizer
        launch.config_from_checkpoint(_unfinished(first, tmp_path), stages=["prior"])
    with pytest.raises(ConfigError, match="every stage is done"):
        launch.config_from_checkpoint(first, stages=[])


def _unfinished(run: Path, tmp_path: Path) -> Path:
    """A copy of the tokenizer's stage checkpoint whose meta says the stage is not done (a mid-stage save)."""
    import shutil

    copy = tmp_path / "unfinished"
    shutil.copytree(run / "stages" / "0_vqvae", copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["stages_done"] = []
    (copy / "meta.json").write_text(json.dumps(meta))
    return copy


def test_a_ucr_model_refuses_data_of_another_shape(tmp_path):
    cfg = registry.build_run_config("timevqvae", preset="debug", data_spec=SPEC, sets=["model.num_classes=3"])
    with pytest.raises(Exception, match="model.num_classes: 3 but"):
        launch.check_data(cfg)
