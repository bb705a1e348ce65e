"""The Ray Train per-worker function: config in, stages trained, checkpoints reported. No family internals.

    from_dict(config) -> registry family -> for each stage: fresh module + earlier weights -> set_stage
    -> strategy.prepare -> (resume state) -> loop.fit_stage -> export weights for the next stage

Resume and failure recovery both come through `ray.train.get_checkpoint()`: its meta.json says which stage and
step were done; weights come from its safetensors, optimizer state from its train_state/.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ray.train
import ray.train.torch
import torch

import seriesforge
from seriesforge import registry
from seriesforge.checkpoint import add_train_state_dir, load_weights, read_checkpoint, write_checkpoint
from seriesforge.config import RunConfig, to_dict
from seriesforge.data.batches import holdout_batches, interleaved_batches
from seriesforge.data.embedding_store import EmbeddingLookup
from seriesforge.data.pipeline import TRAIN_KEY, validation_key
from seriesforge.train.loop import StagePlan, fit_stage, held_out_loss
from seriesforge.train.strategy import Strategy, build_strategy


@dataclass
class ResumePoint:
    stage_index: int
    step: int
    weights: dict[str, torch.Tensor]
    train_state: Path
    metrics: dict[str, float]  # what was reported with the checkpoint resumed from


def _quiet_report_logs() -> None:
    """Our progress lines replace Ray Train's per-report INFO line, which prints every metric dict on every rank.

    Ray 2.60 names that logger by its source file's path (logging.getLogger(__file__)), so it is found by suffix.
    """
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.endswith(os.path.join("execution", "context.py")):
            logging.getLogger(name).setLevel(logging.WARNING)


def train_loop_per_worker(config: dict) -> None:
    _quiet_report_logs()
    cfg = registry.resolve_config(config["run"])
    family = registry.get(cfg.family)
    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(cfg.loop.seed + rank)  # diffusion-time and noise draws independent per rank
    strategy = build_strategy(cfg.strategy, device=ray.train.torch.get_device())
    scratch = Path(tempfile.mkdtemp(prefix="seriesforge-resume-"))
    try:
        resume = _resume_point(scratch)
        weights, origin, done = resume.weights if resume else None, cfg.start.from_checkpoint or None, set()
        trained = False
        if resume is None and cfg.start.from_checkpoint:
            source = read_checkpoint(cfg.start.from_checkpoint)
            weights, done = load_weights(source), set(source.meta.get("stages_done", []))
            _say(f"starting from {source.path} (stages done there: {sorted(done) or 'none'})")
        for index, stage in enumerate(family.stages):
            if cfg.start.only_stages and stage not in cfg.start.only_stages:
                continue  # re-running chosen stages alone; the others come from `from_checkpoint`
            if not cfg.start.only_stages and stage in done:
                continue  # done in the checkpoint this run starts from
            if resume and (index < resume.stage_index or
                           (index == resume.stage_index and resume.step >= cfg.stages[stage].steps > 0)):
                continue  # this stage is done; its weights are in `weights`
            start = resume.step if resume and index == resume.stage_index else 0
            weights, origin = _train_stage(cfg, family, strategy, config, index, stage, weights, start,
                                           resume.train_state if resume and start else None, origin)
            trained = True
        if resume is not None and not trained:
            # Resumed from the run's last checkpoint, with nothing left to train. This happens to a Tune trial
            # whose sweep driver died after the trial's final checkpoint and before the trial's end reached it.
            # Report that checkpoint's result again: Tune (through its report callback) would otherwise keep
            # an earlier result and count the trial as unfinished.
            ray.train.report({**resume.metrics, **stage_tags(cfg, resume.stage_index, resume.step)})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train_stage(cfg: RunConfig, family, strategy: Strategy, config: dict, index: int, stage: str,
                 weights: dict | None, start: int, train_state: Path | None,
                 origin: str | None) -> tuple[dict[str, torch.Tensor], str]:
    """Train one stage; returns its final weights and the stage checkpoint it left (RUN_DIR/stages/I_STAGE)."""
    stage_cfg = cfg.stages[stage]
    # Shard first: Ray Train creates the dataset's split coordinator (an actor) at the first call, and it then
    # starts while the model and its engine are built (with a 3 s build, the first batch came 1.6 s sooner).
    shard = ray.train.get_dataset_shard(TRAIN_KEY)
    model = family(cfg.model)
    if weights is not None:
        model.load_state_dict(weights)
    else:
        _load_data_init(model, config.get("data_init") or {})
    if start == 0 and stage_cfg.steps > 0:  # between-stage work on the frozen earlier stages (e.g. a latent scaler, a τ search)
        found = model.prepare_stage(stage, config.get("reference"), seed=cfg.loop.seed + index)
        if found and strategy.is_main:
            _say(f"[{cfg.family}:{stage}] prepared: " + " ".join(f"{k}={v:.4g}" for k, v in found.items()))
    params = model.set_stage(stage)
    wrapped = strategy.prepare(model, params, stage_cfg)
    if train_state is not None and start < stage_cfg.steps:
        strategy.load_train_state(train_state)
    plan = StagePlan(stage=stage, stage_index=index, start_step=min(start, stage_cfg.steps),
                     total_steps=stage_cfg.steps, log_every=cfg.loop.log_every,
                     checkpoint_every=cfg.loop.checkpoint_every)
    needs = family.data_needs(cfg.model)
    if needs.text_encoder and not config.get("embeddings"):
        raise RuntimeError("a text-conditioned family needs the caption-embedding store the driver prepares")
    embeddings = EmbeddingLookup(Path(config["embeddings"])) if needs.text_encoder else None
    # Ray's equal split gives every rank this many rows per epoch; all ranks plan their epochs from it
    rows_per_epoch = config["train_rows"] // ray.train.get_context().get_world_size()
    batches = interleaved_batches(shard, lengths=cfg.data.lengths, rows_per_epoch=rows_per_epoch,
                                  schedule=cfg.data.schedule, batch_size=stage_cfg.batch_size, keys=needs.columns,
                                  seed=cfg.loop.seed + index, cache_mb=cfg.data.worker_cache_mb, embeddings=embeddings)
    reporter = _Reporter(cfg, strategy, plan, Path(config["run_dir"]), config["data_fingerprint"], origin)
    validate = _validation(cfg, wrapped, strategy, stage_cfg.batch_size, embeddings, needs.columns)
    fit_stage(wrapped, strategy, batches, plan, on_log=reporter.log, on_checkpoint=reporter.checkpoint,
              validate=validate, after_step=model.after_step, observe=model.observe)
    if plan.total_steps == 0:
        reporter.checkpoint(0, {})  # a stage configured with 0 steps still leaves a checkpoint to generate from
    return strategy.export_state_dict(), str(stage_checkpoint_dir(Path(config["run_dir"]), index, stage))


def stage_tags(cfg: RunConfig, stage_index: int, step: int) -> dict:
    """Stage tags of a report, and `global_step`: steps over all stages so far. `step` restarts at each stage;
    Tune's ASHA needs a time attribute that only grows."""
    stages = registry.get(cfg.family).stages
    before = sum(cfg.stages[s].steps for s in stages[:stage_index])
    return {"stage": stages[stage_index], "stage_index": stage_index, "global_step": float(before + step)}


