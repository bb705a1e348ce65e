"""TimeVQVAE + NM as a seriesforge family: stage `vqvae` the STFT tokenizer, stage `prior` two MaskGIT priors (LF,
then HF conditioned on LF; class-conditional with a null class), stage `mapper` the NM neural mapper.

Shape legend: B batch · K channels (UCR: 1) · L length · N_LF, N_HF tokens per band · V codebook size.

    series (B, L, K) z-scored --transpose--> x (B, K, L)
    vqvae:  tokenizer loss (time-domain band losses + commitment)
    prior:  codes (B, N_LF), (B, N_HF) from the frozen tokenizer --random_mask--> masked CE, LF + HF summed
    mapper: x̃' = D(SVQ_τ(E(x))) from the frozen tokenizer --U-Net--> L1 to x (τ from the search in prepare_stage)
    sample: iterative decoding LF (choice temp 10) -> HF given LF (temp 0) -> decode -> [mapper when refine]
Output is in the dataset's standardised units (the training data's z-score), (n, K, L).
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seriesforge.errors import ConfigError, RequestError
from seriesforge.families.base import UCRFamily, check_window_request
from seriesforge.families.timevqvae import config as presets_module
from seriesforge.families.timevqvae.config import TimeVQVAEConfig
from seriesforge.nn.maskgit_transformer import BidirectionalTransformer
from seriesforge.nn.unet1d import UNet1D
from seriesforge.nn.vq_tokenizer import BANDS, TokenizerSpec, VQTokenizer, halvings_code, halvings_paper
from seriesforge.processes import maskgit
from seriesforge.protocols import LossOutput, Preset


def tokenizer_spec(cfg: TimeVQVAEConfig) -> TokenizerSpec:
    if cfg.variant == "paper":
        n_down = tuple(halvings_paper(cfg.length, w) for w in cfg.downsample_widths)
    else:
        n_down = tuple(halvings_code(cfg.length, cfg.n_fft, w) for w in cfg.downsample_widths)
    return TokenizerSpec(length=cfg.length, channels=cfg.channels, n_fft=cfg.n_fft, hop=cfg.hop, window=cfg.window,
                         normalized=cfg.normalized, band_cut=cfg.band_cut, arch=cfg.arch, width=cfg.width,
                         num_res_blocks=cfg.num_res_blocks, hidden_dim=cfg.hidden_dim, code_dim=cfg.code_dim,
                         codebook_size=cfg.codebook_size, ema_decay=cfg.ema_decay, commitment=cfg.commitment,
                         n_down=n_down, zero_padded=cfg.zero_padded, dropout=cfg.dropout, loss=cfg.tokenizer_loss)


class TimeVQVAEFamily(UCRFamily):
    """VQ tokenizer + bidirectional priors (+ NM refiner) for univariate or multichannel UCR series."""

    name: ClassVar[str] = "timevqvae"
    Config: ClassVar[type] = TimeVQVAEConfig
    stages: ClassVar[tuple[str, ...]] = ("vqvae", "prior", "mapper")
    sampling_stage: ClassVar[str] = "prior"  # the mapper only refines

    def __init__(self, cfg: TimeVQVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokenizer = VQTokenizer(tokenizer_spec(cfg))
        n_lf, n_hf = (self.tokenizer.num_tokens(b) for b in BANDS)
        common = dict(num_codes=cfg.codebook_size, num_classes=cfg.num_classes, ff_mult=cfg.prior_ff_mult,
                      dropout=cfg.prior_dropout)
        self.priors = nn.ModuleDict({
            "lf": BidirectionalTransformer(num_tokens=n_lf, dim=cfg.prior_dim[0], depth=cfg.prior_depth[0],
                                           heads=cfg.prior_heads[0], **common),
            "hf": BidirectionalTransformer(num_tokens=n_hf, dim=cfg.prior_dim[1], depth=cfg.prior_depth[1],
                                           heads=cfg.prior_heads[1], cond_tokens=n_lf, **common)})
        self.mapper = UNet1D(in_channels=cfg.channels, out_channels=cfg.channels, dim=cfg.mapper_dim,
                             dim_mults=cfg.mapper_dim_mults, activation="snake", dropout=cfg.mapper_dropout,
                             replicate_head=True)
        # NM's τ*, set by the search before the mapper trains (1.0, the paper's τ* on FordA, until then)
        self.register_buffer("tau", torch.ones(()))
        self.register_buffer("tau_searched", torch.zeros((), dtype=torch.bool))
        self.register_buffer("mapper_steps", torch.zeros((), dtype=torch.int64))  # > 0: `refine` is available
        self.stage = self.stages[-1]

    # -- registry hooks --------------------------------------------------------------------------------------
    @classmethod
    def presets(cls) -> dict[str, Preset]:
        return {
            "debug": Preset("debug", "tiny; trains in seconds on CPU (tests)", presets_module.debug),
            "small": Preset("small", "the code's networks, the CPU results budget", presets_module.small),
            "code": Preset("code", "code@6e04f69 networks and budgets (20k/40k, NM 30k steps)", presets_module.code),
            "paper": Preset("paper", "the AISTATS variant (841ab99)", presets_module.paper),
        }

    @classmethod
    def search_space(cls) -> dict[str, dict]:
        return {k: dict(v) for k, v in presets_module.SEARCH_SPACE.items()}

    @property
    def can_refine(self) -> bool:
        return int(self.mapper_steps) > 0

    # -- training --------------------------------------------------------------------------------------------
    def set_stage(self, stage: str) -> list[nn.Parameter]:
        if stage not in self.stages:
            raise ConfigError(f"stage: {stage!r} is not a timevqvae stage ({', '.join(self.stages)})")
        self.stage = stage
        return self.train_only({"vqvae": self.tokenizer, "prior": self.priors, "mapper": self.mapper}[stage])

    def forward(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        x = batch["series"].float().transpose(1, 2)  # (B, K, L)
        if self.stage == "vqvae":
            loss, metrics = self.tokenizer(x)
            return LossOutput(loss, metrics)
        self.tokenizer.eval()  # frozen: BatchNorm statistics and codebooks stay as stage 1 left them
        if self.stage == "prior":
            return self._prior_loss(x, batch["label"].long())
        with torch.no_grad():
            x_tilde = self.tokenizer.stochastic_reconstruction(x, float(self.tau))  # (B, K, L)
        loss = F.l1_loss(self.mapper(x_tilde), x)
        return LossOutput(loss, {"mapper_l1": float(loss.detach()), "input_l1": float(F.l1_loss(x_tilde, x))})

    def _prior_loss(self, x: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        with torch.no_grad():
            codes = self.tokenizer.tokens(x)  # band -> (B, N)
        drop = torch.rand(labels.shape, device=labels.device) < self.cfg.p_uncond
        labels = torch.where(drop, torch.full_like(labels, self.cfg.num_classes), labels)  # class dropout for CFG
        total, metrics = x.new_zeros(()), {}
        for band in BANDS:
            inputs, masked = maskgit.random_mask(codes[band], self.cfg.codebook_size,
                                                 semantics=self.cfg.mask_semantics)
            logits = self.priors[band](inputs, labels, codes["lf"] if band == "hf" else None)  # (B, N, V)
            ce = maskgit.masked_cross_entropy(logits, codes[band], masked)
            total = total + ce
            metrics[f"{band}_ce"] = float(ce.detach())
        return LossOutput(total, metrics)

    def after_step(self) -> None:
        if self.stage == "mapper":
            self.mapper_steps += 1

    def prepare_stage(self, stage: str, reference, *, seed: int) -> dict[str, float]:
        """Before the mapper trains: choose τ (models.md §6) unless a stored checkpoint already holds one."""
        if stage != "mapper" or bool(self.tau_searched):
            return {}
        if reference is None:
            raise ConfigError("timevqvae: the τ search needs training series (a ucr: SPEC)")
        from seriesforge.families.timevqvae.tau_search import search_tau

        was_training = self.training
        self.eval()
        try:
            tau, scores = search_tau(self, np.asarray(reference), seed=seed)
        finally:
            self.train(was_training)
        self.tau.fill_(tau)
        self.tau_searched.fill_(True)
        return {"tau": tau, **{f"fid_tau_{t:g}": v for t, v in scores.items()}}

    # -- sampling --------------------------------------------------------------------------------------------
    def _logits(self, band: str, tokens: torch.Tensor, labels: torch.Tensor, cond: torch.Tensor | None,
                scale: float) -> torch.Tensor:
        """Classifier-free guided logits ℓ_null + s(ℓ_cond - ℓ_null); one pass when s = 1 or all labels are null."""
        prior = self.priors[band]
        logits = prior(tokens, labels, cond)
        if scale == 1.0 or bool((labels == self.cfg.num_classes).all()):
            return logits
        null = prior(tokens, torch.full_like(labels, self.cfg.num_classes), cond)
        return maskgit.guided_logits(logits, null, scale)

    @torch.no_grad()
    def sample(self, *, n: int, length: int, condition: Sequence | None = None, steps: int | None = None,
               guidance: float | None = None, generator: torch.Generator | None = None, progress=None,
               refine: bool = False) -> torch.Tensor:
        """`n` series (n, K, L): class-conditional with `condition` = n labels, else the null class."""
        check_window_request(self.cfg, length, None, name="timevqvae")
        device = next(self.parameters()).device
        labels, _ = self.labels_or_null(condition, n, device)
        scale = self.cfg.guidance if guidance is None else float(guidance)
        codes: dict[str, torch.Tensor] = {}
        for band, temperature in zip(BANDS, self.cfg.choice_temperature):
            cond = codes.get("lf")
            codes[band] = maskgit.iterative_decode(
                lambda tokens, b=band, c=cond: self._logits(b, tokens, labels, c, scale), batch=n,
                num_tokens=self.tokenizer.num_tokens(band), mask_id=self.cfg.codebook_size,
                steps=steps or self.cfg.decode_steps, choice_temperature=temperature, generator=generator,
                device=device)
        x = self.tokenizer.decode_tokens(codes)  # (n, K, L)
        if refine:
            if not self.can_refine:
                raise RequestError("refine: this checkpoint's mapper stage has not trained (stages.mapper.steps=0?)")
            x = self.mapper(x)
        return x
