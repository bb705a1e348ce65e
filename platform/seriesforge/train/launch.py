"""Launch a training run on Ray Train: data pipeline + TorchTrainer + storage, failure and checkpoint configs.

`seriesforge train` (embedded Ray) and submitted cluster jobs both call `run`.

    RUN_DIR/
      config.json        resolved run config, written before training starts
      metrics.jsonl      one line per report (rank 0)
      ray/train/         Ray Train storage: one directory per checkpoint (see seriesforge.checkpoint)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seriesforge import registry
from seriesforge.checkpoint import CheckpointInfo, find_checkpoints
from seriesforge.config import RunConfig, to_dict
from seriesforge.data.specs import check_readable, ucr_shape, window_shape
from seriesforge.errors import ConfigError, DataError

RUN_NAME = "train"


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: CheckpointInfo
    data_summary: str


def check_data(cfg: RunConfig) -> None:
    spec = check_readable(cfg.data.spec)
    needs = registry.get(cfg.family).data_needs(cfg.model)
    kinds = needs.kinds
    if spec.kind not in kinds:
        raise DataError(f"--data {cfg.data.spec!r}: family {cfg.family} trains on {' or '.join(kinds)} data, "
                        f"not {spec.kind}")
    if spec.length is not None and list(cfg.data.lengths) != [spec.length]:
        raise DataError(f"data.lengths: {cfg.data.lengths} but --data {cfg.data.spec} holds windows of length "
                        f"{spec.length}; set data.lengths to [{spec.length}]")
    ucr = ucr_shape(spec)
    if ucr is not None:
        for what, want, have in (("model.length", needs.length, ucr[0]),
                                 ("model.num_classes", needs.num_classes, ucr[1])):
            if want is not None and want != have:
                raise DataError(f"{what}: {want} but --data {cfg.data.spec} has {have}; set {what}={have} "
                                "(presets read it from --data)")
        if list(cfg.data.lengths) != [ucr[0]]:
            raise DataError(f"data.lengths: {cfg.data.lengths} but --data {cfg.data.spec} holds series of length "
                            f"{ucr[0]}; set data.lengths to [{ucr[0]}]")
    shape = window_shape(spec)
    if needs.channels is not None and shape is not None and shape[1] != needs.channels:
        raise DataError(f"model.channels: {needs.channels} but --data {cfg.data.spec} has K={shape[1]} numeric "
                        f"column(s); set model.channels={shape[1]} (presets read it from --data)")


def run(cfg: RunConfig, run_dir: Path, *, address: str | None = None, resume: bool = False) -> TrainResult:
    """Train every stage of `cfg.family`; returns the latest complete checkpoint."""
    from seriesforge.runtime import init_ray

    check_data(cfg)  # fail before a run directory or Ray exists
    run_dir = run_dir.resolve()
    prepare_run_dir(cfg, run_dir, resume)
    print(init_ray(address, min_cpus=int(cfg.scaling.num_workers * cfg.scaling.cpus_per_worker) + 2), flush=True)
    trainer, summary = build_trainer(cfg, run_dir)
    trainer.fit()
    return finished(run_dir, summary)


def build_trainer(cfg: RunConfig, run_dir: Path, *, callbacks: list | None = None) -> tuple[Any, str]:
    """The TorchTrainer of one run (data pipeline, scaling, storage, failure and checkpoint configs).

    Shared by `run` (seriesforge train) and every Tune trial (seriesforge.tune.sweep), so a trial is exactly a
    training run: same strategy layer, same storage layout under `run_dir`. Ray must already be initialised and
    `run_dir` prepared. Re-creating it over a run directory that holds Ray Train storage resumes that run (Ray
    Train V2 restores a run from the same name and storage path). Returns (trainer, data summary line).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from seriesforge.data.pipeline import prepare_training_data
    from seriesforge.runtime import cluster_has_gpus
    from seriesforge.train.worker import train_loop_per_worker

    family = registry.get(cfg.family)
    data = prepare_training_data(cfg.data, family.data_needs(cfg.model), fallback_cache=run_dir / "data_cache")
    print(data.describe(), flush=True)
    _check_batches_fit(cfg, data.rows_per_length)
    # data-derived initial values, computed once here so every rank (and every restart) starts from the same ones
    init = family.data_init(cfg.model, data.init_sample)
    use_gpu = cfg.scaling.use_gpu == "yes" or (cfg.scaling.use_gpu == "auto" and cluster_has_gpus())
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"run": to_dict(cfg), "run_dir": str(run_dir), "data_fingerprint": data.fingerprint,
                           "train_rows": data.train_rows,
                           "embeddings": str(data.embeddings.lookup.path) if data.embeddings else None,
                           "data_init": {k: v.detach().cpu().numpy() for k, v in init.items()},
                           "reference": data.init_sample},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=use_gpu,
                                               resources_per_worker={"CPU": cfg.scaling.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=RUN_NAME, storage_path=str(run_dir / "ray"), callbacks=callbacks or None,
            failure_config=ray.train.FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.scaling.num_to_keep)),
        datasets=data.datasets,
    )
    return trainer, data.describe()