def stage_checkpoint_dir(run_dir: Path, index: int, stage: str) -> Path:
    """Where a stage's final checkpoint is kept for good (Ray Train's `num_to_keep` may delete its own copy): the
    next stage records it as its origin, and `seriesforge train --from` can re-run any later stage from it."""
    return run_dir / "stages" / f"{index}_{stage}"


def _load_data_init(model: torch.nn.Module, init: dict) -> None:
    """The family's data-derived initial values (computed once on the driver, identical on every rank)."""
    if not init:
        return
    unexpected = sorted(set(init) - set(model.state_dict()))
    if unexpected:
        raise RuntimeError(f"data_init returned keys the model does not have: {unexpected[:3]}")
    # the arrays arrive read-only from Ray's object store; load_state_dict copies them anyway, so copy here instead
    # of handing torch a non-writable buffer (which it warns about)
    model.load_state_dict({k: torch.tensor(v) for k, v in init.items()}, strict=False)


def _validation(cfg: RunConfig, wrapped, strategy: Strategy, batch_size: int,
                embeddings: EmbeddingLookup | None, columns: tuple[str, ...]):
    """`val_loss` over this worker's held-out rows of every length (None when data.val_fraction is 0)."""
    if not cfg.data.val_fraction:
        return None
    held = [b for n in cfg.data.lengths
            for b in holdout_batches(ray.train.get_dataset_shard(validation_key(n)), length=n, batch_size=batch_size,
                                     keys=columns, max_rows=cfg.data.val_rows, embeddings=embeddings)]
    return lambda: {"val_loss": held_out_loss(wrapped, strategy, held, seed=cfg.loop.seed + 7919)}


