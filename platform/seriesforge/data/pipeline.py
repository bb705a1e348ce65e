"""The caption-corpus training path: read a corpus, validate it, embed its captions once, feed length buckets.

Driver side (`prepare_training_data`):
    corpus files --read--> normalize_batch (validate + scale)
    --> parquet table partitioned by length, cached beside the corpus (key: corpus fingerprint, scaling, bad-row
        policy); ids checked unique before the table is renamed into place; rows skipped under
        `data.on_bad_row: skip` listed in the table's `skipped_rows.jsonl` and reported on every run that uses it
    --> caption embeddings: one per distinct caption, in a store keyed by encoder and caption hash
        (`embedding_store`), filled on a Ray Data actor pool for the captions it lacks (`embedding_pass`)
    --> one Ray Dataset per configured length, handed to the TorchTrainer (it splits each across workers)

Worker side (`interleaved_batches`): one shard iterator per length; each step draws one length by the
configured schedule (identical on every rank), so every batch holds a single length. Caption embeddings are
looked up by caption hash in the memory-mapped store as batches arrive.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.data
from ray.data.expressions import col
import torch

from seriesforge.config import DataConfig
from seriesforge.data.embedding_pass import EmbeddingReport, fill_store, table_captions
from seriesforge.data.embedding_store import EmbeddingLookup, EmbeddingStore
from seriesforge.data.sources.captions import detect_layout, fingerprint, normalize_batch, read_skip_log
from seriesforge.data.specs import parse_spec
from seriesforge.errors import DataError
from seriesforge.files import writable_dir
from seriesforge.protocols import DataNeeds

SKIPPED_FILE = "skipped_rows.jsonl"
TABLE_FORMAT = "t3"  # bump when the table's columns change: older cached tables are then rebuilt, not misread
# Rows per table write, spread over its length partitions: few, large files, because every file is a read task
# (~1 000-row files made 600 tasks per epoch for the 600k corpus and capped streaming at ~20k rows/s).
ROWS_PER_WRITE = 100_000
HOLDOUT_BUCKETS = 10_000  # a row's `holdout` column is crc32(id) % HOLDOUT_BUCKETS; data.val_fraction cuts it


@dataclass
class TrainingData:
    """What the driver hands to the trainer, plus a summary for logs and checkpoint metadata."""

    datasets: dict[str, ray.data.Dataset]  # "len_24" -> Dataset; "val_24" -> held-out rows when val_fraction > 0
    rows_per_length: dict[int, int]  # every length in the corpus, used or not
    table: Path | None  # the cached caption table; None for series SPECs (read from their source each run)
    fingerprint: str
    unused_lengths: dict[int, int] = field(default_factory=dict)
    skipped_rows: list[dict] = field(default_factory=list)  # {"where", "reason"} per row left out (skip mode)
    embeddings: EmbeddingReport | None = None  # caption embeddings, when the family conditions on text
    init_sample: np.ndarray | None = None  # (N, L, K) training series for `family.data_init` (series SPECs)
    summary: str = ""  # the description of a series SPEC's data (caption tables are described from the fields)

    def describe(self) -> str:
        if self.summary:
            return self.summary
        used = ", ".join(f"L={k}: {v} rows" for k, v in sorted(self.rows_per_length.items())
                         if k not in self.unused_lengths)
        text = f"training table {self.table} ({used})"
        if self.unused_lengths:
            skipped = ", ".join(f"L={k}: {v}" for k, v in sorted(self.unused_lengths.items()))
            text += f"; rows at lengths not in data.lengths, not used: {skipped}"
        if self.skipped_rows:
            first = self.skipped_rows[0]
            text += (f"\n{len(self.skipped_rows)} bad row(s) skipped (data.on_bad_row=skip), listed in "
                     f"{self.table / SKIPPED_FILE}; first: {first['where']}: {first['reason']}")
        if self.embeddings is not None:
            text += "\n" + self.embeddings.describe()
        return text


def dataset_key(length: int) -> str:
    return f"len_{length}"


def validation_key(length: int) -> str:
    return f"val_{length}"


def holdout_cut(val_fraction: float) -> int:
    """Rows whose `holdout` bucket is below this are validation rows (0: none)."""
    return int(round(val_fraction * HOLDOUT_BUCKETS))


# ----------------------------------------------------------------------------------------------------------------
# Driver side
# ----------------------------------------------------------------------------------------------------------------


def read_corpus(data: DataConfig, *, skip_log: Path | None = None) -> tuple[ray.data.Dataset, str]:
    """The corpus named by `data.spec` as a validated Ray Dataset in the internal schema, and its fingerprint.

    Under `data.on_bad_row: skip`, rows left out are logged as JSON lines under `skip_log` by the map tasks.
    """
    spec = parse_spec(data.spec)
    layout = detect_layout(spec.path)
    files = [str(f) for f in layout.files]
    if layout.kind == "tsfragment-csv":
        ds = ray.data.read_csv(files, include_paths=True)
    elif layout.kind == "parquet":
        ds = ray.data.read_parquet(files, include_paths=True)
    elif layout.kind == "jsonl":
        ds = ray.data.read_json(files, include_paths=True)
    else:
        import datasets as hf

        ds = ray.data.from_huggingface(hf.load_from_disk(files[0]))
    ds = ds.map_batches(validated_table, batch_format="numpy",
                        fn_kwargs={"layout": layout.kind, "scaling": data.scaling, "on_bad_row": data.on_bad_row,
                                   "skip_log": str(skip_log) if skip_log else None})
    return ds, fingerprint(layout)


def validated_table(batch: dict[str, np.ndarray], **checks: Any) -> pa.Table:
    """`normalize_batch` (validate + scale), returned as Arrow with `series` a plain list<float32> column.

    Left to Ray, the ragged (L,) rows would become a variable-shaped tensor column, which Ray converts back to
    numpy row by row (~37k rows/s on the 2-core VM). A list column of one length bucket instead turns into
    (B, L) with one reshape (`columns_as_numpy`).
    """
    out = normalize_batch(batch, **checks)
    lengths = out.pop("length").astype(np.int64)  # (B,)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(list(out.pop("series"))) if len(lengths) else np.zeros(0)  # (sum L,)
    series = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(np.float32, copy=False)))
    holdout = [zlib.crc32(str(i).encode()) % HOLDOUT_BUCKETS for i in out["id"]]  # stable across runs, unlike hash()
    columns = {"series": series, "length": pa.array(lengths.astype(np.int32)),
               "holdout": pa.array(holdout, pa.int16())}
    columns.update({name: pa.array(values.tolist(), pa.string()) for name, values in out.items()})
    return pa.table(columns)


def prepare_training_data(data: DataConfig, needs: DataNeeds, *, fallback_cache: Path,
                          progress: bool = True) -> TrainingData:
    """Build (or reuse) the cached training table and caption embeddings; one Dataset per configured length.

    Series SPECs (ucr, sines, csv) take the fixed-length path in `series_training` instead."""
    if parse_spec(data.spec).kind != "captions":
        from seriesforge.data.series_training import prepare_series_training_data  # it imports this module

        return prepare_series_training_data(data)
    cache = _cache_dir(Path(parse_spec(data.spec).path), fallback_cache)
    skip_log = cache / f".skips-{uuid.uuid4().hex[:8]}"
    ds, corpus_key = read_corpus(data, skip_log=skip_log)
    # a table built by skipping bad rows must never serve a run that asked for errors
    key = f"{corpus_key}-{data.scaling}-{TABLE_FORMAT}" + ("-skipbad" if data.on_bad_row == "skip" else "")
    table = cache / key
    if not table.exists():
        _write_atomically(ds, table, data.spec, skip_log)
    rows = _rows_per_length(table)
    missing = [n for n in data.lengths if n not in rows]
    if missing:
        have = ", ".join(str(n) for n in sorted(rows)) or "none"
        raise DataError(f"data.lengths: no rows of length {missing} in {data.spec} (corpus lengths: {have})")
    embeddings = None
    if needs.text_encoder:
        from seriesforge.nn.text_encoder import load_encoder  # the driver loads it once, for its cache key

        store = EmbeddingStore(cache / "embeddings", load_encoder(needs.text_encoder).key)
        embeddings = fill_store(table_captions(table), store, needs.text_encoder, data.num_embed_actors,
                                progress=progress)
        key += f"-{store.encoder_key}"
    datasets = _split_datasets(table, data, rows)
    if holdout_cut(data.val_fraction):
        key += f"-holdout{holdout_cut(data.val_fraction)}"  # the training rows differ from a run without one
    unused = {n: c for n, c in rows.items() if n not in data.lengths}
    return TrainingData(datasets=datasets, rows_per_length=rows, table=table, fingerprint=key, unused_lengths=unused,
                        skipped_rows=_read_jsonl(table / SKIPPED_FILE), embeddings=embeddings)


def _split_datasets(table: Path, data: DataConfig, rows: dict[int, int]) -> dict[str, ray.data.Dataset]:
    """One training Dataset per length and, when data.val_fraction > 0, one of its held-out rows."""
    cut = holdout_cut(data.val_fraction)
    if not cut:
        return {dataset_key(n): ray.data.read_parquet(str(table / f"length={n}")) for n in data.lengths}
    held = _holdout_rows(table, cut)
    for n in data.lengths:
        if not held.get(n) or held[n] == rows[n]:
            raise DataError(f"data.val_fraction={data.val_fraction}: holds out {held.get(n, 0)} of {rows[n]} rows "
                            f"at length {n}; both training and validation need rows (change val_fraction)")
    datasets = {}
    for n in data.lengths:
        part = str(table / f"length={n}")
        datasets[dataset_key(n)] = ray.data.read_parquet(part).filter(expr=col("holdout") >= cut)
        datasets[validation_key(n)] = ray.data.read_parquet(part).filter(expr=col("holdout") < cut)
    return datasets


def _holdout_rows(table: Path, cut: int) -> dict[int, int]:
    """Held-out rows per length (reads only the small int16 `holdout` column)."""
    held = {}
    for part in table.glob("length=*"):
        column = pq.read_table(str(part), columns=["holdout"]).column("holdout")
        held[int(part.name.split("=", 1)[1])] = int(pc.sum(pc.less(column, cut)).as_py() or 0)
    return held


def _cache_dir(corpus: Path, fallback: Path) -> Path:
    """Beside the corpus when writable (shared by every run on it), else under the run directory."""
    return writable_dir(corpus / "_seriesforge_cache", fallback)


def _write_atomically(ds: ray.data.Dataset, table: Path, spec: str, skip_log: Path) -> None:
    """Write the table under a temporary name, check it, record skipped rows, then rename it into place."""
    tmp = table.parent / f".tmp-{uuid.uuid4().hex[:8]}"
    try:
        ds.write_parquet(str(tmp), partition_cols=["length"], min_rows_per_file=ROWS_PER_WRITE)
        _check_unique_ids(tmp, spec)
        with open(tmp / SKIPPED_FILE, "w") as fh:
            fh.writelines(json.dumps(record) + "\n" for record in read_skip_log(skip_log))
        os.replace(tmp, table)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(skip_log, ignore_errors=True)


def _check_unique_ids(table: Path, spec: str) -> None:
    """Duplicate ids would make samples, splits and evaluation ambiguous: always an error, in either mode."""
    import pandas as pd

    ids = pd.Series(pq.read_table(str(table), columns=["id"]).column("id").to_pylist())
    dup = ids[ids.duplicated()]
    if len(dup):
        first = dup.iloc[0]
        raise DataError(f"{spec}: duplicate id {first!r} ({int((ids == first).sum())} rows; "
                        f"{dup.nunique()} id(s) repeated in all); ids must be unique")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _rows_per_length(table: Path) -> dict[int, int]:
    rows: dict[int, int] = {}
    for part in table.glob("length=*"):
        n = int(part.name.split("=", 1)[1])
        rows[n] = sum(pq.ParquetFile(f).metadata.num_rows for f in part.rglob("*.parquet"))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Worker side
# ----------------------------------------------------------------------------------------------------------------


def length_schedule(lengths: list[int], rows: dict[int, int], schedule: str, seed: int) -> Iterator[int]:
    """The length of each step. Same seed on every rank, so all workers step through buckets in lockstep."""
    if schedule == "round_robin":
        while True:
            yield from lengths
    rng = np.random.default_rng(seed)
    weights = np.asarray([rows[n] for n in lengths], dtype=np.float64)
    while True:
        yield int(rng.choice(lengths, p=weights / weights.sum()))


def interleaved_batches(shards: dict[int, Any], *, lengths: list[int], rows: dict[int, int], schedule: str,
                        batch_size: int, keys: tuple[str, ...], seed: int, cache_mb: float = 0.0,
                        embeddings: EmbeddingLookup | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Endless length-homogeneous batches from per-length shard iterators (Ray `DataIterator`s).

    Yields the `keys` columns, e.g. {"series": (B, L)}, plus "caption_embedding" (B, E) looked up from each row's
    caption when `embeddings` is given. Each bucket's first epoch streams from Ray
    Data; a shard that fits in `cache_mb` is then kept in this worker's memory and reshuffled every epoch, which
    spares re-running the streaming split (seconds per epoch) on small corpora. Larger shards keep streaming.
    """
    budget = int(cache_mb * 2**20 / max(1, len(lengths)))
    buckets = {n: _Bucket(shards[n], n, batch_size, keys, seed, budget, embeddings) for n in lengths}
    for n in length_schedule(lengths, rows, schedule, seed):
        yield {k: torch.from_numpy(v) for k, v in buckets[n].next_batch().items()}


