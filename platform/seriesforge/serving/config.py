"""The Serve configuration: typed, strict, and read from the same YAML file that `serve run` deploys.

One file serves both entry points. `serve/config.yaml` is a Ray Serve config (`http_options`, `applications`); the
seriesforge application's `args` mapping is our `ServeConfig`, and `http_options.host/port` is our `HttpConfig`:

    http_options: {host: 127.0.0.1, port: 8000}
    applications:
      - name: seriesforge
        import_path: seriesforge.serving.app:build_app
        args: {models: {NAME: CHECKPOINT_DIR}, batching: {...}, autoscaling: {...}, replica: {...}, limits: {...}}

Loading goes through `seriesforge.config.from_dict`, so an unknown key, a wrong type or a value out of range is a
`ConfigError` naming its dotted path (``applications[0].args.batching.max_batch_size``). Each default lives here.
No Ray import: the CLI validates a config before it starts anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from seriesforge import config as C
from seriesforge.config import require
from seriesforge.errors import ConfigError

APP_NAME = "seriesforge"
IMPORT_PATH = "seriesforge.serving.app:build_app"
# Model names travel in URLs, JSON and Serve's multiplexed-model-id header: keep them plain.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(kw_only=True)
class BatchingConfig:
    """Dynamic batching of concurrent requests (`@serve.batch`), per generator replica."""

    enabled: bool = True  # false: every request samples alone (max batch size 1), the benchmark's baseline
    max_batch_size: int = 16  # requests gathered into one batch call (one sampler call per (model, length, ...))
    batch_wait_timeout_s: float = 0.01  # how long a partial batch waits for more requests

    def __post_init__(self) -> None:
        require(self.max_batch_size >= 1, "max_batch_size", f"must be >= 1, got {self.max_batch_size}")
        require(self.batch_wait_timeout_s >= 0, "batch_wait_timeout_s", "must be >= 0")


@dataclass(kw_only=True)
class AutoscalingConfig:
    """Ray Serve autoscaling of the generator deployment."""

    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 8.0  # per replica; about half a full batch keeps batches filling
    upscale_delay_s: float = 30.0  # load must stay above target this long before a replica is added (Ray's default)
    downscale_delay_s: float = 600.0  # and below it this long before one is removed (Ray's default)

    def __post_init__(self) -> None:
        require(self.min_replicas >= 0, "min_replicas", f"must be >= 0, got {self.min_replicas}")
        require(self.upscale_delay_s >= 0, "upscale_delay_s", f"must be >= 0, got {self.upscale_delay_s}")
        require(self.downscale_delay_s >= 0, "downscale_delay_s", f"must be >= 0, got {self.downscale_delay_s}")
        require(self.max_replicas >= max(1, self.min_replicas), "max_replicas",
                f"must be >= max(1, min_replicas={self.min_replicas}), got {self.max_replicas}")
        require(self.target_ongoing_requests > 0, "target_ongoing_requests", "must be > 0")


@dataclass(kw_only=True)
class ReplicaConfig:
    """Resources and capacity of one generator replica."""

    num_cpus: float = 1.0  # also the replica's torch threads: Ray sets OMP_NUM_THREADS = floor(num_cpus)
    use_gpu: Literal["auto", "yes", "no"] = "auto"  # auto: GPUs when the Ray cluster has any
    num_gpus: float = 1.0  # per replica, when GPUs are used (fractions share a GPU)
    max_ongoing_requests: int = 64  # must reach batching.max_batch_size, or a batch can never fill
    max_models: int = 4  # multiplexing LRU bound: checkpoints held in memory per replica

    def __post_init__(self) -> None:
        require(self.num_cpus > 0, "num_cpus", f"must be > 0, got {self.num_cpus}")
        require(self.num_gpus > 0, "num_gpus", f"must be > 0, got {self.num_gpus}")
        require(self.max_ongoing_requests >= 1, "max_ongoing_requests", "must be >= 1")
        require(self.max_models >= 1, "max_models", f"must be >= 1, got {self.max_models}")


@dataclass(kw_only=True)
class IngressConfig:
    """The FastAPI ingress: validation and routing only, so a small CPU share and many concurrent requests."""

    num_replicas: int = 1
    num_cpus: float = 0.1
    max_ongoing_requests: int = 256

    def __post_init__(self) -> None:
        require(self.num_replicas >= 1, "num_replicas", f"must be >= 1, got {self.num_replicas}")
        require(self.num_cpus > 0, "num_cpus", f"must be > 0, got {self.num_cpus}")
        require(self.max_ongoing_requests >= 1, "max_ongoing_requests", "must be >= 1")


@dataclass(kw_only=True)
class LimitsConfig:
    """What one request may ask for. Above max_points the answer is 413; other bounds are 422."""

    max_n: int = 1024  # series per request
    max_points: int = 1_048_576  # n x length per request (4 MiB of float32)
    max_steps: int = 1000  # sampler steps: a large value is a cheap way to occupy a replica
    request_timeout_s: float = 60.0  # the ingress answers 504 after this long

    def __post_init__(self) -> None:
        for name in ("max_n", "max_points", "max_steps"):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")
        require(self.request_timeout_s > 0, "request_timeout_s", "must be > 0")


@dataclass(kw_only=True)
class ServeConfig:
    """The seriesforge Serve application (the `args` of its entry in a Serve config file)."""

    models: dict[str, str] = field(default_factory=dict)  # model name -> checkpoint or run directory
    api_key_env: str | None = None  # name of the env var holding the bearer token; None: no key required
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    autoscaling: AutoscalingConfig = field(default_factory=AutoscalingConfig)
    replica: ReplicaConfig = field(default_factory=ReplicaConfig)
    ingress: IngressConfig = field(default_factory=IngressConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def __post_init__(self) -> None:
        for name in self.models:
            require(bool(MODEL_NAME.match(name)), f"models.{name}",
                    "a model name is letters, digits, '.', '_' or '-' (at most 128, starting alphanumeric)")
        if self.api_key_env is not None:
            require(bool(re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.api_key_env)), "api_key_env",
                    f"must be an environment variable name, got {self.api_key_env!r}")
        if self.batching.enabled:
            require(self.replica.max_ongoing_requests >= self.batching.max_batch_size, "replica.max_ongoing_requests",
                    f"must be >= batching.max_batch_size={self.batching.max_batch_size}, or batches never fill")

    @property
    def max_batch_size(self) -> int:
        """The batch size the generator replicas use: 1 when batching is off."""
        return self.batching.max_batch_size if self.batching.enabled else 1


@dataclass(kw_only=True)
class HttpConfig:
    """Where Serve's HTTP proxy listens (`http_options` of the Serve config file)."""

    host: str = "127.0.0.1"  # loopback: the API speaks plain HTTP; expose it deliberately (and set an API key)
    port: int = 8000

    def __post_init__(self) -> None:
        require(bool(self.host.strip()), "host", "must not be empty")
        require(0 < self.port < 65536, "port", f"must be in [1, 65535], got {self.port}")

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


