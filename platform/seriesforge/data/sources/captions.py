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
names the file and the row; rows are never dropped silently.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seriesforge.errors import DataError

_TSFRAGMENT = re.compile(r"^embedding_cleaned_(?P<source>.+)_(?P<length>\d+)\.csv$")
TSFRAGMENT_COLUMNS = ("SampleID", "SampleNumID", "TimeInterval", "Text", "TextEmbedding", "OT")
SCALINGS = ("series_minmax", "none")


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


def normalize_batch(batch: dict[str, np.ndarray], *, layout: str, scaling: str) -> dict[str, np.ndarray]:
    """Raw rows of one layout -> internal schema, validated and scaled. `batch["path"]` names the source file."""
    rows = _tsfragment_rows(batch) if layout == "tsfragment-csv" else _schema_rows(batch)
    ids, series, captions, domains, levels, where = rows
    out_series = []
    for i, raw in enumerate(series):
        values = _check_row(raw, captions[i], where[i])
        out_series.append(_scale(values, scaling))
    return {
        "id": np.asarray(ids, dtype=object),
        "series": _as_object_array(out_series),
        "length": np.asarray([len(s) for s in out_series], dtype=np.int32),
        "caption": np.asarray([c.strip() for c in captions], dtype=object),
        "domain": np.asarray(domains, dtype=object),
        "level": np.asarray(levels, dtype=object),
    }


def _as_object_array(series: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(series), dtype=object)
    out[:] = series  # keeps each row its own (L,) array even when all lengths agree
    return out


def _tsfragment_rows(batch: dict[str, np.ndarray]):
    missing = [c for c in ("SampleID", "SampleNumID", "Text", "OT") if c not in batch]
    if missing:
        raise DataError(f"{_first_path(batch)}: missing column(s) {', '.join(missing)} "
                        f"(TSFragment-600K columns: {', '.join(TSFRAGMENT_COLUMNS)})")
    ids, series, where, domains = [], [], [], []
    for i in range(len(batch["OT"])):
        path = str(batch["path"][i]) if "path" in batch else "?"
        m = _TSFRAGMENT.match(Path(path).name)
        source = m.group("source") if m else "unknown"
        row = f"SampleID={batch['SampleID'][i]}, SampleNumID={batch['SampleNumID'][i]}"
        where.append(f"{path}: row {row}")
        ids.append(f"{source}_{Path(path).stem.rsplit('_', 1)[-1]}_{batch['SampleID'][i]}_{batch['SampleNumID'][i]}")
        series.append(_parse_list_literal(batch["OT"][i], where[-1]))
        domains.append(source)
    captions = [_caption(batch["Text"][i], where[i]) for i in range(len(ids))]
    return ids, series, captions, domains, ["fragment"] * len(ids), where


def _schema_rows(batch: dict[str, np.ndarray]):
    missing = [c for c in ("series", "caption") if c not in batch]
    if missing:
        raise DataError(f"{_first_path(batch)}: missing column(s) {', '.join(missing)} "
                        "(need at least series and caption)")
    n = len(batch["series"])
    paths = [str(batch["path"][i]) if "path" in batch else "?" for i in range(n)]
    ids = [str(batch["id"][i]) if "id" in batch else f"{Path(paths[i]).name}:{i}" for i in range(n)]
    where = [f"{paths[i]}: row id={ids[i]}" for i in range(n)]
    captions = [_caption(batch["caption"][i], where[i]) for i in range(n)]
    domains = [str(batch["domain"][i]) if "domain" in batch else "unknown" for i in range(n)]
    levels = [str(batch["level"][i]) if "level" in batch else "unknown" for i in range(n)]
    return ids, list(batch["series"]), captions, domains, levels, where


def _first_path(batch: dict[str, np.ndarray]) -> str:
    return str(batch["path"][0]) if "path" in batch and len(batch["path"]) else "corpus"


def _caption(value, where: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise DataError(f"{where}: empty caption")
    text = str(value)
    if not text.strip():
        raise DataError(f"{where}: empty caption")
    return text


def _parse_list_literal(text, where: str) -> np.ndarray:
    """`OT` is written as a Python list literal; parse it safely (never eval)."""
    try:
        values = ast.literal_eval(str(text).strip())
    except (ValueError, SyntaxError):
        raise DataError(f"{where}: field OT is not a list of numbers") from None
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, (int, float)) for v in values):
        raise DataError(f"{where}: field OT is not a list of numbers")
    return np.asarray(values, dtype=np.float64)


def _check_row(raw, caption: str, where: str) -> np.ndarray:
    try:
        values = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{where}: series is not numeric") from None
    if values.size < 2:
        raise DataError(f"{where}: series has {values.size} point(s), need at least 2")
    bad = ~np.isfinite(values)
    if bad.any():
        kind = "NaN" if np.isnan(values[bad]).any() else "inf"
        raise DataError(f"{where}: series contains {kind} at position {int(np.argmax(bad))}")
    return values


def _scale(values: np.ndarray, scaling: str) -> np.ndarray:
    """Per-series min-max to [0, 1] (models.md §2 `variant: clean`): captions describe shape, not level."""
    if scaling == "none":
        return values.astype(np.float32)
    lo, hi = values.min(), values.max()
    span = hi - lo if hi > lo else 1.0  # a flat series maps to zeros rather than dividing by zero
    return ((values - lo) / span).astype(np.float32)
