"""1-D U-Net (after lucidrains' ``Unet1D``) shared by the NM neural mapper and the TimeVQVDM latent denoisers.

Shape legend: B batch · C channels of an intermediate tensor · C_in / C_out input / output channels · E channels of
the extra input-condition tensor · W length (time steps of a series or latent frames) · D_c condition width ·
H attention heads · D_h head width.

Layout (models.md §6 "Mapper architecture", §7 "Stage 2"):

    x (B, C_in, W) [+ Conv1d_k3(extra) (B, E, W)] → stem Conv1d k7 → (B, dim, W)
    per level i (width dim·dim_mults[i]): num_res_blocks ResNet blocks (each output kept as a skip) + linear
        attention; down Conv1d(k4, s2, p1) to the next width, except the last level (Conv1d k3, same length)
    middle: ResNet block → full attention → ResNet block
    up path (mirrored): per ResNet block concatenate one skip; ×2 nearest upsampling + Conv1d k3, interpolated to
        the next skip's length when they differ (odd lengths)
    concat with the stem features → ResNet block → Conv1d 1×1 → (B, C_out, W) [→ 2 × Conv1d k3 replicate (NM)]

Odd lengths: a stride-2 down-sampling of an odd W first replicate-pads one frame (output ⌈W/2⌉ instead of ⌊W/2⌋), so
the right-most frame is never dropped and W = 1 still works; the up path then interpolates back to the skip length.

A ResNet block is two conv blocks (weight-standardised Conv1d k3 → GroupNorm → [FiLM] → activation → dropout) plus a
1×1 residual projection; the FiLM condition h·(1 + scale) + shift enters the first conv block only, from
PReLU → Linear(D_c → 2C) of the condition vector (TimeVQVDM: ``TimeClassEmbedding`` output).
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Snake", "UNet1D", "TimeClassEmbedding"]

Activation = Literal["snake", "silu"]
_ATTN_HEADS, _ATTN_HEAD_DIM = 4, 32


def _match_length(x: Tensor, length: int) -> Tensor:
    """Linearly resample (B, C, W) to (B, C, length); identity when the lengths already agree."""
    if x.shape[-1] == length:
        return x
    return F.interpolate(x, size=length, mode="linear", align_corners=False)


def _attention_shape(channels: int) -> tuple[int, int]:
    # 4 heads × 32 dims (thesis), narrowed to 4 × C for C < 32 so small mappers (NM: C = 8) are not dominated by a
    # 128-wide attention projection.
    return _ATTN_HEADS, min(_ATTN_HEAD_DIM, channels)


class Snake(nn.Module):
    """Snake activation x + sin²(a x) / a with a learnable per-channel frequency a ~ U(0.2, 0.5) (input (B, C, W))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.empty(1, channels, 1).uniform_(0.2, 0.5))  # (1, C, 1)

    def forward(self, x: Tensor) -> Tensor:
        # The epsilon only guards against a trained a reaching exactly 0 (the limit a → 0 is x + a x² → x).
        return x + torch.sin(self.a * x).pow(2) / (self.a + 1e-9)


def _activation(name: Activation, channels: int) -> nn.Module:
    if name == "snake":
        return Snake(channels)
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"UNet1D: activation must be 'snake' or 'silu', got activation={name!r}")


class WeightStandardizedConv1d(nn.Conv1d):
    """Conv1d whose kernel is standardised per output channel (Qiao et al. 2019; pairs well with GroupNorm)."""

    def forward(self, x: Tensor) -> Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        w = self.weight                                                       # (C_out, C_in, k)
        mean = w.mean(dim=(1, 2), keepdim=True)
        var = w.var(dim=(1, 2), unbiased=False, keepdim=True)
        return F.conv1d(x, (w - mean) * (var + eps).rsqrt(), self.bias, self.stride, self.padding)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, W) with a learnable gain only."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        eps = 1e-5 if x.dtype == torch.float32 else 1e-3
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)   # (B, 1, W) each
        return (x - mean) * (var + eps).rsqrt() * self.gain


class _Attention(nn.Module):
    """Pre-norm q/k/v projections shared by the two attention kinds; `to_out` maps heads back to `channels`."""

    def __init__(self, channels: int, out_norm: bool) -> None:
        super().__init__()
        self.heads, self.head_dim = _attention_shape(channels)
        hidden = self.heads * self.head_dim
        self.norm = ChannelLayerNorm(channels)
        self.to_qkv = nn.Conv1d(channels, 3 * hidden, 1, bias=False)
        out = nn.Conv1d(hidden, channels, 1)
        self.to_out = nn.Sequential(out, ChannelLayerNorm(channels)) if out_norm else out


