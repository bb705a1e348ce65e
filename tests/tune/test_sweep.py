"""Real sweeps on CPU: 4 tiny trials (ASHA stops the clearly worse one), best config and checkpoint exported,
and a sweep interrupted after its first trial and resumed. Slow: every trial is a real Ray Train run."""

from __future__ import annotations

import json
import os
import signal

import pytest
from ray import tune

from seriesforge import registry
from seriesforge.errors import ConfigError
from seriesforge.generate import load
from seriesforge.tune import sweep
from seriesforge.tune.space import load_space

pytestmark = pytest.mark.slow

GOOD, BAD = 1e-2, 1e-7  # autoencoder learning rates: BAD barely moves the loss in a few steps
KEY = "stages.autoencoder.optim.lr"


def _base(corpus):
    # one worker per trial, a few steps per stage: a trial is one small real training run
    return registry.build_run_config("t2s", preset="debug", data_spec=f"captions:{corpus}", sets=[
        "strategy.kind=single", "scaling.num_workers=1", "stages.autoencoder.steps=8", "stages.denoiser.steps=4",
        "loop.log_every=2", "loop.checkpoint_every=8", "data.lengths=[24]", "data.val_fraction=0.2",
        "data.val_rows=32"])


def _space(base):
    return load_space("t2s", base, {k: None for k in registry.search_space("t2s")} | {KEY: {"choice": [GOOD, BAD]}})


def test_four_trial_optuna_sweep_asha_stops_the_bad_trial_and_exports_the_best(ray_local, tiny_corpus, tmp_path):
    base = _base(tiny_corpus)
    # points fix the order: two good trials reach the rungs first, so the bad one meets a recorded cutoff.
    # ASHA compares the held-out loss (val_loss), not the training loss.
    settings = sweep.SweepSettings(trials=4, max_concurrent=2, metric="val_loss", mode="min", grace_period=2,
                                   search="optuna", points=[{KEY: GOOD}, {KEY: GOOD}, {KEY: BAD}, {KEY: GOOD}])
    result = sweep.start(base, _space(base), settings, tmp_path / "sweep")
    table = result.table
    assert result.complete and len(table) == 4 and not table["error"].any(), table
    bad = table[table[KEY] == BAD].iloc[0]
    assert not bad["finished"] and bad["global_step"] < 12, table  # ASHA stopped it early
    assert (tmp_path / "sweep" / "results.csv").exists()
    # the best config reproduces its trial's config, through the same loader as `train --config`
    best = result.best_dir
    trial_dir = (best / "trial.txt").read_text().strip()
    trial_cfg = registry.resolve_config(json.loads(open(f"{trial_dir}/config.json").read()))
    again = registry.build_run_config("t2s", preset="debug", data_spec=trial_cfg.data.spec,
                                      config_file=str(best / "config.yaml"))
    assert again == trial_cfg and again.stages["autoencoder"].optim.lr == GOOD
    # the exported checkpoint is what generate/serve load
    assert load(best / "checkpoint").sample(n=1, length=24, seed=0).shape == (1, 1, 24)


class _InterruptAfterFirstTrial(tune.Callback):
    """Acts like Ctrl-C on the driver as soon as one trial has finished."""

    def on_trial_complete(self, iteration, trials, trial, **info):
        os.kill(os.getpid(), signal.SIGINT)


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(ray_local, tiny_corpus, tmp_path):
    base = _base(tiny_corpus)
    settings = sweep.SweepSettings(trials=2, max_concurrent=1, metric="val_loss", mode="min", scheduler="fifo")
    out = tmp_path / "sweep"
    first = sweep.start(base, _space(base), settings, out, callbacks=[_InterruptAfterFirstTrial()])
    assert not first.complete
    done = [d for d in (out / "trials").iterdir() if (d / "metrics.jsonl").exists()]
    finished = {d.name: (d / "metrics.jsonl").read_text() for d in done
                if first.table.set_index("trial_id").loc[d.name, "finished"]}
    assert len(finished) == 1, first.table
    second = sweep.resume(out)
    assert second.complete and len(second.table) == 2 and second.table["finished"].all(), second.table
    for name, metrics in finished.items():  # not trained again: its metrics log is untouched
        assert (out / "trials" / name / "metrics.jsonl").read_text() == metrics
    assert (out / "best" / "config.yaml").exists()


def test_validation_metric_without_held_out_rows_is_refused_before_ray(tiny_corpus, tmp_path):
    base = registry.build_run_config("t2s", preset="debug", data_spec=f"captions:{tiny_corpus}")
    settings = sweep.SweepSettings(trials=1, max_concurrent=1, metric="val_loss")
    with pytest.raises(ConfigError, match="data.val_fraction"):
        sweep.start(base, _space(base), settings, tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()
