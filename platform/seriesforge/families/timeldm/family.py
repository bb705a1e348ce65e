"""TimeLDM as a seriesforge family: stage 1 a transformer β-VAE with adaptive β, stage 2 a latent diffusion MLP.

Shape legend: B batch · L length · K covariates · D latent token width.

    window (B, L, K) in [0, 1] --vae.encode + reparameterise--> z (B, L, D) --flatten, / latent_scale--> (B, L·D)
    stage 2 trains the MLP denoiser on those latents with DDPM (paper, default) or EDM (code)
    sampling: noise (n, L·D) --sampler--> latents --× latent_scale, reshape, vae.decode--> (n, L, K) -> (n, K, L)

β lives in a buffer (`beta.beta`) and steps down through `observe`, which sees the worker-averaged reconstruction
loss at each log step, so every rank holds the same β and a resumed run continues with the β it had.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from seriesforge.config import RunConfig
from seriesforge.errors import ConfigError
from seriesforge.families.base import (X0_MARGIN, FamilyModule, check_channels, check_window_request,
                                       check_window_shape, ddpm_request)
from seriesforge.families.timeldm import config as presets_module
from seriesforge.families.timeldm.config import TimeLDMConfig
from seriesforge.families.timeldm.model import AdaptiveBeta, MLPDiffusion, TimeLDMVAE, vae_loss
from seriesforge.processes.ddpm import GaussianDiffusion
from seriesforge.processes.edm import EDM
from seriesforge.protocols import DataNeeds, LossOutput, Preset


class TimeLDMFamily(FamilyModule):
    """β-VAE + latent diffusion for unconditional multivariate windows of one length."""

    name: ClassVar[str] = "timeldm"
    Config: ClassVar[type] = TimeLDMConfig
    stages: ClassVar[tuple[str, ...]] = ("vae", "ldm")
    conditions: ClassVar[str] = "none"

    def __init__(self, cfg: TimeLDMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vae = TimeLDMVAE(length=cfg.length, channels=cfg.channels, token_dim=cfg.token_dim,
                              num_heads=cfg.num_heads, factor=cfg.factor, num_layers=cfg.num_layers)
        self.beta = AdaptiveBeta(beta_max=cfg.beta_max, beta_min=cfg.beta_min, factor=cfg.beta_factor,
                                 patience=cfg.beta_patience)
        self.ldm = MLPDiffusion(cfg.length * cfg.token_dim, cfg.ldm_width)
        if cfg.diffusion == "ddpm":
            self.process = GaussianDiffusion(num_steps=cfg.diffusion_steps, schedule=cfg.schedule)
            self.data_scale = 1.0
        else:
            self.process = EDM()
            self.data_scale = self.process.sigma_data
        # std of the latents (EMA while the VAE trains); with latent_scale=auto they are divided by
        # latent_std / data_scale before diffusion, so the process sees the data scale it assumes
        self.register_buffer("latent_std", torch.ones(()))
        # Decision: the DDPM/DDIM sampler bounds each predicted latent element by X0_MARGIN x the largest magnitude
        # seen while the LDM trained (0: not yet seen, no bound); the last steps of a schedule otherwise amplify
        # small ε errors into latents far outside what the decoder was trained on.
        self.register_buffer("latent_bound", torch.zeros(cfg.length * cfg.token_dim))
        self.stage = self.stages[-1]

    # -- registry hooks --------------------------------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "debug": Preset("debug", "tiny; trains in seconds on CPU (tests)", presets_module.debug),
            "small": Preset("small", "the code's VAE, a narrower LDM; the CPU results budget", presets_module.small),
            "paper": Preset("paper", "the run scripts' sizes per dataset", presets_module.paper),
        }

    @classmethod
    def search_space(cls) -> dict[str, dict]:
        return {k: dict(v) for k, v in presets_module.SEARCH_SPACE.items()}

    @classmethod
    def data_needs(cls, cfg: TimeLDMConfig) -> DataNeeds:
        return DataNeeds(kinds=("sines", "csv"), channels=cfg.channels)

    @classmethod
    def max_length(cls, cfg: TimeLDMConfig) -> int:
        return cfg.length

    @classmethod
    def example_batch(cls, cfg: TimeLDMConfig, *, batch_size: int, length: int,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """series (B, L, K) in [0, 1], as the window SPECs feed."""
        return {"series": torch.rand((batch_size, length, cfg.channels), generator=generator)}

    @classmethod
    def validate(cls, run: RunConfig) -> None:
        check_window_shape(run, name="timeldm")

    # -- training --------------------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> list[nn.Parameter]:
        if stage not in self.stages:
            raise ConfigError(f"stage: {stage!r} is not a timeldm stage ({', '.join(self.stages)})")
        self.stage = stage
        return self.train_only(self.vae if stage == "vae" else self.ldm)

    def forward(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        x = batch["series"].float()  # (B, L, K) in [0, 1]
        check_channels(x, self.cfg, name="timeldm")
        if self.stage == "vae":
            x_hat, mu, logvar = self.vae(x)
            loss, metrics = vae_loss(x, x_hat, mu, logvar, self.beta.beta.to(x.dtype))
            if self.training:
                self._track_latent_std(mu, logvar)
            return LossOutput(loss, {**metrics, "latent_std": float(self.latent_std)})
        with torch.no_grad():
            mu, logvar = self.vae.encode(x)
            z = self._to_process(self.vae.reparameterise(mu, logvar))  # (B, L·D), as the code's latent table
            if self.training:
                torch.maximum(self.latent_bound, z.abs().amax(dim=0).to(self.latent_bound.dtype),
                              out=self.latent_bound)
        if isinstance(self.process, EDM):
            loss = self.process.training_loss(self.ldm, z)
        else:
            loss = self.process.training_loss(self.ldm, z).loss
        return LossOutput(loss, {"diffusion_loss": float(loss.detach())})

    @torch.no_grad()
    def _track_latent_std(self, mu: torch.Tensor, logvar: torch.Tensor, momentum: float = 0.02) -> None:
        z = self.vae.reparameterise(mu, logvar)  # (B, L, D)
        self.latent_std.lerp_(z.std().clamp_min(1e-4).to(self.latent_std.dtype), momentum)

    def observe(self, metrics: dict[str, float]) -> dict[str, float]:
        """Adaptive β, driven by the worker-averaged reconstruction loss (identical on every rank)."""
        if self.stage != "vae" or "recon" not in metrics:
            return {}
        return {"beta": self.beta.observe(metrics["recon"])}

    def _scale(self) -> torch.Tensor:
        return self.latent_std / self.data_scale if self.cfg.latent_scale == "auto" else torch.ones_like(
            self.latent_std)

    def _to_process(self, z: torch.Tensor) -> torch.Tensor:
        return (z / self._scale()).flatten(1)  # (B, L·D)

    # -- sampling --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, *, n: int, length: int, condition: Sequence | None = None, steps: int | None = None,
               guidance: float | None = None, generator: torch.Generator | None = None,
               progress=None) -> torch.Tensor:
        """`n` windows (n, K, L) in [0, 1] units (not clipped)."""
        check_window_request(self.cfg, length, condition, name="timeldm")
        device = next(self.parameters()).device
        draw_device = generator.device if generator is not None else device
        noise = torch.randn((n, self.cfg.length * self.cfg.token_dim), generator=generator,
                            device=draw_device).to(device)  # (n, L·D)
        if isinstance(self.process, EDM):
            z = self.process.sample(self.ldm, noise, steps=steps or self.cfg.sample_steps, generator=generator,
                                    progress=progress)
        else:
            method, steps = ddpm_request(self.process, self.cfg.sampler, self.cfg.sample_steps, steps)
            bound = X0_MARGIN * self.latent_bound if bool(self.latent_bound.any()) else None
            z = self.process.sample(self.ldm, noise, method=method, steps=steps, generator=generator,
                                    progress=progress, x0_bound=bound)
        z = (z * self._scale()).reshape(n, self.cfg.length, self.cfg.token_dim)  # (n, L, D)
        return self.vae.decode(z).transpose(1, 2).contiguous()  # (n, K, L)
