"""T2S as a seriesforge family: stage 1 the length-adaptive autoencoder, stage 2 the DiT with rectified flow.

Shape legend: B batch · L length · C latent channels · P latent positions · E text-embedding width.

    series (B, L) --autoencoder.encode--> z (B, C, P)      same (C, P) for every L: one DiT serves all lengths
    caption --sentence encoder--> (B, E) --denoiser.caption_proj--> condition
    noise (B, C, P) --rectified flow ODE (CFG)--> z --autoencoder.decode(z, L)--> (B, L), any L

The text encoder is frozen and kept outside the module's state dict: training reads caption embeddings the
data pipeline precomputed once; sampling loads the same encoder (one per process) to embed new captions.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
from torch import nn

from seriesforge.config import RunConfig
from seriesforge.errors import ConfigError, RequestError
from seriesforge.families.base import FamilyModule
from seriesforge.families.t2s import config as presets_module
from seriesforge.families.t2s.config import T2SConfig
from seriesforge.families.t2s.model import LengthAdaptiveAutoencoder, T2SDenoiser
from seriesforge.processes.flow_matching import RectifiedFlow, classifier_free_guidance
from seriesforge.protocols import DataNeeds, LossOutput, Preset


class T2SFamily(FamilyModule):
    """Text-to-series: length-adaptive autoencoder + DiT denoiser trained by flow matching."""

    name: ClassVar[str] = "t2s"
    Config: ClassVar[type] = T2SConfig
    stages: ClassVar[tuple[str, ...]] = ("autoencoder", "denoiser")
    conditions: ClassVar[str] = "caption"

    def __init__(self, cfg: T2SConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.autoencoder = LengthAdaptiveAutoencoder(
            hidden=cfg.hidden, latent_channels=cfg.latent_channels, latent_positions=cfg.latent_positions,
            num_res_layers=cfg.num_res_layers, res_hidden=cfg.res_hidden)
        self.denoiser = T2SDenoiser(
            latent_channels=cfg.latent_channels, latent_positions=cfg.latent_positions, dim=cfg.dim,
            depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, patch=cfg.patch,
            text_dim=cfg.text_dim)
        self.flow = RectifiedFlow(t_grid=cfg.t_grid)
        self.stage = self.stages[-1]
        # Latent normaliser (our addition; the code feeds raw latents to the flow): scalar mean/std of z, tracked
        # by EMA while the autoencoder trains, so the flow maps N(0, I) to unit-scale latents. Raw latents have a
        # std near 0.2 here, which makes small velocity errors large after decoding. Saved with the weights.
        self.register_buffer("latent_mean", torch.zeros(()))
        self.register_buffer("latent_std", torch.ones(()))

    # -- registry hooks --------------------------------------------------------------------------------------
    @classmethod
    def search_space(cls) -> dict[str, dict]:
        """The default `seriesforge tune` space; a user's --space YAML overrides it key by key."""
        return {k: dict(v) for k, v in presets_module.SEARCH_SPACE.items()}

    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "debug": Preset("debug", "tiny; trains in seconds on CPU (tests)", presets_module.debug),
            "small": Preset("small", "reduced width, the paper's lengths; the demo", presets_module.small),
            "paper": Preset("paper", "the released code's sizes and budgets", presets_module.paper),
        }

    @classmethod
    def data_needs(cls, cfg: T2SConfig) -> DataNeeds:
        return DataNeeds(text_encoder=cfg.text_encoder, kinds=("captions",))

    @classmethod
    def max_length(cls, cfg: T2SConfig) -> int:
        return cfg.max_length

    @classmethod
    def example_batch(cls, cfg: T2SConfig, *, batch_size: int, length: int,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A random batch of the shapes training feeds: series (B, L) in [0, 1], caption_embedding (B, E)."""
        series = torch.rand((batch_size, length), generator=generator)
        text = torch.nn.functional.normalize(torch.randn((batch_size, cfg.text_dim), generator=generator), dim=-1)
        return {"series": series, "caption_embedding": text}

    @classmethod
    def validate(cls, run: RunConfig) -> None:
        """Cross-section rules: every trained length must be decodable and within max_length."""
        for n in run.data.lengths:
            if n < 4 or n > run.model.max_length:
                raise ConfigError(f"data.lengths: {n} is outside [4, model.max_length={run.model.max_length}]")

    # -- training --------------------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> list[nn.Parameter]:
        if stage not in self.stages:
            raise ConfigError(f"stage: {stage!r} is not a T2S stage ({', '.join(self.stages)})")
        self.stage = stage
        return self.train_only(self.autoencoder if stage == "autoencoder" else self.denoiser)

    def forward(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        x = batch["series"]  # (B, L)
        if self.stage == "autoencoder":
            loss, metrics = self.autoencoder.forward_loss(x)
            if self.training and self.cfg.normalize_latent:
                self._track_latent_stats(x)
            return LossOutput(loss, metrics)
        with torch.no_grad():
            z = self._to_flow_space(self.autoencoder.encode(x)[0])  # (B, C, P)
        text = batch["caption_embedding"]  # (B, E)
        if self.training and torch.rand(()) < self.cfg.cfg_dropout:
            text = torch.zeros_like(text)  # whole batch -> null caption, as the code does
        loss = self.flow.training_loss(lambda zt, t: self.denoiser(zt, t, text), z)
        return LossOutput(loss, {"flow_loss": float(loss.detach())})

    @torch.no_grad()
    def _track_latent_stats(self, x: torch.Tensor, momentum: float = 0.02) -> None:
        z, _ = self.autoencoder.encode(x)  # (B, C, P)
        self.latent_mean.lerp_(z.mean().to(self.latent_mean.dtype), momentum)
        self.latent_std.lerp_(z.std().clamp_min(1e-4).to(self.latent_std.dtype), momentum)

    def _to_flow_space(self, z: torch.Tensor) -> torch.Tensor:
        if not self.cfg.normalize_latent:
            return z
        return (z - self.latent_mean) / self.latent_std

    def _from_flow_space(self, z: torch.Tensor) -> torch.Tensor:
        if not self.cfg.normalize_latent:
            return z
        return z * self.latent_std + self.latent_mean

    # -- sampling --------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, *, n: int, length: int, condition: Sequence[str] | None = None, steps: int | None = None,
               guidance: float | None = None, generator: torch.Generator | None = None,
               progress=None) -> torch.Tensor:
        """`n` series of `length` points, (n, 1, L), in per-series [0, 1] units. condition: n captions or None."""
        if length < 4 or length > self.cfg.max_length:
            raise RequestError(f"length: {length} is outside [4, {self.cfg.max_length}] (model.max_length)")
        device = next(self.parameters()).device
        text = self._embed(condition, n, device)  # (n, E) or None
        steps = steps or self.cfg.sample_steps
        scale = self.cfg.guidance if guidance is None else guidance
        # Drawn on the generator's device (generate.py seeds a CPU one), then moved: on a GPU replica a CPU
        # generator cannot draw CUDA tensors, and a seed gives the same noise on either device.
        draw_device = generator.device if generator is not None else device
        noise = torch.randn((n, self.cfg.latent_channels, self.cfg.latent_positions), generator=generator,
                            device=draw_device).to(device)  # (n, C, P)
        velocity = self._velocity(text, scale, n, device)
        z = self._from_flow_space(self.flow.sample(velocity, noise, steps=steps, method=self.cfg.sampler,
                                                   progress=progress))
        return self.autoencoder.decode(z, length)[:, None, :]  # (n, 1, L)

    def _embed(self, captions: Sequence[str] | None, n: int, device: torch.device) -> torch.Tensor | None:
        if captions is None:
            return None
        if len(captions) != n:
            raise RequestError(f"captions: got {len(captions)} captions for n={n}")
        from seriesforge.nn.text_encoder import load_encoder

        encoder = load_encoder(self.cfg.text_encoder)
        if encoder.dim != self.cfg.text_dim:
            raise ConfigError(f"model.text_dim={self.cfg.text_dim} but {self.cfg.text_encoder} gives {encoder.dim}")
        return torch.from_numpy(encoder.encode(list(captions))).to(device)

    def _velocity(self, text: torch.Tensor | None, scale: float, n: int, device: torch.device):
        null = torch.zeros((n, self.cfg.text_dim), device=device)

        def velocity(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            t = torch.as_tensor(t, dtype=z.dtype, device=device).expand(n)  # (n,)
            if text is None:
                return self.denoiser(z, t, null)
            if scale == 1.0:
                return self.denoiser(z, t, text)
            both = self.denoiser(torch.cat([z, z]), torch.cat([t, t]), torch.cat([text, null]))
            v_cond, v_null = both.chunk(2)
            return classifier_free_guidance(v_cond, v_null, scale)

        return velocity
