"""T2S networks (code variant, models.md §2): length-adaptive autoencoder and latent DiT denoiser.

Shape legend: B batch · L series length · L4 = 4·ceil(L/4) length fed to the convs · C latent channels ·
P latent positions · N tokens = (P/p)·(C/p) for patch size p · D width · E text-embedding width.

Series are univariate (K = 1), so the networks take x of shape (B, L) rather than (B, 1, L); the family squeezes K.
Every length shares one latent shape (C, P): the autoencoder resamples its native L/4 latent to P positions, so the
denoiser never sees L, and length only returns at decoding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seriesforge.nn.dit import DiTBlock, FinalLayer
from seriesforge.nn.embeddings import sincos_pos_table, timestep_embedding

__all__ = ["LengthAdaptiveAutoencoder", "T2SDenoiser", "padded_length"]

MIN_LENGTH = 4  # two stride-2 convolutions need at least 4 points to leave one latent position


def padded_length(length: int) -> int:
    """L4 = 4·ceil(L/4): the length the convolutions actually process (two stride-2 stages)."""
    return 4 * math.ceil(length / 4)


def _resample(x: Tensor, size: int) -> Tensor:
    """Linear interpolation along the last axis, endpoints kept (align_corners, as the T2S code): (B, C, *) -> (B, C, size)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=size, mode="linear", align_corners=True)


def _check_length(length: int) -> None:
    if length < MIN_LENGTH:
        raise ValueError(f"length must be >= {MIN_LENGTH} for the T2S autoencoder, got length={length}")


# ---------------------------------------------------------------------------------------------------------------
# Stage 1: length-adaptive autoencoder
# ---------------------------------------------------------------------------------------------------------------


