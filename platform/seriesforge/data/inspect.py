"""`seriesforge data captions inspect DIR`: what a caption corpus holds, without starting Ray."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from seriesforge.data.sources.captions import _TSFRAGMENT, detect_layout
from seriesforge.errors import DataError


def inspect_captions(root: Path, examples: int = 3) -> str:
    """A short report: layout, files, rows per length / domain / level, a few captions."""
    layout = detect_layout(root)
    lengths, domains, levels, samples = Counter(), Counter(), Counter(), []
    for f in layout.files:
        try:
            if layout.kind == "tsfragment-csv":
                _count_tsfragment(f, lengths, domains, levels, samples, examples)
            elif layout.kind == "parquet":
                _count_parquet(f, lengths, domains, levels, samples, examples)
            else:
                raise DataError(f"{f}: inspect reads tsfragment-csv and parquet corpora, not {layout.kind}")
        except (OSError, ValueError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(f"{f}: unreadable ({err})") from None
    total = sum(lengths.values())
    lines = [f"corpus   {root}", f"layout   {layout.kind} ({len(layout.files)} files)", f"pairs    {total}"]
    lines.append("lengths  " + ", ".join(f"{k}: {v}" for k, v in sorted(lengths.items())))
    lines.append("domains  " + ", ".join(f"{k}: {v}" for k, v in domains.most_common()))
    lines.append("levels   " + ", ".join(f"{k}: {v}" for k, v in levels.most_common()))
    lines += ["examples"] + [f"  - {s}" for s in samples[:examples]]
    return "\n".join(lines)


def _count_tsfragment(f: Path, lengths, domains, levels, samples, examples: int) -> None:
    import pandas as pd

    m = _TSFRAGMENT.match(f.name)
    frame = pd.read_csv(f, usecols=["Text"])
    lengths[int(m.group("length"))] += len(frame)
    domains[m.group("source")] += len(frame)
    levels["fragment"] += len(frame)
    samples.extend(frame["Text"].astype(str).head(max(0, examples - len(samples))))


def _count_parquet(f: Path, lengths, domains, levels, samples, examples: int) -> None:
    columns = [c for c in ("length", "domain", "level", "caption") if c in pq.ParquetFile(f).schema_arrow.names]
    table = pq.read_table(f, columns=columns)
    for name, counter in (("length", lengths), ("domain", domains), ("level", levels)):
        if name in table.column_names:
            counter.update(table.column(name).to_pylist())
    if "length" not in table.column_names:
        lengths["?"] += table.num_rows
    if "caption" in table.column_names:
        samples.extend(table.column("caption").slice(0, max(0, examples - len(samples))).to_pylist())
