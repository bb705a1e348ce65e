"""Continuous-time variance-preserving cosine diffusion of TimeVQVDM (VDM-style, ε-prediction, models.md §7).

Shape legend: B batch · C latent channels · W latent length; ``(B, ...)`` means "batch first, anything after" (the
process is element-wise, so any latent layout works).

Forward process for t ∈ [0, 1]:

    z_t = α_t · z_0 + σ_t · ε,   α_t = cos(πt/2),  σ_t = sin(πt/2),  λ_t = log(α_t² / σ_t²)  (log-SNR).

Training draws low-discrepancy times t_i = (u + i/B) mod 1 and minimises the *unweighted* MSE(ε̂, ε) (the VDM ELBO
weight −dλ/dt is dropped, as in the thesis), with class labels replaced by the null class at rate p_uncond.

Sampling is ancestral (thesis Alg. 3–4) on the grid t_i = t_max · i / steps, i = steps … 0, with classifier-free
guidance ε̂ = (1 − w) ε_θ(z, t, ∅) + w ε_θ(z, t, y) and a per-sample std renormalisation of strength γ. With
c = e^{λ_t − λ_s} = (α_t σ_s / (σ_t α_s))² ∈ [0, 1) for s < t:

    μ = (α_s/α_t) (z − (1 − c) σ_t ε̂),   σ²_{s|t} = (1 − c) σ_s²,   z_cfg = μ + σ_{s|t} δ,
    z ← (1 − γ) z_cfg + γ z_cfg / std(z_cfg).

c is computed from the ratio form above, not from λ, so the last step s = 0 (σ_s = 0, λ_s = +∞) gives c = 0 exactly:
μ = (z − σ_t ε̂)/α_t is the x̂_0 prediction and no noise is added.

The network is passed into each call as ``eps_fn(z_t, t, labels)`` and never stored.

Example:
    >>> vdm = CosineVDM()
    >>> loss = vdm.training_loss(lambda z, t, y: net(z, emb(t, y)), z0, labels, null_label=emb.null_class)  # doctest: +SKIP
    >>> z0 = vdm.sample(eps_fn, (1024, 20, 19), labels, null_label=n_classes, steps=128)            # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["EpsFn", "CosineVDM"]

EpsFn = Callable[[Tensor, Tensor, Tensor], Tensor]  # (z_t (B, ...), t (B,), labels (B,) int64) -> ε̂ (B, ...)
Progress = Callable[[int, int], None]
_STD_FLOOR = 1e-12  # keeps the γ renormalisation finite for a constant sample


def _expand(values: Tensor, like: Tensor) -> Tensor:
    """Broadcast per-sample coefficients (B,) against a (B, ...) tensor."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))  # (B, 1, ..., 1)


def _draw(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str,
          dtype: torch.dtype = torch.float32, *, uniform: bool = False) -> Tensor:
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move to the target device.
    draw_device = generator.device if generator is not None else device
    fn = torch.rand if uniform else torch.randn
    return fn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


def _per_sample_std(z: Tensor) -> Tensor:
    """Unbiased std over all non-batch dims, (B, 1, ..., 1); population std when a sample has one element."""
    flat = z.reshape(z.shape[0], -1)                                          # (B, M)
    std = flat.std(dim=1, correction=1 if flat.shape[1] > 1 else 0)           # (B,)
    return _expand(std.clamp_min(_STD_FLOOR), z)


