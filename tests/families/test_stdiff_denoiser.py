"""ST-Diff denoiser ε_θ: shapes, adaLN-Zero init, attention biases, RoPE and patch layout (models.md §4)."""

import pytest
import torch

from seriesforge.families.stdiff.model import AxisAttention, STDiffDenoiser, apply_rotary

TINY = dict(dim=32, depth=2, num_heads=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def denoiser(frames=8, bins=6, covariates=3, patch_f=2, seed=0, **kw):
    torch.manual_seed(seed)
    return STDiffDenoiser(frames=frames, bins=bins, covariates=covariates, patch_f=patch_f, **{**TINY, **kw})


def inputs(model, batch=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(batch, model.frames, 3, model.bins, model.covariates, generator=g)
    t = torch.randint(0, 1000, (batch,), generator=g).float()
    return v, t


@pytest.mark.parametrize("frames, bins, covariates, patch_f, patches, tokens", [
    (8, 6, 5, 2, 3, 120),    # L = 24, Sines (K = 5): 120 tokens per the spec
    (8, 16, 7, 4, 4, 224),   # L = 64, ETTh (K = 7): 224 tokens
    (8, 6, 3, 4, 2, 48),     # F not a multiple of p_f: zero-padded to 8 bins, cropped back
])
def test_shapes_and_exact_zero_output_at_init(frames, bins, covariates, patch_f, patches, tokens):
    model = denoiser(frames, bins, covariates, patch_f)
    assert model.frequency_patches == patches and model.num_tokens == tokens
    v, t = inputs(model)
    out = model(v, t)
    assert out.shape == v.shape
    assert torch.equal(out, torch.zeros_like(out))  # adaLN-Zero blocks + zero final projection


def test_rejects_wrong_shapes():
    model = denoiser()
    v, t = inputs(model)
    with pytest.raises(ValueError, match="v must be"):
        model(v[:, :, :, :5], t)
    with pytest.raises(ValueError, match="t must be"):
        model(v, t[:2])


def test_training_switches_the_network_on_and_reaches_the_biases():
    model = denoiser()
    model.load_bias_init(torch.eye(3), torch.ones(3, 3))
    v, t = inputs(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # Step 1 only moves the zero final projection (nothing upstream gets gradient through a zero matrix); step 2
    # opens the adaLN gates; from step 3 on the attention logits, hence B_F and B_C, receive gradient.
    for step in range(3):
        opt.zero_grad()
        loss = ((model(v, t) - v) ** 2).mean()
        loss.backward()
        opt.step()
        if step == 0:
            assert model(v, t).abs().max().item() > 0
    for block in model.blocks:
        assert block.frequency_bias.grad.abs().sum().item() > 0
        assert block.covariate_bias_raw.grad.abs().sum().item() > 0
        assert torch.equal(block.covariate_bias, block.covariate_bias.T)  # symmetric whatever the update
    assert model(v, t).shape == v.shape


def test_bias_state_and_load_bias_init():
    model = denoiser()
    cov = torch.tensor([[1.0, 0.8, -0.2], [0.8, 1.0, 0.1], [-0.2, 0.1, 1.0]])
    freq = torch.tensor([[1.0, 0.5, -0.3], [0.5, 0.9, 0.2], [-0.3, 0.2, 0.7]])
    state = model.bias_state(cov, freq)
    assert set(state) == {f"blocks.{i}.{name}" for i in range(2) for name in ("covariate_bias_raw", "frequency_bias")}
    assert set(state) <= set(model.state_dict())
    model.load_bias_init(cov, freq)
    for block in model.blocks:
        assert torch.equal(block.covariate_bias, cov)
        assert torch.equal(block.frequency_bias.detach(), freq)
    # A non-symmetric init is symmetrised; the loaded B_C is symmetric.
    skew = torch.arange(9.0).reshape(3, 3)
    model.load_bias_init(skew, freq)
    assert torch.equal(model.blocks[1].covariate_bias, 0.5 * (skew + skew.T))
    with pytest.raises(ValueError, match="frequency_bias"):
        model.bias_state(cov, torch.ones(2, 2))


def test_attention_bias_is_added_to_the_logits():
    torch.manual_seed(0)
    attn = AxisAttention(dim=16, num_heads=2, rotary=False)
    x = torch.randn(5, 4, 16)
    # −1e4 off the diagonal: each token attends only to itself, so the output is proj(value of that token).
    blocked = torch.full((4, 4), -1e4).fill_diagonal_(0.0)
    values = attn.qkv(x)[..., 32:]
    assert torch.allclose(attn(x, blocked), attn.proj(values), atol=1e-5)
    # A constant bias cancels in the softmax.
    assert torch.allclose(attn(x, torch.full((4, 4), 3.0)), attn(x), atol=1e-5)


def test_rotary_depends_only_on_offsets_and_keeps_norms():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=g), torch.randn(8, generator=g)
    rq = apply_rotary(q.expand(1, 1, 6, 8).clone())[0, 0]                         # (N, D_h) same q at 6 positions
    rk = apply_rotary(k.expand(1, 1, 6, 8).clone())[0, 0]
    scores = rq @ rk.T                                                            # (6, 6)
    for offset in range(-5, 6):
        diag = torch.diagonal(scores, offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-5)
    assert not torch.allclose(scores[0, 0], scores[0, 1])
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(6), atol=1e-5)


def test_patchify_and_unpatchify_share_one_layout():
    model = denoiser(bins=6, patch_f=4, dim=12)                                   # 3·p_f = D: identity embedding
    with torch.no_grad():
        model.patch_embed.weight.copy_(torch.eye(12))
        model.patch_embed.bias.zero_()
        model.covariate_embed.zero_()
    v, _ = inputs(model)
    tokens = model.patchify(v)                                                    # (B, T, F′, K, 3·p_f)
    assert tokens.shape == (4, 8, 2, 3, 12)
    assert torch.equal(model.unpatchify(tokens), v)
    assert torch.equal(tokens[:, :, 1, :, 2:4], torch.zeros(4, 8, 3, 2))        # padded bins 6, 7 of channel 0
