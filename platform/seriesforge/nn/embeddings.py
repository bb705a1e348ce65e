"""Fixed sinusoidal embeddings: diffusion/flow time and 1-D token positions.

Shape legend: B batch · N tokens (positions) · D width (embedding dimension).

Both functions are parameter-free and deterministic, so they can be recomputed on load instead of being stored in a
checkpoint (a module may still keep the position table as a non-persistent buffer for speed).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["timestep_embedding", "sincos_pos_table"]


def _require_even(dim: int, what: str) -> None:
    # sin and cos halves must have the same size, otherwise the table is ragged.
    if dim <= 0 or dim % 2:
        raise ValueError(f"{what}: dim must be a positive even integer, got dim={dim}")


def timestep_embedding(t: Tensor, dim: int, scale: float = 100.0) -> Tensor:
    """Sinusoidal embedding of a continuous time t ∈ [0, 1], in the form the T2S code uses.

    T2S (`model/denoiser/transformer.py`, `TimeEmbedding`) embeds ``scale · t`` with ``dim / 2`` wavelengths
    ``10000 ** linspace(0, 1, dim / 2)``, i.e. angle_i = scale · t / 10000^(i / (dim/2 − 1)), and concatenates all
    sines then all cosines: ``cat(sin(angle), cos(angle))``. The first wavelength is 1 (fastest oscillation), the
    last 10000. ``scale = 100`` stretches t ∈ [0, 1] over the range a 100-step discrete schedule would cover, so
    neighbouring grid points (1/100 apart) get clearly different embeddings.

    Note that the wavelengths divide the angle (the code computes ``t / freqs``); this differs from the DiT/ADM
    convention (``exp(-log(10000) · i / half)`` multiplied, cos first) only in ordering and endpoint, but it is kept
    exactly so that weights trained with the T2S code remain compatible.

    Args:
        t: Times, shape (B,), any float dtype; values are typically in [0, 1].
        dim: Embedding width D; must be even.
        scale: Multiplier applied to t before the sinusoids (T2S: 100).

    Returns:
        Tensor of shape (B, dim): first dim/2 columns are sines, last dim/2 cosines. Same dtype as t when t is
        floating point, float32 otherwise.

    Raises:
        ValueError: if ``dim`` is not a positive even integer or ``t`` is not 1-D.

    Example:
        >>> timestep_embedding(torch.tensor([0.0, 0.5]), 8).shape
        torch.Size([2, 8])
    """
    _require_even(dim, "timestep_embedding")
    if t.dim() != 1:
        raise ValueError(f"timestep_embedding: t must have shape (B,), got {tuple(t.shape)}")
    out_dtype = t.dtype if t.is_floating_point() else torch.float32
    half = dim // 2
    # Computed in float32 even under bf16 autocast: angles reach 100 rad, where bf16 loses the phase.
    wavelengths = torch.pow(10000.0, torch.linspace(0.0, 1.0, half, device=t.device))  # (D/2,)
    angle = (scale * t.float())[:, None] / wavelengths[None, :]                           # (B, D/2)
    emb = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)                         # (B, D)
    return emb.to(out_dtype)


def sincos_pos_table(n: int, dim: int) -> Tensor:
    """Fixed 1-D sinusoidal position table (Vaswani et al. 2017), as the T2S DiT uses for its tokens.

    Row p holds ``sin(p · ω_i)`` in even columns and ``cos(p · ω_i)`` in odd columns (interleaved, the T2S code's
    layout), with ω_i = 10000^(−2i / dim) for i = 0 … dim/2 − 1.

    Args:
        n: Number of positions N (tokens); must be ≥ 1.
        dim: Width D; must be even.

    Returns:
        float32 tensor of shape (n, dim), on the CPU.

    Raises:
        ValueError: if ``n < 1`` or ``dim`` is not a positive even integer.

    Example:
        >>> sincos_pos_table(480, 128).shape
        torch.Size([480, 128])
    """
    _require_even(dim, "sincos_pos_table")
    if n < 1:
        raise ValueError(f"sincos_pos_table: n must be >= 1, got n={n}")
    position = torch.arange(n, dtype=torch.float32)[:, None]                               # (N, 1)
    omega = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (D/2,)
    angle = position * omega[None, :]                                                       # (N, D/2)
    table = torch.zeros(n, dim)                                                             # (N, D)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table
