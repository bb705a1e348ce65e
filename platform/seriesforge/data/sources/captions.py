"""Caption corpora: find the layout of a corpus directory and turn raw rows into the internal schema.

Internal schema, one row per caption–series pair:
    id (str) · series (float32, (L,), scaled) · length (int) · caption (str) · domain (str) · level (str)

Layouts read (detected from the files present):
    tsfragment-csv   the published TSFragment-600K files `embedding_cleaned_<source>_<L>.csv`
                     (columns SampleID, SampleNumID, TimeInterval, Text, TextEmbedding, OT)
    parquet          *.parquet in the internal schema (what `seriesforge data captions make` writes)
    jsonl            *.jsonl with the internal schema's fields
    hf-disk          a `datasets` dataset saved with `save_to_disk` (internal schema's fields)

Pure numpy: the Ray Data pipeline calls `normalize_batch` inside `map_batches`. A bad row is an error that
names the file and the row. With `on_bad_row="skip"` bad rows are left out instead, and each one is recorded
(where + reason, the text the error would carry) in a JSON-lines skip log that `read_skip_log` reads back; rows
are never dropped silently. A file missing a required column is not a row problem and always raises.

Checking and scaling are vectorised over the whole batch (one flat float64 array, `reduceat` over row offsets);
per-row Python work (messages, exact reasons) is done only for rows that fail.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from seriesforge.errors import DataError
from seriesforge.files import write_text_atomically

_TSFRAGMENT = re.compile(r"^embedding_cleaned_(?P<source>.+)_(?P<length>\d+)\.csv$")
TSFRAGMENT_COLUMNS = ("SampleID", "SampleNumID", "TimeInterval", "Text", "TextEmbedding", "OT")
SCALINGS = ("series_minmax", "none")
ON_BAD_ROW = ("error", "skip")
CONTENT_ID_TAG = "content-"  # ids of rows from files with no id column: FILE:content-<digest of caption and values>
_NUMERIC = "biuf"  # dtype kinds that convert to float64 exactly as np.asarray(row, dtype=float64) does


@dataclass(frozen=True)
class CorpusLayout:
    kind: str  # "tsfragment-csv" | "parquet" | "jsonl" | "hf-disk"
    files: tuple[Path, ...]  # data files (for hf-disk: the dataset directory)


def detect_layout(root: Path) -> CorpusLayout:
    """Find what kind of corpus `root` holds; raise `DataError` naming the directory if nothing readable."""
    root = Path(root)
    csvs = sorted(p for p in root.glob("*.csv") if _TSFRAGMENT.match(p.name))
    if csvs:
        return CorpusLayout("tsfragment-csv", tuple(csvs))
    parquet = sorted(p for p in root.rglob("*.parquet") if not _hidden(root, p))
    if parquet:
        return CorpusLayout("parquet", tuple(parquet))
    jsonl = sorted(root.glob("*.jsonl"))
    if jsonl:
        return CorpusLayout("jsonl", tuple(jsonl))
    if (root / "dataset_info.json").exists() or (root / "state.json").exists():
        return CorpusLayout("hf-disk", (root,))
    raise DataError(f"captions:{root}: no corpus files found (expected embedding_cleaned_<source>_<L>.csv, "
                    "*.parquet, *.jsonl or a datasets save_to_disk folder)")


def _hidden(root: Path, p: Path) -> bool:
    return any(part.startswith((".", "_")) for part in p.relative_to(root).parts)


def fingerprint(layout: CorpusLayout) -> str:
    """Cheap content key of a corpus: file names, sizes and modification times."""
    import hashlib

    h = hashlib.sha256(layout.kind.encode())
    for f in layout.files:
        paths = sorted(f.rglob("*")) if f.is_dir() else [f]
        for p in paths:
            if p.is_file():
                st = p.stat()
                h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def normalize_batch(batch: dict[str, np.ndarray], *, layout: str, scaling: str, on_bad_row: str = "error",
                    skip_log: str | None = None) -> dict[str, np.ndarray]:
    """Raw rows of one layout -> internal schema, validated and scaled. `batch["path"]` names the source file.

    on_bad_row="error": the first bad row raises `DataError` ("FILE: row ...: reason"). "skip": bad rows are left
    out of the result (which may then be empty) and, when `skip_log` names a directory, written to one new
    `<uuid4 hex>.jsonl` file there, one {"where", "reason"} line per skipped row.
    """
    if on_bad_row not in ON_BAD_ROW:
        raise DataError(f"data.on_bad_row: must be one of {', '.join(map(repr, ON_BAD_ROW))} (got {on_bad_row!r})")
    rows = _tsfragment_rows(batch) if layout == "tsfragment-csv" else _schema_rows(batch)
    # Phases in the order the checks always ran: in error mode the first failing phase's first row raises.
    phases = list(rows.problems)
    ok = np.ones(rows.n, dtype=bool)
    for problems in phases:
        ok[list(problems)] = False
    candidates = np.flatnonzero(ok)
    series_problems, out_series, lengths = _check_and_scale(_take(rows.series, candidates), scaling)
    phases.append({int(candidates[j]): reason for j, reason in series_problems.items()})
    bad = [(i, reason) for problems in phases for i, reason in problems.items()]
    if not bad:
        keep = None
    elif on_bad_row == "error":
        first = next(problems for problems in phases if problems)
        i = min(first)
        raise DataError(f"{rows.where(i)}: {first[i]}")
    else:
        bad.sort()
        if skip_log is not None:
            _write_skip_log(skip_log, [{"where": rows.where(i), "reason": reason} for i, reason in bad])
        ok[[i for i, _ in bad]] = False
        keep = np.flatnonzero(ok)  # == the candidates that passed the series check, the rows of out_series
    return {
        "id": _subset(rows.ids, keep),
        "series": _as_object_array(out_series),
        "length": lengths.astype(np.int32),
        "caption": _subset(rows.captions, keep),
        "domain": _subset(rows.domains, keep),
        "level": _subset(rows.levels, keep),
    }


def read_skip_log(directory) -> list[dict]:
    """Every record `normalize_batch` wrote to the skip log `directory`: by file name, then line; [] if none."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    records = []
    for path in sorted(p for p in directory.glob("*.jsonl") if not p.name.startswith(".")):
        with open(path, encoding="utf-8") as f:
            records += [json.loads(line) for line in f if line.strip()]
    return records


