"""UCR Time Series Classification Archive 2018: find datasets, read their splits, encode, normalise, re-split.

Layout (models.md §1.1): `<root>/<Name>/<Name>_TRAIN.tsv` and `<Name>_TEST.tsv`. Tab-separated, no header, one
series per row: field 1 = class label (an integer, e.g. -1/1 or 1..C; some files write it as a float such as
1.0000000e+00), fields 2..L+1 = values. Variable-length datasets right-pad rows with NaN (or empty cells) to the
longest series; that padding is kept as NaN and `lengths` counts the real values.

Row and column numbers in messages are 1-based: row = line of the file, column 1 = the label, column c >= 2 = value
c - 1. A bad row raises `DataError` ("FILE: row R, column C: reason") or, with `on_bad_row="skip"`, is left out and
recorded in `skipped` so the caller can report the count; rows are never dropped silently. Bad rows: a label that is
not an integer, a non-numeric or infinite value, a NaN gap followed by a real value (only trailing padding is
allowed), no values at all, fewer than 2 points, and a row whose field count differs from the others in a file that
is not NaN-padded ("ragged row"). In a NaN-padded file a row with fewer fields is padded like the others.

Pure numpy: no Ray, no torch (design.md §2.3, data readers work without Ray).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seriesforge.errors import DataError
from seriesforge.files import write_text_atomically

ON_BAD_ROW = ("error", "skip")
NORMALIZATIONS = ("zscore", "none")
_PADDING = ("", "nan")  # cell texts (lower-cased, stripped) that count as missing/padding


@dataclass(frozen=True)
class SplitData:
    x: np.ndarray  # (N, L_max) float32, trailing NaN padding kept
    labels: np.ndarray  # (N,) int64, the file's original labels
    lengths: np.ndarray  # (N,) int64, real values per row (the rest of the row is NaN padding)
    skipped: list[tuple[int, str]]  # (row, reason) of rows left out with on_bad_row="skip"


@dataclass(frozen=True)
class UCRDataset:
    name: str
    x_train: np.ndarray  # (N_train, L) float32, normalised; NaN = padding (see `zero_fill`)
    y_train: np.ndarray  # (N_train,) int64 in 0..C-1
    x_test: np.ndarray  # (N_test, L) float32
    y_test: np.ndarray  # (N_test,) int64
    label_map: dict[int, int]  # original label -> encoded label
    length: int  # L, the longest series of both splits
    skipped: dict[str, list[tuple[int, str]]]  # "train"/"test" -> (row, reason) of skipped rows
    train_mean: float  # μ subtracted from both splits (0.0 with normalize="none")
    train_std: float  # σ both splits were divided by (1.0 with normalize="none")
    lengths_train: np.ndarray  # (N_train,) int64
    lengths_test: np.ndarray  # (N_test,) int64
    split_index: dict[str, np.ndarray] | None  # resplit only: row indices into TRAIN ++ TEST (kept rows)

    @property
    def n_classes(self) -> int:
        return len(self.label_map)


class _BadRow(Exception):
    def __init__(self, column: int, reason: str):
        super().__init__(reason)
        self.column, self.reason = column, reason


def find_datasets(root: Path) -> list[Path]:
    """Dataset folders under `root` (one dataset folder itself, or a folder of them), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ucr:{root}: not a directory")
    if _looks_like_dataset(root):
        _split_paths(root)
        return [root]
    found = sorted((p for p in root.iterdir() if p.is_dir() and _looks_like_dataset(p)), key=lambda p: p.name)
    if not found:
        raise DataError(f"ucr:{root}: no UCR datasets found (expected <Name>/<Name>_TRAIN.tsv and "
                        "<Name>_TEST.tsv, or those two files directly in this folder)")
    for folder in found:
        _split_paths(folder)
    return found


def _looks_like_dataset(folder: Path) -> bool:
    return any((folder / f"{folder.name}_{split}.tsv").is_file() for split in ("TRAIN", "TEST"))


def _split_paths(folder: Path) -> tuple[Path, Path]:
    train, test = folder / f"{folder.name}_TRAIN.tsv", folder / f"{folder.name}_TEST.tsv"
    for path in (train, test):
        if not path.is_file():
            raise DataError(f"{path}: file not found (a UCR dataset folder holds <Name>_TRAIN.tsv and "
                            "<Name>_TEST.tsv)")
    return train, test


