"""Single-process and DDP strategies on plain PyTorch (no DeepSpeed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from seriesforge.config import StageConfig
from seriesforge.train.optim import build_optimizer, build_scheduler
from seriesforge.train.strategy.base import Strategy

_STATE_FILE = "torch_state.pt"


class SingleStrategy(Strategy):
    """One process, one device; the reference the others are measured against."""

    def prepare(self, model: torch.nn.Module, params: list[torch.nn.Parameter], stage: StageConfig) -> Any:
        self.model = model.to(self.device)
        self.params = params
        self.grad_clip = stage.optim.grad_clip
        self.optimizer = build_optimizer(params, stage.optim)
        self.scheduler = build_scheduler(self.optimizer, stage.optim, stage.steps)
        self.steps_taken = 0
        return self._wrap(self.model)

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_taken += 1

    def optimizer_steps(self) -> int:
        return self.steps_taken

    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def save_train_state(self, directory: Path) -> None:
        if not self.is_main:
            return  # optimizer state is identical on every DDP rank
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "steps_taken": self.steps_taken}
        torch.save(state, Path(directory) / _STATE_FILE)

    def load_train_state(self, directory: Path) -> None:
        # weights_only: tensors and plain containers only, never arbitrary objects
        state = torch.load(Path(directory) / _STATE_FILE, map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.steps_taken = int(state["steps_taken"])

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().float().cpu().clone() for k, v in self.model.state_dict().items()}


class DDPStrategy(SingleStrategy):
    """DistributedDataParallel over the process group Ray Train set up (gloo on CPU, nccl on GPU)."""

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
