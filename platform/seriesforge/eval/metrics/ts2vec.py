"""TS2Vec encoder and Context-FID (metrics.md §3).

Design follows zhihanyue/ts2vec (MIT), reimplemented (attribution: Zhihan Yue et al., TS2Vec, AAAI 2022).
Mirrored files: `ts2vec.py` (fit loop, random cropping, full-series encoding), `models/encoder.py` (TSEncoder,
binomial timestamp mask), `models/dilated_conv.py` (SamePadConv / ConvBlock / DilatedConvEncoder) and
`models/losses.py` (hierarchical contrastive loss). Context-FID
itself mirrors Diffusion-TS `Utils/context_fid.py`: a fresh TS2Vec(output_dims 320, batch 8, lr 1e-3,
max_train_length 3000) fitted on the real windows, `encoding_window='full_series'` embeddings, FID of the two sets.

Architecture: Linear(K → hidden 64) → binomial timestamp mask (p = 0.5, training only) → `depth` residual blocks
(GELU → conv(k 3, dilation 2^i) → GELU → conv, same-length padding) plus a final block to `output_dims` whose
residual goes through a 1×1 projection → dropout 0.1. Loss: hierarchical contrastive (instance + temporal, α = 0.5,
max-pool by 2 between levels). Encoding uses SWA-averaged weights (the initial weights count as the first average,
as in the reference).

decision: inputs must be NaN-free (the reference's NaN masking and variable-length centring are not needed for
fixed-length windows), so NaN raises ValueError instead.
decision: the reference splits series of length ≥ 2·max_train_length into NaN-padded sections before training; here
only its per-batch random window of max_train_length is kept (the section split never triggers for the suite's
window lengths, all ≪ 6000).
decision: randomness (init, dropout) uses torch's global RNG inside `torch.random.fork_rng`, re-seeded from `seed`,
so the caller's RNG state is untouched; crops, masks and shuffling use `np.random.default_rng(seed)`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel

from .frechet import frechet_distance

MASK_KEEP_PROBABILITY = 0.5  # binomial timestamp mask (reference `generate_binomial_mask`, p = 0.5)
ENCODE_BATCH = 256  # encoding is per-window (eval mode), so the batch size only affects speed


def default_n_iters(n_values: int) -> int:
    """TS2Vec's default budget: 200 iterations when N·L·K ≤ 100 000 values, else 600."""
    return 200 if n_values <= 100_000 else 600


class _SamePadConv(nn.Module):
    """Dilated Conv1d whose output has the input's length (one trailing step dropped for even receptive fields)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        receptive_field = (kernel_size - 1) * dilation + 1
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=receptive_field // 2, dilation=dilation)
        self.trim = 1 if receptive_field % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C', T)
        out = self.conv(x)
        return out[:, :, : out.size(2) - self.trim]


class _ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, final: bool):
        super().__init__()
        self.conv1 = _SamePadConv(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = _SamePadConv(out_channels, out_channels, kernel_size, dilation)
        needs_projection = in_channels != out_channels or final
        self.projector = nn.Conv1d(in_channels, out_channels, 1) if needs_projection else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        residual = x if self.projector is None else self.projector(x)
        return self.conv2(F.gelu(self.conv1(F.gelu(x)))) + residual


class TS2VecEncoder(nn.Module):
    """Timestamp-level encoder: (B, T, K) windows → (B, T, output_dims) representations."""

    def __init__(self, input_dims: int, output_dims: int = 320, hidden_dims: int = 64, depth: int = 10,
                 kernel_size: int = 3):
        super().__init__()
        self.input_fc = nn.Linear(input_dims, hidden_dims)
        widths = [hidden_dims] * depth + [output_dims]
        self.blocks = nn.Sequential(*[
            _ResidualBlock(widths[i - 1] if i > 0 else hidden_dims, widths[i], kernel_size, dilation=2 ** i,
                           final=(i == len(widths) - 1))
            for i in range(len(widths))
        ])
        self.repr_dropout = nn.Dropout(p=0.1)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        h = self.input_fc(x)  # (B, T, hidden)
        if keep is not None:  # (B, T) bool: masked timestamps get a zero latent vector
            h = h * keep.unsqueeze(-1).to(h.dtype)
        h = self.blocks(h.transpose(1, 2))  # (B, out, T)
        return self.repr_dropout(h).transpose(1, 2)  # (B, T, out)


def _contrastive_ce(z: torch.Tensor, n: int) -> torch.Tensor:
    """InfoNCE over rows of z (G, 2n, C): row i's positive is row i ± n, negatives are all other rows."""
    sim = z @ z.transpose(1, 2)  # (G, 2n, 2n)
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = sim.masked_fill(eye, float("-inf"))  # a row is never its own negative
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)  # (2n,)
    return F.cross_entropy(logits.reshape(-1, 2 * n), partner.repeat(z.size(0)))


