"""Band encoder/decoder networks of the VQ families: shapes under floor-halving, unit-norm snake latents, the Snake
activation, kernel height 1 on one-bin bands, a tiny autoencoder that learns, and the TimeVQVDM-sized parameter count."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seriesforge.errors import ConfigError
from seriesforge.nn.band_coders import BandDecoder, BandEncoder, Snake, encoded_width

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"snake": dict(width=4, latent_dim=8), "conv": dict(width=8, latent_dim=8)}


def _pair(arch: str, height: int, n_down: int, n_up: int, channels: int = 2, num_res_blocks: int = 1,
          **overrides) -> tuple[BandEncoder, BandDecoder]:
    kw = {**TINY[arch], **overrides}
    enc = BandEncoder(in_channels=channels, height=height, arch=arch, n_down=n_down, num_res_blocks=num_res_blocks,
                      **kw)
    dec = BandDecoder(out_channels=channels, height=height, arch=arch, n_up=n_up, num_res_blocks=num_res_blocks, **kw)
    return enc, dec


def _sines(batch: int, channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(B, C, H, W) random-frequency sinusoids of both signs: a smooth stand-in for STFT rows."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, width)
    freq = 1 + 3 * torch.rand(batch, channels, height, 1, generator=gen)
    phase = 2 * math.pi * torch.rand(batch, channels, height, 1, generator=gen)
    amp = 0.5 + torch.rand(batch, channels, height, 1, generator=gen)
    return amp * torch.sin(2 * math.pi * freq * t + phase)


@pytest.mark.parametrize("arch", ["snake", "conv"])
def test_shapes_follow_floor_halving_and_decoder_hits_out_width(arch):
    torch.manual_seed(0)
    checked = 0
    for height in (1, 2, 5):
        for n_down in range(5):
            # n_up = n_down (length=L variant) and n_down + 1 (the codes' extra upsampling)
            for n_up in (n_down, n_down + 1):
                enc, dec = _pair(arch, height, n_down, n_up)
                for w0 in (16, 17, 151, 152, 252):
                    u = torch.randn(2, 2, height, w0)
                    h = enc(u)
                    assert h.shape == (2, TINY[arch]["latent_dim"], height, w0 // 2 ** n_down), (height, n_down, w0)
                    assert h.shape[-1] == encoded_width(w0, n_down)
                    assert dec(h, w0).shape == (2, 2, height, w0), (height, n_down, n_up, w0)
                    assert dec(h, w0 + 3).shape == (2, 2, height, w0 + 3)  # any requested width, not only W0
                    checked += 1
    assert checked == 3 * 5 * 2 * 5


def test_known_widths_of_the_spec():
    # Wafer (L 152 → W0 153): LF 3 halvings → 19, HF 1 halving → 76 (models.md §7).
    assert encoded_width(153, 3) == 19 and encoded_width(153, 1) == 76
    enc, _ = _pair("conv", 5, 3, 4)
    assert enc(torch.randn(2, 2, 5, 153)).shape[-1] == 19


def test_snake_encoder_output_has_unit_norm_over_channels_and_conv_does_not():
    torch.manual_seed(0)
    u = 3 * torch.randn(3, 2, 2, 40)
    for n_down in (0, 2):
        h = _pair("snake", 2, n_down, n_down)[0](u)  # (B, D, H, W′)
        norms = h.norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5), (norms.min(), norms.max())
    conv_norms = _pair("conv", 2, 2, 2)[0](u).norm(dim=1)
    assert (conv_norms - 1).abs().max() > 0.1  # the paper / TimeVQVDM encoder is not normalised


def test_snake_values_and_per_channel_learnable_a():
    torch.manual_seed(0)
    snake = Snake(4)
    assert snake.a.shape == (4,) and snake.a.requires_grad
    assert ((snake.a >= 0.2) & (snake.a <= 0.5)).all() and snake.a.std() > 0  # U(0.2, 0.5), per channel
    with torch.no_grad():
        snake.a.copy_(torch.tensor([0.3, 1.0, 2.0, 0.5]))
    a = snake.a.detach()
    for x in (torch.randn(2, 4, 7), torch.randn(2, 4, 3, 5), torch.randn(1, 4, 2, 3, 2)):
        a_b = a.view(1, 4, *([1] * (x.dim() - 2)))
        expected = x + torch.sin(a_b * x) ** 2 / a_b
        assert torch.allclose(snake(x), expected, atol=1e-6)
    # spot value: x = 1, a = 2 → 1 + sin²(2)/2
    assert snake(torch.ones(1, 4, 1))[0, 2, 0].item() == pytest.approx(1 + math.sin(2.0) ** 2 / 2, abs=1e-6)
    snake(torch.randn(8, 4, 5)).sum().backward()
    assert snake.a.grad is not None and (snake.a.grad != 0).all()


@pytest.mark.parametrize("arch", ["snake", "conv"])
def test_one_bin_band_uses_kernel_height_one(arch):
    # A single frequency row has no neighbours: every kernel must be (1, ·) there, and (3, ·) kernels appear otherwise.
    def kernel_heights(module: nn.Module) -> set[int]:
        return {m.kernel_size[0] for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))}

    for n in (0, 2):
        enc, dec = _pair(arch, 1, n, n + 1)
        assert kernel_heights(enc) == {1} and kernel_heights(dec) == {1}
        enc, dec = _pair(arch, 2, n, n + 1)
        assert 3 in kernel_heights(enc) and 3 in kernel_heights(dec)


@pytest.mark.parametrize("arch", ["snake", "conv"])
def test_tiny_autoencoder_fits_a_fixed_batch(arch):
    torch.manual_seed(0)
    u = _sines(4, 2, 2, 32)  # (B, C, H, W0), values of both signs
    # snake: no per-level residual blocks (the weight-normed layers cost ~10 ms a step in Python overhead); its
    # encoder's last block and the decoder's first block are still residual blocks.
    enc, dec = _pair(arch, 2, n_down=2, n_up=3, latent_dim=16, num_res_blocks=0 if arch == "snake" else 1)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-3)
    losses = []
    for _ in range(150):
        loss = F.mse_loss(dec(enc(u), u.shape[-1]), u)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = losses[0], sum(losses[-5:]) / 5
    assert last * 5 <= first, f"{arch}: MSE {first:.4f} -> {last:.4f} (x{first / last:.1f}), need >= 5x"
    print(f"{arch}: MSE {first:.4f} -> {last:.5f} (x{first / last:.0f})")


def test_conv_parameter_count_is_timevqvdm_sized():
    # TimeVQVDM LF coder (models.md §7: ≈550 k for encoder + decoder): width 64, 4 res blocks, 3 halvings and the
    # decoder's n + 1 upsamplings.
    enc, dec = _pair("conv", 5, n_down=3, n_up=4, width=64, latent_dim=64, num_res_blocks=4)
    count = sum(p.numel() for p in [*enc.parameters(), *dec.parameters()])
    print(f"conv LF encoder+decoder parameters: {count}")
    assert 100_000 < count < 3_000_000, count


def test_rejects_bad_configs_and_inputs():
    with pytest.raises(ConfigError, match="arch"):
        BandEncoder(in_channels=2, height=1, arch="gru", width=4, n_down=1, latent_dim=8, num_res_blocks=1)
    with pytest.raises(ConfigError, match="resampling levels"):
        BandDecoder(out_channels=2, height=1, arch="conv", width=4, n_up=-1, latent_dim=8, num_res_blocks=1)
    enc, dec = _pair("snake", 2, 3, 4)
    with pytest.raises(ValueError, match="expected"):
        enc(torch.randn(2, 2, 3, 32))  # wrong band height
    with pytest.raises(ValueError, match="too short"):
        enc(torch.randn(2, 2, 2, 7))  # 7 >> 3 == 0
    with pytest.raises(ValueError, match="expected"):
        dec(torch.randn(2, 5, 2, 4), 32)  # wrong latent width