def finished(run_dir: Path, data_summary: str = "") -> TrainResult:
    """The result of a run whose trainer has returned: its latest complete checkpoint."""
    found = find_checkpoints(run_dir)
    if not found:
        raise DataError(f"{run_dir}: training finished without a checkpoint")
    return TrainResult(run_dir=run_dir, checkpoint=found[-1], data_summary=data_summary)


def prepare_run_dir(cfg: RunConfig, run_dir: Path, resume: bool) -> None:
    """Write `run_dir/config.json` (a new run) or check it is there (resume)."""
    config_file = run_dir / "config.json"
    if resume:
        if not config_file.exists():
            raise ConfigError(f"--resume {run_dir}: not a run directory (no config.json)")
    elif config_file.exists():
        raise ConfigError(f"--out {run_dir}: already holds a run; continue it with --resume {run_dir} "
                          "or choose a new directory")
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".config.json.tmp"
    tmp.write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True))
    tmp.replace(config_file)


def _check_batches_fit(cfg: RunConfig, rows: dict[int, int]) -> None:
    """Fail before any worker starts if a length bucket cannot fill one batch on every worker."""
    workers = cfg.scaling.num_workers
    for stage, stage_cfg in cfg.stages.items():
        for n in cfg.data.lengths:
            per_worker = rows[n] // workers
            if per_worker < stage_cfg.batch_size:
                raise ConfigError(f"stages.{stage}.batch_size={stage_cfg.batch_size}: length {n} has {rows[n]} "
                                  f"rows, only {per_worker} per worker for {workers} workers")


def config_from_checkpoint(path: Path, *, stages: list[str], family: str | None = None, data_spec: str | None = None,
                           config_file: str | None = None, sets: list[str] | None = None) -> RunConfig:
    """The config of a run that starts from a stored checkpoint (`seriesforge train --from CKPT [--stage S]`).

    The checkpoint's own config (so the networks match its weights), then --config/--set; `start` records the
    source. Every stage before the first one to train must be done in the source checkpoint."""
    from seriesforge.checkpoint import resolve

    info = resolve(path)
    tree = {k: v for k, v in info.config.items() if k != "schema_version"}
    if family and tree.get("family") != family:
        raise ConfigError(f"--from {path}: a {tree.get('family')} checkpoint, but the command trains {family}")
    tree = registry.override(tree, config_file=config_file, sets=sets, data_spec=data_spec)
    tree["start"] = {"from_checkpoint": str(info.path.resolve()), "only_stages": list(stages)}
    cfg = registry.resolve_config(tree)
    order = list(registry.get(cfg.family).stages)
    done = set(info.meta.get("stages_done", []))
    first = min((order.index(s) for s in stages), default=None)
    if first is None:
        first = next((i for i, s in enumerate(order) if s not in done), len(order))
    missing = [s for s in order[:first] if s not in done]
    if missing:
        raise ConfigError(f"--from {info.path}: stage(s) {missing} are not finished there (it has "
                          f"{sorted(done) or 'none'}); start from a checkpoint where they are")
    if first == len(order):
        raise ConfigError(f"--from {info.path}: every stage is done there; name one to re-run with --stage")
    return cfg


def load_run_config(run_dir: Path) -> RunConfig:
    """The resolved config a run was started with (for --resume)."""
    path = run_dir / "config.json"
    if not path.exists():
        raise ConfigError(f"--resume {run_dir}: not a run directory (no config.json)")
    return registry.resolve_config(json.loads(path.read_text()))


def resume_config(run_dir: Path, *, config_file: str | None = None, sets: list[str] = ()) -> RunConfig:
    """The config to continue `run_dir` with: the saved one, then a YAML file's and `key=value` overrides (e.g. a
    larger step budget). Shared by `seriesforge train --resume` and the train job entrypoint."""
    from seriesforge import config as C

    cfg = load_run_config(run_dir)
    if not (config_file or sets):
        return cfg
    tree = C.to_dict(cfg)
    tree = C.merge(tree, C.load_yaml(config_file)) if config_file else tree
    return registry.resolve_config(C.merge(tree, C.parse_set(list(sets))))
