"""Writing generated series: .npy, .parquet or .png, chosen by the output file's suffix. Atomic writes.

A generation is a list of `Panel`s: one (caption or None, length) cell holding its samples (k, K, L).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seriesforge.errors import RequestError

SUFFIXES = (".npy", ".parquet", ".png")


@dataclass
class Panel:
    caption: str | None
    length: int
    samples: np.ndarray  # (k, K, L)


def check_output_path(path: Path, num_lengths: int) -> None:
    if path.suffix not in SUFFIXES:
        raise RequestError(f"--out {path}: unknown suffix {path.suffix!r} (use {', '.join(SUFFIXES)})")
    if path.suffix == ".npy" and num_lengths > 1:
        raise RequestError(f"--out {path}: a .npy holds one length; use .parquet or .png for several")
    if not path.parent.exists():
        raise RequestError(f"--out {path}: directory {path.parent} does not exist")


def write(path: Path, panels: list[Panel]) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        {".npy": _write_npy, ".parquet": _write_parquet, ".png": _write_png}[path.suffix](tmp, panels)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_npy(path: Path, panels: list[Panel]) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.concatenate([p.samples for p in panels]).astype(np.float32))  # (N, K, L)


def _write_parquet(path: Path, panels: list[Panel]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {"caption": [], "length": [], "sample": [], "series": []}
    for p in panels:
        for i, s in enumerate(p.samples):
            rows["caption"].append(p.caption)
            rows["length"].append(p.length)
            rows["sample"].append(i)
            rows["series"].append(s.reshape(s.shape[0], -1).astype(np.float32).tolist())  # (K, L)
    pq.write_table(pa.table(rows), path)


def _write_png(path: Path, panels: list[Panel]) -> None:
    """A grid: one row per caption, one column per length, each cell overlaying its samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    captions = list(dict.fromkeys(p.caption for p in panels))
    lengths = list(dict.fromkeys(p.length for p in panels))
    fig, axes = plt.subplots(len(captions), len(lengths), squeeze=False,
                             figsize=(3.2 * len(lengths), 2.4 * len(captions)))
    for p in panels:
        ax = axes[captions.index(p.caption)][lengths.index(p.length)]
        for s in p.samples:
            for k in range(s.shape[0]):
                ax.plot(np.arange(p.length), s[k], lw=1.2, alpha=0.8)
        ax.set_title(f"L = {p.length}", fontsize=9)
        ax.tick_params(labelsize=7)
    for r, caption in enumerate(captions):
        label = _wrap(caption or "(unconditional)", 38)
        axes[r][0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center", labelpad=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:4])
