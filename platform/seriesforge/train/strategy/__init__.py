"""Strategies: how a family's loss becomes an optimiser step on one or many workers.

`build_strategy` picks by `StrategyConfig.kind`; only `deepspeed.py` imports DeepSpeed.
"""

from __future__ import annotations

import torch

from seriesforge.config import StrategyConfig
from seriesforge.train.strategy.base import Strategy


def build_strategy(cfg: StrategyConfig, *, device: torch.device) -> Strategy:
    if cfg.kind == "deepspeed":
        from seriesforge.train.strategy.deepspeed import DeepSpeedStrategy

        return DeepSpeedStrategy(cfg, device=device)
    if cfg.kind == "ddp":
        from seriesforge.train.strategy.torch_native import DDPStrategy

        return DDPStrategy(cfg, device=device)
    from seriesforge.train.strategy.torch_native import SingleStrategy

    return SingleStrategy(cfg, device=device)


__all__ = ["Strategy", "build_strategy"]