def _write_skip_log(directory, records: list[dict]) -> None:
    """One new file per batch, written under a temporary name and renamed: readers never see half a file."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_text_atomically(directory / f"{uuid.uuid4().hex}.jsonl", "".join(json.dumps(r) + "\n" for r in records))


@dataclass
class _Rows:
    """One batch's rows in the internal schema, before the series are checked and scaled."""

    n: int
    ids: np.ndarray  # object array of str
    series: object  # raw series rows: a sequence of row-likes or an (n, ...) numeric array
    captions: np.ndarray  # object array of stripped str (None where the caption is bad)
    domains: np.ndarray
    levels: np.ndarray
    where: Callable[[int], str]  # row index -> "FILE: row ..." (built only for rows that fail)
    problems: list[dict[int, str]]  # per check phase, in order: row index -> reason


def _as_object_array(series: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(series), dtype=object)
    out[:] = series  # keeps each row its own (L,) array even when all lengths agree
    return out


def _strs(column, n: int, default: str) -> np.ndarray:
    if column is None:
        return np.full(n, default, dtype=object)
    out = np.empty(n, dtype=object)
    out[:] = list(map(str, column))
    return out


def _subset(values: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    return values if keep is None else values[keep]


def _take(series, index: np.ndarray):
    if isinstance(series, np.ndarray):
        return series if len(index) == len(series) else series[index]
    return [series[i] for i in index]


def _tsfragment_rows(batch: dict[str, np.ndarray]) -> _Rows:
    missing = [c for c in ("SampleID", "SampleNumID", "Text", "OT") if c not in batch]
    if missing:
        raise DataError(f"{_first_path(batch)}: missing column(s) {', '.join(missing)} "
                        f"(TSFragment-600K columns: {', '.join(TSFRAGMENT_COLUMNS)})")
    ids, series, where, domains, ot_problems = [], [], [], [], {}
    for i in range(len(batch["OT"])):
        path = str(batch["path"][i]) if "path" in batch else "?"
        m = _TSFRAGMENT.match(Path(path).name)
        source = m.group("source") if m else "unknown"
        row = f"SampleID={batch['SampleID'][i]}, SampleNumID={batch['SampleNumID'][i]}"
        where.append(f"{path}: row {row}")
        ids.append(f"{source}_{Path(path).stem.rsplit('_', 1)[-1]}_{batch['SampleID'][i]}_{batch['SampleNumID'][i]}")
        values = _parse_list_literal(batch["OT"][i])
        if values is None:
            ot_problems[i] = "field OT is not a list of numbers"
        series.append(values)
        domains.append(source)
    n = len(ids)
    captions, caption_problems = _captions(batch["Text"])
    return _Rows(n, _strs(ids, n, ""), series, captions, _strs(domains, n, ""), np.full(n, "fragment", dtype=object),
                 where.__getitem__, [ot_problems, caption_problems])


def _schema_rows(batch: dict[str, np.ndarray]) -> _Rows:
    missing = [c for c in ("series", "caption") if c not in batch]
    if missing:
        raise DataError(f"{_first_path(batch)}: missing column(s) {', '.join(missing)} "
                        "(need at least series and caption)")
    n = len(batch["series"])
    paths = batch.get("path")

    def path(i: int) -> str:
        return str(paths[i]) if paths is not None else "?"

    if "id" in batch:
        ids = _strs(batch["id"], n, "")
    else:
        # Named by file and content. Not by position: Ray hands a file over in several blocks (a 50 000-row file
        # came as 15), so a row's place in its batch is not its place in the file, and such ids collided.
        names = {p: Path(p).name for p in {path(i) for i in range(n)}}
        ids = _strs([f"{names[path(i)]}:{CONTENT_ID_TAG}{_content_digest(batch['caption'][i], batch['series'][i])}"
                     for i in range(n)], n, "")
    captions, caption_problems = _captions(batch["caption"])
    return _Rows(n, ids, batch["series"], captions, _strs(batch.get("domain"), n, "unknown"),
                 _strs(batch.get("level"), n, "unknown"), lambda i: f"{path(i)}: row id={ids[i]}", [caption_problems])


def _content_digest(caption, series) -> str:
    """16 hex digits of a row's caption and values; any row, even a malformed one, gets one (it is flagged later)."""
    try:
        values = np.asarray(series, dtype=np.float64).tobytes()
    except (TypeError, ValueError):
        values = repr(series).encode()
    return hashlib.blake2b(str(caption).encode() + b"\0" + values, digest_size=8).hexdigest()


def _first_path(batch: dict[str, np.ndarray]) -> str:
    return str(batch["path"][0]) if "path" in batch and len(batch["path"]) else "corpus"


def _captions(column) -> tuple[np.ndarray, dict[int, str]]:
    """Stripped captions (None where bad) and {row: "empty caption"} for None, NaN or blank values."""
    out = np.empty(len(column), dtype=object)
    try:
        stripped = list(map(str.strip, column))  # the common case: every caption is a str
    except TypeError:
        stripped = [_caption(value) for value in column]
    out[:] = stripped
    if all(stripped):
        return out, {}
    return out, {i: "empty caption" for i, text in enumerate(stripped) if not text}


def _caption(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value).strip() or None


def _parse_list_literal(text) -> np.ndarray | None:
    """`OT` is written as a Python list literal; parse it safely (never eval). None if it is not a list of numbers."""
    try:
        values = ast.literal_eval(str(text).strip())
    except (ValueError, SyntaxError):
        return None
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, (int, float)) for v in values):
        return None
    return np.asarray(values, dtype=np.float64)


