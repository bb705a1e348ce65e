"""TimeLDM networks (models.md §3, code variant `xuyira/timeldm` @2ec21f1): β-VAE, its loss, adaptive β, latent MLP.

Shape legend: B batch · L series length (time steps) · K channels (covariates) · D token width (D_tok) ·
H attention heads · D_h = D / H head width · F FFN factor · d_in = L·D flattened latent · W denoiser width.

Stage 1 (`TimeLDMVAE`): one D-wide token per time step, no temporal compression, so the latent is (B, L, D).
Stage 2 (`MLPDiffusion`): a plain MLP on the flattened latent (B, L·D); the diffusion process (EDM in the code) and its
preconditioning live elsewhere and only hand this network a float noise label t per sample.

Where the brief left a choice, the code's layout is followed (each is marked "code:" below):
* the encoder's μ and log σ² stacks read the same input, embedding + ONE positional table (the code also builds a
  `pos_log` table but never uses it, so it is not created here);
* the first block of every stack has no LayerNorm before its attention (FT-Transformer/TabSyn "prenormalization":
  the input is a fresh embedding); all later attentions and every FFN are pre-LN; no final LayerNorm;
* the decoder's cross-attention uses the SAME LayerNorm as its self-attention for the query, and its keys/values are
  the RAW latent z (B, L, D), not z's Conv1d embedding nor a normalised z;
* MLPDiffusion swaps the sin/cos halves of EDM's embedding (the code does), i.e. feeds cat(sin, cos).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TimeLDMVAE", "vae_loss", "AdaptiveBeta", "MLPDiffusion", "edm_positional_embedding"]


def _require_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")


# ---------------------------------------------------------------------------------------------------------------
# Stage 1: transformer β-VAE
# ---------------------------------------------------------------------------------------------------------------


class _Attention(nn.Module):
    """Multi-head attention with separate biased q/k/v projections; output projection only when H > 1 (code)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.W_q = nn.Linear(dim, dim)
        self.W_k = nn.Linear(dim, dim)
        self.W_v = nn.Linear(dim, dim)
        # One head already has the full width D; the code adds no mixing layer then.
        self.W_out = nn.Linear(dim, dim) if num_heads > 1 else None
        # code ("kaiming" branch): default Linear weights, zero biases.
        for layer in (self.W_q, self.W_k, self.W_v, self.W_out):
            if layer is not None:
                nn.init.zeros_(layer.bias)

    def _split(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)  # (B, H, N, D_h)

    def forward(self, x_q: Tensor, x_kv: Tensor) -> Tensor:
        """Args: x_q (B, N, D) queries, x_kv (B, M, D) keys/values. Returns (B, N, D)."""
        q, k, v = self._split(self.W_q(x_q)), self._split(self.W_k(x_kv)), self._split(self.W_v(x_kv))
        out = F.scaled_dot_product_attention(q, k, v)                  # (B, H, N, D_h), scale 1/sqrt(D_h)
        out = out.transpose(1, 2).reshape(x_q.shape)                   # (B, N, D)
        return self.W_out(out) if self.W_out is not None else out


class _FeedForward(nn.Module):
    """Token-wise D → F·D → D with ReLU, no dropout."""

    def __init__(self, dim: int, factor: int) -> None:
        super().__init__()
        self.linear0 = nn.Linear(dim, factor * dim)
        self.linear1 = nn.Linear(factor * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, N, D). Returns (B, N, D)."""
        return self.linear1(F.relu(self.linear0(x)))


class _Block(nn.Module):
    """Pre-LN block: [self-attention] (+ [cross-attention] in the decoder) + FFN, each residual.

    code: block 0 has no `norm0` (identity before attention); the cross-attention reuses `norm0` for its query.
    """

    def __init__(self, dim: int, num_heads: int, factor: int, *, first: bool, cross: bool) -> None:
        super().__init__()
        self.norm0 = nn.Identity() if first else nn.LayerNorm(dim)
        self.self_attn = _Attention(dim, num_heads)
        self.cross_attn = _Attention(dim, num_heads) if cross else None
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = _FeedForward(dim, factor)

    def forward(self, x: Tensor, memory: Tensor | None = None) -> Tensor:
        """Args: x (B, L, D); memory (B, L, D) for the decoder's cross-attention. Returns (B, L, D)."""
        h = self.norm0(x)
        x = x + self.self_attn(h, h)                                   # (B, L, D)
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("a decoder block needs memory (the latent z) for its cross-attention")
            x = x + self.cross_attn(self.norm0(x), memory)             # (B, L, D); K, V from raw z
        return x + self.ffn(self.norm1(x))                             # (B, L, D)


