"""ST-Diff data <-> "video" transform (models.md §4), its scaling, and the data-derived attention-bias inits.

Shape legend: B batch · N training windows · L series length · K covariates · T STFT frames (video frames) ·
F one-sided frequency bins · F′ frequency patches = ceil(F / p_f) · p_f bins per patch.

Series here are time-major, x (B, L, K), as the paper writes X ∈ R^{L×K}. A video is (B, T, 3, F, K): channel 0 =
Re S, channel 1 = Im S (S = STFT of the de-trended residual), channel 2 = the frame-rate trend d broadcast over F.

Forward (lossless variant of the paper's §4.1):
    τ = causal EMA of x                      (B, L, K)
    d[m] = τ[min(m·hop, L−1)]                (B, T, K)   frame m of a centred STFT is centred on sample m·hop
    τ* = linear interpolation of d to 0…L−1  (B, L, K)
    S = STFT(x − τ*)                         (B, K, F, T) complex
Inverse: d̂ = mean over F of channel 2; x̂ = ISTFT(Re + i·Im, length=L) + interp(d̂). Because the residual is taken
against τ* (which is a function of d alone) rather than τ, data → video → data is exact up to float rounding.

The STFT runs in float64 (outside autocast) so that the round trip stays far below the 1e-5 budget of models.md §0
rule 5 even at L = 256; every public function returns float32 videos / series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn

__all__ = [
    "VideoGeometry", "geometry_for_length", "num_frequency_patches", "ema_trend", "to_video", "from_video",
    "VideoScaler", "covariate_correlation", "frequency_log_magnitude_covariance", "cross_covariance_loss",
]

MIN_LENGTH = 8            # n_fft = L // 2 − 1 must be ≥ 3 so that the Hann window has a non-zero sample
STD_FLOOR = 1e-6          # Im of the DC bin (and of the Nyquist bin for even n_fft) is identically 0
LOG_MAG_EPS = 1e-6        # log(|S| + eps) of models.md §4 "Biases"
MAG_EPS = 1e-8            # √(Re² + Im² + eps): keeps the L_cov gradient finite at |S| = 0
NOLA_TOL = 1e-11          # the tolerance torch.istft itself uses for its window envelope
TABLE4_HOPS = {24: 3, 64: 11, 128: 15, 256: 32}  # paper Table 4; 64 and 128 contradict hop = ceil(n_fft / 4)


# ---------------------------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoGeometry:
    """STFT settings of one series length. Validated on construction (NOLA, reflect padding)."""

    length: int
    n_fft: int
    hop: int
    ema_alpha: float

    def __post_init__(self) -> None:
        if self.n_fft < 2 or self.hop < 1:
            raise ValueError(f"VideoGeometry: need n_fft >= 2 and hop >= 1, got n_fft={self.n_fft}, hop={self.hop} "
                             f"(length={self.length})")
        if self.n_fft // 2 >= self.length:
            raise ValueError(f"VideoGeometry: reflect padding needs n_fft // 2 < length, got n_fft={self.n_fft}, "
                             f"length={self.length}")
        if not 0.0 < self.ema_alpha <= 1.0:
            raise ValueError(f"VideoGeometry: ema_alpha must lie in (0, 1], got {self.ema_alpha} "
                             f"(length={self.length})")
        envelope = _window_envelope(self)
        if bool((envelope < NOLA_TOL).any()):
            raise ValueError(f"VideoGeometry: n_fft={self.n_fft}, hop={self.hop} violate the NOLA condition for "
                             f"length={self.length}; the ISTFT would not be invertible")

    @property
    def frames(self) -> int:
        """T for center=True: 1 + ⌊(L + 2⌊n_fft/2⌋ − n_fft) / hop⌋, i.e. 1 + ⌊L/hop⌋ for even and 1 + ⌊(L−1)/hop⌋ for
        odd n_fft (models.md §0 rule 4; every ST-Diff n_fft = L/2 − 1 is odd at even L)."""
        return 1 + (self.length + 2 * (self.n_fft // 2) - self.n_fft) // self.hop

    @property
    def bins(self) -> int:
        """F = ⌊n_fft/2⌋ + 1 one-sided bins."""
        return self.n_fft // 2 + 1


def geometry_for_length(length: int, variant: str = "formula") -> VideoGeometry:
    """n_fft = L // 2 − 1; hop = ceil(n_fft / 4) ("formula", default) or Table 4's ("paper-table4"); α = 2/(n_fft + 1).

    Raises:
        ValueError: for L < 8, an unknown variant, or "paper-table4" at an L that Table 4 does not list.
    """
    if length < MIN_LENGTH:
        raise ValueError(f"geometry_for_length: length={length} is below the minimum {MIN_LENGTH}")
    n_fft = length // 2 - 1
    if variant == "formula":
        hop = math.ceil(n_fft / 4)
    elif variant == "paper-table4":
        if length not in TABLE4_HOPS:
            raise ValueError(f"geometry_for_length: variant='paper-table4' lists only lengths {sorted(TABLE4_HOPS)}, "
                             f"got length={length}")
        hop = TABLE4_HOPS[length]
    else:
        raise ValueError(f"geometry_for_length: unknown variant={variant!r}; use 'formula' or 'paper-table4'")
    return VideoGeometry(length=length, n_fft=n_fft, hop=hop, ema_alpha=2.0 / (n_fft + 1))


def num_frequency_patches(bins: int, patch_f: int) -> int:
    """F′ = ceil(F / p_f): the denoiser zero-pads F up to F′·p_f bins."""
    return -(-bins // patch_f)


def _window(geom: VideoGeometry, device: torch.device | None = None) -> Tensor:
    return torch.hann_window(geom.n_fft, periodic=True, dtype=torch.float64, device=device)  # (n_fft,)


def _window_envelope(geom: VideoGeometry) -> Tensor:
    # Σ_m w²(n − m·hop) over the padded signal, restricted to the L samples istft keeps (as torch.istft checks it).
    pad = geom.n_fft // 2
    envelope = torch.zeros(geom.length + 2 * pad + geom.n_fft, dtype=torch.float64)
    w2 = _window(geom) ** 2
    for m in range(geom.frames):
        envelope[m * geom.hop: m * geom.hop + geom.n_fft] += w2
    return envelope[pad: pad + geom.length]                                       # (L,)


# ---------------------------------------------------------------------------------------------------------------
# Trend: EMA, frame-rate samples, interpolation back to L
# ---------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _ema_matrix(length: int, alpha: float) -> Tensor:
    # τ = E x with E[t, 0] = (1−α)^t and E[t, s] = α (1−α)^(t−s) for 1 ≤ s ≤ t: the recursion unrolled.
    t = torch.arange(length, dtype=torch.float64)
    lag = t[:, None] - t[None, :]                                                 # (L, L)
    decay = torch.where(lag >= 0, (1.0 - alpha) ** lag.clamp(min=0), torch.zeros((), dtype=torch.float64))
    matrix = alpha * decay
    matrix[:, 0] = (1.0 - alpha) ** t
    return matrix                                                                 # (L, L) lower triangular


def ema_trend(x: Tensor, alpha: float) -> Tensor:
    """Causal EMA per covariate: τ_0 = x_0, τ_t = α x_t + (1−α) τ_{t−1}. x (B, L, K) -> (B, L, K), x's dtype."""
    matrix = _ema_matrix(x.shape[1], float(alpha)).to(x.device)
    return torch.einsum("ls,bsk->blk", matrix, x.double()).to(x.dtype)