class _Residual(nn.Module):
    """x + Conv1x1(ReLU(Conv3(ReLU(x)))); bias-free convs as in the T2S code (VQ-VAE residual layer)."""

    def __init__(self, hidden: int, res_hidden: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(hidden, res_hidden, kernel_size=3, padding=1, bias=False),
            nn.ReLU(),
            nn.Conv1d(res_hidden, hidden, kernel_size=1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)  # (B, hidden, L4/4)


def _residual_stack(hidden: int, res_hidden: int, num_layers: int) -> nn.Sequential:
    # The code's stack ends with a ReLU; it serves as the encoder's "ReLU → Conv1x1" and the decoder's ReLU
    # before the first transposed conv.
    return nn.Sequential(*[_Residual(hidden, res_hidden) for _ in range(num_layers)], nn.ReLU())


class LengthAdaptiveAutoencoder(nn.Module):
    """Deterministic conv autoencoder mapping a series of any length L ≥ 4 to a fixed (C, P) latent."""

    def __init__(
        self,
        *,
        hidden: int = 128,
        latent_channels: int = 64,
        latent_positions: int = 30,
        num_res_layers: int = 2,
        res_hidden: int = 256,
    ) -> None:
        super().__init__()
        if hidden % 2:
            raise ValueError(f"LengthAdaptiveAutoencoder: hidden must be even, got hidden={hidden}")
        self.latent_channels = latent_channels
        self.latent_positions = latent_positions
        half = hidden // 2
        self.encoder = nn.Sequential(
            nn.Conv1d(1, half, kernel_size=4, stride=2, padding=1),                  # L4 -> L4/2
            nn.ReLU(),
            nn.Conv1d(half, hidden, kernel_size=4, stride=2, padding=1),             # L4/2 -> L4/4
            nn.ReLU(),
            nn.Conv1d(hidden, hidden, kernel_size=3, padding=1),
            _residual_stack(hidden, res_hidden, num_res_layers),
            nn.Conv1d(hidden, latent_channels, kernel_size=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv1d(latent_channels, hidden, kernel_size=3, padding=1),
            _residual_stack(hidden, res_hidden, num_res_layers),
            nn.ConvTranspose1d(hidden, half, kernel_size=4, stride=2, padding=1),    # L4/4 -> L4/2
            nn.ReLU(),
            nn.ConvTranspose1d(half, 1, kernel_size=4, stride=2, padding=1),         # L4/2 -> L4
        )

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(C, P), identical for every series length."""
        return self.latent_channels, self.latent_positions

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Encode series to the fixed-size latent.

        Args:
            x: Series, shape (B, L), L ≥ 4. Lengths not divisible by 4 are first resampled linearly to L4.

        Returns:
            ``(z, h)``: z of shape (B, C, P), the resampled latent the denoiser models; h of shape (B, C, L4/4), the
            native latent (needed for the consistency loss).

        Raises:
            ValueError: if x is not 2-D or its length is below 4.
        """
        if x.dim() != 2:
            raise ValueError(f"LengthAdaptiveAutoencoder.encode: x must have shape (B, L), got {tuple(x.shape)}")
        length = x.shape[-1]
        _check_length(length)
        x4 = _resample(x[:, None, :], padded_length(length))          # (B, 1, L4)
        h = self.encoder(x4)                                            # (B, C, L4/4)
        z = _resample(h, self.latent_positions)                         # (B, C, P)
        return z, h

    def _decode_with_latent(self, z: Tensor, length: int) -> tuple[Tensor, Tensor]:
        _check_length(length)
        l4 = padded_length(length)
        h_hat = _resample(z, l4 // 4)                                   # (B, C, L4/4)
        x4 = self.decoder(h_hat)[:, 0, :]                               # (B, L4)
        x_hat = _resample(x4[:, None, :], length)[:, 0, :]              # (B, L)
        return x_hat, h_hat

    def decode(self, z: Tensor, length: int) -> Tensor:
        """Decode a latent to a series of the requested length.

        Args:
            z: Latent, shape (B, C, P).
            length: Target length L ≥ 4; the network produces L4 points, resampled to L when L4 ≠ L.

        Returns:
            Series of shape (B, length).

        Raises:
            ValueError: if ``length`` < 4.
        """
        return self._decode_with_latent(z, length)[0]

    def forward_loss(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Reconstruction plus latent-consistency loss, MSE(x̂, x) + MSE(h, ĥ).

        The consistency term ties the native latent h to its round trip through the P fixed positions, ĥ, so the
        resampling to P loses as little as possible for every length.

        Args:
            x: Series, shape (B, L).

        Returns:
            ``(loss, metrics)``: scalar loss tensor and detached floats ``loss``, ``recon_mse``, ``consistency_mse``.
        """
        z, h = self.encode(x)                                           # (B, C, P), (B, C, L4/4)
        x_hat, h_hat = self._decode_with_latent(z, x.shape[-1])         # (B, L), (B, C, L4/4)
        recon = F.mse_loss(x_hat, x)
        consistency = F.mse_loss(h_hat, h)
        loss = recon + consistency
        metrics = {"loss": loss.item(), "recon_mse": recon.item(), "consistency_mse": consistency.item()}
        return loss, metrics


# ---------------------------------------------------------------------------------------------------------------
# Stage 2: DiT velocity network over the latent
# ---------------------------------------------------------------------------------------------------------------


class T2SDenoiser(nn.Module):
    """DiT over the latent seen as a one-channel P × C image, conditioned on time and a caption embedding."""

    def __init__(
        self,
        *,
        latent_channels: int = 64,
        latent_positions: int = 30,
        dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        patch: int = 2,
        text_dim: int = 384,
    ) -> None:
        super().__init__()
        for name, size in (("latent_positions", latent_positions), ("latent_channels", latent_channels)):
            if size % patch:
                raise ValueError(f"T2SDenoiser: {name}={size} must be divisible by patch={patch}")
        self.latent_channels, self.latent_positions = latent_channels, latent_positions
        self.dim, self.patch, self.text_dim = dim, patch, text_dim
        self.grid = (latent_positions // patch, latent_channels // patch)  # tokens along (P, C)
        num_tokens = self.grid[0] * self.grid[1]
        # Patchify as the code does: a strided conv to p² features per patch, then a Linear to the width.
        self.patch_conv = nn.Conv2d(1, patch * patch, kernel_size=patch, stride=patch)
        self.patch_emb = nn.Linear(patch * patch, dim)
        # Deterministic, so not saved: rebuilt from the config on load.
        self.register_buffer("pos_embed", sincos_pos_table(num_tokens, dim)[None], persistent=False)  # (1, N, D)
        # No bias: the null caption (all-zero embedding) then adds exactly nothing, c = time embedding, which is
        # what the T2S code does when it drops the caption (text_input=None).
        self.caption_proj = nn.Linear(text_dim, dim, bias=False)
        self.blocks = nn.ModuleList(DiTBlock(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.final = FinalLayer(dim, patch * patch)
        for layer in (self.patch_emb, self.caption_proj):  # DiT's Xavier init; blocks init themselves
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)

    @property
    def num_tokens(self) -> int:
        """N = (P / p) · (C / p)."""
        return self.grid[0] * self.grid[1]

    def null_caption(self, batch: int, *, device: torch.device | str | None = None) -> Tensor:
        """All-zero text embeddings (B, E): the unconditional input for classifier-free guidance.

        T2S drops the caption of the whole batch (p = 0.3) by passing no text, i.e. zeros; with the bias-free
        ``caption_proj`` a zero embedding reproduces that exactly.
        """
        return torch.zeros(batch, self.text_dim, device=device)

    def _patchify(self, z: Tensor) -> Tensor:
        image = z.transpose(1, 2)[:, None]                              # (B, 1, P, C)
        patches = self.patch_conv(image)                                # (B, p², P/p, C/p)
        patches = patches.flatten(2).transpose(1, 2)                    # (B, N, p²)
        return self.patch_emb(patches) + self.pos_embed                 # (B, N, D)

    def _unpatchify(self, x: Tensor) -> Tensor:
        b, p = x.shape[0], self.patch
        gp, gc = self.grid
        x = x.reshape(b, gp, gc, p, p)                                  # (B, P/p, C/p, p, p)
        x = x.permute(0, 1, 3, 2, 4).reshape(b, gp * p, gc * p)         # (B, P, C)
        return x.transpose(1, 2)                                        # (B, C, P)

    def condition(self, t: Tensor, text_emb: Tensor | None) -> Tensor:
        """Condition vector c = timestep_embedding(t) + caption_proj(text_emb), shape (B, D)."""
        c = timestep_embedding(t, self.dim)                             # (B, D)
        if text_emb is not None:
            if text_emb.shape[-1] != self.text_dim:
                raise ValueError(f"T2SDenoiser: text_emb must have shape (B, {self.text_dim}), "
                                 f"got {tuple(text_emb.shape)}")
            c = c + self.caption_proj(text_emb.to(c.dtype))             # (B, D)
        return c

    def forward(self, z: Tensor, t: Tensor, text_emb: Tensor | None) -> Tensor:
        """Predict the rectified-flow velocity.

        Args:
            z: Noisy latent x_t, shape (B, C, P).
            t: Flow time in [0, 1] (0 = noise, 1 = data), shape (B,) or a scalar tensor.
            text_emb: Caption embeddings (B, E); zeros or ``None`` for the null caption.

        Returns:
            Velocity of shape (B, C, P); exactly zero at initialisation.

        Raises:
            ValueError: if z or text_emb has the wrong shape.
        """
        if z.dim() != 3 or tuple(z.shape[1:]) != (self.latent_channels, self.latent_positions):
            raise ValueError(f"T2SDenoiser: z must have shape (B, {self.latent_channels}, {self.latent_positions}), "
                             f"got {tuple(z.shape)}")
        t = t.to(z.dtype).expand(z.shape[0]) if t.dim() == 0 else t.to(z.dtype)  # (B,)
        x = self._patchify(z)                                           # (B, N, D)
        c = self.condition(t, text_emb)                                 # (B, D)
        for block in self.blocks:
            x = block(x, c)                                             # (B, N, D)
        return self._unpatchify(self.final(x, c))                      # (B, C, P)
