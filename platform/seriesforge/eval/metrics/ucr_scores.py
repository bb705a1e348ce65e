"""UCR-family scores on top of the FCN (metrics.md §5.2 IS, §5.3 FCN FID, §7.1 cFID, §7.2 CAS / TSTR).

Mirrors `danelee2601/supervised-FCN` `example_compute_IS.py` (IS), `ML4ITS/TimeVQVAE` `evaluation/evaluation.py`
(FID on FCN features; the 2024 code's IsolationForest filter) and `evaluation/cas.py` (synthetic class counts).

decision: the IS "std" is the population std (ddof 0) over the parts, as `np.std` in the reference script.
decision: the IS shuffle uses `np.random.default_rng(seed)` instead of the reference's global `np.random.shuffle`,
and does not modify the caller's array.
decision: `class_fid` scores every class that appears in either set; a class with < 2 rows on either side (or, with
`iforest=True`, < 2 inliers) is listed in "skipped" with the reason and left out of the mean — never scored as 0.
decision: `synthetic_class_counts` uses Python's round (half to even) on n_c·(1000/N), as the reference `CASDataset`;
rounding can leave the total a few series short of 1 000 (e.g. 3 classes of 1 → 999); callers sum the counts.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from seriesforge.eval.metrics.fcn import FCNTrainConfig, train_fcn
from seriesforge.eval.metrics.frechet import frechet_distance, isolation_forest_inliers

IS_EPSILON = 1e-16  # inside both logs, as in the reference script


def inception_score(probabilities: np.ndarray, *, seed: int, n_split: int = 10) -> dict:
    """IS = exp(E_x KL(p(y|x) ‖ p(y))) per part of a seeded shuffle into `n_split` equal parts; mean and std."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be 2-D (N, C), got shape {p.shape}")
    if not np.all(np.isfinite(p)) or (p < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probabilities rows must sum to 1 (pass softmax outputs, not logits)")
    if n_split < 1 or len(p) < n_split:
        raise ValueError(f"probabilities has {len(p)} rows, fewer than n_split = {n_split}")
    shuffled = p[np.random.default_rng(seed).permutation(len(p))]
    part = len(p) // n_split  # the remainder is dropped, as in the reference
    scores = [_inception_score_of_part(shuffled[i * part:(i + 1) * part]) for i in range(n_split)]
    value = float(np.mean(scores))
    n_classes = int(p.shape[1])
    return {"value": value, "std": float(np.std(scores)), "per_split": [float(s) for s in scores],
            "n_classes": n_classes, "per_class_ratio": value / n_classes, "n_used": part * n_split,
            "n_split": n_split, "seed": seed}


def _inception_score_of_part(p_yx: np.ndarray) -> float:
    p_y = p_yx.mean(axis=0, keepdims=True)  # (1, C) marginal over the part
    kl = p_yx * (np.log(p_yx + IS_EPSILON) - np.log(p_y + IS_EPSILON))  # (n, C)
    return float(np.exp(kl.sum(axis=1).mean()))


def fcn_fid(real_features: np.ndarray, generated_features: np.ndarray) -> dict:
    """Plain FID ("value", primary) and FID after the IsolationForest inlier filter on both sets ("iforest")."""
    plain = frechet_distance(real_features, generated_features)
    real_in = isolation_forest_inliers(np.asarray(real_features, dtype=np.float64))
    generated_in = isolation_forest_inliers(np.asarray(generated_features, dtype=np.float64))
    filtered = frechet_distance(real_in, generated_in)
    return {"value": plain["value"], "regularized": plain["regularized"], "iforest": filtered["value"],
            "iforest_regularized": filtered["regularized"], "n_real": plain["n_real"],
            "n_generated": plain["n_generated"], "n_real_inliers": filtered["n_real"],
            "n_generated_inliers": filtered["n_generated"]}


def class_fid(real_features: np.ndarray, real_labels: np.ndarray, generated_features: np.ndarray,
              generated_labels: np.ndarray, *, iforest: bool = False) -> dict:
    """cFID: FID per class between real and generated features, "value" = unweighted mean over scored classes."""
    real_features, real_labels = _features_with_labels(real_features, real_labels, "real")
    generated_features, generated_labels = _features_with_labels(generated_features, generated_labels, "generated")
    if real_features.shape[1] != generated_features.shape[1]:
        raise ValueError(f"feature widths differ: real {real_features.shape[1]}, "
                         f"generated {generated_features.shape[1]}")
    per_class, skipped = {}, {}
    for label in np.union1d(real_labels, generated_labels):
        real_c = real_features[real_labels == label]
        generated_c = generated_features[generated_labels == label]
        if iforest and len(real_c) >= 2 and len(generated_c) >= 2:
            real_c, generated_c = isolation_forest_inliers(real_c), isolation_forest_inliers(generated_c)
        reason = _skip_reason(len(real_c), len(generated_c), iforest)
        if reason is not None:
            skipped[int(label)] = reason
            continue
        fid = frechet_distance(real_c, generated_c)
        per_class[int(label)] = {"value": fid["value"], "regularized": fid["regularized"],
                                 "n_real": fid["n_real"], "n_generated": fid["n_generated"]}
    if not per_class:
        raise ValueError(f"no class can be scored: every class has < 2 real or generated rows ({skipped})")
    values = [entry["value"] for entry in per_class.values()]
    return {"value": float(np.mean(values)), "per_class": per_class, "skipped": skipped,
            "n_classes_scored": len(per_class), "iforest": iforest,
            "regularized": any(entry["regularized"] for entry in per_class.values())}


def _skip_reason(n_real: int, n_generated: int, iforest: bool) -> str | None:
    rows = "inliers" if iforest else "rows"
    if n_real < 2:
        return f"{n_real} real {rows} (< 2, no covariance)"
    if n_generated < 2:
        return f"{n_generated} generated {rows} (< 2, no covariance)"
    return None


def _features_with_labels(features: np.ndarray, labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim != 2:
        raise ValueError(f"{name}_features must be 2-D (N, D), got shape {features.shape}")
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(f"{name}_labels must be 1-D with {len(features)} entries, got shape {labels.shape}")
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name}_features contain NaN or inf")
    return features, labels


def classification_accuracy_score(x_synth: np.ndarray, y_synth: np.ndarray, x_test: np.ndarray,
                                  y_test: np.ndarray, cfg: FCNTrainConfig | None = None, *,
                                  device: str = "cpu") -> dict:
    """CAS / TSTR: a fresh FCN (v1 unless `cfg` says otherwise) trained on synthetic data, accuracy on real test.

    Labels are class indices 0..C−1 in both sets; with real training data in place of `x_synth` this is TRTR.
    """
    cfg = cfg if cfg is not None else FCNTrainConfig(variant="v1")
    y_synth, y_test = np.asarray(y_synth), np.asarray(y_test)
    if y_synth.ndim != 1 or y_test.ndim != 1 or len(y_synth) == 0 or len(y_test) == 0:
        raise ValueError(f"y_synth and y_test must be non-empty 1-D, got shapes {y_synth.shape}, {y_test.shape}")
    n_classes = int(max(y_synth.max(), y_test.max()) + 1)
    _, info = train_fcn(x_synth, y_synth, cfg, x_test=x_test, y_test=y_test, n_classes=n_classes, device=device)
    missing = sorted(set(np.unique(y_test).tolist()) - set(np.unique(y_synth).tolist()))
    return {"value": info["test_accuracy"], "n_synthetic": int(len(y_synth)), "n_test": int(len(y_test)),
            "n_classes": n_classes, "classes_missing_from_synthetic": missing, "epochs_run": info["epochs_run"],
            "final_train_loss": info["final_train_loss"], "variant": cfg.variant, "seed": cfg.seed}


def synthetic_class_counts(train_labels: np.ndarray, *, minimum_total: int = 1000) -> dict[int, int]:
    """Per-class synthetic counts (§7.2): real proportions, n_c′ = round(n_c·minimum_total/N) when N < minimum_total."""
    labels = np.asarray(train_labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"train_labels must be non-empty 1-D, got shape {labels.shape}")
    counts = {int(k): int(v) for k, v in Counter(labels.tolist()).items()}
    total = sum(counts.values())
    if total < minimum_total:
        multiplier = minimum_total / total
        counts = {k: int(round(v * multiplier)) for k, v in counts.items()}
    return dict(sorted(counts.items()))
