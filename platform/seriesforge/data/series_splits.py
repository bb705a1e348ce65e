"""Numpy data sources (UCR, Sines, CSV windows) as Ray Datasets, and their prepared on-disk form.

The readers in `sources/` stay pure numpy; this module is the Ray Data layer beside `pipeline.py` (which serves the
caption corpora) for the families that train on fixed-length series: TimeVQVAE and friends on UCR, TimeLDM and
ST-Diff on Sines / CSV windows.

Rows (one per series), channels last:
    series  float32 (L, K)  UCR: z-scored with train statistics, NaN padding replaced by 0 after scaling (models.md
                            §1.1; K = 1). Windows: min-max scaled to [0, 1].
    label   int64           UCR only: the class re-encoded to 0..C-1 (`label_map` holds original -> encoded)
    length  int64           UCR only: real values in `series`; positions >= length are padding (validity mask)
    index   int64           row position within its split, 0..N-1: shards can be checked for disjointness/coverage
    holdout int16           crc32(str(index)) % 10 000: `data.val_fraction` holds out the rows below its cut

Prepared layout (`write_prepared`, `read_prepared`):
    OUT/NAME/train/*.parquet, OUT/NAME/test/*.parquet (absent for windows: TimeGAN protocol has no test split),
    OUT/NAME/label_map.json (labelled data only; the format of `ucr.save_label_map`), OUT/NAME/meta.json.
NAME is written under a temporary sibling and renamed into place, so OUT/NAME is either whole or absent. Ray tasks
write the parquet files: on a multi-node cluster OUT must be on storage every node sees.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray.data
from ray.data.extensions import ArrowTensorArray

from seriesforge.data.sources import ucr
from seriesforge.data.table_rows import holdout_buckets  # the held-out rule of caption rows, by row index
from seriesforge.data.sources.windows import SINES_N, SINES_SEED, WindowData, load_csv_windows, load_sines
from seriesforge.data.specs import check_readable, parse_spec
from seriesforge.errors import DataError

ROWS_PER_BLOCK = 4096  # rows per Ray block: several blocks per split so `split(n)` has something to divide
META_FILE, LABEL_MAP_FILE = "meta.json", "label_map.json"


@dataclass(frozen=True)
class SeriesSplits:
    name: str  # dataset name: the UCR folder name, "sines", or the CSV file's stem
    train: ray.data.Dataset
    test: ray.data.Dataset | None  # None for windows (no test split in the TimeGAN protocol)
    length: int  # L
    channels: int  # K
    num_classes: int  # C; 0 when unlabelled
    label_map: dict[int, int]  # original label -> encoded label; {} when unlabelled
    meta: dict  # JSON-ready: kind, source, normalization, resplit, seed, rows, skipped, ...


# ---- building -------------------------------------------------------------------------------------------------------

def series_dataset(series: np.ndarray, *, labels: np.ndarray | None = None,
                   lengths: np.ndarray | None = None) -> ray.data.Dataset:
    """(N, L, K) float32 [+ (N,) labels, (N,) lengths] -> a Ray Dataset of rows as in the module docstring."""
    series = np.ascontiguousarray(series, dtype=np.float32)  # (N, L, K)
    n = len(series)
    # at least 2 blocks once N >= 2, so that split(2) gives both shards rows
    num_blocks = max(1, min(n, max(2, math.ceil(n / ROWS_PER_BLOCK))))
    tables = []
    for rows in np.array_split(np.arange(n), num_blocks):  # (rows of one block,) int64, ascending
        columns = {"series": ArrowTensorArray.from_numpy(series[rows])}
        if labels is not None:
            columns["label"] = pa.array(labels[rows], pa.int64())
        if lengths is not None:
            columns["length"] = pa.array(lengths[rows], pa.int64())
        columns["index"] = pa.array(rows, pa.int64())
        columns["holdout"] = pa.array(holdout_buckets(rows), pa.int16())
        tables.append(pa.table(columns))
    return ray.data.from_arrow(tables)


def ucr_splits(folder: Path, *, resplit: float | None = None, seed: int = 0,
               on_bad_row: str = "error") -> SeriesSplits:
    """One UCR dataset folder -> train and test Datasets; labels re-encoded 0..C-1 over TRAIN ∪ TEST."""
    ds = ucr.load_dataset(folder, resplit=resplit, seed=seed, on_bad_row=on_bad_row)
    x_train, _ = ucr.zero_fill(ds.x_train)  # (N_train, L); padding -> 0 after scaling
    x_test, _ = ucr.zero_fill(ds.x_test)  # (N_test, L)
    lengths = np.concatenate([ds.lengths_train, ds.lengths_test])
    meta = {
        "kind": "ucr", "source": str(Path(folder).resolve()),
        "normalization": {"kind": "zscore", "mean": ds.train_mean, "std": ds.train_std},
        "resplit": resplit, "seed": seed, "on_bad_row": on_bad_row,
        "rows": {"train": len(ds.y_train), "test": len(ds.y_test)},
        "skipped": {split: len(rows) for split, rows in ds.skipped.items()},
        "variable_length": bool((lengths < ds.length).any()),
        "split_index": None if ds.split_index is None else {k: v.tolist() for k, v in ds.split_index.items()},
    }
    return SeriesSplits(
        name=ds.name, length=ds.length, channels=1, num_classes=ds.n_classes, label_map=dict(ds.label_map),
        train=series_dataset(x_train[:, :, None], labels=ds.y_train, lengths=ds.lengths_train),
        test=series_dataset(x_test[:, :, None], labels=ds.y_test, lengths=ds.lengths_test), meta=meta)


def window_splits(name: str, data: WindowData, *, seed: int | None = None) -> SeriesSplits:
    """Min-max scaled windows (N, L, K) -> a train Dataset only (the TimeGAN protocol evaluates on train)."""
    n, length, channels = data.x.shape
    meta = {"kind": "windows", "source": data.source, "columns": list(data.columns),
            "normalization": {"kind": "minmax", "lo": data.lo.tolist(), "hi": data.hi.tolist()},
            "resplit": None, "seed": seed, "rows": {"train": n}, "skipped": {}, "variable_length": False}
    return SeriesSplits(name=name, train=series_dataset(data.x), test=None, length=length, channels=channels,
                        num_classes=0, label_map={}, meta=meta)


def load_spec_datasets(spec: str, *, resplit: float | None = None, seed: int = 0, on_bad_row: str = "error",
                       sines_n: int = SINES_N) -> SeriesSplits:
    """The data a SPEC names (`ucr:DIR`, `sines:L`, `csv:PATH:L`) as Ray Datasets.

    `seed` seeds the UCR re-split or the Sines draws; `resplit` (train fraction) applies to UCR only;
    `on_bad_row` applies to UCR (CSV reading is always strict: a bad cell is an error, nothing is dropped).
    """
    parsed = parse_spec(spec)
    if parsed.kind == "captions":
        raise DataError(f"--data {spec!r}: caption corpora are read by the caption pipeline "
                        "(seriesforge.data.pipeline.prepare_training_data), not as series splits")
    if resplit is not None and parsed.kind != "ucr":
        raise DataError(f"resplit: only ucr: specs have a train/test split to redraw (got --data {spec!r})")
    check_readable(spec)  # ucr: exactly one dataset folder
    if parsed.kind == "ucr":
        return ucr_splits(parsed.path, resplit=resplit, seed=seed, on_bad_row=on_bad_row)
    if parsed.kind == "sines":
        return window_splits("sines", load_sines(sines_n, parsed.length, seed=seed), seed=seed)
    return window_splits(parsed.path.stem, load_csv_windows(parsed.path, parsed.length))


def select_ucr_datasets(root: Path, datasets: str | list[str]) -> list[Path]:
    """Dataset folders under `root` for "all" or a list / comma list of names; unknown names are one error."""
    available = {p.name: p for p in ucr.find_datasets(root)}
    names = [n.strip() for n in datasets.split(",")] if isinstance(datasets, str) else [str(n) for n in datasets]
    names = list(dict.fromkeys(n for n in names if n))  # keep order, drop repeats
    if names == ["all"]:
        return list(available.values())
    if not names:
        raise DataError("datasets: no dataset names given (a comma list such as GunPoint,ArrowHead, or all)")
    unknown = [n for n in names if n not in available]
    if unknown:
        raise DataError(f"datasets: {', '.join(unknown)} not found under {root} "
                        f"(available: {', '.join(available)})")
    return [available[n] for n in names]


def load_ucr_archive(root: Path, datasets: str | list[str], *, resplit: float | None = None, seed: int = 0,
                     on_bad_row: str = "error") -> dict[str, SeriesSplits]:
    """Several UCR datasets, each its own `SeriesSplits`, keyed by name in the order asked for ("all": by name)."""
    return {folder.name: ucr_splits(folder, resplit=resplit, seed=seed, on_bad_row=on_bad_row)
            for folder in select_ucr_datasets(root, datasets)}


def summary_row(splits: SeriesSplits) -> dict:
    """A `ucr.format_summary` row for one prepared dataset."""
    rows, skipped = splits.meta["rows"], splits.meta.get("skipped", {})
    return {"name": splits.name, "train": rows["train"], "test": rows.get("test", 0), "length": splits.length,
            "variable_length": splits.meta.get("variable_length", False), "classes": splits.num_classes,
            "skipped": sum(skipped.values())}


# ---- prepared form on disk ------------------------------------------------------------------------------------------

def write_prepared(splits: SeriesSplits, out_dir: Path) -> Path:
    """Write OUT/NAME (see the module docstring) atomically; an existing OUT/NAME is an error, never overwritten."""
    out_dir = Path(out_dir)
    target = out_dir / splits.name
    if target.exists():
        raise DataError(f"{target}: already exists (remove it or choose another output directory)")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{splits.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        splits.train.write_parquet(str(tmp / "train"))
        if splits.test is not None:
            splits.test.write_parquet(str(tmp / "test"))
        if splits.label_map:
            ucr.save_label_map(splits, tmp / LABEL_MAP_FILE)
        _write_meta(splits, tmp / META_FILE)
        try:
            os.replace(tmp, target)
        except OSError as err:  # a concurrent writer got there first
            raise DataError(f"{target}: cannot move the prepared dataset into place ({err.strerror})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _write_meta(splits: SeriesSplits, path: Path) -> None:
    payload = {"name": splits.name, "length": splits.length, "channels": splits.channels,
               "num_classes": splits.num_classes, **splits.meta}
    path.write_text(json.dumps(payload, indent=2) + "\n")


def read_prepared(folder: Path) -> SeriesSplits:
    """What `write_prepared` wrote to `folder` (= OUT/NAME), as lazily read Ray Datasets."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / META_FILE).read_text())
        head = {key: meta.pop(key) for key in ("name", "length", "channels", "num_classes")}
    except FileNotFoundError:
        raise DataError(f"{folder / META_FILE}: file not found (not a folder written by write_prepared)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{folder / META_FILE}: not a prepared-dataset manifest ({type(err).__name__}: {err})") \
            from None
    label_map = ucr.load_label_map(folder / LABEL_MAP_FILE) if head["num_classes"] else {}
    if not (folder / "train").is_dir():
        raise DataError(f"{folder / 'train'}: directory not found (the prepared dataset is incomplete)")
    test = ray.data.read_parquet(str(folder / "test")) if (folder / "test").is_dir() else None
    return SeriesSplits(name=head["name"], train=ray.data.read_parquet(str(folder / "train")), test=test,
                        length=head["length"], channels=head["channels"], num_classes=head["num_classes"],
                        label_map=label_map, meta=meta)
