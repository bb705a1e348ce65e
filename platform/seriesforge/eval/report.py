"""REPORT_DIR/metrics.json, report.md and plots of one evaluation.

metrics.json keeps every repeat's raw value and seed (metrics.md §0: summaries are derived on read); `summary`
holds mean, std and the 95 % t-interval per (scope, subject, metric). A metric is flagged *unreliable on this
data* when its real-vs-real value is not clearly better than the naive baseline's: the two 95 % intervals overlap,
or the floor is on the wrong side. A metric that could not be computed is listed with its reason, never as 0.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from seriesforge.eval.metrics.summary import format_summary, summarize
from seriesforge.eval.suites import METRICS, higher_is_better
from seriesforge.files import write_text_atomically

SUBJECT_TITLES = {"model": "model", "real_vs_real": "real vs real (floor)", "naive": "naive baseline"}


def summaries(rows: list[dict]) -> dict:
    """{scope: {subject: {name: summary}}} over repeats; extra keys (fid_iforest, mae, ...) become names too."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    skipped: dict = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        cell = values[row["scope"]][row["subject"]]
        if "skipped" in row:
            skipped[row["scope"]][row["subject"]][row["metric"]] = row["skipped"]
            continue
        cell[row["metric"]].append(row["value"])
        for extra in METRICS[row["metric"]].extra:
            cell[extra].append(row["details"].get(extra))
    out: dict = {}
    for scope in sorted(set(values) | set(skipped)):
        out[scope] = {}
        for subject in set(values[scope]) | set(skipped[scope]):
            entry = {name: summarize(v) for name, v in values[scope][subject].items()}
            entry.update({name: {"skipped": why} for name, why in skipped[scope][subject].items()})
            out[scope][subject] = entry
    return out


def reliability(summary: dict) -> dict:
    """{scope: {name: reason}} for metrics whose floor is not clearly better than the naive baseline."""
    flags: dict = {}
    for scope, subjects in summary.items():
        floor, naive = subjects.get("real_vs_real", {}), subjects.get("naive", {})
        for name in sorted(set(floor) & set(naive)):
            a, b = floor[name], naive[name]
            if "skipped" in a or "skipped" in b or a.get("mean") is None or b.get("mean") is None:
                continue
            reason = _unclear(a, b, higher_is_better(name))
            if reason:
                flags.setdefault(scope, {})[name] = reason
    return flags


def _unclear(floor: dict, naive: dict, higher: bool) -> str | None:
    better = floor["mean"] > naive["mean"] if higher else floor["mean"] < naive["mean"]
    if not better:
        return f"real-vs-real {floor['mean']:.4g} is not better than naive {naive['mean']:.4g}"
    gap = abs(floor["mean"] - naive["mean"])
    spread = (floor.get("ci95") or 0.0) + (naive.get("ci95") or 0.0)
    if gap <= spread:
        return f"real-vs-real {floor['mean']:.4g} and naive {naive['mean']:.4g} overlap within their 95% intervals"
    return None


def write(req, data, protocol, subjects: dict, rows: list[dict], *, generator, generation_s: float,
          repeats: int) -> dict:
    out = Path(req.out)
    summary = summaries(rows)
    doc = {
        "data": data.spec, "suite": data.suite, "dataset": data.name, "reference": data.note,
        "checkpoint": str(req.checkpoint) if req.checkpoint else None,
        "refine": bool(req.refine),  # samples passed through the family's refiner (TimeVQVAE's NM)
        "model": generator.describe() if generator is not None else None,
        "protocol": {"name": protocol.name, **{k: v for k, v in vars(protocol).items() if k != "name"},
                     "repeats": repeats, "seed": req.seed, "steps": req.steps},
        "assets": next((p.assets for pairs in subjects.values() for p in pairs.values()), {}),
        "sizes": {s: {scope: {"real": len(p.real), "generated": len(p.generated)} for scope, p in pairs.items()}
                  for s, pairs in subjects.items()},
        "outside_unit_range": _outside_unit_range(data, subjects),
        "generation_seconds": generation_s, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "results": rows, "summary": summary, "unreliable": reliability(summary),
    }
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # t-SNE beside torch's OpenMP runtime crawls when both spawn threads (measured)
        plots = _plots(out, data, subjects)
    doc["plots"] = plots
    write_text_atomically(out / "metrics.json", json.dumps(doc, indent=2, default=_json_default))
    write_text_atomically(out / "report.md", markdown(doc))
    return doc


