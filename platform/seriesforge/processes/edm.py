"""EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models"), as TimeLDM stage 2.

Shape legend: B batch · N sampling steps; ``(B, ...)`` means "batch first, anything after" (TimeLDM: flattened
latents (B, L·D_tok); the process is element-wise, so any trailing shape works).

Continuous noise level σ: x_σ = x0 + σ · ε. The raw network F is wrapped by the preconditioning of EDM Table 1,

    D(x; σ) = c_skip(σ) · x + c_out(σ) · F(c_in(σ) · x, c_noise(σ)),
    c_skip = σ_d² / (σ² + σ_d²),  c_out = σ · σ_d / sqrt(σ² + σ_d²),  c_in = 1 / sqrt(σ² + σ_d²),  c_noise = ln σ / 4,

trained with ln σ ~ N(P_mean, P_std²) and weight λ(σ) = (σ² + σ_d²) / (σ · σ_d)², and sampled with the Heun
sampler of EDM Algorithm 2 (stochastic churn). The raw network is passed into each call as
``net_fn(x_in (B, ...), c_noise (B,)) -> F (B, ...)`` and never stored, so one process object serves every family.

Example:
    >>> edm = EDM()
    >>> loss = edm.training_loss(lambda x, c: mlp(x, c), z)                       # doctest: +SKIP
    >>> z_hat = edm.sample(lambda x, c: mlp(x, c), torch.randn_like(z), steps=50)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

__all__ = ["NetFn", "EDM"]

NetFn = Callable[[Tensor, Tensor], Tensor]


def _expand(values: Tensor, like: Tensor) -> Tensor:
    """Broadcast per-sample values (B,) against a (B, ...) tensor."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))  # (B, 1, ..., 1)


def _draw_normal(shape: torch.Size | tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move to the data's device.
    draw_device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=like.dtype).to(like.device)


