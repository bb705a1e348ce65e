"""Discriminative / predictive (metrics.md §1, §2) and correlational (§4) scores on tiny hand-built sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seriesforge.eval.metrics.correlation import correlation_terms, correlational_score
from seriesforge.eval.metrics.gru_scores import TF1GRU, discriminative_score, predictive_score


def sines(n: int, length: int = 24, channels: int = 4, *, seed: int) -> np.ndarray:
    """Independent random-frequency, random-phase sines per channel, mapped to [0, 1]: (N, L, K) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[None, :, None]
    freq = rng.uniform(0.2, 0.6, (n, 1, channels))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, channels))
    return ((np.sin(freq * t + phase) + 1) / 2).astype(np.float32)


def lagged_sines(n: int, length: int = 24, channels: int = 6, *, seed: int) -> np.ndarray:
    """One sine per window in every channel; the last channel lags by one step, so target[t+1] = input[t]."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[None, :]
    freq = rng.uniform(0.2, 0.6, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    x = np.repeat(np.sin(freq * t + phase)[:, :, None], channels, axis=2)  # (N, L, K)
    x[:, :, -1] = np.sin(freq * (t - 1) + phase)
    return ((x + 1) / 2).astype(np.float32)


# ---------------------------------------------------------------- correlational score (§4)


def test_correlation_terms_match_hand_computation():
    # Feature 0 = 1, 2, 3, 4 and feature 1 = 1, 1, 2, 2 over (window, step), standardised jointly (ddof = 1):
    # diagonal = (n·L − 1)/(n·L) = 3/4; ρ_10 = (1/4)·Σ dev0·dev1 / (std0·std1) = 0.5 / sqrt(5/3 · 1/3)
    # = 1.5/√5. Per-window standardisation would fail here (feature 1 is constant inside each window).
    x = np.array([[[1, 1], [2, 1]], [[3, 2], [4, 2]]], dtype=np.float32)  # (2, 2, 2)
    np.testing.assert_allclose(correlation_terms(x), [0.75, 1.5 / math.sqrt(5), 0.75], rtol=1e-12)


def test_correlation_terms_order_is_row_major_lower_triangle():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 8, 1))
    x = np.concatenate([base, -base, 2 * base + 1], axis=2)  # ρ = ±(m−1)/m pattern
    m = 50 * 8
    d = (m - 1) / m
    # order (0,0), (1,0), (1,1), (2,0), (2,1), (2,2)
    np.testing.assert_allclose(correlation_terms(x), [d, -d, d, d, -d, d], rtol=1e-9)


def test_correlational_score_hand_value_for_flipped_sign():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(20, 4, 1))
    real = np.concatenate([base, -base], axis=2)  # ρ_10 = −(m−1)/m
    generated = np.concatenate([base, base], axis=2)  # ρ_10 = +(m−1)/m; diagonals identical
    result = correlational_score(real, generated, seed=3)
    m = result["n_drawn"] * 4
    assert result["n_drawn"] == 4 and result["n_terms"] == 3
    assert result["value"] == pytest.approx(2 * (m - 1) / m / 10, rel=1e-9)


def test_correlational_score_identical_windows_is_zero_and_decorrelation_is_large():
    rng = np.random.default_rng(2)
    one_window = rng.normal(size=(1, 24, 3))
    copies = np.repeat(one_window, 40, axis=0)  # every draw sees the same statistics
    assert correlational_score(copies, copies, seed=0)["value"] == pytest.approx(0.0, abs=1e-12)

    z = rng.normal(size=(400, 24, 1))
    correlated = np.concatenate([z, z + 0.3 * rng.normal(size=z.shape), rng.normal(size=z.shape)], axis=2)
    correlated_too = np.concatenate([z, z + 0.3 * rng.normal(size=z.shape), rng.normal(size=z.shape)], axis=2)
    independent = rng.normal(size=(400, 24, 3))
    same = correlational_score(correlated, correlated_too, seed=0)["value"]
    broken = correlational_score(correlated, independent, seed=0)["value"]
    assert same < 0.02
    assert broken > 0.08  # |ρ_10| ≈ 0.96 lost
    assert correlational_score(correlated, independent, seed=0)["value"] == broken  # seeded


def test_correlational_score_flags_constant_features():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(30, 6, 2))
    generated = real.copy()
    generated[:, :, 1] = 0.5  # collapsed feature
    result = correlational_score(real, generated, seed=0)
    assert math.isfinite(result["value"]) and result["zero_variance_features_generated"] == 1


def test_correlational_score_bad_input():
    x = np.zeros((10, 5, 2))
    with pytest.raises(ValueError, match="real needs at least 5"):
        correlational_score(np.ones((4, 5, 2)), x, seed=0)
    with pytest.raises(ValueError, match="share"):
        correlational_score(x, np.zeros((10, 5, 3)), seed=0)
    with pytest.raises(ValueError, match="3-D"):
        correlation_terms(np.zeros((10, 5)))
    bad = np.random.default_rng(0).normal(size=(10, 5, 2))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="generated contains NaN"):
        correlational_score(x + 1, bad, seed=0)


# ---------------------------------------------------------------- TF1 GRU cell


def test_tf1_gru_matches_tf1_equations():
    gen = torch.Generator().manual_seed(0)
    cell = TF1GRU(2, 3, gen)
    assert torch.all(cell.gate_bias == 1) and torch.all(cell.candidate_bias == 0)
    limit = math.sqrt(6 / (2 + 3 + 6))  # Glorot over the stacked (K+h, 2h) gate kernel
    assert cell.gate_kernel.abs().max() <= limit
    x = torch.randn(1, 2, 2, generator=gen)
    outputs, last = cell(x)
    wg, bg = cell.gate_kernel.detach().numpy(), cell.gate_bias.detach().numpy()
    wc, bc = cell.candidate_kernel.detach().numpy(), cell.candidate_bias.detach().numpy()
    h = np.zeros(3)
    for t in range(2):
        xt = x[0, t].numpy()
        gates = 1 / (1 + np.exp(-(np.concatenate([xt, h]) @ wg + bg)))
        r, u = gates[:3], gates[3:]
        c = np.tanh(np.concatenate([xt, r * h]) @ wc + bc)
        h = u * h + (1 - u) * c
        np.testing.assert_allclose(outputs[0, t].detach().numpy(), h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(last[0].detach().numpy(), h, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- discriminative score (§1)


def test_discriminative_same_distribution_small_shifted_large():
    real, twin = sines(400, length=16, seed=0), sines(400, length=16, seed=1)
    same = discriminative_score(real, twin, seed=0, iterations=400)
    shifted = discriminative_score(real, twin + 0.3, seed=0, iterations=400)
    assert same["value"] < 0.15
    assert shifted["value"] > 0.3
    assert same["hidden"] == 2 and not same["hidden_flag"]
    assert same["n_real_test"] == 80 and same["n_generated_test"] == 80
    assert same["value"] == pytest.approx(abs(same["accuracy"] - 0.5))
    assert 0.5 * (shifted["real_accuracy"] + shifted["fake_accuracy"]) == pytest.approx(shifted["accuracy"])


def test_discriminative_is_seeded_and_flags_single_feature():
    real, fake = sines(60, channels=1, seed=0), sines(50, channels=1, seed=1)
    first = discriminative_score(real, fake, seed=5, iterations=10, batch_size=16)
    again = discriminative_score(real, fake, seed=5, iterations=10, batch_size=16)
    assert first == again
    assert first["hidden"] == 1 and first["hidden_flag"] is True
    assert first["n_real_test"] == 12 and first["n_generated_test"] == 10


def test_discriminative_bad_input():
    real = sines(20, seed=0)
    with pytest.raises(ValueError, match="share"):
        discriminative_score(real, sines(20, channels=3, seed=1), seed=0, iterations=1)
    with pytest.raises(ValueError, match="generated must be 3-D"):
        discriminative_score(real, real[:, :, 0], seed=0, iterations=1)
    with pytest.raises(ValueError, match="real needs at least 2"):
        discriminative_score(real[:1], real, seed=0, iterations=1)


# ---------------------------------------------------------------- predictive score (§2)


def test_predictive_learnable_signal_beats_noise():
    real, train = lagged_sines(300, length=16, seed=0), lagged_sines(300, length=16, seed=1)
    noise = np.random.default_rng(2).uniform(0, 1, train.shape).astype(np.float32)
    on_real = predictive_score(real, train, seed=0, iterations=500)
    on_noise = predictive_score(real, noise, seed=0, iterations=500)
    assert on_real["hidden"] == 3 and on_real["n_real_test"] == 300
    assert on_real["value"] < on_noise["value"] - 0.1  # ≈ 0.1 vs ≈ 0.32 (constant 0.5 guess)


def test_predictive_bad_input():
    with pytest.raises(ValueError, match="K = 1"):
        predictive_score(sines(20, channels=1, seed=0), sines(20, channels=1, seed=1), seed=0, iterations=1)
    out_of_range = sines(20, seed=1) * 2
    with pytest.raises(ValueError, match=r"real: predictive targets .* \[0, 1\]"):
        predictive_score(out_of_range, sines(20, seed=0), seed=0, iterations=1)
    with pytest.raises(ValueError, match="share"):
        predictive_score(sines(20, seed=0), sines(20, length=12, seed=1), seed=0, iterations=1)


def test_predictive_clips_generated_targets_outside_unit_range_and_reports_it():
    real = sines(64, 12, 3, seed=1)
    fake = sines(64, 12, 3, seed=2)
    fake[:, :, -1] = fake[:, :, -1] * 1.2 - 0.1  # an unclipped sampler: targets in [-0.1, 1.1]
    out = predictive_score(real, fake, iterations=20, batch_size=16, seed=0)
    assert 0 < out["generated_targets_clipped"] < 1 and np.isfinite(out["value"])
    with pytest.raises(ValueError, match="real"):  # the real data must be in [0, 1]
        predictive_score(fake, real, iterations=5, batch_size=16, seed=0)
