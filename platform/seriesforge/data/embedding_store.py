"""Caption embeddings cached once per distinct caption, keyed by encoder and caption hash.

Shape legend: N stored captions · B captions in a batch · E embedding width (384 for all-MiniLM-L6-v2).

Captions repeat (the 60k stand-in corpus has 32k distinct ones; real corpora reuse templates too), and embedding is
by far the slowest step before training on CPU. So embeddings are not stored per row but per caption text:

    <cache>/embeddings/<encoder key>/
        CURRENT                      name of the live version, replaced atomically
        v-<id>/hashes.npy            (N,) |S16 blake2b-128 digests of the UTF-8 captions, sorted
        v-<id>/vectors.npy           (N, E) float32, row i embeds the caption whose digest is hashes[i]
        v-<id>/meta.json             {"encoder", "count", "dim"}

A version is never modified once written: `add` writes a new one beside it and then flips CURRENT, so a reader (a
training worker memory-mapping the arrays) never sees a half-written store, and an embedding pass that dies keeps
everything it had flushed. The previous version is kept for runs that still read it; older ones are removed.
This module does not import Ray: the pipeline fills the store, training workers only read it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from seriesforge.errors import DataError
from seriesforge.files import write_text_atomically

HASH_DTYPE = np.dtype("S16")
_CURRENT = "CURRENT"


def caption_hashes(captions: Iterable[str]) -> np.ndarray:
    """(B,) |S16 digests: the same caption text always gives the same key, whatever corpus or row it is in."""
    return np.array([hashlib.blake2b(str(c).encode("utf-8"), digest_size=16).digest() for c in captions],
                    dtype=HASH_DTYPE)


class EmbeddingLookup:
    """Read-only view of one store version; arrays are memory-mapped, so workers on one node share the pages."""

    def __init__(self, version_dir: Path) -> None:
        self.path = Path(version_dir)
        try:
            self.hashes = np.load(self.path / "hashes.npy", mmap_mode="r")  # (N,) sorted
            self.vectors = np.load(self.path / "vectors.npy", mmap_mode="r")  # (N, E)
        except FileNotFoundError as exc:
            raise DataError(f"caption-embedding cache {self.path} is incomplete ({exc.filename} missing); "
                            "delete it to rebuild") from exc

    def __len__(self) -> int:
        return len(self.hashes)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        """(B,) bool: which digests have a stored embedding."""
        if not len(self.hashes):
            return np.zeros(len(hashes), dtype=bool)
        pos = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
        return self.hashes[pos] == hashes

    def embed(self, captions: Sequence[str]) -> np.ndarray:
        """(B, E) float32 embeddings of `captions`, each looked up by its hash."""
        hashes = caption_hashes(captions)
        found = self.contains(hashes)
        if not found.all():
            first = str(captions[int(np.argmin(found))])
            raise DataError(f"caption-embedding cache {self.path}: no embedding for {int((~found).sum())} of "
                            f"{len(hashes)} captions (first: {first!r}); the cache does not match this corpus — "
                            "delete it to rebuild")
        pos = np.searchsorted(self.hashes, hashes)
        return np.ascontiguousarray(self.vectors[pos], dtype=np.float32)


class EmbeddingStore:
    """All caption embeddings made by one encoder under one cache directory."""

    def __init__(self, root: Path, encoder_key: str) -> None:
        self.encoder_key = encoder_key
        self.root = Path(root) / encoder_key.replace("/", "_")

    def current(self) -> EmbeddingLookup | None:
        """The live version, or None when nothing has been stored yet."""
        pointer = self.root / _CURRENT
        if not pointer.exists():
            return None
        return EmbeddingLookup(self.root / pointer.read_text().strip())

    def missing(self, captions: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The distinct captions with no stored embedding yet, and their (M,) digests."""
        hashes = caption_hashes(captions)
        hashes, first = np.unique(hashes, return_index=True)
        live = self.current()
        if live is not None:
            keep = ~live.contains(hashes)
            hashes, first = hashes[keep], first[keep]
        return [str(captions[i]) for i in first], hashes

    def add(self, hashes: np.ndarray, vectors: np.ndarray) -> EmbeddingLookup:
        """Store (M,) digests with their (M, E) embeddings as a new version; returns it."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(hashes) != len(vectors) or vectors.ndim != 2:
            raise ValueError(f"EmbeddingStore.add: {len(hashes)} hashes but vectors of shape {vectors.shape}")
        live = self.current()
        if live is not None:
            if live.dim != vectors.shape[1]:
                raise DataError(f"caption-embedding cache {self.root}: stored width {live.dim}, new embeddings "
                                f"{vectors.shape[1]} — two different encoders share the key {self.encoder_key!r}")
            hashes = np.concatenate([np.asarray(live.hashes), hashes])
            vectors = np.concatenate([np.asarray(live.vectors), vectors])
        hashes, first = np.unique(hashes, return_index=True)  # sorted; a caption stored twice keeps one row
        return self._write_version(hashes, vectors[first], previous=live)

    def _write_version(self, hashes: np.ndarray, vectors: np.ndarray, previous: EmbeddingLookup | None):
        name = f"v-{uuid.uuid4().hex[:12]}"
        tmp = self.root / f".tmp-{name}"
        tmp.mkdir(parents=True)
        try:
            np.save(tmp / "hashes.npy", hashes.astype(HASH_DTYPE, copy=False))
            np.save(tmp / "vectors.npy", vectors)
            meta = {"encoder": self.encoder_key, "count": int(len(hashes)), "dim": int(vectors.shape[1])}
            (tmp / "meta.json").write_text(json.dumps(meta))
            tmp.rename(self.root / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        write_text_atomically(self.root / _CURRENT, name)
        self._prune(keep={name, previous.path.name if previous else name})
        return EmbeddingLookup(self.root / name)

    def _prune(self, keep: set[str]) -> None:
        for old in self.root.glob("v-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
