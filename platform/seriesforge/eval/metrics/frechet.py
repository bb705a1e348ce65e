"""Fréchet distance between two feature sets (metrics.md §3, reused by §5.3, §6 and §7.1).

FID(μ_r, Σ_r; μ_g, Σ_g) = ‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2(Σ_r Σ_g)^½), unbiased covariances, `scipy.linalg.sqrtm`,
real part. When either set has fewer rows than feature dimensions (e.g. 128-d FCN features of a small UCR class) the
covariance is singular and sqrtm may return non-finite values; then 1e-6·I is added to both covariances and the
result is flagged `regularized` so that reports can say so.

decision (wide features): above `SQRTM_MAX_DIM` dimensions (ROCKET's 2 000 features) the trace term is computed as
Tr((Σ_r Σ_g)^½) = Σ √λᵢ(Σ_r^½ Σ_g Σ_r^½), equal in exact arithmetic (Σ_r Σ_g is similar to that PSD matrix) and
built from two symmetric eigendecompositions: sqrtm's Schur route took minutes per call at D = 2 000 on one CPU
thread. At the protocol widths of Context-FID (320) and the FCN (128), sqrtm is kept for parity with the papers' code.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

REGULARIZER = 1e-6  # added to both covariance diagonals when sqrtm fails (metrics.md §5.3 "Numerics")
SQRTM_MAX_DIM = 512  # wider features use the symmetric-eigenvalue form of the trace term


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> dict:
    """Fréchet distance of `real` (N, D) and `generated` (M, D) features; needs N, M ≥ 2."""
    real = _as_features(real, "real")
    generated = _as_features(generated, "generated")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"feature widths differ: real has {real.shape[1]}, generated {generated.shape[1]}")
    mu_r, mu_g = real.mean(axis=0), generated.mean(axis=0)
    cov_r, cov_g = np.cov(real, rowvar=False), np.cov(generated, rowvar=False)
    cov_r, cov_g = np.atleast_2d(cov_r), np.atleast_2d(cov_g)
    if cov_r.shape[0] > SQRTM_MAX_DIM:
        trace_root, regularized = _trace_sqrt_product_eigh(cov_r, cov_g), False
    else:
        root, regularized = _sqrtm_product(cov_r, cov_g)
        trace_root = float(np.trace(root))
    value = float(np.sum((mu_r - mu_g) ** 2) + np.trace(cov_r) + np.trace(cov_g) - 2.0 * trace_root)
    return {"value": value, "regularized": regularized, "n_real": len(real), "n_generated": len(generated)}


def _sqrtm_product(cov_r: np.ndarray, cov_g: np.ndarray) -> tuple[np.ndarray, bool]:
    root = linalg.sqrtm(cov_r @ cov_g)
    if np.all(np.isfinite(root)):
        return np.real(root), False
    eye = np.eye(cov_r.shape[0]) * REGULARIZER
    root = linalg.sqrtm((cov_r + eye) @ (cov_g + eye))
    return np.real(root), True


def _trace_sqrt_product_eigh(cov_r: np.ndarray, cov_g: np.ndarray) -> float:
    """Tr((Σ_r Σ_g)^½) via Σ_r^½ Σ_g Σ_r^½ (symmetric PSD); tiny negative eigenvalues from rounding count as 0."""
    lam, vec = np.linalg.eigh(cov_r)
    root_r = (vec * np.sqrt(np.clip(lam, 0.0, None))) @ vec.T  # Σ_r^½
    inner = root_r @ cov_g @ root_r
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None))))


def _as_features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} features must be 2-D (N, D), got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"{name} features need at least 2 rows for a covariance, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} features contain NaN or inf")
    return x


def isolation_forest_inliers(features: np.ndarray) -> np.ndarray:
    """Rows an IsolationForest keeps as inliers (the 2024 TimeVQVAE / NM-VQTSG filter, metrics.md §5.3)."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(max_samples=0.9, contamination=0.1, random_state=0)
    keep = forest.fit_predict(np.asarray(features, dtype=np.float64)) == 1
    return np.asarray(features)[keep]
