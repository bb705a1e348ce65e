"""T2S caption-paired metrics (metrics.md §7.3), mirroring `WinfredGe/T2S` `evaluation.py`.

Each test item is a (caption, real series x) pair and the model generates x̂ from the caption, so these metrics compare
item i of `real` with item i of `generated` (no distribution matching). Inputs are the dataset's min-max-scaled values,
one call per (source, L).

* `paired_errors`: MSE / MAE / RMSE / WAPE (T2S `calculate_mse`, `calculate_mae`, `calculate_rmse`, `calculate_wape`).
* `mrr10_code`: the T2S `calculate_mrr` exactly as coded (run-index rank, global threshold 0.5).
* `mrr10_retrieval`: the seriesforge retrieval MRR@10 (metrics.md §7.3 "decision").

decision (RMSE): "rmse" is the mean over items of the per-item RMSE √(mean over t and k of squared error). T2S
`calculate_rmse` instead averages per-channel RMSEs within an item; the two agree for univariate series (all T2S
sources, K = 1) and differ for K > 1, so that variant is also reported as "rmse_code".
decision (WAPE): items whose Σ|x| is 0 are skipped (T2S: NaN then `np.nanmean`) and counted in "wape_skipped"; if
every item is skipped, "wape" is None with a "wape_note" — never a silent zero.
decision (cosine of a zero vector): 0, as T2S `cosine_similarity` (`np.nan_to_num` of 0/0).
decision (ties in `mrr10_retrieval`): the paired real item's rank is the number of candidates whose similarity is ≥
its own (ties count against the generation), so a degenerate generation (e.g. all zeros, similarity 0 to everything)
cannot score a perfect rank.
decision (uniform signature): `seed` and `device` are accepted for the common metric signature and unused — these
metrics are closed-form numpy.
"""

from __future__ import annotations

import numpy as np

RETRIEVAL_BLOCK = 1024  # generated rows per similarity block, bounds the (block, N) matrix in memory


def paired_errors(real: np.ndarray, generated: np.ndarray, *, seed: int = 0, device: str = "cpu") -> dict:
    """MSE (headline), MAE, RMSE and WAPE of paired `real` and `generated`, both (N, L, K) or (N, L)."""
    x = _as_series(real, "real")
    x_hat = _as_series(generated, "generated")
    _check_same_shape(x, x_hat)
    error = x - x_hat  # (N, L, K)
    squared = (error**2).reshape(len(x), -1)  # (N, L*K)
    absolute = np.abs(error).reshape(len(x), -1)  # (N, L*K)
    rmse_per_channel = np.sqrt((error**2).mean(axis=1))  # (N, K)
    result = {
        "value": float(squared.mean(axis=1).mean()),
        "mse": float(squared.mean(axis=1).mean()),
        "mae": float(absolute.mean(axis=1).mean()),
        "rmse": float(np.sqrt(squared.mean(axis=1)).mean()),
        "rmse_code": float(rmse_per_channel.mean(axis=1).mean()),
        "n_items": int(len(x)),
    }
    result.update(_wape(x, absolute))
    return result


def _wape(x: np.ndarray, absolute: np.ndarray) -> dict:
    """Mean over items of Σ|x − x̂| / Σ|x|, skipping items with Σ|x| = 0 (T2S `calculate_wape`)."""
    denominator = np.abs(x).reshape(len(x), -1).sum(axis=1)  # (N,)
    numerator = absolute.sum(axis=1)  # (N,)
    kept = denominator != 0
    skipped = int((~kept).sum())
    if not kept.any():
        note = f"all {len(x)} items have sum |x| = 0, so WAPE is undefined for every item"
        return {"wape": None, "wape_skipped": skipped, "wape_note": note}
    return {"wape": float((numerator[kept] / denominator[kept]).mean()), "wape_skipped": skipped}


