"""TimeGAN / Diffusion-TS benchmark datasets (Sines, Stocks, ETTh, ...) as fixed-length windows `(N, L, K)` in [0, 1].

Recipe (models.md §1.2, "Preprocessing (Default = Diffusion-TS convention)"), followed exactly:
    "MinMaxScaler per column fitted on the **whole raw series**; stride-1 windows, N_w = rows − L + 1; models train on
    [−1, 1] (2u − 1) unless a family says otherwise; samples are mapped back to [0, 1] and **all metrics are computed on
    [0, 1] windows**."
  So `load_csv_windows` reads the CSV, fits min/max per column on all rows, scales, *then* cuts stride-1 windows;
  `WindowData.x` is in [0, 1] (the 2u − 1 step belongs to the family). Columns: ETTh "drop `date`; HUFL, HULL, MUFL,
  MULL, LUFL, LULL, OT"; Stocks "Open, High, Low, Close, Adj_Close, Volume" — with `columns=None` every non-timestamp
  column, which for the shipped files is exactly those. Expected at L = 24: Stocks 3 685 rows → 3 662 windows, ETTh
  17 420 → 17 397. Time runs forward and windows keep their order: window i starts at row i. The TimeGAN convention
  ("+1e-7, rows − L windows, rows reversed with [::-1] ..., random permutation") is *not* implemented.

Sines (models.md §1.2, "Sines recipe", jsyoon0823/TimeGAN `data_loading.py`, Diffusion-TS `sine_dataset.py`):
    "for each sample and each of K = 5 features independently draw f ~ U(0, 0.1) and φ ~ U(0, 0.1); x_t = sin(f·t + φ)
    for t = 0…L−1; map to [0,1] with (x+1)/2. Diffusion-TS seeds numpy with 123 (10 000 × 24 × 5)."
  The draws come from `np.random.RandomState(seed)` in the reference loop's order (sample, feature, then f before φ),
  so `sines(10_000, 24, seed=123)` draws the same f and φ as Diffusion-TS's train set. Since f·t + φ ≤ 0.1·23 + 0.1
  < π at L = 24, every value lies in [0.5, 1]. No scaler is fitted: `load_sines` reports lo = 0, hi = 1 (identity).

Choices where models.md is silent (decisions):
  * Windows are not shuffled (models.md lists a permutation only under the TimeGAN convention; Diffusion-TS
    `real_datasets.py` @13a2186 keeps windows in order). Shuffling is the loader's job.
  * Constant column: a span hi − lo below `SPAN_EPS` = 10·eps(float64) ≈ 2.2e-15 is replaced by 1, so the column maps
    to 0 (sklearn MinMaxScaler's zero-range rule, which Diffusion-TS uses); TimeGAN's "+1e-7" on every span is not used.
  * CSV reading is strict: an empty, non-numeric, NaN or inf cell in a used column, a row with the wrong number of
    fields or a blank line between rows is an error naming the file, the line (header = line 1) and the column;
    trailing blank lines are ignored. A column is a timestamp (dropped) if its name is date/datetime/time/timestamp
    (any case), or if it is the first column and every cell is a non-numeric date (ISO 8601 or one of `DATE_FORMATS`).
  * Scaler statistics are float64; windows are float32. Invalid arguments (length < 1, ...) raise ValueError.

Pure numpy: no Ray, no torch.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from seriesforge.errors import DataError

TIMESTAMP_NAMES = ("date", "datetime", "time", "timestamp")
DATE_FORMATS = ("%Y/%m/%d", "%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S", "%m/%d/%Y", "%m/%d/%Y %H:%M",
                "%m/%d/%Y %H:%M:%S", "%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S")
SPAN_EPS = 10 * np.finfo(np.float64).eps  # spans below this count as a constant column
SINES_FREQ = (0.0, 0.1)  # f ~ U(0, 0.1), radians per step
SINES_PHASE = (0.0, 0.1)  # φ ~ U(0, 0.1), radians


@dataclass(frozen=True)
class WindowData:
    x: np.ndarray  # (N, L, K) float32 in [0, 1]
    columns: list[str]  # K names
    lo: np.ndarray  # (K,) float64 per-column minimum of the raw series (unscale: lo + x·(hi − lo))
    hi: np.ndarray  # (K,) float64 per-column maximum
    source: str  # where the windows came from, e.g. the CSV path or the Sines parameters


# ---- Sines ---------------------------------------------------------------------------------------------------------

SINES_N = 10_000  # Diffusion-TS / TimeGAN Sines size
SINES_FEATURES = 5  # K of the TimeGAN Sines benchmark
SINES_SEED = 123  # Diffusion-TS `sine_dataset.py`: training and evaluation draw the same windows

def sines(n: int, length: int, *, features: int = SINES_FEATURES, seed: int = 0) -> np.ndarray:
    """`n` independent samples of the TimeGAN Sines recipe, float32 `(n, length, features)` in [0, 1]."""
    _positive(n=n, length=length, features=features)
    rng = np.random.RandomState(seed)  # legacy generator: the reference loop's draw sequence
    draws = rng.uniform(SINES_FREQ[0], SINES_FREQ[1], size=(n, features, 2))  # (n, K, 2): f then φ per feature
    freq, phase = draws[..., 0], draws[..., 1]  # (n, K) each
    t = np.arange(length, dtype=np.float64)  # (L,)
    x = np.sin(freq[:, None, :] * t[None, :, None] + phase[:, None, :])  # (n, L, K) in [-1, 1]
    return ((x + 1.0) * 0.5).astype(np.float32)


def load_sines(n: int, length: int, *, features: int = SINES_FEATURES, seed: int = 0) -> WindowData:
    """Sines as `WindowData`: the recipe already yields [0, 1], so the scaler is the identity (lo 0, hi 1)."""
    x = sines(n, length, features=features, seed=seed)  # (N, L, K)
    return WindowData(x=x, columns=[f"sine_{k}" for k in range(features)], lo=np.zeros(features),
                      hi=np.ones(features), source=f"sines(n={n}, length={length}, features={features}, seed={seed})")


def _positive(**values: int) -> None:
    for name, v in values.items():
        if int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


# ---- CSV -----------------------------------------------------------------------------------------------------------

def read_numeric_csv(path: Path, *, columns: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Numeric columns of a CSV with a header row -> (float64 `(T, K)`, the K column names used).

    `columns=None` takes every column that is not a timestamp column; otherwise exactly `columns`, in that order.
    """
    path = Path(path)
    header, rows, lines = _read_table(path)
    names = _choose_columns(path, header, rows, columns)
    data = np.empty((len(rows), len(names)), dtype=np.float64)  # (T, K)
    for j, name in enumerate(names):
        col = header.index(name)
        data[:, j] = _parse_column(path, name, [r[col] for r in rows], lines)
    return data, names


