"""Real Ray Train runs on CPU: 2 workers under DeepSpeed ZeRO-2 and ZeRO-3 (gloo), DDP, resume, and the
corpus pipeline's guarantees (disjoint shards, one length per batch). Slow: Ray and DeepSpeed start for real."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from seriesforge import registry
from seriesforge.generate import load
from seriesforge.train import launch

pytestmark = pytest.mark.slow


def _reports_to_file(path):
    """A Ray Train callback (it runs in the train controller) that appends rank 0's reported metrics to `path`."""
    import ray.train

    class ReportsToFile(ray.train.UserCallback):
        def after_report(self, run_context, metrics, checkpoint):
            with open(path, "a") as fh:
                fh.write(json.dumps(metrics[0]) + "\n")

    return ReportsToFile()


def _cfg(corpus, *sets):
    return registry.build_run_config("t2s", preset="debug", data_spec=f"captions:{corpus}", sets=list(sets))


def _metrics(run_dir, stage):
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [m for m in lines if m["stage"] == stage]


def test_deepspeed_zero2_two_workers_trains_and_generates(ray_local, tiny_corpus, tmp_path):
    cfg = _cfg(tiny_corpus, "strategy.kind=deepspeed", "strategy.zero_stage=2", "scaling.num_workers=2",
               "data.val_fraction=0.2", "data.val_rows=64")
    result = launch.run(cfg, tmp_path / "run")
    meta = result.checkpoint.meta
    assert (meta["stage"], meta["step"], meta["world_size"], meta["zero_stage"]) == ("denoiser", 20, 2, 2)
    ae = _metrics(tmp_path / "run", "autoencoder")
    assert ae[-1]["recon_mse"] < ae[0]["recon_mse"], "autoencoder loss did not fall"
    assert ae[-1]["val_loss"] < ae[0]["val_loss"], "held-out loss did not fall"  # scored on rows never trained on
    gen = load(tmp_path / "run")
    out = gen.sample(n=2, length=36, captions=["rises steadily", "a spike near the end"], seed=0)
    assert out.shape == (2, 1, 36) and np.isfinite(out).all()


def test_resume_continues_step_and_optimizer_state_under_zero3(ray_local, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    # with held-out rows: every rank's validation forward must stay in step with ZeRO-3's parameter gathers
    held_out = ("data.val_fraction=0.2", "data.val_rows=32")
    first = _cfg(tiny_corpus, "strategy.zero_stage=3", "stages.denoiser.steps=10", *held_out)
    launch.run(first, run)
    assert _metrics(run, "denoiser")[-1]["optimizer_steps"] == 10
    assert all(np.isfinite(m["val_loss"]) for m in _metrics(run, "denoiser"))
    with pytest.raises(Exception, match="already holds a run"):
        launch.run(first, run)
    extended = _cfg(tiny_corpus, "strategy.zero_stage=3", "stages.denoiser.steps=20", *held_out)
    result = launch.run(extended, run, resume=True)
    denoiser = _metrics(run, "denoiser")
    steps = [m["step"] for m in denoiser]
    assert steps == [5, 10, 15, 20], steps  # continued at 11, nothing redone
    # the optimizer's own step counter came back from train_state (a fresh optimizer would report 5, 10)
    assert [m["optimizer_steps"] for m in denoiser[2:]] == [15, 20]
    assert _metrics(run, "autoencoder")[-1]["step"] == 20  # stage 1 was not trained again
    # resumed once more with nothing left to train: the final result is reported again, as a Tune trial restored
    # after its sweep driver died needs (Tune keeps the last result it got, and counts on global_step)
    launch.prepare_run_dir(extended, run, resume=True)
    trainer, _ = launch.build_trainer(extended, run, callbacks=[_reports_to_file(tmp_path / "reports.jsonl")])
    trainer.fit()
    reports = [json.loads(x) for x in (tmp_path / "reports.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["global_step"]) for r in reports] == [("denoiser", 40.0)], reports
    assert reports[0]["loss"] == pytest.approx(denoiser[-1]["loss"])
    assert result.checkpoint.meta["step"] == 20
    assert load(run).sample(n=1, length=24, seed=0).shape == (1, 1, 24)


def test_ddp_two_workers(ray_local, tiny_corpus, tmp_path):
    cfg = _cfg(tiny_corpus, "strategy.kind=ddp", "stages.autoencoder.steps=5", "stages.denoiser.steps=5")
    result = launch.run(cfg, tmp_path / "run")
    assert result.checkpoint.meta["strategy"] == "ddp" and result.checkpoint.meta["step"] == 5


def test_workers_see_disjoint_single_length_batches(ray_local, tiny_corpus, tmp_path):
    """Training's one mixed-length stream, split across 2 workers and sorted into length buckets on each: the
    workers' rows are disjoint, cover the corpus, and every batch holds one length."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from seriesforge.data.pipeline import TRAIN_KEY, prepare_training_data, training_datasets
    from seriesforge.protocols import DataNeeds

    cfg = _cfg(tiny_corpus)
    data = prepare_training_data(cfg.data, DataNeeds(text_encoder=None), fallback_cache=tmp_path / "cache")
    out = tmp_path / "seen"
    out.mkdir()

    def loop(config):
        from seriesforge.data.batches import LengthBatches

        context = ray.train.get_context()
        batches = LengthBatches(ray.train.get_dataset_shard(TRAIN_KEY), lengths=config["lengths"],
                                rows_per_epoch=config["rows"] // context.get_world_size(), schedule="round_robin",
                                batch_size=8, keys=("id", "series"), seed=0)
        seen = [{"ids": [int(i) for i in b["id"]], "length": b["series"].shape[1]} for b in batches.epoch()]
        carried = {n: [int(i) for p in parts for i in p["id"]] for n, parts in batches.buckets.parts.items()}
        (config["out"] / f"rank{context.get_world_rank()}.json").write_text(json.dumps([seen, carried]))

    datasets, rows = training_datasets(data.table, cfg.data, data.rows_per_length, ("id", "series"))
    assert sorted(datasets) == [TRAIN_KEY] and rows == sum(data.rows_per_length[n] for n in cfg.data.lengths)
    # ids as row numbers, so that the id column converts to float32 like every streamed column
    number = {i: k for k, i in enumerate(sorted(r["id"] for r in datasets[TRAIN_KEY].select_columns(["id"]).take_all()))}
    datasets = {TRAIN_KEY: datasets[TRAIN_KEY].map_batches(  # in Arrow, so `series` stays a list column
        lambda t: t.set_column(t.schema.get_field_index("id"), "id",
                               pa.array([number[i] for i in t["id"].to_pylist()], pa.float32())),
        batch_format="pyarrow")}
    TorchTrainer(loop, train_loop_config={"lengths": cfg.data.lengths, "rows": rows, "out": out},
                 scaling_config=ray.train.ScalingConfig(num_workers=2),
                 run_config=ray.train.RunConfig(storage_path=str(tmp_path / "ray"), name="shards"),
                 datasets=datasets).fit()
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(ranks[0][0]) == len(ranks[1][0])  # the same steps on both: Ray's epoch barrier needs it
    per_rank = [{i for b in seen for i in b["ids"]} | {i for ids in carried.values() for i in ids}
                for seen, carried in ranks]
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1], "workers saw overlapping rows"
    assert len(per_rank[0] | per_rank[1]) >= rows - 1  # equal split may hold back one odd row
    for seen, _ in ranks:
        assert {b["length"] for b in seen} <= set(cfg.data.lengths)