class _Stack(nn.Module):
    """num_layers blocks; no final LayerNorm and no output head (the code defines a head but never calls it)."""

    def __init__(self, dim: int, num_heads: int, factor: int, num_layers: int, *, cross: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            _Block(dim, num_heads, factor, first=i == 0, cross=cross) for i in range(num_layers))

    def forward(self, x: Tensor, memory: Tensor | None = None) -> Tensor:
        """Args: x (B, L, D); memory (B, L, D) or None. Returns (B, L, D)."""
        for block in self.blocks:
            x = block(x, memory)
        return x


class _ConvEmbedding(nn.Module):
    """Conv1d(C_in → D, kernel 3, padding 1) over time plus a learnable (1, L, D) table, U(−0.02, 0.02) init."""

    def __init__(self, in_channels: int, dim: int, length: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, dim, kernel_size=3, padding=1)
        self.pos = nn.Parameter(torch.empty(1, length, dim))
        nn.init.uniform_(self.pos, -0.02, 0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, L', C_in) with L' ≤ L. Returns (B, L', D)."""
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)              # (B, L', D)
        return h + self.pos[:, : x.shape[1]]                           # code slices the table to L'


class TimeLDMVAE(nn.Module):
    """Transformer β-VAE: (B, L, K) series ↔ (B, L, D) latent, one token per time step.

    Args:
        length: L, the window length the positional tables cover (shorter inputs use the first rows).
        channels: K, covariates per time step.
        token_dim: D = D_tok, the token and latent width. Must be divisible by ``num_heads`` (each head gets
            D / num_heads dimensions); any D works with one head.
        num_heads: H, attention heads in every attention layer.
        factor: F, the FFN hidden width is F·D.
        num_layers: blocks per stack; the μ stack, the log σ² stack and the decoder each get this many.

    Raises:
        ValueError: naming the offending parameter if one is not a positive integer or token_dim % num_heads ≠ 0.
    """

    def __init__(self, *, length: int, channels: int, token_dim: int, num_heads: int, factor: int,
                 num_layers: int) -> None:
        super().__init__()
        for name, value in (("length", length), ("channels", channels), ("token_dim", token_dim),
                            ("num_heads", num_heads), ("factor", factor), ("num_layers", num_layers)):
            _require_positive_int(name, value)
        if token_dim % num_heads:
            raise ValueError(f"token_dim={token_dim} must be divisible by num_heads={num_heads}")
        self.length, self.channels, self.token_dim = length, channels, token_dim
        # Encoder: one embedding feeds both stacks (code: `pos_mu` is used for both, `pos_log` is dead).
        self.enc_embed = _ConvEmbedding(channels, token_dim, length)
        self.enc_mu = _Stack(token_dim, num_heads, factor, num_layers, cross=False)
        self.enc_logvar = _Stack(token_dim, num_heads, factor, num_layers, cross=False)
        # Decoder: embed z, attend to itself and (cross) to raw z, then project tokens back to K channels.
        self.dec_embed = _ConvEmbedding(token_dim, token_dim, length)
        self.decoder = _Stack(token_dim, num_heads, factor, num_layers, cross=True)
        self.head = nn.Linear(token_dim, channels)

    def _check(self, t: Tensor, width: int, what: str) -> None:
        if t.dim() != 3 or t.shape[2] != width or t.shape[1] > self.length:
            raise ValueError(f"{what} must have shape (B, L<={self.length}, {width}), got {tuple(t.shape)}")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Args: x (B, L, K). Returns (mu, logvar), each (B, L, D)."""
        self._check(x, self.channels, "x")
        h = self.enc_embed(x)                                          # (B, L, D)
        return self.enc_mu(h), self.enc_logvar(h)                      # 2 × (B, L, D)

    @staticmethod
    def reparameterise(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """z = μ + ε·exp(½ logvar), ε ~ N(0, I) drawn from ``generator`` if given. Returns (B, L, D)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + eps * torch.exp(0.5 * logvar)

    def decode(self, z: Tensor) -> Tensor:
        """Args: z (B, L, D). Returns x_hat (B, L, K)."""
        self._check(z, self.token_dim, "z")
        h = self.decoder(self.dec_embed(z), memory=z)                 # (B, L, D)
        return self.head(h)                                            # (B, L, K)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Encode, sample z, decode. Args: x (B, L, K). Returns (x_hat (B, L, K), mu, logvar (B, L, D))."""
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterise(mu, logvar, generator)), mu, logvar


