"""DeepSpeed strategy: the only module in seriesforge that imports DeepSpeed.

ZeRO stage 0–3 from config; DeepSpeed picks its accelerator itself (CPU + gloo here, CUDA + nccl on GPUs), so
nothing here names a device or backend. bf16 is enabled on CUDA (`precision: auto`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from seriesforge.config import StageConfig
from seriesforge.train.optim import build_optimizer, build_scheduler
from seriesforge.train.strategy.base import Strategy

_TAG = "state"  # one DeepSpeed tag per checkpoint directory


class DeepSpeedStrategy(Strategy):
    def prepare(self, model: torch.nn.Module, params: list[torch.nn.Parameter], stage: StageConfig) -> Any:
        import deepspeed

        if self.device.type == "cuda":
            model = model.to(self.device)
        optimizer = build_optimizer(params, stage.optim)
        scheduler = build_scheduler(optimizer, stage.optim, stage.steps)
        self.engine, _, _, _ = deepspeed.initialize(
            model=model, model_parameters=params, optimizer=optimizer, lr_scheduler=scheduler,
            config=self.ds_config(stage), dist_init_required=False)
        return self.engine

    def ds_config(self, stage: StageConfig) -> dict:
        """The DeepSpeed JSON config for one stage; also written beside resume state for inspection."""
        return {
            "train_micro_batch_size_per_gpu": stage.batch_size,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": stage.optim.grad_clip,
            "zero_optimization": {"stage": self.cfg.zero_stage},
            "bf16": {"enabled": self.use_bf16},
            # we pass torch's AdamW so every strategy optimises identically; DeepSpeed then needs this flag
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 1 << 30,
            "wall_clock_breakdown": False,
        }

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        self.engine.step()  # clips, steps the optimiser and the LR scheduler, zeroes grads

    def optimizer_steps(self) -> int:
        return int(self.engine.global_steps)

    def learning_rate(self) -> float:
        return float(self.engine.get_lr()[0])

    def save_train_state(self, directory: Path) -> None:
        # a collective: every rank writes its own ZeRO partition
        self.engine.save_checkpoint(str(directory), tag=_TAG)

    def load_train_state(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(str(directory), tag=_TAG, load_optimizer_states=True,
                                              load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"{directory}: no DeepSpeed state with tag {_TAG!r}")

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """Under bf16 this reads the module's bf16 weights (not the fp32 master copy): ample for sampling."""
        import deepspeed

        module = self.engine.module
        if self.cfg.zero_stage == 3:
            # parameters are partitioned across ranks: gather them (a collective) on every rank before reading
            with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
                return _cpu_fp32(module.state_dict())
        return _cpu_fp32(module.state_dict())


def _cpu_fp32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu().clone() for k, v in state.items()}
