"""Small file helpers shared by data sources, pipelines and evaluation: nothing half-written is ever visible."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary sibling renamed into place.

    A reader sees the old file or the whole new one, never a part; the temporary name is unique per call, so
    concurrent writers (Ray tasks) cannot collide, and it is removed if the write fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def writable_dir(preferred: Path, fallback: Path) -> Path:
    """`preferred` (created) when this process may write there, else `fallback` (created): caches live beside the
    data they derive from when they can, so every run on that data shares them."""
    try:
        preferred.mkdir(parents=True, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback
