"""Caption-corpus ingest: a raw single-process pyarrow pass vs Ray Data streaming to 2 Ray Train workers.

(a) raw:      pyarrow reads every parquet shard and turns each row's series into a float32 numpy array.
(b) platform: the training path's reader (`data.pipeline.read_corpus`: read, validate every row, scale) as a
              Ray Dataset handed to a TorchTrainer with 2 CPU workers; each worker streams its shard
              (`get_dataset_shard`) and stacks each batch's rows into torch tensors of one length.
Both count every row. Prints rows/s for both, the ratio b/a, and the peak memory (PSS) summed over this process
and all its descendants (the Ray processes included), sampled every 0.2 s. (b)'s rate is timed inside the
workers, from the first batch request to the last batch; the end-to-end time with Ray Train's start-up is
printed beside it. Runs at 600k and 60k rows.
Targets: b/a >= 0.5; peak memory <= 4 GB and no larger at 600k than at 60k (streaming, not materialising).

    python benchmarks/ingest.py [--sizes 600000,60000] [--corpora bench_data] [--batch 1024]

The stand-in corpora are written once under --corpora (`seriesforge data captions make`, deterministic).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil


class PeakMemory:
    """Peak of the summed PSS of this process and its descendants, sampled on a thread.

    PSS, not RSS: Ray's workers map the same object-store and library pages, and summing RSS would count each
    shared page once per process (6 GB "used" for a 6 000-row corpus).
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try:
                    total += p.memory_full_info().pss
                except psutil.Error:
                    pass  # a process that ended between listing and reading
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)


def ensure_corpus(root: Path, n: int) -> Path:
    from seriesforge.data.sources.captions_synth import write_parquet_corpus

    out = root / f"captions_{n}"
    if not (out / "corpus.json").exists():
        print(f"writing a {n}-pair stand-in corpus to {out} ...", flush=True)
        write_parquet_corpus(out, n, seed=0)
    return out


def raw_pass(corpus: Path, batch: int) -> int:
    import pyarrow.parquet as pq

    rows = 0
    for shard in sorted(corpus.glob("*.parquet")):
        for record_batch in pq.ParquetFile(shard).iter_batches(batch_size=batch, columns=["series", "caption"]):
            series = record_batch.column("series")
            for i in range(len(series)):
                _ = np.asarray(series[i].values, dtype=np.float32)  # (L,)
            rows += len(series)
    return rows