def _frame_positions(geom: VideoGeometry) -> list[int]:
    # Sample on which centred frame m sits, clipped into the series (the last frame may sit past L − 1).
    return [min(m * geom.hop, geom.length - 1) for m in range(geom.frames)]


@lru_cache(maxsize=64)
def _interpolation_matrix(geom: VideoGeometry) -> Tensor:
    """W (L, T) with τ* = W d: piecewise-linear through (p_m, d_m); constant beyond the last frame position.

    Frames that share a clipped position share its weight equally, so the map stays linear in d for any d̂.
    """
    positions = _frame_positions(geom)
    unique = sorted(set(positions))
    members = {p: [m for m, q in enumerate(positions) if q == p] for p in unique}
    matrix = torch.zeros(geom.length, geom.frames, dtype=torch.float64)

    def put(t: int, p: int, weight: float) -> None:
        for m in members[p]:
            matrix[t, m] += weight / len(members[p])

    for t in range(geom.length):
        if t >= unique[-1]:
            put(t, unique[-1], 1.0)  # decision: hold the last trend value on the (< hop) samples after it
            continue
        j = max(i for i, p in enumerate(unique) if p <= t)
        lo, hi = unique[j], unique[j + 1]
        frac = (t - lo) / (hi - lo)
        put(t, lo, 1.0 - frac)
        put(t, hi, frac)
    return matrix


