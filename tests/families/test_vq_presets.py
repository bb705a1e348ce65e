"""Every preset of the VQ families builds, trains one step per stage and samples (the contract suite covers only
`debug`): the paper variant's zero-padded conv tokenizer and the thesis's U-Nets are exercised here."""

from __future__ import annotations

import pytest
import torch

from seriesforge import registry

CASES = [("timevqvae", "small"), ("timevqvae", "code"), ("timevqvae", "paper"), ("timevqvdm", "small"),
         ("timevqvdm", "thesis")]


@pytest.mark.parametrize("name, preset", CASES)
def test_preset_trains_each_stage_and_samples(name, preset, one_torch_thread):
    family = registry.get(name)
    cfg = registry.preset_config(name, preset, "ucr:/unused")  # GunPoint's shape: L = 150, 2 classes
    torch.manual_seed(0)
    model = family(cfg.model)
    batch = family.example_batch(cfg.model, batch_size=2, length=cfg.model.length,
                                 generator=torch.Generator().manual_seed(0))
    for stage in family.stages:
        params = model.set_stage(stage)
        out = model(batch)
        assert torch.isfinite(out.loss), (stage, out.metrics)
        out.loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), stage
    model.eval()
    x = model.sample(n=2, length=cfg.model.length, condition=[0, 1], steps=2,
                     generator=torch.Generator().manual_seed(1))
    assert x.shape == (2, 1, cfg.model.length) and torch.isfinite(x).all()


def test_paper_variant_is_the_aistats_tokenizer():
    cfg = registry.preset_config("timevqvae", "paper", "ucr:/unused").model
    model = registry.get("timevqvae")(cfg)
    spec = model.tokenizer.spec
    assert (spec.n_fft, spec.hop, spec.window, spec.zero_padded, spec.codebook_size, spec.code_dim) == (
        8, 2, "rect", True, 32, 64)
    assert model.tokenizer.grid["lf"][0] == 5  # the encoders see all five bins
