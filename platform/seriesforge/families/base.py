"""Defaults every family inherits, and the pieces the fixed-length window families share.

`FamilyModule` gives the optional hooks of `protocols.Family` their do-nothing defaults, so a family only writes
the hooks it uses. `WindowFamilyConfig` + `check_window_request` + `window_shape_from_spec` are what TimeLDM and
ST-Diff (unconditional, one window length, K channels, trained on `sines:L` / `csv:PATH:L`) have in common.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seriesforge.errors import ConfigError, RequestError


# Headroom of a diffusion sampler's x̂0 bound over the largest magnitude seen in training, per element (ST-Diff
# videos, TimeLDM latents): a decision of ours, see `GaussianDiffusion.sample(x0_bound=...)`.
X0_MARGIN = 1.2


class FamilyModule(nn.Module):
    """nn.Module with the optional `Family` hooks as no-ops."""

    @classmethod
    def data_init(cls, cfg: Any, series: Any) -> dict[str, torch.Tensor]:
        return {}

    def after_step(self) -> None:
        return None

    def observe(self, metrics: dict[str, float]) -> dict[str, float]:
        return {}

    def train_only(self, trainable: nn.Module) -> list[nn.Parameter]:
        """Freeze every parameter, then unfreeze `trainable`'s; returns them (what `set_stage` hands the optimiser)."""
        for p in self.parameters():
            p.requires_grad_(False)
        for p in trainable.parameters():
            p.requires_grad_(True)
        return list(trainable.parameters())


def window_shape_from_spec(spec: str) -> tuple[int, int]:
    """(L, K) of the windows a `sines:L` or `csv:PATH:L` SPEC names, read cheaply (the CSV's header and first row),
    so presets can size a model before any data is loaded. An unreadable or other SPEC gives (24, 1): the
    placeholder a preset built without data (`unset:`) carries; `seriesforge train` checks the real shape."""
    from seriesforge.data.specs import parse_spec, window_shape

    try:
        shape = window_shape(parse_spec(spec))
    except Exception:  # noqa: BLE001 - a placeholder or bad SPEC; `seriesforge train` reports it before Ray starts
        return 24, 1
    return shape or (24, 1)


def check_window_shape(run: Any, *, name: str) -> None:
    """The model's (length, channels) must be the data's: `data.lengths == [model.length]`."""
    if list(run.data.lengths) != [run.model.length]:
        raise ConfigError(f"data.lengths: {name} trains one window length, model.length={run.model.length}; "
                          f"got {run.data.lengths}")


def check_window_request(cfg: Any, length: int, condition: Any, *, name: str) -> None:
    """Fixed-length unconditional families accept exactly their trained length and no condition."""
    if length != cfg.length:
        raise RequestError(f"length: the {name} model generates windows of length {cfg.length} only, got {length}")
    if condition is not None:
        raise RequestError(f"condition: the {name} model is unconditional; send no captions or class labels")


def check_channels(batch_series: torch.Tensor, cfg: Any, *, name: str) -> None:
    """A batch (B, L, K) must have the K the model was built for (`model.channels`)."""
    if batch_series.dim() != 3 or batch_series.shape[-1] != cfg.channels or batch_series.shape[1] != cfg.length:
        raise ConfigError(f"model.channels/model.length: {name} was built for (L, K) = ({cfg.length}, "
                          f"{cfg.channels}) but the data has batches of shape {tuple(batch_series.shape)} (B, L, K)")


def ddpm_request(process: Any, sampler: str, sample_steps: int, steps: int | None) -> tuple[str, int]:
    """(method, steps) for `GaussianDiffusion.sample`: the configured sampler, unless the request names `steps`,
    which always means DDIM with that many steps on the same schedule (DDPM ancestral sampling runs all N)."""
    if steps is not None:
        if not 1 <= steps <= process.num_steps:
            raise RequestError(f"steps: must be in [1, {process.num_steps}] (the diffusion's steps), got {steps}")
        return "ddim", steps
    return sampler, (process.num_steps if sampler == "ddpm" else sample_steps)
