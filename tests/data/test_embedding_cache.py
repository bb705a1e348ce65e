"""The caption-embedding cache: keyed by encoder and caption hash, hits and misses counted, never half-written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from seriesforge.data.embedding_store import EmbeddingLookup, EmbeddingStore, caption_hashes
from seriesforge.errors import DataError


def unit_vectors(n: int, dim: int = 4, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_hashes_depend_on_the_text_only():
    a = caption_hashes(["rises", "falls", "rises"])
    assert a.dtype == np.dtype("S16") and a[0] == a[2] and a[0] != a[1]
    assert caption_hashes(["rises"])[0] == a[0]


def test_store_misses_then_hits_and_keeps_one_row_per_caption(tmp_path):
    store = EmbeddingStore(tmp_path, "enc")
    assert store.current() is None
    todo, hashes = store.missing(["a", "b", "a", "c"])
    assert sorted(todo) == ["a", "b", "c"] and len(hashes) == 3  # repeats are embedded once
    store.add(hashes, unit_vectors(3))
    assert store.missing(["a", "b", "c", "a"])[0] == []  # all hits
    todo, new = store.missing(["c", "d"])
    assert todo == ["d"]  # only the miss
    store.add(new, unit_vectors(1, seed=1))
    store.add(new, unit_vectors(1, seed=2))  # the same caption stored again: still one row
    assert len(store.current()) == 4


def test_lookup_returns_the_vector_stored_for_each_caption(tmp_path):
    store = EmbeddingStore(tmp_path, "enc")
    captions = [f"caption {i}" for i in range(50)]
    vectors = unit_vectors(50)
    store.add(caption_hashes(captions), vectors)
    order = np.random.default_rng(1).permutation(50)
    np.testing.assert_array_equal(store.current().embed([captions[i] for i in order]), vectors[order])


def test_unknown_caption_is_a_clear_error(tmp_path):
    store = EmbeddingStore(tmp_path, "enc")
    store.add(caption_hashes(["known"]), unit_vectors(1))
    with pytest.raises(DataError, match=r"no embedding for 1 of 2 captions \(first: 'never seen'\)"):
        store.current().embed(["known", "never seen"])


def test_encoders_do_not_share_a_store_and_widths_are_checked(tmp_path):
    a, b = EmbeddingStore(tmp_path, "enc-a"), EmbeddingStore(tmp_path, "enc-b")
    a.add(caption_hashes(["x"]), unit_vectors(1))
    assert b.current() is None and b.missing(["x"])[0] == ["x"]
    with pytest.raises(DataError, match="stored width 4, new embeddings 8"):
        a.add(caption_hashes(["y"]), unit_vectors(1, dim=8))


def test_versions_flip_atomically_and_old_ones_are_pruned(tmp_path):
    store = EmbeddingStore(tmp_path, "enc")
    firsts = []
    for i in range(4):
        firsts.append(store.add(caption_hashes([f"c{i}"]), unit_vectors(1, seed=i)).path.name)
    versions = sorted(p.name for p in store.root.glob("v-*"))
    assert versions == sorted(firsts[-2:])  # the live one and the one before it (a run may still read it)
    assert (store.root / "CURRENT").read_text() == firsts[-1]
    assert json.loads((store.root / firsts[-1] / "meta.json").read_text())["count"] == 4
    assert not list(store.root.glob(".tmp-*"))


def test_a_failed_write_leaves_the_live_version_alone(tmp_path, monkeypatch):
    store = EmbeddingStore(tmp_path, "enc")
    live = store.add(caption_hashes(["a"]), unit_vectors(1)).path.name

    def broken_save(path, array):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        store.add(caption_hashes(["b"]), unit_vectors(1))
    monkeypatch.undo()
    assert (store.root / "CURRENT").read_text() == live and len(store.current()) == 1
    assert not list(store.root.glob(".tmp-*"))


def test_incomplete_version_names_itself(tmp_path):
    (tmp_path / "v-x").mkdir()
    with pytest.raises(DataError, match="v-x is incomplete"):
        EmbeddingLookup(tmp_path / "v-x")


# ---- the embedding pass on Ray, with the real shipped encoder ---------------------------------------------------


@pytest.mark.slow
def test_fill_store_embeds_only_missing_distinct_captions(ray_local, tmp_path):
    from seriesforge.data.embedding_pass import fill_store
    from seriesforge.nn.text_encoder import load_encoder

    store = EmbeddingStore(tmp_path, "all-MiniLM-L6-v2")
    first = [f"rises by {i} then falls" for i in range(30)] * 2  # 60 rows, 30 distinct captions
    report = fill_store(first, store, "minilm", num_actors=1, flush_every=8, progress=False)
    assert (report.distinct, report.embedded) == (30, 30)
    again = fill_store(first, store, "minilm", num_actors=1, progress=False)
    assert (again.distinct, again.embedded) == (30, 0)  # every caption a cache hit
    more = fill_store(first + ["a brand new caption"], store, "minilm", num_actors=1, progress=False)
    assert more.embedded == 1 and len(more.lookup) == 31
    direct = load_encoder("minilm").encode(first[:5] + ["a brand new caption"])
    np.testing.assert_allclose(more.lookup.embed(first[:5] + ["a brand new caption"]), direct, atol=1e-5)


@pytest.mark.slow
def test_training_data_uses_the_cache_when_present(ray_local, tmp_path):
    from seriesforge.config import DataConfig
    from seriesforge.data.pipeline import prepare_training_data
    from seriesforge.protocols import DataNeeds

    corpus = tmp_path / "c"
    corpus.mkdir()
    with open(corpus / "part.jsonl", "w") as fh:
        for i in range(12):
            fh.write(json.dumps({"id": f"r{i}", "series": [float(t % (i + 2)) for t in range(24)],
                                 "caption": f"pattern {i % 4}"}) + "\n")
    cfg = DataConfig(spec=f"captions:{corpus}", lengths=[24])
    needs = DataNeeds(text_encoder="minilm")
    data = prepare_training_data(cfg, needs, fallback_cache=tmp_path / "fallback", progress=False)
    assert (data.embeddings.distinct, data.embeddings.embedded) == (4, 4)
    assert data.fingerprint.endswith("-all-MiniLM-L6-v2")
    again = prepare_training_data(cfg, needs, fallback_cache=tmp_path / "fallback", progress=False)
    assert again.embeddings.embedded == 0 and "4 from the cache" in again.describe()
    assert Path(again.embeddings.lookup.path).is_relative_to(corpus / "_seriesforge_cache" / "embeddings")
