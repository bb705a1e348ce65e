"""Stage-1 encoder and decoder networks of one STFT frequency band (TimeVQVAE, NM-VQTSG, TimeVQVDM).

Shape legend: B batch · C_in / C_out spectrogram channels (2K: Re/Im per covariate) · H frequency rows of the band
· W0 STFT frames · W′ = W0 halved (floor) n_down times · D latent width (`latent_dim`) · c hidden channels.

    BandEncoder: u (B, C_in, H, W0) → h (B, D, H, W′)            frequency axis never resampled
    BandDecoder: h (B, D, H, W′)    → û (B, C_out, H, out_width)  n_up ×2 upsamplings, then linear resize along W

Only the networks live here; STFT (`stft_bands.py`), quantiser and losses are elsewhere. Two architectures (models.md
§5, §7):

* ``"snake"`` — TimeVQVAE 2024 code (6e04f69). Down level = depthwise Conv2d (kh, 4) stride (1, 2) with replicate
  padding → 1×1 conv (both weight-normed) → BatchNorm2d → Snake. Channels ``width · 2^i`` at level i. Residual block
  = Snake → depthwise (kh, 3) → 1×1 → BN → Snake → depthwise (kh, 3) → 1×1 → dropout, plus a skip (a 1×1 conv when the
  width changes). The encoder output is L2-normalised over channels.
* ``"conv"`` — TimeVQVAE paper (841ab99) / TimeVQVDM. Down level = Conv2d (kh, 4) stride (1, 2) padding (·, 1)
  replicate → BN → LeakyReLU, ``width`` channels everywhere, then ``num_res_blocks`` residual blocks, then a 1×1 conv
  to D; no output normalisation. Decoder: 1×1 conv D → width, residual blocks, n_up ConvTranspose2d (kh, 4) stride
  (1, 2) → BN → LeakyReLU, 1×1 conv → C_out.

kh = 1 when ``height == 1`` (a single bin has no frequency neighbours; TimeVQVAE's "frequency independence" for LF),
else 3 with padding 1, so H is unchanged. Decoder outputs are STFT coefficients of either sign: no output activation.

Decisions where models.md is silent (record them with the family config):

1. "snake" keeps the code's layout: level 0 has no residual blocks (the code adds them after the 2nd, 3rd, … down
   block), and "last block → D" is a residual block C_last → D whose skip is a 1×1 conv (code), not a bare 1×1 conv.
   With ``n_down == 0`` the encoder is only that last block (C_in → D).
2. "snake" decoder = exact mirror of an encoder with ``n_up`` levels: residual block D → width·2^(n_up−1), then per
   level (residual blocks, up block halving channels); the last up block is plain (depthwise ConvTranspose2d + 1×1
   → C_out, no BN / Snake), as in the code. The code's decoder adds an extra C_out → C_out transposed conv after a
   mirror of n levels; here the caller passes ``n_up = n_down + 1`` instead, which gives one more full level (top
   width 2^n_down · width rather than 2^(n_down−1) · width; a few hundred extra parameters at width 4).
   With ``n_up == 0``: residual block D → width, then a 1×1 conv → C_out.
3. ``dropout`` acts in residual blocks only (the code builds its down/up blocks with their default dropout 0).
4. "conv" residual block follows the paper/TimeVQVDM code: LeakyReLU → conv (kh, 3) → BN → LeakyReLU → 1×1 conv
   (→ dropout), plus skip, then BN — not two 3×3 convs. With width 64, 4 blocks, this is what gives the ≈550 k
   (LF, 3 halvings) / ≈350 k (HF, 1 halving) parameters models.md §7 quotes for encoder + decoder.
   The same block (with its inner BN) is used in the decoder; the code omits the inner BN there.
   With ``n_down == 0`` a stride-1 Conv2d (kh, 3) → BN → LeakyReLU stem maps C_in → width.
5. The final resize to ``out_width`` is bilinear with ``align_corners=True`` (paper code), which is linear along W
   since H is unchanged; skipped when the width already matches.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from seriesforge.errors import ConfigError

__all__ = ["Arch", "ARCHS", "Snake", "BandEncoder", "BandDecoder", "encoded_width"]

Arch = Literal["snake", "conv"]  # "snake": TimeVQVAE 2024 code (6e04f69); "conv": TimeVQVAE-paper / TimeVQVDM
ARCHS: tuple[str, ...] = ("snake", "conv")


def encoded_width(w0: int, n_down: int) -> int:
    """W′ after n_down stride-2 levels, each W → ⌊W/2⌋."""
    return w0 >> n_down


class Snake(nn.Module):
    """Snake activation x + sin²(a·x)/a with a learnable a per channel, initialised U(a_min, a_max).

    Works on (B, C, ...) with any number of trailing dims. Large a → periodic bias; small a → ≈ x + a·x².
    """

    def __init__(self, channels: int, a_min: float = 0.2, a_max: float = 0.5) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.empty(channels).uniform_(a_min, a_max))  # (C,)

    def forward(self, x: Tensor) -> Tensor:
        a = self.a.view(1, -1, *([1] * (x.dim() - 2)))  # (1, C, 1, ...)
        # 1e-9 keeps the division finite should an a be driven to 0 (BigVGAN does the same).
        return x + torch.sin(a * x).pow(2) / (a + 1e-9)


# ---------------------------------------------------------------------------------------------------------------
# Building blocks. kh is the kernel height (1 or 3); padding kh // 2 keeps H.
# ---------------------------------------------------------------------------------------------------------------


def _kernel_height(height: int) -> int:
    return 1 if height == 1 else 3


def _pointwise(c_in: int, c_out: int, norm: bool = True) -> nn.Module:
    conv = nn.Conv2d(c_in, c_out, kernel_size=1)
    return weight_norm(conv) if norm else conv


class _SnakeResBlock(nn.Module):
    """Depthwise-separable residual block with Snake; (B, c_in, H, W) → (B, c_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, kh: int, dropout: float) -> None:
        super().__init__()
        ph = kh // 2

        def depthwise(c: int) -> nn.Module:
            return weight_norm(nn.Conv2d(c, c, (kh, 3), padding=(ph, 1), groups=c))

        self.branch = nn.Sequential(
            Snake(c_in), depthwise(c_in), _pointwise(c_in, c_out), nn.BatchNorm2d(c_out),
            Snake(c_out), depthwise(c_out), _pointwise(c_out, c_out), nn.Dropout(dropout))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.branch(x)


