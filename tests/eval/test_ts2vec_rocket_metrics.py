"""Context-FID with TS2Vec (metrics.md §3) and ROCKET-feature FID (§6), at tiny sizes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seriesforge.eval.metrics.frechet import frechet_distance
from seriesforge.eval.metrics.rocket import (
    load_kernels,
    make_kernels,
    rocket_features,
    rocket_fid,
    save_kernels,
)
from seriesforge.eval.metrics.ts2vec import (
    TS2Vec,
    TS2VecEncoder,
    context_fid,
    default_n_iters,
    hierarchical_contrastive_loss,
)

TINY = {"n_iters": 30, "depth": 3, "output_dims": 32}


def sines(n: int, length: int = 24, channels: int = 2, *, seed: int, shift: float = 0.0,
          scale: float = 1.0) -> np.ndarray:
    """Random-frequency, random-phase sines in [0, 1] (N, L, K), optionally shifted and scaled."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[None, :, None]
    freq = rng.uniform(0.1, 0.3, (n, 1, channels))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, channels))
    return (scale * (0.5 + 0.5 * np.sin(freq * t + phase)) + shift).astype(np.float32)


# ---------------------------------------------------------------- TS2Vec / Context-FID (§3)

def test_default_budget_rule():
    assert default_n_iters(100_000) == 200
    assert default_n_iters(100_001) == 600
    assert default_n_iters(10_000 * 24 * 5) == 600  # Sines suite


def test_encoder_keeps_length_and_width():
    enc = TS2VecEncoder(input_dims=3, output_dims=16, hidden_dims=8, depth=4)
    assert len(enc.blocks) == 5  # depth blocks + final block
    assert [b.conv1.conv.dilation[0] for b in enc.blocks] == [1, 2, 4, 8, 16]
    out = enc(torch.randn(2, 7, 3), torch.ones(2, 7, dtype=torch.bool))
    assert out.shape == (2, 7, 16)


def test_hierarchical_loss_hand_computed():
    # B = 2, T = 1: only the instance term, α = 0.5. Each row sees its partner at a², two others at 0.
    a = 1.5
    z1 = torch.tensor([[[a, 0.0]], [[0.0, a]]])
    expected = 0.5 * math.log(1 + 2 * math.exp(-a * a))
    assert float(hierarchical_contrastive_loss(z1, z1.clone())) == pytest.approx(expected, rel=1e-5)