def _series_problem(raw) -> tuple[np.ndarray | None, str | None]:
    """One row's series as flat float64, or the reason it is bad (the reference, per-row check)."""
    try:
        values = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None, "series is not numeric"
    if values.size < 2:
        return None, f"series has {values.size} point(s), need at least 2"
    bad = ~np.isfinite(values)
    if bad.any():
        kind = "NaN" if np.isnan(values[bad]).any() else "inf"
        return None, f"series contains {kind} at position {int(np.argmax(bad))}"
    return values, None


def _flatten(series) -> tuple[np.ndarray, np.ndarray] | None:
    """All rows as one flat float64 array plus per-row lengths, or None when the rows do not concatenate
    as 1-D numeric rows (then each row goes through the per-row check)."""
    n = len(series)
    if isinstance(series, np.ndarray) and series.dtype != object:
        if series.ndim < 2 or series.dtype.kind not in _NUMERIC:
            return None
        width = int(np.prod(series.shape[1:]))  # each row flattened, as the per-row check does
        return series.astype(np.float64).reshape(-1), np.full(n, width, dtype=np.int64)
    if n == 0:
        return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)
    try:
        flat = np.concatenate(series)
    except (TypeError, ValueError):  # a scalar/None/str row, ragged nesting, or dtypes that do not promote
        return None
    if flat.ndim != 1 or flat.dtype.kind not in _NUMERIC:
        return None
    lengths = np.fromiter(map(len, series), dtype=np.int64, count=n)
    if int(lengths.sum()) != flat.size:
        return None
    return flat.astype(np.float64, copy=False), lengths


