"""Config: strict loading, overrides, and errors that name the dotted path."""

from __future__ import annotations

import pytest

from seriesforge import config as C
from seriesforge import registry
from seriesforge.errors import ConfigError

SPEC = "captions:/data/corpus"


def build(*sets: str, preset: str = "debug", config_file: str | None = None) -> C.RunConfig:
    return registry.build_run_config("t2s", preset=preset, data_spec=SPEC, sets=list(sets), config_file=config_file)


@pytest.mark.parametrize("family", registry.names())
def test_every_preset_resolves_and_round_trips(family):
    for preset in registry.preset_names(family):
        cfg = registry.preset_config(family, preset, SPEC)
        again = registry.resolve_config(C.to_dict(cfg))
        assert again == cfg
        assert set(cfg.stages) == set(registry.get(family).stages)


def test_set_overrides_nested_values_with_yaml_types():
    cfg = build("stages.denoiser.optim.lr=3e-4", "model.depth=3", "data.lengths=[24, 96]", "strategy.kind=ddp")
    assert cfg.stages["denoiser"].optim.lr == pytest.approx(3e-4)
    assert cfg.model.depth == 3
    assert cfg.data.lengths == [24, 96]
    assert cfg.strategy.kind == "ddp"


@pytest.mark.parametrize("assignment, fragment", [
    ("stages.denoiser.optim.lrr=1", "stages.denoiser.optim.lrr: unknown key"),
    ("model.depth=abc", "model.depth: expected an integer"),
    ("model.depth=2.5", "model.depth: expected an integer"),
    ("model.depth=0", "model.depth: must be >= 1"),
    ("stages.denoiser.optim.lr=-1", "stages.denoiser.optim.lr: must be > 0"),
    ("strategy.kind=horovod", "strategy.kind: 'horovod' is not one of"),
    ("strategy.zero_stage=5", "strategy.zero_stage: must be 0, 1, 2 or 3"),
    ("data.lengths=[]", "data.lengths: must list at least one length"),
    ("data.lengths=[24, 1]", "data.lengths: every length must be >= 2"),
    ("model.use_magic=true", "model.use_magic: unknown key"),
    ("model.cfg_dropout=1.5", "model.cfg_dropout: must be in [0, 1)"),
    ("stages.denoiser.batch_size=0", "stages.denoiser.batch_size: must be >= 1"),
    ("model.dim=31", "model.dim: must be divisible by num_heads"),
])
def test_bad_values_name_their_dotted_path(assignment, fragment):
    with pytest.raises(ConfigError) as err:
        build(assignment)
    assert fragment in str(err.value)


def test_cross_section_rules():
    with pytest.raises(ConfigError, match="strategy.kind='single' runs one worker"):
        build("strategy.kind=single", "scaling.num_workers=2")
    with pytest.raises(ConfigError, match="data.lengths: 4096 is outside"):
        build("data.lengths=[24, 4096]")


def test_unknown_family_and_preset():
    with pytest.raises(ConfigError, match="unknown family 'nosuch'"):
        registry.build_run_config("nosuch", preset="debug", data_spec=SPEC)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        build(preset="huge")


def test_yaml_config_file_merges_and_names_the_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("model:\n  depth: 3\nloop:\n  seed: 7\n")
    cfg = build(config_file=str(good))
    assert (cfg.model.depth, cfg.loop.seed) == (3, 7)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        build(config_file=str(bad))
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        build(config_file=str(tmp_path / "missing.yaml"))
    typo = tmp_path / "typo.yaml"
    typo.write_text("modle:\n  depth: 3\n")
    with pytest.raises(ConfigError, match="modle: unknown key"):
        build(config_file=str(typo))


def test_set_syntax_errors():
    with pytest.raises(ConfigError, match="expected key=value"):
        C.parse_set(["model.depth"])
    with pytest.raises(ConfigError, match="empty key segment"):
        C.parse_set(["model..depth=3"])


def test_missing_required_value():
    with pytest.raises(ConfigError, match="stages.denoiser.steps: required value is missing"):
        tree = C.to_dict(build())
        del tree["stages"]["denoiser"]["steps"]
        registry.resolve_config(tree)


def test_resume_config_is_the_saved_config_with_overrides_on_top(tmp_path):
    """`train --resume RUN --set ...` and the train job entrypoint continue from the saved config, not a preset."""
    from seriesforge import registry
    from seriesforge.train import launch

    saved = registry.build_run_config("stdiff", preset="debug", data_spec="sines:24", sets=["stages.denoiser.batch_size=12"])
    launch.prepare_run_dir(saved, tmp_path, resume=False)
    assert launch.resume_config(tmp_path) == saved
    (tmp_path / "more.yaml").write_text("loop: {log_every: 7}\n")
    longer = launch.resume_config(tmp_path, config_file=str(tmp_path / "more.yaml"),
                                  sets=["stages.denoiser.steps=99"])
    assert (longer.stages["denoiser"].steps, longer.loop.log_every) == (99, 7)
    assert longer.stages["denoiser"].batch_size == 12  # the saved value, not the preset's