def mrr10_code(
    real: np.ndarray, runs: np.ndarray, *, threshold: float = 0.5, seed: int = 0, device: str = "cpu"
) -> dict:
    """T2S `calculate_mrr` as coded: `real` (N, L[, K]), `runs` (R, N, L[, K]), normally R = 10.

    For item i, s_r = cosine(x_i, x̂_i⁽ʳ⁾) on flattened series; walk runs in descending s_r and stop at the first with
    s_r > threshold; RR = 1 / (run index + 1) — the run's index, not its position in the sorted list — else 0.
    Since the walk is descending, that run is the most similar one whenever any run exceeds the threshold.
    """
    x = _as_series(real, "real")
    runs = np.asarray(runs, dtype=np.float64)
    if runs.ndim not in (3, 4):
        raise ValueError(f"runs must be (R, N, L) or (R, N, L, K), got shape {runs.shape}")
    if runs.ndim == 3:
        runs = runs[..., None]
    if runs.shape[1:] != x.shape:
        raise ValueError(f"runs items must match real: runs has shape {runs.shape}, real {x.shape}")
    _check_finite(runs, "runs")
    n_runs = runs.shape[0]
    similarities = np.stack([_paired_cosine(x, run) for run in runs], axis=1)  # (N, R)
    reciprocal_ranks = np.zeros(len(x))
    hit_run = np.full(len(x), -1)
    for item, item_similarities in enumerate(similarities):
        # same ordering as T2S: np.argsort(...)[::-1] (its tie order included)
        for run_index in np.argsort(item_similarities)[::-1]:
            if item_similarities[run_index] > threshold:
                reciprocal_ranks[item] = 1.0 / (run_index + 1)
                hit_run[item] = run_index
                break
    return {
        "value": float(reciprocal_ranks.mean()),
        "n_items": int(len(x)),
        "n_runs": int(n_runs),
        "threshold": float(threshold),
        "no_hit": int((hit_run < 0).sum()),
        "hit_run_counts": np.bincount(hit_run[hit_run >= 0], minlength=n_runs).tolist(),
        "uniform_reference": float(np.mean(1.0 / np.arange(1, n_runs + 1))),  # H_R / R ≈ 0.29 for R = 10
        "mean_similarity": float(similarities.mean()),
    }


def mrr10_retrieval(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    k: int = 10,
    seed: int = 0,
    device: str = "cpu",
) -> dict:
    """Retrieval MRR@k: rank all real items (of the generation's group) by cosine similarity to each generation.

    `real` and `generated` are paired (N, L[, K]); `groups` (N,) restricts candidates to the same group (e.g. the
    source). RR_i = 1 / rank of real item i among the candidates for generated item i if rank ≤ k, else 0.
    """
    x = _as_series(real, "real")
    x_hat = _as_series(generated, "generated")
    _check_same_shape(x, x_hat)
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    group_ids = np.zeros(len(x), dtype=np.int64) if groups is None else _group_ids(groups, len(x))
    ranks = np.zeros(len(x), dtype=np.int64)
    for group in np.unique(group_ids):
        members = np.flatnonzero(group_ids == group)  # (n_g,)
        ranks[members] = _paired_ranks(x[members], x_hat[members])
    reciprocal_ranks = np.where(ranks <= k, 1.0 / ranks, 0.0)
    result = {
        "value": float(reciprocal_ranks.mean()),
        "k": int(k),
        "n_items": int(len(x)),
        "hit_rate": float((ranks <= k).mean()),
        "median_rank": float(np.median(ranks)),
    }
    if groups is not None:
        labels = np.asarray(groups).reshape(-1)
        result["per_group"] = {
            str(labels[group_ids == g][0]): float(reciprocal_ranks[group_ids == g].mean()) for g in np.unique(group_ids)
        }
    return result


def _paired_ranks(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Rank (1 = best, ties pessimistic) of real item i among all real items by cosine to generated item i."""
    real_unit = _unit_rows(x.reshape(len(x), -1))  # (n, D)
    generated_unit = _unit_rows(x_hat.reshape(len(x_hat), -1))  # (n, D)
    ranks = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), RETRIEVAL_BLOCK):
        stop = min(start + RETRIEVAL_BLOCK, len(x))
        similarity = generated_unit[start:stop] @ real_unit.T  # (b, n)
        paired = similarity[np.arange(stop - start), np.arange(start, stop)]  # (b,)
        ranks[start:stop] = (similarity >= paired[:, None]).sum(axis=1)
    return ranks


def _paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of flattened a[i] and b[i] for each i; 0 where either norm is 0 (T2S nan_to_num)."""
    return (_unit_rows(a.reshape(len(a), -1)) * _unit_rows(b.reshape(len(b), -1))).sum(axis=1)  # (N,)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm; zero rows stay zero so their cosine with anything is 0."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)  # (N, 1)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _group_ids(groups, n_items: int) -> np.ndarray:
    labels = np.asarray(groups).reshape(-1)
    if len(labels) != n_items:
        raise ValueError(f"groups must have one label per item ({n_items}), got {len(labels)}")
    return np.unique(labels, return_inverse=True)[1].reshape(-1)


def _as_series(x: np.ndarray, name: str) -> np.ndarray:
    """(N, L, K) float64 view of (N, L) or (N, L, K) input; rejects other ndims, empty sets and NaN/inf."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must be (N, L) or (N, L, K), got shape {x.shape}")
    if x.ndim == 2:
        x = x[..., None]
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one item of length ≥ 1, got shape {x.shape}")
    _check_finite(x, name)
    return x


def _check_finite(x: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")


def _check_same_shape(x: np.ndarray, x_hat: np.ndarray) -> None:
    if x.shape != x_hat.shape:
        raise ValueError(f"real and generated must be paired with equal shapes, got real {x.shape}, "
                         f"generated {x_hat.shape}")
