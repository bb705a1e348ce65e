"""Worker side of the caption and series training paths: batches of one length each, from one Ray shard.

The training Dataset streams every configured length at once (one split coordinator, not one per length); this
worker sorts each arriving batch's rows into one bucket per length and steps on a full batch of one bucket at a
time (`LengthBatches`). Each epoch streams the shard through Ray Data's local shuffle, reseeded each epoch; a shard
small enough for the worker's cache is then replayed from memory, reshuffled whole each epoch. Caption embeddings
are looked up by caption hash in the memory-mapped store as rows arrive. Nothing here imports Ray: shards only
need `iter_batches`.

Epochs and ranks. Every rank's shard holds the same number of rows (Ray's equal split), but not the same rows of
each length, so ranks may step on different lengths at the same step; the families share their weights across
lengths, so their gradients still average. What must agree is where an epoch ends: a rank that asks Ray for its
next epoch waits there until every rank does. So every rank takes the same number of steps per epoch, computed
from numbers all ranks share (`steps_in_epoch`), few enough that each step finds a full bucket; the rows left
over are carried into the next epoch, so none is dropped.
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
# How far round robin reads ahead for the length whose turn it is before it steps on another that is ready:
# pending rows up to this many batches per length. It bounds the rows a length rare in this rank's stream can
# hold back (1 024-row batches of 96 points: ~1.2 MB per batch).
LOOKAHEAD_BATCHES = 8

Part = tuple[int, dict[str, np.ndarray]]  # (length, {column: (rows, ...)}) rows of one length


def steps_in_epoch(rows: int, batch_size: int, buckets: int) -> int:
    """Steps a rank takes in an epoch that offers `rows` rows (its shard plus the rows carried in): the most for
    which every step is sure to find a full bucket. Before step k, rows - (k-1)*batch_size rows remain; once more
    than buckets*(batch_size-1) remain, some bucket holds a full batch. One bucket: rows // batch_size."""
    return max(0, (rows - buckets * (batch_size - 1) - 1) // batch_size + 1)


def interleaved_batches(shard: Any, *, lengths: list[int], rows_per_epoch: int, schedule: str, batch_size: int,
                        keys: tuple[str, ...], seed: int, cache_mb: float = 0.0,
                        embeddings: EmbeddingLookup | None = None) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches of one length each, e.g. {"series": (B, L)} plus "caption_embedding" (B, E) when
    `embeddings` is given; `rows_per_epoch` is this worker's shard size (the same on every rank)."""
    batches = LengthBatches(shard, lengths=lengths, rows_per_epoch=rows_per_epoch, schedule=schedule,
                            batch_size=batch_size, keys=keys, seed=seed, cache_mb=cache_mb, embeddings=embeddings)
    while True:
        for batch in batches.epoch():
            yield {k: torch.from_numpy(v) for k, v in batch.items()}


class LengthBatches:
    """Epochs of full, single-length batches from a shard that mixes lengths.

    `schedule` orders the buckets: "round_robin" steps on each length in turn, reading ahead up to
    LOOKAHEAD_BATCHES per length for the one whose turn it is, and otherwise on the next ready one;
    "proportional" steps on the fullest bucket. Every row is used once per epoch either way, so over an epoch each
    length gets steps in proportion to its rows.
    """

    def __init__(self, shard: Any, *, lengths: list[int], rows_per_epoch: int, schedule: str, batch_size: int,
                 keys: tuple[str, ...], seed: int, cache_mb: float = 0.0,
                 embeddings: EmbeddingLookup | None = None):
        self.rows_per_epoch, self.batch_size = rows_per_epoch, batch_size
        self.buckets = Buckets(lengths, batch_size, schedule)
        self.source = EpochSource(shard, lengths=lengths, batch_size=batch_size, keys=keys, seed=seed,
                                  budget=int(cache_mb * 2**20), embeddings=embeddings)
        self.index, self.rows_read = 0, 0  # rows read by the last epoch

    def epoch(self) -> Iterator[dict[str, np.ndarray]]:
        carried = self.buckets.pending_rows
        steps = steps_in_epoch(carried + self.rows_per_epoch, self.batch_size, len(self.buckets.lengths))
        if steps == 0:
            raise DataError(f"this worker's shard has {self.rows_per_epoch} rows per epoch: too few for "
                            f"batch_size={self.batch_size} with {len(self.buckets.lengths)} length(s)")
        parts, read, ended = self.source.epoch(self.index), 0, False
        for _ in range(steps):
            while (length := self.buckets.choose(ended)) is None:
                part = next(parts, None)
                if part is None:
                    if ended:
                        raise self._short(read)
                    ended = True
                    continue
                read += self.buckets.add(*part)
            yield self.buckets.take(length)
        for part in parts:  # the epoch's unread rest joins the buckets: it starts the next epoch
            read += self.buckets.add(*part)
        if read != self.rows_per_epoch:
            raise self._short(read)
        self.index, self.rows_read = self.index + 1, read

    def _short(self, read: int) -> DataError:
        return DataError(f"this worker's shard held {read} rows in epoch {self.index}, expected "
                         f"{self.rows_per_epoch} (every rank's share of the training rows)")


class Buckets:
    """Pending rows per length, in arrival order; full batches taken by the schedule."""

    def __init__(self, lengths: list[int], batch_size: int, schedule: str):
        self.lengths, self.batch_size, self.schedule = list(lengths), batch_size, schedule
        self.parts: dict[int, list[dict[str, np.ndarray]]] = {n: [] for n in lengths}
        self.rows = {n: 0 for n in lengths}
        self.turn = 0  # round robin: index of the length whose turn it is

    @property
    def pending_rows(self) -> int:
        return sum(self.rows.values())

    def add(self, length: int, part: dict[str, np.ndarray]) -> int:
        rows = _rows(part)
        if rows:
            self.parts[length].append(part)
            self.rows[length] += rows
        return rows

    def choose(self, ended: bool) -> int | None:
        """The length to step on now, or None: read more first."""
        ready = [n for n in self.lengths if self.rows[n] >= self.batch_size]
        if self.schedule == "proportional":
            return max(ready, key=lambda n: self.rows[n]) if ready else None
        due = self.lengths[self.turn]
        lookahead = LOOKAHEAD_BATCHES * self.batch_size * len(self.lengths)
        if due not in ready and ready and (ended or self.pending_rows >= lookahead):
            due = next(n for n in self.lengths[self.turn:] + self.lengths[:self.turn] if n in ready)
        if due not in ready:
            return None
        self.turn = (self.lengths.index(due) + 1) % len(self.lengths)
        return due

    def take(self, length: int) -> dict[str, np.ndarray]:
        """The first batch_size pending rows of `length`; the rest stay pending."""
        parts, size = self.parts[length], self.batch_size
        self.rows[length] -= size
        if _rows(parts[0]) == size:  # the usual case when one length streams alone: one full batch
            # Arrow's zero-copy arrays are read-only, and torch warns on tensors over them: copy those
            return {k: v if v.flags.writeable else v.copy() for k, v in parts.pop(0).items()}
        joined, used = {k: [] for k in parts[0]}, 0
        while used < size:
            part = parts.pop(0)
            need = size - used
            for k, v in part.items():
                joined[k].append(v[:need])
            if _rows(part) > need:
                parts.insert(0, {k: v[need:] for k, v in part.items()})
            used += min(need, _rows(part))
        return {k: np.ascontiguousarray(np.concatenate(v)) for k, v in joined.items()}


class EpochSource:
    """This worker's rows, one epoch at a time, as single-length parts: streamed from the shard, or replayed from
    memory once a whole streamed epoch fitted in `budget` bytes (sparing the streaming split's seconds per epoch
    on small corpora)."""

    def __init__(self, shard: Any, *, lengths: list[int], batch_size: int, keys: tuple[str, ...], seed: int,
                 budget: int, embeddings: EmbeddingLookup | None):
        self.shard, self.lengths, self.batch_size, self.keys = shard, list(lengths), batch_size, keys
        self.seed, self.budget, self.embeddings = seed, budget, embeddings
        self.memory: dict[int, dict[str, np.ndarray]] | None = None

    def epoch(self, index: int) -> Iterator[Part]:
        return self._replay(index) if self.memory is not None else self._stream(index)

    def _stream(self, index: int) -> Iterator[Part]:
        kept: dict[int, list[dict[str, np.ndarray]]] | None = {n: [] for n in self.lengths} if self.budget else None
        size = 0
        for raw in self.shard.iter_batches(batch_size=self.batch_size, batch_format="pyarrow", drop_last=False,
                                           local_shuffle_buffer_size=self.batch_size * SHUFFLE_BATCHES,
                                           local_shuffle_seed=self.seed + index):
            for length, rows in split_by_length(raw, self.lengths):
                part = columns_as_numpy(rows, self.keys)
                if self.embeddings is not None:
                    part["caption_embedding"] = self.embeddings.embed(rows["caption"].to_pylist())  # (B, E)
                if kept is not None:
                    size += sum(a.nbytes for a in part.values())
                    kept = kept if size <= self.budget else None  # too large to hold: keep streaming
                    if kept is not None:
                        kept[length].append(part)
                yield length, part
        if kept is not None:
            self.memory = {n: {k: np.concatenate([p[k] for p in ps]) for k in ps[0]} for n, ps in kept.items() if ps}

    def _replay(self, index: int) -> Iterator[Part]:
        """Each length's rows reshuffled, in batch-size chunks, the chunks of all lengths in a shuffled order."""
        rng = np.random.default_rng((self.seed, index))
        chunks = []
        for length, columns in self.memory.items():
            order = rng.permutation(_rows(columns))
            chunks += [(length, order[i:i + self.batch_size]) for i in range(0, len(order), self.batch_size)]
        for j in rng.permutation(len(chunks)):
            length, idx = chunks[j]
            yield length, {k: np.ascontiguousarray(v[idx]) for k, v in self.memory[length].items()}


def split_by_length(batch: pa.Table, lengths: list[int]) -> Iterator[tuple[int, pa.Table]]:
    """The rows of an Arrow batch grouped by series length, in arrival order within each length. With one
    configured length every row is that length (series paths store (L, K) tensors, not lists)."""
    if len(lengths) == 1:
        yield lengths[0], batch
        return
    widths = pc.list_value_length(batch.column("series")).to_numpy(zero_copy_only=False)  # (B,)
    order = np.argsort(widths, kind="stable")
    cuts = np.flatnonzero(np.diff(widths[order])) + 1
    for idx in np.split(order, cuts):
        if not len(idx):
            continue
        length = int(widths[idx[0]])
        if length not in lengths:
            raise DataError(f"a row of length {length} reached training, which streams only data.lengths {lengths}")
        yield length, batch.take(pa.array(idx))


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

