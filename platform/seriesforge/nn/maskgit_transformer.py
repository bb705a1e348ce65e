"""Bidirectional transformer that predicts masked VQ tokens: TimeVQVAE's stage-2 MaskGIT prior (models.md §5).

Shape legend: B batch · N tokens of the predicted band · M tokens of the conditioning band (``cond_tokens``) ·
D width · H heads · D_h = D / H head width · V = ``num_codes`` (codebook size; id V is the mask token).

One class serves both priors:

* LF prior (``cond_tokens = 0``): tokens (B, N) → embeddings + learned positions, a class token prepended, pre-LN
  blocks with no causal mask, a token-wise head to V logits.
* HF prior (``cond_tokens = M > 0``): the final LF tokens (B, M) get their own embedding, are stretched to N
  positions (nearest interpolation, then Conv1d k7 → GELU → BN → dilated Conv1d k7), concatenated with the HF
  token embeddings and fused back to D by a Linear(2D → D).

The class token comes from Embedding(num_classes + 1, D); index ``num_classes`` (``null_class``) is the
unconditional class used for class dropout in training and for guidance / unconditional sampling. Dropping the
label is the training loop's job; this module embeds whatever label it is given.

Attention is cosine-similarity attention: q and k are L2-normalised per head and multiplied by a learnable
per-head temperature, which keeps logits bounded for these tiny, heavily-dropped-out models. The block linears
are weight-normed, as in the TimeVQVAE 2024 prior.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["BidirectionalTransformer", "CosineSelfAttention", "FeedForward", "EncoderBlock", "CondUpscaler",
           "ffn_width"]

_INITIAL_ATTN_SCALE = 10.0  # cosine-sim attention temperature at init (x-transformers' qk-norm default)


def ffn_width(dim: int, ff_mult: float) -> int:
    """Hidden width of the FFN: int(2/3 · ff_mult · 4 · D) (SwiGLU-style sizing of a 4×-wide MLP), at least 1."""
    return max(1, int(2 / 3 * ff_mult * 4 * dim))


class CosineSelfAttention(nn.Module):
    """Multi-head self-attention on L2-normalised q and k with a learnable per-head temperature."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"CosineSelfAttention: dim={dim} must be divisible by heads={heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = weight_norm(nn.Linear(dim, 3 * dim, bias=False))
        self.proj = weight_norm(nn.Linear(dim, dim))
        # log-parametrised so the temperature stays positive.
        self.log_scale = nn.Parameter(torch.full((heads, 1, 1), math.log(_INITIAL_ATTN_SCALE)))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, N, D). Returns: (B, N, D); every token attends to every token (no causal mask)."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads)   # (B, N, 3, H, D_h)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)                    # 3 × (B, H, N, D_h)
        q = F.normalize(q, dim=-1) * self.log_scale.exp()                 # (B, H, N, D_h), |q| = temperature
        k = F.normalize(k, dim=-1)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                             scale=1.0)                   # (B, H, N, D_h)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))           # (B, N, D)


class FeedForward(nn.Module):
    """Token-wise Linear → GELU → dropout → Linear, hidden width ``ffn_width``."""

    def __init__(self, dim: int, ff_mult: float, dropout: float) -> None:
        super().__init__()
        hidden = ffn_width(dim, ff_mult)
        self.net = nn.Sequential(weight_norm(nn.Linear(dim, hidden)), nn.GELU(), nn.Dropout(dropout),
                                 weight_norm(nn.Linear(hidden, dim)))

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, N, D). Returns: (B, N, D)."""
        return self.net(x)


class EncoderBlock(nn.Module):
    """Pre-LN block: x + drop(attn(LN x)), then x + drop(ffn(LN x))."""

    def __init__(self, dim: int, heads: int, ff_mult: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CosineSelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, ff_mult, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Args: x (B, 1 + N, D). Returns: (B, 1 + N, D)."""
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.ffn(self.norm2(x)))


