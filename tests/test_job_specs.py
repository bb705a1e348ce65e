"""Every job spec under jobs/specs/ validates offline (the data itself is not read here): train and tune specs
build their run configs (and a tune spec its sweep settings and space), eval specs their dataset plan."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seriesforge import registry
from seriesforge.errors import ConfigError
from seriesforge.submit.specs import EvalJob, TrainJob, TuneJob, load_spec

SPECS = sorted((Path(__file__).resolve().parents[1] / "jobs" / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_job_spec_validates(path):
    spec = load_spec(path)
    if isinstance(spec, TrainJob):
        cfg = spec.run_config()
        assert cfg.family == spec.family and spec.out
    if isinstance(spec, TuneJob):
        from seriesforge.tune import sweep
        from seriesforge.tune.space import load_space

        sweep.SweepSettings(trials=spec.trials, max_concurrent=spec.max_concurrent, metric=spec.metric,
                            mode=spec.mode, scheduler=spec.scheduler, search=spec.search)
        assert load_space(spec.family, cfg, spec.space)
    if isinstance(spec, EvalJob):
        assert "{name}" in spec.checkpoints and spec.out


def test_specs_cover_every_family_and_each_job_kind():
    specs = [load_spec(p) for p in SPECS]
    trained = {s.family for s in specs if type(s) is TrainJob}
    assert set(registry.names()) <= trained
    assert any(isinstance(s, TuneJob) and s.trials == 32 and s.scheduler == "asha" for s in specs)
    assert any(isinstance(s, EvalJob) and len(s.datasets) > 1 for s in specs)
    big = next(s for s in specs if type(s) is TrainJob and s.family == "t2s" and s.preset == "paper")
    cfg = big.run_config()
    assert (cfg.scaling.num_workers, cfg.strategy.kind, cfg.strategy.zero_stage) == (8, "deepspeed", 2)


@pytest.mark.parametrize("text, message", [
    ("kind: train\nfamily: t2s\ndata: sines:24\nout: x\nlr: 1\n", "unknown key(s) lr"),
    ("kind: tune\nfamily: t2s\ndata: sines:24\nout: x\n", "this entrypoint runs train specs"),
    ("kind: serve\n", "kind: 'serve' is not one of"),
    ("kind: train\nfamily: t2s\nout: x\n", "data"),
    ("kind: eval\nucr_root: u\ncheckpoints: runs/one\nout: r\n", "must contain {name}"),
])
def test_bad_spec_is_refused_naming_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_spec(path, "train" if "tune" in text else None)
    assert str(path) in str(err.value)


def test_eval_spec_checks_datasets_against_the_archive(tmp_path, make_ucr_dataset):
    make_ucr_dataset(tmp_path / "ucr", "Tiny", [(1, [0.0, 1.0])], [(1, [1.0, 0.0])])
    spec = EvalJob(ucr_root=str(tmp_path / "ucr"), checkpoints="runs/{name}", out="r", datasets=["Tiny", "Nope"])
    with pytest.raises(ConfigError, match="datasets: Nope not under ucr_root"):
        spec.dataset_names()
    assert EvalJob(ucr_root=str(tmp_path / "ucr"), checkpoints="runs/{name}", out="r").dataset_names() == ["Tiny"]
    assert spec.checkpoint_of("Tiny") == Path("runs/Tiny")
