"""The one table of families. The CLI's choices, Tune's spaces, Serve's loaders and the tests all read it.

Adding a family is one line in `_FAMILIES` (plus the family's own folder); no trainer code changes.
Families are imported lazily so that `import seriesforge.registry` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from seriesforge import config as C
from seriesforge.errors import ConfigError

# registry key -> "module:Class"
_FAMILIES: dict[str, str] = {
    "t2s": "seriesforge.families.t2s.family:T2SFamily",
    "timeldm": "seriesforge.families.timeldm.family:TimeLDMFamily",
    "stdiff": "seriesforge.families.stdiff.family:STDiffFamily",
    "timevqvae": "seriesforge.families.timevqvae.family:TimeVQVAEFamily",
    "timevqvdm": "seriesforge.families.timevqvdm.family:TimeVQVDMFamily",
}


def names() -> list[str]:
    """Registered family names, in registration order."""
    return list(_FAMILIES)


def get(name: str) -> Any:
    """The family class registered as `name`."""
    if name not in _FAMILIES:
        raise ConfigError(f"family: unknown family {name!r} (known: {', '.join(names())})")
    module_name, cls_name = _FAMILIES[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def preset_names(name: str) -> list[str]:
    return list(get(name).presets())


def preset_config(family: str, preset: str, data_spec: str) -> C.RunConfig:
    """The complete config of a family's named preset."""
    presets = get(family).presets()
    if preset not in presets:
        raise ConfigError(f"--preset: unknown preset {preset!r} for {family} (known: {', '.join(presets)})")
    return presets[preset].build(data_spec)


def search_space(family: str) -> dict[str, dict]:
    """The family's default tuning space (dotted config key -> {distribution: args})."""
    return get(family).search_space()


def resolve_config(data: dict) -> C.RunConfig:
    """A plain dict (from JSON/YAML) -> validated `RunConfig` with the family's model config type."""
    if not isinstance(data, dict) or "family" not in data:
        raise ConfigError("config: missing 'family'")
    family = get(data["family"])
    cfg = C.from_dict(C.RunConfig, data, overrides={"model": family.Config})
    check_stages(cfg, family)
    family.validate(cfg)
    return cfg


def check_stages(cfg: C.RunConfig, family: Any) -> None:
    expected = list(family.stages)
    if sorted(cfg.stages) != sorted(expected):
        raise ConfigError(f"stages: {cfg.family} trains stages {expected}, config has {sorted(cfg.stages)}")


def build_run_config(family: str, *, preset: str, data_spec: str | None, config_file: str | None = None,
                     sets: list[str] | None = None) -> C.RunConfig:
    """Preset, then a YAML file, then --set overrides; validated once at the end."""
    cfg = preset_config(family, preset, data_spec or "unset:")
    tree = override(C.to_dict(cfg), config_file=config_file, sets=sets, data_spec=data_spec)
    if tree.get("family") != family:
        raise ConfigError(f"family: config says {tree.get('family')!r} but the command trains {family!r}")
    return resolve_config(tree)


def override(tree: dict, *, config_file: str | None = None, sets: list[str] | None = None,
             data_spec: str | None = None) -> dict:
    """A config tree with a YAML file, then --set values, then the data SPEC applied (in that order)."""
    if config_file:
        tree = C.merge(tree, C.load_yaml(config_file))
    if sets:
        tree = C.merge(tree, C.parse_set(sets))
    if data_spec:
        tree["data"]["spec"] = data_spec
    return tree
