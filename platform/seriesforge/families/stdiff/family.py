"""ST-Diff as a seriesforge family: one stage, a tri-axial DiT denoising STFT "videos" with DDPM (models.md §4).

Shape legend: B batch · L length · K covariates · T frames · F frequency bins.

    window (B, L, K) in [0, 1] --to_video--> (B, T, 3, F, K) --scaler.standardise--> v0
    training: DDPM ε-loss on v0 (+ λ_cov · cross-covariance loss on STFT magnitudes of the predicted v̂0)
    sampling: noise (n, T, 3, F, K) --DDIM (or DDPM) on the same schedule--> v̂0 --unstandardise, from_video-->
              (n, L, K) --> returned as (n, K, L), [0, 1] units (not clipped, as the paper)

The video scaler's statistics and both attention biases are derived from training data (`data_init`, on the
driver), so every rank starts from the same values; they are saved with the weights.
"""

from __future__ import annotations

import copy
from typing import ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from seriesforge.config import RunConfig
from seriesforge.errors import ConfigError
from seriesforge.families.base import (X0_MARGIN, FamilyModule, check_channels, check_window_request,
                                       check_window_shape, ddpm_request)
from seriesforge.families.stdiff import config as presets_module
from seriesforge.families.stdiff.config import STDiffConfig
from seriesforge.families.stdiff.model import STDiffDenoiser
from seriesforge.families.stdiff.video import (VideoScaler, covariate_correlation, cross_covariance_loss,
                                               frequency_log_magnitude_covariance, from_video, geometry_for_length,
                                               to_video)
from seriesforge.processes.ddpm import GaussianDiffusion
from seriesforge.protocols import DataNeeds, LossOutput, Preset


class STDiffFamily(FamilyModule):
    """Spectro-temporal diffusion over STFT videos of multivariate windows; unconditional, one length."""

    name: ClassVar[str] = "stdiff"
    Config: ClassVar[type] = STDiffConfig
    stages: ClassVar[tuple[str, ...]] = ("denoiser",)
    conditions: ClassVar[str] = "none"

    def __init__(self, cfg: STDiffConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.geometry = geometry_for_length(cfg.length, cfg.variant)
        self.scaler = VideoScaler(self.geometry.bins, cfg.channels)
        self.denoiser = STDiffDenoiser(frames=self.geometry.frames, bins=self.geometry.bins,
                                       covariates=cfg.channels, patch_f=cfg.patch_f, dim=cfg.dim, depth=cfg.depth,
                                       num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio)
        # The weight EMA (decision: 0.999) is a frozen copy the optimiser never sees; sampling uses it. Its decay
        # warms up as min(decay, (1 + n) / (10 + n)) over its n updates (the usual EMA warm-up): with a fixed 0.995
        # a 600-step CPU run sampled a copy that lagged the weights (spread 0.095 vs 0.118 raw, real 0.134).
        self.denoiser_ema = copy.deepcopy(self.denoiser).requires_grad_(False) if cfg.ema_decay > 0 else None
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.int64))
        self.diffusion = GaussianDiffusion(num_steps=cfg.diffusion_steps, schedule=cfg.schedule)
        # Decision: the sampler bounds each element of the predicted clean video by X0_MARGIN x its largest
        # magnitude in the training sample (inf until data_init sets it). Without a bound, the cosine schedule's
        # last steps amplify small ε errors ~10^2-10^4x: our first Sines run sampled values of +-780.
        g = self.geometry
        self.register_buffer("x0_bound", torch.full((g.frames, 3, g.bins, cfg.channels), float("inf")))

    # -- registry hooks --------------------------------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "debug": Preset("debug", "tiny; trains in seconds on CPU (tests)", presets_module.debug),
            "small": Preset("small", "reduced width, the paper's geometry; the CPU results budget",
                            presets_module.small),
            "paper": Preset("paper", "the paper's Table 4 sizes per window length", presets_module.paper),
        }

    @classmethod
    def search_space(cls) -> dict[str, dict]:
        return {k: dict(v) for k, v in presets_module.SEARCH_SPACE.items()}

    @classmethod
    def data_needs(cls, cfg: STDiffConfig) -> DataNeeds:
        return DataNeeds(kinds=("sines", "csv"), channels=cfg.channels)

    @classmethod
    def max_length(cls, cfg: STDiffConfig) -> int:
        return cfg.length

    @classmethod
    def example_batch(cls, cfg: STDiffConfig, *, batch_size: int, length: int,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """series (B, L, K) in [0, 1], as the window SPECs feed."""
        return {"series": torch.rand((batch_size, length, cfg.channels), generator=generator)}

    @classmethod
    def validate(cls, run: RunConfig) -> None:
        check_window_shape(run, name="stdiff")
        if run.model.ema_decay > 0 and run.strategy.kind == "deepspeed" and run.strategy.zero_stage == 3:
            raise ConfigError("strategy.zero_stage: 3 partitions the weights the EMA copies; use ZeRO 0-2 or set "
                              "model.ema_decay=0")

    @classmethod
    def data_init(cls, cfg: STDiffConfig, series: np.ndarray | None) -> dict[str, torch.Tensor]:
        """Scaler statistics and the two attention-bias inits from training windows (N, L, K)."""
        if series is None:
            raise ConfigError("data: stdiff derives its video scaling and attention biases from training windows")
        geometry = geometry_for_length(cfg.length, cfg.variant)
        videos = to_video(torch.as_tensor(series, dtype=torch.float32), geometry)  # (N, T, 3, F, K)
        scaler = VideoScaler.fit(videos)
        out = {f"scaler.{k}": v for k, v in scaler.state_dict().items()}
        out["x0_bound"] = X0_MARGIN * scaler.standardise(videos).abs().amax(dim=0)  # (T, 3, F, K)
        probe = STDiffDenoiser(frames=geometry.frames, bins=geometry.bins, covariates=cfg.channels,
                               patch_f=cfg.patch_f, dim=cfg.num_heads * 2, depth=cfg.depth, num_heads=cfg.num_heads)
        biases = probe.bias_state(covariate_correlation(videos),
                                  frequency_log_magnitude_covariance(videos, cfg.patch_f))
        for prefix in ("denoiser.",) + (("denoiser_ema.",) if cfg.ema_decay > 0 else ()):
            out.update({prefix + k: v for k, v in biases.items()})
        return out

    # -- training --------------------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> list[nn.Parameter]:
        if stage not in self.stages:
            raise ConfigError(f"stage: {stage!r} is not an stdiff stage ({', '.join(self.stages)})")
        return self.train_only(self.denoiser)

    def forward(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        x = batch["series"]  # (B, L, K) in [0, 1]
        check_channels(x, self.cfg, name="stdiff")
        v0 = self.scaler.standardise(to_video(x.float(), self.geometry))  # (B, T, 3, F, K)
        terms = self.diffusion.training_loss(self.denoiser, v0)
        metrics = {"eps_mse": float(terms.loss.detach())}
        loss = terms.loss
        if self.cfg.cov_loss_weight > 0 and self.cfg.channels > 1:
            near = terms.t <= self.cfg.cov_loss_max_t  # (B,) only mildly noised samples give a usable v̂0
            if near.any():
                v0_hat = self.diffusion.predict_x0(terms.x_t[near], terms.t[near], terms.eps_hat[near])
                cov = cross_covariance_loss(self.scaler.unstandardise(v0_hat), self.scaler.unstandardise(v0[near]))
                loss = loss + self.cfg.cov_loss_weight * cov
                metrics["cov_loss"] = float(cov.detach())
        return LossOutput(loss, metrics)

    @torch.no_grad()
    def after_step(self) -> None:
        if self.denoiser_ema is None:
            return
        n = int(self.ema_updates)
        decay = min(self.cfg.ema_decay, (1.0 + n) / (10.0 + n))
        ema, live = list(self.denoiser_ema.parameters()), list(self.denoiser.parameters())
        torch._foreach_lerp_(ema, [p.detach().to(e.dtype) for p, e in zip(live, ema)], 1.0 - decay)
        self.ema_updates += 1

    # -- sampling --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, *, n: int, length: int, condition: Sequence | None = None, steps: int | None = None,
               guidance: float | None = None, generator: torch.Generator | None = None,
               progress=None) -> torch.Tensor:
        """`n` windows (n, K, L) in [0, 1] units (not clipped)."""
        check_window_request(self.cfg, length, condition, name="stdiff")
        net = self.denoiser_ema if self.denoiser_ema is not None else self.denoiser
        device = next(self.parameters()).device
        g = self.geometry
        draw_device = generator.device if generator is not None else device
        noise = torch.randn((n, g.frames, 3, g.bins, self.cfg.channels), generator=generator,
                            device=draw_device).to(device)  # (n, T, 3, F, K)
        method, steps = ddpm_request(self.diffusion, self.cfg.sampler, self.cfg.sample_steps, steps)
        v0 = self.diffusion.sample(net, noise, method=method, steps=steps, eta=self.cfg.eta, generator=generator,
                                   progress=progress, x0_bound=self.x0_bound)
        x = from_video(self.scaler.unstandardise(v0), g)  # (n, L, K)
        return x.transpose(1, 2).contiguous()  # (n, K, L)
