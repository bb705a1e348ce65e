"""TimeVQVDM as a seriesforge family: stage `vqvae` the TimeVQVAE-paper tokenizer with low-dimensional tokens,
stage `prior` two continuous-time diffusion priors on the scaled continuous latents, HF conditioned on LF (cascade).

Shape legend: B batch · K channels · L length · H = F = 5 token rows · d code width · W' token columns per band ·
C = H·d latent channels.

    x (B, K, L) --tokenizer.encode_band--> z (B, H·W', d) --scale (S_LF / S_HF)--> (B, C, W') latent "series"
    prior: ε-prediction MSE, LF + HF summed; HF sees the ground-truth scaled LF latent, upsampled to W'_HF
    sample: LF ancestral sampler (t_max 0.99, γ 0.1, CFG w) -> HF given the sampled LF -> unscale -> quantise with the
            stage-1 codebooks -> decode each band -> x̂ = x̂_LF + x̂_HF  (n, K, L), in standardised units
"""

from __future__ import annotations

import math
from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seriesforge.errors import ConfigError
from seriesforge.families.base import UCRFamily, check_window_request
from seriesforge.families.timevqvdm import config as presets_module
from seriesforge.families.timevqvdm.config import TimeVQVDMConfig
from seriesforge.nn.unet1d import TimeClassEmbedding, UNet1D
from seriesforge.nn.vq_tokenizer import BANDS, TokenizerSpec, VQTokenizer, halvings_to_bound
from seriesforge.processes.vdm import CosineVDM
from seriesforge.protocols import LossOutput, Preset

SCALER_CHUNK = 256  # series per encoder pass when fitting the latent scalers


def tokenizer_spec(cfg: TimeVQVDMConfig) -> TokenizerSpec:
    frames = cfg.length + 1  # W0 with hop 1 (the thesis's change)
    n_down = tuple(halvings_to_bound(frames, upper) for upper in cfg.width_bounds)
    return TokenizerSpec(length=cfg.length, channels=cfg.channels, n_fft=cfg.n_fft, hop=cfg.hop, window="rect",
                         normalized=False, band_cut=cfg.band_cut, arch="conv", width=cfg.width,
                         num_res_blocks=cfg.num_res_blocks, hidden_dim=cfg.hidden_dim, code_dim=cfg.code_dim,
                         codebook_size=cfg.codebook_size, ema_decay=cfg.ema_decay, commitment=cfg.commitment,
                         n_down=n_down, zero_padded=True, loss="thesis")


