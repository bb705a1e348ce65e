"""Worker side of the caption and series training paths: length-homogeneous batches from Ray shard iterators.

One shard iterator per length (`interleaved_batches`); each step draws one length by the configured schedule,
identical on every rank, so every batch holds a single length. Each epoch of a bucket streams through
`shuffled_batches` (Ray Data's local shuffle, reseeded each epoch); a shard small enough for the worker's
cache is then replayed from memory, reshuffled whole each epoch. Caption embeddings are looked up by caption hash
in the memory-mapped store as batches arrive. Nothing here imports Ray: shards only need `iter_batches`.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from seriesforge.data.embedding_store import EmbeddingLookup
from seriesforge.errors import DataError

# Ray Data's local shuffle buffer, in batches. A numpy shuffle of 4-batch windows was tried in its place and
# was no faster (600k rows, 8 epochs each way: median b/a 0.47 vs 0.56, within this VM's noise).
SHUFFLE_BATCHES = 4


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


def shuffled_batches(shard: Any, *, batch_size: int, keys: tuple[str, ...], seed: int,
                     embeddings: EmbeddingLookup | None = None) -> Iterator[dict[str, np.ndarray]]:
    """One epoch of a streamed shard as batches of the `keys` columns (+ "caption_embedding" (B, E)), shuffled
    by Ray Data's local buffer of SHUFFLE_BATCHES batches, seeded per epoch. The last batch may be partial: its
    rows are not dropped (the bucket carries them into the next epoch's first batch)."""
    for raw in shard.iter_batches(batch_size=batch_size, batch_format="pyarrow", drop_last=False,
                                  local_shuffle_buffer_size=batch_size * SHUFFLE_BATCHES, local_shuffle_seed=seed):
        batch = columns_as_numpy(raw, keys)
        if embeddings is not None:
            batch["caption_embedding"] = embeddings.embed(raw["caption"].to_pylist())  # (B, E)
        yield batch


class _Bucket:
    """One length's batches: streamed, or replayed from memory once a whole epoch fitted in the budget.

    Every batch is full (training steps on batch_size rows), and no row is left out: an epoch's last, partial
    batch is carried into the first batch of the next epoch. Every rank's shard holds the same number of rows
    (Ray's equal split), so all ranks reach each epoch's end at the same step, as the split's epoch barrier needs.
    """

    def __init__(self, shard: Any, length: int, batch_size: int, keys: tuple[str, ...], seed: int, budget: int,
                 embeddings: EmbeddingLookup | None):
        self.shard, self.length, self.batch_size, self.keys = shard, length, batch_size, keys
        self.embeddings = embeddings
        self.seed, self.budget, self.epoch, self.epoch_rows = seed, budget, 0, 0
        self.kept: dict[str, list[np.ndarray]] | None = {k: [] for k in self._columns()}
        self.memory: dict[str, np.ndarray] | None = None
        self.pending: list[dict[str, np.ndarray]] = []  # rows read but not yet batched, in order
        self.live = self._stream()

    def _columns(self) -> tuple[str, ...]:
        return self.keys + (("caption_embedding",) if self.embeddings is not None else ())

    def next_batch(self) -> dict[str, np.ndarray]:
        while sum(_rows(p) for p in self.pending) < self.batch_size:
            part = next(self.live, None)
            if part is None:
                if self.epoch_rows < self.batch_size:
                    raise DataError(f"length {self.length}: this worker's shard has fewer rows than "
                                    f"batch_size={self.batch_size}")
                self._end_epoch()
                continue
            self.epoch_rows += _rows(part)
            self.pending.append(part)
        return self._take()

    def _take(self) -> dict[str, np.ndarray]:
        """The first batch_size pending rows; the rest stay pending."""
        if len(self.pending) == 1 and _rows(self.pending[0]) == self.batch_size:
            return self.pending.pop()  # the usual case: one full batch, no copy
        joined = {k: np.concatenate([p[k] for p in self.pending]) for k in self.pending[0]}
        rest = {k: v[self.batch_size:] for k, v in joined.items()}
        self.pending = [rest] if _rows(rest) else []
        return {k: np.ascontiguousarray(v[:self.batch_size]) for k, v in joined.items()}

    def _end_epoch(self) -> None:
        self.epoch, self.epoch_rows = self.epoch + 1, 0
        if self.memory is None and self.kept is not None and all(self.kept.values()):
            self.memory = {k: np.concatenate(v) for k, v in self.kept.items()}
        self.kept = None
        self.live = self._replay() if self.memory is not None else self._stream()

    def _stream(self) -> Iterator[dict[str, np.ndarray]]:
        for batch in shuffled_batches(self.shard, batch_size=self.batch_size, keys=self.keys,
                                      seed=self.seed + self.epoch, embeddings=self.embeddings):
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
        for start in range(0, total, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield {k: np.ascontiguousarray(v[idx]) for k, v in self.memory.items()}


def _rows(batch: dict[str, np.ndarray]) -> int:
    return len(next(iter(batch.values())))


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