class EDM:
    """σ-parameterised diffusion with EDM preconditioning, loss weighting and Heun sampler."""

    def __init__(
        self,
        sigma_data: float = 0.5,
        p_mean: float = -1.2,
        p_std: float = 1.2,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        rho: float = 7.0,
        s_churn: float = 1.0,
        s_tmin: float = 0.0,
        s_tmax: float = math.inf,
        s_noise: float = 1.0,
    ) -> None:
        """Store the constants (TimeLDM / EDM defaults).

        Args:
            sigma_data: σ_d, the assumed standard deviation of the data (> 0).
            p_mean: Mean of ln σ at training time.
            p_std: Standard deviation of ln σ at training time (> 0).
            sigma_min: Smallest non-zero σ of the sampling grid (> 0).
            sigma_max: Largest σ; sampling starts from σ_max · noise (> sigma_min).
            rho: ρ of the sampling grid (> 0); larger values spend more steps at small σ.
            s_churn: Total churn S_churn (≥ 0); per step γ = min(S_churn / N, √2 − 1). 0 = deterministic Heun.
            s_tmin: Churn is applied only for s_tmin ≤ σ_i ≤ s_tmax.
            s_tmax: See ``s_tmin``.
            s_noise: Scale of the churn noise S_noise (≥ 0).

        Raises:
            ValueError: naming the offending parameter.
        """
        checks = {
            "sigma_data": sigma_data > 0,
            "p_std": p_std > 0,
            "sigma_min": sigma_min > 0,
            "sigma_max": sigma_max > sigma_min,
            "rho": rho > 0,
            "s_churn": s_churn >= 0,
            "s_tmax": s_tmax >= s_tmin,
            "s_noise": s_noise >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"EDM: invalid {name}={locals()[name]} (see the constructor docstring for the range)")
        self.sigma_data, self.p_mean, self.p_std = sigma_data, p_mean, p_std
        self.sigma_min, self.sigma_max, self.rho = sigma_min, sigma_max, rho
        self.s_churn, self.s_tmin, self.s_tmax, self.s_noise = s_churn, s_tmin, s_tmax, s_noise

    def __repr__(self) -> str:
        return (
            f"EDM(sigma_data={self.sigma_data}, sigma_min={self.sigma_min}, sigma_max={self.sigma_max}, "
            f"rho={self.rho}, s_churn={self.s_churn})"
        )

    # ----- preconditioning ------------------------------------------------------------------------------------

    def preconditioning(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(c_skip, c_out, c_in, c_noise) for noise levels σ (B,), each of shape (B,)."""
        sd2 = self.sigma_data**2
        total = sigma**2 + sd2                                          # (B,)
        return sd2 / total, sigma * self.sigma_data / total.sqrt(), 1 / total.sqrt(), sigma.log() / 4

    def denoise(self, net_fn: NetFn, x: Tensor, sigma: Tensor | float) -> Tensor:
        """D(x; σ) = c_skip · x + c_out · F(c_in · x, c_noise).

        Args:
            net_fn: Raw network ``(x_in (B, ...), c_noise (B,)) -> F (B, ...)``.
            x: Noisy input x0 + σ · ε, shape (B, ...).
            sigma: σ > 0, a float or a tensor (B,).

        Returns:
            Denoised estimate of x0, shape and dtype of ``x``.
        """
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])  # (B,)
        c_skip, c_out, c_in, c_noise = self.preconditioning(sigma)     # each (B,)
        out = net_fn(_expand(c_in, x) * x, c_noise)                     # (B, ...)
        return _expand(c_skip, x) * x + _expand(c_out, x) * out.to(x.dtype)

    # ----- training -------------------------------------------------------------------------------------------

    def sample_sigma(
        self, batch: int, *, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Training noise levels σ = exp(P_mean + P_std · n), n ~ N(0, 1); float32 (B,) on ``device``."""
        draw_device = generator.device if generator is not None else device
        log_sigma = self.p_mean + self.p_std * torch.randn(batch, generator=generator, device=draw_device)  # (B,)
        sigma = log_sigma.exp()
        return sigma.to(device) if device is not None else sigma

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """λ(σ) = (σ² + σ_d²) / (σ · σ_d)², shape of ``sigma``."""
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def training_loss(self, net_fn: NetFn, x0: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Weighted denoising loss mean(λ(σ) · (D(x0 + σε; σ) − x0)²) over all elements.

        Args:
            net_fn: Raw network ``(x_in (B, ...), c_noise (B,)) -> F (B, ...)``.
            x0: Clean data (B, ...).
            generator: Optional RNG for σ then ε; the global RNG otherwise.

        Returns:
            Scalar loss (differentiable w.r.t. the network's parameters). Equals the effective-target MSE
            E‖F − (x0 − c_skip · x) / c_out‖² since λ · c_out² = 1.
        """
        sigma = self.sample_sigma(x0.shape[0], device=x0.device, generator=generator).to(x0.dtype)  # (B,)
        noise = _draw_normal(x0.shape, x0, generator)                   # (B, ...)
        x_noisy = x0 + _expand(sigma, x0) * noise                       # (B, ...)
        denoised = self.denoise(net_fn, x_noisy, sigma)                 # (B, ...)
        return (_expand(self.loss_weight(sigma), x0) * (denoised - x0) ** 2).mean()

    # ----- sampling -------------------------------------------------------------------------------------------

    def sigma_steps(self, steps: int) -> list[float]:
        """σ_0 = σ_max > … > σ_{N−1} = σ_min (EDM eq. 5, ρ-spaced), then σ_N = 0; N + 1 floats."""
        if int(steps) != steps or steps < 1:
            raise ValueError(f"EDM.sample: steps must be an integer >= 1, got steps={steps}")
        if steps == 1:  # eq. 5 divides by N − 1: a single step goes straight from σ_max to 0
            return [float(self.sigma_max), 0.0]
        hi, lo = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        return [(hi + i / (steps - 1) * (lo - hi)) ** self.rho for i in range(steps)] + [0.0]

    def _churn_gamma(self, sigma: float, steps: int) -> float:
        if self.s_tmin <= sigma <= self.s_tmax:
            return min(self.s_churn / steps, math.sqrt(2.0) - 1.0)
        return 0.0

    @torch.no_grad()
    def sample(
        self,
        net_fn: NetFn,
        noise: Tensor,
        *,
        steps: int = 50,
        generator: torch.Generator | None = None,
        progress: Callable[[int], object] | None = None,
    ) -> Tensor:
        """EDM Algorithm 2: Heun steps with stochastic churn on the ρ-spaced grid; Euler on the last step to σ = 0.

        Network evaluations: 2 · steps − 1. Runs under ``torch.no_grad``.

        Args:
            net_fn: Raw network ``(x_in (B, ...), c_noise (B,)) -> F (B, ...)``.
            noise: Standard normal ε (B, ...); sampling starts at x = σ_max · ε.
            steps: Number of steps N (≥ 1).
            generator: Optional RNG for the churn noise.
            progress: Optional callable, called with the step index (0 … N−1) after each step.

        Returns:
            x̂0, shape and dtype of ``noise``.

        Raises:
            ValueError: for ``steps`` < 1.
        """
        sigmas = self.sigma_steps(steps)                                # N + 1 floats, last 0
        x = noise * sigmas[0]                                           # (B, ...)
        for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:])):
            # Churn: raise the noise level to σ̂ = (1 + γ) σ by adding fresh noise of variance σ̂² − σ².
            sigma_hat = sigma * (1.0 + self._churn_gamma(sigma, steps))
            if sigma_hat > sigma:
                extra = math.sqrt(sigma_hat**2 - sigma**2) * self.s_noise
                x = x + extra * _draw_normal(x.shape, x, generator)     # (B, ...)
            slope = (x - self.denoise(net_fn, x, sigma_hat)) / sigma_hat  # dx/dσ at σ̂, (B, ...)
            x_next = x + (sigma_next - sigma_hat) * slope               # Euler predictor
            if sigma_next > 0:
                # Heun corrector (trapezoid); skipped at σ = 0, where dx/dσ = (x − D) / σ is undefined.
                slope_next = (x_next - self.denoise(net_fn, x_next, sigma_next)) / sigma_next
                x_next = x + (sigma_next - sigma_hat) * 0.5 * (slope + slope_next)
            x = x_next
            if progress is not None:
                progress(i)
        return x

    @staticmethod
    def evaluations(steps: int) -> int:
        """Number of ``net_fn`` calls ``sample`` makes: Heun on every step but the last."""
        return 2 * steps - 1
