"""Search spaces: dotted config keys -> distributions, checked against the family's RunConfig before Ray starts.

    stages.denoiser.optim.lr: {loguniform: [1e-4, 3e-3]}   # low > 0, low < high
    model.hidden:             {uniform: [0.1, 0.5]}        # float fields only
    model.depth:              {randint: [2, 5]}            # integers in [low, high)
    model.dim:                {choice: [32, 64]}           # any values the field accepts
    model.depth: null                                      # in a user file: drop this key of the default space

The family declares its default space in the registry (`Family.search_space`); a user's YAML overrides it key by
key. Validation substitutes each bound or choice into the base config and resolves it with the same strict loader
as `seriesforge train`, so "wrong type" and "out of range" mean exactly what they mean for a config file; an
unknown key, an unknown distribution or an empty range fail the same way, each naming the key. Combinations
(e.g. dim % num_heads) are only checked per trial, when a trial's config is resolved.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from seriesforge import config as C
from seriesforge import registry
from seriesforge.errors import ConfigError

DISTRIBUTIONS = ("loguniform", "uniform", "randint", "choice")


@dataclass(frozen=True)
class Param:
    key: str  # dotted config path, e.g. stages.denoiser.optim.lr
    kind: str  # one of DISTRIBUTIONS
    args: tuple  # (low, high) or the choices

    def to_tune(self) -> Any:
        """The `ray.tune` search domain (imported here: building a space must not need Ray)."""
        from ray import tune

        if self.kind == "loguniform":
            return tune.loguniform(*self.args)
        if self.kind == "uniform":
            return tune.uniform(*self.args)
        if self.kind == "randint":
            return tune.randint(*self.args)
        return tune.choice(list(self.args))


def load_space(family: str, base: C.RunConfig, user: dict | str | None = None) -> dict[str, Param]:
    """The family's default space, overridden by `user` (a mapping or a YAML path), validated against `base`."""
    raw = dict(registry.search_space(family))
    if isinstance(user, str):
        user = C.load_yaml(user)
    for key, spec in (user or {}).items():
        if spec is None:
            raw.pop(str(key), None)
        else:
            raw[str(key)] = spec
    if not raw:
        raise ConfigError("space: no parameters to search (the default space was emptied)")
    space = {key: parse_param(key, spec) for key, spec in raw.items()}
    tree = C.to_dict(base)
    for param in space.values():
        _check_against(tree, param)
    return space


def parse_param(key: str, spec: Any) -> Param:
    """One `{distribution: args}` entry -> Param, with errors that name `space.KEY`."""
    where = f"space.{key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(f"{where}: expected one of {{{', '.join(DISTRIBUTIONS)}: ...}}, got {spec!r}")
    (kind, args), = spec.items()
    if kind not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {kind!r} (known: {', '.join(DISTRIBUTIONS)})")
    if not isinstance(args, (list, tuple)):
        raise ConfigError(f"{where}: {kind} takes a list, got {args!r}")
    if kind == "choice":
        if not args:
            raise ConfigError(f"{where}: choice is empty")
        return Param(key, kind, tuple(args))
    if len(args) != 2:
        raise ConfigError(f"{where}: {kind} takes [low, high], got {list(args)!r}")
    low, high = (_number(v, where, integer=kind == "randint") for v in args)
    if not low < high:
        raise ConfigError(f"{where}: empty range [{low}, {high}] (low must be < high)")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform needs low > 0, got {low}")
    return Param(key, kind, (low, high))


def _number(value: Any, where: str, *, integer: bool) -> float | int:
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if integer and not float(value).is_integer():
        raise ConfigError(f"{where}: randint takes integers, got {value!r}")
    return int(value) if integer else float(value)


def _check_against(tree: dict, param: Param) -> None:
    """The key names a leaf of the config, and every bound/choice is a value that leaf accepts."""
    where = f"space.{param.key}"
    node: Any = tree
    parts = param.key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "none: not a section"
            raise ConfigError(f"{where}: unknown config key {'.'.join(parts[: i + 1])!r} (known here: {known})")
        node = node[part]
    if isinstance(node, dict):
        raise ConfigError(f"{where}: names a config section, not a value")
    # randint's high is exclusive; for uniform/loguniform the float bounds also catch an int-only field
    samples = (param.args[0], param.args[1] - 1) if param.kind == "randint" else param.args
    for value in samples:
        try:
            registry.resolve_config(apply(tree, {param.key: value}))
        except ConfigError as err:
            raise ConfigError(f"{where}: {param.kind} value {value!r} is not valid here ({err})") from None


def apply(tree: dict, params: dict[str, Any]) -> dict:
    """A copy of config `tree` with dotted `params` set (keys already checked by `load_space`)."""
    out = copy.deepcopy(tree)
    for key, value in params.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return out


def describe(space: dict[str, Param]) -> str:
    return "\n".join(f"  {p.key:<32} {p.kind}{list(p.args)}" for p in space.values())