class CondUpscaler(nn.Module):
    """Stretch conditioning embeddings (B, M, D) to N positions: nearest → Conv1d k7 → GELU → BN → dilated Conv1d."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(dim, dim, kernel_size=7, padding=3), nn.GELU(), nn.BatchNorm1d(dim),
                                  nn.Conv1d(dim, dim, kernel_size=7, dilation=2, padding=6))

    def forward(self, x: Tensor, length: int) -> Tensor:
        """Args: x (B, M, D), length N. Returns: (B, N, D)."""
        x = F.interpolate(x.transpose(1, 2), size=length, mode="nearest")  # (B, D, N)
        return self.conv(x).transpose(1, 2)                                # (B, N, D)


class BidirectionalTransformer(nn.Module):
    """MaskGIT prior: masked token ids (+ class label, + optional LF condition) → logits over the codebook."""

    def __init__(self, *, num_codes: int, num_tokens: int, num_classes: int, dim: int, depth: int, heads: int,
                 ff_mult: float = 1.0, dropout: float = 0.3, cond_tokens: int = 0,
                 cond_codes: int | None = None) -> None:
        """Args (beyond the module docstring): ``cond_codes`` is the conditioning band's codebook size (default
        ``num_codes``; TimeVQVAE uses 1024 for both bands); its embedding has one extra row for a mask id."""
        super().__init__()
        if num_classes < 0 or num_codes < 1 or num_tokens < 1:
            raise ValueError("BidirectionalTransformer: need num_codes >= 1, num_tokens >= 1, num_classes >= 0")
        self.num_codes, self.num_tokens, self.num_classes = num_codes, num_tokens, num_classes
        self.cond_tokens = cond_tokens
        self.token_emb = nn.Embedding(num_codes + 1, dim)                 # + 1: the mask id = num_codes
        self.pos_emb = nn.Parameter(torch.zeros(1, num_tokens, dim))      # (1, N, D)
        self.class_emb = nn.Embedding(num_classes + 1, dim)              # + 1: the null class = num_classes
        self.emb_dropout = nn.Dropout(dropout)
        if cond_tokens > 0:
            self.cond_emb = nn.Embedding((cond_codes or num_codes) + 1, dim)
            self.upscaler = CondUpscaler(dim)
            self.fuse = nn.Linear(2 * dim, dim)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, ff_mult, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Linear(dim, num_codes))
        nn.init.trunc_normal_(self.pos_emb, std=0.02)

    @property
    def null_class(self) -> int:
        """Label index of the unconditional (null) class."""
        return self.num_classes

    @property
    def mask_id(self) -> int:
        """Token id of the mask token."""
        return self.num_codes

    def _embed_tokens(self, tokens: Tensor) -> Tensor:
        """Token embeddings (B, N, D); dropout only on visible tokens, so the mask embedding stays a clean signal."""
        emb = self.token_emb(tokens)                                       # (B, N, D)
        visible = (tokens != self.mask_id).unsqueeze(-1)                   # (B, N, 1)
        return torch.where(visible, self.emb_dropout(emb), emb)

    def _condition(self, cond: Tensor, length: int) -> Tensor:
        """LF condition ids (B, M) → upscaled embeddings (B, N, D)."""
        if cond.shape[1] != self.cond_tokens:
            raise ValueError(f"BidirectionalTransformer: cond has {cond.shape[1]} tokens, expected {self.cond_tokens}")
        return self.upscaler(self.emb_dropout(self.cond_emb(cond)), length)  # (B, N, D)

    def forward(self, tokens: Tensor, labels: Tensor, cond: Tensor | None = None) -> Tensor:
        """Predict every position's token.

        Args:
            tokens: Token ids with ``mask_id`` where hidden, int64 of shape (B, N).
            labels: Class labels in 0 … num_classes (num_classes = null), int64 of shape (B,).
            cond: Conditioning-band ids (B, M), required iff ``cond_tokens > 0``.

        Returns:
            Logits of shape (B, N, num_codes) (no logit for the mask id).
        """
        b, n = tokens.shape
        if n != self.num_tokens:
            raise ValueError(f"BidirectionalTransformer: got {n} tokens, expected {self.num_tokens}")
        if (cond is None) != (self.cond_tokens == 0):
            raise ValueError("BidirectionalTransformer: pass cond exactly when cond_tokens > 0")
        x = self._embed_tokens(tokens)                                     # (B, N, D)
        if cond is not None:
            x = self.fuse(torch.cat([self._condition(cond, n), x], dim=-1))  # (B, N, 2D) -> (B, N, D)
        x = x + self.pos_emb                                               # (B, N, D)
        x = torch.cat([self.class_emb(labels.long()).unsqueeze(1), x], dim=1)  # (B, 1 + N, D)
        for block in self.blocks:
            x = block(x)                                                   # (B, 1 + N, D)
        return self.head(self.norm(x[:, 1:]))                             # (B, N, V)
