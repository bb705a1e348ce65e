"""Discrete Gaussian diffusion (DDPM, Ho et al. 2020) with one noise schedule shared by the DDPM and DDIM samplers.

Shape legend: B batch · N diffusion steps (``num_steps``) · S sampling steps; ``(B, ...)`` means "batch first,
anything after" (the process is element-wise, so latents (B, C, P) and series (B, K, L) both work).

Convention: timestep indices n = 0 … N−1, with n = 0 the least noisy and n = N−1 (close to) pure noise,

    x_n = sqrt(ᾱ_n) · x0 + sqrt(1 − ᾱ_n) · ε,     ε ~ N(0, I),

and the network predicts ε. ``alphas_cumprod`` (ᾱ, shape (N,)) is the single source of truth: ``q_sample``,
``predict_x0``, ``training_loss`` and both samplers read it at call time (ᾱ_{−1} := 1 for "clean"), so replacing it
changes every one of them at once. The network is passed into each call as ``eps_fn(x_n, n (B,) float) -> ε̂`` and
never stored, so one process object serves every family; the network embeds the float index n itself.

Example:
    >>> diffusion = GaussianDiffusion(num_steps=1000, schedule="cosine")
    >>> out = diffusion.training_loss(lambda x, n: net(x, n), x0)                       # doctest: +SKIP
    >>> x0_hat = diffusion.sample(lambda x, n: net(x, n), torch.randn_like(x0), steps=200)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["EpsFn", "DiffusionLoss", "GaussianDiffusion", "cosine_alphas_cumprod"]

EpsFn = Callable[[Tensor, Tensor], Tensor]
Schedule = Literal["cosine", "linear"]
Method = Literal["ddpm", "ddim"]
_METHODS = ("ddim", "ddpm")
_MAX_BETA = 0.999  # Nichol & Dhariwal clip: keeps the last cosine step from being β = 1 (ᾱ exactly 0)


def _expand(values: Tensor, like: Tensor) -> Tensor:
    """Broadcast per-sample coefficients (B,) against a (B, ...) tensor."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))  # (B, 1, ..., 1)


def _draw_normal(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move to the data's device.
    draw_device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=like.dtype).to(like.device)


def _bounded_prediction(x: Tensor, eps: Tensor, ab: float, bound: Tensor | float | None) -> tuple[Tensor, Tensor]:
    """(x̂0, ε̂) at ᾱ = ab; with a bound, x̂0 is clamped to [−bound, bound] and ε̂ made consistent with it."""
    x0_hat = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)            # (B, ...)
    if bound is None:
        return x0_hat, eps
    limit = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
    x0_hat = torch.maximum(torch.minimum(x0_hat, limit), -limit)
    return x0_hat, (x - math.sqrt(ab) * x0_hat) / math.sqrt(1.0 - ab)


def cosine_alphas_cumprod(n: np.ndarray, num_steps: int, s: float) -> np.ndarray:
    """Closed-form cosine ᾱ(n) = f(n) / f(0), f(n) = cos²(((n/N) + s) / (1 + s) · π/2) (float64, unclipped)."""
    def f(u: np.ndarray | float) -> np.ndarray:
        return np.cos((np.asarray(u, dtype=np.float64) / num_steps + s) / (1 + s) * math.pi / 2) ** 2

    return f(n) / f(0.0)


def _cosine_betas(num_steps: int, s: float) -> np.ndarray:
    # β_n = 1 − ᾱ(n+1)/ᾱ(n) so that index n carries ᾱ(n+1): index 0 is already slightly noisy (improved-diffusion).
    grid = cosine_alphas_cumprod(np.arange(num_steps + 1), num_steps, s)  # (N+1,)
    return np.minimum(1.0 - grid[1:] / grid[:-1], _MAX_BETA)              # (N,)