def vae_loss(x: Tensor, x_hat: Tensor, mu: Tensor, logvar: Tensor,
             beta: float | Tensor) -> tuple[Tensor, dict[str, float]]:
    """TimeLDM VAE objective (code `train_vae.py`), computed in float32 (torch.fft has no bf16 kernels).

    loss = l1 + l2 + fft + β·kl with
      l1  = mean |x − x̂|
      l2  = mean (x − x̂)² + mean over (B, L) of (mean_k x − mean_k x̂)²   (the code's "mse_loss")
      fft = (√L / 5) · [mean |Re X − Re X̂| + mean |Im X − Im X̂|],  X = fft(x, dim=time, norm="forward")
      kl  = −½ · mean(1 + logvar − μ² − e^{logvar})                        (mean over B, L, D)

    Args:
        x, x_hat: Series, (B, L, K).
        mu, logvar: Posterior parameters, (B, L, D).
        beta: KL weight.

    Returns:
        (loss scalar tensor, metrics) with float metrics ``recon`` (= l1 + l2 + fft, everything but β·kl), ``kl``,
        ``l1``, ``l2``, ``fft`` (already weighted by √L/5) and ``beta``.
    """
    if x.shape != x_hat.shape or x.dim() != 3:
        raise ValueError(f"x and x_hat must both be (B, L, K), got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    x, x_hat, mu, logvar = x.float(), x_hat.float(), mu.float(), logvar.float()
    length = x.shape[1]
    l1 = F.l1_loss(x_hat, x)
    l2 = F.mse_loss(x_hat, x) + F.mse_loss(x_hat.mean(dim=2), x.mean(dim=2))  # (B, L, K) and per-step means (B, L)
    spec, spec_hat = torch.fft.fft(x, dim=1, norm="forward"), torch.fft.fft(x_hat, dim=1, norm="forward")  # (B, L, K)
    fft = (math.sqrt(length) / 5) * (F.l1_loss(spec_hat.real, spec.real) + F.l1_loss(spec_hat.imag, spec.imag))
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    recon = l1 + l2 + fft
    beta_value = float(beta)
    loss = recon + beta_value * kl
    metrics = {"recon": recon.item(), "kl": kl.item(), "l1": l1.item(), "l2": l2.item(), "fft": fft.item(),
               "beta": beta_value}
    return loss, metrics


class AdaptiveBeta(nn.Module):
    """Adaptive KL weight: β ← max(factor·β, beta_min) after ``patience`` observations without improvement.

    State lives in buffers so it is saved and restored with the owning module's state dict: ``beta`` and ``best``
    (float64, so β = 7e-3 etc. stay exact-ish even when read back; note that a blanket ``module.to(dtype)`` of the
    owner would cast them too) and ``bad_rounds`` (int64).

    An observation improves when ``recon < best − rel_tol·|best|`` with ``rel_tol = 1e-9``: strictly smaller, but
    float noise at the level of rounding does not count as progress (and so does not reset the counter). NaN never
    improves. Unlike the code, whose counter never resets (it decays β at most once per improvement streak, and
    can undershoot β_min), the counter resets after each decay, as models.md §3 specifies.
    """

    REL_TOL = 1e-9

    def __init__(self, *, beta_max: float = 1e-2, beta_min: float = 1e-5, factor: float = 0.7,
                 patience: int = 10) -> None:
        super().__init__()
        if not 0 < beta_min:
            raise ValueError(f"beta_min must be > 0, got beta_min={beta_min}")
        if not beta_min <= beta_max:
            raise ValueError(f"beta_max must be >= beta_min, got beta_max={beta_max}, beta_min={beta_min}")
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got factor={factor}")
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got patience={patience!r}")
        self.beta_min, self.factor, self.patience = float(beta_min), float(factor), patience
        self.register_buffer("beta", torch.tensor(float(beta_max), dtype=torch.float64))
        self.register_buffer("best", torch.tensor(math.inf, dtype=torch.float64))
        self.register_buffer("bad_rounds", torch.tensor(0, dtype=torch.int64))

    @property
    def value(self) -> float:
        """The current β as a Python float."""
        return float(self.beta)

    def _improves(self, recon: float) -> bool:
        best = float(self.best)
        if math.isnan(recon):
            return False
        if math.isinf(best):
            return recon < best
        return recon < best - self.REL_TOL * abs(best)

    def observe(self, recon: float) -> float:
        """Record one round's (validation) reconstruction loss and return the β to use next."""
        recon = float(recon)
        if self._improves(recon):
            self.best.fill_(recon)
            self.bad_rounds.zero_()
        else:
            self.bad_rounds.add_(1)
            if int(self.bad_rounds) >= self.patience:
                self.beta.fill_(max(self.factor * float(self.beta), self.beta_min))
                self.bad_rounds.zero_()
        return self.value


# ---------------------------------------------------------------------------------------------------------------
# Stage 2: latent denoiser
# ---------------------------------------------------------------------------------------------------------------


def edm_positional_embedding(t: Tensor, num_channels: int, max_positions: int = 10000) -> Tensor:
    """EDM `PositionalEmbedding` (endpoint=False) of a float label per sample.

    freqs_i = (1 / max_positions)^(i / (C/2)), i = 0 … C/2 − 1; returns cat(cos(t·freqs), sin(t·freqs)).
    Works for any float t: DDPM step indices 0…999 or EDM c_noise = ln σ / 4.

    Args: t (B,) float; num_channels C, even. Returns (B, C) float32.
    """
    if num_channels <= 0 or num_channels % 2:
        raise ValueError(f"num_channels must be a positive even integer, got num_channels={num_channels}")
    if t.dim() != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = num_channels // 2
    freqs = (1.0 / max_positions) ** (torch.arange(half, dtype=torch.float32, device=t.device) / half)  # (C/2,)
    angle = torch.outer(t.float(), freqs)                              # (B, C/2)
    return torch.cat([angle.cos(), angle.sin()], dim=1)                # (B, C)


class MLPDiffusion(nn.Module):
    """Latent denoiser of the code (`LDMs/model.py`): time-conditioned MLP on the flattened latent.

    h = Linear(d_in → W)(x) + Linear → SiLU → Linear(emb(t)), then W → 2W → 2W → W → d_in with SiLU between.

    Args:
        d_in: flattened latent size L·D.
        width: W (the code's ``dim_t`` / ``LDM_dim``); must be even (sin and cos halves of the embedding).
    """

    def __init__(self, d_in: int, width: int) -> None:
        super().__init__()
        _require_positive_int("d_in", d_in)
        _require_positive_int("width", width)
        if width % 2:
            raise ValueError(f"width must be even (sin/cos halves of the time embedding), got width={width}")
        self.d_in, self.width = d_in, width
        self.proj = nn.Linear(d_in, width)
        self.time_embed = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.SiLU(),
            nn.Linear(2 * width, 2 * width), nn.SiLU(),
            nn.Linear(2 * width, width), nn.SiLU(),
            nn.Linear(width, d_in),
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Args: x (B, d_in) noisy latent; t (B,) float noise label. Returns (B, d_in)."""
        if x.dim() != 2 or x.shape[1] != self.d_in:
            raise ValueError(f"x must have shape (B, {self.d_in}), got {tuple(x.shape)}")
        emb = edm_positional_embedding(t, self.width).to(x.dtype)     # (B, W) = cat(cos, sin)
        emb = torch.cat(emb.chunk(2, dim=1)[::-1], dim=1)              # code: swap halves → cat(sin, cos)
        return self.mlp(self.proj(x) + self.time_embed(emb))           # (B, d_in)
