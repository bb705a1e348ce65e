"""The jobs/*.py entrypoints run in-process on tiny data: the many-UCR evaluation (reports, summary, skip on
resubmission, checkpoints checked first) and the spec rules every entrypoint shares (kind, storage, one-line errors).
The submitted round trips are in tests/cluster/test_cluster_jobs.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]


def entrypoint(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _toy_ucr(make_ucr_dataset, root: Path, name: str, length: int = 32) -> Path:
    rng = np.random.default_rng(len(name))
    t = np.linspace(0, 1, length)
    rows = [(label, (np.sin(2 * np.pi * label * t) + 0.1 * rng.standard_normal(length)))
            for label in (1, 2) for _ in range(16)]
    return make_ucr_dataset(root, name, rows, rows)


def _untrained_timevqvae(folder: Path, out: Path) -> None:
    from seriesforge import checkpoint, config as C, registry

    cfg = registry.preset_config("timevqvae", "debug", f"ucr:{folder}")
    torch.manual_seed(0)
    model = registry.get("timevqvae")(cfg.model)
    checkpoint.write_checkpoint(out, config=C.to_dict(cfg), state_dict=model.state_dict(),
                                meta={"family": "timevqvae", "stage": "prior", "stage_index": 1, "step": 1})


def test_many_ucr_eval_writes_a_report_per_dataset_and_skips_scored_ones(ray_local, tmp_path, make_ucr_dataset,
                                                                         monkeypatch, capsys):
    storage = tmp_path / "storage"
    for name in ("ToyA", "ToyB"):
        _untrained_timevqvae(_toy_ucr(make_ucr_dataset, storage / "ucr", name), storage / "runs" / name)
    spec = tmp_path / "eval.yaml"
    spec.write_text(yaml.safe_dump({"kind": "eval", "ucr_root": "ucr", "datasets": "all", "checkpoints": "runs/{name}",
                                    "out": "reports", "protocol": "smoke", "repeats": 1, "n": 16,
                                    "metrics": ["fid"]}))
    monkeypatch.chdir(tmp_path)  # job_main moves into the storage; the test's cwd comes back afterwards
    monkeypatch.setenv("SERIESFORGE_STORAGE", str(storage))
    job = entrypoint("evaluate")
    assert job.job_main(job.__doc__, "eval", job.evaluate_all, [str(spec)]) == 0
    summary = (storage / "reports" / "summary.csv").read_text().splitlines()
    assert summary[0].split(",")[:2] == ["dataset", "fid"] and [r.split(",")[0] for r in summary[1:]] == ["ToyA",
                                                                                                       "ToyB"]
    assert all(np.isfinite(float(r.split(",")[1])) for r in summary[1:])
    written = {n: (storage / "reports" / n / "metrics.json").stat().st_mtime_ns for n in ("ToyA", "ToyB")}
    assert job.job_main(job.__doc__, "eval", job.evaluate_all, [str(spec)]) == 0  # resubmitted: nothing re-scored
    assert written == {n: (storage / "reports" / n / "metrics.json").stat().st_mtime_ns for n in written}


def test_a_missing_checkpoint_fails_before_any_dataset_is_scored(tmp_path, make_ucr_dataset, monkeypatch, capsys):
    _toy_ucr(make_ucr_dataset, tmp_path / "ucr", "ToyA")
    spec = tmp_path / "eval.yaml"
    spec.write_text(yaml.safe_dump({"kind": "eval", "ucr_root": str(tmp_path / "ucr"), "datasets": ["ToyA"],
                                    "checkpoints": str(tmp_path / "runs/{name}"), "out": str(tmp_path / "r")}))
    monkeypatch.delenv("SERIESFORGE_STORAGE", raising=False)
    job = entrypoint("evaluate")
    assert job.job_main(job.__doc__, "eval", job.evaluate_all, [str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoints: none at ToyA: ") and "runs/ToyA" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name, kind", [("train", "train"), ("sweep", "tune")])
def test_an_entrypoint_refuses_a_spec_of_another_kind_in_one_line(name, kind, capsys, monkeypatch):
    monkeypatch.delenv("SERIESFORGE_STORAGE", raising=False)
    job = entrypoint(name)
    body = getattr(job, "train" if name == "train" else "tune")
    assert job.job_main(job.__doc__, kind, body, [str(ROOT / "jobs" / "specs" / "ucr_many_eval.yaml")]) == 2
    assert f"kind: eval, but this entrypoint runs {kind} specs" in capsys.readouterr().err
