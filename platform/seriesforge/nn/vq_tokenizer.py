"""The stage-1 tokenizer of the VQ families (TimeVQVAE, TimeVQVDM): STFT, LF/HF split, one encoder, quantiser and
decoder per band, inverse STFT (models.md §5 stage 1, §7 stage 1).

Shape legend: B batch · K channels · L length · F STFT bins · W0 = T STFT frames · H band rows seen by an encoder ·
W' token columns · D hidden width · d code width · N = H·W' tokens of one band.

    x (B, K, L) --stft--> u (B, 2K, F, W0) --band rows--> (B, 2K, H, W0) --encoder--> (B, D, H, W')
      --Linear D->d per position--> z (B, N, d) --VQ--> codes (B, N) / z_q (B, N, d) --Linear d->D--> decoder
      --> (B, 2K, H, W0) --back into F rows, the other band zero--> istft(length=L) --> x_band (B, K, L)
    x̂ = x̂_LF + x̂_HF (the STFT is linear, so the two band series sum to the input exactly)

Two band layouts: `zero_padded=False` (TimeVQVAE 2024: an encoder sees only its band's rows, H = cut or F - cut)
and `zero_padded=True` (TimeVQVAE paper, TimeVQVDM: both encoders see all F rows with the other band zeroed, and the
decoded spectrogram is re-zeroed outside the band before the inverse STFT).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seriesforge.nn.band_coders import BandDecoder, BandEncoder
from seriesforge.nn.stft_bands import BandSTFT
from seriesforge.nn.vector_quantizer import VectorQuantizer

BANDS = ("lf", "hf")


@dataclass(frozen=True)
class TokenizerSpec:
    """Everything that sizes a tokenizer; each family builds one from its own config."""

    length: int
    channels: int
    n_fft: int
    hop: int
    window: Literal["hann", "rect"]
    normalized: bool
    band_cut: int  # LF = bins [0, cut), HF = bins [cut, F)
    arch: Literal["snake", "conv"]
    width: int
    num_res_blocks: int
    hidden_dim: int
    code_dim: int
    codebook_size: int
    ema_decay: float
    commitment: float
    n_down: tuple[int, int]  # (LF, HF) halvings of the frame axis
    zero_padded: bool
    dropout: float = 0.0
    loss: Literal["code", "paper", "thesis"] = "code"


@dataclass
class Encoded:
    """One band after the encoder: the continuous pre-quantisation tokens and their grid."""

    z: Tensor  # (B, N, d)
    height: int  # H
    width: int  # W'


def halvings_code(length: int, n_fft: int, w: int) -> int:
    """TimeVQVAE 2024: r = round(L / (log2 n_fft - 1) / w) if L >= w else 1; n = max(1, round(log2 r))."""
    r = round(length / (math.log2(n_fft) - 1) / w) if length >= w else 1
    return max(1, round(math.log2(max(r, 1))))


def halvings_paper(length: int, w: int) -> int:
    """TimeVQVAE paper: r = round(L / 2 / w); n = max(1, floor(log2 r))."""
    r = max(1, round(length / 2 / w))
    return max(1, math.floor(math.log2(r)))


def halvings_to_bound(width0: int, upper: int) -> int:
    """TimeVQVDM: halve W0 = L + 1 (floor) until it is at most `upper` (16..31 LF, 64..127 HF); 0 if it already is."""
    n, w = 0, width0
    while w > upper:
        w, n = w // 2, n + 1
    return n


class VQTokenizer(nn.Module):
    """Stage 1 of TimeVQVAE / TimeVQVDM: two bands, each with encoder, quantiser and decoder."""

    def __init__(self, spec: TokenizerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stft = BandSTFT(spec.n_fft, spec.hop, spec.window, spec.normalized)
        self.stft.check_round_trip(spec.length, spec.channels)  # models.md §0 rule 5: fail at start-up
        bins, c2 = self.stft.bins, 2 * spec.channels
        self.rows = {"lf": (0, spec.band_cut), "hf": (spec.band_cut, bins)}
        self.encoders, self.decoders = nn.ModuleDict(), nn.ModuleDict()
        self.project_in, self.project_out, self.quantizers = nn.ModuleDict(), nn.ModuleDict(), nn.ModuleDict()
        for band, n_down in zip(BANDS, spec.n_down):
            height = bins if spec.zero_padded else self.rows[band][1] - self.rows[band][0]
            common = dict(height=height, arch=spec.arch, width=spec.width, latent_dim=spec.hidden_dim,
                          num_res_blocks=spec.num_res_blocks, dropout=spec.dropout)
            self.encoders[band] = BandEncoder(in_channels=c2, n_down=n_down, **common)
            self.decoders[band] = BandDecoder(out_channels=c2, n_up=n_down, **common)
            self.project_in[band] = nn.Linear(spec.hidden_dim, spec.code_dim)
            self.project_out[band] = nn.Linear(spec.code_dim, spec.hidden_dim)
            self.quantizers[band] = VectorQuantizer(spec.codebook_size, spec.code_dim, decay=spec.ema_decay,
                                                    commitment=spec.commitment)
        self.frames = self.stft.frames(spec.length)  # W0
        self.grid = {band: self._grid(band) for band in BANDS}  # band -> (H, W')

    def _grid(self, band: str) -> tuple[int, int]:
        """(H, W') of a band's token grid: the encoder halves the frame axis (floor) n_down times."""
        lo, hi = self.rows[band]
        width = self.frames
        for _ in range(self.spec.n_down[BANDS.index(band)]):
            width //= 2
        return (self.stft.bins if self.spec.zero_padded else hi - lo), width

    def num_tokens(self, band: str) -> int:
        height, width = self.grid[band]
        return height * width

    # -- spectrogram <-> band rows ----------------------------------------------------------------------------
    def _band_input(self, u: Tensor, band: str) -> Tensor:
        """(B, 2K, F, W0) -> what the band's encoder sees: its rows, or all rows with the other band zeroed."""
        if self.spec.zero_padded:
            return self.stft.keep_bands(u, band, self.spec.band_cut)
        lo, hi = self.rows[band]
        return u[:, :, lo:hi]

    def _band_spectrogram(self, rows: Tensor, band: str) -> Tensor:
        """Decoder output (B, 2K, H, W0) -> a full (B, 2K, F, W0) spectrogram, zero outside the band."""
        if self.spec.zero_padded:
            return self.stft.keep_bands(rows, band, self.spec.band_cut)
        lo, hi = self.rows[band]
        full = rows.new_zeros(rows.shape[0], rows.shape[1], self.stft.bins, rows.shape[3])
        full[:, :, lo:hi] = rows
        return full

    # -- encode / quantise / decode ---------------------------------------------------------------------------
    def encode_band(self, x: Tensor, band: str) -> Encoded:
        """x (B, K, L) -> continuous tokens (B, N, d) of one band, row-major over (H, W')."""
        return self._encode_spectrogram(self.stft.forward(x), band)

    def _encode_spectrogram(self, u: Tensor, band: str) -> Encoded:
        """u (B, 2K, F, W0), the STFT of x, computed once for both bands -> the band's tokens (B, N, d)."""
        h = self.encoders[band](self._band_input(u, band))  # (B, D, H, W')
        _, _, height, width = h.shape
        z = self.project_in[band](h.flatten(2).transpose(1, 2))  # (B, H·W', d)
        return Encoded(z=z, height=height, width=width)

    def decode_band(self, z_q: Tensor, band: str) -> tuple[Tensor, Tensor]:
        """Quantised tokens (B, N, d) -> (band series (B, K, L), band spectrogram (B, 2K, F, W0))."""
        height, width = self.grid[band]
        h = self.project_out[band](z_q).transpose(1, 2).reshape(z_q.shape[0], -1, height, width)  # (B, D, H, W')
        rows = self.decoders[band](h, self.frames)  # (B, 2K, H, W0)
        u_band = self._band_spectrogram(rows, band)
        return self.stft.inverse(u_band, self.spec.length), u_band

    def tokens(self, x: Tensor) -> dict[str, Tensor]:
        """x (B, K, L) -> band -> code indices (B, N) (argmin quantisation)."""
        u = self.stft.forward(x)  # (B, 2K, F, W0)
        return {band: self.quantizers[band].nearest(self._encode_spectrogram(u, band).z) for band in BANDS}

    def decode_tokens(self, codes: dict[str, Tensor]) -> Tensor:
        """band -> (B, N) code indices -> x̂ (B, K, L) = x̂_LF + x̂_HF."""
        return sum(self.decode_band(self.quantizers[b].lookup(codes[b]), b)[0] for b in BANDS)

    def stochastic_reconstruction(self, x: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
        """NM-VQTSG's x̃' = D(SVQ_τ(E(x))): each token drawn from softmax(-‖z - e_k‖² / τ) (B, K, L)."""
        u = self.stft.forward(x)  # (B, 2K, F, W0)
        codes = {b: self.quantizers[b].sample_codes(self._encode_spectrogram(u, b).z, tau, generator) for b in BANDS}
        return self.decode_tokens(codes)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Stage-1 training loss of x (B, K, L) and its parts (models.md §5 / §7 loss lines, per `spec.loss`)."""
        x = x.float()
        u = self.stft.forward(x)  # (B, 2K, F, W0)
        total, metrics = x.new_zeros(()), {}
        recon = x.new_zeros(x.shape)
        for band in BANDS:
            target_u = self.stft.keep_bands(u, band, self.spec.band_cut)
            target_x = self.stft.inverse(target_u, self.spec.length)  # (B, K, L)
            enc = self._encode_spectrogram(u, band)
            vq = self.quantizers[band](enc.z)
            x_band, u_band = self.decode_band(vq.quantized, band)
            time_loss = (F.l1_loss if band == "hf" and self.spec.loss != "thesis" else F.mse_loss)(x_band, target_x)
            parts = {f"{band}_time": time_loss, f"{band}_commit": vq.commit_loss}
            if self.spec.loss in ("paper", "thesis"):  # + MSE on the (zero-padded) spectrograms
                parts[f"{band}_stft"] = F.mse_loss(u_band, target_u)
            total = total + sum(parts.values())
            metrics.update({k: float(v.detach()) for k, v in parts.items()})
            metrics[f"{band}_perplexity"] = float(vq.perplexity)
            recon = recon + x_band.detach()
        metrics["recon_mse"] = float(F.mse_loss(recon, x))
        return total, metrics
