"""The fixed-length series training path (`ucr:DIR`, `sines:L`, `csv:PATH:L`): what the trainer gets for families
that train on windows or UCR series rather than caption corpora.

    SPEC --series_splits.load_spec_datasets--> train split as a Ray Dataset of rows {series (L, K), index, holdout,
    [label, length]} --> {"train": training rows, "val_L": held-out rows when data.val_fraction > 0}

Each such SPEC has exactly one length L, so `data.lengths` must be [L]; the worker-side batching
(`batches.interleaved_batches`) is shared with the caption path and yields `series` as (B, L, K).
Rows are held out by the same rule as caption corpora: crc32 of the row's id (here its index) cut at
`data.val_fraction`, so the split is stable across runs, trials and workers.

A small deterministic sample of the training windows (`init_sample`) goes to the family's `data_init`, on the
driver, so data-derived initial values (ST-Diff's attention biases and video scaler) are the same on every rank.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from ray.data.expressions import col

from seriesforge.config import DataConfig
from seriesforge.data.pipeline import TRAIN_KEY, TrainingData, holdout_cut, validation_key
from seriesforge.data.series_splits import SeriesSplits, load_spec_datasets
from seriesforge.data.sources.windows import SINES_SEED
from seriesforge.errors import DataError

INIT_SAMPLE_ROWS = 4096  # windows handed to `family.data_init` (statistics converge well before this)


def prepare_series_training_data(data: DataConfig) -> TrainingData:
    """The training split of a series SPEC as the training Dataset (one length), plus a sample for `data_init`."""
    splits = load_spec_datasets(data.spec, seed=SINES_SEED, on_bad_row=data.on_bad_row)
    if list(data.lengths) != [splits.length]:
        raise DataError(f"data.lengths: {data.lengths} but --data {data.spec} holds series of length "
                        f"{splits.length}; set data.lengths to [{splits.length}]")
    rows = int(splits.meta["rows"]["train"])
    cut = holdout_cut(data.val_fraction)
    length = splits.length
    if cut:
        train = splits.train.filter(expr=col("holdout") >= cut)
        held = splits.train.filter(expr=col("holdout") < cut)
        held_rows = held.count()
        if held_rows == 0 or held_rows == rows:
            raise DataError(f"data.val_fraction={data.val_fraction}: holds out {held_rows} of {rows} rows of "
                            f"{data.spec}; both training and validation need rows (change val_fraction)")
        datasets = {TRAIN_KEY: train, validation_key(length): held}
    else:
        datasets, held_rows = {TRAIN_KEY: splits.train}, 0
    fingerprint = _fingerprint(data.spec, splits) + (f"-holdout{cut}" if cut else "")
    return TrainingData(datasets=datasets, rows_per_length={length: rows}, train_rows=rows - held_rows, table=None,
                        fingerprint=fingerprint, init_sample=_init_sample(splits), summary=_summary(splits, data))


def _init_sample(splits: SeriesSplits) -> np.ndarray:
    """Up to INIT_SAMPLE_ROWS training windows, evenly spaced by row index: (N, L, K) float32, deterministic."""
    batch = splits.train.sort("index").take_batch(batch_size=max(1, int(splits.meta["rows"]["train"])),
                                                  batch_format="numpy")
    series = np.asarray(batch["series"], dtype=np.float32)  # (N, L, K)
    pick = np.unique(np.linspace(0, len(series) - 1, num=min(INIT_SAMPLE_ROWS, len(series))).round().astype(int))
    return series[pick]


def _fingerprint(spec: str, splits: SeriesSplits) -> str:
    digest = hashlib.sha256(json.dumps({"spec": spec, "meta": splits.meta}, sort_keys=True, default=str).encode())
    return f"{splits.name}-L{splits.length}-K{splits.channels}-{digest.hexdigest()[:12]}"


def _summary(splits: SeriesSplits, data: DataConfig) -> str:
    rows = splits.meta["rows"]["train"]
    norm = splits.meta["normalization"]["kind"]
    text = (f"series data {splits.name} ({data.spec}): {rows} training series of length {splits.length} with "
            f"K={splits.channels} channel(s), {norm} scaling")
    skipped = sum(splits.meta.get("skipped", {}).values())
    if skipped:
        text += f"; {skipped} bad row(s) skipped (data.on_bad_row=skip)"
    if data.val_fraction:
        text += f"; rows with crc32(index) in the first {data.val_fraction:.1%} held out for val_loss"
    return text