def instance_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Same timestamp, other windows of the batch are negatives; z1, z2: (B, T, C)."""
    if z1.size(0) == 1:
        return z1.new_tensor(0.0)
    z = torch.cat([z1, z2], dim=0).transpose(0, 1)  # (T, 2B, C)
    return _contrastive_ce(z, z1.size(0))


def temporal_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Same window, other timestamps are negatives; z1, z2: (B, T, C)."""
    if z1.size(1) == 1:
        return z1.new_tensor(0.0)
    z = torch.cat([z1, z2], dim=1)  # (B, 2T, C)
    return _contrastive_ce(z, z1.size(1))


def hierarchical_contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 0.5,
                                  temporal_unit: int = 0) -> torch.Tensor:
    """Average over scales of α·instance + (1 − α)·temporal loss, halving T by max-pooling between scales."""
    loss = z1.new_tensor(0.0)
    levels = 0
    while z1.size(1) > 1:
        loss = loss + alpha * instance_contrastive_loss(z1, z2)
        if levels >= temporal_unit:
            loss = loss + (1 - alpha) * temporal_contrastive_loss(z1, z2)
        levels += 1
        z1 = F.max_pool1d(z1.transpose(1, 2), kernel_size=2).transpose(1, 2)  # (B, ⌊T/2⌋, C)
        z2 = F.max_pool1d(z2.transpose(1, 2), kernel_size=2).transpose(1, 2)
    if z1.size(1) == 1:
        loss = loss + alpha * instance_contrastive_loss(z1, z2)
        levels += 1
    return loss / levels