def _snake_down(c_in: int, c_out: int, kh: int) -> nn.Sequential:
    # W → ⌊W/2⌋: kernel 4, stride 2, one replicated column each side; H kept by (kh, ph).
    return nn.Sequential(
        weight_norm(nn.Conv2d(c_in, c_in, (kh, 4), stride=(1, 2), padding=(kh // 2, 1),
                              padding_mode="replicate", groups=c_in)),
        _pointwise(c_in, c_out), nn.BatchNorm2d(c_out), Snake(c_out))


def _snake_up(c_in: int, c_out: int, kh: int, plain: bool) -> nn.Sequential:
    # W → 2W: (W − 1)·2 − 2 + 4. "plain" = the output layer: no weight norm, BN or activation.
    depthwise = nn.ConvTranspose2d(c_in, c_in, (kh, 4), stride=(1, 2), padding=(kh // 2, 1), groups=c_in)
    if plain:
        return nn.Sequential(depthwise, _pointwise(c_in, c_out, norm=False))
    return nn.Sequential(weight_norm(depthwise), _pointwise(c_in, c_out), nn.BatchNorm2d(c_out), Snake(c_out))


class _ConvResBlock(nn.Module):
    """Paper / TimeVQVDM residual block at constant width; (B, c, H, W) → (B, c, H, W)."""

    def __init__(self, c: int, kh: int, dropout: float) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.LeakyReLU(), nn.Conv2d(c, c, (kh, 3), padding=(kh // 2, 1)), nn.BatchNorm2d(c),
            nn.LeakyReLU(), nn.Conv2d(c, c, kernel_size=1), nn.Dropout(dropout))
        self.norm = nn.BatchNorm2d(c)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.branch(x))


def _conv_down(c_in: int, c_out: int, kh: int, stride: int = 2) -> nn.Sequential:
    kw = 4 if stride == 2 else 3  # stride 1 (the n_down == 0 stem): a 3-tap kernel keeps W
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, (kh, kw), stride=(1, stride), padding=(kh // 2, 1), padding_mode="replicate"),
        nn.BatchNorm2d(c_out), nn.LeakyReLU())


def _conv_up(c: int, kh: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c, c, (kh, 4), stride=(1, 2), padding=(kh // 2, 1)),
                         nn.BatchNorm2d(c), nn.LeakyReLU())


def _check_args(arch: str, height: int, width: int, levels: int, latent_dim: int, num_res_blocks: int) -> None:
    if arch not in ARCHS:
        raise ConfigError(f"model.arch: {arch!r} is not one of {', '.join(map(repr, ARCHS))}")
    for name, value, low in (("height", height, 1), ("width", width, 1), ("resampling levels", levels, 0),
                             ("latent_dim", latent_dim, 1), ("num_res_blocks", num_res_blocks, 0)):
        if not isinstance(value, int) or value < low:
            raise ConfigError(f"band coder {name}: expected an integer >= {low}, got {value!r}")


def _check_input(x: Tensor, channels: int, height: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2] != height:
        raise ValueError(f"{who}: expected (B, {channels}, {height}, W), got {tuple(x.shape)}")


# ---------------------------------------------------------------------------------------------------------------
# Encoder / decoder
# ---------------------------------------------------------------------------------------------------------------


class BandEncoder(nn.Module):
    """(B, in_channels, H, W0) → (B, latent_dim, H, W0 >> n_down); "snake" output has unit L2 norm over channels."""

    def __init__(self, *, in_channels: int, height: int, arch: Arch, width: int, n_down: int, latent_dim: int,
                 num_res_blocks: int, dropout: float = 0.0) -> None:
        super().__init__()
        _check_args(arch, height, width, n_down, latent_dim, num_res_blocks)
        self.in_channels, self.height, self.arch, self.n_down = in_channels, height, arch, n_down
        kh = _kernel_height(height)
        layers: list[nn.Module] = []
        if arch == "snake":
            c = in_channels
            for level in range(n_down):
                c_next = width * 2 ** level
                layers.append(_snake_down(c, c_next, kh))
                if level > 0:  # decision 1: the code has no residual blocks after the first down block
                    layers += [_SnakeResBlock(c_next, c_next, kh, dropout) for _ in range(num_res_blocks)]
                c = c_next
            layers.append(_SnakeResBlock(c, latent_dim, kh, dropout))
        else:
            layers.append(_conv_down(in_channels, width, kh, stride=2 if n_down else 1))
            layers += [_conv_down(width, width, kh) for _ in range(n_down - 1)]
            layers += [_ConvResBlock(width, kh, dropout) for _ in range(num_res_blocks)]
            layers.append(nn.Conv2d(width, latent_dim, kernel_size=1))
        self.net = nn.Sequential(*layers)

    def forward(self, u: Tensor) -> Tensor:
        _check_input(u, self.in_channels, self.height, "BandEncoder")
        if u.shape[-1] >> self.n_down < 1:
            raise ValueError(f"BandEncoder: width {u.shape[-1]} is too short for {self.n_down} halvings")
        h = self.net(u)  # (B, D, H, W′)
        # TimeVQVAE-2024 (after HILCodec): unit-norm latents before the quantiser's projection.
        return F.normalize(h, dim=1) if self.arch == "snake" else h


class BandDecoder(nn.Module):
    """(B, latent_dim, H, W′) → (B, out_channels, H, out_width): n_up ×2 upsamplings, then a linear resize along W."""

    def __init__(self, *, out_channels: int, height: int, arch: Arch, width: int, n_up: int, latent_dim: int,
                 num_res_blocks: int, dropout: float = 0.0) -> None:
        super().__init__()
        _check_args(arch, height, width, n_up, latent_dim, num_res_blocks)
        self.latent_dim, self.height, self.n_up = latent_dim, height, n_up
        kh = _kernel_height(height)
        layers: list[nn.Module] = []
        if arch == "snake":
            c = width * 2 ** max(n_up - 1, 0)  # decision 2: mirror of an encoder with n_up levels
            layers.append(_SnakeResBlock(latent_dim, c, kh, dropout))
            for _ in range(n_up - 1):
                layers += [_SnakeResBlock(c, c, kh, dropout) for _ in range(num_res_blocks)]
                layers.append(_snake_up(c, c // 2, kh, plain=False))
                c //= 2
            layers.append(_snake_up(c, out_channels, kh, plain=True) if n_up else nn.Conv2d(c, out_channels, 1))
        else:
            layers.append(nn.Conv2d(latent_dim, width, kernel_size=1))
            layers += [_ConvResBlock(width, kh, dropout) for _ in range(num_res_blocks)]
            layers += [_conv_up(width, kh) for _ in range(n_up)]
            layers.append(nn.Conv2d(width, out_channels, kernel_size=1))
        self.net = nn.Sequential(*layers)

    def forward(self, h: Tensor, out_width: int) -> Tensor:
        _check_input(h, self.latent_dim, self.height, "BandDecoder")
        out = self.net(h)  # (B, C_out, H, W′ · 2^n_up)
        if out.shape[-1] != out_width:
            # bilinear with H unchanged = linear along W (decision 5)
            out = F.interpolate(out, size=(self.height, out_width), mode="bilinear", align_corners=True)
        return out  # (B, C_out, H, out_width)