class _Reporter:
    """Turns loop callbacks into `ray.train.report` calls (every rank), progress lines and checkpoints."""

    def __init__(self, cfg: RunConfig, strategy: Strategy, plan: StagePlan, run_dir: Path, fingerprint: str,
                 origin: str | None):
        self.cfg, self.strategy, self.plan, self.run_dir = cfg, strategy, plan, run_dir
        self.fingerprint, self.origin = fingerprint, origin
        self.started = time.time()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        ray.train.report({**metrics, **stage_tags(self.cfg, self.plan.stage_index, step)})
        if self.strategy.is_main:
            self._progress_line(step, metrics)
            with open(self.run_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps({"stage": self.plan.stage, **metrics, "time": time.time()}) + "\n")

    def _progress_line(self, step: int, metrics: dict[str, float]) -> None:
        total = self.plan.total_steps
        rate = metrics.get("steps_per_s", 0.0)
        eta = (total - step) / rate if rate else float("nan")
        width = 24
        filled = int(width * step / max(1, total))
        bar = "#" * filled + "." * (width - filled)
        extras = " ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                          if k not in ("step", "steps_per_s", "lr", "optimizer_steps"))
        _say(f"[{self.cfg.family}:{self.plan.stage}] |{bar}| {step}/{total} {extras} "
             f"lr={metrics.get('lr', 0):.2e} {rate:.2f} it/s eta {eta:.0f}s")

    def checkpoint(self, step: int, metrics: dict[str, float]) -> None:
        weights = self.strategy.export_state_dict()  # every rank: a collective under ZeRO-3
        tmp = Path(tempfile.mkdtemp(prefix="seriesforge-ckpt-"))
        try:
            target = tmp / "checkpoint"
            if self.strategy.is_main:
                meta = self._meta(step, metrics)
                write_checkpoint(target, config=to_dict(self.cfg), meta=meta, state_dict=weights)
                if step >= self.plan.total_steps:  # the stage's final weights, kept outside Ray's rotation
                    write_checkpoint(stage_checkpoint_dir(self.run_dir, self.plan.stage_index, self.plan.stage),
                                     config=to_dict(self.cfg), meta=meta, state_dict=weights)
            self.strategy.save_train_state(add_train_state_dir(target))  # creates target on the other ranks too
            name = f"stage{self.plan.stage_index}_{self.plan.stage}_step{step:07d}"
            ray.train.report({**metrics, **stage_tags(self.cfg, self.plan.stage_index, step)},
                             checkpoint=ray.train.Checkpoint.from_directory(str(target)),
                             checkpoint_dir_name=name)
            if self.strategy.is_main:
                _say(f"[{self.cfg.family}:{self.plan.stage}] checkpoint {name} at step {step}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _meta(self, step: int, metrics: dict[str, float]) -> dict:
        from importlib.metadata import version

        return {
            "family": self.cfg.family, "stage": self.plan.stage, "stage_index": self.plan.stage_index,
            "stages_done": [s for s in registry.get(self.cfg.family).stages][: self.plan.stage_index]
            + ([self.plan.stage] if step >= self.plan.total_steps else []),
            "step": step, "metrics": metrics, "data_fingerprint": self.fingerprint,
            "from_checkpoint": self.origin,  # the stage checkpoint this stage started from (None: from scratch)
            "strategy": self.cfg.strategy.kind, "zero_stage": self.cfg.strategy.zero_stage,
            "world_size": self.strategy.world_size, "bf16": self.strategy.use_bf16,
            "versions": {"seriesforge": seriesforge.__version__, "torch": torch.__version__,
                         "ray": version("ray"), "deepspeed": version("deepspeed")},
        }


def _say(line: str) -> None:
    """One progress line to the real stdout (Ray forwards it to the driver). Ray Train patches `print` to also
    copy into its own logger, which would show every line twice."""
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


def _resume_point(scratch: Path) -> ResumePoint | None:
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    local = Path(checkpoint.to_directory(str(scratch / "checkpoint")))
    info = read_checkpoint(local)
    _say(f"resuming from {checkpoint.path}: stage {info.meta['stage']}, step {info.meta['step']}")
    return ResumePoint(stage_index=int(info.meta["stage_index"]), step=int(info.meta["step"]),
                       weights=load_weights(info), train_state=local / "train_state",
                       metrics=dict(info.meta.get("metrics") or {}))
