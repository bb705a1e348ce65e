"""ST-Diff data <-> video transform, scaler, bias inits and L_cov (models.md §4)."""

import pytest
import torch

from seriesforge.families.stdiff.video import (
    VideoGeometry, VideoScaler, covariate_correlation, cross_covariance_loss, ema_trend,
    frequency_log_magnitude_covariance, from_video, geometry_for_length, num_frequency_patches, to_video,
)


def windows(n, length, k, seed=0):
    """Series in [0, 1] like the §1.2 suite: a random walk plus a sinusoid, min-max scaled per window."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.arange(length, dtype=torch.float32)[None, :, None]
    x = torch.cumsum(torch.randn(n, length, k, generator=g), dim=1) + torch.sin(0.7 * grid) * 2
    lo, hi = x.amin(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)
    return (x - lo) / (hi - lo)


# ----- geometry ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length, variant, n_fft, hop, frames, bins", [
    (24, "formula", 11, 3, 8, 6), (64, "formula", 31, 8, 8, 16), (128, "formula", 63, 16, 8, 32),
    (256, "formula", 127, 32, 8, 64), (24, "paper-table4", 11, 3, 8, 6), (64, "paper-table4", 31, 11, 6, 16),
    (128, "paper-table4", 63, 15, 9, 32), (256, "paper-table4", 127, 32, 8, 64),
])
def test_geometry_matches_the_spec_table(length, variant, n_fft, hop, frames, bins):
    geom = geometry_for_length(length, variant)
    assert (geom.n_fft, geom.hop, geom.frames, geom.bins) == (n_fft, hop, frames, bins)
    assert geom.ema_alpha == pytest.approx(2 / (n_fft + 1))
    # T and F are what torch.stft really produces, and the video has them.
    spec = torch.stft(torch.randn(length), n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
    assert spec.shape == (bins, frames)
    assert to_video(windows(2, length, 3), geom).shape == (2, frames, 3, bins, 3)


@pytest.mark.parametrize("bins, patch_f, patches", [(6, 2, 3), (16, 4, 4), (32, 8, 4), (64, 16, 4), (6, 4, 2)])
def test_frequency_patch_count(bins, patch_f, patches):
    assert num_frequency_patches(bins, patch_f) == patches


def test_geometry_errors_name_the_culprit():
    with pytest.raises(ValueError, match="length"):
        geometry_for_length(25, "paper-table4")
    with pytest.raises(ValueError, match="variant"):
        geometry_for_length(24, "table5")
    with pytest.raises(ValueError, match="length"):
        geometry_for_length(7)
    # hop > n_fft leaves samples no window covers; hop = n_fft lands on the periodic Hann's zero: both break NOLA.
    for hop in (11, 12):
        with pytest.raises(ValueError, match="length=24"):
            VideoGeometry(length=24, n_fft=11, hop=hop, ema_alpha=0.2)


# ----- round trip -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [24, 25, 64, 31])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("scaled", [False, True])
def test_round_trip_is_exact(length, k, scaled):
    geom = geometry_for_length(length)
    x = windows(16, length, k)
    video = to_video(x, geom)
    assert video.dtype == torch.float32
    if scaled:
        scaler = VideoScaler.fit(video)
        video = scaler.unstandardise(scaler.standardise(video))
    x_hat = from_video(video, geom)
    assert x_hat.shape == x.shape and x_hat.dtype == torch.float32
    assert (x_hat - x).abs().max().item() < 1e-5


def test_round_trip_for_every_short_length_and_the_table4_variant():
    for length in list(range(8, 41)) + [100, 257]:
        geom = geometry_for_length(length)
        x = windows(2, length, 2, seed=length)
        assert (from_video(to_video(x, geom), geom) - x).abs().max().item() < 1e-5, length
    for length in (64, 128):
        geom = geometry_for_length(length, "paper-table4")
        x = windows(2, length, 2)
        assert (from_video(to_video(x, geom), geom) - x).abs().max().item() < 1e-5, length


# ----- trend ------------------------------------------------------------------------------------------------------


def test_ema_trend_closed_form():
    x = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0])[None, :, None]
    tau = ema_trend(x, 0.5)[0, :, 0]
    assert torch.allclose(tau, torch.tensor([1.0, 0.5, 0.25, 0.125, 1.0625]))
    # against the recursion on random data
    x = torch.randn(3, 20, 2, dtype=torch.float64)
    tau = ema_trend(x, 0.3)
    ref = [x[:, 0]]
    for t in range(1, 20):
        ref.append(0.3 * x[:, t] + 0.7 * ref[-1])
    assert torch.allclose(tau, torch.stack(ref, dim=1), atol=1e-12)


def test_trend_channel_holds_the_frame_rate_ema():
    geom = geometry_for_length(24)
    x = windows(4, 24, 2)
    video = to_video(x, geom)
    trend = video[:, :, 2]                                                        # (B, T, F, K)
    assert torch.equal(trend, trend[:, :, :1].expand_as(trend))                   # broadcast over F
    positions = [min(m * geom.hop, 23) for m in range(geom.frames)]
    assert torch.allclose(trend[:, :, 0], ema_trend(x, geom.ema_alpha)[:, positions], atol=1e-6)


def test_constant_series_is_all_trend():
    geom = geometry_for_length(24)
    video = to_video(torch.full((2, 24, 3), 0.7), geom)
    assert video[:, :, :2].abs().max().item() < 1e-6
    assert torch.allclose(video[:, :, 2], torch.full_like(video[:, :, 2], 0.7))


# ----- scaler -----------------------------------------------------------------------------------------------------


def test_scaler_statistics_and_standardised_moments():
    geom = geometry_for_length(24)
    video = to_video(windows(64, 24, 3), geom)
    scaler = VideoScaler.fit(video)
    assert set(scaler.state_dict()) == {"re_mean", "re_std", "im_mean", "im_std", "trend_mean", "trend_std"}
    assert scaler.re_mean.shape == (6, 3) and scaler.trend_std.shape == (3,)
    # Im of the DC bin is identically 0: its std sits at the floor and standardising keeps it at 0 (finite).
    assert torch.allclose(scaler.im_std[0], torch.full((3,), 1e-6))
    z = scaler.standardise(video)
    assert torch.isfinite(z).all()
    assert z[:, :, 1, 0].abs().max().item() == 0.0
    re = z[:, :, 0]
    assert re.mean(dim=(0, 1)).abs().max().item() < 1e-4
    assert (re.std(dim=(0, 1), unbiased=False) - 1).abs().max().item() < 1e-4
    assert (z[:, :, 2].std(dim=(0, 1, 2), unbiased=False) - 1).abs().max().item() < 1e-4
    assert (scaler.unstandardise(z) - video).abs().max().item() < 1e-6


def test_fresh_scaler_is_identity():
    scaler = VideoScaler(bins=6, covariates=2)
    v = torch.randn(2, 8, 3, 6, 2)
    assert torch.equal(scaler.standardise(v), v) and torch.equal(scaler.unstandardise(v), v)


# ----- bias inits -------------------------------------------------------------------------------------------------


def test_covariate_correlation_of_copies_and_independent_noise():
    geom = geometry_for_length(24)
    base = windows(128, 24, 1, seed=1)
    copies = to_video(torch.cat([base, 3.0 * base + 0.2], dim=2), geom)
    corr = covariate_correlation(copies)
    assert corr.shape == (2, 2)
    assert corr[0, 1].item() == pytest.approx(1.0, abs=1e-4) and corr[1, 0].item() == pytest.approx(1.0, abs=1e-4)
    noise = to_video(torch.rand(256, 24, 3, generator=torch.Generator().manual_seed(2)), geom)
    corr = covariate_correlation(noise)
    assert torch.equal(torch.diagonal(corr), torch.ones(3))
    assert torch.allclose(corr, corr.T)
    off = corr[~torch.eye(3, dtype=torch.bool)]
    assert off.abs().max().item() < 0.05


def test_frequency_covariance_matches_a_direct_computation():
    geom = geometry_for_length(24)                                                # F = 6
    video = to_video(windows(32, 24, 2), geom)
    cov = frequency_log_magnitude_covariance(video, patch_f=4)                    # ragged: patches {0-3}, {4-5}
    assert cov.shape == (2, 2)
    assert cov.abs().max().item() == pytest.approx(1.0)
    assert torch.allclose(cov, cov.T)
    log_mag = torch.log(torch.sqrt(video[:, :, 0].double() ** 2 + video[:, :, 1].double() ** 2) + 1e-6)
    patches = torch.stack([log_mag[:, :, :4].mean(2), log_mag[:, :, 4:].mean(2)], dim=-1)  # (N, T, K, 2)
    ref = torch.cov(patches.reshape(-1, 2).T)
    assert torch.allclose(cov.double(), ref / ref.abs().max(), atol=1e-5)


# ----- L_cov ------------------------------------------------------------------------------------------------------


def test_cross_covariance_loss():
    geom = geometry_for_length(24)
    v0 = to_video(windows(8, 24, 3), geom)
    assert cross_covariance_loss(v0, v0).item() == 0.0
    v_hat = (v0 + 0.5 * torch.randn_like(v0)).requires_grad_(True)
    loss = cross_covariance_loss(v_hat, v0)
    assert loss.ndim == 0 and loss.item() > 0
    loss.backward()
    assert torch.isfinite(v_hat.grad).all() and v_hat.grad.abs().sum() > 0
    # Known value: v0's covariate 1 is a scaled copy of covariate 0 (R off-diagonal 1); in v_hat it is independent
    # (off-diagonal r), so L_cov = 2 (1 − r)² / K².
    base = v0[..., :1]
    v0 = torch.cat([base, 2.0 * base], dim=-1)
    other = to_video(windows(8, 24, 1, seed=5), geom)
    v_hat = torch.cat([base, other], dim=-1)
    mag = torch.sqrt(v_hat[:, :, 0] ** 2 + v_hat[:, :, 1] ** 2 + 1e-8)            # (B, T, F, 2)
    r = torch.corrcoef(mag.reshape(-1, 2).T)[0, 1].item()
    assert cross_covariance_loss(v_hat, v0).item() == pytest.approx(2 * (1 - r) ** 2 / 4, rel=1e-3)
    one = v0[..., :1]
    assert cross_covariance_loss(one + torch.randn_like(one), one).item() == 0.0
