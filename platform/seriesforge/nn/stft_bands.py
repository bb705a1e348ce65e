"""Short-time Fourier transform of multichannel series as real Re/Im channels, with an LF/HF band split.

Shape legend: B batch · K covariates (channels of the raw series) · L series length · F = ⌊n_fft/2⌋ + 1 one-sided
frequency bins · T STFT frames.

Used by the spectrogram families (TimeVQVAE, NM-VQTSG, TimeVQVDM, ST-Diff) and written to models.md §0 "STFT rules":

* complex API only (``return_complex=True`` then ``view_as_real``); Re/Im are stacked as channels, channel
  ``2k + 0`` is Re and ``2k + 1`` is Im of covariate k: ``(B, K, L) → (B, 2K, F, T)``;
* ``torch.istft(..., length=L)`` always, so odd and even lengths come back whole (TimeVQVAE issue #1);
* an explicit window (periodic Hann or rectangular ones) and the same window and ``normalized`` flag both ways;
* ``center=True`` with reflect padding, so T = 1 + ⌊(L + 2⌊n_fft/2⌋ − n_fft) / hop⌋;
* fp32 outside autocast (cuFFT has no bf16 path);
* LF = bins ``[0, cut)``, HF = bins ``[cut, F)``; ISTFT is linear, so ISTFT(LF) + ISTFT(HF) = x.

`BandSTFT.check_round_trip` is the start-up validation of rule 5: it catches NOLA violations and length bugs.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from seriesforge.errors import ConfigError

__all__ = ["BandSTFT"]

WindowName = Literal["hann", "rect"]
_WINDOWS = ("hann", "rect")


class BandSTFT:
    """STFT / ISTFT pair with a fixed configuration; a plain object, so it adds nothing to a state_dict.

    The window is rebuilt from the configuration on first use on each device and cached, so the object can be
    created before the model is moved to its device and needs no checkpointing.
    """

    def __init__(self, n_fft: int, hop: int, window: WindowName, normalized: bool) -> None:
        if not isinstance(n_fft, int) or n_fft < 2:
            raise ConfigError(f"model.n_fft: expected an integer >= 2, got {n_fft!r}")
        if not isinstance(hop, int) or hop < 1:
            raise ConfigError(f"model.hop: expected an integer >= 1, got {hop!r}")
        if window not in _WINDOWS:
            raise ConfigError(f"model.window: {window!r} is not one of {', '.join(map(repr, _WINDOWS))}")
        self.n_fft = n_fft
        self.hop = hop
        self.window = window
        self.normalized = bool(normalized)
        self._windows: dict[torch.device, Tensor] = {}

    def __repr__(self) -> str:
        return (f"BandSTFT(n_fft={self.n_fft}, hop={self.hop}, window={self.window!r}, "
                f"normalized={self.normalized})")

    # ----------------------------------------------------------------------------------------------- geometry
    @property
    def bins(self) -> int:
        """F, the number of one-sided frequency bins."""
        return self.n_fft // 2 + 1

    def frames(self, length: int) -> int:
        """T for a series of `length` samples (center=True pads ⌊n_fft/2⌋ on both sides)."""
        return 1 + (length + 2 * (self.n_fft // 2) - self.n_fft) // self.hop

    def _window_on(self, device: torch.device) -> Tensor:
        # (n_fft,) float32; periodic Hann is torch's default and what TimeVQVAE-2024 / ST-Diff use.
        if device not in self._windows:
            if self.window == "hann":
                win = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float32, device=device)
            else:
                win = torch.ones(self.n_fft, dtype=torch.float32, device=device)
            self._windows[device] = win
        return self._windows[device]

    # -------------------------------------------------------------------------------------------- transforms
    def forward(self, x: Tensor) -> Tensor:
        """(B, K, L) series → (B, 2K, F, T) float32 spectrogram; channel 2k = Re, 2k + 1 = Im of covariate k."""
        if x.dim() != 3:
            raise ValueError(f"BandSTFT.forward: expected x of shape (B, K, L), got {tuple(x.shape)}")
        batch, channels, length = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = x.float().reshape(batch * channels, length)  # (B·K, L)
            spec = torch.stft(flat, self.n_fft, hop_length=self.hop, win_length=self.n_fft,
                              window=self._window_on(x.device), center=True, pad_mode="reflect",
                              normalized=self.normalized, onesided=True, return_complex=True)  # (B·K, F, T) complex
            parts = torch.view_as_real(spec)  # (B·K, F, T, 2)
            frames = parts.shape[2]
            # (B, K, F, T, 2) → (B, K, 2, F, T) → (B, 2K, F, T): Re/Im of one covariate are adjacent channels.
            parts = parts.reshape(batch, channels, self.bins, frames, 2).permute(0, 1, 4, 2, 3)
            return parts.reshape(batch, 2 * channels, self.bins, frames).contiguous()

    __call__ = forward

    def inverse(self, u: Tensor, length: int) -> Tensor:
        """(B, 2K, F, T) spectrogram → (B, K, length) float32 series (ISTFT with ``length=``, exact for odd L)."""
        if u.dim() != 4 or u.shape[1] % 2 or u.shape[2] != self.bins:
            raise ValueError(f"BandSTFT.inverse: expected u of shape (B, 2K, {self.bins}, T), got {tuple(u.shape)}")
        batch, two_k, bins, frames = u.shape
        channels = two_k // 2
        with torch.autocast(device_type=u.device.type, enabled=False):
            # (B, 2K, F, T) → (B, K, 2, F, T) → (B·K, F, T, 2), contiguous so view_as_complex sees stride-1 pairs.
            parts = u.float().reshape(batch, channels, 2, bins, frames).permute(0, 1, 3, 4, 2)
            spec = torch.view_as_complex(parts.reshape(batch * channels, bins, frames, 2).contiguous())
            series = torch.istft(spec, self.n_fft, hop_length=self.hop, win_length=self.n_fft,
                                 window=self._window_on(u.device), center=True, normalized=self.normalized,
                                 onesided=True, length=length)  # (B·K, L)
            return series.reshape(batch, channels, length)

    # ------------------------------------------------------------------------------------------------- bands
    def _check_cut(self, cut: int) -> None:
        # Both bands must be non-empty, otherwise the split is a silent no-op.
        if not 1 <= cut < self.bins:
            raise ValueError(f"band cut must satisfy 1 <= cut < F={self.bins}, got cut={cut}")

    def keep_bands(self, u: Tensor, band: Literal["lf", "hf"], cut: int = 1) -> Tensor:
        """Same shape as u, with the other band's bins zeroed: LF keeps bins [0, cut), HF keeps bins [cut, F)."""
        self._check_cut(cut)
        if band not in ("lf", "hf"):
            raise ValueError(f"band must be 'lf' or 'hf', got {band!r}")
        keep = torch.zeros(u.shape[-2], 1, dtype=u.dtype, device=u.device)  # (F, 1), broadcast over T
        if band == "lf":
            keep[:cut] = 1
        else:
            keep[cut:] = 1
        return u * keep

    def band_series(self, x: Tensor, cut: int = 1) -> tuple[Tensor, Tensor]:
        """(x_lf, x_hf), each (B, K, L) float32, with x_lf + x_hf = x up to float error (ISTFT is linear)."""
        length = x.shape[-1]
        u = self.forward(x)  # (B, 2K, F, T)
        x_lf = self.inverse(self.keep_bands(u, "lf", cut), length)
        x_hf = self.inverse(self.keep_bands(u, "hf", cut), length)
        return x_lf, x_hf

    # ------------------------------------------------------------------------------------------- validation
    def check_round_trip(self, length: int, channels: int = 1, tol: float = 1e-5) -> float:
        """Max |x − inverse(forward(x))| on a seeded random (2, channels, length) batch.

        Raises:
            ConfigError: naming ``model.n_fft/model.hop`` and the numbers when the error exceeds `tol` or torch
                refuses the inversion (NOLA violated: hop too large for the window, or the series shorter than the
                reflect padding).
        """
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, channels, length, generator=gen)  # (2, K, L)
        where = (f"model.n_fft/model.hop: STFT round trip fails for n_fft={self.n_fft}, hop={self.hop}, "
                 f"window={self.window!r}, normalized={self.normalized}, length={length}")
        try:
            error = (self.inverse(self.forward(x), length) - x).abs().max().item()
        except RuntimeError as err:  # torch refuses hop > n_fft, a zero overlap-add envelope, or too short a series
            raise ConfigError(f"{where}: {_torch_reason(err)}") from None
        if not error <= tol:  # also catches NaN
            raise ConfigError(f"{where}: max abs error {error:.3g} > tol {tol:.3g}")
        return error


def _torch_reason(err: RuntimeError) -> str:
    """A short reason from torch's stft/istft error (which starts with a long repr of the call)."""
    text = " ".join(str(err).split())
    if "window overlap add min" in text:
        return ("the window's overlap-add envelope is zero somewhere (NOLA violated); "
                "use a smaller hop (e.g. hop <= n_fft // 2 for Hann)")
    if "hop_length <= win_length" in text:
        return "hop must not exceed n_fft"
    if "Padding size" in text:
        return "the series is too short for center=True reflect padding (need length > n_fft // 2)"
    return text[-200:]
