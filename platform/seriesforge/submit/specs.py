"""Job specs: the YAML files in jobs/specs/ that jobs/train.py, jobs/sweep.py and jobs/evaluate.py run.

A spec names everything a cluster job needs, so a job is reproducible from one file under version control:

    kind: train | tune | eval          (default train)
    train:  family, preset, data, out, set: {dotted.key: value}, resume: bool
    tune:   family, preset, data, out, set, trials, max_concurrent, metric, mode, scheduler, search, space
    eval:   ucr_root, datasets (list or "all"), checkpoints ("runs/x-{name}"), out, protocol, repeats, n, refine,
            metrics

Relative paths resolve against SERIESFORGE_STORAGE when the job has one (`seriesforge submit --storage ROOT`), so
that outputs land on storage every node sees; `enter_storage` moves the job there. Every error names the spec
file and key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from seriesforge.errors import ConfigError

STORAGE_ENV = "SERIESFORGE_STORAGE"


@dataclass
class TrainJob:
    family: str
    data: str
    out: str
    preset: str = "debug"
    set: dict[str, Any] = field(default_factory=dict)
    resume: bool = False

    def sets(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.set.items()]

    def run_config(self):
        from seriesforge import registry

        return registry.build_run_config(self.family, preset=self.preset, data_spec=self.data, sets=self.sets())


@dataclass
class TuneJob(TrainJob):
    trials: int = 8
    max_concurrent: int = 1
    metric: str = "loss"
    mode: str = "min"
    scheduler: str = "asha"
    search: str = "random"
    space: dict[str, Any] | None = None  # overrides of the family's default space (same format as --space)


@dataclass
class EvalJob:
    ucr_root: str
    checkpoints: str  # a path template: {name} is the dataset
    out: str
    datasets: list[str] | str = "all"
    protocol: str = "paper"
    repeats: int | None = None
    n: int | None = None
    refine: bool = False
    metrics: list[str] | None = None  # a subset of the suite's metrics (default: all)

    def __post_init__(self) -> None:
        if not (self.datasets == "all" or (isinstance(self.datasets, list) and self.datasets)):
            raise ConfigError(f"datasets: a list of UCR dataset names or \"all\", got {self.datasets!r}")
        if "{name}" not in self.checkpoints and not (isinstance(self.datasets, list) and len(self.datasets) == 1):
            raise ConfigError(f"checkpoints: {self.checkpoints!r} must contain {{name}} (one checkpoint per dataset)")
        if self.protocol not in ("paper", "cpu", "smoke"):
            raise ConfigError(f"protocol: {self.protocol!r} is not one of paper, cpu, smoke")

    def dataset_names(self) -> list[str]:
        """The datasets to score, checked against the archive before anything runs."""
        root = Path(self.ucr_root)
        present = sorted(d.name for d in root.iterdir() if (d / f"{d.name}_TRAIN.tsv").exists()) \
            if root.is_dir() else []
        if not present:
            raise ConfigError(f"ucr_root: {root} holds no UCR dataset folder (NAME/NAME_TRAIN.tsv)")
        wanted = present if self.datasets == "all" else list(self.datasets)
        missing = [n for n in wanted if n not in present]
        if missing:
            raise ConfigError(f"datasets: {', '.join(missing)} not under ucr_root {root}")
        return wanted

    def checkpoint_of(self, name: str) -> Path:
        return Path(self.checkpoints.format(name=name))


KINDS = {"train": TrainJob, "tune": TuneJob, "eval": EvalJob}


def load_spec(path: Path, kind: str | None = None):
    """Parse and type-check a spec; `kind` (the entrypoint's) must match the spec's own."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the job spec: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a job spec is a mapping of keys, got {type(raw).__name__}")
    own = raw.pop("kind", "train")
    if own not in KINDS:
        raise ConfigError(f"{path}: kind: {own!r} is not one of {', '.join(KINDS)}")
    if kind is not None and own != kind:
        raise ConfigError(f"{path}: kind: {own}, but this entrypoint runs {kind} specs")
    cls = KINDS[own]
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; a {own} spec has {', '.join(sorted(names))}")
    try:
        return cls(**raw)
    except (TypeError, ConfigError) as exc:  # a required key is missing, or a value is out of range
        raise ConfigError(f"{path}: {exc}".replace("__init__() ", "")) from exc


def enter_storage() -> Path:
    """Run the job in SERIESFORGE_STORAGE (when set): relative spec paths then resolve on shared storage."""
    root = os.environ.get(STORAGE_ENV)
    if root:
        Path(root).mkdir(parents=True, exist_ok=True)
        os.chdir(root)
    return Path.cwd()


def job_main(doc: str, kind: str, body, argv: list[str] | None = None) -> int:
    """What every jobs/*.py entrypoint does: parse `SPEC [--set k=v ...]`, load the spec of `kind`, move to the
    job's storage, run `body(spec, sets)`; a user error becomes one line and exit 2 (as in the CLI)."""
    import argparse

    from seriesforge.cli import run_reporting_user_errors

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help=f"job spec YAML, kind: {kind} (see jobs/specs/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override on top of the spec's set: (train and tune specs)")
    args = parser.parse_args(argv)

    def run() -> int:
        spec = load_spec(args.spec.resolve(), kind)
        enter_storage()
        return body(spec, args.set)

    return run_reporting_user_errors(run)
