"""BandSTFT (models.md §0 STFT rules): exact round trip for odd/even L, Re/Im layout, LF/HF identity, NOLA check.

Why: every spectrogram family decodes through `inverse`; a one-sample-short ISTFT (TimeVQVAE issue #1) or a swapped
Re/Im channel silently corrupts all samples, and a NOLA-violating config must fail at start-up, not mid-training.
"""

from __future__ import annotations

import pytest
import torch

from seriesforge.errors import ConfigError
from seriesforge.nn.stft_bands import BandSTFT

# (n_fft, hop, window, normalized): TimeVQVAE-2024, TimeVQVAE-paper, TimeVQVDM.
CONFIGS = [(4, 1, "hann", True), (8, 2, "rect", False), (8, 1, "rect", False)]
LENGTHS = [15, 16, 151, 152]


def _series(batch: int, channels: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, length, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"nfft{c[0]}-hop{c[1]}-{c[2]}-norm{c[3]}")
def test_round_trip_is_exact_for_odd_and_even_lengths(config, length):
    stft = BandSTFT(*config)
    x = _series(3, 2, length)  # K = 2
    u = stft.forward(x)
    assert u.shape == (3, 4, stft.bins, stft.frames(length))
    assert u.dtype == torch.float32
    assert stft.bins == config[0] // 2 + 1
    back = stft.inverse(u, length)
    assert back.shape == x.shape
    assert (back - x).abs().max().item() < 1e-5


def test_frames_formula_matches_torch_for_odd_n_fft_and_time_vqvae_shape():
    # Odd n_fft: T = 1 + floor((L - 1) / hop); TimeVQVAE-2024 (n_fft 4, hop 1): T = L + 1.
    odd = BandSTFT(5, 2, "hann", False)
    for length in (15, 16, 17):
        assert odd.forward(_series(1, 1, length)).shape[-1] == odd.frames(length) == 1 + (length - 1) // 2
    assert BandSTFT(4, 1, "hann", True).frames(46) == 47


def test_channels_are_re_im_interleaved_per_covariate():
    stft = BandSTFT(8, 2, "rect", False)
    x = _series(2, 3, 40)
    u = stft.forward(x)  # (2, 6, 5, T)
    for k in range(3):
        ref = torch.stft(x[:, k], 8, hop_length=2, window=torch.ones(8), center=True, pad_mode="reflect",
                         return_complex=True)  # (2, 5, T)
        torch.testing.assert_close(u[:, 2 * k], ref.real)
        torch.testing.assert_close(u[:, 2 * k + 1], ref.imag)


def test_low_precision_input_and_autocast_give_float32():
    stft = BandSTFT(4, 1, "hann", True)
    x = _series(2, 1, 31)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        u = stft.forward(x.bfloat16())
        back = stft.inverse(u, 31)
        back_from_bf16 = stft.inverse(u.bfloat16(), 31)
    assert u.dtype == back.dtype == back_from_bf16.dtype == torch.float32
    assert back.shape == back_from_bf16.shape == (2, 1, 31)
    # The bf16 input is exact in fp32, so the fp32 transforms add nothing beyond float error.
    assert (back - x.bfloat16().float()).abs().max().item() < 1e-5


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"nfft{c[0]}-hop{c[1]}-{c[2]}")
@pytest.mark.parametrize("length", [15, 152])
def test_band_series_sums_to_input_and_matches_keep_bands(config, length):
    stft = BandSTFT(*config)
    x = _series(2, 2, length, seed=1)
    x_lf, x_hf = stft.band_series(x)
    assert x_lf.shape == x_hf.shape == x.shape
    assert (x_lf + x_hf - x).abs().max().item() < 1e-5
    u = stft.forward(x)
    torch.testing.assert_close(x_lf, stft.inverse(stft.keep_bands(u, "lf"), length), rtol=0, atol=1e-6)
    torch.testing.assert_close(x_hf, stft.inverse(stft.keep_bands(u, "hf"), length), rtol=0, atol=1e-6)
    # Both bands carry signal for white noise (the split is not trivial).
    assert x_lf.abs().max() > 0.05 and x_hf.abs().max() > 0.05


def test_keep_bands_zeroes_exactly_the_other_band():
    stft = BandSTFT(8, 1, "rect", False)  # F = 5
    u = stft.forward(_series(1, 1, 20)) + 1.0  # no accidental zeros
    lf, hf = stft.keep_bands(u, "lf", cut=2), stft.keep_bands(u, "hf", cut=2)
    assert torch.equal(lf[:, :, :2], u[:, :, :2]) and lf[:, :, 2:].abs().sum() == 0
    assert torch.equal(hf[:, :, 2:], u[:, :, 2:]) and hf[:, :, :2].abs().sum() == 0
    x = _series(1, 1, 20)
    x_lf, x_hf = stft.band_series(x, cut=2)
    assert (x_lf + x_hf - x).abs().max().item() < 1e-5
    for bad in (0, 5):
        with pytest.raises(ValueError, match="cut"):
            stft.keep_bands(u, "lf", cut=bad)


@pytest.mark.parametrize("config", [c for c in CONFIGS if c[2] == "rect"], ids=lambda c: f"nfft{c[0]}-hop{c[1]}")
def test_lf_of_a_constant_is_the_constant_and_hf_vanishes_for_rect_windows(config):
    stft = BandSTFT(*config)
    x = torch.full((2, 2, 33), 1.7)
    x[1] = -0.4
    x_lf, x_hf = stft.band_series(x)
    assert (x_lf - x).abs().max().item() < 1e-5
    assert x_hf.abs().max().item() < 1e-5


def test_hann_n_fft_4_puts_a_third_of_a_constant_into_hf():
    # The periodic Hann window [0, .5, 1, .5] has its own DFT at bins 0 (2) and 1 (-1), so a constant c leaks into
    # bin 1: away from the two edge samples ISTFT(bin 0) = c/2 · Σw / Σw² = 2c/3 and HF = c/3 (TimeVQVAE-2024's
    # "LF = bin 0 ≈ a local mean", models.md §5 Pitfalls). Only the sum is exact.
    stft = BandSTFT(4, 1, "hann", True)
    x = torch.full((1, 1, 33), 1.5)
    x_lf, x_hf = stft.band_series(x)
    torch.testing.assert_close(x_lf[..., 1:-1], torch.full((1, 1, 31), 1.0), rtol=0, atol=1e-5)
    torch.testing.assert_close(x_hf[..., 1:-1], torch.full((1, 1, 31), 0.5), rtol=0, atol=1e-5)
    assert (x_lf + x_hf - x).abs().max().item() < 1e-5


def test_check_round_trip_passes_valid_configs():
    for config in CONFIGS:
        assert BandSTFT(*config).check_round_trip(151, channels=2) < 1e-5


@pytest.mark.parametrize(("config", "length", "reason"), [
    ((4, 4, "hann", True), 64, "NOLA"),       # Hann has w[0] = 0: with hop = n_fft every 4th sample is lost
    ((8, 8, "hann", False), 64, "NOLA"),
    ((4, 8, "rect", False), 64, "hop must not exceed n_fft"),
    ((8, 1, "rect", False), 3, "too short"),  # reflect padding needs L > n_fft // 2
])
def test_check_round_trip_rejects_bad_configs(config, length, reason):
    n_fft, hop = config[0], config[1]
    with pytest.raises(ConfigError) as info:
        BandSTFT(*config).check_round_trip(length)
    message = str(info.value)
    assert message.startswith("model.n_fft/model.hop")
    assert f"n_fft={n_fft}" in message and f"hop={hop}" in message and f"length={length}" in message
    assert reason in message


def test_bad_constructor_values_are_config_errors():
    with pytest.raises(ConfigError, match="model.window"):
        BandSTFT(4, 1, "hamming", True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="model.hop"):
        BandSTFT(4, 0, "hann", True)
    with pytest.raises(ConfigError, match="model.n_fft"):
        BandSTFT(1, 1, "hann", True)
