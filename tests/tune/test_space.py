"""Search-space parsing and validation: every bad space fails before Ray starts, naming the key (no Ray here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from seriesforge import registry
from seriesforge.errors import ConfigError
from seriesforge.tune.space import apply, load_space


@pytest.fixture(scope="module")
def base():
    return registry.build_run_config("t2s", preset="debug", data_spec="captions:/nowhere")


def test_default_space_comes_from_the_registry_and_validates(base):
    space = load_space("t2s", base)
    assert set(space) == set(registry.search_space("t2s"))
    assert space["stages.denoiser.optim.lr"].kind == "loguniform"


def test_user_yaml_overrides_and_drops_default_keys(base, tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("model.dim: {choice: [32, 64]}\nmodel.depth: null\nstages.autoencoder.optim.lr: {loguniform: [1e-4, 1e-2]}\n")
    space = load_space("t2s", base, str(f))
    assert space["model.dim"].args == (32, 64) and "model.depth" not in space
    assert space["stages.autoencoder.optim.lr"].args == (1e-4, 1e-2)  # YAML's "1e-4" string read as a number


@pytest.mark.parametrize("entry, message", [
    ({"model.nope": {"choice": [1]}}, "space.model.nope: unknown config key"),
    ({"stages.critic.steps": {"choice": [1]}}, "space.stages.critic.steps: unknown config key"),
    ({"model": {"choice": [1]}}, "space.model: names a config section"),
    ({"model.depth": {"randint": [3, 3]}}, "space.model.depth: empty range"),
    ({"stages.denoiser.optim.lr": {"uniform": [1e-2, 1e-3]}}, "space.stages.denoiser.optim.lr: empty range"),
    ({"model.dim": {"choice": []}}, "space.model.dim: choice is empty"),
    ({"stages.denoiser.optim.lr": {"loguniform": [0, 1]}}, "loguniform needs low > 0"),
    ({"model.depth": {"uniform": [1, 3]}}, "space.model.depth: uniform value 1.0 is not valid here"),
    ({"model.dim": {"choice": ["wide"]}}, "space.model.dim: choice value 'wide' is not valid"),
    ({"stages.denoiser.optim.lr": {"loguniform": [-1, 1]}}, "loguniform needs low > 0"),
    ({"stages.denoiser.optim.lr": {"normal": [0, 1]}}, "unknown distribution 'normal'"),
    ({"stages.denoiser.optim.lr": 0.1}, "expected one of"),
    ({"model.depth": {"randint": [1.5, 3]}}, "randint takes integers"),
    ({"model.cfg_dropout": {"uniform": [0.0, 1.5]}}, "space.model.cfg_dropout: uniform value 1.5"),  # out of range
])
def test_invalid_space_is_rejected_naming_the_key(base, entry, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_space("t2s", base, entry)


def test_validation_does_not_start_ray():
    # a fresh interpreter: in the full suite an earlier test's session-wide Ray is already up in this one
    code = ("import sys; from seriesforge import registry; from seriesforge.tune.space import load_space; "
            "base = registry.build_run_config('t2s', preset='debug', data_spec='captions:/nowhere'); "
            "load_space('t2s', base, {'model.dim': {'choice': [32]}}); "
            "print('ray' in sys.modules and sys.modules['ray'].is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_apply_sets_dotted_keys_on_a_copy(base):
    from seriesforge import config as C

    tree = C.to_dict(base)
    out = apply(tree, {"model.dim": 64, "stages.denoiser.optim.lr": 0.01})
    assert out["model"]["dim"] == 64 and out["stages"]["denoiser"]["optim"]["lr"] == 0.01
    assert tree["model"]["dim"] == base.model.dim
