"""TimeVQVAE (+ NM) configuration and presets (models.md §5, §6; arXiv 2303.04743 and 2501.17553).

Variant: **`code@6e04f69`** (the 2024 research tree) is the default, because NM-VQTSG is built on it and its sampler
is the better documented; `--preset paper` selects the AISTATS variant (841ab99): n_fft 8, rectangular window,
hop 2, zero-padded 5-bin band inputs, conv encoders, a 32 x 64 codebook, priors of width 256.

Recorded decisions (models.md §8):
  * mask semantics: the code's (`kept = clip(floor(cos(πr/2)·N), 0, N-1)`); `mask_semantics: maskgit` selects the
    MaskGIT paper's;
  * decoder: n upsamplings + linear interpolation to W0 = L + 1 frames, then ISTFT(length=L) (the `length=L`
    variant models.md allows) instead of the code's n + 1 upsamplings and a resize of the series;
  * NM distance: squared Euclidean (the code's; the τ grid was tuned with it); NM steps: the paper's 30 000 at the
    paper preset; τ is chosen by seeded ROCKET FID (1 000 kernels, seed `loop.seed`) against `tau_samples`
    unconditional prior samples, with the stochastic reconstructions drawn from the driver's training sample
    (all training series up to 4 096);
  * the mapper is the third stage, `mapper`; `stages.mapper.steps=0` trains TimeVQVAE alone. A checkpoint generates
    once `prior` is done; `refine` needs a trained mapper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from seriesforge import config as C
from seriesforge.config import require
from seriesforge.families.base import fitting_batch, ucr_shape_from_spec

CODE_VARIANT = "code@6e04f69"


@dataclass(kw_only=True)
class TimeVQVAEConfig:
    variant: Literal["code@6e04f69", "paper"] = CODE_VARIANT
    length: int = 150  # L (UCR datasets: the dataset's length)
    channels: int = 1  # K (UCR: 1; more stack 2K STFT channels)
    num_classes: int = 2  # C; the null class C is added for unconditional sampling
    # stage 1: STFT tokenizer
    n_fft: int = 4
    hop: int = 1
    window: Literal["hann", "rect"] = "hann"
    normalized: bool = True
    band_cut: int = 1  # LF = bin 0
    arch: Literal["snake", "conv"] = "snake"
    width: int = 4  # encoder channels at the first level (snake doubles per level; conv keeps it)
    num_res_blocks: int = 2
    hidden_dim: int = 128  # D_h
    code_dim: int = 8
    codebook_size: int = 1024
    ema_decay: float = 0.8
    commitment: float = 1.0
    downsample_widths: list[int] = field(default_factory=lambda: [8, 32])  # w_LF, w_HF of the halving rule
    zero_padded: bool = False
    tokenizer_loss: Literal["code", "paper"] = "code"
    dropout: float = 0.0
    # stage 2: MaskGIT priors (LF, then HF conditioned on LF)
    prior_dim: list[int] = field(default_factory=lambda: [128, 32])
    prior_depth: list[int] = field(default_factory=lambda: [4, 1])
    prior_heads: list[int] = field(default_factory=lambda: [2, 1])
    prior_ff_mult: float = 1.0
    prior_dropout: float = 0.3
    p_uncond: float = 0.2
    mask_semantics: Literal["code", "maskgit"] = "code"
    decode_steps: int = 10  # T per band
    choice_temperature: list[float] = field(default_factory=lambda: [10.0, 0.0])  # LF, HF
    guidance: float = 1.0  # classifier-free guidance scale s (1 = off)
    # stage 3: NM neural mapper
    mapper_dim: int = 8
    mapper_dim_mults: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    mapper_dropout: float = 0.5
    tau_grid: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0, 2.0, 4.0])
    tau_samples: int = 1024
    rocket_kernels: int = 1000

    def __post_init__(self) -> None:
        for name in ("length", "channels", "num_classes", "n_fft", "hop", "width", "hidden_dim", "code_dim",
                     "codebook_size", "decode_steps", "tau_samples", "rocket_kernels", "mapper_dim"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(1 <= self.band_cut < self.n_fft // 2 + 1, "band_cut", f"must be in [1, {self.n_fft // 2}]")
        require(0 < self.ema_decay < 1, "ema_decay", "must be in (0, 1)")
        require(0 <= self.p_uncond < 1, "p_uncond", "must be in [0, 1)")
        for name in ("downsample_widths", "prior_dim", "prior_depth", "prior_heads", "choice_temperature"):
            require(len(getattr(self, name)) == 2, name, "needs two values: [LF, HF]")
        for dim, heads in zip(self.prior_dim, self.prior_heads):
            require(dim % heads == 0, "prior_dim", f"{dim} is not divisible by prior_heads {heads}")
        require(all(t > 0 for t in self.tau_grid) and self.tau_grid, "tau_grid", "needs positive temperatures")
        require(self.guidance >= 0, "guidance", "must be >= 0")


def _schedule(lr: float, steps: int) -> C.OptimConfig:
    """The code's schedule: AdamW, linear warm-up over 5 % of the steps, cosine to lr / 10, per step."""
    return C.OptimConfig(lr=lr, weight_decay=0.01, schedule="cosine", warmup_steps=max(1, steps // 20),
                         min_lr_ratio=0.1)


def _run(preset: str, spec: str, sized: tuple[TimeVQVAEConfig, int], steps: tuple[int, int, int], batch: int,
         lr: float,
         loop: C.LoopConfig, scaling: C.ScalingConfig | None = None) -> C.RunConfig:
    scaling = scaling or C.ScalingConfig()
    model, train_rows = sized
    batch = fitting_batch(batch, train_rows, scaling.num_workers)
    stages = {name: C.StageConfig(steps=n, batch_size=batch, optim=_schedule(lr, n))
              for name, n in zip(("vqvae", "prior", "mapper"), steps)}
    # models.md §5: the models are < 2 M parameters and the EMA codebook is synchronised by hand: plain DDP
    return C.RunConfig(family="timevqvae", preset=preset, model=model,
                       data=C.DataConfig(spec=spec, lengths=[model.length]), stages=stages, loop=loop,
                       strategy=C.StrategyConfig(kind="ddp"), scaling=scaling)


def _sized(spec: str, **fields) -> tuple[TimeVQVAEConfig, int]:
    """The model sized from the dataset the SPEC names (read once), and its training rows (for the batch)."""
    length, classes, train_rows = ucr_shape_from_spec(spec)
    return TimeVQVAEConfig(length=length, num_classes=classes, **fields), train_rows


def debug(spec: str) -> C.RunConfig:
    """Tiny: trains in seconds on CPU (tests)."""
    sized = _sized(spec, hidden_dim=16, code_dim=4, codebook_size=32, prior_dim=[16, 16], prior_depth=[1, 1],
                   prior_heads=[1, 1], decode_steps=4, tau_samples=64, rocket_kernels=50, mapper_dim=4,
                   mapper_dim_mults=[1, 2], tau_grid=[0.1, 1.0])
    return _run("debug", spec, sized, (20, 20, 10), 8, 5e-3, C.LoopConfig(log_every=5, checkpoint_every=10),
                C.ScalingConfig(max_failures=0))


def small(spec: str) -> C.RunConfig:
    """The CPU results budget of docs/results.md: the code's networks, 800 / 1 600 / 800 steps (of 20k/40k/30k)."""
    return _run("small", spec, _sized(spec), (800, 1600, 800), 32, 5e-3,
                C.LoopConfig(log_every=100, checkpoint_every=800))


def code(spec: str) -> C.RunConfig:
    """The code's full budget (models.md §5-6): 20 000 / 40 000 steps, NM 30 000 (the NM paper's), batch 32."""
    return _run("code", spec, _sized(spec), (20_000, 40_000, 30_000), 32, 5e-3,
                C.LoopConfig(log_every=200, checkpoint_every=2000))


def paper(spec: str) -> C.RunConfig:
    """The AISTATS variant (841ab99): rectangular n_fft 8, hop 2, zero-padded bands, conv encoders, codebook 32 x 64,
    width-256 priors; stage budgets in steps at batch 128 (the paper trains 2 000 / 10 000 epochs)."""
    sized = _sized(spec, variant="paper", n_fft=8, hop=2, window="rect", normalized=False, arch="conv", width=64,
                   num_res_blocks=4, hidden_dim=64, code_dim=64, codebook_size=32, zero_padded=True,
                   tokenizer_loss="paper", prior_dim=[256, 256], prior_depth=[4, 4], prior_heads=[2, 2],
                   choice_temperature=[4.0, 4.0])
    return _run("paper", spec, sized, (20_000, 40_000, 30_000), 128, 1e-3,
                C.LoopConfig(log_every=200, checkpoint_every=2000))


# models.md §8: TimeVQVAE's choice temperature and CFG scale are sampling settings (tune them on a trained
# checkpoint); a training sweep searches the stage learning rates and the prior's dropout.
SEARCH_SPACE: dict[str, dict] = {
    "stages.vqvae.optim.lr": {"loguniform": [1e-3, 1e-2]},
    "stages.prior.optim.lr": {"loguniform": [1e-3, 1e-2]},
    "model.prior_dropout": {"choice": [0.1, 0.3]},
}