def holdout_batches(shard: Any, *, length: int, batch_size: int, keys: tuple[str, ...], max_rows: int,
                    embeddings: EmbeddingLookup | None = None) -> list[dict[str, torch.Tensor]]:
    """Up to `max_rows` of this worker's validation shard as fixed batches, read once per stage and reused at
    every validation so that successive `val_loss` values differ only by the model."""
    out, seen = [], 0
    # the shard is read to its end even past max_rows: every rank of a streaming split finishes its epoch
    for raw in shard.iter_batches(batch_size=batch_size, batch_format="pyarrow", drop_last=False):
        raw = raw.slice(0, max(0, max_rows - seen))
        if raw.num_rows == 0:
            continue
        batch = columns_as_numpy(raw, keys)
        if embeddings is not None:
            batch["caption_embedding"] = embeddings.embed(raw["caption"].to_pylist())  # (B, E)
        out.append({k: torch.from_numpy(v) for k, v in batch.items()})
        seen += raw.num_rows
    if not out:
        raise DataError(f"length {length}: this worker's validation shard is empty (data.val_fraction holds out "
                        f"fewer rows than there are workers)")
    return out


class _Bucket:
    """One length's batches: streamed, or replayed from memory once a whole epoch fitted in the budget."""

    def __init__(self, shard: Any, length: int, batch_size: int, keys: tuple[str, ...], seed: int, budget: int,
                 embeddings: EmbeddingLookup | None):
        self.shard, self.length, self.batch_size, self.keys = shard, length, batch_size, keys
        self.embeddings = embeddings
        self.seed, self.budget, self.epoch = seed, budget, 0
        self.kept: dict[str, list[np.ndarray]] | None = {k: [] for k in self._columns()}
        self.memory: dict[str, np.ndarray] | None = None
        self.live = self._stream()

    def _columns(self) -> tuple[str, ...]:
        return self.keys + (("caption_embedding",) if self.embeddings is not None else ())

    def next_batch(self) -> dict[str, np.ndarray]:
        batch = next(self.live, None)
        if batch is None:
            self._end_epoch()
            batch = next(self.live, None)
            if batch is None:
                raise DataError(f"length {self.length}: this worker's shard has fewer rows than "
                                f"batch_size={self.batch_size}")
        return batch

    def _end_epoch(self) -> None:
        self.epoch += 1
        if self.memory is None and self.kept is not None and all(self.kept.values()):
            self.memory = {k: np.concatenate(v) for k, v in self.kept.items()}
        self.kept = None
        self.live = self._replay() if self.memory is not None else self._stream()

    def _stream(self) -> Iterator[dict[str, np.ndarray]]:
        for raw in self.shard.iter_batches(batch_size=self.batch_size, batch_format="pyarrow", drop_last=True,
                                           local_shuffle_buffer_size=self.batch_size * 4,
                                           local_shuffle_seed=self.seed + self.epoch):
            batch = columns_as_numpy(raw, self.keys)
            if self.embeddings is not None:
                batch["caption_embedding"] = self.embeddings.embed(raw["caption"].to_pylist())  # (B, E)
            self._keep(batch)
            yield batch

    def _keep(self, batch: dict[str, np.ndarray]) -> None:
        if self.kept is None:
            return
        for k, v in batch.items():
            self.kept[k].append(v)
        if sum(a.nbytes for v in self.kept.values() for a in v) > self.budget:
            self.kept = None  # too large to hold: this bucket keeps streaming

    def _replay(self) -> Iterator[dict[str, np.ndarray]]:
        total = len(next(iter(self.memory.values())))
        order = np.random.default_rng((self.seed, self.epoch)).permutation(total)
        for start in range(0, total - self.batch_size + 1, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield {k: np.ascontiguousarray(v[idx]) for k, v in self.memory.items()}


def columns_as_numpy(batch: pa.Table | dict, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The `keys` columns of one length-bucket batch as contiguous float32 arrays, e.g. series -> (B, L)."""
    return {k: _column_as_numpy(batch[k], k) for k in keys}


def _column_as_numpy(column: Any, name: str) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if isinstance(column, pa.Array) and pa.types.is_list(column.type):
        widths = pc.list_value_length(column)
        if len(column) and pc.min(widths).as_py() != pc.max(widths).as_py():
            raise DataError(f"column {name!r}: rows of different lengths in one batch "
                            f"({pc.min(widths).as_py()}..{pc.max(widths).as_py()}); batches must hold one length")
        flat = column.flatten().to_numpy(zero_copy_only=False)  # (B * L,)
        return np.ascontiguousarray(flat.reshape(len(column), -1), dtype=np.float32)  # (B, L)
    if isinstance(column, pa.Array):
        column = column.to_numpy(zero_copy_only=False)
    if column.dtype == object:  # a dict batch holding (L,) arrays per row
        column = np.stack(list(column))
    return np.ascontiguousarray(column, dtype=np.float32)

