"""Deterministic synthetic stand-in for the TSFragment-600K caption-series corpus (T2S paper).

The real corpus cannot be downloaded here, so this module fabricates one with the same layout
and the same caption levels, and captions that are *true by construction*:

1. Each fragment draws a shape family (``DOMAINS``) and a handful of parameters (direction,
   event index, cycle count, ...).  The parameters are recorded in ``Fragment.facts``.
2. The shape is synthesised in unit scale with *clipped* Gaussian noise (|e| <= 2.5 sd), and
   amplitudes are chosen with margins over that bound, so the claims the captions make (a spike is
   the largest deviation from the median, a rising trend ends above its start, k cycles give the
   dominant FFT bin k, ...) hold for every fragment, not just on average.  Event indices are
   drawn inside a chosen third and kept away from the first/last 10 %, so position words
   ("near the start" = first third, "in the middle", "near the end" = last third) are exact.
3. A per-source positive affine map (offset, scale) gives realistic magnitudes (electricity in the
   hundreds, exchange rates around 1.x; the offset is raised where needed to keep values positive);
   positive scales preserve every shape claim.  Values are rounded to the source's precision
   (so ``OT`` prints like real data) and stored as float32.
4. ``captions_text`` phrases 1-5 captions over the point / fragment / instance levels; point
   captions read their numbers off the final rounded series.

Determinism and scale: fragments come in fixed chunks of ``_CHUNK``, each seeded from
``(seed, chunk_index)`` alone, so output never depends on ``n_pairs`` (a smaller corpus is a prefix
of a larger one) and only one chunk plus one shard buffer is ever in memory.  Writers stream to
temporary names and rename when a file is complete, and ``corpus.json`` is written last: its
presence marks a finished corpus.  Pure numpy/pyarrow/stdlib (no torch, no ray).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seriesforge.data.sources import captions_text as ct
from seriesforge.errors import ConfigError
from seriesforge.files import write_text_atomically

DEFAULT_LENGTHS = (24, 48, 96)
SOURCES = ("ETTh1", "ETTh1s", "ETTm1", "airquality", "electricity", "exchangerate", "traffic")
DOMAINS = ("trend", "seasonality", "level_shift", "spike", "regime_change", "noise", "random_walk",
           "piecewise_trend")
LEVELS = ct.LEVELS
TSFRAGMENT_COLUMNS = ("SampleID", "SampleNumID", "TimeInterval", "Text", "TextEmbedding", "OT")
PARQUET_SCHEMA = pa.schema([("id", pa.string()), ("series", pa.list_(pa.float32())), ("length", pa.int32()),
                            ("caption", pa.string()), ("domain", pa.string()), ("level", pa.string())])
EMBEDDING_NOTE = ("TextEmbedding is NOT an OpenAI embedding: it is a deterministic signed feature-hashing "
                  "(blake2b, 4 slots per token) bag-of-words projection of the caption into 128 dims, unit-normalised.")

_CHUNK = 1024  # fragments per RNG chunk; fixed so the fragment stream is independent of n_pairs
_CLIP = 2.5    # noise is clipped at +-2.5 sd: the amplitude margins below rely on this bound
_PROGRESS_EVERY = 8192

# source -> (first timestamp, minutes per step, offset range, scale range, decimals); magnitudes
# mimic the real datasets (oil temperature in C, PM2.5 in ug/m3, load in kW, occupancy rate).
_SPECS = {
    "ETTh1": (datetime(2016, 7, 1), 60, (5.0, 35.0), (1.0, 4.0), 3),
    "ETTh1s": (datetime(2016, 7, 1), 60, (5.0, 35.0), (1.0, 4.0), 3),
    "ETTm1": (datetime(2016, 7, 1), 15, (5.0, 35.0), (1.0, 4.0), 3),
    "airquality": (datetime(2013, 3, 1), 60, (30.0, 150.0), (8.0, 30.0), 1),
    "electricity": (datetime(2012, 1, 1), 60, (200.0, 900.0), (30.0, 150.0), 1),
    "exchangerate": (datetime(1990, 1, 1), 1440, (0.6, 1.6), (0.01, 0.05), 4),
    "traffic": (datetime(2015, 1, 1), 60, (0.03, 0.09), (0.004, 0.015), 4),
}


@dataclass(frozen=True, eq=False)  # eq=False: the generated __eq__/__hash__ cannot compare ndarrays
class Fragment:
    """One synthetic window with its captions; ``facts`` holds the generating parameters."""

    id: str
    source: str
    sample_id: int
    series: np.ndarray  # float32, shape (L,), read-only
    captions: tuple[tuple[str, str], ...]  # (level, text)
    facts: dict = dataclasses.field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.series.shape[0])

    @property
    def domain(self) -> str:
        return self.facts["domain"]


# -- argument checks (ConfigError is a ValueError) --------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_gen(n_pairs, seed, lengths) -> tuple[int, int, tuple[int, ...]]:
    if not _is_int(n_pairs) or n_pairs <= 0:
        raise ConfigError(f"n_pairs must be a positive integer, got {n_pairs!r}")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    lens = tuple(lengths) if isinstance(lengths, (list, tuple, range, np.ndarray)) else ()
    if not lens or not all(_is_int(v) for v in lens):
        raise ConfigError(f"lengths must be a non-empty sequence of integers, got {lengths!r}")
    if min(lens) < 8:
        raise ConfigError(f"lengths must all be >= 8 (shapes need room for thirds and cycles), got {lens}")
    if len(set(lens)) != len(lens):
        raise ConfigError(f"lengths must not repeat a value, got {lens}")
    return int(n_pairs), int(seed), tuple(int(v) for v in lens)


def _check_out(out_dir) -> Path:
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir {str(out)!r} exists and is not a directory")
    if (out / "corpus.json").exists():
        raise ConfigError(f"out_dir {str(out)!r} already holds a finished corpus (corpus.json); "
                          "choose a new directory or delete it first")
    out.mkdir(parents=True, exist_ok=True)
    return out


# -- shapes (unit scale) ----------------------------------------------------------------------

def _pick_index(r, L: int, lo: int, hi: int) -> int:
    """Index in [lo, hi] inside a random third of the series (the whole range if they miss)."""
    t = int(r() * 3)
    a, b = max(lo, -(-t * L // 3)), min(hi, -(-(t + 1) * L // 3) - 1)  # third t = ceil(tL/3)..
    if a > b:
        a, b = lo, hi
    return a + int(r() * (b - a + 1))


def _trend(r, e, L, i):
    up, accel = (1 if r() < 0.5 else -1), r() < 0.4
    amp, sd = 2.0 + 2.0 * r(), 0.08 + 0.17 * r()
    t = i / (L - 1)  # first/last-10 % gap >= 0.8 * amp >= 1.6 > 5 * sd (the clipped-noise bound)
    z = up * amp * (t ** (2.0 + r()) if accel else t) + sd * e
    return z, {"direction": "up" if up > 0 else "down", "style": "accelerating" if accel else "steady"}


def _seasonality(r, e, L, i):
    k = 2 + int(r() * (max(2, L // 6) - 1))  # period >= 6 steps
    z = np.sin(2 * np.pi * k * i / L + 2 * np.pi * r())  # integer cycles: all energy in FFT bin k
    if 4 * k < L:  # a weak harmonic for realism; bin 2k stays below bin k
        z = z + 0.3 * r() * np.sin(4 * np.pi * k * i / L + 2 * np.pi * r())
    return z + (0.05 + 0.2 * r()) * e, {"cycles": k}


def _level_shift(r, e, L, i):
    m = max(2, math.ceil(0.15 * L))
    s, up = _pick_index(r, L, m, L - m), (1 if r() < 0.5 else -1)
    z = up * (1.5 + 1.5 * r()) * (i >= s) + (0.08 + 0.2 * r()) * e
    return z, {"direction": "up" if up > 0 else "down", "shift_index": s, "position": ct.position_word(s, L)}


def _spike(r, e, L, i):
    w = math.ceil(0.1 * L)  # keep the spike out of the first/last 10 % used to judge a drift
    s = _pick_index(r, L, w, L - 1 - w)
    base = ("flat", "flat", "rising", "falling")[int(r() * 4)]
    sign, h, sd = (1 if r() < 0.75 else -1), 3.0 + 2.0 * r(), 0.05 + 0.1 * r()
    z = sd * e
    if base != "flat":  # drift amplitude <= 1.2 < h - 2 * 2.5 * sd: the spike stays the extreme
        z = z + (1 if base == "rising" else -1) * (0.8 + 0.4 * r()) * i / (L - 1)
    z[s] += sign * h
    return z, {"spike_index": s, "spike_sign": sign, "baseline": base, "position": ct.position_word(s, L)}


def _regime_change(r, e, L, i):
    m = max(4, math.ceil(0.2 * L))
    c = _pick_index(r, L, m, L - m)
    calm, vol, calm_first = 0.03 + 0.07 * r(), 0.8 + 0.7 * r(), r() < 0.5
    # Standardising each segment makes the volatility ratio exact (>= 8), even for short segments.
    a, b = e[:c] - ct.mean(e[:c]), e[c:] - ct.mean(e[c:])
    a, b = a / (ct.sd(a) or 1.0), b / (ct.sd(b) or 1.0)
    z = np.concatenate([a * (calm if calm_first else vol), b * (vol if calm_first else calm)])
    return z, {"change_index": c, "order": "calm_first" if calm_first else "volatile_first",
               "position": ct.position_word(c, L)}


def _noise(r, e, L, i):
    return e.copy(), {}


def _random_walk(r, e, L, i):
    return np.cumsum((0.2 + 0.3 * r()) * e), {}


def _piecewise_trend(r, e, L, i):
    m = max(3, math.ceil(0.15 * L) + 1)
    b, d1 = _pick_index(r, L, m, L - 1 - m), (1 if r() < 0.5 else -1)
    a1, a2 = 1.5 + 1.5 * r(), 1.5 + 1.5 * r()
    z = np.where(i <= b, d1 * a1 * i / b, d1 * a1 - d1 * a2 * (i - b) / (L - 1 - b)) + (0.05 + 0.15 * r()) * e
    ratio = (a2 / (L - 1 - b)) / (a1 / b)  # slope of the second leg over the first
    rates = (("steadily", "sharply") if ratio >= 1.8 else ("sharply", "gradually") if ratio <= 1 / 1.8
             else ("steadily", "steadily"))
    return z, {"break_index": b, "first_direction": "up" if d1 > 0 else "down",
               "second_direction": "down" if d1 > 0 else "up", "first_rate": rates[0],
               "second_rate": rates[1], "slope_ratio": ratio, "position": ct.position_word(b, L)}


_SHAPES = {d: globals()[f"_{d}"] for d in DOMAINS}  # domain name -> its _<domain> builder


def _make_fragment(r, e_row: np.ndarray, lengths: tuple[int, ...], counters: dict) -> Fragment:
    domain = DOMAINS[int(r() * len(DOMAINS))]
    source = SOURCES[int(r() * len(SOURCES))]
    L = lengths[int(r() * len(lengths))]
    k = 1 + int(r() * 5)
    z, facts = _SHAPES[domain](r, e_row[:L], L, np.arange(L, dtype=np.float64))
    _, minutes, (olo, ohi), (slo, shi), dec = _SPECS[source]
    offset, scale = olo + r() * (ohi - olo), slo + r() * (shi - slo)
    offset = max(offset, 0.25 * olo - scale * float(z.min()))  # no negative loads/rates/occupancy
    x = np.round(offset + scale * z, dec)  # positive scale: every shape claim survives
    facts.update(domain=domain, length=L, offset=offset, scale=scale, decimals=dec)
    caps = ct.make_captions(x, facts, ct.source_description(source, r), ct.span_words(L, minutes), dec, k, r)
    series = x.astype(np.float32)
    series.flags.writeable = False
    sid = counters.get((source, L), 0)  # consecutive window starts per (source, length) file
    counters[(source, L)] = sid + 1
    return Fragment(f"{source}_{L}_{sid:07d}", source, sid, series, caps, facts)


def iter_fragments(n_pairs: int, *, seed: int, lengths: Sequence[int] = DEFAULT_LENGTHS) -> Iterator[Fragment]:
    """Yield fragments until exactly ``n_pairs`` captions were produced (the last one is truncated)."""
    n_pairs, seed, lengths = _check_gen(n_pairs, seed, lengths)  # eager: errors at call time
    return _fragments(n_pairs, seed, lengths)


def _fragments(n_pairs: int, seed: int, lengths: tuple[int, ...]) -> Iterator[Fragment]:
    counters: dict = {}
    left, chunk, width = n_pairs, 0, max(lengths)
    while True:
        rng = np.random.default_rng([seed, chunk])
        # Scalar choices use the stdlib Mersenne Twister (random() only, stable across versions):
        # ~20x cheaper per draw than numpy scalars; array noise comes from numpy in one call.
        r = random.Random(int(rng.integers(0, 2 ** 63))).random
        noise = np.clip(rng.standard_normal((_CHUNK, width)), -_CLIP, _CLIP)
        for row in noise:
            frag = _make_fragment(r, row, lengths, counters)
            if len(frag.captions) >= left:
                yield dataclasses.replace(frag, captions=frag.captions[:left])
                return
            left -= len(frag.captions)
            yield frag
        chunk += 1


# -- writers ----------------------------------------------------------------------------------

def _write_json(path: Path, obj: dict) -> None:
    write_text_atomically(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _new_counts() -> dict[str, Counter]:
    return {"length": Counter(), "domain": Counter(), "level": Counter(), "source": Counter(), "fragments": Counter()}


def _count(counts: dict[str, Counter], frag: Fragment) -> int:
    k = len(frag.captions)
    counts["fragments"][frag.facts["domain"]] += 1
    counts["length"][str(frag.length)] += k  # str keys: JSON object keys
    counts["domain"][frag.facts["domain"]] += k
    counts["source"][frag.source] += k
    for level, _ in frag.captions:
        counts["level"][level] += 1
    return k


def _meta(fmt: str, n_pairs: int, seed: int, lengths, counts: dict[str, Counter]) -> dict:
    frags = counts.pop("fragments")  # per domain, kept apart from the per-pair counts
    return {"format": fmt, "generator": __name__, "n_pairs": n_pairs, "seed": seed, "lengths": list(lengths),
            "n_fragments": sum(frags.values()), "fragments_per_domain": dict(sorted(frags.items())),
            "sources": list(SOURCES), "domains": list(DOMAINS), "levels": list(LEVELS),
            "counts": {k: dict(sorted(c.items())) for k, c in counts.items()}}


def write_parquet_corpus(out_dir, n_pairs: int, *, seed: int, lengths: Sequence[int] = DEFAULT_LENGTHS,
                         rows_per_shard: int = 50_000, progress: Callable[[int], None] | None = None) -> dict:
    """Write ``out_dir/part-NNNNN.parquet`` shards in the internal schema plus ``corpus.json``.

    One row per caption-series pair (``PARQUET_SCHEMA``).  An ``out_dir`` without corpus.json is
    treated as an unfinished run of this writer: its ``part-NNNNN.parquet`` files are replaced.
    Returns the corpus.json dict.
    """
    n_pairs, seed, lengths = _check_gen(n_pairs, seed, lengths)
    if not _is_int(rows_per_shard) or rows_per_shard <= 0:
        raise ConfigError(f"rows_per_shard must be a positive integer, got {rows_per_shard!r}")
    out = _check_out(out_dir)
    for p in out.iterdir():  # leftovers of an interrupted run (no corpus.json means unfinished)
        if re.fullmatch(r"\.?part-\d{5}\.parquet(\.tmp)?", p.name):
            p.unlink()
    counts, shards = _new_counts(), []
    cols: dict[str, list] = {"id": [], "series": [], "caption": [], "domain": [], "level": []}
    done = report = 0

    def flush() -> None:
        series = cols["series"]
        lens = np.fromiter(map(len, series), dtype=np.int32, count=len(series))
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
        table = pa.Table.from_arrays(
            [pa.array(cols["id"], pa.string()),
             pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(series))),
             pa.array(lens), pa.array(cols["caption"], pa.string()), pa.array(cols["domain"], pa.string()),
             pa.array(cols["level"], pa.string())], schema=PARQUET_SCHEMA)
        name = f"part-{len(shards):05d}.parquet"
        # zstd + dictionary on the repeated values (a fragment's series repeats once per caption):
        # ~30 % smaller and faster than pyarrow's defaults.
        pq.write_table(table, out / f".{name}.tmp", compression="zstd",
                       use_dictionary=["domain", "level", "series.list.element"])
        os.replace(out / f".{name}.tmp", out / name)
        shards.append({"file": name, "rows": len(series)})
        for v in cols.values():
            v.clear()

    for frag in _fragments(n_pairs, seed, lengths):
        dom = frag.facts["domain"]
        for j, (level, text) in enumerate(frag.captions, 1):
            cols["id"].append(f"{frag.id}-{j}")
            cols["series"].append(frag.series)
            cols["caption"].append(text)
            cols["domain"].append(dom)
            cols["level"].append(level)
            if len(cols["id"]) == rows_per_shard:
                flush()
        done += _count(counts, frag)
        if progress is not None and done >= report:  # throttled: a bar needs no per-row call
            progress(done)
            report = done + _PROGRESS_EVERY
    if cols["id"]:
        flush()
    meta = _meta("seriesforge-parquet", n_pairs, seed, lengths, counts)
    meta.update(rows_per_shard=rows_per_shard, shards=shards,
                schema={f.name: str(f.type).replace("list<item: float>", "list<float32>") for f in PARQUET_SCHEMA})
    _write_json(out / "corpus.json", meta)
    if progress is not None:
        progress(done)
    return meta


def write_tsfragment_corpus(out_dir, n_pairs: int, *, seed: int, lengths: Sequence[int] = DEFAULT_LENGTHS,
                            progress: Callable[[int], None] | None = None) -> dict:
    """Write the published TSFragment-600K layout: ``embedding_cleaned_{source}_{L}.csv`` files.

    Columns are exactly ``TSFRAGMENT_COLUMNS``; ``OT`` is a Python list literal of the L values and
    ``SampleID`` the window start in its (source, L) file.  We have no OpenAI embedding, so
    ``TextEmbedding`` holds a deterministic hashed bag-of-words projection of the caption (128
    floats, unit norm, numpy-repr string; see ``EMBEDDING_NOTE``).  All files are written under
    temporary names and renamed together at the end; corpus.json (format "tsfragment-csv") last.
    """
    n_pairs, seed, lengths = _check_gen(n_pairs, seed, lengths)
    out = _check_out(out_dir)
    names = {(s, L): f"embedding_cleaned_{s}_{L}.csv" for s in SOURCES for L in lengths}
    clash = sorted(n for n in names.values() if (out / n).exists())
    if clash:  # no corpus.json, so these are not ours (e.g. a real download): never clobber them
        raise ConfigError(f"out_dir {str(out)!r} already holds {clash[0]} (and {len(clash) - 1} more) "
                          "without a corpus.json; choose an empty directory")
    counts, rows = _new_counts(), Counter()
    handles = {key: open(out / f".{name}.tmp", "w", newline="", encoding="utf-8") for key, name in names.items()}
    try:
        for h in handles.values():
            h.write(",".join(TSFRAGMENT_COLUMNS) + "\n")
        done = report = 0
        for frag in _fragments(n_pairs, seed, lengths):
            start, minutes, _, _, dec = _SPECS[frag.source]
            L, key = frag.length, (frag.source, frag.length)
            first = start + timedelta(minutes=minutes * frag.sample_id)
            span = f"{first} to {first + timedelta(minutes=minutes * (L - 1))}"
            ot = str(np.round(frag.series.astype(np.float64), dec).tolist())  # float32 -> source decimals
            # Rows are assembled by hand (csv.writer spent ~50 us scanning each 2.5 kB row).  Quoting
            # matches csv.QUOTE_MINIMAL: OT always holds commas; TimeInterval/TextEmbedding never do.
            for j, (level, text) in enumerate(frag.captions, 1):
                cell = '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\r\n') else text
                handles[key].write(f'{frag.sample_id},{j},{span},{cell},{ct.embedding_repr(text)},"{ot}"\n')
            rows[key] += len(frag.captions)
            done += _count(counts, frag)
            if progress is not None and done >= report:
                progress(done)
                report = done + _PROGRESS_EVERY
    finally:
        for h in handles.values():
            h.close()
    for name in names.values():  # only reached when every file is complete
        os.replace(out / f".{name}.tmp", out / name)
    meta = _meta("tsfragment-csv", n_pairs, seed, lengths, counts)
    meta.update(columns=list(TSFRAGMENT_COLUMNS), embedding={"dim": ct.EMBED_DIM, "method": "hashed-bag-of-words",
                                                             "note": EMBEDDING_NOTE},
                files=[{"file": names[k], "source": k[0], "length": k[1], "rows": rows[k]} for k in names])
    _write_json(out / "corpus.json", meta)
    if progress is not None:
        progress(done)
    return meta
