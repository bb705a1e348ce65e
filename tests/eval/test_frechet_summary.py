"""Fréchet distance (both trace forms) and the repeat summaries (mean ± t-interval) on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from seriesforge.eval.metrics import frechet
from seriesforge.eval.metrics.summary import format_summary, summarize


def test_identical_sets_score_zero_and_a_mean_shift_scores_its_squared_norm():
    x = np.random.default_rng(0).normal(size=(400, 6))
    assert abs(frechet.frechet_distance(x, x)["value"]) < 1e-6
    assert frechet.frechet_distance(x, x + 0.5)["value"] == pytest.approx(6 * 0.25, rel=1e-6)


def test_the_eigenvalue_trace_form_equals_sqrtm(monkeypatch):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 40)), 1.3 * rng.normal(size=(300, 40)) + 0.2
    by_sqrtm = frechet.frechet_distance(a, b)["value"]
    monkeypatch.setattr(frechet, "SQRTM_MAX_DIM", 8)  # force the wide-feature route
    assert frechet.frechet_distance(a, b)["value"] == pytest.approx(by_sqrtm, rel=1e-9)


def test_bad_features_are_named():
    with pytest.raises(ValueError, match="real features need at least 2 rows"):
        frechet.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="feature widths differ"):
        frechet.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def test_summary_is_the_diffusion_ts_t_interval():
    s = summarize([0.10, 0.12, 0.11, 0.09, 0.13])
    assert s["mean"] == pytest.approx(0.11) and s["ci95"] == pytest.approx(2.776 * s["std"] / np.sqrt(5), rel=1e-3)
    assert format_summary(s) == "0.110±.020"
    assert summarize([])["mean"] is None and format_summary(summarize([])) == "n/a"
