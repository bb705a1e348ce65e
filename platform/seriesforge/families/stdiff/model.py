"""ST-Diff denoiser ε_θ (models.md §4 "Denoiser"): a DiT over STFT videos with tri-axial factorised attention.

Shape legend: B batch · T video frames · F frequency bins · K covariates · p_f bins per patch · F′ = ceil(F / p_f)
frequency patches · F_p = F′·p_f zero-padded bins · N = T·F′·K tokens · D width · H heads · D_h = D / H.

Video (B, T, 3, F, K) → anisotropic patches (p_f bins × 1 covariate × 3 channels, never across covariates) →
tokens (B, T, F′, K, D) + learnable covariate vectors (K, D). Each STDiff block runs four adaLN-Zero residual
sub-layers in the paper's order:
    temporal attention   sequences of length T  (batch B·F′·K), RoPE over the frame index m
    frequency attention  sequences of length F′ (batch B·T·K),  RoPE over the patch index f′, logits + B_F (F′, F′)
    covariate attention  sequences of length K  (batch B·T·F′), no positions (covariates are unordered), logits + B_C
    MLP                  ratio 4, GELU
B_C = (P + Pᵀ)/2 is symmetric by construction; one B_F and one B_C per block, shared by the heads, initialised from
data with ``load_bias_init`` (video.covariate_correlation / video.frequency_log_magnitude_covariance).

Timestep: seriesforge.nn.embeddings.timestep_embedding(n / 1000, 256, scale=1000) — i.e. sinusoids of the integer
step index n with wavelengths 1 … 10000 (DiT's frequencies, T2S's sin-then-cos layout) — then Linear-SiLU-Linear to
c (B, D). With adaLN-Zero and a zero final projection the network outputs exactly 0 at initialisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seriesforge.families.stdiff.video import num_frequency_patches
from seriesforge.nn.dit import FinalLayer, Mlp, _xavier_init, _zero_init, modulate
from seriesforge.nn.embeddings import timestep_embedding

__all__ = ["STDiffDenoiser", "STDiffBlock", "AxisAttention", "apply_rotary"]

TIME_FREQ_DIM = 256   # width of the sinusoidal timestep features (DiT's frequency_embedding_size)
NUM_DIFFUSION_STEPS = 1000
ROPE_BASE = 10000.0


# ---------------------------------------------------------------------------------------------------------------
# Rotary position embedding
# ---------------------------------------------------------------------------------------------------------------


def apply_rotary(x: Tensor, base: float = ROPE_BASE) -> Tensor:
    """Rotate feature pairs (i, i + D_h/2) of x (S, H, N, D_h) by angle n · base^(−2i/D_h) for position n = 0…N−1.

    Applied to queries and keys, their dot product then depends on positions only through the offset (Su et al.):
    no table, so any sequence length works. "Rotate-half" pairing (GPT-NeoX layout). Computed in float32.
    """
    n, head_dim = x.shape[-2], x.shape[-1]
    half = head_dim // 2
    inv_freq = base ** (-torch.arange(half, dtype=torch.float32, device=x.device) / half)       # (D_h/2,)
    angle = torch.arange(n, dtype=torch.float32, device=x.device)[:, None] * inv_freq[None, :]  # (N, D_h/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]                                                     # 2 × (S, H, N, D_h/2)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


# ---------------------------------------------------------------------------------------------------------------
# Attention along one axis
# ---------------------------------------------------------------------------------------------------------------


class AxisAttention(nn.Module):
    """Multi-head self-attention over one axis, with optional RoPE and an additive (N, N) logit bias."""

    def __init__(self, dim: int, num_heads: int, rotary: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"AxisAttention: dim={dim} must be divisible by num_heads={num_heads}")
        if rotary and (dim // num_heads) % 2:
            raise ValueError(f"AxisAttention: RoPE needs an even head width, got dim/num_heads={dim // num_heads}")
        self.num_heads = num_heads
        self.rotary = rotary
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        """x (S, N, D) sequences of N tokens; bias (N, N) added to every head's logits. Returns (S, N, D)."""
        s, n, d = x.shape
        qkv = self.qkv(x).reshape(s, n, 3, self.num_heads, d // self.num_heads)  # (S, N, 3, H, D_h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                           # 3 × (S, H, N, D_h)
        if self.rotary:
            q, k = apply_rotary(q), apply_rotary(k)
        mask = None if bias is None else bias.to(q.dtype)                        # (N, N) broadcast over S, H
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)            # (S, H, N, D_h)
        return self.proj(out.transpose(1, 2).reshape(s, n, d))                   # (S, N, D)


