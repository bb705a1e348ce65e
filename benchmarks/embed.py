"""Caption-embedding precompute: captions/s of the training pipeline's encoder pass (Ray Data actor pool).

Runs exactly what training runs before its first step (`read_corpus` -> `embed_captions`, all-MiniLM-L6-v2 by
default) over the first `--limit` rows of a corpus and prints captions/s, with the time the whole corpus would
take at that rate. A full pass over the 600k stand-in takes over an hour on 2 CPU cores, hence `--limit`;
`--limit 0` embeds every row.

    python benchmarks/embed.py [--corpus bench_data/captions_600000] [--limit 20000] [--actors 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("bench_data/captions_600000"),
                        help="caption corpus directory (benchmarks/ingest.py writes the 600k stand-in there)")
    parser.add_argument("--limit", type=int, default=20000, help="rows to embed (0: all)")
    parser.add_argument("--actors", type=int, default=2, help="encoder actors (default 2)")
    parser.add_argument("--encoder", default="minilm", help="minilm or a local Hugging Face model path")
    args = parser.parse_args()

    from seriesforge.config import DataConfig
    from seriesforge.data.pipeline import embed_captions, read_corpus
    from seriesforge.runtime import init_ray

    init_ray(None, min_cpus=args.actors + 1)
    ds, _ = read_corpus(DataConfig(spec=f"captions:{args.corpus}"))
    total = ds.count()
    if args.limit:
        ds = ds.limit(args.limit)
    tic = time.perf_counter()
    rows = 0
    for batch in embed_captions(ds, args.encoder, args.actors).iter_batches(batch_size=1024, batch_format="numpy"):
        rows += len(batch["caption_embedding"])
    seconds = time.perf_counter() - tic
    rate = rows / seconds
    print(json.dumps({"benchmark": "embed", "device": f"CPU, {os.cpu_count()} cores", "encoder": args.encoder,
                      "actors": args.actors, "corpus_rows": total, "rows_embedded": rows,
                      "seconds": round(seconds, 1), "captions_per_s": round(rate, 1),
                      "full_corpus_hours_at_this_rate": round(total / rate / 3600, 2),
                      "note": "seconds include actor start-up and model loading"}, indent=2))


if __name__ == "__main__":
    main()
