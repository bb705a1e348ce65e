"""`seriesforge tune`: a Ray Tune sweep in which every trial is a full training run.

Ray Train V2 pattern (the installed Ray's): a Tune *function* trainable per trial builds the run's TorchTrainer with
`launch.build_trainer` (the very function `seriesforge train` uses: same strategy layer, same storage layout) and
passes `TuneReportCallback`, so every `ray.train.report` of rank 0 reaches Tune (ASHA reads `global_step` and the
metric). The trainer's workers get their own placement group, so the trial function holds a token CPU share;
concurrency is capped to what the cluster can hold (workers x cpus_per_worker per trial, plus one CPU per trial
for Ray Data), so Tune never starts more trainers than fit.

    SWEEP_DIR/
      sweep.json            base config, space, settings: all --resume needs
      tune/                 Tune's experiment state (Tuner.restore reads it)
      trials/TRIAL_ID/      one training run directory per trial (config.json, metrics.jsonl, ray/train/)
      results.csv           one row per trial: parameters, last metric, steps done, stopped early or not
      best/config.yaml      the best trial's resolved config: `seriesforge train --config best/config.yaml`
      best/checkpoint/      its latest checkpoint: `seriesforge generate|serve --checkpoint best/checkpoint`
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seriesforge import config as C
from seriesforge import registry
from seriesforge.errors import ConfigError
from seriesforge.tune.space import Param, apply, parse_param

TUNE_NAME = "tune"


@dataclass
class SweepSettings:
    trials: int
    max_concurrent: int
    metric: str
    mode: str = "min"
    scheduler: str = "asha"  # asha | fifo
    search: str = "random"  # random | optuna
    grace_period: int = 0  # ASHA's first rung in global steps; 0: a quarter of the budget
    seed: int = 0
    points: list[dict] = field(default_factory=list)  # configs tried first (API only: tests, warm starts)

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"--trials: must be >= 1, got {self.trials}")
        if self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent: must be >= 1, got {self.max_concurrent}")
        for name, value, allowed in (("--mode", self.mode, ("min", "max")), ("--scheduler", self.scheduler,
                                     ("asha", "fifo")), ("--search", self.search, ("random", "optuna"))):
            if value not in allowed:
                raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")


@dataclass
class SweepResult:
    table: Any  # pandas DataFrame, one row per trial
    complete: bool  # False when the driver was interrupted: finish with --resume
    best_dir: Path | None = None


def total_steps(cfg: C.RunConfig) -> int:
    return sum(s.steps for s in cfg.stages.values())


def start(base: C.RunConfig, space: dict[str, Param], settings: SweepSettings, out: Path, *,
          address: str | None = None, callbacks: list | None = None) -> SweepResult:
    """A new sweep in `out` (which must not hold one). Space and settings were validated by the caller."""
    from seriesforge.train import launch

    out = out.resolve()
    if (out / "sweep.json").exists():
        raise ConfigError(f"--out {out}: already holds a sweep; finish it with --resume {out}")
    launch.check_data(base)  # before Ray
    if settings.metric.startswith("val_") and not base.data.val_fraction:
        raise ConfigError(f"--metric {settings.metric}: the base config holds out no rows; set data.val_fraction "
                          f"(e.g. 0.05) in --config, or tune on the training loss with --metric loss")
    out.mkdir(parents=True, exist_ok=True)
    state = {"base": C.to_dict(base), "space": {k: {p.kind: list(p.args)} for k, p in space.items()},
             "settings": asdict(settings)}
    (out / "sweep.json").write_text(json.dumps(state, indent=2))
    return _fit(out, state, address=address, callbacks=callbacks, restore=False)


def resume(out: Path, *, address: str | None = None, callbacks: list | None = None) -> SweepResult:
    """Finish the sweep in `out`: finished trials are kept, unfinished ones continue from their checkpoints."""
    out = out.resolve()
    if not (out / "sweep.json").exists():
        raise ConfigError(f"--resume {out}: not a sweep directory (no sweep.json)")
    state = json.loads((out / "sweep.json").read_text())
    return _fit(out, state, address=address, callbacks=callbacks, restore=True)


def _fit(out: Path, state: dict, *, address: str | None, callbacks: list | None, restore: bool) -> SweepResult:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from seriesforge.runtime import init_ray

    base = registry.resolve_config(state["base"])
    settings = SweepSettings(**state["settings"])
    space = {k: parse_param(k, v) for k, v in state["space"].items()}
    per_trial = base.scaling.num_workers * base.scaling.cpus_per_worker
    print(init_ray(address, min_cpus=int(per_trial) + 2), flush=True)
    _warm_data_cache(base, out)
    # The trainer's workers reserve their own CPUs; Tune must not start more trainers than the cluster holds
    # (one extra CPU per trial leaves room for its Ray Data read tasks).
    fits = max(1, int(ray.cluster_resources().get("CPU", 1) // (per_trial + 1)))
    concurrent = min(settings.max_concurrent, fits)
    if concurrent < settings.max_concurrent:
        print(f"--max-concurrent {settings.max_concurrent}: the cluster holds {fits} trial(s) of {per_trial:g} "
              f"CPUs each (+1 for data); running {concurrent} at a time", flush=True)
    # a token CPU share: Tune refuses an empty resource request, and the trial function only waits on its trainer
    trainable = tune.with_resources(tune.with_parameters(_trial, base=state["base"], sweep_dir=str(out)),
                                    {"CPU": 0.01})
    max_t = total_steps(base)
    if settings.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="global_step", max_t=max_t, reduction_factor=2,
                                  grace_period=settings.grace_period or max(1, max_t // 4))
    else:
        scheduler = FIFOScheduler()
    run_config = tune.RunConfig(name=TUNE_NAME, storage_path=str(out), callbacks=callbacks,
                                failure_config=tune.FailureConfig(max_failures=0))
    if restore:
        tuner = tune.Tuner.restore(str(out / TUNE_NAME), trainable=trainable, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space={k: p.to_tune() for k, p in space.items()}, run_config=run_config,
            tune_config=tune.TuneConfig(metric=settings.metric, mode=settings.mode, num_samples=settings.trials,
                                        max_concurrent_trials=concurrent, scheduler=scheduler,
                                        search_alg=_searcher(settings, concurrent)))
    grid = tuner.fit()
    return _report(out, grid, space, settings, max_t)


def _searcher(settings: SweepSettings, concurrent: int):
    points = settings.points or None
    if settings.search == "optuna":
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(sampler=TPESampler(seed=settings.seed), points_to_evaluate=points)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # Tune ignores TuneConfig.max_concurrent_trials for this generator (it warns and starts every trial at once),
    # so the generator carries the cap itself
    return BasicVariantGenerator(points_to_evaluate=points, random_state=settings.seed, max_concurrent=concurrent)


def _warm_data_cache(base: C.RunConfig, out: Path) -> None:
    """Build the cached table and caption embeddings once, before trials start, so concurrent trials only read
    them (and a data error fails the sweep once, not in every trial)."""
    from seriesforge.data.pipeline import prepare_training_data

    data = prepare_training_data(base.data, registry.get(base.family).data_needs(base.model),
                                 fallback_cache=out / "data_cache")
    print(data.describe(), flush=True)


def _trial(params: dict, *, base: dict, sweep_dir: str) -> None:
    """One Tune trial = one training run in SWEEP_DIR/trials/TRIAL_ID (resumed there if the sweep is)."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from seriesforge.train import launch

    run_dir = Path(sweep_dir) / "trials" / tune.get_context().get_trial_id()
    cfg = registry.resolve_config(apply(base, params))
    launch.prepare_run_dir(cfg, run_dir, resume=(run_dir / "config.json").exists())
    trainer, _ = launch.build_trainer(cfg, run_dir, callbacks=[TuneReportCallback()])
    trainer.fit()


