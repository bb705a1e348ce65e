"""Rectified flow (flow matching with straight paths), as T2S trains and samples its latent DiT.

Shape legend: B batch · C channels · P latent positions (any trailing shape works: the process is element-wise;
``(B, ...)`` below means "batch first, anything after").

Convention (T2S code, `model/backbone/rectified_flow.py` and `train.py`): t = 0 is pure noise and t = 1 is data,

    x_t = t · x1 + (1 − t) · ε,     ε ~ N(0, I),     target velocity v = dx_t/dt = x1 − ε,

and sampling integrates dx/dt = v(x, t) from t = 0 to t = 1. The network is passed into every call as
``velocity_fn(x_t, t) -> v`` (t of shape (B,)) and never stored, so one process object serves every family and
stage, and guidance, caption handling or EMA weights are the caller's business.

Example:
    >>> flow = RectifiedFlow(t_grid=100)
    >>> loss = flow.training_loss(lambda x, t: net(x, t, caption), z)            # doctest: +SKIP
    >>> z_hat = flow.sample(lambda x, t: net(x, t, caption), torch.randn_like(z), steps=10)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["VelocityFn", "RectifiedFlow", "classifier_free_guidance", "SAMPLERS"]

VelocityFn = Callable[[Tensor, Tensor], Tensor]
Method = Literal["euler", "heun", "midpoint"]


def _expand(t: Tensor, like: Tensor) -> Tensor:
    """Broadcast per-sample times (B,) against a (B, ...) tensor."""
    return t.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))  # (B, 1, ..., 1)


def _full_t(value: float, like: Tensor) -> Tensor:
    return torch.full((like.shape[0],), value, device=like.device, dtype=like.dtype)  # (B,)


# ---------------------------------------------------------------------------------------------------------------
# ODE steps from t to t + dt. Each returns the new state; the number of network calls is noted.
# ---------------------------------------------------------------------------------------------------------------


def _euler_step(fn: VelocityFn, x: Tensor, t: float, dt: float) -> Tensor:
    # 1 evaluation; first order, the sampler T2S ships (z ← z + v / S).
    return x + dt * fn(x, _full_t(t, x))


def _midpoint_step(fn: VelocityFn, x: Tensor, t: float, dt: float) -> Tensor:
    # 2 evaluations; explicit midpoint (RK2): velocity taken half a step ahead.
    x_mid = x + 0.5 * dt * fn(x, _full_t(t, x))
    return x + dt * fn(x_mid, _full_t(t + 0.5 * dt, x))


def _heun_step(fn: VelocityFn, x: Tensor, t: float, dt: float) -> Tensor:
    # 2 evaluations; Euler predictor, trapezoid corrector. Applied on every step, the last one included: unlike a
    # diffusion ODE at σ = 0, the flow's velocity is well defined at t = 1, so no Euler fallback is needed.
    v0 = fn(x, _full_t(t, x))
    v1 = fn(x + dt * v0, _full_t(t + dt, x))
    return x + 0.5 * dt * (v0 + v1)


SAMPLERS: dict[str, tuple[Callable[[VelocityFn, Tensor, float, float], Tensor], int]] = {
    "euler": (_euler_step, 1),
    "midpoint": (_midpoint_step, 2),
    "heun": (_heun_step, 2),
}
"""Sampler name -> (step function, network evaluations per step)."""


class RectifiedFlow:
    """Straight-path flow between N(0, I) at t = 0 and the data at t = 1."""

    def __init__(self, t_grid: int = 100) -> None:
        """Configure training-time sampling of t.

        Args:
            t_grid: S. Training times are drawn on the grid round(U · S) / S, U ~ U(0, 1), as T2S does (S = 100,
                its ``total_step``); both ends then get half the mass of an inner point. ``0`` means continuous
                t ~ U(0, 1).

        Raises:
            ValueError: if ``t_grid`` is negative.
        """
        if t_grid < 0:
            raise ValueError(f"RectifiedFlow: t_grid must be >= 0 (0 = continuous), got t_grid={t_grid}")
        self.t_grid = int(t_grid)

    def __repr__(self) -> str:
        return f"RectifiedFlow(t_grid={self.t_grid})"

    # ----- forward process ------------------------------------------------------------------------------------

    def sample_time(
        self, batch: int, *, device: torch.device | str | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw one training time per sample.

        Args:
            batch: B.
            device: Device of the result (default: CPU).
            generator: Optional RNG; draws happen on the generator's device, then move to ``device``.

        Returns:
            float32 tensor of shape (B,) with values in [0, 1], multiples of 1/S when ``t_grid`` = S > 0.
        """
        draw_device = generator.device if generator is not None else device
        u = torch.rand(batch, generator=generator, device=draw_device)  # (B,)
        if self.t_grid:
            u = torch.round(u * self.t_grid) / self.t_grid
        return u.to(device) if device is not None else u

    @staticmethod
    def add_noise(x1: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Point on the straight path between noise (t = 0) and data (t = 1).

        Args:
            x1: Data, shape (B, ...).
            noise: ε, same shape as ``x1``.
            t: Times, shape (B,).

        Returns:
            x_t = t · x1 + (1 − t) · ε, shape of ``x1``.
        """
        tt = _expand(t, x1)                                             # (B, 1, ..., 1)
        return tt * x1 + (1 - tt) * noise                               # (B, ...)

    @staticmethod
    def velocity_target(x1: Tensor, noise: Tensor) -> Tensor:
        """Regression target dx_t/dt = x1 − ε (independent of t for straight paths)."""
        return x1 - noise

    def training_loss(self, velocity_fn: VelocityFn, x1: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Flow-matching loss: MSE between ``velocity_fn(x_t, t)`` and x1 − ε over all elements.

        Args:
            velocity_fn: Network wrapper ``(x_t (B, ...), t (B,)) -> v (B, ...)``.
            x1: Clean data (for T2S: latents z (B, C, P)).
            generator: Optional RNG for t and ε (reproducible losses in tests and goldens).

        Returns:
            Scalar loss tensor (differentiable w.r.t. the network's parameters).
        """
        t = self.sample_time(x1.shape[0], device=x1.device, generator=generator).to(x1.dtype)  # (B,)
        draw_device = generator.device if generator is not None else x1.device
        noise = torch.randn(x1.shape, generator=generator, device=draw_device, dtype=x1.dtype).to(x1.device)
        x_t = self.add_noise(x1, noise, t)                              # (B, ...)
        return F.mse_loss(velocity_fn(x_t, t), self.velocity_target(x1, noise))

    # ----- sampling -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        velocity_fn: VelocityFn,
        noise: Tensor,
        *,
        steps: int,
        method: Method = "euler",
        progress: Callable[[int], object] | None = None,
    ) -> Tensor:
        """Integrate dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data) on a uniform grid of ``steps`` steps.

        Network evaluations (NFE): ``euler`` = steps (T2S's sampler); ``heun`` (Euler predictor + trapezoid
        corrector on every step, the last included) = 2 · steps; ``midpoint`` = 2 · steps. Runs under
        ``torch.no_grad``.

        Args:
            velocity_fn: ``(x (B, ...), t (B,)) -> v (B, ...)``; apply classifier-free guidance inside it.
            noise: Starting point x_0 ~ N(0, I), shape (B, ...).
            steps: Number of integration steps S (≥ 1); step size 1/S.
            method: ``"euler"``, ``"heun"`` or ``"midpoint"``.
            progress: Optional callable, called with the step index (0 … S−1) after each step.

        Returns:
            x_1, shape of ``noise``.

        Raises:
            ValueError: for ``steps`` < 1 or an unknown ``method``.
        """
        if steps < 1:
            raise ValueError(f"RectifiedFlow.sample: steps must be >= 1, got steps={steps}")
        if method not in SAMPLERS:
            raise ValueError(f"RectifiedFlow.sample: method must be one of {sorted(SAMPLERS)}, got {method!r}")
        step_fn, _ = SAMPLERS[method]
        dt = 1.0 / steps
        x = noise                                                       # (B, ...)
        for i in range(steps):
            x = step_fn(velocity_fn, x, i * dt, dt)                     # (B, ...)
            if progress is not None:
                progress(i)
        return x

    @staticmethod
    def evaluations(steps: int, method: Method = "euler") -> int:
        """Number of ``velocity_fn`` calls ``sample`` makes (to compare samplers at equal cost)."""
        return steps * SAMPLERS[method][1]


def classifier_free_guidance(v_cond: Tensor, v_uncond: Tensor, scale: float) -> Tensor:
    """Guided velocity v_∅ + s · (v_c − v_∅) (Ho & Salimans 2022, applied to velocities as T2S does).

    ``scale = 1`` gives the conditional prediction, ``0`` the unconditional one; T2S uses s between 3 and 13.

    Args:
        v_cond: Velocity with the caption, shape (B, ...).
        v_uncond: Velocity with the null caption, same shape.
        scale: Guidance scale s.

    Returns:
        Tensor of the same shape.
    """
    return v_uncond + scale * (v_cond - v_uncond)