def read_split(path: Path, *, on_bad_row: str = "error") -> SplitData:
    """Read one `<Name>_TRAIN.tsv` / `<Name>_TEST.tsv` file; bad rows raise or are skipped (see module docstring)."""
    _check_choice("on_bad_row", on_bad_row, ON_BAD_ROW)
    path = Path(path)
    rows = _read_rows(path)
    expected, padded = _expected_width(rows)
    labels, series, skipped = [], [], []
    for row, fields in rows:
        try:
            label, values = _parse_row(fields, expected, padded)
        except _BadRow as bad:
            if on_bad_row == "error":
                raise DataError(f"{path}: row {row}, column {bad.column}: {bad.reason}") from None
            skipped.append((row, f"column {bad.column}: {bad.reason}"))
            continue
        labels.append(label)
        series.append(values)
    if not series:
        raise DataError(f"{path}: no valid rows ({len(skipped)} skipped; first: row {skipped[0][0]}, "
                        f"{skipped[0][1]})")
    x, lengths = _stack(series)
    return SplitData(x, np.asarray(labels, dtype=np.int64), lengths, skipped)


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line, tab-separated fields) of every line; trailing blank lines are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty file (no rows)")
    return [(i + 1, line.split("\t")) for i, line in enumerate(lines)]


def _expected_width(rows: list[tuple[int, list[str]]]) -> tuple[int, bool]:
    """(field count rows must have, whether the file is NaN-padded). The common count wins; ties: the first row's."""
    padded = any(len(f) > 2 and f[-1].strip().lower() in _PADDING for _, f in rows)
    counts = Counter(len(f) for _, f in rows)
    return (max(counts) if padded else counts.most_common(1)[0][0]), padded


def _parse_row(fields: list[str], expected: int, padded: bool) -> tuple[int, np.ndarray]:
    if len(fields) == 1 and not fields[0].strip():
        raise _BadRow(1, "empty row")
    if len(fields) != expected and not (padded and len(fields) < expected):
        column = min(len(fields), expected) + 1
        raise _BadRow(column, f"ragged row: {len(fields)} fields, expected {expected} like the other rows")
    label = _parse_label(fields[0])
    values = _parse_values(fields[1:])  # (L_row,) float64
    length = _series_length(values)
    return label, values[:length]


def _parse_label(cell: str) -> int:
    text = cell.strip()
    try:
        return int(text)
    except ValueError:
        pass
    hint = " (the file must be tab-separated)" if "," in text else ""
    try:
        value = float(text)
    except ValueError:
        raise _BadRow(1, f"label {text[:30]!r} is not an integer{hint}") from None
    if not math.isfinite(value) or not value.is_integer():
        raise _BadRow(1, f"label {text[:30]!r} is not an integer")
    return int(value)


def _parse_values(cells: list[str]) -> np.ndarray:
    cells = [c if c.strip() else "nan" for c in cells]  # empty cell = missing, same as NaN
    try:
        values = np.asarray(cells, dtype=np.float64)  # (L_row,)
    except ValueError:
        _name_bad_cell(cells)
    infinite = np.isinf(values)
    if infinite.any():
        i = int(np.argmax(infinite))
        raise _BadRow(i + 2, f"value {cells[i].strip()[:30]!r} is not finite")
    return values


def _name_bad_cell(cells: list[str]) -> None:
    for i, cell in enumerate(cells):  # slow path, only to name the cell the fast conversion choked on
        try:
            float(cell)
        except ValueError:
            raise _BadRow(i + 2, f"value {cell.strip()[:30]!r} is not a number") from None
    raise _BadRow(2, "values are not numbers")


def _series_length(values: np.ndarray) -> int:
    """Number of real values; raise if a NaN sits before a real value or fewer than 2 remain."""
    real = ~np.isnan(values)
    if not real.any():
        raise _BadRow(2, "series has no values (all NaN or empty)")
    length = int(len(real) - np.argmax(real[::-1]))  # one past the last real value
    gaps = ~real[:length]
    if gaps.any():
        raise _BadRow(int(np.argmax(gaps)) + 2, "NaN inside the series (only trailing NaN padding is allowed)")
    if length < 2:
        raise _BadRow(length + 2, f"series has {length} point(s), need at least 2")
    return length