@pytest.fixture(scope="module")
def fitted() -> tuple[TS2Vec, list[float]]:
    """One tiny encoder fitted on the real sines, shared by the tests below (keeps the file fast)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = TS2Vec(2, depth=3, output_dims=32, seed=0)
    losses = model.fit(sines(64, seed=0), n_iters=40)
    torch.set_num_threads(before)
    return model, losses


def test_loss_decreases_during_short_fit(fitted):
    _, losses = fitted
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.05


def test_embeddings_separate_shifted_from_same_distribution(fitted):
    model, _ = fitted
    real = model.encode_full_series(sines(64, seed=0))
    assert real.shape == (64, 32)
    same = frechet_distance(real, model.encode_full_series(sines(64, seed=1)))["value"]
    shifted = frechet_distance(real, model.encode_full_series(sines(64, seed=1, shift=0.3, scale=1.5)))["value"]
    assert 0.0 <= same < 0.2
    assert shifted > 10 * same


def test_context_fid_end_to_end_is_deterministic():
    real, generated = sines(64, seed=0), sines(64, seed=1)
    first = context_fid(real, generated, seed=0, **TINY)
    assert first["n_iters"] == 30 and not first["regularized"]
    assert first["n_real"] == first["n_generated"] == 64
    assert 0.0 <= first["value"] < 0.2
    again = context_fid(real, generated, seed=0, **TINY)
    assert again["value"] == first["value"]  # deterministic for a seed on CPU


def test_context_fid_bad_input():
    real = sines(8, seed=0)
    with pytest.raises(ValueError, match="real"):
        context_fid(real[0], real, seed=0, **TINY)
    with pytest.raises(ValueError, match="K="):
        context_fid(real, real[:, :, :1], seed=0, **TINY)
    broken = real.copy()
    broken[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="generated contains NaN"):
        context_fid(real, broken, seed=0, **TINY)
    with pytest.raises(ValueError, match="at least 2"):
        context_fid(real, real[:1], seed=0, **TINY)


# ---------------------------------------------------------------- ROCKET (§6)

def test_kernels_follow_rocket_distribution_and_seed():
    length = 150
    k = make_kernels(length, n_kernels=1000, seed=0)
    assert k.n_kernels == 1000 and len(k.weights) == int(k.lengths.sum())
    assert set(np.unique(k.lengths)) == {7, 9, 11}
    assert np.all(np.abs(k.biases) < 1)
    assert all(abs(k.kernel_weights(i).mean()) < 1e-12 for i in range(0, 1000, 97))
    span = (k.lengths - 1) * k.dilations
    assert k.dilations.min() == 1 and np.all(span <= length - 1) and k.dilations.max() > 4
    assert np.all((k.paddings == 0) | (k.paddings == span // 2))
    assert 0.4 < np.mean(k.paddings > 0) < 0.6
    again, other = make_kernels(length, seed=0), make_kernels(length, seed=1)
    assert np.array_equal(k.weights, again.weights) and np.array_equal(k.dilations, again.dilations)
    assert not np.array_equal(k.biases, other.biases)


def test_kernels_survive_save_load(tmp_path):
    k = make_kernels(40, n_kernels=20, seed=3)
    path = tmp_path / "sub" / "rocket_L40.npz"
    save_kernels(k, path)
    assert [p.name for p in path.parent.iterdir()] == ["rocket_L40.npz"]  # no temporary file left behind
    loaded = load_kernels(path)
    for name in ("lengths", "weights", "biases", "dilations", "paddings"):
        assert np.array_equal(getattr(k, name), getattr(loaded, name))
    assert loaded.input_length == 40


def _naive_rocket(series: np.ndarray, k) -> np.ndarray:
    """Loop transcription of ROCKET's apply_kernel (zero padding by skipping outside indices)."""
    row = []
    for i in range(k.n_kernels):
        w, klen, d, p = k.kernel_weights(i), int(k.lengths[i]), int(k.dilations[i]), int(k.paddings[i])
        outs = []
        for start in range(-p, len(series) + p - (klen - 1) * d):
            idx = start + d * np.arange(klen)
            ok = (idx >= 0) & (idx < len(series))
            outs.append(k.biases[i] + np.sum(w[ok] * series[idx[ok]]))
        outs = np.array(outs)
        row += [np.mean(outs > 0), outs.max()]
    row = np.array(row)
    return row / np.linalg.norm(row)


@pytest.mark.parametrize("length", [60, 5])  # 5: every kernel longer than the series
def test_features_match_loop_reference(length):
    k = make_kernels(length, n_kernels=40, seed=0)
    x = np.random.default_rng(1).normal(size=(2, length, 3))
    feats = rocket_features(x, k)  # channel 0 only
    for n in range(2):
        np.testing.assert_allclose(feats[n], _naive_rocket(x[n, :, 0], k), atol=1e-12)


def test_features_shape_unit_norm_and_fid_ordering():
    k = make_kernels(48, n_kernels=1000, seed=0)
    real = sines(200, 48, 1, seed=0)
    feats = rocket_features(real, k)
    assert feats.shape == (200, 2000)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-12)
    small = make_kernels(48, n_kernels=25, seed=0)  # 50 features keep sqrtm cheap
    same = rocket_fid(real, sines(200, 48, 1, seed=1), kernels=small)
    shifted = rocket_fid(real, sines(200, 48, 1, seed=1, shift=0.5, scale=2.0), kernels=small)
    assert same["value"] < shifted["value"] / 10
    filtered = rocket_fid(real, sines(200, 48, 1, seed=1), kernels=small, iforest=True)
    assert filtered["iforest"] and filtered["n_real"] == 180 and filtered["n_generated"] == 180


def test_rocket_bad_input():
    k = make_kernels(30, n_kernels=10, seed=0)
    with pytest.raises(ValueError, match="x must be"):
        rocket_features(np.zeros((2, 3, 4, 5)), k)
    with pytest.raises(ValueError, match="NaN"):
        rocket_features(np.full((2, 30), np.nan), k)
    with pytest.raises(ValueError, match="too short"):
        rocket_features(np.zeros((2, 3)), make_kernels(150, n_kernels=50, seed=0))
    with pytest.raises(ValueError, match="length"):
        make_kernels(1)
    with pytest.raises(ValueError, match="generated"):
        rocket_fid(np.zeros((4, 30)), np.zeros((1, 30, 2, 2)), kernels=k)
