"""TimeLDM and ST-Diff as families, without Ray: each stage's loss falls on a tiny set, the data-derived init
and the per-length geometry are what the paper's settings say, and sampling honours the request."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seriesforge import registry
from seriesforge.data.sources.windows import sines
from seriesforge.errors import RequestError

WINDOWS = sines(64, 24, seed=3)  # (64, 24, 5) in [0.5, 1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _family(name: str, *sets: str):
    cfg = registry.build_run_config(name, preset="debug", data_spec="sines:24", sets=list(sets))
    family = registry.get(name)
    model = family(cfg.model)
    model.load_state_dict(family.data_init(cfg.model, WINDOWS), strict=False)
    return family, cfg, model


def _fit(model, stage: str, steps: int, lr: float) -> tuple[float, float]:
    """Mean loss of the first and last 10 steps of a plain Adam loop on fixed windows."""
    torch.manual_seed(0)
    params = model.set_stage(stage)
    opt = torch.optim.Adam(params, lr=lr)
    batch = {"series": torch.from_numpy(WINDOWS)}
    losses = []
    for _ in range(steps):
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.after_step()
        losses.append(float(out.loss.detach()))
    return float(np.mean(losses[:10])), float(np.mean(losses[-10:]))


def test_timeldm_each_stage_lowers_its_loss():
    _, _, model = _family("timeldm", "model.ldm_width=256")  # the debug width (32) cannot carry d_in = 240
    first, last = _fit(model, "vae", 120, 3e-3)
    assert last < 0.5 * first, (first, last)
    first, last = _fit(model, "ldm", 150, 2e-3)
    assert last < 0.8 * first, (first, last)


def test_stdiff_loss_falls_and_ema_follows_the_weights():
    _, _, model = _family("stdiff", "model.ema_decay=0.9")
    start = [p.detach().clone() for p in model.denoiser_ema.parameters()]
    first, last = _fit(model, "denoiser", 120, 2e-3)
    assert last < 0.8 * first, (first, last)
    moved = [not torch.equal(a, b) for a, b in zip(start, model.denoiser_ema.parameters())]
    assert all(moved[-2:]), "the EMA copy did not follow the trained weights"
    assert not any(p.requires_grad for p in model.denoiser_ema.parameters())


def test_stdiff_data_init_sets_scaler_and_biases_from_the_windows():
    family, cfg, model = _family("stdiff")
    # the scaler standardises the training videos to zero mean / unit std per (f, k) and trend per k
    from seriesforge.families.stdiff.video import to_video

    v = model.scaler.standardise(to_video(torch.from_numpy(WINDOWS), model.geometry))  # (N, T, 3, F, K)
    torch.testing.assert_close(v[:, :, 2].mean(dim=(0, 1, 2)), torch.zeros(5), atol=1e-4, rtol=0)
    bias = model.denoiser.blocks[0].covariate_bias  # (K, K), symmetric, Pearson correlations with unit diagonal
    torch.testing.assert_close(bias, bias.T)
    torch.testing.assert_close(torch.diagonal(bias), torch.ones(5))
    freq = model.denoiser.blocks[0].frequency_bias
    assert float(freq.detach().abs().max()) == pytest.approx(1.0)
    assert torch.equal(model.denoiser_ema.blocks[0].frequency_bias, freq)  # the EMA copy starts from the same


@pytest.mark.parametrize("length, frames, bins, patches", [(24, 8, 6, 3), (64, 8, 16, 4)])
def test_stdiff_geometry_follows_the_papers_table(length, frames, bins, patches):
    cfg = registry.build_run_config("stdiff", preset="paper", data_spec=f"sines:{length}")
    model = registry.get("stdiff")(cfg.model)
    assert (model.geometry.frames, model.geometry.bins, model.denoiser.frequency_patches) == (frames, bins, patches)
    assert model.denoiser.num_tokens == frames * patches * 5


@pytest.mark.parametrize("name", ["timeldm", "stdiff"])
def test_requests_other_lengths_conditions_or_too_many_steps_are_refused(name):
    _, _, model = _family(name)
    model.eval()
    with pytest.raises(RequestError, match="length"):
        model.sample(n=1, length=25)
    with pytest.raises(RequestError, match="condition"):
        model.sample(n=1, length=24, condition=["rises"])
    with pytest.raises(RequestError, match="steps"):
        model.sample(n=1, length=24, steps=10_000)
    out = model.sample(n=2, length=24, steps=3, generator=torch.Generator().manual_seed(0))  # steps: DDIM
    assert out.shape == (2, 5, 24)


def test_timeldm_edm_variant_trains_and_samples():
    _, _, model = _family("timeldm", "model.diffusion=edm", "model.sample_steps=4")
    _fit(model, "vae", 5, 1e-3)
    first, last = _fit(model, "ldm", 60, 2e-3)
    assert np.isfinite(last)
    out = model.eval().sample(n=2, length=24, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 5, 24) and torch.isfinite(out).all()
