"""TimeLDM configuration and presets (models.md §3; paper: arXiv 2407.04211; candidate code xuyira/timeldm).

Variant: the **paper's** latent process by default (`diffusion: ddpm`: the paper describes a DDPM latent denoiser;
linear β schedule over 1 000 steps, Ho et al., and the ancestral sampler); `diffusion: edm` selects what the only
public code runs (EDM preconditioning, σ_data 0.5, Heun sampler with 50 steps and S_churn 1). Both processes are
shared modules (`seriesforge.processes.ddpm`, used by ST-Diff too, and `processes.edm`).

Other recorded decisions:
  * adaptive β: β ← max(0.7 β, 1e-5) when the worker-averaged reconstruction loss has not improved for
    `beta_patience` consecutive log intervals (the code counts epochs of a validation split; we count log
    intervals of `loop.log_every` steps, identical on every rank);
  * `latent_scale: auto` rescales latents by one scalar so their std is the process's data scale (1 for DDPM,
    σ_data = 0.5 for EDM); `none` feeds raw latents, as the code. The std is logged (`latent_std`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seriesforge import config as C
from seriesforge.config import require
from seriesforge.families.base import window_shape_from_spec

# run_*.sh of xuyira/timeldm by K (Sines 5, Stocks 6, ETTh 7, MuJoCo 14, Energy 28, fMRI 50):
# (token_dim, heads, factor, layers, ldm_width, batch)
CODE_SETTINGS: dict[int, tuple[int, int, int, int, int, int]] = {
    5: (10, 1, 16, 2, 2048, 1024), 6: (12, 2, 16, 3, 1024, 512), 7: (14, 2, 16, 3, 1024, 1024),
    14: (14, 2, 32, 3, 1024, 1024), 28: (56, 1, 16, 3, 6144, 2048), 50: (100, 1, 16, 2, 4096, 1024)}


def code_settings(channels: int) -> tuple[int, int, int, int, int, int]:
    """The run-script row for K covariates; another K gets D_tok = 2K, 2 heads, factor 16, 3 layers, W 1024."""
    return CODE_SETTINGS.get(channels, (2 * channels, 2, 16, 3, 1024, 1024))


@dataclass(kw_only=True)
class TimeLDMConfig:
    variant: Literal["paper", "code"] = "paper"  # which one the process fields below follow (a label; see above)
    length: int = 24  # L: one window length per model
    channels: int = 5  # K
    # β-VAE (one latent token of token_dim per time step)
    token_dim: int = 10
    num_heads: int = 1
    factor: int = 16
    num_layers: int = 2
    beta_max: float = 1e-2
    beta_min: float = 1e-5
    beta_factor: float = 0.7
    beta_patience: int = 10  # log intervals without a better reconstruction loss before β steps down
    # latent diffusion over the flattened (L · token_dim) latent
    ldm_width: int = 2048
    diffusion: Literal["ddpm", "edm"] = "ddpm"
    diffusion_steps: int = 1000  # DDPM
    schedule: Literal["linear", "cosine"] = "linear"  # DDPM
    sampler: Literal["ddpm", "ddim"] = "ddpm"  # DDPM process: ancestral (all steps) or DDIM (sample_steps)
    sample_steps: int = 1000  # DDIM steps, or EDM Heun steps (the code: 50)
    latent_scale: Literal["auto", "none"] = "auto"

    def __post_init__(self) -> None:
        for name in ("length", "channels", "token_dim", "num_heads", "factor", "num_layers", "ldm_width",
                     "diffusion_steps", "sample_steps", "beta_patience"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.token_dim % self.num_heads == 0, "token_dim", f"must be divisible by num_heads={self.num_heads}")
        require(0 < self.beta_min <= self.beta_max, "beta_min", f"must be in (0, beta_max={self.beta_max}]")
        require(0 < self.beta_factor < 1, "beta_factor", f"must be in (0, 1), got {self.beta_factor}")
        require(self.diffusion == "edm" or self.sampler == "ddpm" or self.sample_steps <= self.diffusion_steps,
                "sample_steps", f"DDIM steps must be <= diffusion_steps={self.diffusion_steps}")


def _run(preset: str, spec: str, model: TimeLDMConfig, vae: C.StageConfig, ldm: C.StageConfig,
         loop: C.LoopConfig, scaling: C.ScalingConfig | None = None) -> C.RunConfig:
    return C.RunConfig(family="timeldm", preset=preset, model=model,
                       data=C.DataConfig(spec=spec, lengths=[model.length]), stages={"vae": vae, "ldm": ldm},
                       loop=loop, strategy=C.StrategyConfig(zero_stage=1), scaling=scaling or C.ScalingConfig())


def debug(spec: str) -> C.RunConfig:
    """Tiny: trains in seconds on CPU (tests)."""
    length, channels = window_shape_from_spec(spec)
    model = TimeLDMConfig(length=length, channels=channels, token_dim=2 * channels, num_heads=1, factor=2,
                          num_layers=1, ldm_width=32, sampler="ddim", sample_steps=10, beta_patience=2)
    return _run("debug", spec, model,
                C.StageConfig(steps=20, batch_size=16, optim=C.OptimConfig(lr=1e-3)),
                C.StageConfig(steps=20, batch_size=16, optim=C.OptimConfig(lr=1e-3)),
                C.LoopConfig(log_every=5, checkpoint_every=10), C.ScalingConfig(max_failures=0))


def small(spec: str) -> C.RunConfig:
    """The CPU budget of docs/results.md: the code's VAE sizes, a narrower LDM, the paper's DDPM sampler.

    Ancestral DDPM (1 000 steps of a small MLP, about a minute for 1 000 samples on CPU) rather than DDIM: on a
    1 500-step LDM, DDIM with 100 steps sampled latents 3x wider than the data's (per-dimension std 1.87 vs
    0.63), ancestral sampling 1.9x (1.19)."""
    length, channels = window_shape_from_spec(spec)
    token_dim, heads, factor, layers, _, _ = code_settings(channels)
    model = TimeLDMConfig(length=length, channels=channels, token_dim=token_dim, num_heads=heads, factor=factor,
                          num_layers=layers, ldm_width=512, beta_patience=4)
    return _run("small", spec, model,
                C.StageConfig(steps=1500, batch_size=128, optim=C.OptimConfig(lr=1e-3, betas=[0.9, 0.999])),
                C.StageConfig(steps=3000, batch_size=256, optim=C.OptimConfig(lr=5e-4, betas=[0.9, 0.96],
                                                                             schedule="cosine", warmup_steps=50)),
                C.LoopConfig(log_every=50, checkpoint_every=1000))


def paper(spec: str) -> C.RunConfig:
    """The run scripts' sizes per dataset (by K). The code trains 15 001 VAE epochs and the LDM until 8 000
    epochs without improvement; we count optimiser steps (150 000 and 100 000) at the scripts' batch sizes."""
    length, channels = window_shape_from_spec(spec)
    token_dim, heads, factor, layers, width, batch = code_settings(channels)
    model = TimeLDMConfig(length=length, channels=channels, token_dim=token_dim, num_heads=heads, factor=factor,
                          num_layers=layers, ldm_width=width)
    return _run("paper", spec, model,
                C.StageConfig(steps=150_000, batch_size=batch, optim=C.OptimConfig(lr=1e-3)),
                C.StageConfig(steps=100_000, batch_size=batch, optim=C.OptimConfig(lr=1e-4, betas=[0.9, 0.96])),
                C.LoopConfig(log_every=100, checkpoint_every=5000))


# The default `seriesforge tune` space: models.md §8 names the adaptive-β patience and the LDM width.
SEARCH_SPACE: dict[str, dict] = {
    "stages.vae.optim.lr": {"loguniform": [3e-4, 3e-3]},
    "stages.ldm.optim.lr": {"loguniform": [1e-4, 2e-3]},
    "model.beta_patience": {"randint": [2, 12]},
    "model.ldm_width": {"choice": [256, 512, 1024]},
}
