"""What runs inside Ray Data's map tasks when a caption corpus becomes the training table, and the held-out rule.

Kept apart from `pipeline` on purpose: a map task's worker imports the module that defines its function, and
`pipeline` imports torch (through the embedding pass). Every worker of the table pass then held torch after it:
importing `pipeline` costs ~290 MB of private memory against ~45 MB for this module (measured 2026-12-01), and
those pooled workers were what made the ingest benchmark's peak larger at 600k rows than at 60k.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pyarrow as pa

from seriesforge.data.sources.captions import normalize_batch

HOLDOUT_BUCKETS = 10_000  # a row's `holdout` column is crc32(id) % HOLDOUT_BUCKETS; data.val_fraction cuts it


def holdout_buckets(ids: Any) -> list[int]:
    """Each id's held-out bucket: crc32 of its text, stable across runs and processes (unlike hash())."""
    return [zlib.crc32(str(i).encode()) % HOLDOUT_BUCKETS for i in ids]


def validated_table(batch: dict[str, np.ndarray], **checks: Any) -> pa.Table:
    """`normalize_batch` (validate + scale), returned as Arrow with `series` a plain list<float32> column.

    Left to Ray, the ragged (L,) rows would become a variable-shaped tensor column, which Ray converts back to
    numpy row by row (~37k rows/s on the 2-core VM). A list column instead is sorted into length buckets and
    turned into (B, L) with one reshape per bucket (`batches.columns_as_numpy`).
    """
    out = normalize_batch(batch, **checks)
    lengths = out.pop("length").astype(np.int64)  # (B,)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(list(out.pop("series"))) if len(lengths) else np.zeros(0)  # (sum L,)
    series = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(np.float32, copy=False)))
    columns = {"series": series, "length": pa.array(lengths.astype(np.int32)),
               "holdout": pa.array(holdout_buckets(out["id"]), pa.int16())}
    columns.update({name: pa.array(values.tolist(), pa.string()) for name, values in out.items()})
    return pa.table(columns)