# ---------------------------------------------------------------------------------------------------------------
# Data <-> video
# ---------------------------------------------------------------------------------------------------------------


def _check_series(x: Tensor, geom: VideoGeometry) -> None:
    if x.dim() != 3 or x.shape[1] != geom.length:
        raise ValueError(f"to_video: x must be (B, L={geom.length}, K), got {tuple(x.shape)}")


def to_video(x: Tensor, geom: VideoGeometry) -> Tensor:
    """Series x (B, L, K) -> video (B, T, 3, F, K) float32 (steps 2–5 of models.md §4 "Data → video")."""
    _check_series(x, geom)
    b, length, k = x.shape
    with torch.autocast(device_type=x.device.type, enabled=False):
        x64 = x.double()                                                          # (B, L, K)
        tau = ema_trend(x64, geom.ema_alpha)                                      # (B, L, K)
        d = tau[:, _frame_positions(geom), :]                                     # (B, T, K)
        tau_star = torch.einsum("lt,btk->blk", _interpolation_matrix(geom).to(x.device), d)  # (B, L, K)
        residual = (x64 - tau_star).permute(0, 2, 1).reshape(b * k, length)       # (B·K, L)
        spec = torch.stft(residual, n_fft=geom.n_fft, hop_length=geom.hop, win_length=geom.n_fft,
                          window=_window(geom, x.device), center=True, pad_mode="reflect", normalized=False,
                          onesided=True, return_complex=True)                     # (B·K, F, T)
        spec = torch.view_as_real(spec).reshape(b, k, geom.bins, geom.frames, 2)  # (B, K, F, T, 2)
        re_im = spec.permute(0, 3, 4, 2, 1)                                       # (B, T, 2, F, K)
        trend = d[:, :, None, None, :].expand(b, geom.frames, 1, geom.bins, k)    # (B, T, 1, F, K)
        return torch.cat([re_im, trend], dim=2).float()                           # (B, T, 3, F, K)


def from_video(v: Tensor, geom: VideoGeometry) -> Tensor:
    """Video (B, T, 3, F, K) -> series (B, L, K) float32 (models.md §4 "Inverse"; v must be un-standardised)."""
    if v.dim() != 5 or v.shape[1:4] != (geom.frames, 3, geom.bins):
        raise ValueError(f"from_video: v must be (B, T={geom.frames}, 3, F={geom.bins}, K), got {tuple(v.shape)}")
    b, _, _, _, k = v.shape
    with torch.autocast(device_type=v.device.type, enabled=False):
        v64 = v.double()
        spec = torch.complex(v64[:, :, 0], v64[:, :, 1])                          # (B, T, F, K)
        spec = spec.permute(0, 3, 2, 1).reshape(b * k, geom.bins, geom.frames)    # (B·K, F, T)
        residual = torch.istft(spec, n_fft=geom.n_fft, hop_length=geom.hop, win_length=geom.n_fft,
                               window=_window(geom, v.device), center=True, normalized=False, onesided=True,
                               length=geom.length)                                # (B·K, L)
        residual = residual.reshape(b, k, geom.length).permute(0, 2, 1)           # (B, L, K)
        d_hat = v64[:, :, 2].mean(dim=2)                                          # (B, T, K)
        trend = torch.einsum("lt,btk->blk", _interpolation_matrix(geom).to(v.device), d_hat)  # (B, L, K)
        return (residual + trend).float()


