"""Data SPECs: one small grammar names data everywhere (train, eval, tune, serve).

    captions:DIR      a text–series caption corpus (TSFragment-600K CSVs, parquet, JSONL, or a saved
                      `datasets` dataset) in DIR
    ucr:DIR           one UCR 2018 dataset folder (DIR/NAME_TRAIN.tsv, DIR/NAME_TEST.tsv)
    sines:L           the TimeGAN Sines benchmark, generated, windows of length L
    csv:PATH:L        a numeric CSV (Stocks, ETTh, or any), min-max scaled, stride-1 windows of length L

Every caller goes through `parse_spec`; `check_readable` also opens what the SPEC names, so a typo fails before
any run directory or Ray exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seriesforge.errors import DataError

KINDS = {
    "captions": "captions:DIR — a text–series caption corpus directory",
    "ucr": "ucr:DIR — one UCR 2018 dataset folder",
    "sines": "sines:L — generated Sines, windows of length L",
    "csv": "csv:PATH:L — a numeric CSV, windows of length L",
}
MIN_LENGTH = 2


@dataclass(frozen=True)
class DataSpec:
    kind: str
    path: Path | None = None
    length: int | None = None

    def __str__(self) -> str:
        parts = [self.kind] + ([str(self.path)] if self.path else []) + ([str(self.length)] if self.length else [])
        return ":".join(parts)


def parse_spec(text: str) -> DataSpec:
    """Parse a SPEC string; raise `DataError` naming the SPEC for anything unknown or unreadable."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS:
        known = "; ".join(KINDS.values())
        raise DataError(f"--data {text!r}: unknown data kind {kind!r} (known: {known})")
    if kind in ("captions", "ucr"):
        return DataSpec(kind=kind, path=_existing_dir(text, kind, rest))
    if kind == "sines":
        return DataSpec(kind="sines", length=_length(text, rest))
    path_text, sep, length_text = rest.rpartition(":")
    if not sep or not path_text:
        raise DataError(f"--data {text!r}: csv needs a file and a window length, e.g. csv:./ETTh.csv:24")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise DataError(f"--data {text!r}: file {path} does not exist")
    return DataSpec(kind="csv", path=path.resolve(), length=_length(text, length_text))


def _existing_dir(text: str, kind: str, rest: str) -> Path:
    if not rest:
        raise DataError(f"--data {text!r}: {kind} needs a directory, e.g. {kind}:./data")
    path = Path(rest).expanduser()
    if not path.is_dir():
        raise DataError(f"--data {text!r}: directory {path} does not exist")
    return path.resolve()


def _length(text: str, value: str) -> int:
    try:
        length = int(value)
    except ValueError:
        raise DataError(f"--data {text!r}: window length {value!r} is not an integer") from None
    if length < MIN_LENGTH:
        raise DataError(f"--data {text!r}: window length must be >= {MIN_LENGTH}, got {length}")
    return length


def check_readable(text: str) -> DataSpec:
    """Parse a SPEC and make sure it names readable data, before any run directory or Ray is started."""
    spec = parse_spec(text)
    if spec.kind == "captions":
        from seriesforge.data.sources.captions import detect_layout

        detect_layout(spec.path)
    elif spec.kind == "ucr":
        from seriesforge.data.sources.ucr import find_datasets

        found = find_datasets(spec.path)
        if len(found) != 1:
            raise DataError(f"--data {text!r}: ucr:DIR names one dataset folder; {spec.path} holds {len(found)} "
                            "(use one of them, or `seriesforge data ucr inspect` to list them)")
    return spec


def window_shape(spec: DataSpec) -> tuple[int, int] | None:
    """(L, K) of the windows a `sines:L` or `csv:PATH:L` SPEC yields (the CSV is read to count its numeric
    columns); None for other kinds."""
    from seriesforge.data.sources.windows import SINES_FEATURES, numeric_columns

    if spec.kind == "sines":
        return spec.length, SINES_FEATURES
    if spec.kind == "csv":
        return spec.length, len(numeric_columns(spec.path))
    return None


def ucr_shape(spec: DataSpec) -> tuple[int, int, int] | None:
    """(L, C, N_train) of the one dataset a `ucr:DIR` SPEC names: the longest series and the number of classes over
    TRAIN and TEST (what a class-conditioned model is sized by), and the TRAIN rows; None for other kinds."""
    if spec.kind != "ucr":
        return None
    from seriesforge.data.sources.ucr import find_datasets, load_dataset

    ds = load_dataset(find_datasets(spec.path)[0], normalize="none", on_bad_row="skip")
    return ds.length, ds.n_classes, len(ds.y_train)
