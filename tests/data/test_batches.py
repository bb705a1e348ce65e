"""Length-bucketed batching on the worker side, with stand-in shard iterators (no Ray needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from seriesforge.data.batches import (LOOKAHEAD_BATCHES, SHUFFLE_BATCHES, LengthBatches, interleaved_batches,
                                      steps_in_epoch)
from seriesforge.errors import DataError


class FakeShard:
    """Quacks like a Ray DataIterator over a mixed-length shard: iter_batches(...) -> Arrow batches whose `series`
    is a list column, each row's first value its row number (so rows can be told apart); counts epochs."""

    def __init__(self, rows_per_length: dict[int, int], *, interleave: bool = True):
        self.rows, self.epochs, self.calls = [], 0, []
        for length, count in rows_per_length.items():
            self.rows += [(length, i) for i in range(count)]
        if interleave:  # lengths mixed through the stream, as read tasks of several files deliver them
            self.rows = sorted(self.rows, key=lambda r: (r[1] / rows_per_length[r[0]], r[0]))
        self.ids = [f"{n}:{i}" for n, i in self.rows]

    def iter_batches(self, *, batch_size, drop_last, **kw):
        self.epochs += 1
        self.calls.append({"drop_last": drop_last, **kw})
        for start in range(0, len(self.rows), batch_size):
            chunk = self.rows[start:start + batch_size]
            series = [[float(start + j)] + [0.0] * (length - 1) for j, (length, _) in enumerate(chunk)]
            captions = [f"row {start + j}" for j in range(len(chunk))]
            yield pa.table({"series": pa.array(series, pa.list_(pa.float32())), "caption": captions})


def _batches(shard, lengths, n, *, batch_size=4, schedule="round_robin", cache_mb=0.0):
    it = interleaved_batches(shard, lengths=lengths, rows_per_epoch=len(shard.rows), schedule=schedule,
                             batch_size=batch_size, keys=("series",), seed=0, cache_mb=cache_mb)
    return [b["series"].numpy() for b in itertools.islice(it, n)]


def test_each_batch_holds_one_length_round_robin():
    batches = _batches(FakeShard({24: 16, 48: 16}), [24, 48], 6)
    assert [b.shape for b in batches] == [(4, 24), (4, 48)] * 3


def test_proportional_steps_on_the_fullest_bucket_and_lengths_follow_their_rows():
    shard = FakeShard({24: 48, 96: 16})
    batches = _batches(shard, [24, 96], 12, schedule="proportional")  # 64 rows, 4 a batch: about one epoch
    widths = [b.shape[1] for b in batches]
    assert 8 <= widths.count(24) <= 10 and 2 <= widths.count(96) <= 4  # 3:1, as the rows


def test_round_robin_steps_on_a_ready_length_rather_than_read_far_ahead_for_a_rare_one():
    # a stream that brings length 96 only at its very end: round robin must not hold the whole epoch back
    shard = FakeShard({24: 400, 96: 8}, interleave=False)
    lb = LengthBatches(shard, lengths=[24, 96], rows_per_epoch=408, schedule="round_robin", batch_size=4,
                       keys=("series",), seed=0)
    epoch = lb.epoch()
    first = [next(epoch)["series"].shape[1] for _ in range(3)]
    assert first == [24, 24, 24]
    pending = sum(lb.buckets.rows.values())
    assert pending <= LOOKAHEAD_BATCHES * 4 * 2 + 4  # read ahead at most the lookahead (and one batch)


def test_steps_in_epoch_leave_a_full_bucket_for_every_step_and_carry_the_rest():
    assert steps_in_epoch(10, 4, 1) == 2  # one bucket: rows // batch_size
    assert steps_in_epoch(16, 4, 2) == 3  # 2 buckets may strand 3 rows each: 16 - 2*3 = 10 -> 3 full batches
    assert steps_in_epoch(6, 4, 2) == 0


