"""Vector quantiser with an EMA codebook, k-means init and stochastic code sampling (TimeVQVAE / NM-VQTSG / TimeVQVDM).

Shape legend: B batch · N tokens per sample · d code dimension · C num_codes (codebook size) · M = B·N flattened
tokens.

models.md §5 "Quantiser": Euclidean nearest neighbour, codebook updated by EMA (decay 0.8, ε = 1e-5, Laplace
smoothing), k-means init (10 iterations) on the first training batch, no dead-code restarts, straight-through
estimator, commitment loss MSE(sg[q], z)·β. The codebook is a buffer: it gets no gradient and only moves by EMA.

Distributed training (models.md §5 "Pitfalls"): when ``torch.distributed`` is initialised the k-means init runs on
rank 0 and is broadcast, and the per-code counts and sums are all-reduced before every EMA update, so all ranks
compute the identical codebook (DDP's buffer broadcast would otherwise keep rank 0's statistics only).

§6 (NM-VQTSG): `sample_codes` draws each token from softmax_k(−‖z − e_k‖² / τ) — the *squared* distance of the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VQOutput", "VectorQuantizer", "kmeans", "squared_distances"]

KMEANS_SEED = 0  # fixed seed of the k-means centroid draw, so the init depends on the batch only


@dataclass
class VQOutput:
    quantized: Tensor    # (B, N, d) straight-through: z + (q − z).detach(), in z's dtype
    indices: Tensor      # (B, N) int64 nearest codes
    commit_loss: Tensor  # () float32: commitment · MSE(q.detach(), z)
    perplexity: Tensor   # () float32, detached: exp(entropy of this batch's code usage)


def squared_distances(z: Tensor, codebook: Tensor) -> Tensor:
    """(M, d), (C, d) → (M, C) squared Euclidean distances ‖z‖² − 2 z·e + ‖e‖², in float32 outside autocast."""
    with torch.autocast(device_type=z.device.type, enabled=False):
        z, codebook = z.float(), codebook.float()
        cross = z @ codebook.t()  # (M, C)
        return z.pow(2).sum(1, keepdim=True) - 2 * cross + codebook.pow(2).sum(1)[None, :]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def kmeans(points: Tensor, num_codes: int, iters: int, seed: int = KMEANS_SEED) -> Tensor:
    """Lloyd's k-means on (M, d) points → (C, d) float32 centroids; deterministic for given points and seed.

    Initial centroids are random rows of `points` drawn with a CPU generator seeded with `seed` (without
    replacement when M >= C). A cluster that loses all its points keeps its previous centroid.
    """
    points = points.detach().float()
    count = points.shape[0]
    gen = torch.Generator().manual_seed(seed)
    if count >= num_codes:
        rows = torch.randperm(count, generator=gen)[:num_codes]
    else:
        rows = torch.randint(count, (num_codes,), generator=gen)
    centroids = points[rows.to(points.device)].clone()  # (C, d)
    for _ in range(iters):
        assign = squared_distances(points, centroids).argmin(1)  # (M,)
        counts = torch.bincount(assign, minlength=num_codes).float()  # (C,)
        sums = torch.zeros_like(centroids).index_add_(0, assign, points)  # (C, d)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
    return centroids


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantiser of (B, N, d) latents onto an EMA-updated (num_codes, d) codebook."""

    def __init__(self, num_codes: int, dim: int, *, decay: float = 0.8, eps: float = 1e-5, kmeans_iters: int = 10,
                 commitment: float = 1.0) -> None:
        super().__init__()
        if num_codes < 1 or dim < 1:
            raise ValueError(f"VectorQuantizer: num_codes and dim must be >= 1, got {num_codes}, {dim}")
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"VectorQuantizer: decay must be in [0, 1), got {decay}")
        self.num_codes = num_codes
        self.dim = dim
        self.decay = decay
        self.eps = eps
        self.kmeans_iters = kmeans_iters
        self.commitment = commitment
        # All persistent, so a checkpoint restores the codebook, its EMA statistics and whether k-means already ran.
        self.register_buffer("codebook", torch.randn(num_codes, dim))      # (C, d)
        self.register_buffer("ema_count", torch.ones(num_codes))           # (C,)
        self.register_buffer("ema_sum", self.codebook.clone())             # (C, d)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.uint8))  # uint8: every dist backend has it

    def extra_repr(self) -> str:
        return (f"num_codes={self.num_codes}, dim={self.dim}, decay={self.decay}, eps={self.eps}, "
                f"kmeans_iters={self.kmeans_iters}, commitment={self.commitment}")

    # ---------------------------------------------------------------------------------------------- lookups
    def _flat(self, z: Tensor) -> Tensor:
        if z.dim() != 3 or z.shape[-1] != self.dim:
            raise ValueError(f"VectorQuantizer: expected z of shape (B, N, {self.dim}), got {tuple(z.shape)}")
        return z.reshape(-1, self.dim)  # (M, d)

    def nearest(self, z: Tensor) -> Tensor:
        """(B, N, d) → (B, N) int64 index of the nearest code (squared Euclidean distance)."""
        flat = self._flat(z).detach()
        return squared_distances(flat, self.codebook).argmin(1).view(z.shape[:2])

    def lookup(self, indices: Tensor) -> Tensor:
        """(...) integer code indices → (...,  d) float32 code vectors."""
        return F.embedding(indices.long(), self.codebook.float())

    @torch.no_grad()
    def sample_codes(self, z: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
        """Stochastic VQ (NM-VQTSG): (B, N, d) → (B, N) int64, each token ~ softmax_k(−‖z − e_k‖² / tau).

        tau → 0 gives `nearest`; large tau spreads the draws over the codebook. `generator` must live on z's device.
        """
        if not tau > 0:
            raise ValueError(f"sample_codes: tau must be > 0, got {tau}")
        logits = -squared_distances(self._flat(z), self.codebook) / tau  # (M, C)
        probs = torch.softmax(logits, dim=1)  # softmax subtracts the row max, so tiny tau does not overflow
        return torch.multinomial(probs, 1, generator=generator).view(z.shape[:2])

    # ---------------------------------------------------------------------------------------------- forward
    def forward(self, z: Tensor) -> VQOutput:
        """Quantise (B, N, d) latents; in training mode also (k-means-init and) EMA-update the codebook."""
        flat = self._flat(z).float()  # (M, d)
        if self.training:
            if not bool(self.initialised):
                self._init_codebook(flat)
        indices = squared_distances(flat.detach(), self.codebook).argmin(1)  # (M,) against the pre-update codebook
        counts = torch.bincount(indices, minlength=self.num_codes).float()  # (C,) local usage
        # (B, N, d) float32 codes of the pre-update codebook (gathering copies, so the update below cannot alter q).
        q = self.codebook.float()[indices].view(z.shape)
        if self.training:
            self._ema_update(flat.detach(), indices, counts)

        commit_loss = self.commitment * F.mse_loss(q.detach(), z.float())
        quantized = z + (q.to(z.dtype) - z).detach()  # straight-through: d quantized / d z = identity
        return VQOutput(quantized=quantized, indices=indices.view(z.shape[:2]), commit_loss=commit_loss,
                        perplexity=self._perplexity(counts))

    @staticmethod
    def _perplexity(counts: Tensor) -> Tensor:
        probs = counts / counts.sum().clamp_min(1.0)  # (C,)
        return torch.exp(-(probs * torch.log(probs + 1e-10)).sum()).detach()

    # ------------------------------------------------------------------------------------------ EMA updates
    @torch.no_grad()
    def _init_codebook(self, flat: Tensor) -> None:
        """k-means on the first training batch (rank 0 only when distributed, then broadcast to every rank)."""
        if not _distributed() or dist.get_rank() == 0:
            self.codebook.copy_(kmeans(flat, self.num_codes, self.kmeans_iters))
        if _distributed():
            dist.broadcast(self.codebook, src=0)
        # EMA state consistent with the init: count 1 per code, sum = code (so codebook = sum / count).
        self.ema_count.fill_(1.0)
        self.ema_sum.copy_(self.codebook)
        self.initialised.fill_(1)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, indices: Tensor, counts: Tensor) -> None:
        """EMA of per-code counts and sums (pooled over ranks), Laplace-smoothed, → codebook. float32 throughout."""
        sums = torch.zeros(self.num_codes, self.dim, dtype=torch.float32, device=flat.device)
        sums.index_add_(0, indices, flat)  # (C, d) sum of the vectors assigned to each code
        counts = counts.clone()  # (C,) the caller keeps the local counts for the perplexity
        if _distributed() and dist.get_world_size() > 1:
            # Pool the statistics so every rank applies the identical update.
            dist.all_reduce(counts, op=dist.ReduceOp.SUM)
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
        ema_count = self.ema_count.float() * self.decay + counts * (1.0 - self.decay)  # (C,)
        ema_sum = self.ema_sum.float() * self.decay + sums * (1.0 - self.decay)  # (C, d)
        total = ema_count.sum()
        smoothed = (ema_count + self.eps) / (total + self.num_codes * self.eps) * total  # (C,) never zero
        self.ema_count.copy_(ema_count)
        self.ema_sum.copy_(ema_sum)
        self.codebook.copy_(ema_sum / smoothed[:, None])
