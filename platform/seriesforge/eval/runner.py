"""`seriesforge eval`: samples from a checkpoint, the two baselines, every (subject, metric, repeat) as a Ray task.

    data SPEC -> real_data.load -> subjects {model (if a checkpoint), real_vs_real, naive} x scopes (all, or L=n)
              -> one Ray task per (scope, subject, metric, repeat), seeded from (seed, metric, repeat)
              -> rows of raw values (every repeat kept) -> report.write (metrics.json, report.md, plots)

Samples come from `generate.load(...).sample`, the process's one sampler (the same Serve and `generate` use).
The same seed is used for a metric's repeat r across subjects, so model and baselines meet the same randomness.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seriesforge.data.specs import check_readable
from seriesforge.errors import ConfigError, DataError
from seriesforge.eval import real_data
from seriesforge.eval.suites import SUITE_OF_KIND, Metric, Pair, Protocol, Skip, suite_metrics

DEFAULT_REPEATS = {"benchmark": 5, "ucr": 3, "text": 1}
MRR_RUNS = 10  # further generations per caption for MRR@10 as coded (§7.3)


@dataclass
class EvalRequest:
    data: str
    out: Path
    checkpoint: Path | None = None
    metrics: list[str] | None = None
    repeats: int | None = None
    n: int | None = None  # generated samples (benchmark: N_real; ucr: max(N_test, 1024); text: items per length)
    protocol: str = "paper"
    seed: int = 0
    steps: int | None = None  # sampler steps (the family's default when None)
    lengths: list[int] | None = None  # text: lengths to score (default: the checkpoint's data.lengths)
    holdout_fraction: float | None = None  # text without a checkpoint: the held-out rule's fraction
    address: str | None = None
    refine: bool = False  # apply the family's refiner (TimeVQVAE's neural mapper) to every sample


def task_seed(seed: int, metric: str, repeat: int) -> int:
    return zlib.crc32(f"{seed}/{metric}/{repeat}".encode()) & 0x7FFFFFFF


def evaluate(req: EvalRequest, *, progress: bool = True) -> dict:
    """Run the evaluation and write REPORT_DIR; returns the metrics.json dict."""
    from seriesforge.eval import report

    spec = check_readable(req.data)
    suite = SUITE_OF_KIND[spec.kind]
    metrics = suite_metrics(suite, req.metrics)  # every request error surfaces before Ray starts
    protocol = Protocol.named(req.protocol)
    repeats = req.repeats or DEFAULT_REPEATS[suite]
    if repeats < 1:
        raise ConfigError(f"--repeats: must be >= 1, got {repeats}")
    generator = _load_generator(req.checkpoint) if req.checkpoint else None
    _check_pairing(spec, req, generator)
    from seriesforge.runtime import init_ray

    print(init_ray(req.address, min_cpus=2), flush=True)
    data = _load_data(spec, req, generator)
    req.out.mkdir(parents=True, exist_ok=True)
    subjects = {"real_vs_real": real_data.real_vs_real(data, req.seed), "naive": real_data.naive(data, req.seed + 1)}
    tic = time.time()
    if generator is not None:
        subjects = {"model": _model_pairs(generator, data, req, progress), **subjects}
    generation_s = time.time() - tic
    assets = _assets(data, req, protocol)
    for pairs in subjects.values():
        for pair in pairs.values():
            pair.assets = assets
    rows = _fan_out(subjects, metrics, repeats, protocol, req.seed, progress)
    return report.write(req, data, protocol, subjects, rows, generator=generator, generation_s=generation_s,
                        repeats=repeats)


def _load_generator(checkpoint: Path):
    from seriesforge.generate import load

    return load(checkpoint, cache=False)


def _check_pairing(spec, req: EvalRequest, generator) -> None:
    if generator is None:
        return
    if spec.kind == "captions" and generator.conditions != "caption":
        raise DataError(f"--data {spec}: a caption corpus needs a text-conditioned checkpoint; "
                        f"{req.checkpoint} is {generator.family} ({generator.conditions or 'unconditional'})")
    if spec.kind != "captions" and generator.conditions == "caption":
        raise DataError(f"--data {spec}: {req.checkpoint} is a text-to-series model; score it on captions:DIR")


def _load_data(spec, req: EvalRequest, generator) -> real_data.EvalData:
    from seriesforge.data.pipeline import holdout_cut

    fraction, lengths, scaling = req.holdout_fraction or 0.0, req.lengths, "series_minmax"
    if generator is not None:  # the checkpoint's own held-out rows, lengths and scaling
        fraction = generator.cfg.data.val_fraction
        lengths = lengths or list(generator.cfg.data.lengths)
        scaling = generator.cfg.data.scaling
    cut = holdout_cut(fraction)
    return real_data.load(spec, text_lengths=lengths, holdout_cut=cut, n_items=req.n or 256, scaling=scaling,
                          seed=req.seed)


def _model_pairs(generator, data: real_data.EvalData, req: EvalRequest, progress: bool) -> dict[str, Pair]:
    if data.suite == "text":
        return {f"L={n}": _text_pair(generator, items, n, req, progress) for n, items in data.items.items()}
    n = req.n or (len(data.real) if data.suite == "benchmark" else max(len(data.real), 1024))
    x = _sample(generator, n, data.length, None, req, seed=req.seed, progress=progress)  # (n, L, K)
    if x.shape[2] != data.channels:
        raise DataError(f"--checkpoint {req.checkpoint}: generates K={x.shape[2]} channel(s); {data.spec} has "
                        f"K={data.channels}")
    if data.suite != "ucr" or generator.conditions != "class":
        return {"all": Pair(real=data.real, generated=x, real_labels=data.real_labels, train=data.train)}
    # A class-conditioned model: "all" holds class-conditional samples with labels drawn in training-set
    # proportions (every metric, like the baselines); "unconditional" the null-class samples (FID and IS as the
    # TimeVQVAE/TimeVQVDM unconditional tables).
    if generator.num_classes != data.num_classes:
        raise DataError(f"--checkpoint {req.checkpoint}: trained on {generator.num_classes} classes; {data.spec} "
                        f"has {data.num_classes}")
    labels = _proportional_labels(data.train_labels, n, req.seed)
    xc = _sample(generator, n, data.length, None, req, seed=req.seed + 1, progress=progress, labels=labels)
    return {"all": Pair(real=data.real, generated=xc, real_labels=data.real_labels, generated_labels=labels,
                        train=data.train),
            "unconditional": Pair(real=data.real, generated=x, real_labels=data.real_labels, train=data.train)}


def _proportional_labels(train_labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`n` class labels in the training split's proportions (largest remainders), in a seeded random order."""
    classes, counts = np.unique(train_labels, return_counts=True)
    exact = counts / counts.sum() * n
    take = np.floor(exact).astype(int)
    take[np.argsort(exact - take)[::-1][: n - take.sum()]] += 1
    labels = np.repeat(classes, take).astype(np.int64)
    return np.random.default_rng(seed).permutation(labels)


