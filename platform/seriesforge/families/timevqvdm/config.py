"""TimeVQVDM configuration and presets (models.md §7; master's thesis 2023, code martintufte/TimeVQ-VDM @48d096e).

Variant: **`thesis`**, the default wherever thesis and code disagree:
  * stage 1 is TimeVQVAE-paper's with the thesis's four changes: hop 1, n_fft 8 (Appendix D's n_fft 4 contradicts
    F = 5), low-dimensional tokens (codebook 512 x 4), all-MSE loss (the code keeps L1 on x_HF) plus MSE on the
    zero-padded spectrograms;
  * the priors are the thesis's U-Nets: LF (64, 128, 256), HF (32, 64, 128, 256) (the code: dim 64, [1,2]/[1,2,4]);
  * sampling halts at t_max = 0.99 (the code starts at t = 1 and patches the division by zero);
  * unconditional sampling runs 128 steps per band, class-conditional 32 steps with w = 3 (the thesis's settings).
Recorded decisions: the latent scalers (one mean and std per band, on the continuous pre-quantisation latents) are
fitted by `prepare_stage` on the driver's training sample (all series up to 4 096); the downsampling rule halves
W0 = L + 1 until W' <= 31 (LF) and <= 127 (HF).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seriesforge import config as C
from seriesforge.config import require
from seriesforge.families.base import fitting_batch, ucr_shape_from_spec


@dataclass(kw_only=True)
class TimeVQVDMConfig:
    variant: Literal["thesis", "code@48d096e"] = "thesis"
    length: int = 150
    channels: int = 1
    num_classes: int = 2
    # stage 1 (TimeVQVAE-paper tokenizer + the four changes)
    n_fft: int = 8
    hop: int = 1
    band_cut: int = 1
    width: int = 64
    num_res_blocks: int = 4
    hidden_dim: int = 64
    code_dim: int = 4
    codebook_size: int = 512
    ema_decay: float = 0.8
    commitment: float = 1.0
    width_bounds: list[int] = field(default_factory=lambda: [31, 127])  # largest W' of the LF, HF token grids
    # stage 2: two continuous-time diffusion priors
    unet_dim: list[int] = field(default_factory=lambda: [64, 32])  # LF, HF
    lf_dim_mults: list[int] = field(default_factory=lambda: [1, 2, 4])
    hf_dim_mults: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    embed_dim: int = 256  # time and class embeddings, concatenated to the 512-d FiLM condition
    time_scale: float = 1000.0  # t x 1000 before the sinusoid (without it the attention failed, thesis)
    p_uncond: float = 0.1
    # sampler
    sample_steps: int = 128  # unconditional
    conditional_steps: int = 32
    guidance: float = 3.0  # w (class-conditional only; the null class needs no guidance)
    t_max: float = 0.99
    gamma: float = 0.1

    def __post_init__(self) -> None:
        for name in ("length", "channels", "num_classes", "n_fft", "hop", "width", "hidden_dim", "code_dim",
                     "codebook_size", "embed_dim", "sample_steps", "conditional_steps"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(0 < self.t_max <= 1, "t_max", f"must be in (0, 1], got {self.t_max}")
        require(0 <= self.gamma < 1, "gamma", f"must be in [0, 1), got {self.gamma}")
        require(0 <= self.p_uncond < 1, "p_uncond", "must be in [0, 1)")
        require(len(self.unet_dim) == 2 and len(self.width_bounds) == 2, "unet_dim", "needs [LF, HF] values")
        require(self.embed_dim % 2 == 0, "embed_dim", "must be even (sin and cos halves)")


def _run(preset: str, spec: str, sized: tuple[TimeVQVDMConfig, int], steps: tuple[int, int], batch: int,
         loop: C.LoopConfig, scaling: C.ScalingConfig | None = None) -> C.RunConfig:
    scaling = scaling or C.ScalingConfig()
    model, train_rows = sized
    batch = fitting_batch(batch, train_rows, scaling.num_workers)
    stages = {name: C.StageConfig(steps=n, batch_size=batch, optim=C.OptimConfig(
        lr=1e-3, weight_decay=1e-6, schedule="cosine", warmup_steps=0)) for name, n in zip(("vqvae", "prior"), steps)}
    return C.RunConfig(family="timevqvdm", preset=preset, model=model,
                       data=C.DataConfig(spec=spec, lengths=[model.length]), stages=stages, loop=loop,
                       strategy=C.StrategyConfig(kind="ddp"), scaling=scaling)


def _sized(spec: str, **fields) -> tuple[TimeVQVDMConfig, int]:
    """The model sized from the dataset the SPEC names (read once), and its training rows (for the batch)."""
    length, classes, train_rows = ucr_shape_from_spec(spec)
    return TimeVQVDMConfig(length=length, num_classes=classes, **fields), train_rows


def debug(spec: str) -> C.RunConfig:
    """Tiny: trains in seconds on CPU (tests)."""
    sized = _sized(spec, width=8, num_res_blocks=1, hidden_dim=8, codebook_size=32, unet_dim=[8, 8],
                   lf_dim_mults=[1, 2], hf_dim_mults=[1, 2], embed_dim=16, sample_steps=8, conditional_steps=4)
    return _run("debug", spec, sized, (20, 20), 8, C.LoopConfig(log_every=5, checkpoint_every=10),
                C.ScalingConfig(max_failures=0))


def small(spec: str) -> C.RunConfig:
    """The CPU results budget of docs/results.md: narrower networks (tokenizer width 32 with 2 residual blocks,
    U-Nets of base width 32 / 16: 0.17 M + 4.0 M parameters instead of 1.0 M + 11 M), 800 + 1 600 steps."""
    sized = _sized(spec, width=32, num_res_blocks=2, unet_dim=[32, 16])
    return _run("small", spec, sized, (800, 1600), 32, C.LoopConfig(log_every=100, checkpoint_every=800))


def thesis(spec: str) -> C.RunConfig:
    """The thesis's budget for a ~1 000-series dataset: 2 000 / 1 000 epochs at batch 128 (as steps: 16 000 / 8 000)."""
    return _run("thesis", spec, _sized(spec), (16_000, 8_000), 128,
                C.LoopConfig(log_every=200, checkpoint_every=2000))


# models.md §8: TimeVQVDM's t_max, γ and w are sampling settings; a training sweep searches the learning rates
SEARCH_SPACE: dict[str, dict] = {
    "stages.vqvae.optim.lr": {"loguniform": [3e-4, 3e-3]},
    "stages.prior.optim.lr": {"loguniform": [3e-4, 3e-3]},
    "model.p_uncond": {"choice": [0.1, 0.2]},
}
