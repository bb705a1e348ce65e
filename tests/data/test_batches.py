"""Length-bucketed batching on the worker side, with stand-in shard iterators (no Ray needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from seriesforge.data.batches import SHUFFLE_BATCHES, interleaved_batches, length_schedule
from seriesforge.errors import DataError


class FakeShard:
    """Quacks like a Ray DataIterator: iter_batches(...) -> numpy batches; counts epochs."""

    def __init__(self, length: int, rows: int):
        self.length, self.rows, self.epochs, self.calls = length, rows, 0, []

    def iter_batches(self, *, batch_size, drop_last, **kw):
        self.epochs += 1
        self.calls.append({"drop_last": drop_last, **kw})
        data = np.arange(self.rows * self.length, dtype=np.float32).reshape(self.rows, self.length)
        stop = self.rows - self.rows % batch_size if drop_last else self.rows
        for i in range(0, stop, batch_size):
            yield {"series": data[i:i + batch_size], "caption_embedding": np.ones((len(data[i:i + batch_size]), 3))}


def _take(shards, n, **kw):
    it = interleaved_batches(shards, lengths=list(shards), rows={k: s.rows for k, s in shards.items()},
                             batch_size=4, keys=("series", "caption_embedding"), seed=0, **kw)
    return list(itertools.islice(it, n))


def test_each_batch_holds_one_length_round_robin():
    shards = {24: FakeShard(24, 16), 48: FakeShard(48, 16)}
    batches = _take(shards, 6, schedule="round_robin")
    assert [b["series"].shape for b in batches] == [(4, 24), (4, 48)] * 3
    assert all(b["caption_embedding"].shape == (4, 3) for b in batches)


def test_proportional_schedule_follows_bucket_sizes():
    draws = list(itertools.islice(length_schedule([24, 96], {24: 900, 96: 100}, "proportional", 0), 2000))
    assert 0.85 < draws.count(24) / len(draws) < 0.95
    again = list(itertools.islice(length_schedule([24, 96], {24: 900, 96: 100}, "proportional", 0), 2000))
    assert draws == again  # identical on every rank


def test_small_shards_replay_from_memory_and_large_ones_stream():
    small = {24: FakeShard(24, 8)}
    _take(small, 10, schedule="round_robin", cache_mb=1.0)
    assert small[24].epochs == 1  # one streamed epoch, then reshuffled replays
    large = {24: FakeShard(24, 8)}
    _take(large, 10, schedule="round_robin", cache_mb=0.0)
    assert large[24].epochs == 5


def test_replayed_epochs_cover_every_row():
    shards = {24: FakeShard(24, 8)}
    rows = [b["series"][:, 0] for b in _take(shards, 6, schedule="round_robin", cache_mb=1.0)]
    for epoch in range(3):
        seen = np.sort(np.concatenate(rows[2 * epoch:2 * epoch + 2]))
        np.testing.assert_array_equal(seen, np.arange(8) * 24)


def test_shard_smaller_than_a_batch_is_a_clear_error():
    with pytest.raises(DataError, match="length 24: this worker's shard has fewer rows than batch_size=4"):
        _take({24: FakeShard(24, 3)}, 1, schedule="round_robin")



def test_each_streamed_epoch_asks_ray_for_a_local_shuffle_with_a_new_seed():
    shard = FakeShard(24, 8)
    _take({24: shard}, 6, schedule="round_robin", cache_mb=0.0)  # 2 batches per epoch: 3 epochs
    assert [kw["local_shuffle_seed"] for kw in shard.calls] == [0, 1, 2]
    assert {kw["local_shuffle_buffer_size"] for kw in shard.calls} == {4 * SHUFFLE_BATCHES}
    assert not any(kw["drop_last"] for kw in shard.calls)  # a partial last batch is carried over, not dropped


@pytest.mark.parametrize("cache_mb", [0.0, 1.0], ids=["streamed", "replayed"])
def test_no_row_is_dropped_an_epoch_tail_starts_the_next_epoch(cache_mb):
    shard = FakeShard(24, 10)  # batch 4: each epoch ends with 2 rows over
    batches = _take({24: shard}, 5, schedule="round_robin", cache_mb=cache_mb)  # 20 rows = 2 epochs exactly
    assert [b["series"].shape for b in batches] == [(4, 24)] * 5  # every batch is full
    rows, counts = np.unique(np.concatenate([b["series"][:, 0] for b in batches]) // 24, return_counts=True)
    np.testing.assert_array_equal(rows, np.arange(10))
    assert (counts == 2).all(), counts  # every row twice: none dropped, none repeated early