def _text_pair(generator, items: real_data.TextItems, length: int, req: EvalRequest, progress: bool) -> Pair:
    """Run 0 (MSE, WAPE, retrieval) and MRR_RUNS further runs per caption (MRR@10 as coded)."""
    runs = [_sample(generator, len(items.captions), length, items.captions, req, seed=req.seed + r,
                    progress=progress) for r in range(MRR_RUNS + 1)]
    return Pair(real=items.series, generated=runs[0], runs=np.stack(runs[1:]), groups=items.groups)


def _sample(generator, n: int, length: int, captions, req: EvalRequest, *, seed: int, progress: bool,
            chunk: int = 256, labels: np.ndarray | None = None) -> np.ndarray:
    """`n` samples, time-major (n, L, K), in chunks so memory stays flat."""
    from tqdm import tqdm

    out = []
    bar = tqdm(total=n, desc=f"sampling L={length} seed={seed}", disable=not progress, unit="series")
    for start in range(0, n, chunk):
        part = captions[start:start + chunk] if captions else None
        size = len(part) if part else min(chunk, n - start)
        part_labels = None if labels is None else [int(v) for v in labels[start:start + size]]
        extra = {"refine": True} if req.refine else {}
        x = generator.sample(n=size, length=length, captions=part, labels=part_labels, steps=req.steps,
                             seed=seed * 1_000_003 + start, **extra)
        out.append(np.transpose(x, (0, 2, 1)))  # (n, K, L) -> (n, L, K)
        bar.update(size)
    bar.close()
    return np.concatenate(out).astype(np.float32)


