"""DiT building blocks: adaLN-Zero identity at init, zero output layer, shapes; fixed sinusoidal embeddings."""

import math

import pytest
import torch

from seriesforge.nn.dit import DiTBlock, FinalLayer, SelfAttention, modulate
from seriesforge.nn.embeddings import sincos_pos_table, timestep_embedding

B, N, D = 3, 10, 32


@pytest.fixture
def tokens_and_condition():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(B, N, D, generator=gen), torch.randn(B, D, generator=gen)


def test_dit_block_is_identity_at_init(tokens_and_condition):
    torch.manual_seed(0)
    x, c = tokens_and_condition
    block = DiTBlock(D, num_heads=4, mlp_ratio=2.0)
    out = block(x, c)
    assert out.shape == (B, N, D)
    assert torch.equal(out, x)


def test_dit_block_modulation_receives_gradient_and_leaves_identity(tokens_and_condition):
    # Zero gates must not block learning: the modulation head gets a gradient on the first step.
    x, c = tokens_and_condition
    block = DiTBlock(D, num_heads=4, mlp_ratio=2.0)
    block(x, c).pow(2).sum().backward()
    assert block.adaLN_modulation[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        block.adaLN_modulation[-1].weight.normal_(std=0.02)
    assert not torch.allclose(block(x, c), x)


def test_final_layer_outputs_zeros_at_init(tokens_and_condition):
    x, c = tokens_and_condition
    out = FinalLayer(D, out_dim=4)(x, c)
    assert out.shape == (B, N, 4)
    assert torch.count_nonzero(out) == 0


def test_self_attention_shape_and_head_check():
    assert SelfAttention(D, num_heads=8)(torch.randn(B, N, D)).shape == (B, N, D)
    with pytest.raises(ValueError, match="num_heads"):
        SelfAttention(D, num_heads=5)


def test_modulate_with_zero_vectors_is_identity():
    x = torch.randn(B, N, D)
    zeros = torch.zeros(B, D)
    assert torch.equal(modulate(x, zeros, zeros), x)


def test_timestep_embedding_matches_t2s_formula():
    t = torch.tensor([0.0, 0.37, 1.0])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (3, 8) and emb.dtype == torch.float32
    wavelengths = [10000 ** (i / 3) for i in range(4)]  # 10000 ** linspace(0, 1, 4)
    expected_sin = [math.sin(100 * 0.37 / w) for w in wavelengths]
    expected_cos = [math.cos(100 * 0.37 / w) for w in wavelengths]
    assert torch.allclose(emb[1], torch.tensor(expected_sin + expected_cos), atol=1e-5)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    with pytest.raises(ValueError, match="dim"):
        timestep_embedding(t, 7)


def test_sincos_pos_table_interleaves_sin_and_cos():
    table = sincos_pos_table(480, 128)
    assert table.shape == (480, 128)
    assert torch.equal(table[0, 0::2], torch.zeros(64)) and torch.equal(table[0, 1::2], torch.ones(64))
    assert torch.allclose(table[5, 0], torch.tensor(math.sin(5.0)))
    assert torch.allclose(table.pow(2)[:, 0::2] + table.pow(2)[:, 1::2], torch.ones(480, 64), atol=1e-5)
