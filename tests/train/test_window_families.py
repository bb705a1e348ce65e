"""Real Ray Train runs of the window families (TimeLDM, ST-Diff) on `sines:L` and `csv:PATH:L` data: the series
path of the launcher (the training Dataset, held-out rows, data-derived init on the driver) end to end.
Slow: Ray and DeepSpeed start for real."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seriesforge import registry
from seriesforge.checkpoint import load_weights
from seriesforge.data.sources.windows import SINES_N, SINES_SEED, load_sines
from seriesforge.generate import load
from seriesforge.train import launch

pytestmark = pytest.mark.slow


def _metrics(run_dir, stage):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [m for m in lines if m["stage"] == stage]


@pytest.fixture
def small_csv(tmp_path):
    """A 3-column numeric CSV with a date column (dropped by the reader): 160 rows -> 137 windows of 24."""
    t = np.arange(160)
    rows = ["date,a,b,c"] + [f"2020-01-{1 + i % 28:02d},{np.sin(i / 5):.5f},{np.cos(i / 7):.5f},{i / 160:.5f}"
                             for i in t]
    path = tmp_path / "small.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_stdiff_zero2_on_sines_initialises_from_data_and_generates(ray_local, tmp_path):
    cfg = registry.build_run_config("stdiff", preset="debug", data_spec="sines:24",
                                    sets=["strategy.zero_stage=2", "scaling.num_workers=2", "data.val_fraction=0.05",
                                          "data.val_rows=64"])
    result = launch.run(cfg, tmp_path / "run")
    meta = result.checkpoint.meta
    assert (meta["stage"], meta["step"], meta["world_size"]) == ("denoiser", 20, 2)
    logged = _metrics(tmp_path / "run", "denoiser")
    assert all(np.isfinite(m["val_loss"]) and "cov_loss" in m for m in logged)
    # the scaler and the attention biases hold data-derived values, the ones the driver computed
    weights = load_weights(result.checkpoint)
    family = registry.get("stdiff")
    sample = load_sines(SINES_N, 24, seed=SINES_SEED).x
    expected = family.data_init(cfg.model, sample[np.unique(np.linspace(0, len(sample) - 1, 4096).round()
                                                            .astype(int))])
    for key in ("scaler.re_std", "scaler.trend_mean"):
        torch.testing.assert_close(weights[key], expected[key].float())
    assert weights["denoiser.blocks.0.covariate_bias_raw"].abs().max() > 0.1
    out = load(tmp_path / "run").sample(n=3, length=24, seed=0)
    assert out.shape == (3, 5, 24) and np.isfinite(out).all()
    with pytest.raises(Exception, match="length"):
        load(tmp_path / "run").sample(n=1, length=25, seed=0)


def test_timeldm_ddp_on_csv_steps_beta_and_generates(ray_local, small_csv, tmp_path):
    cfg = registry.build_run_config("timeldm", preset="debug", data_spec=f"csv:{small_csv}:24",
                                    sets=["strategy.kind=ddp", "scaling.num_workers=2", "stages.vae.steps=30",
                                          "stages.vae.batch_size=8", "stages.ldm.batch_size=8",
                                          "model.beta_patience=1"])
    assert cfg.model.channels == 3  # sized from the CSV's numeric columns (the date column is dropped)
    result = launch.run(cfg, tmp_path / "run")
    assert result.checkpoint.meta["stage"] == "ldm"
    vae = _metrics(tmp_path / "run", "vae")
    assert vae[-1]["recon"] < vae[0]["recon"], "VAE reconstruction did not improve"
    betas = [m["beta"] for m in vae]
    assert all(b <= a for a, b in zip(betas, betas[1:])) and min(betas) >= 1e-5  # steps down, never up
    assert all(np.isfinite(m["diffusion_loss"]) for m in _metrics(tmp_path / "run", "ldm"))
    out = load(tmp_path / "run").sample(n=2, length=24, seed=1)
    assert out.shape == (2, 3, 24) and np.isfinite(out).all()


def test_window_family_refuses_a_length_the_data_does_not_have(tmp_path):
    with pytest.raises(Exception, match="data.lengths"):  # the model's length is not the data's
        registry.build_run_config("stdiff", preset="debug", data_spec="sines:24", sets=["data.lengths=[32]"])
    cfg = registry.build_run_config("stdiff", preset="debug", data_spec="sines:24",
                                    sets=["data.lengths=[32]", "model.length=32"])
    with pytest.raises(Exception, match=r"data.lengths: \[32\] but --data sines:24"):  # before Ray starts
        launch.run(cfg, tmp_path / "run")
    cfg = registry.build_run_config("stdiff", preset="debug", data_spec="sines:24", sets=["model.channels=3"])
    with pytest.raises(Exception, match="model.channels: 3 but --data sines:24 has K=5"):
        launch.run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
