"""The caption-corpus training path: read a corpus, validate it, embed its captions once, feed length buckets.

Driver side (`prepare_training_data`):
    corpus files --read--> normalize_batch (validate + scale)
    --> parquet table partitioned by length, cached beside the corpus (key: corpus fingerprint, scaling, bad-row
        policy); ids checked unique before the table is renamed into place; rows skipped under
        `data.on_bad_row: skip` listed in the table's `skipped_rows.jsonl` and reported on every run that uses it
    --> caption embeddings: one per distinct caption, in a store keyed by encoder and caption hash
        (`embedding_store`), filled on a Ray Data actor pool for the captions it lacks (`embedding_pass`)
    --> one Ray Dataset of every configured length (and one of held-out rows per length), reading only the
        columns the family streams, handed to the TorchTrainer (it splits each across workers)

Worker side: `data.batches` (shuffled batches of one length each, sorted out of this worker's shard).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
import ray.data
from ray.data.expressions import col

from seriesforge.config import DataConfig
from seriesforge.data.embedding_pass import EmbeddingReport, fill_store, table_captions
from seriesforge.data.embedding_store import EmbeddingStore
from seriesforge.data.sources.captions import CONTENT_ID_TAG, detect_layout, fingerprint, read_skip_log
from seriesforge.data.specs import parse_spec
from seriesforge.data.table_rows import HOLDOUT_BUCKETS, validated_table
from seriesforge.errors import DataError
from seriesforge.files import writable_dir
from seriesforge.protocols import DataNeeds
from seriesforge.runtime import release_pooled_memory

SKIPPED_FILE = "skipped_rows.jsonl"
TABLE_FORMAT = "t3"  # bump when the table's columns change: older cached tables are then rebuilt, not misread
# Rows per table write task, spread over its length partitions (~20 000-row files at three lengths). Not much
# smaller: every file is a read task (~1 000-row files made 600 tasks per epoch for the 600k corpus and capped
# streaming at ~20k rows/s). Not larger: each write task holds its rows several times over while it encodes
# them; at 100 000 rows its worker peaked at 435-517 MB, and the files streamed to workers in larger blocks
# at 600k rows than at 60k. At 60 000 the 600k stream was as fast (later epochs b/a 0.655 against 0.682).
ROWS_PER_WRITE = 60_000
# The training stream's blocks: whole table files, split only above this size. Ray Data's default cut each
# ~20 000-row file into 10 blocks, and its per-block work (object-store puts, the split coordinator's dispatch, the
# workers' fetches) was most of an epoch: one block per file raised benchmarks/ingest.py's later epochs from b/a
# 0.54-0.59 to 0.91-0.96 at 600k rows and from 0.47 to 0.64-0.78 at 60k (2026-12-01, docs/results.md).
TRAIN_BLOCK_BYTES = 32 * 2**20


@dataclass
class TrainingData:
    """What the driver hands to the trainer, plus a summary for logs and checkpoint metadata."""

    datasets: dict[str, ray.data.Dataset]  # TRAIN_KEY -> Dataset; "val_24" -> held-out rows when val_fraction > 0
    rows_per_length: dict[int, int]  # every length in the corpus, used or not
    train_rows: int  # rows in the TRAIN_KEY Dataset (configured lengths, held-out rows excluded)
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


TRAIN_KEY = "train"  # the one training Dataset, every configured length in it


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


def prepare_training_data(data: DataConfig, needs: DataNeeds, *, fallback_cache: Path,
                          progress: bool = True) -> TrainingData:
    """Build (or reuse) the cached training table and caption embeddings; the training Dataset of all
    configured lengths (and held-out rows per length).

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
    datasets, train_rows = training_datasets(table, data, rows, streamed_columns(needs))
    if holdout_cut(data.val_fraction):
        key += f"-holdout{holdout_cut(data.val_fraction)}"  # the training rows differ from a run without one
    unused = {n: c for n, c in rows.items() if n not in data.lengths}
    return TrainingData(datasets=datasets, rows_per_length=rows, train_rows=train_rows, table=table,
                        fingerprint=key, unused_lengths=unused,
                        skipped_rows=_read_jsonl(table / SKIPPED_FILE), embeddings=embeddings)


def streamed_columns(needs: DataNeeds) -> tuple[str, ...]:
    """The table columns workers read: what every batch carries, plus the caption that keys its embedding.
    Reading only these (not id, domain, level, holdout) made each streamed epoch about 20 % faster at 600k rows."""
    return needs.columns + (("caption",) if needs.text_encoder else ())


