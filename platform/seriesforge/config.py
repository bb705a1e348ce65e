"""Typed run configuration: kw-only dataclasses, strict dict/YAML loading, dotted overrides.

Each default lives once, in a dataclass field. Loading is strict: an unknown key, a wrong type or a value out of
range raises `ConfigError` naming the dotted path (``stages.denoiser.optim.lr``). A run's resolved config is
saved as JSON beside every checkpoint and is the only thing `generate` and Serve need to rebuild a model.

The family-specific part (`RunConfig.model`) is a dataclass owned by the family; `registry.resolve_config`
knows which one to use, so this module imports no family.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from seriesforge.errors import ConfigError

# ----------------------------------------------------------------------------------------------------------------
# Validation helpers used by every config's __post_init__
# ----------------------------------------------------------------------------------------------------------------


def require(condition: bool, key: str, message: str) -> None:
    """Raise `ConfigError` for field `key` (relative dotted path) unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


# ----------------------------------------------------------------------------------------------------------------
# Strict conversion between dicts and dataclasses
# ----------------------------------------------------------------------------------------------------------------


def from_dict(cls: type, data: Any, path: str = "", overrides: dict[str, type] | None = None) -> Any:
    """Build dataclass `cls` from a plain dict, checking keys and types recursively.

    Args:
        cls: a dataclass type.
        data: a mapping from field names to values (as parsed from JSON/YAML).
        path: dotted prefix for error messages.
        overrides: field path -> dataclass type, for fields typed `Any` whose type is only known at runtime
            (the family's model config).
    Raises:
        ConfigError: naming the dotted path of the first bad key or value.
    """
    overrides = overrides or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key (known keys: {known})")
    kwargs = {}
    for name, f in fields.items():
        key = _join(path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key}: required value is missing")
            continue
        kwargs[name] = _convert(overrides.get(key, hints[name]), data[name], key, overrides)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(_prefix(path, str(err))) from None


def _convert(tp: Any, value: Any, key: str, overrides: dict[str, type]) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key, overrides)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, key, overrides)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_convert(item, v, f"{key}[{i}]", overrides) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, _join(key, str(k)), overrides) for k, v in value.items()}
    return _convert_scalar(tp, value, key)


