"""The real side of an evaluation, per suite, and the two baselines every report scores (metrics.md §0).

    benchmark (sines:L, csv:PATH:L)  reference = every training window in [0, 1] (no held-out split, §0)
                                     real-vs-real: two disjoint halves; naive: Gaussian noise, matched per channel
    ucr (ucr:DIR)                    reference = the test split, dataset-standardised, NaN padding -> 0 (§0, §5)
                                     real-vs-real: the train split against it; naive: noise, train-proportion labels
    text (captions:DIR)              items = held-out (caption, series) pairs per length (crc32 holdout rule)
                                     real-vs-real: each item against another real series with the same caption;
                                     naive: the items' own series, shuffled among captions

Decisions: the naive noise is clipped to [0, 1] for the benchmark suite (its metrics assume [0, 1], and the
predictive score's sigmoid head cannot fit targets outside it). Sines uses Diffusion-TS's seed 123 and size 10 000.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from seriesforge.data.specs import DataSpec
from seriesforge.errors import DataError
from seriesforge.eval.suites import SUITE_OF_KIND, Pair



@dataclass
class TextItems:
    """Caption-paired real series of one length."""

    series: np.ndarray  # (N, L, 1) in the training scaling
    captions: list[str]
    groups: np.ndarray  # (N,) domain of each item (retrieval ranks within a domain)
    twins: np.ndarray  # (N,) index into `pool_series` of another real series with the same caption, -1 if none
    pool_series: np.ndarray  # (P, L, 1) every corpus series of this length (twins come from here)


@dataclass
class EvalData:
    suite: str
    name: str
    spec: str
    length: int
    channels: int
    note: str  # where the reference set came from, for the report
    real: np.ndarray | None = None  # (N, L, K) reference (benchmark, ucr)
    real_labels: np.ndarray | None = None  # (N,) ucr
    train: np.ndarray | None = None  # (N_tr, L, K) ucr train split
    train_labels: np.ndarray | None = None
    num_classes: int = 0
    items: dict[int, TextItems] = field(default_factory=dict)  # text: length -> items


def load(spec: DataSpec, *, text_lengths: list[int] | None = None, holdout_cut: int = 0, n_items: int = 256,
         scaling: str = "series_minmax", seed: int = 0, resplit: float | None = None) -> EvalData:
    suite = SUITE_OF_KIND[spec.kind]
    if suite == "benchmark":
        return _windows(spec)
    if suite == "ucr":
        return _ucr(spec, resplit)
    return _captions(spec, text_lengths or [], holdout_cut, n_items, scaling, seed)


def _windows(spec: DataSpec) -> EvalData:
    from seriesforge.data.sources.windows import SINES_N, SINES_SEED, load_csv_windows, load_sines

    if spec.kind == "sines":
        data = load_sines(SINES_N, spec.length, seed=SINES_SEED)
        name = "sines"
    else:
        data = load_csv_windows(spec.path, spec.length)
        name = spec.path.stem
    x = data.x  # (N, L, K) in [0, 1]
    return EvalData(suite="benchmark", name=name, spec=str(spec), length=spec.length, channels=x.shape[2], real=x,
                    note=f"all {len(x)} windows of {data.source}, min-max scaled to [0, 1]")


def _ucr(spec: DataSpec, resplit: float | None) -> EvalData:
    from seriesforge.data.sources.ucr import find_datasets, load_dataset, zero_fill

    folder = find_datasets(spec.path)[0]
    ds = load_dataset(folder, resplit=resplit)
    test, train = zero_fill(ds.x_test)[0][..., None], zero_fill(ds.x_train)[0][..., None]  # (N, L, 1)
    split = "original split" if resplit is None else f"{resplit:.0%}/{1 - resplit:.0%} re-split"
    return EvalData(suite="ucr", name=ds.name, spec=str(spec), length=ds.length, channels=1, real=test,
                    real_labels=ds.y_test, train=train, train_labels=ds.y_train, num_classes=ds.n_classes,
                    note=f"{ds.name} test split ({len(test)} series, {split}), z-scored with train statistics")


def _captions(spec: DataSpec, lengths: list[int], cut: int, n_items: int, scaling: str, seed: int) -> EvalData:
    from seriesforge.config import DataConfig
    from seriesforge.data.pipeline import read_corpus

    if not lengths:
        raise DataError(f"--data {spec}: say which lengths to score (the checkpoint's data.lengths, or --lengths)")
    ds, _ = read_corpus(DataConfig(spec=str(spec), lengths=lengths, scaling=scaling))
    frame = ds.to_pandas()
    frame = frame[frame["length"].isin(lengths)].sort_values("id", kind="stable")
    items = {}
    for length in lengths:
        pool = frame[frame["length"] == length].reset_index(drop=True)
        if pool.empty:
            raise DataError(f"--data {spec}: no series of length {length}")
        items[length] = _text_items(pool, cut, n_items, np.random.default_rng((seed, length)))
    held = "held-out rows (crc32(id) rule)" if cut else "rows the model may have trained on (no held-out split)"
    return EvalData(suite="text", name=spec.path.name, spec=str(spec), length=max(lengths), channels=1,
                    items=items, note=f"up to {n_items} {held} per length, {scaling} scaling")


def _text_items(pool, cut: int, n_items: int, rng: np.random.Generator) -> TextItems:
    from seriesforge.data.pipeline import HOLDOUT_BUCKETS

    candidates = np.flatnonzero(pool["holdout"].to_numpy() < cut) if cut else np.arange(len(pool))
    if cut and len(candidates) == 0:
        raise DataError(f"no held-out rows among {len(pool)} (holdout cut {cut} of {HOLDOUT_BUCKETS})")
    chosen = rng.permutation(candidates)[:n_items]
    series = np.stack([np.asarray(s, dtype=np.float32) for s in pool["series"]])[..., None]  # (P, L, 1)
    first_of: dict[str, list[int]] = {}
    for i, caption in enumerate(pool["caption"]):
        first_of.setdefault(caption, []).append(i)
    twins = np.array([next((j for j in first_of[pool["caption"][i]] if j != i), -1) for i in chosen])
    return TextItems(series=series[chosen], captions=[str(c) for c in pool["caption"][chosen]],
                     groups=pool["domain"].to_numpy()[chosen].astype(str), twins=twins, pool_series=series)


# ---- baselines ------------------------------------------------------------------------------------------------------


def real_vs_real(data: EvalData, seed: int) -> dict[str, Pair]:
    """scope -> the real-vs-real pair (the floor a model cannot beat without memorising)."""
    if data.suite == "benchmark":
        order = np.random.default_rng(seed).permutation(len(data.real))
        half = len(order) // 2
        return {"all": Pair(real=data.real[order[:half]], generated=data.real[order[half:2 * half]])}
    if data.suite == "ucr":
        return {"all": Pair(real=data.real, generated=data.train, real_labels=data.real_labels,
                            generated_labels=data.train_labels, train=data.train)}
    pairs = {}
    for length, it in data.items.items():
        has = it.twins >= 0
        if has.sum() >= 2:
            pairs[f"L={length}"] = Pair(real=it.series[has], generated=it.pool_series[it.twins[has]],
                                        groups=it.groups[has])
        else:
            pairs[f"L={length}"] = Pair(real=it.series, generated=it.series, skip=(
                f"only {int(has.sum())} of {len(has)} items share their caption with another real series"))
    return pairs


def naive(data: EvalData, seed: int) -> dict[str, Pair]:
    """scope -> the naive baseline: noise with matched per-channel mean and std (shuffled pairs for text)."""
    rng = np.random.default_rng(seed)
    if data.suite == "text":
        return {f"L={n}": Pair(real=it.series, generated=it.series[rng.permutation(len(it.series))],
                               groups=it.groups) for n, it in data.items.items()}
    source = data.real if data.suite == "benchmark" else data.train
    mean = source.mean(axis=(0, 1), keepdims=True)  # (1, 1, K)
    std = source.std(axis=(0, 1), keepdims=True)
    noise = (mean + std * rng.standard_normal((len(source),) + source.shape[1:])).astype(np.float32)
    if data.suite == "benchmark":
        return {"all": Pair(real=data.real, generated=np.clip(noise, 0.0, 1.0))}
    labels = rng.choice(data.train_labels, size=len(noise))
    return {"all": Pair(real=data.real, generated=noise, real_labels=data.real_labels, generated_labels=labels,
                        train=data.train)}
