"""Tests for the synthetic TSFragment stand-in (seriesforge.data.sources.captions_synth).

Truthfulness is checked against the generated *series* (not only the recorded facts) on a sample
of a few thousand fragments; layout, determinism and argument checks on small corpora.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seriesforge.data.sources import captions_synth as cs
from seriesforge.data.sources.captions_text import POSITIONS

# Rising / falling vocabulary of the fragment- and instance-level phrasings (verbs and nouns).
RISE = re.compile(r"\b(rises|climbs|increases|grows|rise|rebound|upward)\b", re.IGNORECASE)
FALL = re.compile(r"\b(falls|drops|declines|decreases|decline|drop|downward)\b", re.IGNORECASE)
WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
CYCLES = re.compile(r"\b(\d+|" + "|".join(WORDS) + r") (?:full |regular )?(?:cycles|times)\b")


@pytest.fixture(scope="module")
def frags() -> list[cs.Fragment]:
    return list(cs.iter_fragments(15_000, seed=7))


def _by(frags, domain):
    out = [f for f in frags if f.facts["domain"] == domain]
    assert len(out) >= 200, f"sample has too few {domain} fragments"
    return out


def _edges(x: np.ndarray) -> tuple[float, float]:
    w = max(1, math.ceil(0.1 * len(x)))  # means of the first and last 10 %
    return float(x[:w].mean()), float(x[-w:].mean())


def _position(caption: str) -> str | None:
    hits = [p for p in POSITIONS if p in caption]
    assert len(hits) <= 1, caption
    return hits[0] if hits else None


def _third(index: int, length: int) -> str:
    return POSITIONS[3 * index // length]


# -- truthfulness ------------------------------------------------------------------------------

def test_trend_direction_words_match_series(frags):
    seen = {"up": 0, "down": 0}
    for f in _by(frags, "trend"):
        x = f.series.astype(np.float64)
        first, last = _edges(x)
        span = float(x.max() - x.min())
        for level, text in f.captions:
            rising, falling = bool(RISE.search(text)), bool(FALL.search(text))
            assert not (rising and falling), text
            if rising:
                assert last - first > 0.25 * span, (text, first, last, span)
                seen["up"] += 1
            if falling:
                assert first - last > 0.25 * span, (text, first, last, span)
                seen["down"] += 1
            if level == "fragment":
                assert rising or falling, text
    assert min(seen.values()) > 100


def test_spike_position_and_step_match_series(frags):
    for f in _by(frags, "spike"):
        x = f.series.astype(np.float64)
        L = len(x)
        peak = int(np.argmax(np.abs(x - np.median(x))))
        assert peak == f.facts["spike_index"]
        for level, text in f.captions:
            pos = _position(text)
            if level != "point":
                assert pos == _third(peak, L), (text, peak, L)
            m = re.search(r"step (\d+) of (\d+)", text)
            if m:
                assert (int(m.group(1)), int(m.group(2))) == (peak + 1, L), text


def test_spike_positions_cover_all_thirds(frags):
    positions = {f.facts["position"] for f in _by(frags, "spike")}
    assert positions == set(POSITIONS)


def test_seasonality_cycle_count_is_dominant_fft_bin(frags):
    checked = 0
    for f in _by(frags, "seasonality"):
        x = f.series.astype(np.float64)
        spec = np.abs(np.fft.rfft(x - x.mean()))
        dominant = int(np.argmax(spec[1:])) + 1
        assert dominant == f.facts["cycles"]
        for _, text in f.captions:
            m = CYCLES.search(text)
            if m:
                k = WORDS.get(m.group(1)) or int(m.group(1))
                assert k == dominant, (text, dominant)
                checked += 1
    assert checked > 200


def test_level_shift_direction_and_position(frags):
    for f in _by(frags, "level_shift"):
        x = f.series.astype(np.float64)
        L, s = len(x), f.facts["shift_index"]
        half = (x[L // 2:].mean() - x[: L // 2].mean())
        split = (x[s:].mean() - x[:s].mean())
        up = f.facts["direction"] == "up"
        assert (half > 0 and split > 0) if up else (half < 0 and split < 0)
        for level, text in f.captions:
            if level != "point":
                assert ("higher" in text or "upward" in text or "steps up" in text) == up, text
                assert _position(text) == _third(s, L), text


def test_regime_change_volatility_order(frags):
    for f in _by(frags, "regime_change"):
        x = f.series.astype(np.float64)
        c = f.facts["change_index"]
        before, after = x[:c].std(), x[c:].std()
        calm_first = f.facts["order"] == "calm_first"
        assert (after > 3 * before) if calm_first else (before > 3 * after)
        for level, text in f.captions:
            if level != "point":
                assert _position(text) == _third(c, len(x)), text


def test_piecewise_trend_legs_match_series(frags):
    for f in _by(frags, "piecewise_trend"):
        x = f.series.astype(np.float64)
        L, b = len(x), f.facts["break_index"]
        first, last = _edges(x)
        turn = float(x[b - 1: b + 2].mean())
        up = f.facts["first_direction"] == "up"
        assert (turn > first and turn > last) if up else (turn < first and turn < last)
        for level, text in f.captions:
            if level != "point":
                assert _position(text) == _third(b, L), text
                r, fa = RISE.search(text), FALL.search(text)
                assert r and fa and ((r.start() < fa.start()) == up), text


def test_point_captions_quote_series_values(frags):
    """Every 'Starts at V' / 'ends at V' quotes the actual first / last value."""
    checked = 0
    for f in frags:
        x = f.series.astype(np.float64)
        d = f.facts["decimals"]
        for level, text in f.captions:
            if level != "point":
                continue
            m = re.search(r"Starts at (-?[\d.]+)", text)
            if m:
                assert float(m.group(1)) == pytest.approx(round(float(x[0]), d), abs=10 ** -d), text
                checked += 1
            for k, L in re.findall(r"step (\d+) of (\d+)", text):
                assert 1 <= int(k) <= int(L) == len(x), text
    assert checked > 100


def test_fragment_structure(frags):
    levels, lengths, sources = set(), set(), set()
    ids = set()
    for f in frags:
        assert 1 <= len(f.captions) <= 5
        texts = [t for _, t in f.captions]
        assert len(set(texts)) == len(texts), texts
        assert f.series.dtype == np.float32 and f.series.shape == (f.length,)
        assert np.isfinite(f.series).all()
        assert f.id not in ids
        ids.add(f.id)
        levels.update(lv for lv, _ in f.captions)
        lengths.add(f.length)
        sources.add(f.source)
    assert levels == {"point", "fragment", "instance"}
    assert lengths == set(cs.DEFAULT_LENGTHS)
    assert sources == set(cs.SOURCES)
    assert {f.facts["domain"] for f in frags} == set(cs.DOMAINS)


def test_source_scales_look_real(frags):
    med = {s: float(np.median([f.series.mean() for f in frags if f.source == s])) for s in cs.SOURCES}
    assert 100 < med["electricity"] < 1500
    assert 0.5 < med["exchangerate"] < 2.0
    assert 0 < med["traffic"] < 0.2


# -- counts, determinism, layout ----------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 5, 7, 1001])
def test_iter_fragments_yields_exactly_n_pairs(n):
    assert sum(len(f.captions) for f in cs.iter_fragments(n, seed=3)) == n


def test_smaller_corpus_is_a_prefix():
    small = [c for f in cs.iter_fragments(500, seed=11) for c in f.captions]
    large = [c for f in cs.iter_fragments(1500, seed=11) for c in f.captions]
    assert large[:500] == small


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_parquet_determinism_and_counts(tmp_path):
    calls = []
    meta = cs.write_parquet_corpus(tmp_path / "a", 3000, seed=5, rows_per_shard=1000, progress=calls.append)
    cs.write_parquet_corpus(tmp_path / "b", 3000, seed=5, rows_per_shard=1000)
    cs.write_parquet_corpus(tmp_path / "c", 3000, seed=6, rows_per_shard=1000)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert a["part-00000.parquet"] != c["part-00000.parquet"]
    assert sorted(a) == ["corpus.json", "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert calls[-1] == 3000

    on_disk = json.loads(a["corpus.json"])
    assert on_disk == json.loads(json.dumps(meta))
    assert on_disk["format"] == "seriesforge-parquet" and on_disk["n_pairs"] == 3000
    assert on_disk["schema"]["series"] == "list<float32>"
    assert sum(s["rows"] for s in on_disk["shards"]) == 3000
    for key in ("length", "domain", "level"):
        assert sum(on_disk["counts"][key].values()) == 3000
    assert set(on_disk["counts"]["length"]) == {"24", "48", "96"}

    # corpus.json sits beside the shards, so read the shard list it names, not the directory.
    table = pa.concat_tables([pq.read_table(tmp_path / "a" / sh["file"]) for sh in on_disk["shards"]])
    assert table.num_rows == 3000
    assert table.schema.names == ["id", "series", "length", "caption", "domain", "level"]
    assert str(table.schema.field("series").type.value_type) == "float"
    assert str(table.schema.field("length").type) == "int32"
    cols = table.to_pydict()
    assert len(set(cols["id"])) == 3000
    assert all(len(s) == n for s, n in zip(cols["series"], cols["length"]))
    assert set(cols["level"]) == {"point", "fragment", "instance"}
    assert set(cols["length"]) == {24, 48, 96}
    assert set(cols["domain"]) <= set(cs.DOMAINS)


def test_custom_lengths(tmp_path):
    meta = cs.write_parquet_corpus(tmp_path / "x", 400, seed=1, lengths=(8, 13, 200))
    assert set(meta["counts"]["length"]) == {"8", "13", "200"}
    frags = list(cs.iter_fragments(3000, seed=2, lengths=(8, 13)))
    for f in frags:  # the tightest lengths still honour the thirds and the spike claim
        if f.facts["domain"] == "spike":
            x = f.series.astype(np.float64)
            assert int(np.argmax(np.abs(x - np.median(x)))) == f.facts["spike_index"]


def test_tsfragment_layout(tmp_path):
    out = tmp_path / "ts"
    meta = cs.write_tsfragment_corpus(out, 1500, seed=9)
    names = sorted(p.name for p in out.iterdir())
    expected = sorted([f"embedding_cleaned_{s}_{L}.csv" for s in cs.SOURCES for L in (24, 48, 96)] + ["corpus.json"])
    assert names == expected  # and no temporary files left behind
    assert meta["format"] == "tsfragment-csv" and "OpenAI" in meta["embedding"]["note"]
    total = 0
    for name in names[:-1] if names[-1] == "corpus.json" else names:
        if not name.endswith(".csv"):
            continue
        L = int(name.rsplit("_", 1)[1][:-4])
        with open(out / name, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        assert tuple(rows[0]) == ("SampleID", "SampleNumID", "TimeInterval", "Text", "TextEmbedding", "OT")
        again = io.StringIO()  # the hand-assembled rows are exactly what csv.writer would produce
        csv.writer(again, lineterminator="\n").writerows(rows)
        assert again.getvalue() == (out / name).read_text(encoding="utf-8")
        by_sample: dict[int, list[int]] = {}
        for sid, num, interval, text, emb, ot in rows[1:]:
            values = ast.literal_eval(ot)
            assert isinstance(values, list) and len(values) == L and all(isinstance(v, float) for v in values)
            assert emb.startswith("[") and emb.endswith("]")
            vec = np.array(emb[1:-1].split(), dtype=np.float64)
            assert vec.shape == (128,) and abs(np.linalg.norm(vec) - 1) < 1e-6
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d to \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", interval)
            assert text
            by_sample.setdefault(int(sid), []).append(int(num))
        for nums in by_sample.values():
            assert nums == list(range(1, len(nums) + 1)) and len(nums) <= 5
        total += len(rows) - 1
    assert total == 1500 == meta["n_pairs"]
    # Same seed, same fragments: the CSV's series and captions agree with the parquet writer.
    first = next(cs.iter_fragments(5, seed=9))
    with open(out / f"embedding_cleaned_{first.source}_{first.length}.csv", newline="", encoding="utf-8") as fh:
        row = list(csv.reader(fh))[1]
    assert row[3] == first.captions[0][1]
    assert np.allclose(ast.literal_eval(row[5]), first.series, rtol=1e-6)


# -- argument checks ---------------------------------------------------------------------------

@pytest.mark.parametrize("writer", [cs.write_parquet_corpus, cs.write_tsfragment_corpus])
def test_writers_refuse_bad_arguments(tmp_path, writer):
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n_pairs"):
            writer(tmp_path / "o", bad, seed=0)
    for lengths in ((4, 24), (), (24, 24), ("24",)):
        with pytest.raises(ValueError, match="lengths"):
            writer(tmp_path / "o", 10, seed=0, lengths=lengths)
    with pytest.raises(ValueError, match="seed"):
        writer(tmp_path / "o", 10, seed=-1)
    done = tmp_path / "done"
    writer(done, 10, seed=0)
    before = _files(done)
    with pytest.raises(ValueError, match="corpus.json"):
        writer(done, 10, seed=0)
    assert _files(done) == before


def test_iter_fragments_and_shards_refuse_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_pairs"):
        cs.iter_fragments(0, seed=1)
    with pytest.raises(ValueError, match="lengths"):
        cs.iter_fragments(10, seed=1, lengths=(7,))
    with pytest.raises(ValueError, match="rows_per_shard"):
        cs.write_parquet_corpus(tmp_path / "o", 10, seed=0, rows_per_shard=0)


def test_no_heavy_imports():
    code = ("import sys, seriesforge.data.sources.captions_synth; "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad")
    root = str(Path(cs.__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_unfinished_runs_are_replaced_but_foreign_csvs_are_not(tmp_path):
    stale = tmp_path / "pq"
    stale.mkdir()
    (stale / "part-00007.parquet").write_bytes(b"left by a killed run")
    (stale / ".part-00000.parquet.tmp").write_bytes(b"half written")
    (stale / "notes.txt").write_text("keep me")
    cs.write_parquet_corpus(stale, 50, seed=0)
    assert sorted(p.name for p in stale.iterdir()) == ["corpus.json", "notes.txt", "part-00000.parquet"]

    foreign = tmp_path / "ts"
    foreign.mkdir()
    (foreign / "embedding_cleaned_ETTh1_24.csv").write_text("real data")
    with pytest.raises(ValueError, match="embedding_cleaned_ETTh1_24.csv"):
        cs.write_tsfragment_corpus(foreign, 50, seed=0)
    assert (foreign / "embedding_cleaned_ETTh1_24.csv").read_text() == "real data"