def training_datasets(table: Path, data: DataConfig, rows: dict[int, int],
                      columns: tuple[str, ...]) -> tuple[dict[str, ray.data.Dataset], int]:
    """The training Dataset (TRAIN_KEY: every configured length in one stream, each row's length told by its
    series) and, when data.val_fraction > 0, one Dataset of held-out rows per length; each reads only `columns`.
    Returns them with the number of training rows.

    One stream, not one per length: Ray Train runs a split coordinator per dataset, and three of them took about a
    third of the 2-core VM's CPU in their scheduling loops. Streaming all lengths through one split raised
    benchmarks/ingest.py's later epochs at 600k rows from b/a 0.47 to 0.63-0.68 (2026-12-01); the workers sort
    the rows into length buckets (`batches.LengthBatches`). Its blocks are whole table files (`_read_blocks`)."""
    cut = holdout_cut(data.val_fraction)
    files = _interleaved_files(table, data.lengths)
    if not cut:
        stream = ray.data.read_parquet(files, columns=list(columns), **_read_blocks(files, list(columns)))
        return {TRAIN_KEY: stream}, sum(rows[n] for n in data.lengths)
    held = _holdout_rows(table, cut)
    for n in data.lengths:
        if not held.get(n) or held[n] == rows[n]:
            raise DataError(f"data.val_fraction={data.val_fraction}: holds out {held.get(n, 0)} of {rows[n]} rows "
                            f"at length {n}; both training and validation need rows (change val_fraction)")
    read = [*columns, "holdout"]
    stream = ray.data.read_parquet(files, columns=read, **_read_blocks(files, read))
    datasets = {TRAIN_KEY: stream.filter(expr=col("holdout") >= cut).select_columns(list(columns))}
    for n in data.lengths:
        datasets[validation_key(n)] = (ray.data.read_parquet(str(table / f"length={n}"), columns=read)
                                       .filter(expr=col("holdout") < cut).select_columns(list(columns)))
    return datasets, sum(rows[n] - held[n] for n in data.lengths)


def _read_blocks(files: list[str], columns: list[str]) -> dict:
    """read_parquet's block count for the training stream: one block per table file (~20 000 rows), more only
    when the files' read columns average over TRAIN_BLOCK_BYTES uncompressed (long series), as their footers tell.
    Ray's split hands whole blocks to ranks, so with one file per length (corpora up to ~60 000 rows) a rank may
    stream only some lengths; every step's gradient is still averaged over all ranks."""
    size = 0
    for path in files:
        meta = pq.read_metadata(path)
        for g in range(meta.num_row_groups):
            chunks = [meta.row_group(g).column(c) for c in range(meta.num_columns)]
            size += sum(c.total_uncompressed_size for c in chunks if c.path_in_schema.split(".")[0] in columns)
    return {"override_num_blocks": max(len(files), -(-size // TRAIN_BLOCK_BYTES))}


def _interleaved_files(table: Path, lengths: list[int]) -> list[str]:
    """The configured lengths' table files, interleaved by their place within their length (the first file of each
    length, then the second, ...), so that the stream, read roughly in this order, brings every length early
    rather than one length after another."""
    per_length = {n: sorted(str(f) for f in (table / f"length={n}").rglob("*.parquet")) for n in lengths}
    ranked = [((i + 0.5) / len(fs), n, f) for n, fs in per_length.items() for i, f in enumerate(fs)]
    return [f for _, _, f in sorted(ranked)]


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
        release_pooled_memory()  # the write tasks' workers stay pooled for the whole run: return what they freed
        _check_unique_ids(tmp, spec)
        with open(tmp / SKIPPED_FILE, "w") as fh:
            fh.writelines(json.dumps(record) + "\n" for record in read_skip_log(skip_log))
        os.replace(tmp, table)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(skip_log, ignore_errors=True)


def _check_unique_ids(table: Path, spec: str) -> None:
    """Duplicate ids would make samples, splits and evaluation ambiguous: always an error, in either mode.

    The ids are counted in Arrow, read one file at a time, and the pool's freed pages are returned afterwards:
    read all at once as Python strings they left the driver 80-110 MB larger at 600k rows than at 60k for the rest
    of the run; now it is the same size at both (measured, 2026-11-30). Arrow needs a few bytes per id."""
    files = sorted(table.rglob("*.parquet"))
    if not files:
        return
    ids = pa.chunked_array([pq.read_table(f, columns=["id"], use_threads=False).column("id").combine_chunks()
                            for f in files])
    rows, counts = len(ids), pc.value_counts(ids)  # struct<values, counts>, ids in order of first appearance
    del ids
    pa.default_memory_pool().release_unused()
    if len(counts) == rows:
        return
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    first = repeated[0]
    name = first["values"].as_py()
    why = (" (the file has no id column, so rows are named by file and content: these rows are identical)"
           if CONTENT_ID_TAG in name else "")
    raise DataError(f"{spec}: duplicate id {name!r} ({first['counts'].as_py()} rows; "
                    f"{len(repeated)} id(s) repeated in all); ids must be unique{why}")


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
