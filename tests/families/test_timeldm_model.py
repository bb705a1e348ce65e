"""TimeLDM networks: VAE shapes, the VAE loss's closed forms, adaptive β, a short training run, latent MLP."""

import math

import pytest
import torch

from seriesforge.families.timeldm.model import AdaptiveBeta, MLPDiffusion, TimeLDMVAE, vae_loss


def make_vae(length=24, channels=5, token_dim=10, num_heads=1, factor=4, num_layers=2, seed=0):
    torch.manual_seed(seed)
    return TimeLDMVAE(length=length, channels=channels, token_dim=token_dim, num_heads=num_heads, factor=factor,
                      num_layers=num_layers)


def sine_windows(n, length, channels, seed=0):
    """Per-channel sines with random frequency and phase, mapped to [0, 1] as TimeLDM's training data."""
    gen = torch.Generator().manual_seed(seed)
    grid = torch.arange(length, dtype=torch.float32)[None, :, None]        # (1, L, 1)
    freq = 0.1 * torch.rand(n, 1, channels, generator=gen) + 0.05         # (N, 1, K)
    phase = 2 * math.pi * torch.rand(n, 1, channels, generator=gen)
    return 0.5 * (torch.sin(2 * math.pi * freq * grid + phase) + 1)       # (N, L, K)


# ----- VAE shapes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels,token_dim", [(5, 10), (6, 12)])
@pytest.mark.parametrize("num_heads", [1, 2])
def test_vae_shapes(channels, token_dim, num_heads):
    vae = make_vae(channels=channels, token_dim=token_dim, num_heads=num_heads)
    x = torch.rand(3, 24, channels)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (3, 24, token_dim)
    assert not torch.allclose(mu, logvar)  # two separate stacks, not one shared output
    z = vae.reparameterise(mu, logvar, generator=torch.Generator().manual_seed(1))
    assert z.shape == (3, 24, token_dim)
    assert vae.decode(z).shape == (3, 24, channels)
    x_hat, mu2, logvar2 = vae(x)
    assert x_hat.shape == x.shape and torch.equal(mu, mu2) and torch.equal(logvar, logvar2)
    # The output projection exists only with more than one head (code layout).
    has_out = any(name.endswith("W_out.weight") for name, _ in vae.named_parameters())
    assert has_out == (num_heads > 1)
    assert vae.enc_embed.pos.shape == (1, 24, token_dim) and vae.enc_embed.pos.abs().max() <= 0.02


def test_reparameterise_is_reproducible_and_uses_the_variance():
    mu, logvar = torch.zeros(2000, 1, 4), torch.full((2000, 1, 4), math.log(4.0))
    z1 = TimeLDMVAE.reparameterise(mu, logvar, torch.Generator().manual_seed(3))
    z2 = TimeLDMVAE.reparameterise(mu, logvar, torch.Generator().manual_seed(3))
    assert torch.equal(z1, z2)
    assert z1.std().item() == pytest.approx(2.0, rel=0.05)


def test_decoder_cross_attends_to_z():
    """Zeroing the cross-attention must change the output: the decoder really reads z through it."""
    vae = make_vae()
    z = torch.randn(2, 24, 10)
    before = vae.decode(z)
    with torch.no_grad():
        for block in vae.decoder.blocks:
            block.cross_attn.W_v.weight.zero_()
    assert not torch.allclose(before, vae.decode(z), atol=1e-6)


def test_bad_num_heads_raises_naming_it():
    with pytest.raises(ValueError, match="num_heads"):
        make_vae(token_dim=10, num_heads=3)
    with pytest.raises(ValueError, match="num_heads"):
        make_vae(num_heads=0)


# ----- loss ---------------------------------------------------------------------------------------------------


def test_kl_is_zero_at_the_prior():
    x = torch.rand(2, 24, 5)
    _, metrics = vae_loss(x, x, torch.zeros(2, 24, 10), torch.zeros(2, 24, 10), beta=1e-2)
    assert metrics["kl"] == 0.0
    _, metrics = vae_loss(x, x, torch.ones(2, 24, 10), torch.zeros(2, 24, 10), beta=1e-2)
    assert metrics["kl"] == pytest.approx(0.5)  # −½·(1 + 0 − 1 − 1)


