"""Caption-corpus ingest: a raw single-process pyarrow pass vs Ray Data streaming to 2 Ray Train workers.

(a) raw:       pyarrow reads every parquet shard's series and captions and turns each row's series into a float32
               numpy array.
(b) platform:  what training streams: the length-partitioned table that `data.pipeline.prepare_training_data`
               builds once per corpus (its one-off pass is timed and printed too), one Ray Dataset of all
               lengths reading T2S's columns (series, caption), handed to a TorchTrainer with 2 CPU workers.
               Each worker streams its shard (`get_dataset_shard`) through training's own
               `data.batches.LengthBatches` (local shuffle, rows sorted into length buckets, full batches of one
               length) into torch tensors, for --epochs epochs.
               The first epoch pays the pipeline's start-up and is reported alone (`ray_*`); the later ones by
               their median (`ray_later_epochs_*`).
(b')           for comparison, one pass over the corpus validated on the fly (`ray_validating_*`).
All passes count every row. Rates are timed inside the workers, from the first batch request to the last batch
(the slower worker); the wait for the first batch and the end-to-end time with Ray Train's start-up are printed
beside them. Peak memory is the PSS summed over this process and all its descendants (the Ray processes
included), sampled once a second; `*_peak_by_process` says which processes made up that peak, and
`*_worker_resident_mb_by_epoch` each worker's heap and mapped object-store pages after each epoch (whether they
settle or keep growing). Runs at 600k and 60k rows.
Targets: b/a >= 0.5; peak memory <= 4 GB and no larger at 600k than at 60k (streaming, not materialising).
The last lines print each target against the figures: b/a for the first epoch and for the later ones, and the
peak comparison as the benchmark runs it (every size for --epochs epochs, so the smaller corpus streams fewer
rows) and, with --equal-rows, also with the smaller sizes run for as many rows as the largest streams.

    python benchmarks/ingest.py [--sizes 600000,60000] [--corpora bench_data] [--batch 1024] [--epochs 5]
                                [--equal-rows]

The stand-in corpora are written once under --corpora (`seriesforge data captions make`, deterministic).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil


class PeakMemory:
    """Peak of the summed PSS of this process and its descendants, sampled on a thread, and the processes that
    made it up at that moment (`by_kind`: kind -> [processes, MB]), so that growth can be placed.

    PSS, not RSS: Ray's workers map the same object-store and library pages, and summing RSS would count each
    shared page once per process (6 GB "used" for a 6 000-row corpus).
    One sample costs ~45 ms of CPU with Ray's ~24 processes (reading each one's smaps), so it is taken once a
    second: every 0.2 s it took ~20 % of a core from the passes it measures, on a 2-core machine.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval, self.peak, self.by_kind = interval, 0, {}
        self._stop = threading.Event()
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
            total, kinds = 0, {}
            for p in [me, *me.children(recursive=True)]:
                try:
                    pss = p.memory_full_info().pss
                    kind = "driver (this process)" if p.pid == me.pid else process_kind(p.cmdline())
                except psutil.Error:
                    continue  # a process that ended between listing and reading
                total += pss
                count, size = kinds.get(kind, (0, 0))
                kinds[kind] = (count + 1, size + pss)
            if total > self.peak:
                self.peak = total
                largest_first = sorted(kinds.items(), key=lambda kv: -kv[1][1])
                self.by_kind = {k: [n, round(b / 2**20)] for k, (n, b) in largest_first}
            self._stop.wait(self.interval)


