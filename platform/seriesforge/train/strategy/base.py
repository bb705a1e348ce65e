"""The Strategy contract: prepare, backward, step, save/load resume state, export weights, reduce metrics.

The loop talks only to this interface, so it never branches on DeepSpeed vs DDP vs a single process.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from seriesforge.config import StageConfig, StrategyConfig


class Strategy(ABC):
    def __init__(self, cfg: StrategyConfig, *, device: torch.device) -> None:
        self.cfg = cfg
        self.device = torch.device(device)

    # -- process group ---------------------------------------------------------------------------------------
    @property
    def world_size(self) -> int:
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def use_bf16(self) -> bool:
        """bf16 only where the hardware does it well: CUDA. `auto` keeps fp32 on CPU."""
        if self.cfg.precision == "bf16":
            return True
        return self.cfg.precision == "auto" and self.device.type == "cuda"

    def mean_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Average scalar metrics over workers (a collective: every rank must call it)."""
        if self.world_size == 1 or not metrics:
            return dict(metrics)
        keys = sorted(metrics)
        t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64, device=self._reduce_device())
        dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist())}

    def _reduce_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dtype = torch.bfloat16 if self.use_bf16 else None
        out = {}
        for k, v in batch.items():
            v = v.to(self.device, non_blocking=True)
            out[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
        return out

    # -- per stage -------------------------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, model: torch.nn.Module, params: list[torch.nn.Parameter], stage: StageConfig) -> Any:
        """Wrap `model` for training `params`; returns the callable the loop runs: wrapped(batch) -> LossOutput."""

    @abstractmethod
    def backward(self, loss: torch.Tensor) -> None: ...

    @abstractmethod
    def step(self) -> None:
        """Clip, optimiser step, LR-schedule step, zero grads."""

    @abstractmethod
    def optimizer_steps(self) -> int:
        """Optimiser steps taken in this stage, as restored from resume state (proves the state came back)."""

    @abstractmethod
    def save_train_state(self, directory: Path) -> None:
        """Every rank calls this; each writes what it owns."""

    @abstractmethod
    def load_train_state(self, directory: Path) -> None: ...

    @abstractmethod
    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """Full fp32 weights of the whole family, on every rank. A collective under ZeRO-3."""

    @abstractmethod
    def learning_rate(self) -> float: ...