@pytest.mark.parametrize("length", [24, 64])
def test_vae_loss_closed_forms_for_a_constant_offset(length):
    """x̂ = x + c in one of K channels: every reconstruction term has a closed form."""
    b, k, c, beta = 3, 5, 0.3, 1e-2
    x = torch.rand(b, length, k, generator=torch.Generator().manual_seed(0))
    x_hat = x.clone()
    x_hat[:, :, 2] += c
    mu, logvar = torch.full((b, length, 4), 0.5), torch.zeros(b, length, 4)
    loss, m = vae_loss(x, x_hat, mu, logvar, beta)
    assert m["l1"] == pytest.approx(c / k, rel=1e-5)
    # MSE over all entries + MSE of the per-step channel means (offset c/K at every step).
    assert m["l2"] == pytest.approx(c**2 / k + (c / k) ** 2, rel=1e-5)
    # A constant offset lives only in the DC bin: |ΔRe| = c there (norm="forward"), ΔIm = 0; mean over L·K bins.
    assert m["fft"] == pytest.approx(math.sqrt(length) / 5 * c / (length * k), rel=1e-4)
    assert m["kl"] == pytest.approx(0.125, rel=1e-6)
    assert m["recon"] == pytest.approx(m["l1"] + m["l2"] + m["fft"], rel=1e-6)
    assert loss.item() == pytest.approx(m["recon"] + beta * m["kl"], rel=1e-6)
    assert m["beta"] == beta and all(isinstance(v, float) for v in m.values())


# ----- adaptive β ---------------------------------------------------------------------------------------------


def test_adaptive_beta_schedule_and_state_dict():
    ab = AdaptiveBeta()
    for i in range(30):  # improving: β stays at β_max
        assert ab.observe(1.0 - 0.01 * i) == pytest.approx(1e-2)
    for _ in range(9):  # patience − 1 non-improving rounds: no change yet
        assert ab.observe(5.0) == pytest.approx(1e-2)
    assert ab.observe(0.71) == pytest.approx(7e-3)  # the 10th (0.71 is not < best 0.71): one step, counter resets
    assert int(ab.bad_rounds) == 0
    for _ in range(9):
        ab.observe(5.0)
    assert ab.value == pytest.approx(7e-3)
    fresh = AdaptiveBeta()
    fresh.load_state_dict(ab.state_dict())
    assert fresh.value == pytest.approx(7e-3) and float(fresh.best) == pytest.approx(0.71)
    assert int(fresh.bad_rounds) == 9
    assert fresh.observe(5.0) == pytest.approx(4.9e-3)  # the restored counter carries on
    for _ in range(500):
        fresh.observe(5.0)
    assert fresh.value == pytest.approx(1e-5)  # floored at β_min, never below
    assert fresh.observe(0.1) == pytest.approx(1e-5) and int(fresh.bad_rounds) == 0


@pytest.mark.parametrize("kwargs,name", [
    (dict(beta_min=0.0), "beta_min"), (dict(beta_max=1e-6, beta_min=1e-5), "beta_max"),
    (dict(factor=1.0), "factor"), (dict(factor=0.0), "factor"), (dict(patience=0), "patience"),
])
def test_adaptive_beta_validates(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AdaptiveBeta(**kwargs)


# ----- training -----------------------------------------------------------------------------------------------


def test_tiny_vae_learns_sines(one_torch_thread):  # tests/conftest.py: tiny matmuls, one thread
    x = sine_windows(64, 24, 5)
    vae = make_vae(factor=4, num_layers=1)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)

    def recon() -> float:
        with torch.no_grad():
            x_hat, mu, logvar = vae(x, generator=torch.Generator().manual_seed(0))
            return vae_loss(x, x_hat, mu, logvar, 1e-2)[1]["recon"]

    before = recon()
    for _ in range(150):
        x_hat, mu, logvar = vae(x)
        loss, _ = vae_loss(x, x_hat, mu, logvar, 1e-2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = recon()
    assert after < 0.2 * before, (before, after)  # measured: 0.93 -> 0.05


# ----- latent denoiser ----------------------------------------------------------------------------------------


def test_mlp_diffusion_shape_and_time_dependence():
    torch.manual_seed(0)
    net = MLPDiffusion(240, 64)
    x = torch.randn(4, 240)
    out = net(x, torch.full((4,), 0.1))
    assert out.shape == (4, 240)
    assert not torch.allclose(out, net(x, torch.full((4,), -0.5)), atol=1e-5)   # EDM c_noise = ln σ / 4
    assert not torch.allclose(net(x, torch.full((4,), 10.0)), net(x, torch.full((4,), 11.0)), atol=1e-5)  # DDPM
    with pytest.raises(ValueError, match="width"):
        MLPDiffusion(240, 63)