def _report(out: Path, grid, space: dict[str, Param], settings: SweepSettings, max_t: int) -> SweepResult:
    import pandas as pd

    from seriesforge.checkpoint import find_checkpoints

    rows = []
    for result in grid:
        m = result.metrics or {}
        trial_id = m.get("trial_id") or Path(result.path).name
        steps = m.get("global_step")
        rows.append({"trial_id": trial_id, **{k: (result.config or {}).get(k) for k in space},
                     settings.metric: m.get(settings.metric), "global_step": steps,
                     "finished": steps is not None and steps >= max_t,
                     "error": type(result.error).__name__ if result.error else ""})
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
    print(table.to_string(index=False), flush=True)
    print(f"results          {out / 'results.csv'}", flush=True)
    done = table[table["finished"]] if len(table) else table
    complete = len(table) == settings.trials and not _interrupted(grid)
    if not complete:
        print(f"sweep incomplete: finish it with --resume {out}", flush=True)
    if done.empty:
        return SweepResult(table=table, complete=complete)
    # Only trials that trained their whole budget compete: an ASHA-stopped trial's last loss is from an earlier
    # step, or an earlier stage with a loss of another scale.
    best = done.sort_values(settings.metric, ascending=settings.mode == "min").iloc[0]
    best_dir = _export_best(out, out / "trials" / str(best["trial_id"]), find_checkpoints)
    print(f"best trial       {best['trial_id']} ({settings.metric}={best[settings.metric]:.4g})", flush=True)
    print(f"best config      {best_dir / 'config.yaml'}", flush=True)
    print(f"best checkpoint  {best_dir / 'checkpoint'}", flush=True)
    return SweepResult(table=table, complete=complete, best_dir=best_dir)


def _interrupted(grid) -> bool:
    """True when Tune stopped before every trial ended (SIGINT, driver shutdown)."""
    analysis = getattr(grid, "_experiment_analysis", None)
    trials = getattr(analysis, "trials", None) or []
    return any(t.status not in ("TERMINATED", "ERROR") for t in trials)


def _export_best(out: Path, run_dir: Path, find_checkpoints) -> Path:
    """best/config.yaml (the trial's resolved config) and best/checkpoint (its latest complete checkpoint)."""
    best = out / "best"
    tmp = out / ".best.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    config = json.loads((run_dir / "config.json").read_text())
    (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copytree(find_checkpoints(run_dir)[-1].path, tmp / "checkpoint")
    (tmp / "trial.txt").write_text(f"{run_dir}\n")
    shutil.rmtree(best, ignore_errors=True)
    tmp.replace(best)  # whole or not at all
    return best

