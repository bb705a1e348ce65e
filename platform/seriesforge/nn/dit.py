"""Diffusion-Transformer pieces (Peebles & Xie 2023) shared by the token-based denoisers of several families.

Shape legend: B batch · N tokens · D width · H attention heads · D_h = D / H head width.

A block reads tokens x (B, N, D) and one condition vector c (B, D) per sample (e.g. time + caption embedding). The
condition enters only through adaptive LayerNorm (adaLN): a SiLU → Linear head maps c to per-channel shift, scale
and gate vectors. "adaLN-Zero" initialises that head to zero, so every gate is 0 and every block starts as the
identity map; together with a zero-initialised output layer the whole network starts by predicting 0, which the
DiT paper found trains fastest and most stably.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["modulate", "SelfAttention", "Mlp", "DiTBlock", "FinalLayer"]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """Apply a per-sample affine modulation to token features.

    ``1 + scale`` (not ``scale``) so that a zero modulation vector leaves the normalised input unchanged.

    Args:
        x: Tokens, shape (B, N, D).
        shift: Per-sample shift, shape (B, D).
        scale: Per-sample scale offset, shape (B, D).

    Returns:
        Tensor of shape (B, N, D).
    """
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


# ---------------------------------------------------------------------------------------------------------------
# Initialisation: the one place where weights are zeroed.
# ---------------------------------------------------------------------------------------------------------------


def _xavier_init(module: nn.Module) -> None:
    # DiT's default for every Linear: Xavier-uniform weights, zero bias.
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _zero_init(layer: nn.Linear) -> None:
    # adaLN-Zero: a zero modulation head makes every gate 0, so a block is the identity at init and the network's
    # depth is "switched on" gradually by training; a zero output projection makes the whole net predict 0.
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


# ---------------------------------------------------------------------------------------------------------------
# Sub-layers
# ---------------------------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention with a biased fused qkv projection (timm ``Attention`` layout)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"SelfAttention: dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Attend over all N tokens.

        Args:
            x: Tokens, shape (B, N, D).

        Returns:
            Tensor of shape (B, N, D).
        """
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)  # (B, N, 3, H, D_h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                           # 3 × (B, H, N, D_h)
        # SDPA picks a fused kernel (flash / memory-efficient) where available; scale defaults to 1/sqrt(D_h).
        out = F.scaled_dot_product_attention(q, k, v)                              # (B, H, N, D_h)
        out = out.transpose(1, 2).reshape(b, n, d)                                 # (B, N, D)
        return self.proj(out)


class Mlp(nn.Module):
    """Two-layer token-wise MLP with tanh-approximated GELU (as DiT and T2S)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, N, D). Returns: (B, N, D)."""
        return self.fc2(self.act(self.fc1(x)))


# ---------------------------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------------------------


class DiTBlock(nn.Module):
    """Pre-norm transformer block conditioned by adaLN-Zero (6 modulation vectors from c)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        # No affine parameters: the per-sample shift/scale from c replace them.
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        _xavier_init(self)
        _zero_init(self.adaLN_modulation[-1])

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Apply attention and MLP, each modulated and gated by the condition.

        Args:
            x: Tokens, shape (B, N, D).
            c: Condition vector, shape (B, D).

        Returns:
            Tensor of shape (B, N, D); equal to ``x`` at initialisation.
        """
        mod = self.adaLN_modulation(c)                                             # (B, 6D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=1)  # 6 × (B, D)
        x = x + gate_msa[:, None, :] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (B, N, D)
        x = x + gate_mlp[:, None, :] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))   # (B, N, D)
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm followed by a token-wise Linear to the output (patch) width."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_dim)
        _xavier_init(self)
        _zero_init(self.adaLN_modulation[-1])
        _zero_init(self.linear)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """Project tokens to the output width.

        Args:
            x: Tokens, shape (B, N, D).
            c: Condition vector, shape (B, D).

        Returns:
            Tensor of shape (B, N, out_dim); all zeros at initialisation.
        """
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)                    # 2 × (B, D)
        return self.linear(modulate(self.norm(x), shift, scale))                   # (B, N, out_dim)
