"""Correlational score of the benchmark suite (metrics.md §4).

Mirrors `Y-debug-sys/Diffusion-TS` `Utils/cross_correlation.py` (`cacf_torch` with max_lag = 1, `CrossCorrelLoss`)
and the protocol cell of `Experiments/metric_pytorch.ipynb` (`random_choice` draws indices with replacement).

For one set X (n, L, K): standardise each feature over samples and time jointly (unbiased std), then for every pair
(i, j) with j ≤ i — the order of `torch.tril_indices(K, K)`, i.e. row-major lower triangle, K(K+1)/2 terms —
ρ_ij = mean over samples of mean_t z_i[t]·z_j[t] (lag 0). Score = Σ |ρ_ij(generated) − ρ_ij(real)| / 10.
Each set is standardised with its own statistics, as in `CrossCorrelLoss`.

decision (one repeat per call): `correlational_score` runs ONE repeat (⌊N_real/5⌋ real and ⌊N_real/5⌋ generated
indices, with replacement, independently, real first, from `np.random.default_rng(seed)`); the caller runs the five
repeats with different seeds and summarises them (`summary.py`).
decision (constant features): the reference divides by a zero std and returns NaN when a feature is constant over
the drawn windows (e.g. a collapsed generator); here such a feature standardises to 0 (its ρ terms are 0) and the
count is reported in `zero_variance_features_real` / `_generated` so reports can flag it.
decision (arithmetic): float64 numpy; all windows share one L, so "mean over samples of the mean over time" equals
the mean over all (sample, step) rows and ρ = Zᵀ Z / (n·L).
"""

from __future__ import annotations

import numpy as np

SCORE_DIVISOR = 10.0  # `CrossCorrelLoss.compute` returns the summed |difference| / 10
REPEAT_FRACTION = 5  # each repeat draws ⌊N_real / 5⌋ windows per set


def _as_windows(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"{name} must be 3-D (N, L, K), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"{name} has an empty axis: shape {x.shape}")
    if x.shape[0] * x.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 (window, step) values per feature for an unbiased std")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _standardise(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(n, L, K) -> rows (n·L, K) with zero mean and unit unbiased std per feature; also the count of constant ones."""
    rows = x.reshape(-1, x.shape[2])  # (n·L, K)
    std = rows.std(axis=0, ddof=1)  # (K,)
    constant = std == 0.0
    safe_std = np.where(constant, 1.0, std)
    return (rows - rows.mean(axis=0)) / safe_std, int(constant.sum())


def _terms_and_constant_count(x: np.ndarray) -> tuple[np.ndarray, int]:
    z, constant = _standardise(x)  # (n·L, K)
    rho = z.T @ z / len(z)  # (K, K) lag-0 cross-correlations
    lower_i, lower_j = np.tril_indices(x.shape[2])  # row-major, j ≤ i, same order as torch.tril_indices
    return rho[lower_i, lower_j], constant


def correlation_terms(x: np.ndarray) -> np.ndarray:
    """The K(K+1)/2 lag-0 correlation terms ρ_ij (j ≤ i, row-major) of one set x (n, L, K)."""
    terms, _ = _terms_and_constant_count(_as_windows(x, "x"))
    return terms


def correlational_score(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    seed: int,
    device: str = "cpu",
) -> dict:
    """One repeat of the §4 protocol: Σ|ρ(generated draw) − ρ(real draw)| / 10.

    real (N, L, K) and generated (M, L, K) with N ≥ 5; `device` is accepted for a uniform metric signature and
    ignored (numpy on CPU is fast enough: the work is one (n·L, K)ᵀ(n·L, K) product per set).
    """
    real = _as_windows(real, "real")
    generated = _as_windows(generated, "generated")
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(
            f"real and generated must share (L, K): real has {real.shape[1:]}, generated {generated.shape[1:]}"
        )
    draw = len(real) // REPEAT_FRACTION
    if draw < 1:
        raise ValueError(f"real needs at least {REPEAT_FRACTION} windows (draws N_real // 5), got {len(real)}")
    if draw * real.shape[1] < 2:
        raise ValueError(f"real draws of {draw} window(s) of length 1 are too few for an unbiased std")

    rng = np.random.default_rng(seed)
    real_rows = rng.integers(0, len(real), size=draw)  # with replacement, as `random_choice`
    generated_rows = rng.integers(0, len(generated), size=draw)
    real_terms, real_constant = _terms_and_constant_count(real[real_rows])
    generated_terms, generated_constant = _terms_and_constant_count(generated[generated_rows])
    return {
        "value": float(np.abs(generated_terms - real_terms).sum() / SCORE_DIVISOR),
        "n_drawn": int(draw),
        "n_terms": int(len(real_terms)),
        "zero_variance_features_real": real_constant,
        "zero_variance_features_generated": generated_constant,
        "seed": int(seed),
    }
