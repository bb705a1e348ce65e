"""Report plots: real vs generated windows, one PNG per function (evaluation report; metrics.md §0, §7.3).

Every function takes `real` (N, L, K) and `generated` (M, L, K) in the space the metrics use ((N, L) is read as
K = 1), writes one PNG to `path` and returns the path as a string. Figures are built with `matplotlib.figure.Figure`
(Agg canvas, no pyplot), so nothing is registered globally and no display is needed; each figure is cleared after
saving.

* `plot_tsne` follows the visualisation of TimeGAN (`visualization_metrics.py:visualization`), kept by Diffusion-TS:
  each window is averaged over the channel axis to an (L,) vector before t-SNE, real and generated in one scatter.
* `plot_caption_grid` shows caption-paired generations (T2S, metrics.md §7.3) next to their real series.

decision: overlays show at most 6 channels (the first 6); the per-channel KDE / ACF / PSD panels show at most
`max_channels` (default 16) channels — the first ones — and say so in the title when channels were left out.
decision: ACF of a window is Σ_t (x_t − x̄)(x_{t+h} − x̄) / Σ_t (x_t − x̄)²; constant windows are left out of the mean.
decision: t-SNE draws min(n, N, M) windows from each set without replacement (seeded), perplexity min(30, n − 1).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

REAL_COLOUR, GENERATED_COLOUR = "tab:blue", "tab:orange"
OVERLAY_MAX_CHANNELS = 6
KDE_MAX_POINTS = 20_000
KDE_GRID_POINTS = 256
PANEL_COLUMNS = 4


def plot_overlays(real, generated, path, *, n: int = 8, seed: int = 0, channel_names=None) -> str:
    """Top row: n random windows of each set overlaid per channel; bottom row: mean ± 1 std over all windows."""
    real, generated = _paired_shapes(real, generated)
    rng = np.random.default_rng(seed)
    real_pick = real[rng.choice(len(real), size=min(n, len(real)), replace=False)]  # (n, L, K)
    generated_pick = generated[rng.choice(len(generated), size=min(n, len(generated)), replace=False)]
    channels = min(real.shape[2], OVERLAY_MAX_CHANNELS)
    names = _channel_names(channel_names, real.shape[2])
    fig = Figure(figsize=(3.2 * channels, 5.0), layout="constrained")
    axes = fig.subplots(2, channels, squeeze=False, sharex=True)
    steps = np.arange(real.shape[1])
    for k in range(channels):
        top, bottom = axes[0, k], axes[1, k]
        top.plot(steps, real_pick[:, :, k].T, color=REAL_COLOUR, alpha=0.6, linewidth=0.8)
        top.plot(steps, generated_pick[:, :, k].T, color=GENERATED_COLOUR, alpha=0.6, linewidth=0.8)
        top.set_title(names[k], fontsize=9)
        for data, colour in ((real, REAL_COLOUR), (generated, GENERATED_COLOUR)):
            mean, std = data[:, :, k].mean(axis=0), data[:, :, k].std(axis=0)  # (L,)
            bottom.plot(steps, mean, color=colour, linewidth=1.2)
            bottom.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2)
        bottom.set_xlabel("t")
    axes[0, 0].set_ylabel(f"{len(real_pick)} + {len(generated_pick)} samples")
    axes[1, 0].set_ylabel("mean ± 1 std")
    _legend(fig)
    return _save(fig, path)


def plot_tsne(real, generated, path, *, n: int = 500, seed: int = 0, max_iter: int = 1000) -> str:
    """t-SNE of channel-averaged windows (Diffusion-TS convention), real and generated in one 2-D scatter."""
    from sklearn.manifold import TSNE

    real, generated = _paired_shapes(real, generated)
    count = min(n, len(real), len(generated))
    if count < 2:
        raise ValueError(f"t-SNE needs at least 2 windows per set, got n={n}, real {real.shape}, "
                         f"generated {generated.shape}")
    rng = np.random.default_rng(seed)
    real_mean = real[rng.choice(len(real), size=count, replace=False)].mean(axis=2)  # (n, L)
    generated_mean = generated[rng.choice(len(generated), size=count, replace=False)].mean(axis=2)  # (n, L)
    tsne = TSNE(n_components=2, perplexity=min(30, count - 1), init="pca", random_state=seed, max_iter=max_iter)
    embedded = tsne.fit_transform(np.concatenate([real_mean, generated_mean]))  # (2n, 2)
    fig = Figure(figsize=(5.0, 5.0), layout="constrained")
    ax = fig.subplots()
    ax.scatter(*embedded[:count].T, s=6, alpha=0.3, color=REAL_COLOUR, label="real")
    ax.scatter(*embedded[count:].T, s=6, alpha=0.3, color=GENERATED_COLOUR, label="generated")
    ax.set_title(f"t-SNE of channel-averaged windows ({count} per set)", fontsize=9)
    ax.legend()
    return _save(fig, path)


def plot_kde(real, generated, path, *, seed: int = 0, max_channels: int = 16) -> str:
    """Kernel density of all values of each channel (≤ 20 000 seeded-subsampled points per set and channel)."""
    from scipy.stats import gaussian_kde

    real, generated = _paired_shapes(real, generated)
    rng = np.random.default_rng(seed)
    fig, axes, channels = _channel_panels(real.shape[2], max_channels, "value density")
    for k in range(channels):
        real_values = _subsample(real[:, :, k].ravel(), rng)
        generated_values = _subsample(generated[:, :, k].ravel(), rng)
        low = min(real_values.min(), generated_values.min())
        high = max(real_values.max(), generated_values.max())
        pad = 0.05 * (high - low) if high > low else 0.5
        grid = np.linspace(low - pad, high + pad, KDE_GRID_POINTS)
        for values, colour in ((real_values, REAL_COLOUR), (generated_values, GENERATED_COLOUR)):
            if np.ptp(values) == 0:  # gaussian_kde is singular on constant data: mark the value instead
                axes[k].axvline(values[0], color=colour)
                continue
            axes[k].plot(grid, gaussian_kde(values)(grid), color=colour)
        axes[k].set_title(f"channel {k}", fontsize=9)
    return _save(fig, path)


def plot_acf(real, generated, path, *, max_lag: int | None = None, max_channels: int = 16) -> str:
    """Mean autocorrelation function per channel against lag (max_lag default min(L − 1, 50))."""
    real, generated = _paired_shapes(real, generated)
    length = real.shape[1]
    max_lag = min(length - 1, 50) if max_lag is None else max_lag
    if not 0 <= max_lag < length:
        raise ValueError(f"max_lag must lie in [0, L − 1] = [0, {length - 1}], got {max_lag}")
    lags = np.arange(max_lag + 1)
    real_acf, generated_acf = _mean_acf(real, max_lag), _mean_acf(generated, max_lag)  # (max_lag + 1, K)
    fig, axes, channels = _channel_panels(real.shape[2], max_channels, "mean autocorrelation")
    for k in range(channels):
        axes[k].plot(lags, real_acf[:, k], color=REAL_COLOUR, marker=".")
        axes[k].plot(lags, generated_acf[:, k], color=GENERATED_COLOUR, marker=".")
        axes[k].axhline(0.0, color="grey", linewidth=0.5)
        axes[k].set_title(f"channel {k}", fontsize=9)
        axes[k].set_xlabel("lag")
    return _save(fig, path)


def plot_psd(real, generated, path, *, max_channels: int = 16) -> str:
    """Mean power spectral density per channel: |rfft|² of each window, averaged, on a log scale."""
    real, generated = _paired_shapes(real, generated)
    frequencies = np.fft.rfftfreq(real.shape[1])  # cycles per time step
    fig, axes, channels = _channel_panels(real.shape[2], max_channels, "mean power spectral density")
    for data, colour in ((real, REAL_COLOUR), (generated, GENERATED_COLOUR)):
        power = (np.abs(np.fft.rfft(data, axis=1)) ** 2).mean(axis=0)  # (L // 2 + 1, K)
        power = np.maximum(power, np.finfo(np.float64).tiny)  # keep exact zeros drawable on the log axis
        for k in range(channels):
            axes[k].semilogy(frequencies, power[:, k], color=colour)
    for k in range(channels):
        axes[k].set_title(f"channel {k}", fontsize=9)
        axes[k].set_xlabel("frequency (1/step)")
    return _save(fig, path)


def plot_caption_grid(captions: list[str], generated, path, *, real=None, n: int = 12) -> str:
    """First n generations, each titled with its caption (≤ 3 wrapped lines), with the paired real series if given."""
    generated = _as_windows(generated, "generated")
    if len(captions) != len(generated):
        raise ValueError(f"need one caption per generated series: {len(captions)} captions, "
                         f"generated {generated.shape}")
    if real is not None:
        real = _as_windows(real, "real")
        if real.shape != generated.shape:
            raise ValueError(f"real must be paired with generated: real {real.shape}, generated {generated.shape}")
    count = min(n, len(generated))
    if count < 1:
        raise ValueError(f"nothing to draw: n={n}, generated {generated.shape}")
    columns = min(PANEL_COLUMNS, count)
    rows = math.ceil(count / columns)
    fig = Figure(figsize=(3.6 * columns, 2.8 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    steps = np.arange(generated.shape[1])
    for i in range(count):
        if real is not None:
            axes[i].plot(steps, real[i], color=REAL_COLOUR, linewidth=1.0)
        axes[i].plot(steps, generated[i], color=GENERATED_COLOUR, linewidth=1.0)
        axes[i].set_title(_wrap_caption(captions[i]), fontsize=7, loc="left")
    for ax in axes[count:]:
        ax.set_visible(False)
    _legend(fig, with_real=real is not None)
    return _save(fig, path)


def _wrap_caption(caption: str, width: int = 48, max_lines: int = 3) -> str:
    return "\n".join(textwrap.wrap(str(caption), width=width, max_lines=max_lines, placeholder=" …"))


def _mean_acf(data: np.ndarray, max_lag: int) -> np.ndarray:
    """Mean over windows of each window's ACF, (max_lag + 1, K); constant windows are left out (NaN-mean)."""
    centred = data - data.mean(axis=1, keepdims=True)  # (N, L, K)
    variance = (centred**2).sum(axis=1)  # (N, K)
    length = data.shape[1]
    lagged = np.stack([(centred[:, : length - h] * centred[:, h:]).sum(axis=1) for h in range(max_lag + 1)])
    with np.errstate(invalid="ignore", divide="ignore"):
        acf = np.where(variance > 0, lagged / variance, np.nan)  # (max_lag + 1, N, K)
    counted = np.isfinite(acf).sum(axis=1)  # (max_lag + 1, K)
    total = np.nansum(acf, axis=1)
    return np.divide(total, counted, out=np.full_like(total, np.nan), where=counted > 0)