def _stack(series: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.asarray([len(s) for s in series], dtype=np.int64)  # (N,)
    x = np.full((len(series), int(lengths.max())), np.nan, dtype=np.float32)  # (N, L_max)
    for i, s in enumerate(series):
        x[i, : len(s)] = s
    return x, lengths


def load_dataset(folder: Path, *, normalize: str = "zscore", resplit: float | None = None, seed: int = 0,
                 on_bad_row: str = "error") -> UCRDataset:
    """Both splits of one dataset: labels encoded to 0..C-1, optionally re-split, normalised with train stats.

    Labels: sorted union of the original labels of TRAIN and TEST -> 0..C-1. models.md §1.1 fits a LabelEncoder on
    TRAIN; both give the same codes whenever TEST's labels occur in TRAIN (all of UCR 2018), and the union also
    accepts a TEST-only label instead of failing.

    normalize="zscore" (models.md §1.1, "Dataset-level, not per series: μ = nanmean(X_train),
    σ = sqrt(nanvar(X_train)) over all train values, applied to train and test"): one scalar μ, σ (population
    variance) from the train part only, ignoring NaN padding. "none": values as read (μ = 0, σ = 1).

    resplit=f: TRAIN then TEST (original row order) merged and split stratified with f of the rows for training,
    following `StratifiedShuffleSplit(n_splits=1, test_size=1-f, random_state=seed)` (n_test = ⌈(1-f)·N⌉; same
    draws, so seed=0, f=0.8 gives models.md's 80/20 re-split), except that every class keeps at least one train
    row. `split_index` holds the chosen row indices. Normalisation stats then come from the new train part.
    """
    _check_choice("normalize", normalize, NORMALIZATIONS)
    folder = Path(folder)
    train_path, test_path = _split_paths(folder)
    train = read_split(train_path, on_bad_row=on_bad_row)
    test = read_split(test_path, on_bad_row=on_bad_row)
    length = max(train.x.shape[1], test.x.shape[1])
    label_map = {int(v): i for i, v in enumerate(np.union1d(train.labels, test.labels))}
    x_tr, x_te = _pad_to(train.x, length), _pad_to(test.x, length)  # (N, L)
    y_tr, y_te, n_tr, n_te = train.labels, test.labels, train.lengths, test.lengths
    split_index = None
    if resplit is not None:
        test_size = _test_size(resplit)
        x_all, y_all = np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te])
        n_all = np.concatenate([n_tr, n_te])
        i_tr, i_te = stratified_split(y_all, test_size, seed)
        split_index = {"train": i_tr, "test": i_te}
        x_tr, y_tr, n_tr = x_all[i_tr], y_all[i_tr], n_all[i_tr]
        x_te, y_te, n_te = x_all[i_te], y_all[i_te], n_all[i_te]
    mean, std = _zscore_stats(x_tr, folder) if normalize == "zscore" else (0.0, 1.0)
    encode = np.vectorize(label_map.__getitem__, otypes=[np.int64])
    return UCRDataset(
        name=folder.name, x_train=_scale(x_tr, mean, std), y_train=encode(y_tr),
        x_test=_scale(x_te, mean, std), y_test=encode(y_te), label_map=label_map, length=length,
        skipped={"train": train.skipped, "test": test.skipped}, train_mean=mean, train_std=std,
        lengths_train=n_tr, lengths_test=n_te, split_index=split_index)


def _pad_to(x: np.ndarray, length: int) -> np.ndarray:
    if x.shape[1] == length:
        return x
    out = np.full((x.shape[0], length), np.nan, dtype=np.float32)  # (N, L)
    out[:, : x.shape[1]] = x
    return out


def _test_size(resplit) -> float:
    if isinstance(resplit, bool) or not isinstance(resplit, (int, float)) or not 0.0 < resplit < 1.0:
        raise DataError(f"resplit: must be the train fraction, a number in (0, 1) (got {resplit!r})")
    return round(1.0 - float(resplit), 10)  # 0.8 -> exactly 0.2, as StratifiedShuffleSplit is usually called


def _zscore_stats(x_train: np.ndarray, folder: Path) -> tuple[float, float]:
    values = x_train.astype(np.float64)  # (N, L); NaN = padding, ignored
    mean, std = float(np.nanmean(values)), float(np.sqrt(np.nanvar(values)))
    if not std > 0.0:
        raise DataError(f"{folder}: train values are constant (σ = 0); use normalize='none'")
    return mean, std


def _scale(x: np.ndarray, mean: float, std: float) -> np.ndarray:
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)