def stream_worker(config: dict) -> None:
    import pyarrow as pa
    import ray.train
    import torch

    from seriesforge.data.pipeline import columns_as_numpy

    rows, tic, first = 0, time.perf_counter(), None
    # All datasets stream at once, a batch from each in turn, as training's length buckets do; batches arrive
    # as Arrow and become tensors the way training's `columns_as_numpy` makes them.
    live = [iter(ray.train.get_dataset_shard(key).iter_batches(batch_size=config["batch"], batch_format="pyarrow"))
            for key in config["keys"]]
    while live:
        for stream in list(live):
            batch = next(stream, None)
            if batch is None:
                live.remove(stream)
                continue
            first = first or time.perf_counter() - tic
            lengths = batch.column("length").to_numpy()
            for length in np.unique(lengths):  # one length per table bucket; several in the unbucketed corpus
                part = batch if len(np.unique(lengths)) == 1 else batch.filter(pa.array(lengths == length))
                rows += torch.from_numpy(columns_as_numpy(part, ("series",))["series"]).shape[0]  # (B_L, L)
    seconds = time.perf_counter() - tic
    rank = ray.train.get_context().get_world_rank()
    # Every rank's files land in the one checkpoint directory of this report (Ray Train 2.60 merges them).
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, f"rows_rank{rank}.json").write_text(json.dumps({"rows": rows, "seconds": seconds, "first": first}))
        ray.train.report({"rows": rows}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def training_table(corpus: Path) -> tuple[dict, dict, float]:
    """The training path's one-off pass (read, validate every row, scale, write the length-partitioned table
    beside the corpus), timed from a cold cache; returns its per-length Datasets and the seconds it took."""
    import shutil

    from seriesforge.config import DataConfig
    from seriesforge.data.pipeline import prepare_training_data
    from seriesforge.protocols import DataNeeds

    lengths = sorted(int(n) for n in json.loads((corpus / "corpus.json").read_text())["counts"]["length"])
    shutil.rmtree(corpus / "_seriesforge_cache", ignore_errors=True)
    tic = time.perf_counter()
    data = prepare_training_data(DataConfig(spec=f"captions:{corpus}", lengths=lengths), DataNeeds(),
                                 fallback_cache=corpus / "_fallback_cache", progress=False)
    return data.datasets, data.rows_per_length, time.perf_counter() - tic


def ray_pass(datasets: dict, batch: int, storage: str) -> tuple[int, float, float]:
    """Rows seen by both workers together (each its own shard: streaming_split underneath), the streaming
    time (from a worker's first batch request to its last batch, the slower worker's) and, within it, the wait
    for the first batch (the pipeline's start-up)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(stream_worker, train_loop_config={"batch": batch, "keys": sorted(datasets)},
                           datasets=datasets, scaling_config=ray.train.ScalingConfig(num_workers=2),
                           run_config=ray.train.RunConfig(storage_path=storage, name="ingest"))
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        per_rank = [json.loads(p.read_text()) for p in sorted(Path(d).glob("rows_rank*.json"))]
    if len(per_rank) != 2:
        raise RuntimeError(f"expected row counts from 2 workers, got {len(per_rank)}")
    return sum(r["rows"] for r in per_rank), max(r["seconds"] for r in per_rank), max(r["first"] for r in per_rank)


def measure(corpus: Path, n: int, batch: int) -> dict:
    from seriesforge.config import DataConfig
    from seriesforge.data.pipeline import read_corpus
    from seriesforge.runtime import init_ray

    with PeakMemory() as raw_mem:
        tic = time.perf_counter()
        raw_rows = raw_pass(corpus, batch)
        raw_s = time.perf_counter() - tic
    init_ray(None, min_cpus=4)
    out = {"rows": n, "raw_rows_per_s": round(raw_rows / raw_s), "raw_seconds": round(raw_s, 1),
           "raw_peak_pss_gb": round(raw_mem.peak / 2**30, 2)}
    with PeakMemory() as first_mem:
        datasets, rows_per_length, first_s = training_table(corpus)
    out.update(first_pass_rows_per_s=round(n / first_s), first_pass_seconds=round(first_s, 1),
               first_pass_peak_pss_gb=round(first_mem.peak / 2**30, 2))
    # (b) what every epoch of training streams: the table; and, for comparison, the corpus validated on the fly
    # (what a first run would stream if there were no table)
    for name, source in (("ray", datasets), ("ray_validating", None)):
        # Ray Train splits each dataset equally across workers (streaming_split(equal=True)): a dataset of an
        # odd row count leaves one row out of the epoch. Anything beyond that is a lost row.
        counts = rows_per_length.values() if source is datasets else [n]
        expected = sum(c - c % 2 for c in counts)
        if source is None:
            source = {"train": read_corpus(DataConfig(spec=f"captions:{corpus}"))[0]}
        with PeakMemory() as mem, tempfile.TemporaryDirectory() as storage:
            tic = time.perf_counter()
            rows, stream_s, first_batch_s = ray_pass(source, batch, storage)
            total_s = time.perf_counter() - tic
        if raw_rows != n or rows != expected:
            raise RuntimeError(f"rows lost: corpus {n}, raw pass {raw_rows}, {name} pass {rows} (expected {expected})")
        out[f"{name}_rows_left_by_equal_split"] = n - rows
        out.update({f"{name}_rows_per_s": round(rows / stream_s), f"{name}_ratio": round(raw_s / stream_s, 3),
                    f"{name}_stream_seconds": round(stream_s, 1), f"{name}_first_batch_seconds": round(first_batch_s, 1),
                    f"{name}_rows_per_s_after_first_batch": round(rows / max(stream_s - first_batch_s, 1e-9)),
                    f"{name}_end_to_end_seconds": round(total_s, 1),
                    f"{name}_peak_pss_gb": round(mem.peak / 2**30, 2)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="600000,60000", help="corpus sizes to run, in order")
    parser.add_argument("--corpora", type=Path, default=Path("bench_data"), help="where stand-in corpora live")
    parser.add_argument("--batch", type=int, default=1024, help="rows per batch on both sides")
    args = parser.parse_args()
    import ray

    results = []
    for n in [int(x) for x in args.sizes.split(",")]:
        corpus = ensure_corpus(args.corpora, n)
        results.append(measure(corpus, n, args.batch))
        ray.shutdown()  # each size starts from a fresh Ray, so peak memory is that size's own
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"benchmark": "ingest", "device": f"CPU, {os.cpu_count()} cores", "batch": args.batch,
                      "targets": {"ratio": ">= 0.5", "peak_rss_gb": "<= 4, not larger at 600k than at 60k"},
                      "runs": results}, indent=2))


if __name__ == "__main__":
    main()