class LinearAttention(_Attention):
    """Residual pre-norm linear attention (softmax over features for q, over positions for k): O(W) memory."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, out_norm=True)

    def forward(self, x: Tensor) -> Tensor:
        b, _, w = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(b, 3, self.heads, self.head_dim, w)
        q, k, v = qkv.unbind(1)                                               # 3 × (B, H, D_h, W)
        q = q.softmax(dim=-2) * self.head_dim ** -0.5
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)                       # (B, H, D_h, D_h)
        out = torch.einsum("bhde,bhdn->bhen", context, q)                     # (B, H, D_h, W)
        return x + self.to_out(out.reshape(b, -1, w))


class FullAttention(_Attention):
    """Residual pre-norm softmax self-attention over all W positions (used at the bottleneck only)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, out_norm=False)

    def forward(self, x: Tensor) -> Tensor:
        b, _, w = x.shape
        qkv = self.to_qkv(self.norm(x)).reshape(b, 3, self.heads, self.head_dim, w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)                             # 3 × (B, H, W, D_h)
        out = F.scaled_dot_product_attention(q, k, v)                         # (B, H, W, D_h)
        return x + self.to_out(out.transpose(-1, -2).reshape(b, -1, w))


class ConvBlock(nn.Module):
    """Weight-standardised Conv1d k3 → GroupNorm → optional FiLM → activation → dropout."""

    def __init__(self, c_in: int, c_out: int, groups: int, activation: Activation, dropout: float) -> None:
        super().__init__()
        self.conv = WeightStandardizedConv1d(c_in, c_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, c_out)
        self.act = _activation(activation, c_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, film: tuple[Tensor, Tensor] | None = None) -> Tensor:
        h = self.norm(self.conv(x))                                           # (B, C_out, W)
        if film is not None:
            scale, shift = film                                               # 2 × (B, C_out, 1)
            h = h * (1 + scale) + shift
        return self.dropout(self.act(h))


class ResnetBlock(nn.Module):
    """Two conv blocks + 1×1 residual projection; the condition (if any) modulates the first block."""

    def __init__(self, c_in: int, c_out: int, *, cond_dim: int | None, groups: int, activation: Activation,
                 dropout: float) -> None:
        super().__init__()
        self.film = nn.Sequential(nn.PReLU(), nn.Linear(cond_dim, 2 * c_out)) if cond_dim else None
        self.block1 = ConvBlock(c_in, c_out, groups, activation, dropout)
        self.block2 = ConvBlock(c_out, c_out, groups, activation, dropout)
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        film = None
        if self.film is not None and cond is not None:
            scale, shift = self.film(cond)[:, :, None].chunk(2, dim=1)        # 2 × (B, C_out, 1)
            film = (scale, shift)
        return self.block2(self.block1(x, film)) + self.residual(x)