# ---------------------------------------------------------------------------------------------------------------
# Scaling (models.md §4 step 6 decision)
# ---------------------------------------------------------------------------------------------------------------


class VideoScaler(nn.Module):
    """Standardise Re and Im per (f, k) and the trend channel per k with training-set statistics.

    Buffers (state-dict keys): re_mean, re_std, im_mean, im_std (F, K); trend_mean, trend_std (K,).
    Identity (mean 0, std 1) until statistics are loaded, e.g. by ``VideoScaler.fit(videos)``.
    """

    BUFFERS = ("re_mean", "re_std", "im_mean", "im_std", "trend_mean", "trend_std")

    def __init__(self, bins: int, covariates: int) -> None:
        super().__init__()
        for name in self.BUFFERS:
            shape = (covariates,) if name.startswith("trend") else (bins, covariates)
            fill = torch.ones if name.endswith("std") else torch.zeros
            self.register_buffer(name, fill(shape))

    @staticmethod
    def statistics(videos: Tensor) -> dict[str, Tensor]:
        """Population mean/std of un-standardised videos (N, T, 3, F, K); stds clamped ≥ 1e-6. float32 values."""
        v = videos.double()
        re, im, trend = v[:, :, 0], v[:, :, 1], v[:, :, 2]                        # 3 × (N, T, F, K)
        stats = {
            "re_mean": re.mean(dim=(0, 1)), "re_std": re.std(dim=(0, 1), unbiased=False),
            "im_mean": im.mean(dim=(0, 1)), "im_std": im.std(dim=(0, 1), unbiased=False),
            "trend_mean": trend.mean(dim=(0, 1, 2)), "trend_std": trend.std(dim=(0, 1, 2), unbiased=False),
        }
        return {name: (s.clamp(min=STD_FLOOR) if name.endswith("std") else s).float() for name, s in stats.items()}

    @classmethod
    def fit(cls, videos: Tensor) -> "VideoScaler":
        """A scaler holding ``statistics(videos)``; videos (N, T, 3, F, K)."""
        scaler = cls(bins=videos.shape[3], covariates=videos.shape[4])
        scaler.load_state_dict(cls.statistics(videos))
        return scaler

    def standardise(self, v: Tensor) -> Tensor:
        """(B, T, 3, F, K) -> (B, T, 3, F, K), each channel (v − mean) / std."""
        re = (v[:, :, 0] - self.re_mean) / self.re_std                            # (B, T, F, K)
        im = (v[:, :, 1] - self.im_mean) / self.im_std
        trend = (v[:, :, 2] - self.trend_mean) / self.trend_std
        return torch.stack([re, im, trend], dim=2)

    def unstandardise(self, v: Tensor) -> Tensor:
        """Inverse of ``standardise``: (B, T, 3, F, K) -> (B, T, 3, F, K), each channel v · std + mean."""
        re = v[:, :, 0] * self.re_std + self.re_mean                              # (B, T, F, K)
        im = v[:, :, 1] * self.im_std + self.im_mean
        trend = v[:, :, 2] * self.trend_std + self.trend_mean
        return torch.stack([re, im, trend], dim=2)


# ---------------------------------------------------------------------------------------------------------------
# Data-derived attention-bias inits and the cross-covariance loss
# ---------------------------------------------------------------------------------------------------------------