def process_kind(cmdline: list[str]) -> str:
    """A process's kind for the memory breakdown: 'ray::SplitCoordinator.get' and 'ray::SplitCoordinator' are one
    actor kind, 'ray::ReadParquet->SplitBlocks(6)' a read task, 'ray::IDLE' a pooled worker between tasks; Ray's
    Python daemons by script, the rest by program."""
    title = cmdline[0] if cmdline else "?"
    if title.startswith("ray::"):
        return re.split(r"[.(]", title, maxsplit=1)[0]
    if title.startswith("ray-dashboard"):
        return "ray dashboard modules"
    script = next((Path(a).name for a in cmdline[1:3] if a.endswith(".py")), None)
    return script or Path(title.split()[0]).name


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
    import ray.train

    context = ray.train.get_context()
    rank = context.get_world_rank()
    shard = ray.train.get_dataset_shard(config["key"])
    if config["route"]:
        from seriesforge.data.batches import LengthBatches

        source = LengthBatches(shard, lengths=config["lengths"], schedule="round_robin", batch_size=config["batch"],
                               rows_per_epoch=config["rows"] // context.get_world_size(), keys=("series",), seed=0)
        epochs = [routed_epoch(source) for _ in range(config["epochs"])]
    else:
        epochs = [unshuffled_epoch(shard, config["batch"], config["lengths"]) for _ in range(config["epochs"])]
    # Every rank's files land in the one checkpoint directory of this report (Ray Train 2.60 merges them).
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, f"epochs_rank{rank}.json").write_text(json.dumps(epochs))
        ray.train.report({"epochs": len(epochs)}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def routed_epoch(source) -> dict:
    """One epoch through training's own worker code (`data.batches.LengthBatches`: Ray Data's local shuffle, rows
    sorted into length buckets, Arrow to float32 arrays, full batches of one length) into torch tensors: rows read,
    seconds from the first batch request to the end of the epoch, and the wait for the first batch."""
    import torch

    tic, first = time.perf_counter(), None
    for batch in source.epoch():
        first = first or time.perf_counter() - tic
        torch.from_numpy(batch["series"])  # (B, L)
    seconds = time.perf_counter() - tic
    return {"rows": source.rows_read, "seconds": seconds, "first": first, "resident_mb": resident_mb()}


def resident_mb() -> dict:
    """This worker's resident memory at the end of an epoch, read after the epoch's clock stops (from Linux's
    /proc/self/status, cheap unlike PSS): its own heap (anon) and the object-store pages it has mapped and touched
    (shmem). Growth that settles is the allocators' and the object store's footprint filling up; growth that never
    settles would be rows kept."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[key].split()[0]) // 1024 for name, key in (("anon", "RssAnon"), ("shmem", "RssShmem"))}


def unshuffled_epoch(shard, batch: int, lengths: list[int]) -> dict:
    """One unshuffled pass over a corpus of mixed lengths, split by length (training's `split_by_length`) into
    torch tensors."""
    import torch

    from seriesforge.data.batches import columns_as_numpy, split_by_length

    rows, tic, first = 0, time.perf_counter(), None
    for raw in shard.iter_batches(batch_size=batch, batch_format="pyarrow"):
        for _, part in split_by_length(raw, lengths):
            first = first or time.perf_counter() - tic
            rows += torch.from_numpy(columns_as_numpy(part, ("series",))["series"]).shape[0]  # (B_L, L)
    seconds = time.perf_counter() - tic
    return {"rows": rows, "seconds": seconds, "first": first, "resident_mb": resident_mb()}


def training_table(corpus: Path) -> tuple[dict, int, list[int], float]:
    """The training path's one-off pass (read, validate every row, scale, write the length-partitioned table
    beside the corpus), timed from a cold cache; returns the training Dataset (all lengths in one stream), its
    rows, the lengths and the seconds the pass took."""
    import shutil

    from seriesforge.config import DataConfig
    from seriesforge.data.pipeline import training_datasets, prepare_training_data, streamed_columns
    from seriesforge.protocols import DataNeeds

    lengths = sorted(int(n) for n in json.loads((corpus / "corpus.json").read_text())["counts"]["length"])
    shutil.rmtree(corpus / "_seriesforge_cache", ignore_errors=True)
    tic = time.perf_counter()
    cfg = DataConfig(spec=f"captions:{corpus}", lengths=lengths)
    data = prepare_training_data(cfg, DataNeeds(), fallback_cache=corpus / "_fallback_cache", progress=False)
    seconds = time.perf_counter() - tic
    # what T2S streams: series and the caption that keys its embedding (the embeddings themselves are looked up
    # in a memory-mapped store, not streamed; filling it is benchmarks/embed.py's business)
    t2s_columns = streamed_columns(DataNeeds(text_encoder="minilm"))
    datasets, rows = training_datasets(data.table, cfg, data.rows_per_length, t2s_columns)
    return datasets, rows, lengths, seconds


def ray_pass(datasets: dict, batch: int, storage: str, epochs: int, lengths: list[int],
             route_rows: int | None) -> list[dict]:
    """Per epoch: rows seen by both workers together (each its own shard: streaming_split underneath), the
    streaming time (the slower worker's) and, within it, the wait for the first batch (the pipeline's start-up).
    `route_rows`: the dataset's rows, to stream as training does (`LengthBatches`); None for an unshuffled pass."""
    import ray.train
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(stream_worker, datasets=datasets,
                           train_loop_config={"batch": batch, "key": next(iter(datasets)), "epochs": epochs,
                                              "lengths": lengths, "route": route_rows is not None,
                                              "rows": route_rows},
                           scaling_config=ray.train.ScalingConfig(num_workers=2),
                           run_config=ray.train.RunConfig(storage_path=storage, name="ingest"))
    result = trainer.fit()
    with result.checkpoint.as_directory() as d:
        per_rank = [json.loads(p.read_text()) for p in sorted(Path(d).glob("epochs_rank*.json"))]
    if len(per_rank) != 2:
        raise RuntimeError(f"expected row counts from 2 workers, got {len(per_rank)}")
    return [{"rows": sum(r[e]["rows"] for r in per_rank), "seconds": max(r[e]["seconds"] for r in per_rank),
             "first": max(r[e]["first"] for r in per_rank), "resident_mb": [r[e]["resident_mb"] for r in per_rank]}
            for e in range(epochs)]


def rate(epoch: dict) -> float:
    return epoch["rows"] / epoch["seconds"]


def measure(corpus: Path, n: int, batch: int, epochs: int) -> dict:
    from seriesforge.config import DataConfig
    from seriesforge.data.pipeline import read_corpus
    from seriesforge.runtime import init_ray

    with PeakMemory() as raw_mem:
        tic = time.perf_counter()
        raw_rows = raw_pass(corpus, batch)
        raw_s = time.perf_counter() - tic
    raw_rate = raw_rows / raw_s  # ratios compare rates: the equal split leaves (b) an odd row fewer per length
    init_ray(None, min_cpus=4)
    out = {"rows": n, "raw_rows_per_s": round(raw_rate), "raw_seconds": round(raw_s, 1),
           "raw_peak_pss_gb": round(raw_mem.peak / 2**30, 2)}
    with PeakMemory() as first_mem:
        datasets, train_rows, lengths, first_s = training_table(corpus)
    out.update(first_pass_rows_per_s=round(n / first_s), first_pass_seconds=round(first_s, 1),
               first_pass_peak_pss_gb=round(first_mem.peak / 2**30, 2))
    # (b) what training streams: the table, for `epochs` epochs (the first pays the pipeline's start-up: Ray Train
    # creates the dataset's streaming-split coordinator actor; later epochs reuse it); and, for comparison, one
    # pass over the corpus validated on the fly (what a first run would stream if there were no table)
    for name, source, passes in (("ray", datasets, epochs), ("ray_validating", None, 1)):
        # Ray Train splits the dataset equally across workers (streaming_split(equal=True)): an odd row count
        # leaves one row out of the epoch. Anything beyond that is a lost row.
        rows = train_rows if source is datasets else n
        expected = rows - rows % 2
        if source is None:
            source = {"train": read_corpus(DataConfig(spec=f"captions:{corpus}"))[0]}
        with PeakMemory() as mem, tempfile.TemporaryDirectory() as storage:
            tic = time.perf_counter()
            per_epoch = ray_pass(source, batch, storage, passes, lengths, rows if source is datasets else None)
            total_s = time.perf_counter() - tic
        if raw_rows != n or any(e["rows"] != expected for e in per_epoch):
            raise RuntimeError(f"rows lost: corpus {n}, raw pass {raw_rows}, {name} epochs "
                               f"{[e['rows'] for e in per_epoch]} (expected {expected} each)")
        cold = per_epoch[0]
        out[f"{name}_rows_left_by_equal_split"] = n - cold["rows"]
        out.update({f"{name}_rows_per_s": round(rate(cold)),
                    f"{name}_ratio": round(rate(cold) / raw_rate, 3),
                    f"{name}_stream_seconds": round(cold["seconds"], 1),
                    f"{name}_first_batch_seconds": round(cold["first"], 1),
                    f"{name}_end_to_end_seconds": round(total_s, 1),
                    f"{name}_peak_pss_gb": round(mem.peak / 2**30, 2),
                    f"{name}_peak_by_process": mem.by_kind,
                    f"{name}_worker_resident_mb_by_epoch": [e["resident_mb"] for e in per_epoch]})
        if len(per_epoch) > 1:  # the epochs after the first: what a long training run streams, epoch after epoch
            warm = float(np.median([rate(e) for e in per_epoch[1:]]))
            out.update({f"{name}_later_epochs_rows_per_s": round(warm),
                        f"{name}_later_epochs_ratio": round(warm / raw_rate, 3),
                        f"{name}_later_epochs_ratios": [round(rate(e) / raw_rate, 2) for e in per_epoch[1:]],
                        f"{name}_later_epochs_first_batch_seconds": [round(e["first"], 2) for e in per_epoch[1:]]})
    return out


RATIO_TARGET, PEAK_TARGET_GB = 0.5, 4.0


def verdicts(runs: list[dict]) -> list[dict]:
    """Each target as the issue words it, against this invocation's figures: one line per check, whether it holds
    and the figures behind it. Peak comparisons pair the largest corpus with each smaller one streamed for the same
    number of epochs, and (from --equal-rows) for the same number of rows."""
    lines = []
    for run in runs:
        tag = f"{run['rows']} rows x {run['epochs']} epochs"
        for key, what in (("ray_ratio", "b/a, first epoch (start-up included)"),
                          ("ray_later_epochs_ratio", "b/a, later epochs (median)")):
            if key in run:
                lines.append({"target": f"{what} >= {RATIO_TARGET}", "run": tag, "value": run[key],
                              "holds": run[key] >= RATIO_TARGET})
        peak = max(run[k] for k in run if k.endswith("_peak_pss_gb"))  # every phase: raw, table pass, streams
        lines.append({"target": f"peak PSS of every phase <= {PEAK_TARGET_GB} GB", "run": tag, "value": peak,
                      "holds": peak <= PEAK_TARGET_GB})
    largest = max(runs, key=lambda r: r["rows"])
    for small in (r for r in runs if r["rows"] < largest["rows"]):
        if small["epochs"] == largest["epochs"]:
            equal = "epochs"
        elif small["rows"] * small["epochs"] == largest["rows"] * largest["epochs"]:
            equal = "rows streamed"
        else:
            continue
        lines.append({"target": f"streaming peak at {largest['rows']} rows not larger than at {small['rows']}, "
                                f"equal {equal}",
                      "run": f"{largest['rows']} x {largest['epochs']} vs {small['rows']} x {small['epochs']}",
                      "value": [largest["ray_peak_pss_gb"], small["ray_peak_pss_gb"]],
                      "holds": largest["ray_peak_pss_gb"] <= small["ray_peak_pss_gb"]})
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="600000,60000", help="corpus sizes to run, in order")
    parser.add_argument("--corpora", type=Path, default=Path("bench_data"), help="where stand-in corpora live")
    parser.add_argument("--batch", type=int, default=1024, help="rows per batch on both sides")
    parser.add_argument("--epochs", type=int, default=5,
                        help="epochs (b) streams; the first is reported alone, the rest by their median")
    parser.add_argument("--equal-rows", action="store_true",
                        help="also run each smaller size for as many epochs as streams the largest size's rows "
                             "(60k for 50 epochs beside 600k for 5), and compare the peaks at equal rows streamed")
    args = parser.parse_args()
    if args.epochs < 1 or args.batch < 1:
        parser.error(f"--epochs and --batch must be at least 1 (got {args.epochs}, {args.batch})")
    import ray

    sizes = [int(x) for x in args.sizes.split(",")]
    plan = [(n, args.epochs) for n in sizes]
    if args.equal_rows:
        rows = max(sizes) * args.epochs
        uneven = [n for n in sizes if rows % n]
        if uneven:
            parser.error(f"--equal-rows needs every size to divide {max(sizes)} x {args.epochs} rows; {uneven} do not")
        plan += [(n, rows // n) for n in sizes if n < max(sizes)]
    results = []
    for n, epochs in plan:
        corpus = ensure_corpus(args.corpora, n)
        results.append({**measure(corpus, n, args.batch, epochs), "epochs": epochs})
        ray.shutdown()  # each run starts from a fresh Ray, so peak memory is that run's own
        print(json.dumps(results[-1]), flush=True)
    checks = verdicts(results)
    print(json.dumps({"benchmark": "ingest", "device": f"CPU, {os.cpu_count()} cores", "batch": args.batch,
                      "epochs": args.epochs,
                      "targets": {"ratio": f">= {RATIO_TARGET}",
                                  "peak_pss_gb": f"<= {PEAK_TARGET_GB:g}, not larger at 600k than at 60k"},
                      "runs": results, "verdicts": checks}, indent=2))
    for check in checks:
        print(f"{'holds ' if check['holds'] else 'MISSES'}  {check['target']}: {check['value']}  ({check['run']})")


if __name__ == "__main__":
    main()
