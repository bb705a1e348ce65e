"""`seriesforge eval` end to end on a real embedded Ray, with the smoke protocol (tiny inner budgets): reports for
windows, UCR and caption data, with baselines, flags and plots; bad requests fail before Ray does any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seriesforge.errors import ConfigError, DataError
from seriesforge.eval.runner import EvalRequest, evaluate

pytestmark = pytest.mark.slow


def _csv(path, rows=160, channels=2):
    t = np.arange(rows)
    cols = [np.sin(0.3 * t + k) + 0.05 * k * t / rows for k in range(channels)]
    lines = ["a,b"[: 2 * channels - 1]] + [",".join(f"{c[i]:.6f}" for c in cols) for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ucr(make_ucr_dataset, root, per_class=24, length=32):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, length)

    def rows(n):
        out = []
        for label in (1, 2):
            for _ in range(n):
                base = np.sin(2 * np.pi * 2 * t) if label == 1 else np.sign(np.sin(2 * np.pi * 3 * t))
                out.append((label, base + 0.1 * rng.standard_normal(length)))
        return out

    return make_ucr_dataset(root, "Toy", rows(per_class), rows(per_class))


def _summary(doc, scope="all"):
    return doc["summary"][scope]


def test_benchmark_real_vs_real_report(ray_local, tmp_path):
    csv = _csv(tmp_path / "toy.csv")
    doc = evaluate(EvalRequest(data=f"csv:{csv}:24", out=tmp_path / "report", protocol="smoke", repeats=2),
                   progress=False)
    s = _summary(doc)
    assert set(s) == {"real_vs_real", "naive"}
    assert s["real_vs_real"]["discriminative"]["n"] == 2  # every repeat kept
    assert len([r for r in doc["results"] if r["metric"] == "correlational"]) == 4  # 2 subjects x 2 repeats
    # the floor beats noise on a metric that must see the difference
    assert s["real_vs_real"]["correlational"]["mean"] < s["naive"]["correlational"]["mean"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "real vs real (floor)" in report and "smoke protocol" in report
    for name in ("overlays", "tsne", "kde", "acf", "psd"):
        assert (tmp_path / "report" / f"{name}.png").stat().st_size > 1000
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["suite"] == "benchmark"


def test_ucr_real_vs_real_with_cached_fcn(ray_local, tmp_path, make_ucr_dataset):
    folder = _ucr(make_ucr_dataset, tmp_path / "ucr")
    req = EvalRequest(data=f"ucr:{folder}", out=tmp_path / "report", protocol="smoke", repeats=1,
                      metrics=["fid", "is", "cfid", "cas"])
    doc = evaluate(req, progress=False)
    s = _summary(doc)
    assert float(doc["assets"]["fcn_accuracy"]) > 0.9  # two easy classes
    assert s["real_vs_real"]["fid"]["mean"] < s["naive"]["fid"]["mean"]
    assert s["real_vs_real"]["cas"]["mean"] > s["naive"]["cas"]["mean"]  # TRTR beats noise-trained
    assert "fid_iforest" in s["real_vs_real"]
    fcn_dirs = list((folder / "_seriesforge_cache" / "eval").glob("fcn-*"))
    assert len(fcn_dirs) == 1
    stamp = (fcn_dirs[0] / "fcn.json").stat().st_mtime
    evaluate(EvalRequest(data=f"ucr:{folder}", out=tmp_path / "again", protocol="smoke", repeats=1,
                         metrics=["fid"]), progress=False)
    assert (fcn_dirs[0] / "fcn.json").stat().st_mtime == stamp  # reused, not retrained


def _caption_corpus(folder, rows=90, length=24):
    """Captions repeat (six patterns), so real-vs-real finds a twin for every item."""
    folder.mkdir(parents=True)
    t = np.arange(length)
    with open(folder / "part.jsonl", "w") as fh:
        for i in range(rows):
            k = i % 6
            series = np.sin(0.2 * (k + 1) * t) + 0.05 * np.cos(i + t)
            fh.write(json.dumps({"id": f"r{i}", "series": series.tolist(), "caption": f"pattern {k}",
                                 "domain": "toy"}) + "\n")
    return folder


def test_text_suite_on_a_tiny_checkpoint(ray_local, tmp_path, tiny_checkpoints):
    corpus = _caption_corpus(tmp_path / "corpus")
    req = EvalRequest(data=f"captions:{corpus}", out=tmp_path / "report", checkpoint=tiny_checkpoints["a"],
                      n=12, steps=2, lengths=[24], protocol="smoke")
    doc = evaluate(req, progress=False)
    s = _summary(doc, "L=24")
    assert {"model", "real_vs_real", "naive"} <= set(s)
    assert s["model"]["mse"]["mean"] > 0 and 0 <= s["model"]["mrr10_code"]["mean"] <= 1
    assert s["real_vs_real"]["mse"]["mean"] < s["naive"]["mse"]["mean"]  # same caption, same shape here
    assert "skipped" in s["naive"]["mrr10_code"]  # a baseline has no further runs: said, not zero
    assert (tmp_path / "report" / "captions_L24.png").exists()
    assert "## L=24" in (tmp_path / "report" / "report.md").read_text()


def test_a_text_model_on_window_data_is_refused(tmp_path, tiny_checkpoints):
    with pytest.raises(DataError, match="text-to-series model"):
        evaluate(EvalRequest(data="sines:24", out=tmp_path / "r", checkpoint=tiny_checkpoints["a"]))
    assert not (tmp_path / "r").exists()


def test_unknown_metric_names_the_suite(tmp_path):
    with pytest.raises(ConfigError, match="benchmark suite"):
        evaluate(EvalRequest(data="sines:24", out=tmp_path / "r", metrics=["fid"]))


def test_fcn_train_command_caches_the_extractor(ray_local, tmp_path, make_ucr_dataset, capsys):
    from seriesforge.cli import main

    folder = _ucr(make_ucr_dataset, tmp_path / "ucr", per_class=8)
    assert main(["eval", "fcn", "train", "--data", f"ucr:{folder}", "--epochs", "3", "--cache",
                 str(tmp_path / "cache")]) == 0
    meta = json.loads(next((tmp_path / "cache").glob("fcn-Toy-*/fcn.json")).read_text())
    assert meta["epochs"] == 3
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--data", "sines:24", "--out", "r"], "give --checkpoint DIR, or --real-vs-real"),
    (["--real-vs-real", "--data", "sines:24", "--out", "r", "--metrics", "fid"], "not in the benchmark suite"),
    (["--real-vs-real", "--data", "ucr:/nowhere", "--out", "r"], "does not exist"),
])
def test_eval_command_errors_are_one_line(argv, message, capsys):
    from seriesforge.cli import main

    assert main(["eval", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_class_model_is_scored_conditionally_and_unconditionally(ray_local, tmp_path, make_ucr_dataset):
    """An (untrained) TimeVQVAE checkpoint on a toy UCR set: scope "all" holds class-conditional samples with labels
    in training proportions (every metric), scope "unconditional" the null class (cFID and CAS skipped)."""
    import torch

    from seriesforge import checkpoint, config as C, registry

    folder = _ucr(make_ucr_dataset, tmp_path / "ucr")
    cfg = registry.preset_config("timevqvae", "debug", f"ucr:{folder}")
    assert (cfg.model.length, cfg.model.num_classes) == (32, 2)
    torch.manual_seed(0)
    model = registry.get("timevqvae")(cfg.model)
    ckpt = checkpoint.write_checkpoint(tmp_path / "ckpt", config=C.to_dict(cfg), state_dict=model.state_dict(),
                                       meta={"family": "timevqvae", "stage": "prior", "stage_index": 1, "step": 1})
    req = EvalRequest(data=f"ucr:{folder}", out=tmp_path / "report", checkpoint=ckpt, protocol="smoke", repeats=1,
                      n=64, metrics=["fid", "cfid", "cas"])
    doc = evaluate(req, progress=False)
    assert set(doc["summary"]) == {"all", "unconditional"}
    conditional, unconditional = doc["summary"]["all"]["model"], doc["summary"]["unconditional"]["model"]
    assert np.isfinite(conditional["fid"]["mean"]) and np.isfinite(conditional["cfid"]["mean"])
    assert 0.0 <= conditional["cas"]["mean"] <= 1.0
    assert "skipped" in unconditional["cfid"] and np.isfinite(unconditional["fid"]["mean"])
    with pytest.raises(Exception, match="refine"):  # its mapper never trained
        evaluate(EvalRequest(data=f"ucr:{folder}", out=tmp_path / "r2", checkpoint=ckpt, protocol="smoke",
                             repeats=1, n=8, metrics=["fid"], refine=True), progress=False)


def test_proportional_labels_follow_the_training_split():
    from seriesforge.eval.runner import _proportional_labels

    labels = _proportional_labels(np.array([0] * 30 + [1] * 10 + [2] * 10), 10, seed=0)
    assert sorted(np.bincount(labels).tolist()) == [2, 2, 6] and np.bincount(labels)[0] == 6