class CosineVDM:
    """VP cosine schedule with low-discrepancy ε-training and the TimeVQVDM ancestral CFG sampler."""

    # ----- schedule -------------------------------------------------------------------------------------------

    def alpha(self, t: Tensor) -> Tensor:
        """α_t = cos(πt/2), same shape as t."""
        return torch.cos(0.5 * math.pi * t)

    def sigma(self, t: Tensor) -> Tensor:
        """σ_t = sin(πt/2), same shape as t."""
        return torch.sin(0.5 * math.pi * t)

    def log_snr(self, t: Tensor) -> Tensor:
        """λ_t = log(α_t² / σ_t²) = −2 log tan(πt/2); +∞ at t = 0."""
        return 2.0 * (torch.log(self.alpha(t)) - torch.log(self.sigma(t)))

    def low_discrepancy_times(self, n: int, *, generator: torch.Generator | None = None,
                              device: torch.device | str | None = None) -> Tensor:
        """t_i = (u + i/n) mod 1 with one shared u ~ U(0, 1): exactly one time per slot [k/n, (k+1)/n), shape (n,)."""
        if n < 1:
            raise ValueError(f"CosineVDM.low_discrepancy_times: n must be >= 1, got n={n}")
        device = device if device is not None else "cpu"
        u = _draw((1,), generator, device, uniform=True)                     # (1,)
        offsets = torch.arange(n, dtype=torch.float32, device=device) / n    # (n,)
        return torch.remainder(u + offsets, 1.0)                             # (n,)

    # ----- training -------------------------------------------------------------------------------------------

    def training_loss(self, eps_fn: EpsFn, z0: Tensor, labels: Tensor, *, null_label: int, p_uncond: float = 0.1,
                      generator: torch.Generator | None = None) -> Tensor:
        """Unweighted ε-prediction loss MSE(eps_fn(z_t, t, labels'), ε).

        Args:
            eps_fn: Network wrapper ``(z_t (B, ...), t (B,), labels (B,) int64) -> ε̂ (B, ...)``.
            z0: Clean (scaled) latents, shape (B, ...).
            labels: Class labels (B,) int; each is replaced by ``null_label`` with probability ``p_uncond``.
            null_label: Index of the null (unconditional) class.
            p_uncond: Class-dropout probability in [0, 1].
            generator: Optional RNG for u (times), then ε, then the class-dropout mask.

        Returns:
            Scalar loss (differentiable w.r.t. the network).
        """
        if not 0.0 <= p_uncond <= 1.0:
            raise ValueError(f"CosineVDM.training_loss: p_uncond must be in [0, 1], got p_uncond={p_uncond}")
        if labels.shape != (z0.shape[0],):
            raise ValueError(f"CosineVDM.training_loss: labels must have shape ({z0.shape[0]},), got "
                             f"{tuple(labels.shape)}")
        batch, device = z0.shape[0], z0.device
        t = self.low_discrepancy_times(batch, generator=generator, device=device)         # (B,)
        noise = _draw(tuple(z0.shape), generator, device, z0.dtype)                       # (B, ...)
        z_t = _expand(self.alpha(t), z0) * z0 + _expand(self.sigma(t), z0) * noise        # (B, ...)
        drop = _draw((batch,), generator, device, uniform=True) < p_uncond                # (B,) bool
        labels = torch.where(drop, torch.full_like(labels, null_label), labels.to(device)).long()
        return F.mse_loss(eps_fn(z_t, t, labels), noise)

    # ----- sampling -------------------------------------------------------------------------------------------

    @staticmethod
    def _guided_eps(eps_fn: EpsFn, z: Tensor, t: Tensor, labels: Tensor, null: Tensor, w: float,
                    all_null: bool) -> Tensor:
        """(1 − w) ε_θ(z, t, ∅) + w ε_θ(z, t, y), calling only the branches whose weight is non-zero."""
        if all_null or w == 1.0:
            return eps_fn(z, t, null if all_null else labels)
        if w == 0.0:
            return eps_fn(z, t, null)
        # One batched call for both branches: (2B, ...) → halves.
        eps = eps_fn(torch.cat([z, z]), torch.cat([t, t]), torch.cat([null, labels]))
        eps_null, eps_cond = eps.chunk(2, dim=0)                              # 2 × (B, ...)
        return (1.0 - w) * eps_null + w * eps_cond

    @torch.no_grad()
    def sample(self, eps_fn: EpsFn, shape: tuple[int, ...], labels: Tensor, *, null_label: int, steps: int,
               t_max: float = 0.99, guidance: float = 1.0, gamma: float = 0.1,
               generator: torch.Generator | None = None, device: torch.device | str = "cpu",
               progress: Progress | None = None) -> Tensor:
        """Ancestral sampling from z ~ N(0, I) at t_max down to t = 0 (thesis Alg. 3–4).

        Args:
            eps_fn: Network wrapper ``(z (B, ...), t (B,), labels (B,) int64) -> ε̂ (B, ...)``.
            shape: Output shape (B, ...).
            labels: Class labels (B,) int; ``null_label`` entries are sampled unconditionally.
            null_label: Index of the null class.
            steps: Number of denoising steps T_s ≥ 1 (thesis: 128 unconditional, 32 conditional).
            t_max: Start time in (0, 1] (thesis: 0.99; 1.0 divides by α ≈ 0 and is kept only for ablations).
            guidance: CFG weight w (1 = plain conditional, thesis conditional: 3.0).
            gamma: Std-renormalisation strength γ in [0, 1] (thesis: 0.1; 0 disables it).
            generator: RNG for the start noise and every step's noise (drawn on its device).
            device: Device of the returned tensor and of every eps_fn call.
            progress: Optional callback ``progress(done_steps, steps)`` after each step.

        Returns:
            z_0, float32 tensor of shape ``shape`` on ``device``.
        """
        if steps < 1 or not 0.0 < t_max <= 1.0 or not 0.0 <= gamma <= 1.0:
            raise ValueError(f"CosineVDM.sample: need steps >= 1, 0 < t_max <= 1, 0 <= gamma <= 1, got "
                             f"steps={steps}, t_max={t_max}, gamma={gamma}")
        batch = shape[0]
        if labels.shape != (batch,):
            raise ValueError(f"CosineVDM.sample: labels must have shape ({batch},), got {tuple(labels.shape)}")
        labels = labels.to(device).long()                                     # (B,)
        null = torch.full_like(labels, null_label)                            # (B,)
        all_null = bool((labels == null_label).all())
        z = _draw(tuple(shape), generator, device)                            # (B, ...) at t_max
        for i in range(steps, 0, -1):
            t, s = t_max * i / steps, t_max * (i - 1) / steps
            t_vec = torch.full((batch,), t, dtype=z.dtype, device=z.device)   # (B,)
            eps = self._guided_eps(eps_fn, z, t_vec, labels, null, float(guidance), all_null)
            z = self._ancestral_step(z, eps, t, s, generator)
            if gamma > 0.0:
                z = (1.0 - gamma) * z + gamma * z / _per_sample_std(z)
            if progress is not None:
                progress(steps - i + 1, steps)
        return z

    @staticmethod
    def _ancestral_step(z: Tensor, eps: Tensor, t: float, s: float, generator: torch.Generator | None) -> Tensor:
        """One step z_t → z_s (s < t) of the ancestral sampler; scalar coefficients in float64."""
        alpha_t, sigma_t = math.cos(0.5 * math.pi * t), math.sin(0.5 * math.pi * t)
        alpha_s, sigma_s = math.cos(0.5 * math.pi * s), math.sin(0.5 * math.pi * s)
        # c = e^{λ_t − λ_s} from the ratio form: exactly 0 at s = 0, where λ_s = +∞.
        c = (alpha_t * sigma_s / (sigma_t * alpha_s)) ** 2
        mu = (alpha_s / alpha_t) * (z - (1.0 - c) * sigma_t * eps)           # (B, ...)
        var = (1.0 - c) * sigma_s ** 2
        if var <= 0.0:
            return mu                                                         # last step: x̂_0, no noise
        return mu + math.sqrt(var) * _draw(tuple(z.shape), generator, z.device, z.dtype)
