"""Caption-embedding precompute: what training runs before its first step, timed on a corpus.

Training embeds each distinct caption once (the store is keyed by encoder and caption hash, see
`seriesforge.data.embedding_store`), on a Ray Data actor pool of encoders, captions sorted by length so a batch pads
little. This benchmark runs that pass (`embedding_pass.fill_store`) into a fresh store and prints:
  - distinct captions/s: the encoder pool's real throughput;
  - corpus captions/s: corpus rows covered per second (repeated captions cost nothing), the figure that says how
    long a user waits before training starts on this corpus.
`--limit N` embeds only the first N distinct captions (in corpus order) and extrapolates; `--limit 0` (the default)
embeds all of them.

    python benchmarks/embed.py [--corpus bench_data/captions_600000] [--limit 0] [--actors 2] [--encoder minilm]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def corpus_captions(corpus: Path) -> list[str]:
    import pyarrow.parquet as pq

    shards = sorted(corpus.glob("*.parquet"))
    if not shards:
        raise SystemExit(f"{corpus}: no parquet shards (write the stand-in with `seriesforge data captions make`)")
    captions: list[str] = []
    for shard in shards:
        captions += pq.read_table(shard, columns=["caption"]).column("caption").to_pylist()
    return captions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("bench_data/captions_600000"),
                        help="caption corpus directory of parquet shards (benchmarks/ingest.py writes the 600k stand-in)")
    parser.add_argument("--limit", type=int, default=0, help="distinct captions to embed (0: all)")
    parser.add_argument("--actors", type=int, default=2, help="encoder actors (default 2)")
    parser.add_argument("--encoder", default="minilm", help="minilm or a local Hugging Face model path")
    args = parser.parse_args()

    from seriesforge.data.embedding_pass import fill_store
    from seriesforge.data.embedding_store import EmbeddingStore
    from seriesforge.runtime import init_ray

    captions = corpus_captions(args.corpus)
    distinct = list(dict.fromkeys(captions))
    todo = distinct[:args.limit] if args.limit else distinct
    init_ray(None, min_cpus=args.actors + 1)
    with tempfile.TemporaryDirectory() as root:
        report = fill_store(todo, EmbeddingStore(Path(root), args.encoder), args.encoder, args.actors)
    per_distinct = report.embedded / report.seconds
    full_seconds = len(distinct) / per_distinct
    print(json.dumps({
        "benchmark": "embed", "device": f"CPU, {os.cpu_count()} cores", "encoder": args.encoder,
        "actors": args.actors, "corpus_rows": len(captions), "distinct_captions": len(distinct),
        "embedded": report.embedded, "seconds": round(report.seconds, 1),
        "distinct_captions_per_s": round(per_distinct, 1),
        "corpus_captions_per_s": round(len(captions) / full_seconds, 1),
        "full_corpus_minutes": round(full_seconds / 60, 1),
        "extrapolated": bool(args.limit and args.limit < len(distinct)),
        "note": "seconds include actor start-up and model loading"}, indent=2), flush=True)


if __name__ == "__main__":
    main()