def stratified_split(labels: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) of a stratified shuffle split; every class keeps at least one train row.

    The draws follow sklearn's StratifiedShuffleSplit (RandomState(seed), approximate-mode class counts, one
    permutation per class, then a shuffle of each part), so its indices are reproduced without depending on it.
    """
    n = len(labels)
    n_test = math.ceil(test_size * n)
    rng = np.random.RandomState(seed)
    classes, inverse = np.unique(labels, return_inverse=True)
    if n - n_test < len(classes):
        raise DataError(f"resplit: {n - n_test} train rows cannot hold all {len(classes)} classes")
    counts = np.bincount(inverse)  # (C,)
    members = np.split(np.argsort(inverse, kind="mergesort"), np.cumsum(counts)[:-1])
    n_train_c = _approximate_mode(counts, n - n_test, rng)
    n_train_c = _at_least_one_each(n_train_c, counts)
    n_test_c = _approximate_mode(counts - n_train_c, n_test, rng)
    train, test = [], []
    for c in range(len(classes)):
        order = members[c].take(rng.permutation(counts[c]), mode="clip")
        train.extend(order[: n_train_c[c]])
        test.extend(order[n_train_c[c]: n_train_c[c] + n_test_c[c]])
    return rng.permutation(np.asarray(train, dtype=np.int64)), rng.permutation(np.asarray(test, dtype=np.int64))


def _approximate_mode(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Per-class share of `n_draws` proportional to `counts`; leftover draws go to the largest remainders."""
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    remainder = continuous - floored
    for value in np.sort(np.unique(remainder))[::-1]:
        if need <= 0:
            break
        (tied,) = np.where(remainder == value)
        take = min(len(tied), need)
        floored[rng.choice(tied, size=take, replace=False)] += 1  # ties broken at random, as sklearn does
        need -= take
    return floored.astype(np.int64)


def _at_least_one_each(n_train_c: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Move one train slot from the best-stocked class to each class that got none (total unchanged)."""
    n_train_c = n_train_c.copy()
    for c in np.flatnonzero(n_train_c == 0):
        n_train_c[int(np.argmax(n_train_c))] -= 1
        n_train_c[c] = 1
    return np.minimum(n_train_c, counts)


def zero_fill(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """models.md §1.1 default for training: NaN padding -> 0 after scaling, plus the validity mask (N, L) bool."""
    mask = ~np.isnan(x)  # (N, L)
    return np.where(mask, x, np.float32(0.0)).astype(np.float32), mask


def save_label_map(ds: UCRDataset, path: Path) -> None:
    """Write {"dataset", "label_map": {original: encoded}} as JSON, atomically.

    `ds` needs only `.name` and `.label_map`: a `UCRDataset`, or the `SeriesSplits` built from one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"dataset": ds.name, "label_map": {str(k): v for k, v in sorted(ds.label_map.items())}}
    write_text_atomically(path, json.dumps(payload, indent=2) + "\n")


def load_label_map(path: Path) -> dict[int, int]:
    """Read what `save_label_map` wrote: original label -> encoded label."""
    try:
        payload = json.loads(Path(path).read_text())
        return {int(k): int(v) for k, v in payload["label_map"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a label map written by save_label_map ({type(e).__name__})") from None


def summary(root: Path, *, on_bad_row: str = "error") -> list[dict]:
    """One dict per dataset under `root`: name, train, test, length (max), variable_length, classes, skipped."""
    rows = []
    for folder in find_datasets(root):
        train_path, test_path = _split_paths(folder)
        train = read_split(train_path, on_bad_row=on_bad_row)
        test = read_split(test_path, on_bad_row=on_bad_row)
        length = max(train.x.shape[1], test.x.shape[1])
        lengths = np.concatenate([train.lengths, test.lengths])
        rows.append({"name": folder.name, "train": len(train.labels), "test": len(test.labels), "length": length,
                     "variable_length": bool((lengths < length).any()),
                     "classes": len(np.union1d(train.labels, test.labels)),
                     "skipped": len(train.skipped) + len(test.skipped)})
    return rows


def format_summary(rows: list[dict]) -> str:
    """An aligned text table of `summary` rows; variable-length datasets show their length as 'max N (vary)'."""
    header = ("name", "train", "test", "length", "classes")
    cells = [[str(r["name"]), str(r["train"]), str(r["test"]),
              f"max {r['length']} (vary)" if r.get("variable_length") else str(r["length"]), str(r["classes"])]
             for r in rows]
    widths = [max(len(row[i]) for row in [list(header), *cells]) for i in range(len(header))]

    out = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
           for row in [list(header), *cells]]
    skipped = [f"{r['name']}={r['skipped']}" for r in rows if r.get("skipped")]
    if skipped:
        out.append(f"bad rows skipped: {', '.join(skipped)}")
    return "\n".join(out)


def _check_choice(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise DataError(f"{name}: must be one of {', '.join(map(repr, allowed))} (got {value!r})")