class Downsample(nn.Module):
    """Conv1d(k4, s2, p1): W → ⌈W/2⌉ (odd W is replicate-padded by one frame first)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 4, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 2:
            x = F.pad(x, (0, 1), mode="replicate")                           # (B, C, W + 1)
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest ×2 upsampling + Conv1d k3: W → 2W."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TimeClassEmbedding(nn.Module):
    """TimeVQVDM condition vector: [sinusoid(time_scale · t) (B, dim), class embedding (B, dim)] → (B, 2·dim).

    Class index ``num_classes`` is the null (unconditional) class used for classifier-free guidance. The ×1000 time
    scale follows the thesis (without it the attention layers failed to use t).
    """

    def __init__(self, num_classes: int, dim: int = 256, time_scale: float = 1000.0) -> None:
        super().__init__()
        if num_classes < 0 or dim <= 0 or dim % 2:
            raise ValueError(f"TimeClassEmbedding: need num_classes >= 0 and an even dim > 0, got "
                             f"num_classes={num_classes}, dim={dim}")
        self.num_classes, self.dim, self.time_scale = num_classes, dim, time_scale
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)  # (dim/2,)
        self.register_buffer("freqs", freqs, persistent=False)
        self.class_embedding = nn.Embedding(num_classes + 1, dim)

    @property
    def out_dim(self) -> int:
        return 2 * self.dim

    @property
    def null_class(self) -> int:
        return self.num_classes

    def forward(self, t: Tensor, labels: Tensor) -> Tensor:
        """t (B,) in [0, 1], labels (B,) int in [0, num_classes] → (B, 2·dim)."""
        # float32 angles: up to 1000 rad, where bf16 would lose the phase.
        angle = (self.time_scale * t.float())[:, None] * self.freqs[None, :]            # (B, dim/2)
        time_emb = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)               # (B, dim)
        class_emb = self.class_embedding(labels.long())                                   # (B, dim)
        return torch.cat([time_emb.to(class_emb.dtype), class_emb], dim=-1)              # (B, 2·dim)


class _Level(nn.Module):
    """One resolution of the U-Net: ResNet blocks, linear attention and the resampling to the next resolution."""

    def __init__(self, blocks: list[ResnetBlock], attention: nn.Module, resample: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attention = attention
        self.resample = resample


class UNet1D(nn.Module):
    """1-D U-Net: x (B, C_in, W) [, cond (B, D_c)] [, extra (B, E, W_e)] → (B, C_out, W), any W ≥ 1."""

    def __init__(self, *, in_channels: int, out_channels: int, dim: int, dim_mults: Sequence[int],
                 cond_dim: int | None = None, extra_channels: int = 0, num_res_blocks: int = 2, groups: int = 4,
                 activation: Activation = "silu", dropout: float = 0.0, attention: bool = True,
                 replicate_head: bool = False) -> None:
        """Build the network (see the module docstring for the layout).

        Args:
            in_channels: C_in of x.
            out_channels: C_out of the output.
            dim: Stem width; level i has width dim · dim_mults[i]. Must be divisible by ``groups``.
            dim_mults: Width multipliers, one per level (len(dim_mults) − 1 halvings of W).
            cond_dim: Width D_c of the FiLM condition vector; None = unconditioned (NM mapper).
            extra_channels: E, channels of an input-condition tensor passed through its own Conv1d k3 and
                concatenated to x (TimeVQVDM HF: the LF latent); 0 = none.
            num_res_blocks: ResNet blocks per level (each contributes one skip).
            groups: GroupNorm groups.
            activation: ``"silu"`` (TimeVQVDM) or ``"snake"`` (NM).
            dropout: Dropout after every conv block's activation (NM: 0.5).
            attention: Residual linear attention per level and full attention at the bottleneck.
            replicate_head: Append two Conv1d(k3, replicate padding) after the 1×1 output conv (NM).

        Raises:
            ValueError: naming the offending argument.
        """
        super().__init__()
        mults = [int(m) for m in dim_mults]
        if in_channels < 1 or out_channels < 1 or not mults or min(mults) < 1 or num_res_blocks < 1:
            raise ValueError(f"UNet1D: need positive in/out channels, num_res_blocks and dim_mults, got "
                             f"in={in_channels}, out={out_channels}, dim_mults={dim_mults}, "
                             f"num_res_blocks={num_res_blocks}")
        if dim < 1 or dim % groups:
            raise ValueError(f"UNet1D: dim must be a positive multiple of groups, got dim={dim}, groups={groups}")
        if cond_dim is not None and cond_dim < 1:
            raise ValueError(f"UNet1D: cond_dim must be None or >= 1, got cond_dim={cond_dim}")
        self.in_channels, self.out_channels, self.extra_channels = in_channels, out_channels, extra_channels
        self.cond_dim = cond_dim

        def res_block(c_in: int, c_out: int) -> ResnetBlock:
            return ResnetBlock(c_in, c_out, cond_dim=cond_dim, groups=groups, activation=activation, dropout=dropout)

        def attn(kind: type[nn.Module], channels: int) -> nn.Module:
            return kind(channels) if attention else nn.Identity()

        self.extra_proj = nn.Conv1d(extra_channels, extra_channels, 3, padding=1) if extra_channels else None
        self.stem = nn.Conv1d(in_channels + extra_channels, dim, 7, padding=3)
        widths = [dim] + [dim * m for m in mults]
        pairs = list(zip(widths[:-1], widths[1:]))                            # (level width, next width)
        last = len(pairs) - 1
        self.downs = nn.ModuleList(
            _Level([res_block(c, c) for _ in range(num_res_blocks)], attn(LinearAttention, c),
                   Downsample(c, c_next) if i < last else nn.Conv1d(c, c_next, 3, padding=1))
            for i, (c, c_next) in enumerate(pairs))
        mid = widths[-1]
        self.mid_block1 = res_block(mid, mid)
        self.mid_attention = attn(FullAttention, mid)
        self.mid_block2 = res_block(mid, mid)
        # Up level for (c, c_next) reads c_next channels, concatenates a c-channel skip per block, outputs c.
        self.ups = nn.ModuleList(
            _Level([res_block(c_next + c, c_next) for _ in range(num_res_blocks)], attn(LinearAttention, c_next),
                   Upsample(c_next, c) if i > 0 else nn.Conv1d(c_next, c, 3, padding=1))
            for i, (c, c_next) in reversed(list(enumerate(pairs))))
        self.final_block = res_block(2 * dim, dim)
        head = [nn.Conv1d(dim, out_channels, 1)]
        if replicate_head:
            head += [nn.Conv1d(out_channels, out_channels, 3, padding=1, padding_mode="replicate") for _ in range(2)]
        self.head = nn.Sequential(*head)

    def _input(self, x: Tensor, extra: Tensor | None) -> Tensor:
        """Concatenate the projected extra condition to x: (B, C_in + E, W)."""
        if x.dim() != 3 or x.shape[1] != self.in_channels or x.shape[-1] < 1:
            raise ValueError(f"UNet1D: x must have shape (B, {self.in_channels}, W >= 1), got {tuple(x.shape)}")
        if (extra is None) != (self.extra_proj is None):
            raise ValueError(f"UNet1D: extra must be given iff extra_channels > 0 (extra_channels="
                             f"{self.extra_channels}, extra given: {extra is not None})")
        if extra is None:
            return x
        if extra.dim() != 3 or extra.shape[:2] != (x.shape[0], self.extra_channels):
            raise ValueError(f"UNet1D: extra must have shape (B={x.shape[0]}, {self.extra_channels}, W_e), got "
                             f"{tuple(extra.shape)}")
        width = x.shape[-1]
        if extra.shape[-1] != width:
            # Thesis recipe for the LF latent: nearest ×⌈W/W_e⌉, then linear interpolation to exactly W.
            factor = math.ceil(width / extra.shape[-1])
            if factor > 1:
                extra = F.interpolate(extra, scale_factor=float(factor), mode="nearest")   # (B, E, factor·W_e)
            extra = _match_length(extra, width)                                           # (B, E, W)
        return torch.cat([x, self.extra_proj(extra.to(x.dtype))], dim=1)                   # (B, C_in + E, W)

    def forward(self, x: Tensor, cond: Tensor | None = None, extra: Tensor | None = None) -> Tensor:
        """Map x (B, C_in, W) to (B, C_out, W).

        Args:
            x: Input, shape (B, C_in, W), W ≥ 1 (odd W allowed).
            cond: Condition vector (B, D_c); required iff ``cond_dim`` was given.
            extra: Input condition (B, E, W_e); resampled to W when W_e ≠ W; required iff ``extra_channels`` > 0.

        Returns:
            Tensor of shape (B, C_out, W).
        """
        if (cond is None) != (self.cond_dim is None):
            raise ValueError(f"UNet1D: cond must be given iff cond_dim is set (cond_dim={self.cond_dim}, "
                             f"cond given: {cond is not None})")
        if cond is not None and (cond.dim() != 2 or cond.shape != (x.shape[0], self.cond_dim)):
            raise ValueError(f"UNet1D: cond must have shape (B={x.shape[0]}, {self.cond_dim}), got "
                             f"{tuple(cond.shape)}")
        h = self.stem(self._input(x, extra))                                  # (B, dim, W)
        stem_features, skips = h, []
        for level in self.downs:
            for block in level.blocks:
                h = block(h, cond)
                skips.append(h)                                               # (B, C_i, W_i)
            h = level.resample(level.attention(h))                            # (B, C_{i+1}, ⌈W_i/2⌉ or W_i)
        h = self.mid_block2(self.mid_attention(self.mid_block1(h, cond)), cond)
        for level in self.ups:
            h = _match_length(h, skips[-1].shape[-1])                         # undo the odd-length rounding
            for block in level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), cond)           # (B, C_{i+1}, W_i)
            h = level.resample(level.attention(h))                            # (B, C_i, 2W_i or W_i)
        h = _match_length(h, stem_features.shape[-1])                         # (B, dim, W)
        h = self.final_block(torch.cat([h, stem_features], dim=1), cond)      # (B, dim, W)
        return self.head(h)                                                   # (B, C_out, W)
