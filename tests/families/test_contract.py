"""Contract suite: every registered family x stage, at its `debug` preset (design.md §4). The registry is the
test matrix, so a new family is checked here without editing this file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seriesforge import checkpoint, config as C, registry
from seriesforge.data.sources.windows import sines
from seriesforge.errors import RequestError
from seriesforge.generate import load

CASES = [(name, stage) for name in registry.names() for stage in registry.get(name).stages]
# a SPEC per data kind that presets can size a model from without reading files (sines: K = 5 covariates;
# ucr:/unused gives the UCR placeholder shape, L = 150 with 2 classes)
SPEC_OF_KIND = {"captions": "captions:/unused", "sines": "sines:24", "ucr": "ucr:/unused"}


def _debug(name: str):
    family = registry.get(name)
    kind = next(k for k in family.data_needs(family.Config()).kinds if k in SPEC_OF_KIND)
    return family, registry.preset_config(name, "debug", SPEC_OF_KIND[kind])


def _model(family, cfg):
    """A module as the first stage sees it: data-derived values (if the family has any) loaded."""
    model = family(cfg.model)
    init = family.data_init(cfg.model, _init_series(cfg))
    model.load_state_dict(init, strict=False)
    return model


def _init_series(cfg):
    if registry.get(cfg.family).data_needs(cfg.model).kinds == ("captions",):
        return None
    return sines(64, cfg.data.lengths[0], seed=0)  # (N, L, K=5)


def _batch(family, cfg, length=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return family.example_batch(cfg.model, batch_size=4, length=length or cfg.data.lengths[0], generator=g)


@pytest.mark.parametrize("name, stage", CASES)
def test_stage_loss_is_finite_and_trains_only_its_parameters(name, stage):
    family, cfg = _debug(name)
    torch.manual_seed(0)
    model = _model(family, cfg)
    params = model.set_stage(stage)
    assert params and all(p.requires_grad for p in params)
    trainable = {id(p) for p in params}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in trainable}
    before = [p.detach().clone() for p in params]
    out = model(_batch(family, cfg))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    opt = torch.optim.AdamW(params, lr=1e-2)
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, params)), "no trainable weight moved"
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(frozen[n], p), f"frozen parameter {n} changed in stage {stage}"


@pytest.mark.parametrize("name", registry.names())
def test_sample_shapes_seed_and_any_length(name):
    family, cfg = _debug(name)
    model = _model(family, cfg).eval()
    model.set_stage(family.stages[-1])
    fixed = family.max_length(cfg.model) == max(cfg.data.lengths)  # one window length per model
    for length in (*cfg.data.lengths, 37):  # 37: never trained, not a multiple of 4
        if fixed and length not in cfg.data.lengths:
            with pytest.raises(RequestError, match="length"):
                model.sample(n=3, length=length, generator=torch.Generator().manual_seed(5))
            continue
        a = model.sample(n=3, length=length, generator=torch.Generator().manual_seed(5))
        b = model.sample(n=3, length=length, generator=torch.Generator().manual_seed(5))
        assert a.shape[0] == 3 and a.shape[-1] == length and torch.isfinite(a).all()
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", registry.names())
def test_data_init_names_existing_state_of_the_right_shape(name):
    family, cfg = _debug(name)
    state = family(cfg.model).state_dict()
    init = family.data_init(cfg.model, _init_series(cfg))
    for key, value in init.items():
        assert key in state, f"data_init key {key} is not in the state dict"
        assert tuple(value.shape) == tuple(state[key].shape), key


@pytest.mark.parametrize("name", registry.names())
def test_save_load_generate_is_identical(name, tmp_path):
    family, cfg = _debug(name)
    torch.manual_seed(1)
    model = _model(family, cfg).eval()
    last = family.stages[-1]
    model.set_stage(last)
    meta = {"family": name, "stage": last, "stage_index": len(family.stages) - 1, "step": 3}
    path = checkpoint.write_checkpoint(tmp_path / "ckpt", config=C.to_dict(cfg), meta=meta,
                                       state_dict=model.state_dict())
    gen = load(path)
    condition = ["rises steadily"] * 2 if family.conditions == "caption" else None
    expected = model.sample(n=2, length=cfg.data.lengths[0], condition=condition,
                            generator=torch.Generator().manual_seed(11))
    got = gen.sample(n=2, length=cfg.data.lengths[0], captions=condition, seed=11)
    np.testing.assert_array_equal(got, expected.numpy())
    assert not list(tmp_path.glob(".*tmp*")), "temporary checkpoint directory left behind"