class LatentPrior(nn.Module):
    """One band's ε-network: U-Net over (B, C, W') with a FiLM condition from (t, class)."""

    def __init__(self, cfg: TimeVQVDMConfig, channels: int, dim: int, dim_mults: list[int], extra: int) -> None:
        super().__init__()
        self.embed = TimeClassEmbedding(cfg.num_classes, cfg.embed_dim, time_scale=cfg.time_scale)
        self.unet = UNet1D(in_channels=channels, out_channels=channels, dim=dim, dim_mults=dim_mults,
                           cond_dim=self.embed.out_dim, extra_channels=extra)

    def forward(self, z: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(z, self.embed(t, labels), extra)


class TimeVQVDMFamily(UCRFamily):
    """VQ tokenizer + cascaded latent diffusion priors for UCR series, unconditional or class-conditional."""

    name: ClassVar[str] = "timevqvdm"
    Config: ClassVar[type] = TimeVQVDMConfig
    stages: ClassVar[tuple[str, ...]] = ("vqvae", "prior")

    def __init__(self, cfg: TimeVQVDMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = VQTokenizer(tokenizer_spec(cfg))
        self.latent_channels = self.tokenizer.grid["lf"][0] * cfg.code_dim  # C = H·d (both bands: H = F)
        self.priors = nn.ModuleDict({
            "lf": LatentPrior(cfg, self.latent_channels, cfg.unet_dim[0], cfg.lf_dim_mults, 0),
            "hf": LatentPrior(cfg, self.latent_channels, cfg.unet_dim[1], cfg.hf_dim_mults, self.latent_channels)})
        self.process = CosineVDM()
        # S_LF, S_HF: (mean, std) of each band's continuous latents, fitted between the stages (prepare_stage)
        self.register_buffer("latent_stats", torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
        self.stage = self.stages[-1]

    # -- registry hooks --------------------------------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "debug": Preset("debug", "tiny; trains in seconds on CPU (tests)", presets_module.debug),
            "small": Preset("small", "the thesis's networks, the CPU results budget", presets_module.small),
            "thesis": Preset("thesis", "the thesis's networks and epochs (as steps)", presets_module.thesis),
        }

    @classmethod
    def search_space(cls) -> dict[str, dict]:
        return {k: dict(v) for k, v in presets_module.SEARCH_SPACE.items()}

    # -- latents ---------------------------------------------------------------------------------------------
    def _latent(self, x: torch.Tensor, band: str) -> torch.Tensor:
        """x (B, K, L) -> the band's scaled continuous latent (B, C, W')."""
        height, width = self.tokenizer.grid[band]
        z = self.tokenizer.encode_band(x, band).z  # (B, H·W', d)
        z = z.reshape(len(z), height, width, -1).permute(0, 1, 3, 2).reshape(len(z), -1, width)  # (B, H·d, W')
        mean, std = self.latent_stats[BANDS.index(band)]
        return (z - mean) / std

    def _codes(self, latent: torch.Tensor, band: str) -> torch.Tensor:
        """Scaled latent (B, C, W') -> unscaled tokens (B, H·W', d) -> nearest stage-1 codes (B, H·W')."""
        height, width = self.tokenizer.grid[band]
        mean, std = self.latent_stats[BANDS.index(band)]
        z = (latent * std + mean).reshape(len(latent), height, -1, width).permute(0, 1, 3, 2)  # (B, H, W', d)
        return self.tokenizer.quantizers[band].nearest(z.reshape(len(latent), height * width, -1))

    def _lf_condition(self, z_lf: torch.Tensor) -> torch.Tensor:
        """(B, C, W'_LF) -> (B, C, W'_HF): nearest x ceil(W_HF / W_LF), then linear to W'_HF exactly."""
        width_hf = self.tokenizer.grid["hf"][1]
        factor = max(1, math.ceil(width_hf / z_lf.shape[-1]))
        up = F.interpolate(z_lf, scale_factor=factor, mode="nearest")
        return F.interpolate(up, size=width_hf, mode="linear", align_corners=False)

    def prepare_stage(self, stage: str, reference, *, seed: int) -> dict[str, float]:
        """Before the priors train: fit S_LF and S_HF on the training sample's continuous latents."""
        if stage != "prior":
            return {}
        if reference is None:
            raise ConfigError("timevqvdm: fitting the latent scalers needs training series (a ucr: SPEC)")
        x = torch.tensor(np.array(reference), dtype=torch.float32).transpose(1, 2)  # (N, K, L)
        was_training = self.training
        self.eval()
        stats, found = [], {}
        with torch.no_grad():
            for band in BANDS:
                z = torch.cat([self.tokenizer.encode_band(x[i:i + SCALER_CHUNK], band).z
                               for i in range(0, len(x), SCALER_CHUNK)])
                stats.append([float(z.mean()), float(z.std().clamp_min(1e-6))])
                found.update({f"{band}_latent_mean": stats[-1][0], f"{band}_latent_std": stats[-1][1]})
        self.latent_stats.copy_(torch.tensor(stats))
        self.train(was_training)
        return found

    # -- training --------------------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> list[nn.Parameter]:
        if stage not in self.stages:
            raise ConfigError(f"stage: {stage!r} is not a timevqvdm stage ({', '.join(self.stages)})")
        self.stage = stage
        return self.train_only(self.tokenizer if stage == "vqvae" else self.priors)

    def forward(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        x = batch["series"].float().transpose(1, 2)  # (B, K, L)
        if self.stage == "vqvae":
            loss, metrics = self.tokenizer(x)
            return LossOutput(loss, metrics)
        self.tokenizer.eval()
        with torch.no_grad():
            z_lf, z_hf = self._latent(x, "lf"), self._latent(x, "hf")
        labels, null = batch["label"].long(), self.cfg.num_classes
        lf = self.process.training_loss(lambda z, t, y: self.priors["lf"](z, t, y), z_lf, labels,
                                        null_label=null, p_uncond=self.cfg.p_uncond)
        cond = self._lf_condition(z_lf)  # the ground-truth LF latent (cascade training)
        hf = self.process.training_loss(lambda z, t, y: self.priors["hf"](z, t, y, cond), z_hf, labels,
                                        null_label=null, p_uncond=self.cfg.p_uncond)
        return LossOutput(lf + hf, {"lf_eps_mse": float(lf.detach()), "hf_eps_mse": float(hf.detach())})

    # -- sampling --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, *, n: int, length: int, condition: Sequence | None = None, steps: int | None = None,
               guidance: float | None = None, generator: torch.Generator | None = None,
               progress=None) -> torch.Tensor:
        """`n` series (n, K, L): class-conditional (32 steps, w = 3) with `condition` = n labels, else unconditional
        (the null class, 128 steps)."""
        check_window_request(self.cfg, length, None, name="timevqvdm")
        device = next(self.parameters()).device
        labels, conditional = self.labels_or_null(condition, n, device)
        steps = steps or (self.cfg.conditional_steps if conditional else self.cfg.sample_steps)
        w = (self.cfg.guidance if guidance is None else float(guidance)) if conditional else 1.0
        common = dict(null_label=self.cfg.num_classes, steps=steps, t_max=self.cfg.t_max, guidance=w,
                      gamma=self.cfg.gamma, generator=generator, device=device, progress=progress)
        width_lf, width_hf = self.tokenizer.grid["lf"][1], self.tokenizer.grid["hf"][1]
        z_lf = self.process.sample(lambda z, t, y: self.priors["lf"](z, t, y), (n, self.latent_channels, width_lf),
                                   labels, **common)
        cond = self._lf_condition(z_lf)
        # the sampler may stack the null and the class branch of guidance into one batch of 2n: repeat the LF condition
        z_hf = self.process.sample(lambda z, t, y: self.priors["hf"](z, t, y, cond.repeat(len(z) // n, 1, 1)),
                                   (n, self.latent_channels, width_hf), labels, **common)
        codes = {"lf": self._codes(z_lf, "lf"), "hf": self._codes(z_hf, "hf")}
        return self.tokenizer.decode_tokens(codes)  # (n, K, L)