def numeric_columns(path: Path) -> list[str]:
    """The K columns `load_csv_windows` would use (the file is read and checked whole)."""
    return read_numeric_csv(path)[1]


def _read_table(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header names, data rows (all with the header's field count) and each row's line number in the file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            records = [(reader.line_num, row) for row in reader]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    while records and not records[-1][1]:
        records.pop()  # trailing blank lines
    if not records:
        raise DataError(f"{path}: empty file (expected a header row)")
    header = _check_header(path, records[0][1])
    if len(records) == 1:
        raise DataError(f"{path}: no data rows after the header")
    for line, row in records[1:]:
        if not row:
            raise DataError(f"{path}: row {line}: blank line between data rows")
        if len(row) != len(header):
            raise DataError(f"{path}: row {line}: {len(row)} fields, the header has {len(header)}")
    return header, [row for _, row in records[1:]], [line for line, _ in records[1:]]


def _check_header(path: Path, raw: list[str]) -> list[str]:
    header = [name.strip() for name in raw]
    for i, name in enumerate(header):
        if not name:
            raise DataError(f"{path}: row 1: header field {i + 1} has no column name")
        if name in header[:i]:
            raise DataError(f"{path}: row 1: duplicate column name {name}")
    return header


def _choose_columns(path: Path, header: list[str], rows: list[list[str]], columns) -> list[str]:
    if columns is None:
        stamps = {name for i, name in enumerate(header) if _is_timestamp_column(name, i, rows)}
        names = [name for name in header if name not in stamps]
        if not names:
            raise DataError(f"{path}: no numeric columns besides timestamp column(s) {', '.join(sorted(stamps))}")
        return names
    if isinstance(columns, str):
        raise TypeError(f"columns must be a list of column names, not the string {columns!r}")
    names = list(columns)
    if not names:
        raise DataError(f"{path}: no columns requested")
    for i, name in enumerate(names):
        if name not in header:
            raise DataError(f"{path}: no column {name} (columns: {', '.join(header)})")
        if name in names[:i]:
            raise DataError(f"{path}: column {name} requested twice")
    return names


def _is_timestamp_column(name: str, index: int, rows: list[list[str]]) -> bool:
    if name.lower() in TIMESTAMP_NAMES:
        return True
    return index == 0 and all(_is_date(row[0]) for row in rows)


def _is_date(cell: str) -> bool:
    text = cell.strip()
    if not text or _is_number(text):
        return False  # "20160701" parses as an ISO date but a numeric column is never dropped
    try:
        datetime.fromisoformat(text)
        return True
    except ValueError:
        pass
    for fmt in DATE_FORMATS:
        try:
            datetime.strptime(text, fmt)
            return True
        except ValueError:
            continue
    return False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse_column(path: Path, name: str, cells: list[str], lines: list[int]) -> np.ndarray:
    """One column's cells -> float64 `(T,)`; the first bad cell raises, naming its line and the column."""
    out = np.empty(len(cells), dtype=np.float64)  # (T,)
    for i, cell in enumerate(cells):
        try:
            value = float(cell)
        except ValueError:
            reason = "empty cell" if not cell.strip() else f"not a number: {cell.strip()!r}"
            raise DataError(f"{path}: row {lines[i]}, column {name}: {reason}") from None
        if not math.isfinite(value):
            raise DataError(f"{path}: row {lines[i]}, column {name}: {'NaN' if value != value else 'inf'}")
        out[i] = value
    return out


# ---- scaling and windows -------------------------------------------------------------------------------------------

def minmax_fit(data) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (last axis) min and max over every other axis: `(T, K)` or `(N, L, K)` -> `(K,)`, `(K,)` float64."""
    a = np.asarray(data, dtype=np.float64)
    if a.ndim < 1 or a.size == 0:
        raise DataError(f"minmax_fit: no values to fit (shape {a.shape})")
    flat = a.reshape(-1, a.shape[-1])  # (T, K)
    if not np.isfinite(flat).all():
        raise DataError("minmax_fit: data contains NaN or inf")
    return flat.min(axis=0), flat.max(axis=0)


def minmax_apply(data, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(data − lo) / (hi − lo) per column, float64; a constant column (span < SPAN_EPS) maps to 0."""
    return (np.asarray(data, dtype=np.float64) - lo) / _span(lo, hi)


def minmax_invert(u, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Inverse of `minmax_apply`: [0, 1] values back to the raw series' units, float64."""
    return lo + np.asarray(u, dtype=np.float64) * _span(lo, hi)


def _span(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    span = np.asarray(hi, dtype=np.float64) - np.asarray(lo, dtype=np.float64)  # (K,)
    return np.where(span < SPAN_EPS, 1.0, span)


def windows(data: np.ndarray, length: int, stride: int = 1, *, where: str = "series") -> np.ndarray:
    """Windows `data[i·stride : i·stride + length]` of a `(T, K)` series -> a contiguous copy `(N, length, K)`,
    N = (T − length) // stride + 1. `where` names the series in the error raised when T < length."""
    _positive(length=length, stride=stride)
    a = np.asarray(data)
    if a.ndim != 2:
        raise ValueError(f"windows: expected a (T, K) array, got shape {a.shape}")
    if a.shape[0] < length:
        raise DataError(f"{where}: {a.shape[0]} rows, shorter than the window length {length}")
    view = np.lib.stride_tricks.sliding_window_view(a, length, axis=0)  # (T − L + 1, K, L), no copy
    return np.ascontiguousarray(view[::stride].transpose(0, 2, 1))  # (N, L, K)


def load_csv_windows(path: Path, length: int, *, columns: list[str] | None = None) -> WindowData:
    """A benchmark CSV (Stocks, ETTh, ...) by the Diffusion-TS recipe: min-max per column on all rows, then stride-1
    windows, float32 `(rows − length + 1, length, K)` in [0, 1]."""
    path = Path(path)
    raw, names = read_numeric_csv(path, columns=columns)  # (T, K)
    lo, hi = minmax_fit(raw)  # (K,), (K,)
    scaled = minmax_apply(raw, lo, hi)  # (T, K) in [0, 1]
    x = windows(scaled, length, where=str(path)).astype(np.float32)  # (N, L, K)
    return WindowData(x=x, columns=names, lo=lo, hi=hi, source=str(path))
