"""ST-Diff configuration and presets (models.md §4; paper: "Time Series as Videos: Spectro-Temporal Generative
Diffusion", no public code).

Variant `formula` (default): hop = ceil(n_fft / 4), which gives T = 8 frames at every L, matching the paper's
"fixed-dimensional spectrograms" and its 75 % overlap; `paper-table4` uses Table 4's hops (11 at L = 64, 15 at
L = 128), which contradict that formula. Every decision models.md marks (EMA α, trend resampling, video scaling,
the L_cov form and weight, batch, weight EMA) is a field here, so it is recorded beside every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from seriesforge import config as C
from seriesforge.config import require
from seriesforge.families.base import window_shape_from_spec

# Paper Table 4, per window length: (patch_f, depth, dim, heads). MLP ratio 4 everywhere.
PAPER_SETTINGS: dict[int, tuple[int, int, int, int]] = {
    24: (2, 6, 192, 4), 64: (4, 8, 384, 6), 128: (8, 8, 384, 6), 256: (16, 8, 384, 6)}


def paper_settings(length: int) -> tuple[int, int, int, int]:
    """(patch_f, depth, dim, heads) for L: Table 4's row, or for another L the nearest row with patch_f rescaled
    so the number of frequency tokens F' stays the row's."""
    if length in PAPER_SETTINGS:
        return PAPER_SETTINGS[length]
    row = min(PAPER_SETTINGS, key=lambda n: abs(math.log(n / length)))
    patch_f, depth, dim, heads = PAPER_SETTINGS[row]
    f_tokens = math.ceil(((row // 2 - 1) // 2 + 1) / patch_f)  # F' of the row
    bins = (length // 2 - 1) // 2 + 1  # F at this L
    return max(1, math.ceil(bins / max(1, f_tokens))), depth, dim, heads


@dataclass(kw_only=True)
class STDiffConfig:
    variant: Literal["formula", "paper-table4"] = "formula"  # STFT hop rule (see the module docstring)
    length: int = 24  # L: one window length per model
    channels: int = 5  # K covariates
    # denoiser (paper Table 4 at L = 24)
    patch_f: int = 2
    dim: int = 192
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    # diffusion: DDPM, 1000 steps, cosine schedule; DDIM sampling with 200 steps on the same schedule
    diffusion_steps: int = 1000
    schedule: Literal["cosine", "linear"] = "cosine"
    sampler: Literal["ddim", "ddpm"] = "ddim"
    sample_steps: int = 200
    eta: float = 0.0  # DDIM noise (0: deterministic)
    # decisions (models.md §4)
    cov_loss_weight: float = 0.1  # λ_cov of the cross-covariance loss on STFT magnitudes (0 disables)
    cov_loss_max_t: int = 500  # L_cov only on samples with diffusion step n <= this
    ema_decay: float = 0.999  # weight EMA used for sampling (0: sample the trained weights)

    def __post_init__(self) -> None:
        for name in ("length", "channels", "patch_f", "dim", "depth", "num_heads", "diffusion_steps", "sample_steps"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.length >= 8, "length", f"must be >= 8 (the STFT needs n_fft = L/2 - 1 >= 3), got {self.length}")
        require(self.dim % self.num_heads == 0, "dim", f"must be divisible by num_heads={self.num_heads}")
        require((self.dim // self.num_heads) % 2 == 0, "num_heads", "dim / num_heads must be even (RoPE pairs)")
        require(self.sample_steps <= self.diffusion_steps, "sample_steps",
                f"must be <= diffusion_steps={self.diffusion_steps}")
        require(0.0 <= self.ema_decay < 1.0, "ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        require(self.cov_loss_weight >= 0, "cov_loss_weight", "must be >= 0")
        require(self.eta >= 0, "eta", "must be >= 0")
        require(self.variant == "formula" or self.length in PAPER_SETTINGS, "variant",
                f"paper-table4 has hops for L in {sorted(PAPER_SETTINGS)} only, got length={self.length}")


def _run(preset: str, spec: str, model: STDiffConfig, stage: C.StageConfig, loop: C.LoopConfig,
         scaling: C.ScalingConfig | None = None) -> C.RunConfig:
    return C.RunConfig(family="stdiff", preset=preset, model=model,
                       data=C.DataConfig(spec=spec, lengths=[model.length]), stages={"denoiser": stage}, loop=loop,
                       strategy=C.StrategyConfig(zero_stage=1), scaling=scaling or C.ScalingConfig())


def debug(spec: str) -> C.RunConfig:
    """Tiny: trains in seconds on CPU (tests)."""
    length, channels = window_shape_from_spec(spec)
    model = STDiffConfig(length=length, channels=channels, patch_f=paper_settings(length)[0], dim=32, depth=2,
                         num_heads=2, sample_steps=10)
    return _run("debug", spec, model, C.StageConfig(steps=20, batch_size=16, optim=C.OptimConfig(lr=1e-3)),
                C.LoopConfig(log_every=5, checkpoint_every=10), C.ScalingConfig(max_failures=0))


def small(spec: str) -> C.RunConfig:
    """The CPU budget of docs/results.md: the paper's geometry at reduced width, ~10 minutes on 2 cores."""
    length, channels = window_shape_from_spec(spec)
    patch_f = paper_settings(length)[0]
    model = STDiffConfig(length=length, channels=channels, patch_f=patch_f, dim=64, depth=3, num_heads=4,
                         sample_steps=50, ema_decay=0.995)
    return _run("small", spec, model,
                C.StageConfig(steps=1500, batch_size=64, optim=C.OptimConfig(lr=1e-3, schedule="cosine",
                                                                            warmup_steps=50)),
                C.LoopConfig(log_every=50, checkpoint_every=500))


def paper(spec: str) -> C.RunConfig:
    """Table 4 sizes; AdamW lr 2e-4 with cosine annealing, batch 128 (decision), grad clip 1.0.

    The paper trains <= 1000 epochs with early stopping; we count optimiser steps (~1000 epochs of Sines at
    batch 128 x 2 workers is ~40 000 steps).
    """
    length, channels = window_shape_from_spec(spec)
    patch_f, depth, dim, heads = paper_settings(length)
    model = STDiffConfig(length=length, channels=channels, patch_f=patch_f, dim=dim, depth=depth, num_heads=heads)
    return _run("paper", spec, model,
                C.StageConfig(steps=40_000, batch_size=128, optim=C.OptimConfig(lr=2e-4, schedule="cosine")),
                C.LoopConfig(log_every=100, checkpoint_every=2000))


# The default `seriesforge tune` space: models.md §8 names λ_cov and the hop variant; width and lr as usual.
SEARCH_SPACE: dict[str, dict] = {
    "stages.denoiser.optim.lr": {"loguniform": [1e-4, 2e-3]},
    "model.cov_loss_weight": {"choice": [0.0, 0.01, 0.1, 1.0]},
    "model.dim": {"choice": [96, 192, 384]},  # divisible by 2, 4 and 6 heads, even per head (RoPE)
    "model.depth": {"randint": [2, 5]},
}