@dataclass
class DiffusionLoss:
    """Everything a family may need to add its own terms on top of the ε-MSE.

    Attributes:
        loss: Scalar MSE(ε̂, ε) over all elements (differentiable w.r.t. the network).
        x_t: Noised input x_n, shape (B, ...).
        t: Timestep indices n, long (B,).
        noise: ε, shape (B, ...).
        eps_hat: Network prediction ε̂, shape (B, ...).
    """

    loss: Tensor
    x_t: Tensor
    t: Tensor
    noise: Tensor
    eps_hat: Tensor


class GaussianDiffusion:
    """Discrete ε-prediction diffusion; one schedule object for training, DDPM and DDIM sampling."""

    def __init__(
        self,
        num_steps: int = 1000,
        schedule: Schedule = "cosine",
        cosine_s: float = 0.008,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        """Build the schedule (computed in float64, stored as float32 CPU tensors, moved to the data's device on use).

        Args:
            num_steps: N, number of diffusion steps (≥ 1).
            schedule: ``"cosine"`` (Nichol & Dhariwal 2021, β clipped at 0.999) or ``"linear"`` (Ho et al. 2020,
                β_n = linspace(beta_start, beta_end, N), not rescaled by 1000/N).
            cosine_s: Offset s of the cosine schedule (≥ 0).
            beta_start: First β of the linear schedule.
            beta_end: Last β of the linear schedule (0 < beta_start ≤ beta_end < 1).

        Raises:
            ValueError: naming the offending parameter.
        """
        if int(num_steps) != num_steps or num_steps < 1:
            raise ValueError(f"GaussianDiffusion: num_steps must be an integer >= 1, got num_steps={num_steps}")
        if schedule == "cosine":
            if cosine_s < 0:
                raise ValueError(f"GaussianDiffusion: cosine_s must be >= 0, got cosine_s={cosine_s}")
            betas = _cosine_betas(int(num_steps), cosine_s)
        elif schedule == "linear":
            if not 0 < beta_start <= beta_end < 1:
                raise ValueError(
                    "GaussianDiffusion: need 0 < beta_start <= beta_end < 1, "
                    f"got beta_start={beta_start}, beta_end={beta_end}"
                )
            betas = np.linspace(beta_start, beta_end, int(num_steps), dtype=np.float64)
        else:
            raise ValueError(f"GaussianDiffusion: schedule must be 'cosine' or 'linear', got schedule={schedule!r}")
        self.num_steps = int(num_steps)
        self.schedule = schedule
        self.cosine_s, self.beta_start, self.beta_end = cosine_s, beta_start, beta_end
        # betas is informational; every computation below reads alphas_cumprod only.
        self.betas = torch.from_numpy(betas).float()                          # (N,)
        self.alphas_cumprod = torch.from_numpy(np.cumprod(1.0 - betas)).float()  # (N,)

    def __repr__(self) -> str:
        return f"GaussianDiffusion(num_steps={self.num_steps}, schedule={self.schedule!r})"

    # ----- forward process ------------------------------------------------------------------------------------

    def _alpha_bar(self, t: Tensor, like: Tensor) -> Tensor:
        """ᾱ_n gathered per sample and broadcast against ``like`` (B, ...)."""
        acp = self.alphas_cumprod.to(like.device)                       # (N,)
        return _expand(acp[t.to(like.device).long()], like)             # (B, 1, ..., 1)

    def sample_timesteps(
        self, batch: int, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Uniform timestep indices n ∈ {0, …, N−1}, long tensor (B,) on ``device`` (drawn on the generator's)."""
        draw_device = generator.device if generator is not None else device
        t = torch.randint(0, self.num_steps, (batch,), generator=generator, device=draw_device)  # (B,)
        return t.to(device) if device is not None else t

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_n = sqrt(ᾱ_n) · x0 + sqrt(1 − ᾱ_n) · ε for x0, noise (B, ...) and indices t (B,)."""
        ab = self._alpha_bar(t, x0)                                     # (B, 1, ..., 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise                 # (B, ...)

    def predict_x0(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Invert ``q_sample``: x̂0 = (x_n − sqrt(1 − ᾱ_n) · ε) / sqrt(ᾱ_n); shapes as in ``q_sample``."""
        ab = self._alpha_bar(t, x_t)                                    # (B, 1, ..., 1)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()                # (B, ...)

    def training_loss(
        self, eps_fn: EpsFn, x0: Tensor, *, generator: torch.Generator | None = None
    ) -> DiffusionLoss:
        """ε-prediction loss MSE(eps_fn(x_n, n), ε) with n uniform and ε ~ N(0, I).

        Args:
            eps_fn: Network wrapper ``(x_n (B, ...), n (B,) float indices 0 … N−1) -> ε̂ (B, ...)``.
            x0: Clean data (B, ...).
            generator: Optional RNG for n then ε (reproducible losses); the global RNG otherwise.

        Returns:
            ``DiffusionLoss`` with the scalar loss and the tensors a family may reuse (e.g. ``predict_x0``).
        """
        t = self.sample_timesteps(x0.shape[0], x0.device, generator)    # (B,) long
        noise = _draw_normal(x0.shape, x0, generator)                   # (B, ...)
        x_t = self.q_sample(x0, t, noise)                               # (B, ...)
        eps_hat = eps_fn(x_t, self._network_time(t, x0))                # (B, ...)
        return DiffusionLoss(F.mse_loss(eps_hat, noise), x_t, t, noise, eps_hat)

    @staticmethod
    def _network_time(t: Tensor, like: Tensor) -> Tensor:
        # float32 at least: bf16 cannot tell index 999 from 1000.
        return t.to(device=like.device, dtype=torch.promote_types(like.dtype, torch.float32))  # (B,)

    # ----- sampling -------------------------------------------------------------------------------------------

    def ddim_timesteps(self, steps: int) -> list[int]:
        """``steps`` indices evenly spaced over [N−1, 0], both ends included, descending (all N when steps = N)."""
        self._check_steps(steps)
        return [int(n) for n in np.round(np.linspace(self.num_steps - 1, 0, steps))]

    def _check_steps(self, steps: int) -> None:
        if int(steps) != steps or not 1 <= steps <= self.num_steps:
            raise ValueError(
                f"GaussianDiffusion.sample: steps must be an integer in [1, {self.num_steps}], got steps={steps}"
            )

    def _alpha_bar_pair(self, n: int, n_prev: int) -> tuple[float, float]:
        # Python floats (float64 arithmetic) read from the live table; index −1 means clean data, ᾱ = 1.
        acp = self.alphas_cumprod
        return float(acp[n]), (float(acp[n_prev]) if n_prev >= 0 else 1.0)

    @torch.no_grad()
    def sample(
        self,
        eps_fn: EpsFn,
        noise: Tensor,
        *,
        method: Method = "ddim",
        steps: int | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        progress: Callable[[int], object] | None = None,
        x0_bound: Tensor | float | None = None,
    ) -> Tensor:
        """Run the reverse process from ``noise`` (taken as x_{N−1}) to x̂0, under ``torch.no_grad``.

        ``ddpm``: ancestral sampling over all N steps with the posterior variance β̃_n = (1 − ᾱ_{n−1}) / (1 − ᾱ_n) · β_n
        (no noise on the last step). ``ddim`` (Song et al. 2021): ``steps`` indices from ``ddim_timesteps``;
        σ_n = eta · sqrt((1 − ᾱ_prev) / (1 − ᾱ_n) · (1 − ᾱ_n / ᾱ_prev)); eta = 0 is deterministic, eta = 1 with
        steps = N is the DDPM sampler again. Network evaluations: N (ddpm) or ``steps`` (ddim).

        Args:
            eps_fn: ``(x (B, ...), n (B,) float indices) -> ε̂``; apply guidance inside it.
            noise: Starting point ~ N(0, I), shape (B, ...).
            method: ``"ddim"`` or ``"ddpm"``.
            steps: Sampling steps S in [1, N]; None means N. ``ddpm`` accepts only None or N.
            eta: DDIM stochasticity (≥ 0); ignored by ``ddpm``, whose variance is fixed to β̃.
            generator: Optional RNG for the injected noise.
            progress: Optional callable, called with the step index (0 … S−1) after each step.
            x0_bound: Optional bound on the predicted x̂0 at every step, a number or a tensor broadcastable to one
                sample (…): x̂0 is clamped to [−bound, bound] and ε̂ recomputed from it (improved-DDPM's
                ``clip_denoised``, generalised). Near the end of the cosine schedule ᾱ ≈ 2.4e-9, so each unit
                of ε error becomes ~2·10⁴ units of x̂0 error; bounding x̂0 by the data's range keeps a slightly
                wrong network from diverging. None: no bound.

        Returns:
            x̂0, shape and dtype of ``noise``.

        Raises:
            ValueError: for an unknown ``method``, ``steps`` outside [1, N] (or ≠ N for ``ddpm``), ``eta`` < 0.
        """
        if method not in _METHODS:
            raise ValueError(f"GaussianDiffusion.sample: method must be one of {sorted(_METHODS)}, got {method!r}")
        steps = self.num_steps if steps is None else steps
        self._check_steps(steps)
        if method == "ddpm" and steps != self.num_steps:
            raise ValueError(
                f"GaussianDiffusion.sample: method='ddpm' runs all steps={self.num_steps}, got steps={steps}; "
                "use method='ddim' for fewer"
            )
        if eta < 0:
            raise ValueError(f"GaussianDiffusion.sample: eta must be >= 0, got eta={eta}")
        timesteps = self.ddim_timesteps(steps)                          # descending, S indices
        step_fn = self._ddpm_step if method == "ddpm" else self._ddim_step
        x = noise                                                       # (B, ...)
        for i, n in enumerate(timesteps):
            n_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            t = self._network_time(torch.full((x.shape[0],), n), x)     # (B,) float index n
            eps = eps_fn(x, t)                                          # (B, ...)
            x = step_fn(x, eps, n, n_prev, eta, generator, x0_bound)    # (B, ...)
            if progress is not None:
                progress(i)
        return x

    def _ddpm_step(
        self, x: Tensor, eps: Tensor, n: int, n_prev: int, eta: float, generator: torch.Generator | None,
        bound: Tensor | float | None,
    ) -> Tensor:
        # x_{n−1} ~ N(μ̃(x̂0, x_n), β̃_n): posterior q(x_{n−1} | x_n, x0) evaluated at x̂0 (Ho et al. eq. 6–7).
        ab, ab_prev = self._alpha_bar_pair(n, n_prev)
        alpha = ab / ab_prev
        beta = 1.0 - alpha
        x0_hat, _ = _bounded_prediction(x, eps, ab, bound)              # (B, ...)
        coef_x0 = beta * math.sqrt(ab_prev) / (1.0 - ab)
        coef_xt = (1.0 - ab_prev) * math.sqrt(alpha) / (1.0 - ab)
        mean = coef_x0 * x0_hat + coef_xt * x                           # (B, ...)
        variance = beta * (1.0 - ab_prev) / (1.0 - ab)                  # β̃_n; 0 on the last step (ᾱ_prev = 1)
        if variance <= 0.0:
            return mean
        return mean + math.sqrt(variance) * _draw_normal(x.shape, x, generator)

    def _ddim_step(
        self, x: Tensor, eps: Tensor, n: int, n_prev: int, eta: float, generator: torch.Generator | None,
        bound: Tensor | float | None,
    ) -> Tensor:
        # Song et al. eq. 12: x_prev = sqrt(ᾱ_prev) x̂0 + sqrt(1 − ᾱ_prev − σ²) ε̂ + σ z.
        ab, ab_prev = self._alpha_bar_pair(n, n_prev)
        x0_hat, eps = _bounded_prediction(x, eps, ab, bound)            # (B, ...) each
        sigma = eta * math.sqrt(max((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev), 0.0))
        direction = math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0))
        x_prev = math.sqrt(ab_prev) * x0_hat + direction * eps          # (B, ...)
        if sigma <= 0.0:
            return x_prev
        return x_prev + sigma * _draw_normal(x.shape, x, generator)