def _check_and_scale(series, scaling: str) -> tuple[dict[int, str], list[np.ndarray], np.ndarray]:
    """Check every row (>= 2 points, all finite) and scale the good ones, vectorised over the batch.

    Returns ({row: reason} of bad rows, the good rows' scaled float32 (L,) arrays in order, their lengths).
    """
    flattened = _flatten(series)
    if flattened is None:  # rare: rows that are not plain 1-D numbers; check them one by one
        checked = [_series_problem(raw) for raw in series]
        problems = {i: reason for i, (_, reason) in enumerate(checked) if reason is not None}
        good = [values for values, _ in checked if values is not None]
        flat = np.concatenate(good) if good else np.empty(0, dtype=np.float64)
        lengths = np.fromiter(map(len, good), dtype=np.int64, count=len(good))
    else:
        flat, lengths = flattened
        bad = lengths < 2
        finite = np.isfinite(flat)
        if not finite.all():
            ends = np.cumsum(lengths)
            bad[np.searchsorted(ends, np.flatnonzero(~finite), side="right")] = True
        problems = {}
        if bad.any():
            for i in np.flatnonzero(bad).tolist():
                problems[i] = _series_problem(series[i])[1]  # the exact reason, for failing rows only
            flat = flat[np.repeat(~bad, lengths)]
            lengths = lengths[~bad]
    return problems, _split(_scale_flat(flat, lengths, scaling), lengths), lengths


def _scale_flat(flat: np.ndarray, lengths: np.ndarray, scaling: str) -> np.ndarray:
    """Scale every row of a flat float64 array at once; float32 out.

    series_minmax: per-series min-max to [0, 1] (models.md §2 `variant: clean`): captions describe shape, not level.
    Same float64 arithmetic as the per-row (values - lo) / span, so results agree bit for bit.
    """
    if scaling == "none" or flat.size == 0:
        return flat.astype(np.float32)
    starts = np.cumsum(lengths) - lengths  # every row has >= 2 points here, so the offsets strictly increase
    lo = np.minimum.reduceat(flat, starts)
    hi = np.maximum.reduceat(flat, starts)
    span = np.where(hi > lo, hi - lo, 1.0)  # a flat series maps to zeros rather than dividing by zero
    return ((flat - np.repeat(lo, lengths)) / np.repeat(span, lengths)).astype(np.float32)


def _split(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """Per-row (L,) views of one flat array (rows do not overlap)."""
    if len(lengths) and (lengths == lengths[0]).all():
        return list(flat.reshape(len(lengths), int(lengths[0])))
    ends = np.cumsum(lengths).tolist()
    return [flat[a:b] for a, b in zip([0, *ends[:-1]], ends)]