def _assets(data: real_data.EvalData, req: EvalRequest, protocol: Protocol) -> dict[str, str]:
    if data.suite != "ucr":
        return {}
    from seriesforge.data.specs import parse_spec
    from seriesforge.eval import assets
    from seriesforge.eval.metrics.fcn import FCNTrainConfig

    root = assets.cache_root(parse_spec(data.spec).path, req.out / "cache")
    cfg = FCNTrainConfig(variant="v1", epochs=protocol.fcn_epochs)
    fcn, info = assets.ensure_fcn(root, data, "original", cfg)
    print(f"FCN feature extractor {fcn} (test accuracy {info['test_accuracy']:.3f})", flush=True)
    return {"fcn": str(fcn), "rocket": str(assets.ensure_rocket(root, data.length)), "fcn_accuracy":
            str(info["test_accuracy"])}


def _fan_out(subjects: dict[str, dict[str, Pair]], metrics: list[Metric], repeats: int, protocol: Protocol,
             seed: int, progress: bool) -> list[dict]:
    import ray
    from tqdm import tqdm

    score_task = ray.remote(num_cpus=1)(_score)
    refs, keys, skipped = [], [], []
    for subject, pairs in subjects.items():
        for scope, pair in pairs.items():
            if pair.skip:
                skipped += [{"scope": scope, "subject": subject, "metric": m.name, "repeat": 0, "seed": None,
                             "skipped": pair.skip} for m in metrics]
                continue
            pair_ref = ray.put(pair)
            for metric in metrics:
                for r in range(repeats if metric.repeated else 1):
                    refs.append(score_task.remote(pair_ref, metric.name, task_seed(seed, metric.name, r), protocol))
                    keys.append({"scope": scope, "subject": subject, "metric": metric.name, "repeat": r,
                                 "seed": task_seed(seed, metric.name, r)})
    rows = [None] * len(refs)
    index = {ref: i for i, ref in enumerate(refs)}
    pending = list(refs)
    with tqdm(total=len(refs), desc="metrics", disable=not progress, unit="task") as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            i = index[done[0]]
            rows[i] = {**keys[i], **ray.get(done[0])}
            bar.update(1)
    return rows + skipped


def _score(pair: Pair, metric: str, seed: int, protocol: Protocol) -> dict:
    """One (metric, repeat) on one pair: {"value", "details", "seconds"} or {"skipped": why}."""
    import torch
    from threadpoolctl import threadpool_limits

    from seriesforge.eval.suites import METRICS

    torch.set_num_threads(1)  # one CPU per task; torch and sklearn would otherwise oversubscribe the node
    tic = time.time()
    try:
        with threadpool_limits(1):
            result = METRICS[metric].score(pair, seed, protocol)
    except Skip as why:
        return {"skipped": str(why)}
    except ValueError as err:  # the metric's own input checks (too few samples, ...): a reason, never a zero
        return {"skipped": f"{type(err).__name__}: {err}"}
    value = result.get("value")
    details = {k: v for k, v in result.items() if k != "value"}
    return {"value": None if value is None else float(value), "details": details, "seconds": time.time() - tic}
