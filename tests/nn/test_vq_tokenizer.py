"""The VQ families' shared stage 1: token grids as models.md tabulates them, odd lengths back whole, the loss falls."""

from __future__ import annotations

import pytest
import torch

from seriesforge.nn.vq_tokenizer import (TokenizerSpec, VQTokenizer, halvings_code, halvings_paper,
                                         halvings_to_bound)


def _code_spec(length: int, **kw) -> TokenizerSpec:
    """TimeVQVAE 2024 (code@6e04f69) sizes, narrowed for speed where the grid does not depend on it."""
    base = dict(length=length, channels=1, n_fft=4, hop=1, window="hann", normalized=True, band_cut=1, arch="snake",
                width=4, num_res_blocks=1, hidden_dim=16, code_dim=8, codebook_size=64, ema_decay=0.8,
                commitment=1.0, n_down=(halvings_code(length, 4, 8), halvings_code(length, 4, 32)),
                zero_padded=False)
    return TokenizerSpec(**{**base, **kw})


def _vdm_spec(length: int) -> TokenizerSpec:
    """TimeVQVDM: n_fft 8, rectangular, hop 1, zero-padded bands, conv coders, 4-d tokens."""
    frames = length + 1
    return TokenizerSpec(length=length, channels=1, n_fft=8, hop=1, window="rect", normalized=False, band_cut=1,
                         arch="conv", width=8, num_res_blocks=1, hidden_dim=8, code_dim=4, codebook_size=32,
                         ema_decay=0.8, commitment=1.0, n_down=(halvings_to_bound(frames, 31),
                                                                halvings_to_bound(frames, 127)),
                         zero_padded=True, loss="thesis")


@pytest.mark.parametrize("length, lf, hf", [(46, 5, 46), (128, 8, 64), (152, 9, 76), (500, 7, 62), (1024, 8, 64)])
def test_code_variant_token_counts_match_models_md(length, lf, hf):
    """models.md §5: LF / HF tokens Crop 5/46, TwoPatterns 8/64, Wafer 9/76, FordA 7/62, StarLightCurves 8/64."""
    tok = VQTokenizer(_code_spec(length))
    assert (tok.num_tokens("lf"), tok.num_tokens("hf")) == (lf, hf)


def test_timevqvdm_grid_on_wafer():
    """models.md §7: Wafer (L 152) gives z_LF (B, 5, 19, 4) and z_HF (B, 5, 76, 4)."""
    tok = VQTokenizer(_vdm_spec(152))
    assert tok.grid == {"lf": (5, 19), "hf": (5, 76)}
    z = tok.encode_band(torch.randn(2, 1, 152), "hf").z
    assert z.shape == (2, 5 * 76, 4)


def test_paper_halving_rule():
    assert halvings_paper(152, 8) == 3 and halvings_paper(20, 32) == 1  # at least one halving


@pytest.mark.parametrize("make", [_code_spec, _vdm_spec])
@pytest.mark.parametrize("length", [15, 251])
def test_odd_lengths_come_back_whole(make, length, one_torch_thread):
    tok = VQTokenizer(make(length)).eval()
    x = torch.randn(3, 1, length)
    codes = tok.tokens(x)
    out = tok.decode_tokens(codes)
    assert out.shape == (3, 1, length) and torch.isfinite(out).all()
    noisy = tok.stochastic_reconstruction(x, 1.0, torch.Generator().manual_seed(0))
    assert noisy.shape == (3, 1, length)


def test_stage_one_loss_falls_on_a_fixed_batch(one_torch_thread):
    torch.manual_seed(0)
    t = torch.linspace(0, 1, 40)
    x = torch.stack([torch.sin(2 * torch.pi * f * t) for f in (1.0, 2.0, 3.0, 1.5)])[:, None]  # (4, 1, 40)
    tok = VQTokenizer(_code_spec(40))
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, metrics = tok(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["recon_mse"])
    assert losses[-1] < 0.5 * losses[0], losses[::10]