def _outside_unit_range(data, subjects: dict) -> dict[str, float]:
    """Benchmark suite: the fraction of the model's generated values outside [0, 1], the range of the data and
    of the metrics (ST-Diff records it: its samples are not clipped)."""
    if data.suite != "benchmark" or "model" not in subjects:
        return {}
    return {scope: float(np.mean((p.generated < 0.0) | (p.generated > 1.0))) for scope, p in subjects["model"].items()}


def markdown(doc: dict) -> str:
    lines = [f"# Evaluation: {doc['dataset']} ({doc['suite']} suite)", "",
             f"- data: `{doc['data']}`; reference: {doc['reference']}",
             (f"- checkpoint: `{doc['checkpoint']}`" + (", samples refined (NM)" if doc.get("refine") else ""))
             if doc["checkpoint"] else "- no checkpoint: baselines only",
             f"- protocol: {doc['protocol']['name']}, {doc['protocol']['repeats']} repeat(s), seed "
             f"{doc['protocol']['seed']}; values are mean ± 95% t-interval over repeats"]
    if doc["protocol"]["name"] == "smoke":
        lines.append("- **smoke protocol: reduced training budgets inside the metrics; not comparable with papers**")
    elif doc["protocol"]["name"] == "cpu":
        lines.append("- **cpu protocol: the CAS classifier trained 100 FCN epochs, not the paper's 1 000**")
    for scope, fraction in (doc.get("outside_unit_range") or {}).items():
        lines.append(f"- generated values outside [0, 1] ({scope}; samples are not clipped): {fraction:.2%}")
    if doc["assets"].get("fcn_accuracy"):
        lines.append(f"- FCN feature extractor test accuracy: {float(doc['assets']['fcn_accuracy']):.3f}")
    for scope, subjects in doc["summary"].items():
        lines += ["", f"## {scope}" if scope != "all" else "## Scores", ""] + _table(subjects)
        flags = doc["unreliable"].get(scope, {})
        for name, why in flags.items():
            lines.append(f"- **{name} is unreliable on this data**: {why}")
    if doc["plots"]:
        lines += ["", "## Plots", ""] + [f"![{name}]({Path(path).name})" for name, path in doc["plots"].items()]
    return "\n".join(lines) + "\n"


def _table(subjects: dict) -> list[str]:
    order = [s for s in ("model", "real_vs_real", "naive") if s in subjects]
    names = sorted({n for s in order for n in subjects[s]}, key=_metric_order)
    rows = ["| metric | " + " | ".join(SUBJECT_TITLES[s] for s in order) + " |",
            "|---|" + "---|" * len(order)]
    for name in names:
        arrow = "↑" if higher_is_better(name) else "↓"
        cells = [_cell(subjects[s].get(name)) for s in order]
        rows.append(f"| {name} {arrow} | " + " | ".join(cells) + " |")
    return rows


def _metric_order(name: str) -> tuple[int, str]:
    keys = list(METRICS)
    base = name if name in METRICS else next((m for m in keys if name in METRICS[m].extra), name)
    return (keys.index(base) if base in keys else len(keys), name)


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "–"
    if "skipped" in entry:
        return f"skipped: {entry['skipped']}"
    return format_summary(entry, digits=4)


def _plots(out: Path, data, subjects: dict) -> dict[str, str]:
    """Real vs generated views (the model when there is one, else the real-vs-real pair)."""
    from seriesforge.eval import plots

    subject = "model" if "model" in subjects else "real_vs_real"
    made = {}
    for scope, pair in subjects[subject].items():
        tag = "" if scope == "all" else "_" + scope.replace("=", "")
        real, gen = pair.real, pair.generated[: max(len(pair.real), 2)]
        for name, fn in (("overlays", plots.plot_overlays), ("tsne", plots.plot_tsne), ("kde", plots.plot_kde),
                         ("acf", plots.plot_acf), ("psd", plots.plot_psd)):
            made[f"{name}{tag}"] = fn(real, gen, out / f"{name}{tag}.png")
    if data.suite == "text" and "model" in subjects:
        for scope, pair in subjects["model"].items():
            length = int(scope.split("=")[1])
            captions = data.items[length].captions
            made[f"captions_{length}"] = plots.plot_caption_grid(captions[: 12], pair.generated[:12],
                                                                 out / f"captions_L{length}.png", real=pair.real[:12])
    return made


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
