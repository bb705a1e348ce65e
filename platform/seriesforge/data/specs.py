"""Data SPECs: one small grammar names data everywhere (train, eval, tune, serve).

    captions:DIR      a text–series caption corpus (TSFragment-600K CSVs, parquet, JSONL, or a saved
                      `datasets` dataset) in DIR

The data issue adds `ucr:DIR`, `sines:L` and `csv:PATH:L` here; every caller goes through `parse_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seriesforge.errors import DataError

KINDS = {
    "captions": "captions:DIR — a text–series caption corpus directory",
}


@dataclass(frozen=True)
class DataSpec:
    kind: str
    path: Path | None = None
    length: int | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}" if self.path else self.kind


def parse_spec(text: str) -> DataSpec:
    """Parse a SPEC string; raise `DataError` naming the SPEC for anything unknown or unreadable."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS:
        known = "; ".join(KINDS.values())
        raise DataError(f"--data {text!r}: unknown data kind {kind!r} (known: {known})")
    if kind == "captions":
        path = Path(rest).expanduser()
        if not rest:
            raise DataError(f"--data {text!r}: captions needs a directory, e.g. captions:./corpus")
        if not path.is_dir():
            raise DataError(f"--data {text!r}: directory {path} does not exist")
        return DataSpec(kind="captions", path=path.resolve())
    raise AssertionError(kind)  # unreachable: KINDS is checked above


def check_readable(text: str) -> DataSpec:
    """Parse a SPEC and make sure it names readable data, before any run directory or Ray is started."""
    spec = parse_spec(text)
    if spec.kind == "captions":
        from seriesforge.data.sources.captions import detect_layout

        detect_layout(spec.path)
    return spec