def load_file(path: str | Path) -> tuple[ServeConfig, HttpConfig]:
    """Read a Serve config file: our application's `args` and the proxy's `http_options`.

    The file must hold exactly one application whose import_path is ours, so `serve run FILE` and
    `seriesforge serve --config FILE` deploy the same thing. `proxy_location` and `logging_config` are accepted
    for `serve run`; `seriesforge serve` leaves them at Serve's defaults.
    """
    data = C.load_yaml(str(path))
    unknown = sorted(set(data) - {"proxy_location", "http_options", "applications", "logging_config"})
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: not supported by seriesforge serve (known: proxy_location, "
                          "http_options, applications, logging_config)")
    apps = data.get("applications")
    if not isinstance(apps, list) or len(apps) != 1 or not isinstance(apps[0], dict):
        raise ConfigError(f"{path}: applications: expected a list with one application ({IMPORT_PATH})")
    if apps[0].get("import_path") != IMPORT_PATH:
        raise ConfigError(f"{path}: applications[0].import_path: expected {IMPORT_PATH!r}, "
                          f"got {apps[0].get('import_path')!r}")
    cfg = C.from_dict(ServeConfig, apps[0].get("args") or {}, path="applications[0].args")
    http = C.from_dict(HttpConfig, data.get("http_options") or {}, path="http_options")
    return cfg, http


def from_args(args: dict) -> ServeConfig:
    """The `args` mapping `serve run` hands to the application builder -> `ServeConfig`."""
    return C.from_dict(ServeConfig, args or {}, path="args")


def with_checkpoints(cfg: ServeConfig, specs: list[str]) -> ServeConfig:
    """Replace the configured models by `--checkpoint [NAME=]DIR` arguments (NAME defaults to DIR's name)."""
    if not specs:
        return cfg
    models: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).resolve().name, spec
        if name in models:
            raise ConfigError(f"--checkpoint {spec}: model name {name!r} given twice (use NAME=DIR to tell them "
                              "apart)")
        models[name] = path
    try:
        return replace(cfg, models=models)
    except ConfigError as err:
        raise ConfigError(f"--checkpoint: {err}") from None


def read_api_key(cfg: ServeConfig) -> str | None:
    """The bearer token from the env var `cfg.api_key_env` names; an unset or empty variable is an error, so a
    server that was told to require a key never starts open. The key itself is never printed."""
    if cfg.api_key_env is None:
        return None
    key = os.environ.get(cfg.api_key_env, "")
    if not key.strip():
        raise ConfigError(f"api_key_env: environment variable {cfg.api_key_env} is not set or empty")
    return key.strip()