def _subsample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(values) <= KDE_MAX_POINTS:
        return values
    return values[rng.choice(len(values), size=KDE_MAX_POINTS, replace=False)]


def _channel_panels(n_channels: int, max_channels: int, title: str):
    """A figure with one axes per shown channel (grid of ≤ 4 columns); returns (fig, flat axes, shown count)."""
    channels = min(n_channels, max_channels)
    columns = min(PANEL_COLUMNS, channels)
    rows = math.ceil(channels / columns)
    fig = Figure(figsize=(3.4 * columns, 2.6 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[channels:]:
        ax.set_visible(False)
    shown = f" (first {channels} of {n_channels} channels)" if channels < n_channels else ""
    fig.suptitle(title + shown, fontsize=10)
    _legend(fig)
    return fig, axes, channels


def _legend(fig: Figure, *, with_real: bool = True) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=GENERATED_COLOUR, label="generated")]
    if with_real:
        handles.insert(0, Line2D([], [], color=REAL_COLOUR, label="real"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)


def _channel_names(channel_names, n_channels: int) -> list[str]:
    if channel_names is None:
        return [f"channel {k}" for k in range(n_channels)]
    names = [str(name) for name in channel_names]
    if len(names) != n_channels:
        raise ValueError(f"channel_names has {len(names)} names for {n_channels} channels")
    return names


def _paired_shapes(real, generated) -> tuple[np.ndarray, np.ndarray]:
    """Both sets as (·, L, K) float64 with equal L and K (counts may differ)."""
    real_windows, generated_windows = _as_windows(real, "real"), _as_windows(generated, "generated")
    if real_windows.shape[1:] != generated_windows.shape[1:]:
        raise ValueError(f"real and generated differ in L or K: real {real_windows.shape}, "
                         f"generated {generated_windows.shape}")
    return real_windows, generated_windows


def _as_windows(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must be (N, L, K) or (N, L), got shape {x.shape}")
    if x.ndim == 2:
        x = x[..., None]
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{name} is empty: shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _save(fig: Figure, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    fig.clear()
    return str(path)
