"""Which metrics score which data, and how one metric task calls its metric (metrics.md §0–§7).

Three suites, chosen by the data SPEC's kind:
    benchmark  sines:L, csv:PATH:L   discriminative, predictive, Context-FID, correlational (Diffusion-TS table)
    ucr        ucr:DIR               FCN FID (+ IsolationForest variant), IS, ROCKET FID, cFID, CAS (TimeVQVAE tables)
    text       captions:DIR          MSE / MAE / WAPE, MRR@10 as coded and as retrieval (T2S evaluation.py)

A metric sees one `Pair` (a real reference and a set standing in for generated series) and returns the metrics
module's dict. A metric that cannot be computed on a pair raises `Skip` with the reason, which the report prints:
never a silent zero. Pure: no Ray (the runner fans the tasks out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from seriesforge.errors import ConfigError
from seriesforge.eval.metrics import correlation, gru_scores, rocket, text_scores, ts2vec, ucr_scores
from seriesforge.eval.metrics.fcn import FCNTrainConfig, fcn_outputs, load_fcn


class Skip(Exception):
    """This metric does not apply to this pair; the message says why."""


@dataclass
class Protocol:
    """Budgets of the metrics' inner training. `paper` is metrics.md's protocol; `smoke` is for tests and demos only
    (its numbers are not comparable with any paper, and the report says so)."""

    name: str = "paper"
    discriminative_iterations: int = 2000
    predictive_iterations: int = 5000
    ts2vec_iterations: int | None = None  # None: TS2Vec's own rule (200 or 600)
    ts2vec_depth: int = 10
    ts2vec_dims: int = 320
    fcn_epochs: int = 1000
    cas_epochs: int | None = None  # FCN epochs of the CAS classifier trained on samples (None: fcn_epochs)

    @classmethod
    def named(cls, name: str) -> "Protocol":
        if name == "paper":
            return cls()
        if name == "cpu":  # the paper's feature extractor, a CAS classifier trained 100 epochs instead of 1 000
            return cls(name="cpu", cas_epochs=100)
        if name == "smoke":
            return cls(name="smoke", discriminative_iterations=200, predictive_iterations=300, ts2vec_iterations=20,
                       ts2vec_depth=3, ts2vec_dims=32, fcn_epochs=20)
        raise ConfigError(f"--protocol: {name!r} is not one of paper, cpu, smoke")


@dataclass
class Pair:
    """What one metric task scores. Arrays are time-major (N, L, K) in the metric space of the suite."""

    real: np.ndarray  # the reference set
    generated: np.ndarray  # the set being judged (model samples, or a baseline)
    real_labels: np.ndarray | None = None  # (N,) classes 0..C-1 (ucr)
    generated_labels: np.ndarray | None = None  # (M,) (class-conditional samples, or a labelled baseline)
    train: np.ndarray | None = None  # ucr: the real training split (CAS is scored on `real`, the test split)
    runs: np.ndarray | None = None  # text: (R, M, L, K) further generations per caption, for MRR@10 as coded
    groups: np.ndarray | None = None  # text: (M,) source of each item; retrieval ranks within a source
    assets: dict[str, str] = field(default_factory=dict)  # "fcn": artefact dir, "rocket": kernels .npz
    skip: str | None = None  # set when this pair cannot be scored at all (every metric reports the reason)


@dataclass(frozen=True)
class Metric:
    name: str
    suite: str
    score: Callable[[Pair, int, Protocol], dict]  # (pair, seed, protocol) -> metrics dict with "value"
    higher_is_better: bool = False
    repeated: bool = True  # False: deterministic given the pair, computed once
    extra: tuple[str, ...] = ()  # further keys of the result reported as metrics of their own


def _discriminative(pair: Pair, seed: int, p: Protocol) -> dict:
    return gru_scores.discriminative_score(pair.real, pair.generated, seed=seed,
                                           iterations=p.discriminative_iterations)


def _predictive(pair: Pair, seed: int, p: Protocol) -> dict:
    if pair.real.shape[2] < 2:
        raise Skip("predictive score needs K >= 2 channels (it predicts the last from the others)")
    return gru_scores.predictive_score(pair.real, pair.generated, seed=seed, iterations=p.predictive_iterations)


def _context_fid(pair: Pair, seed: int, p: Protocol) -> dict:
    return ts2vec.context_fid(pair.real, pair.generated[: len(pair.real)], seed=seed, n_iters=p.ts2vec_iterations,
                              depth=p.ts2vec_depth, output_dims=p.ts2vec_dims)


def _correlational(pair: Pair, seed: int, p: Protocol) -> dict:
    return correlation.correlational_score(pair.real, pair.generated, seed=seed)


def _fcn_features(pair: Pair) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    model, _ = load_fcn(pair.assets["fcn"])
    real_feat, real_prob = fcn_outputs(model, pair.real)
    gen_feat, gen_prob = fcn_outputs(model, pair.generated)
    return real_feat, real_prob, gen_feat, gen_prob


def _fid(pair: Pair, seed: int, p: Protocol) -> dict:
    real_feat, _, gen_feat, _ = _fcn_features(pair)
    # plain FID on the first N_test samples (TimeVQVAE paper); the IsolationForest variant on all (2024 code)
    plain = ucr_scores.fcn_fid(real_feat, gen_feat[: len(real_feat)])
    return {**plain, "fid_iforest": ucr_scores.fcn_fid(real_feat, gen_feat)["iforest"]}


def _inception(pair: Pair, seed: int, p: Protocol) -> dict:
    _, _, _, gen_prob = _fcn_features(pair)
    return ucr_scores.inception_score(gen_prob[: len(pair.real)], seed=seed)


def _rocket_fid(pair: Pair, seed: int, p: Protocol) -> dict:
    kernels = rocket.load_kernels(pair.assets["rocket"])
    plain = rocket.rocket_fid(pair.real, pair.generated[: len(pair.real)], kernels=kernels)
    filtered = rocket.rocket_fid(pair.real, pair.generated, kernels=kernels, iforest=True)
    return {**plain, "rocket_fid_iforest": filtered["value"]}


def _needs_labels(pair: Pair, what: str) -> None:
    if pair.generated_labels is None:
        raise Skip(f"{what} needs class-conditional samples; this model is unconditional")


def _class_fid(pair: Pair, seed: int, p: Protocol) -> dict:
    _needs_labels(pair, "cFID")
    real_feat, _, gen_feat, _ = _fcn_features(pair)
    return ucr_scores.class_fid(real_feat, pair.real_labels, gen_feat, pair.generated_labels)


def _cas(pair: Pair, seed: int, p: Protocol) -> dict:
    _needs_labels(pair, "CAS")
    cfg = FCNTrainConfig(variant="v1", epochs=p.cas_epochs or p.fcn_epochs, seed=seed)
    return ucr_scores.classification_accuracy_score(pair.generated, pair.generated_labels, pair.real,
                                                    pair.real_labels, cfg)


def _paired(pair: Pair, seed: int, p: Protocol) -> dict:
    return text_scores.paired_errors(pair.real, pair.generated)


def _mrr_code(pair: Pair, seed: int, p: Protocol) -> dict:
    if pair.runs is None:
        raise Skip("MRR@10 as coded needs 10 further generations per caption (a baseline has none)")
    return text_scores.mrr10_code(pair.real, pair.runs)


def _mrr_retrieval(pair: Pair, seed: int, p: Protocol) -> dict:
    return text_scores.mrr10_retrieval(pair.real, pair.generated, groups=pair.groups)


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("discriminative", "benchmark", _discriminative),
    Metric("predictive", "benchmark", _predictive),
    Metric("context_fid", "benchmark", _context_fid),
    Metric("correlational", "benchmark", _correlational),
    Metric("fid", "ucr", _fid, repeated=False, extra=("fid_iforest",)),
    Metric("is", "ucr", _inception, higher_is_better=True),
    Metric("rocket_fid", "ucr", _rocket_fid, repeated=False, extra=("rocket_fid_iforest",)),
    Metric("cfid", "ucr", _class_fid, repeated=False),
    Metric("cas", "ucr", _cas, higher_is_better=True),
    Metric("mse", "text", _paired, repeated=False, extra=("mae", "wape")),
    Metric("mrr10_code", "text", _mrr_code, higher_is_better=True, repeated=False),
    Metric("mrr10_retrieval", "text", _mrr_retrieval, higher_is_better=True, repeated=False),
]}

SUITE_OF_KIND = {"sines": "benchmark", "csv": "benchmark", "ucr": "ucr", "captions": "text"}
LOWER_IS_BETTER_EXTRAS = {"fid_iforest", "rocket_fid_iforest", "mae", "wape"}


def suite_metrics(suite: str, names: list[str] | None = None) -> list[Metric]:
    """The suite's metrics, or the named subset (an unknown or other-suite name is an error naming it)."""
    own = [m for m in METRICS.values() if m.suite == suite]
    if not names:
        return own
    known = {m.name for m in own}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"--metrics: {', '.join(unknown)} not in the {suite} suite (its metrics: "
                         f"{', '.join(sorted(known))})")
    return [m for m in own if m.name in names]


def higher_is_better(name: str) -> bool:
    """Direction of a reported metric name (a metric or one of its extra keys)."""
    if name in METRICS:
        return METRICS[name].higher_is_better
    return name not in LOWER_IS_BETTER_EXTRAS