def _along_axis(h: Tensor, axis: int, attn: AxisAttention, bias: Tensor | None) -> Tensor:
    """Attend along ``axis`` (1 = T, 2 = F′, 3 = K) of h (B, T, F′, K, D); every other axis is batch."""
    moved = h.movedim(axis, -2)                                                  # (B, ·, ·, N_axis, D)
    shape = moved.shape
    out = attn(moved.reshape(-1, shape[-2], shape[-1]), bias)                    # (B·rest, N_axis, D)
    return out.reshape(shape).movedim(-2, axis)                                  # (B, T, F′, K, D)


# ---------------------------------------------------------------------------------------------------------------
# Block
# ---------------------------------------------------------------------------------------------------------------


class STDiffBlock(nn.Module):
    """Four adaLN-Zero residual sub-layers: temporal attn, frequency attn + B_F, covariate attn + B_C, MLP."""

    SUBLAYERS = 4

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, frequency_patches: int, covariates: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6) for _ in range(4))
        self.temporal_attn = AxisAttention(dim, num_heads, rotary=True)
        self.frequency_attn = AxisAttention(dim, num_heads, rotary=True)
        self.covariate_attn = AxisAttention(dim, num_heads, rotary=False)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # Biases start at 0 (plain attention) until load_bias_init puts the data-derived values in.
        self.frequency_bias = nn.Parameter(torch.zeros(frequency_patches, frequency_patches))  # B_F (F′, F′)
        self.covariate_bias_raw = nn.Parameter(torch.zeros(covariates, covariates))            # P, B_C = (P + Pᵀ)/2
        # (shift, scale, gate) × 4 sub-layers from c; zero so that every gate is 0 and the block starts as identity.
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * self.SUBLAYERS * dim))
        _xavier_init(self)
        _zero_init(self.adaLN_modulation[-1])

    @property
    def covariate_bias(self) -> Tensor:
        """B_C (K, K), symmetric by construction."""
        return 0.5 * (self.covariate_bias_raw + self.covariate_bias_raw.T)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x (B, T, F′, K, D) tokens, c (B, D) condition -> (B, T, F′, K, D); equal to x at initialisation."""
        b, d = x.shape[0], x.shape[-1]
        mods = self.adaLN_modulation(c).chunk(3 * self.SUBLAYERS, dim=1)       # 12 × (B, D)
        sublayers = (
            lambda h: _along_axis(h, 1, self.temporal_attn, None),
            lambda h: _along_axis(h, 2, self.frequency_attn, self.frequency_bias),
            lambda h: _along_axis(h, 3, self.covariate_attn, self.covariate_bias),
            self.mlp,
        )
        for i, (norm, sublayer) in enumerate(zip(self.norms, sublayers)):
            shift, scale, gate = mods[3 * i: 3 * i + 3]
            h = modulate(norm(x).reshape(b, -1, d), shift, scale).reshape(x.shape)  # (B, T, F′, K, D)
            x = x + gate[:, None, None, None, :] * sublayer(h)
        return x


# ---------------------------------------------------------------------------------------------------------------
# Denoiser
# ---------------------------------------------------------------------------------------------------------------


class STDiffDenoiser(nn.Module):
    """ε̂ = ε_θ(V_n, n): video (B, T, 3, F, K) and step indices n (B,) in 0…999 -> (B, T, 3, F, K)."""

    def __init__(self, *, frames: int, bins: int, covariates: int, patch_f: int, dim: int, depth: int,
                 num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.frames, self.bins, self.covariates, self.patch_f = frames, bins, covariates, patch_f
        self.frequency_patches = num_frequency_patches(bins, patch_f)
        self.patch_embed = nn.Linear(3 * patch_f, dim)
        self.covariate_embed = nn.Parameter(torch.zeros(covariates, dim))          # (K, D)
        self.t_embedder = nn.Sequential(nn.Linear(TIME_FREQ_DIM, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.blocks = nn.ModuleList(
            STDiffBlock(dim, num_heads, mlp_ratio, self.frequency_patches, covariates) for _ in range(depth))
        self.final_layer = FinalLayer(dim, 3 * patch_f)
        self._init_weights()

    def _init_weights(self) -> None:
        # DiT's recipe: Xavier everywhere, N(0, 0.02) for the timestep MLP and learned position vectors, then the
        # adaLN heads and the output projection back to zero (the sub-modules zeroed them, Xavier undid it).
        _xavier_init(self)
        nn.init.normal_(self.covariate_embed, std=0.02)
        for layer in (self.t_embedder[0], self.t_embedder[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:
            _zero_init(block.adaLN_modulation[-1])
        _zero_init(self.final_layer.adaLN_modulation[-1])
        _zero_init(self.final_layer.linear)

    @property
    def num_tokens(self) -> int:
        """N = T · F′ · K."""
        return self.frames * self.frequency_patches * self.covariates

    # ----- patches ---------------------------------------------------------------------------------------------

    def patchify(self, v: Tensor) -> Tensor:
        """(B, T, 3, F, K) -> tokens (B, T, F′, K, D); F is zero-padded to F′·p_f."""
        b, t, _, f, k = v.shape
        x = v.permute(0, 1, 4, 2, 3)                                                 # (B, T, K, 3, F)
        x = F.pad(x, (0, self.frequency_patches * self.patch_f - f))                # (B, T, K, 3, F_p)
        x = x.reshape(b, t, k, 3, self.frequency_patches, self.patch_f)             # (B, T, K, 3, F′, p_f)
        x = x.permute(0, 1, 4, 2, 3, 5).reshape(b, t, self.frequency_patches, k, 3 * self.patch_f)
        return self.patch_embed(x) + self.covariate_embed                            # (B, T, F′, K, D)

    def unpatchify(self, x: Tensor) -> Tensor:
        """(B, T, F′, K, 3·p_f) -> (B, T, 3, F, K); the padded bins are cropped."""
        b, t, fp, k, _ = x.shape
        x = x.reshape(b, t, fp, k, 3, self.patch_f).permute(0, 1, 4, 2, 5, 3)       # (B, T, 3, F′, p_f, K)
        return x.reshape(b, t, 3, fp * self.patch_f, k)[:, :, :, : self.bins]        # (B, T, 3, F, K)

    # ----- forward ---------------------------------------------------------------------------------------------

    def forward(self, v: Tensor, t: Tensor) -> Tensor:
        """v (B, T, 3, F, K) noisy standardised video, t (B,) step indices 0…999 -> ε̂ (B, T, 3, F, K)."""
        expected = (self.frames, 3, self.bins, self.covariates)
        if v.dim() != 5 or tuple(v.shape[1:]) != expected:
            raise ValueError(f"STDiffDenoiser: v must be (B, {', '.join(map(str, expected))}), got {tuple(v.shape)}")
        if t.shape != (v.shape[0],):
            raise ValueError(f"STDiffDenoiser: t must be (B,) = ({v.shape[0]},), got {tuple(t.shape)}")
        t_freq = timestep_embedding(t.float() / NUM_DIFFUSION_STEPS, TIME_FREQ_DIM, scale=float(NUM_DIFFUSION_STEPS))
        c = self.t_embedder(t_freq.to(v.dtype))                                      # (B, D)
        x = self.patchify(v)                                                         # (B, T, F′, K, D)
        for block in self.blocks:
            x = block(x, c)
        b, t_, fp, k, d = x.shape
        out = self.final_layer(x.reshape(b, -1, d), c)                               # (B, N, 3·p_f)
        return self.unpatchify(out.reshape(b, t_, fp, k, -1))

    # ----- data-derived bias inits -----------------------------------------------------------------------------

    def bias_state(self, covariate_bias: Tensor, frequency_bias: Tensor) -> dict[str, Tensor]:
        """State-dict entries (keys relative to this module) that set every block's B_C and B_F.

        covariate_bias (K, K) is symmetrised first, so each block's B_C = (P + Pᵀ)/2 equals it exactly when it is
        symmetric (a Pearson matrix is). Keys: ``blocks.{i}.covariate_bias_raw`` and ``blocks.{i}.frequency_bias``.
        """
        k, fp = self.covariates, self.frequency_patches
        if tuple(covariate_bias.shape) != (k, k):
            raise ValueError(f"bias_state: covariate_bias must be ({k}, {k}), got {tuple(covariate_bias.shape)}")
        if tuple(frequency_bias.shape) != (fp, fp):
            raise ValueError(f"bias_state: frequency_bias must be ({fp}, {fp}) (F′ frequency patches), "
                             f"got {tuple(frequency_bias.shape)}")
        raw = (0.5 * (covariate_bias + covariate_bias.T)).detach().float()
        freq = frequency_bias.detach().float()
        state: dict[str, Tensor] = {}
        for i in range(len(self.blocks)):
            state[f"blocks.{i}.covariate_bias_raw"] = raw.clone()
            state[f"blocks.{i}.frequency_bias"] = freq.clone()
        return state

    def load_bias_init(self, covariate_bias: Tensor, frequency_bias: Tensor) -> None:
        """Set every block's biases in place from ``bias_state``."""
        result = self.load_state_dict(self.bias_state(covariate_bias, frequency_bias), strict=False)
        assert not result.unexpected_keys, result.unexpected_keys
