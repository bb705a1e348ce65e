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
from seriesforge.protocols import DataNeeds


# Headroom of a diffusion sampler's x̂0 bound over the largest magnitude seen in training, per element (ST-Diff
# videos, TimeLDM latents): a decision of ours, see `GaussianDiffusion.sample(x0_bound=...)`.
X0_MARGIN = 1.2


class FamilyModule(nn.Module):
    """nn.Module with the optional `Family` hooks as no-ops."""

    sampling_stage: str | None = None  # None: the last stage (see protocols.Family.sampling_stage)

    @classmethod
    def data_init(cls, cfg: Any, series: Any) -> dict[str, torch.Tensor]:
        return {}

    @classmethod
    def num_classes(cls, cfg: Any) -> int:
        return 0

    def prepare_stage(self, stage: str, reference: Any, *, seed: int) -> dict[str, float]:
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


class UCRFamily(FamilyModule):
    """What the class-conditioned UCR families (TimeVQVAE, TimeVQVDM) share: one series length per model, labels
    in every batch, `model.{length, channels, num_classes}` sized from the SPEC and checked against the data."""

    conditions = "class"

    @classmethod
    def data_needs(cls, cfg: Any) -> DataNeeds:
        return DataNeeds(kinds=("ucr",), columns=("series", "label"), channels=cfg.channels,
                         num_classes=cfg.num_classes, length=cfg.length)

    @classmethod
    def num_classes(cls, cfg: Any) -> int:
        return cfg.num_classes

    @classmethod
    def max_length(cls, cfg: Any) -> int:
        return cfg.length

    @classmethod
    def example_batch(cls, cfg: Any, *, batch_size: int, length: int,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """series (B, L, K) z-scored, label (B,) as the ucr SPEC feeds (float32, like every batch column)."""
        return {"series": torch.randn((batch_size, length, cfg.channels), generator=generator),
                "label": torch.randint(0, cfg.num_classes, (batch_size,), generator=generator).float()}

    @classmethod
    def validate(cls, run: Any) -> None:
        check_window_shape(run, name=cls.name)

    def labels_or_null(self, condition: Any, n: int, device: torch.device) -> tuple[torch.Tensor, bool]:
        """A request's class labels (n,) on `device`, or the null class C for every row; and whether labelled."""
        labels = check_class_request(condition, n, self.cfg.num_classes, name=self.name)
        if labels is None:
            return torch.full((n,), self.cfg.num_classes, dtype=torch.int64, device=device), False
        return labels.to(device), True


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


def ucr_shape_from_spec(spec: str) -> tuple[int, int, int]:
    """(L, C, N_train) of the dataset a `ucr:DIR` SPEC names, so presets can size a class-conditioned model and its
    batches; an unreadable or other SPEC gives GunPoint's (150, 2, 50) as a placeholder (`seriesforge train` checks
    the real data before Ray starts)."""
    from seriesforge.data.specs import parse_spec, ucr_shape

    try:
        shape = ucr_shape(parse_spec(spec))
    except Exception:  # noqa: BLE001 - a placeholder or bad SPEC; `seriesforge train` reports it before Ray starts
        return 150, 2, 50
    return shape or (150, 2, 50)


def fitting_batch(batch: int, train_rows: int, workers: int) -> int:
    """A preset's batch size, cut so that every worker's share of a small UCR training split fills one batch."""
    return max(1, min(batch, train_rows // max(1, workers)))


def check_class_request(condition: Any, n: int, num_classes: int, *, name: str) -> Any:
    """Class labels (n,) int64 in 0..C-1 for a class-conditioned family, or None (unconditional: the null class)."""
    if condition is None:
        return None
    labels = torch.as_tensor(list(condition), dtype=torch.int64)
    if labels.shape != (n,) or bool((labels < 0).any()) or bool((labels >= num_classes).any()):
        raise RequestError(f"labels: the {name} model needs {n} class labels in [0, {num_classes - 1}], got "
                           f"{list(condition)[:5]}")
    return labels


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
