"""Job entrypoint: score one checkpoint per UCR dataset from a job spec (YAML, kind: eval).

    python jobs/evaluate.py jobs/specs/ucr_many_eval.yaml

Every dataset's checkpoint is checked before anything runs. Each dataset gets its report in OUT/NAME (the same
`seriesforge eval` report); OUT/summary.csv holds one row per dataset. Datasets whose report exists are skipped,
so a resubmitted job continues where the last one stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

from seriesforge.submit.specs import job_main


def evaluate_all(spec, extra_sets: list[str]) -> int:
    from seriesforge.errors import CheckpointError, ConfigError
    from seriesforge.eval.runner import EvalRequest, evaluate

    if extra_sets:
        raise ConfigError(f"--set {extra_sets[0]}: an eval spec has no run config to override")
    names = spec.dataset_names()
    missing = [f"{n}: {spec.checkpoint_of(n)}" for n in names if not spec.checkpoint_of(n).exists()]
    if missing:
        raise CheckpointError(f"checkpoints: none at {'; '.join(missing)}")
    out = Path(spec.out)
    rows = []
    for i, name in enumerate(names, 1):
        report = out / name
        print(f"[{i}/{len(names)}] {name}", flush=True)
        if not (report / "metrics.json").exists():
            evaluate(EvalRequest(data=f"ucr:{Path(spec.ucr_root) / name}", out=report,
                                 checkpoint=spec.checkpoint_of(name), protocol=spec.protocol,
                                 repeats=spec.repeats, n=spec.n, refine=spec.refine,
                                 metrics=spec.metrics))
        rows.append(summary_row(name, report))
    write_summary(out / "summary.csv", rows)
    print(f"summary   {out / 'summary.csv'}")
    return 0


def summary_row(name: str, report: Path) -> dict:
    """One dataset's model scores (means over repeats): `metric` for scope all, `metric[scope]` for the others."""
    import json

    summary = json.loads((report / "metrics.json").read_text())["summary"]
    row = {"dataset": name}
    for scope, subjects in summary.items():
        for metric, stats in subjects.get("model", {}).items():
            row[metric if scope == "all" else f"{metric}[{scope}]"] = stats["mean"]
    return row


def write_summary(path: Path, rows: list[dict]) -> None:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    sys.exit(job_main(__doc__, "eval", evaluate_all))