def _pearson(rows: Tensor, eps: float = 0.0) -> Tensor:
    """Pearson correlation between the rows of (K, M) -> (K, K). Zero-variance rows correlate 0 with the others."""
    centred = rows - rows.mean(dim=1, keepdim=True)                               # (K, M)
    norm = torch.sqrt((centred * centred).sum(dim=1) + eps).clamp(min=1e-30)      # (K,)
    return (centred @ centred.T) / (norm[:, None] * norm[None, :])                # (K, K)


def covariate_correlation(videos: Tensor) -> Tensor:
    """B_C init: Pearson correlation between covariates of the flattened training STFTs, (K, K) float32.

    videos (N, T, 3, F, K), un-standardised. Decision: each covariate's Re and Im channels are concatenated over all
    N·T·F positions into one real vector of length 2·N·T·F (the trend channel is not part of "the STFT"); the
    diagonal is set to exactly 1 (also for a constant covariate, whose off-diagonal entries are 0).
    """
    re_im = videos[:, :, :2].double()                                             # (N, T, 2, F, K)
    rows = re_im.permute(4, 0, 1, 2, 3).reshape(videos.shape[-1], -1)             # (K, 2·N·T·F)
    corr = _pearson(rows)
    corr.fill_diagonal_(1.0)
    return corr.float()


def frequency_log_magnitude_covariance(videos: Tensor, patch_f: int) -> Tensor:
    """B_F init: covariance between frequency patches of log(|S| + 1e-6), scaled to max |entry| = 1; (F′, F′).

    videos (N, T, 3, F, K), un-standardised. Observations are the N·T·K (sample, frame, covariate) triples; a patch's
    value is the mean log-magnitude of its bins. Decision: the last patch averages only the real bins it holds (the
    denoiser's zero padding is not data, and log(0 + 1e-6) would swamp it). Unbiased (n − 1) covariance.
    """
    n, t, _, f, k = videos.shape
    v = videos.double()
    log_mag = torch.log(torch.sqrt(v[:, :, 0] ** 2 + v[:, :, 1] ** 2) + LOG_MAG_EPS)  # (N, T, F, K)
    patches = num_frequency_patches(f, patch_f)
    bin_patch = torch.arange(f) // patch_f                                        # (F,)
    average = torch.zeros(f, patches, dtype=torch.float64)
    average[torch.arange(f), bin_patch] = 1.0
    average = average / average.sum(dim=0, keepdim=True)                          # (F, F′) column-stochastic
    obs = torch.einsum("ntfk,fg->ntkg", log_mag, average.to(v.device)).reshape(n * t * k, patches)  # (N·T·K, F′)
    centred = obs - obs.mean(dim=0, keepdim=True)
    cov = centred.T @ centred / max(obs.shape[0] - 1, 1)                          # (F′, F′)
    peak = cov.abs().max()
    return (cov / peak if peak > 0 else cov).float()


def cross_covariance_loss(v0_hat: Tensor, v0: Tensor) -> Tensor:
    """L_cov of models.md §4: ‖R̂ − R‖²_F / K² between covariate Pearson matrices of STFT magnitudes.

    v0_hat, v0: un-standardised videos (B, T, 3, F, K); magnitudes √(Re² + Im² + 1e-8) are flattened to (K, B·T·F).
    Returns a 0-dim float32 tensor; exactly 0 (without a graph) when K = 1.
    """
    k = v0.shape[-1]
    if k == 1:
        return v0_hat.new_zeros((), dtype=torch.float32)

    def correlation(v: Tensor) -> Tensor:
        v = v.float()
        mag = torch.sqrt(v[:, :, 0] ** 2 + v[:, :, 1] ** 2 + MAG_EPS)             # (B, T, F, K)
        return _pearson(mag.permute(3, 0, 1, 2).reshape(k, -1), eps=MAG_EPS)      # (K, K)

    return ((correlation(v0_hat) - correlation(v0)) ** 2).sum() / k ** 2
