"""The generic training loop of one stage. It knows no family, no Ray and no DeepSpeed.

    for step: batch -> wrapped(batch) = LossOutput -> strategy.backward -> strategy.step
    every log_every steps: metrics averaged over the interval and over workers (+ `validate()`, e.g. val_loss)
                           -> on_log
    every checkpoint_every steps and at the end of the stage: on_checkpoint
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from seriesforge.train.strategy.base import Strategy


@dataclass(frozen=True)
class StagePlan:
    stage: str
    stage_index: int
    start_step: int  # steps already done in this stage (resume), 0 for a fresh stage
    total_steps: int
    log_every: int
    checkpoint_every: int


Callback = Callable[[int, dict[str, float]], None]


class NonFiniteLossError(FloatingPointError):
    pass


def fit_stage(wrapped: Any, strategy: Strategy, batches: Iterator[dict[str, torch.Tensor]], plan: StagePlan, *,
              on_log: Callback, on_checkpoint: Callback,
              validate: Callable[[], dict[str, float]] | None = None,
              after_step: Callable[[], None] | None = None,
              observe: Callable[[dict[str, float]], dict[str, float]] | None = None) -> dict[str, float]:
    """Run `plan.total_steps - plan.start_step` optimiser steps; returns the last logged metrics.

    `validate` (every rank calls it at each log step, so collective forwards under ZeRO-3 stay in step) returns
    held-out metrics; they are averaged over workers like the training metrics. `after_step` runs after every
    optimiser step (a family's weight EMA); `observe` sees each log step's worker-averaged metrics (identical on
    every rank) and returns extra metrics to log (a family's adaptive schedule).
    """
    sums: dict[str, float] = {}
    count = 0
    last: dict[str, float] = {}
    tic = time.perf_counter()
    for step in range(plan.start_step, plan.total_steps):
        out = wrapped(strategy.to_device(next(batches)))
        loss = out.loss
        if not torch.isfinite(loss.detach()).all():
            raise NonFiniteLossError(f"stage {plan.stage}: loss is {loss.item()} at step {step + 1}")
        strategy.backward(loss)
        strategy.step()
        if after_step is not None:
            after_step()
        _accumulate(sums, {"loss": float(loss.detach()), **out.metrics})
        count += 1
        done = step + 1
        if done % plan.log_every == 0 or done == plan.total_steps:
            elapsed = time.perf_counter() - tic
            last = _interval_metrics(strategy, sums, count, elapsed, done, plan)
            if validate is not None:
                last.update(strategy.mean_metrics(validate()))
            if observe is not None:
                last.update(observe(last))
            on_log(done, last)
            sums, count, tic = {}, 0, time.perf_counter()
        if done % plan.checkpoint_every == 0 or done == plan.total_steps:
            on_checkpoint(done, last)
    return last


def _accumulate(sums: dict[str, float], metrics: dict[str, float]) -> None:
    for k, v in metrics.items():
        sums[k] = sums.get(k, 0.0) + float(v)


def _interval_metrics(strategy: Strategy, sums: dict[str, float], count: int, elapsed: float, done: int,
                      plan: StagePlan) -> dict[str, float]:
    metrics = strategy.mean_metrics({k: v / max(1, count) for k, v in sums.items()})
    metrics.update({
        "step": float(done),
        "steps_per_s": count / elapsed if elapsed > 0 else math.nan,
        "lr": strategy.learning_rate(),
        "optimizer_steps": float(strategy.optimizer_steps()),
    })
    return metrics


def held_out_loss(wrapped: Any, strategy: Strategy, batches: list[dict[str, torch.Tensor]], seed: int) -> float:
    """Mean loss over fixed held-out batches, in eval mode and without gradients. The noise and diffusion times the
    loss draws come from a fixed seed (the global RNG is forked, so training draws are unaffected): successive
    values differ only by the model."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    total, rows = 0.0, 0
    wrapped.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for batch in batches:
                n = len(next(iter(batch.values())))
                total += float(wrapped(strategy.to_device(batch)).loss) * n
                rows += n
    finally:
        wrapped.train()
    return total / max(1, rows)
