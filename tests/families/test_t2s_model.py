"""T2S networks: length-adaptive autoencoder (fixed latent for any length) and latent DiT denoiser."""

import math

import pytest
import torch

from seriesforge.families.t2s.model import LengthAdaptiveAutoencoder, T2SDenoiser, padded_length
from seriesforge.processes.flow_matching import RectifiedFlow

TINY_AE = dict(hidden=32, latent_channels=8, latent_positions=8, res_hidden=32)
TINY_DIT = dict(latent_channels=8, latent_positions=8, dim=32, depth=2, num_heads=2, patch=2, text_dim=16)


def smooth_series(n, length, gen):
    """Random-phase sinusoids of 1-3 cycles: smooth, length-agnostic shapes."""
    grid = torch.linspace(0, 1, length)
    cycles = 1 + 2 * torch.rand(n, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(n, 1, generator=gen)
    amplitude = 0.5 + torch.rand(n, 1, generator=gen)
    return amplitude * torch.sin(2 * math.pi * cycles * grid + phase)


# ----- autoencoder ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def autoencoder():
    torch.manual_seed(0)
    return LengthAdaptiveAutoencoder()


@pytest.mark.parametrize("length", [24, 48, 96, 50])
def test_autoencoder_shapes_and_round_trip(autoencoder, length):
    x = torch.randn(3, length)
    z, h = autoencoder.encode(x)
    assert z.shape == (3, 64, 30)  # the fixed (C, P) latent, whatever the length
    assert h.shape == (3, 64, padded_length(length) // 4)
    x_hat = autoencoder.decode(z, length)
    assert x_hat.shape == (3, length)
    loss, metrics = autoencoder.forward_loss(x)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert set(metrics) == {"loss", "recon_mse", "consistency_mse"}
    assert metrics["loss"] == pytest.approx(metrics["recon_mse"] + metrics["consistency_mse"], rel=1e-5)


def test_decoder_serves_any_length_from_one_latent(autoencoder):
    z, _ = autoencoder.encode(torch.randn(2, 48))
    for length in (4, 23, 24, 97, 200):
        assert autoencoder.decode(z, length).shape == (2, length)


def test_autoencoder_rejects_too_short_lengths(autoencoder):
    with pytest.raises(ValueError, match="length"):
        autoencoder.encode(torch.randn(2, 3))
    with pytest.raises(ValueError, match="length"):
        autoencoder.decode(torch.randn(2, 64, 30), 2)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        autoencoder.encode(torch.randn(2, 1, 24))


def test_autoencoder_learns_to_reconstruct_across_lengths():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    data = {length: smooth_series(16, length, gen) for length in (24, 48, 96)}
    model = LengthAdaptiveAutoencoder(**TINY_AE)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def recon_mse():
        with torch.no_grad():
            return {length: model.forward_loss(x)[1]["recon_mse"] for length, x in data.items()}

    before = recon_mse()
    # Interleaved as in T2S: one optimiser step per length-homogeneous batch.
    for step in range(300):
        loss, _ = model.forward_loss(data[(24, 48, 96)[step % 3]])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = recon_mse()
    for length in data:
        assert after[length] < 0.1 * before[length], (length, before, after)


# ----- denoiser -------------------------------------------------------------------------------------------------


def test_denoiser_shape_and_zero_output_at_init():
    torch.manual_seed(0)
    net = T2SDenoiser()
    z = torch.randn(2, 64, 30)
    v = net(z, torch.rand(2), torch.randn(2, 384))
    assert v.shape == (2, 64, 30)
    assert torch.count_nonzero(v) == 0
    assert net.num_tokens == 15 * 32


def test_denoiser_null_caption_is_zero_embedding_and_none():
    torch.manual_seed(0)
    net = T2SDenoiser(**TINY_DIT)
    with torch.no_grad():  # leave the zero init so the output depends on the inputs
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    z, t = torch.randn(3, 8, 8), torch.rand(3)
    null = net(z, t, net.null_caption(3))
    assert torch.equal(null, net(z, t, None))
    assert not torch.allclose(null, net(z, t, torch.randn(3, 16)))
    assert torch.allclose(net(z, torch.tensor(0.3), None), net(z, torch.full((3,), 0.3), None))


def test_denoiser_rejects_bad_shapes():
    with pytest.raises(ValueError, match="latent_positions"):
        T2SDenoiser(latent_positions=31)
    with pytest.raises(ValueError, match="latent_channels"):
        T2SDenoiser(latent_channels=63)
    net = T2SDenoiser(**TINY_DIT)
    with pytest.raises(ValueError, match="z must have shape"):
        net(torch.randn(2, 8, 6), torch.rand(2), None)
    with pytest.raises(ValueError, match="text_emb"):
        net(torch.randn(2, 8, 8), torch.rand(2), torch.randn(2, 384))


def test_denoiser_flow_matching_loss_falls():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    # Four latent/caption pairs, repeated: a dataset the tiny net can nearly memorise.
    z = torch.randn(4, 8, 8, generator=gen).repeat(4, 1, 1)
    captions = torch.randn(4, 16, generator=gen).repeat(4, 1)
    net, flow = T2SDenoiser(**TINY_DIT), RectifiedFlow(t_grid=100)
    velocity = lambda x, t: net(x, t, captions)  # noqa: E731

    def held_out_loss():
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            return sum(flow.training_loss(velocity, z, generator=g).item() for _ in range(20)) / 20

    before = held_out_loss()  # zero velocity: E|z − ε|² ≈ 2
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(300):
        loss = flow.training_loss(velocity, z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out_loss() < 0.3 * before
