"""Summaries of repeated metric values (metrics.md §0 "Repeats and intervals").

Every repeat's raw value is stored; these summaries are derived on read. The Diffusion-TS tables print
mean ± t₀.₉₇₅,ₙ₋₁·s/√n (a 95 % t-interval, `Utils/metric_utils.py:display_scores`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def summarize(values) -> dict:
    """Mean, sample std and the half-width of the 95 % t-interval of finite repeat values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return {"mean": None, "std": None, "ci95": None, "n": 0}
    if len(x) == 1:
        return {"mean": float(x[0]), "std": None, "ci95": None, "n": 1}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(x) - 1) * std / math.sqrt(len(x)))
    return {"mean": float(x.mean()), "std": std, "ci95": half, "n": int(len(x))}


def format_summary(summary: dict, digits: int = 3) -> str:
    """"0.123±.004" as the papers print it; "n/a" when nothing was measured."""
    if summary["mean"] is None:
        return "n/a"
    mean = f"{summary['mean']:.{digits}f}"
    if summary["ci95"] is None:
        return mean
    return f"{mean}±{summary['ci95']:.{digits}f}".replace("±0.", "±.")
