"""FCN feature extractor (metrics.md §5.1) and the UCR scores built on it (§5.2, §5.3, §7.1, §7.2)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seriesforge.eval.metrics.fcn import (FCN, FCNTrainConfig, count_parameters, fcn_outputs, load_fcn, save_fcn,
                                          stratified_carve_out, train_fcn)
from seriesforge.eval.metrics.ucr_scores import (class_fid, classification_accuracy_score, fcn_fid,
                                                 inception_score, synthetic_class_counts)

LENGTH = 16
EPOCHS = 8  # the architecture is fixed (≈265 k parameters), so the toy problem stays small


def sines_vs_squares(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: noisy sines; class 1: noisy square waves with random phase — (N, L) float32, (N,) int."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 4 * np.pi, LENGTH)  # two sine periods, one square period
    phase = rng.uniform(0, 2 * np.pi, size=(2 * n_per_class, 1))
    sines = np.sin(t + phase[:n_per_class])
    squares = np.sign(np.sin(0.5 * t + phase[n_per_class:]))
    x = np.concatenate([sines, squares]) + 0.1 * rng.standard_normal((2 * n_per_class, LENGTH))
    y = np.repeat([0, 1], n_per_class)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def toy_data():
    return sines_vs_squares(16, seed=1), sines_vs_squares(10, seed=2)


@pytest.fixture(scope="module")
def trained_v1(toy_data):
    (x_train, y_train), (x_test, y_test) = toy_data
    cfg = FCNTrainConfig(variant="v1", epochs=EPOCHS)
    return train_fcn(x_train, y_train, cfg, x_test=x_test, y_test=y_test)


def test_v1_parameter_count_matches_paper():
    # conv 1·128·8+128, BN 256, conv 128·256·5+256, BN 512, conv 256·128·3+128, BN 256, linear 128·2+2
    model = FCN(in_channels=1, n_classes=2, variant="v1")
    assert count_parameters(model) == 1152 + 256 + 164096 + 512 + 98432 + 256 + 258
    assert abs(count_parameters(model) - 265_000) < 1_000


def test_shapes_and_layout():
    x = torch.zeros(3, 2, LENGTH)  # (B, K, L)
    for variant in ("v1", "v2"):
        model = FCN(in_channels=2, n_classes=5, variant=variant).eval()
        assert model(x).shape == (3, 5)
        assert model.features(x).shape == (3, 128)
    assert sum(isinstance(m, torch.nn.Dropout) for m in FCN(1, 2, "v2").modules()) == 5


def test_v1_learns_toy_problem(trained_v1):
    model, info = trained_v1
    assert info["test_accuracy"] > 0.9
    assert info["epochs_run"] == EPOCHS and info["n_params"] == count_parameters(model)


def test_v2_early_stopping_restores_best_weights(toy_data):
    # With a handful of steps v2's BatchNorm running statistics lag, so the eval-mode validation loss rises at
    # first: a short patience then stops early, which is what this test exercises (not v2's accuracy).
    (x_train, y_train), _ = toy_data
    fit, val = stratified_carve_out(y_train, 0.1, seed=0)
    assert len(val) == 4 and np.bincount(y_train[val]).tolist() == [2, 2]  # round(0.1·16) = 2 per class
    assert not set(fit) & set(val) and len(fit) + len(val) == len(y_train)
    seen = []
    cfg = FCNTrainConfig(variant="v2", epochs=6, patience=2, batch_size=8)
    model, info = train_fcn(x_train, y_train, cfg, progress=lambda epoch, log: seen.append(log["val_loss"]))
    assert info["n_train"] == 28 and info["n_val"] == 4 and info["test_accuracy"] is None
    assert info["epochs_run"] == len(seen) == min(6, info["best_epoch"] + 2)
    assert info["best_val_loss"] == min(seen) == seen[info["best_epoch"] - 1]
    x_val = torch.from_numpy(x_train[val][:, None, :])  # (4, 1, L)
    with torch.no_grad():
        restored = torch.nn.functional.cross_entropy(model.eval()(x_val), torch.from_numpy(y_train[val]))
    assert float(restored) == pytest.approx(info["best_val_loss"], rel=1e-5)


def test_time_major_multichannel_input_is_transposed():
    x = np.random.default_rng(0).standard_normal((6, LENGTH, 3)).astype(np.float32)  # (N, L, K)
    x[0, 0, 0] = np.nan  # NaN → 0 rule
    model = FCN(in_channels=3, n_classes=2)
    features, probabilities = fcn_outputs(model, x, batch_size=4)
    assert features.shape == (6, 128) and probabilities.shape == (6, 2)
    assert np.all(np.isfinite(features)) and np.allclose(probabilities.sum(1), 1.0)


def test_artefact_round_trip_and_sha_mismatch(trained_v1, toy_data, tmp_path):
    model, info = trained_v1
    x_test = toy_data[1][0]
    target = save_fcn(model, info, tmp_path / "fcn_gunpoint")
    meta = json.loads((target / "fcn.json").read_text())
    assert meta["variant"] == "v1" and meta["n_classes"] == 2 and meta["in_channels"] == 1
    assert meta["length"] == LENGTH and meta["test_accuracy"] == info["test_accuracy"] and len(meta["sha256"]) == 64
    loaded, _ = load_fcn(target)
    np.testing.assert_allclose(fcn_outputs(loaded, x_test)[0], fcn_outputs(model, x_test)[0], rtol=1e-6)
    save_fcn(model, info, target)  # overwriting an artefact works
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers
    weights = target / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="model.safetensors"):
        load_fcn(target)


def test_inception_score_known_cases():
    n, c = 200, 4
    one_hot = np.eye(c)[np.arange(n) % c]  # confident and balanced
    assert inception_score(one_hot, seed=0, n_split=1)["value"] == pytest.approx(c, rel=1e-9)
    assert 3.5 < inception_score(one_hot, seed=0)["value"] <= c  # parts of 20 are not exactly balanced
    uniform = inception_score(np.full((n, c), 1 / c), seed=0)
    assert uniform["value"] == pytest.approx(1.0) and uniform["per_class_ratio"] == pytest.approx(0.25)
    collapsed = inception_score(np.eye(c)[np.zeros(n, int)], seed=0)  # mode collapse: one class only
    assert collapsed["value"] == pytest.approx(1.0)
    # hand-computed: p(y|x) ∈ {(.9,.1), (.1,.9)} balanced → KL = .9 ln 1.8 + .1 ln .2, IS = exp(KL)
    soft = np.array([[0.9, 0.1], [0.1, 0.9]] * 50)
    expected = np.exp(0.9 * np.log(1.8) + 0.1 * np.log(0.2))
    assert inception_score(soft, seed=3, n_split=1)["value"] == pytest.approx(expected, rel=1e-9)
    assert inception_score(one_hot[:25], seed=0)["n_used"] == 20  # remainder dropped


def test_fcn_fid_identical_is_floor_and_shift_is_worse():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((100, 8))
    same = fcn_fid(real, real)
    assert abs(same["value"]) < 1e-6 and abs(same["iforest"]) < 1e-6
    assert same["n_real_inliers"] == same["n_generated_inliers"] == 90
    shifted = fcn_fid(real, real + 1.0)
    assert shifted["value"] == pytest.approx(8.0, rel=1e-6)  # ‖Δμ‖² = 8, covariances equal


def test_class_fid_per_class_and_skips():
    rng = np.random.default_rng(1)
    real = np.concatenate([rng.standard_normal((30, 4)), rng.standard_normal((30, 4)) + 3, rng.standard_normal((1, 4))])
    labels = np.repeat([0, 1, 2], [30, 30, 1])
    result = class_fid(real, labels, real, labels)
    assert abs(result["value"]) < 1e-6 and set(result["per_class"]) == {0, 1}
    assert 2 in result["skipped"] and "1 real" in result["skipped"][2]
    assert result["per_class"][0]["n_real"] == 30
    shifted = real.copy()
    shifted[labels == 1] += 2.0  # ‖Δμ‖² = 16 for class 1 only → mean over 2 classes = 8
    assert class_fid(real, labels, shifted, labels)["value"] == pytest.approx(8.0, rel=1e-6)
    with pytest.raises(ValueError, match="no class"):
        class_fid(real[:2], np.array([0, 1]), real[:2], np.array([0, 1]))


def test_synthetic_class_counts():
    labels = np.repeat([0, 1, 2], [10, 30, 10])  # N = 50 → ×20
    assert synthetic_class_counts(labels) == {0: 200, 1: 600, 2: 200}
    big = np.repeat([0, 1], [700, 600])
    assert synthetic_class_counts(big) == {0: 700, 1: 600}  # already ≥ 1000: unchanged
    assert synthetic_class_counts(np.array([0, 1, 2])) == {0: 333, 1: 333, 2: 333}  # reference rounding


def test_cas_of_real_as_synthetic_is_high(toy_data):
    (x_train, y_train), (x_test, y_test) = toy_data
    result = classification_accuracy_score(x_train, y_train, x_test, y_test, FCNTrainConfig(epochs=EPOCHS))
    assert result["value"] > 0.9 and result["classes_missing_from_synthetic"] == []
    swapped = classification_accuracy_score(x_train, 1 - y_train, x_test, y_test, FCNTrainConfig(epochs=EPOCHS))
    assert swapped["value"] < 0.1  # a generator with the class labels swapped scores near 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="probabilities"):
        inception_score(np.full((5, 2), 0.5), seed=0)  # N < n_split
    with pytest.raises(ValueError, match="rows must sum to 1"):
        inception_score(np.ones((20, 2)), seed=0)
    with pytest.raises(ValueError, match="x_train"):
        train_fcn(np.zeros((4, 2, 3, 4)), np.zeros(4, int), FCNTrainConfig(epochs=1))
    with pytest.raises(ValueError, match="y_train"):
        train_fcn(np.zeros((4, 8)), np.array([0.0, 1.0, 0.0, 1.0]), FCNTrainConfig(epochs=1))
    with pytest.raises(ValueError, match="variant"):
        FCN(1, 2, variant="v3")