def _convert_scalar(tp: type, value: Any, key: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            value = _yaml_float(value, key)  # YAML 1.1 reads "3e-4" (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")


def _yaml_float(text: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{key}: expected a number, got {text!r}") from None


def to_dict(obj: Any) -> dict:
    """Dataclass -> plain dict of JSON/YAML-safe values (tuples become lists)."""
    return _plain(dataclasses.asdict(obj))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _prefix(path: str, message: str) -> str:
    if not path or message.startswith(path + "."):
        return message
    return f"{path}.{message}"


# ----------------------------------------------------------------------------------------------------------------
# Overrides: YAML files and --set key=value
# ----------------------------------------------------------------------------------------------------------------


def merge(base: dict, update: dict, path: str = "") -> dict:
    """Deep-merge `update` into a copy of `base`; keys must already exist in `base` unless base maps freely."""
    out = dict(base)
    for k, v in update.items():
        key = _join(path, str(k))
        if k not in out:
            raise ConfigError(f"{key}: unknown key (known keys: {', '.join(sorted(map(str, out)))})")
        if isinstance(out[k], dict) and isinstance(v, dict):
            out[k] = merge(out[k], v, key)
        else:
            out[k] = v
    return out


def parse_set(assignments: list[str]) -> dict:
    """``["optim.lr=3e-4", "loop.seed=1"]`` -> nested dict, values parsed as YAML scalars/lists."""
    tree: dict = {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        dotted, raw = item.split("=", 1)
        parts = [p for p in dotted.strip().split(".")]
        if not all(parts):
            raise ConfigError(f"--set {item!r}: empty key segment")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {dotted}: cannot parse value {raw!r} ({err.__class__.__name__})") from None
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return tree


def load_yaml(path: str) -> dict:
    """Read a YAML mapping from `path`, with errors naming the file."""
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--config {path}: not valid YAML ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping at the top level")
    return data


# ----------------------------------------------------------------------------------------------------------------
# The run config shared by every family
# ----------------------------------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class DataConfig:
    """What to train on and how batches are drawn."""

    spec: str  # data SPEC, e.g. "captions:/data/corpus" (see seriesforge.data.specs)
    lengths: list[int] = field(default_factory=lambda: [24, 48, 96])  # length buckets; each batch holds one
    # how steps interleave the buckets: round_robin (each length in turn) or proportional (the fullest bucket);
    # every row is used once per epoch either way, so each length's steps follow its rows (data.batches)
    schedule: Literal["round_robin", "proportional"] = "round_robin"
    scaling: Literal["series_minmax", "none"] = "series_minmax"  # per-series min-max: captions describe shape
    num_embed_actors: int = 1  # actor pool size of the caption-embedding pass
    worker_cache_mb: float = 256.0  # a worker keeps its shard in memory after one epoch if it fits (0: stream)
    on_bad_row: Literal["error", "skip"] = "error"  # skip: leave bad rows out, count and list them, never silent
    # Held-out rows for a validation loss (`val_loss`, what Tune's ASHA should compare): a row is held out when
    # crc32(id) falls in the first val_fraction of HOLDOUT_BUCKETS, so the split is stable across runs and workers.
    val_fraction: float = 0.0
    val_rows: int = 512  # held-out rows per length and worker scored at each validation (every log_every steps)

    def __post_init__(self) -> None:
        require(bool(self.spec.strip()), "spec", "must name data, e.g. captions:DIR")
        require(len(self.lengths) > 0, "lengths", "must list at least one length")
        require(all(n >= 2 for n in self.lengths), "lengths", f"every length must be >= 2, got {self.lengths}")
        require(len(set(self.lengths)) == len(self.lengths), "lengths", f"duplicate lengths in {self.lengths}")
        require(self.num_embed_actors >= 1, "num_embed_actors", "must be >= 1")
        require(self.worker_cache_mb >= 0, "worker_cache_mb", "must be >= 0")
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", f"must be in [0, 1), got {self.val_fraction}")
        require(self.val_rows >= 1, "val_rows", "must be >= 1")


@dataclass(kw_only=True)
class OptimConfig:
    """AdamW and its learning-rate schedule, per stage."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    schedule: Literal["constant", "onecycle", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine: decays to lr * min_lr_ratio (TimeVQVAE: 5e-3 -> 5e-4, ratio 0.1)

    def __post_init__(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "must be two values in [0, 1)")
        require(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        require(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")


@dataclass(kw_only=True)
class StageConfig:
    """Budget of one training stage (T2S: autoencoder, then denoiser)."""

    steps: int
    batch_size: int = 64  # per worker
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        require(self.steps >= 0, "steps", f"must be >= 0, got {self.steps}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass(kw_only=True)
class LoopConfig:
    seed: int = 0
    log_every: int = 10  # steps between metric reports
    checkpoint_every: int = 100  # steps between checkpoints (one is always written at the end of a stage)

    def __post_init__(self) -> None:
        require(self.log_every >= 1, "log_every", "must be >= 1")
        require(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")


@dataclass(kw_only=True)
class StrategyConfig:
    """How gradients are computed and synchronised across workers."""

    kind: Literal["deepspeed", "ddp", "single"] = "deepspeed"
    zero_stage: int = 2
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU

    def __post_init__(self) -> None:
        require(self.zero_stage in (0, 1, 2, 3), "zero_stage", f"must be 0, 1, 2 or 3, got {self.zero_stage}")


@dataclass(kw_only=True)
class ScalingConfig:
    num_workers: int = 2
    use_gpu: Literal["auto", "yes", "no"] = "auto"  # auto: one GPU per worker when the cluster has GPUs
    cpus_per_worker: float = 1.0
    max_failures: int = 2  # worker-group restarts from the last checkpoint before the run fails
    num_to_keep: int = 3  # Ray Train checkpoints kept on storage

    def __post_init__(self) -> None:
        require(self.num_workers >= 1, "num_workers", f"must be >= 1, got {self.num_workers}")
        require(self.cpus_per_worker > 0, "cpus_per_worker", "must be > 0")
        require(self.max_failures >= -1, "max_failures", "must be >= -1 (-1: unlimited)")
        require(self.num_to_keep >= 1, "num_to_keep", "must be >= 1")


@dataclass(kw_only=True)
class StartConfig:
    """Where a run's first stage starts: from scratch (the default), or from another run's stage checkpoint.

    `seriesforge train FAMILY --from CKPT [--stage NAME]` fills this in, so the saved config.json records the run's
    lineage and `--resume` continues it with the same stages.
    """

    from_checkpoint: str = ""  # a checkpoint directory whose weights the first trained stage starts from
    only_stages: list[str] = field(default_factory=list)  # train just these stages ([]: every stage not yet done)


@dataclass(kw_only=True)
class RunConfig:
    """Everything a training run needs. `model` is the family's own config dataclass."""

    family: str
    preset: str
    model: Any
    data: DataConfig
    stages: dict[str, StageConfig]
    loop: LoopConfig = field(default_factory=LoopConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    start: StartConfig = field(default_factory=StartConfig)

    def __post_init__(self) -> None:
        unknown = [s for s in self.start.only_stages if s not in self.stages]
        require(not unknown, "start.only_stages", f"{unknown} are not stages of this run ({list(self.stages)})")
        if self.strategy.kind == "single":
            require(self.scaling.num_workers == 1, "scaling.num_workers",
                    f"strategy.kind='single' runs one worker, got {self.scaling.num_workers}")