@contextlib.contextmanager
def _seeded_torch(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for the block and restore the caller's state afterwards."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class TS2Vec:
    """TS2Vec trainer: AdamW on the raw encoder, SWA-averaged copy used for encoding."""

    def __init__(self, input_dims: int, *, output_dims: int = 320, hidden_dims: int = 64, depth: int = 10,
                 kernel_size: int = 3, lr: float = 1e-3, batch_size: int = 8, max_train_length: int = 3000,
                 temporal_unit: int = 0, device: str = "cpu", seed: int = 0):
        self.device = torch.device(device)
        self.lr, self.batch_size = lr, batch_size
        self.max_train_length, self.temporal_unit = max_train_length, temporal_unit
        self.seed = seed
        with _seeded_torch(seed, self.device):
            self.encoder = TS2VecEncoder(input_dims, output_dims, hidden_dims, depth, kernel_size).to(self.device)
        self.averaged = AveragedModel(self.encoder)
        self.averaged.update_parameters(self.encoder)  # the initial weights are the first SWA sample

    def fit(self, windows: np.ndarray, n_iters: int | None = None) -> list[float]:
        """Train on `windows` (N, L, K) for n_iters steps (default rule if None); returns the per-step losses."""
        if n_iters is None:
            n_iters = default_n_iters(windows.size)
        rng = np.random.default_rng(self.seed)
        data = torch.from_numpy(np.array(windows, dtype=np.float32))  # a copy: Ray hands out read-only arrays
        optimizer = torch.optim.AdamW(self.encoder.parameters(), lr=self.lr)
        self.encoder.train()
        losses: list[float] = []
        with _seeded_torch(self.seed + 1, self.device):  # dropout draws
            for batch in self._batches(data, rng, n_iters):
                optimizer.zero_grad()
                loss = self._step_loss(batch.to(self.device), rng)
                loss.backward()
                optimizer.step()
                self.averaged.update_parameters(self.encoder)
                losses.append(float(loss.item()))
        return losses

    def _batches(self, data: torch.Tensor, rng: np.random.Generator, n_iters: int) -> Iterator[torch.Tensor]:
        """Shuffled epochs with drop_last, batch = min(batch_size, N), until n_iters batches were yielded."""
        size = min(self.batch_size, len(data))
        done = 0
        while done < n_iters:
            order = rng.permutation(len(data))
            for start in range(0, len(order) - size + 1, size):
                if done >= n_iters:
                    return
                yield self._random_window(data[order[start:start + size]], rng)  # (B, L', K)
                done += 1

    def _random_window(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        length = batch.size(1)
        if length <= self.max_train_length:
            return batch
        offset = int(rng.integers(length - self.max_train_length + 1))
        return batch[:, offset:offset + self.max_train_length]

    def _step_loss(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Two overlapping random crops per window; the contrast runs on their common part (length crop_l)."""
        n, length = x.size(0), x.size(1)
        crop_l = int(rng.integers(2 ** (self.temporal_unit + 1), length + 1))
        crop_left = int(rng.integers(length - crop_l + 1))
        crop_right = crop_left + crop_l
        crop_eleft = int(rng.integers(crop_left + 1))
        crop_eright = int(rng.integers(crop_right, length + 1))
        offsets = rng.integers(-crop_eleft, length - crop_eright + 1, size=n)  # per-window shift
        view1 = _take_per_row(x, offsets + crop_eleft, crop_right - crop_eleft)  # ends with the common part
        view2 = _take_per_row(x, offsets + crop_left, crop_eright - crop_left)  # starts with the common part
        out1 = self.encoder(view1, self._binomial_mask(view1, rng))[:, -crop_l:]  # (B, crop_l, out)
        out2 = self.encoder(view2, self._binomial_mask(view2, rng))[:, :crop_l]
        return hierarchical_contrastive_loss(out1, out2, temporal_unit=self.temporal_unit)

    def _binomial_mask(self, view: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        keep = rng.random((view.size(0), view.size(1))) < MASK_KEEP_PROBABILITY  # (B, T)
        return torch.from_numpy(keep).to(self.device)

    @torch.no_grad()
    def encode_full_series(self, windows: np.ndarray) -> np.ndarray:
        """(N, L, K) → (N, output_dims): SWA encoder, no mask, max-pooled over time."""
        self.averaged.eval()
        data = torch.from_numpy(np.array(windows, dtype=np.float32))  # a copy: Ray hands out read-only arrays
        parts = []
        for start in range(0, len(data), ENCODE_BATCH):
            out = self.averaged(data[start:start + ENCODE_BATCH].to(self.device))  # (B, L, out)
            parts.append(out.amax(dim=1).cpu())  # (B, out)
        return torch.cat(parts).numpy()


def _take_per_row(x: torch.Tensor, starts: np.ndarray, width: int) -> torch.Tensor:
    """x[b, starts[b] : starts[b] + width] for every row b; x (B, L, K) → (B, width, K)."""
    index = torch.as_tensor(starts, device=x.device).unsqueeze(1) + torch.arange(width, device=x.device)
    return x[torch.arange(x.size(0), device=x.device).unsqueeze(1), index]


def _check_windows(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must be 3-D (N, L, K), got shape {x.shape}")
    if len(x) < 2:
        raise ValueError(f"{name} needs at least 2 windows, got {len(x)}")
    if x.shape[1] < 2:
        raise ValueError(f"{name} windows need length L ≥ 2 for TS2Vec cropping, got {x.shape[1]}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def context_fid(real: np.ndarray, generated: np.ndarray, *, seed: int, n_iters: int | None = None,
                batch_size: int = 8, device: str = "cpu", output_dims: int = 320, hidden_dims: int = 64,
                depth: int = 10) -> dict:
    """Context-FID (metrics.md §3): fit TS2Vec on `real` (N, L, K), FID of full-series embeddings of both sets."""
    real = _check_windows(real, "real")
    generated = _check_windows(generated, "generated")
    if generated.shape[2] != real.shape[2]:
        raise ValueError(f"generated has K={generated.shape[2]} channels, real has K={real.shape[2]}")
    n_iters = default_n_iters(real.size) if n_iters is None else int(n_iters)
    model = TS2Vec(real.shape[2], output_dims=output_dims, hidden_dims=hidden_dims, depth=depth,
                   batch_size=batch_size, device=device, seed=seed)
    losses = model.fit(real, n_iters=n_iters)
    fid = frechet_distance(model.encode_full_series(real), model.encode_full_series(generated))
    return {
        "value": fid["value"],
        "regularized": fid["regularized"],
        "n_iters": n_iters,
        "final_loss": losses[-1] if losses else None,
        "n_real": fid["n_real"],
        "n_generated": fid["n_generated"],
    }