@pytest.mark.parametrize("seed", range(6))
def test_ranks_with_different_lengths_take_the_same_steps_and_use_every_row(seed):
    """Ray's equal split gives each rank the same number of rows but not of each length. Every rank must reach
    each epoch's end at the same step (Ray's epoch barrier), whatever its mix, and no row may be dropped."""
    rng = np.random.default_rng(seed)
    mixes = [{24: int(k), 48: int(30 - k)} for k in rng.integers(5, 26, size=2)]  # 30 rows each, mixed unlike
    steps_per_epoch = []
    for mix in mixes:
        lb = LengthBatches(FakeShard(mix), lengths=[24, 48], rows_per_epoch=30, schedule="round_robin",
                           batch_size=4, keys=("series",), seed=0)
        counts, seen = [], []
        for _ in range(4):
            epoch = list(lb.epoch())
            counts.append(len(epoch))
            seen += [b["series"][:, 0] for b in epoch]
        steps_per_epoch.append(counts)
        # 4 epochs of 30 rows: every row 4 times, less what is still carried at the end
        rows, times = np.unique(np.concatenate(seen), return_counts=True)
        assert len(rows) == 30 and times.min() >= 3 and times.sum() == 120 - lb.buckets.pending_rows
        assert lb.buckets.pending_rows < 2 * 4  # the carry stays under one batch per bucket
    assert steps_per_epoch[0] == steps_per_epoch[1]


def test_small_shards_replay_from_memory_and_large_ones_stream():
    small = FakeShard({24: 8, 48: 8})
    _batches(small, [24, 48], 10, cache_mb=1.0)
    assert small.epochs == 1  # one streamed epoch, then reshuffled replays
    large = FakeShard({24: 8, 48: 8})
    _batches(large, [24, 48], 10, cache_mb=0.0)
    assert large.epochs >= 3


@pytest.mark.parametrize("cache_mb", [0.0, 1.0], ids=["streamed", "replayed"])
def test_no_row_is_dropped_an_epoch_tail_starts_the_next_epoch(cache_mb):
    shard = FakeShard({24: 10})  # batch 4: each epoch ends with 2 rows over
    batches = _batches(shard, [24], 5, cache_mb=cache_mb)  # 20 rows = 2 epochs exactly
    assert [b.shape for b in batches] == [(4, 24)] * 5  # every batch is full
    rows, counts = np.unique(np.concatenate([b[:, 0] for b in batches]), return_counts=True)
    np.testing.assert_array_equal(rows, np.arange(10))
    assert (counts == 2).all(), counts  # every row twice: none dropped, none repeated early


def test_each_streamed_epoch_asks_ray_for_a_local_shuffle_with_a_new_seed():
    shard = FakeShard({24: 8})
    _batches(shard, [24], 6)  # 2 batches per epoch: 3 epochs
    assert [kw["local_shuffle_seed"] for kw in shard.calls] == [0, 1, 2]
    assert {kw["local_shuffle_buffer_size"] for kw in shard.calls} == {4 * SHUFFLE_BATCHES}
    assert not any(kw["drop_last"] for kw in shard.calls)  # a partial last batch is carried over, not dropped


def test_shard_smaller_than_a_batch_is_a_clear_error():
    with pytest.raises(DataError, match="3 rows per epoch: too few for batch_size=4"):
        _batches(FakeShard({24: 3}), [24], 1)


def test_a_shard_smaller_than_every_rank_was_told_is_a_clear_error():
    shard = FakeShard({24: 8})
    it = interleaved_batches(shard, lengths=[24], rows_per_epoch=12, schedule="round_robin", batch_size=4,
                             keys=("series",), seed=0)
    with pytest.raises(DataError, match="held 8 rows in epoch 0, expected 12"):
        list(itertools.islice(it, 4))


def test_a_length_outside_data_lengths_is_a_clear_error():
    with pytest.raises(DataError, match="row of length 96 reached training"):
        _batches(FakeShard({24: 8, 96: 8}), [24, 48], 4)


class RowNumberEmbeddings:
    """Stands in for the caption-embedding store: "row 7" -> [7.0]."""

    def embed(self, captions: list[str]) -> np.ndarray:
        return np.array([[float(c.split()[1])] for c in captions], dtype=np.float32)  # (B, 1)


@pytest.mark.parametrize("cache_mb", [0.0, 1.0], ids=["streamed", "replayed"])
def test_each_rows_caption_embedding_stays_with_its_series(cache_mb):
    it = interleaved_batches(FakeShard({24: 30, 48: 22}), lengths=[24, 48], rows_per_epoch=52, schedule="round_robin",
                             batch_size=4, keys=("series",), seed=0, cache_mb=cache_mb,
                             embeddings=RowNumberEmbeddings())
    for batch in itertools.islice(it, 40):  # 3 epochs, the first streamed, the rest replayed when cached
        np.testing.assert_array_equal(batch["caption_embedding"][:, 0].numpy(), batch["series"][:, 0].numpy())
