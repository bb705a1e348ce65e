"""T2S caption-paired metrics (metrics.md §7.3) with hand-computed answers, and the report plots."""

from __future__ import annotations

import numpy as np
import pytest

from seriesforge.eval import plots
from seriesforge.eval.metrics.text_scores import mrr10_code, mrr10_retrieval, paired_errors


def test_paired_errors_hand_computed():
    real = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 0.0]])  # (N=2, L=3), K = 1
    generated = np.array([[1.0, 3.0, 1.0], [2.0, 2.0, 2.0]])
    # item 0: errors 0, 1, 2 -> mse 5/3, mae 1, wape 3/6; item 1: errors 0, 0, 2 -> mse 4/3, mae 2/3, wape 2/4
    result = paired_errors(real, generated)
    assert result["value"] == pytest.approx((5 / 3 + 4 / 3) / 2)
    assert result["mse"] == result["value"]
    assert result["mae"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["rmse"] == pytest.approx((np.sqrt(5 / 3) + np.sqrt(4 / 3)) / 2)
    assert result["rmse_code"] == pytest.approx(result["rmse"])  # K = 1: both RMSE readings agree
    assert result["wape"] == pytest.approx((3 / 6 + 2 / 4) / 2)
    assert result["wape_skipped"] == 0


def test_paired_errors_identical_is_zero_and_rmse_variants_differ_for_k2():
    rng = np.random.default_rng(0)
    real = rng.random((5, 8, 2))
    assert paired_errors(real, real)["value"] == 0.0
    generated = real.copy()
    generated[:, :, 0] += 1.0  # channel 0 off by 1, channel 1 exact
    result = paired_errors(real, generated)
    assert result["mse"] == pytest.approx(0.5)
    assert result["rmse"] == pytest.approx(np.sqrt(0.5))  # per-item RMSE over (t, k)
    assert result["rmse_code"] == pytest.approx(0.5)  # T2S: mean of per-channel RMSEs (1 and 0)


def test_wape_skips_zero_items_and_never_silently_zero():
    real = np.array([[0.0, 0.0], [1.0, 1.0]])
    generated = np.array([[5.0, 5.0], [1.0, 2.0]])
    result = paired_errors(real, generated)
    assert result["wape"] == pytest.approx(0.5)  # only item 1: 1 / 2
    assert result["wape_skipped"] == 1
    all_zero = paired_errors(np.zeros((3, 4)), np.ones((3, 4)))
    assert all_zero["wape"] is None
    assert all_zero["wape_skipped"] == 3
    assert "sum |x| = 0" in all_zero["wape_note"]


def _run_with_cosine(x: np.ndarray, cosine: float) -> np.ndarray:
    """A series whose cosine with the 2-D vector x = (1, 0) is `cosine`."""
    return np.array([cosine, np.sqrt(1 - cosine**2)]) * np.linalg.norm(x)


def test_mrr10_code_uses_run_index_not_sorted_position():
    real = np.array([[1.0, 0.0]])  # (N=1, L=2)
    cosines = [0.2, 0.4, 0.9, 0.3, 0.7]  # best run is index 2 -> RR = 1/3 (its sorted position would give 1)
    runs = np.stack([_run_with_cosine(real[0], c)[None] for c in cosines])  # (R=5, 1, 2)
    result = mrr10_code(real, runs)
    assert result["value"] == pytest.approx(1 / 3)
    assert result["hit_run_counts"] == [0, 0, 1, 0, 0]
    assert result["no_hit"] == 0


def test_mrr10_code_nothing_above_threshold_is_zero():
    real = np.array([[1.0, 0.0], [1.0, 0.0]])
    runs = np.stack([np.stack([_run_with_cosine(r, c) for r in real]) for c in (0.1, 0.45, 0.3)])  # (3, 2, 2)
    result = mrr10_code(real, runs)  # best is 0.45, not > 0.5
    assert result["value"] == 0.0
    assert result["no_hit"] == 2
    assert mrr10_code(real, runs, threshold=0.4)["value"] == pytest.approx(1 / 2)


def test_mrr10_retrieval_perfect_and_swapped():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(6, 12, 2))
    assert mrr10_retrieval(real, real)["value"] == pytest.approx(1.0)
    pair = real[:2]
    assert mrr10_retrieval(pair, pair[::-1])["value"] == pytest.approx(0.5)


def test_mrr10_retrieval_groups_and_cutoff():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(4, 10))
    swapped = real[[1, 0, 3, 2]]
    # without groups each generation's pair ranks 2nd at best among 4 candidates, so MRR < 1
    assert mrr10_retrieval(real, swapped)["value"] < 1.0
    grouped = mrr10_retrieval(real, swapped, groups=np.array(["a", "a", "b", "b"]))
    assert grouped["value"] == pytest.approx(0.5)
    assert grouped["per_group"] == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}
    assert mrr10_retrieval(real, swapped, groups=np.array(["a", "a", "b", "b"]), k=1)["value"] == 0.0
    # an all-zero generation is similar to nothing: ties count against it
    assert mrr10_retrieval(real, np.zeros_like(real), k=3)["value"] == 0.0


def test_text_scores_bad_input():
    with pytest.raises(ValueError, match="generated"):
        paired_errors(np.zeros((2, 4, 1)), np.zeros((2, 5, 1)))
    with pytest.raises(ValueError, match="NaN"):
        paired_errors(np.full((2, 4), np.nan), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="runs"):
        mrr10_code(np.zeros((2, 4)), np.zeros((3, 2, 5)))


def _single_threaded(draw, *args, **kwargs):
    """Barnes-Hut t-SNE busy-waits when torch's and sklearn's OpenMP runtimes share 2 loaded cores; 1 thread: < 1 s."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return draw(*args, **kwargs)


@pytest.fixture(scope="module")
def tiny_sets():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 2 * np.pi, 24)
    real = (np.sin(t)[None, :, None] + 0.1 * rng.normal(size=(20, 24, 2))).astype(np.float32)
    generated = (np.sin(t + 0.3)[None, :, None] + 0.2 * rng.normal(size=(20, 24, 2))).astype(np.float32)
    return real, generated


@pytest.mark.parametrize(
    "draw",
    [
        lambda r, g, p: plots.plot_overlays(r, g, p, n=4, channel_names=["a", "b"]),
        lambda r, g, p: _single_threaded(plots.plot_tsne, r, g, p, n=20, max_iter=250),
        lambda r, g, p: plots.plot_kde(r, g, p),
        lambda r, g, p: plots.plot_acf(r, g, p),
        lambda r, g, p: plots.plot_psd(r, g, p),
        lambda r, g, p: plots.plot_caption_grid([f"caption {i} " * 12 for i in range(len(g))], g, p, real=r, n=6),
    ],
    ids=["overlays", "tsne", "kde", "acf", "psd", "caption_grid"],
)
def test_plot_writes_png(tiny_sets, tmp_path, draw):
    real, generated = tiny_sets
    path = tmp_path / "sub" / "figure.png"
    returned = draw(real, generated, path)
    assert returned == str(path)
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_constant_channel_and_mismatch(tmp_path, tiny_sets):
    real, generated = tiny_sets
    constant = np.zeros_like(real)  # KDE of constant data and ACF of constant windows must not crash
    assert plots.plot_kde(constant, generated, tmp_path / "kde.png")
    assert plots.plot_acf(constant, generated, tmp_path / "acf.png")
    with pytest.raises(ValueError, match=r"\(20, 24, 2\).*\(20, 12, 2\)"):
        plots.plot_psd(real, generated[:, :12], tmp_path / "bad.png")
