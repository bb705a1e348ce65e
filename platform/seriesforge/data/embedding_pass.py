"""The caption-embedding pass: embed the captions the store lacks, on a Ray Data actor pool of encoders.

    distinct captions of the training table --(store.missing)--> captions never embedded by this encoder
    --sorted by length, in blocks--> map_batches(CaptionEmbedder, ActorPoolStrategy) --> store.add every
    `flush_every` captions

Sorting by length means each encoder batch pads to nearly the same token count (about a third less compute than
random order on the stand-in corpus). Flushing as it goes means an interrupted pass resumes where it stopped: the
next run finds those captions in the store.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
import torch

from seriesforge.data.embedding_store import EmbeddingLookup, EmbeddingStore

ENCODER_BATCH = 128  # captions per forward pass
BLOCK_ROWS = 4096  # captions per Ray Data block: enough blocks to keep every actor of the pool busy
FLUSH_EVERY = 50_000  # captions embedded between two store versions


@dataclass
class EmbeddingReport:
    lookup: EmbeddingLookup
    distinct: int  # distinct captions in the table
    embedded: int  # of which embedded by this pass (the rest were cache hits)
    seconds: float

    def describe(self) -> str:
        hits = self.distinct - self.embedded
        text = f"caption embeddings {self.lookup.path}: {self.distinct} distinct captions, {hits} from the cache"
        if self.embedded:
            text += f", {self.embedded} embedded now ({self.embedded / max(self.seconds, 1e-9):.0f} captions/s)"
        return text


class CaptionEmbedder:
    """Ray Data actor: loads the sentence encoder once, embeds each batch's captions -> (B, E) float32."""

    def __init__(self, encoder: str, threads: int) -> None:
        from seriesforge.nn.text_encoder import load_encoder

        # Ray pins actors to one intra-op thread; the embedding pass runs alone, before training, so it may
        # use the machine's cores (split across the pool).
        torch.set_num_threads(threads)
        self.encoder = load_encoder(encoder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode([str(c) for c in batch["caption"]], batch_size=ENCODER_BATCH)
        return {"row": batch["row"], "caption_embedding": vectors}


def table_captions(table: Path) -> list[str]:
    """Every caption of a training table (one per row, repeats included), read column-only."""
    captions: list[str] = []
    for part in sorted(table.glob("length=*/**/*.parquet")):  # the table's data files, not its skip log
        captions += pq.read_table(part, columns=["caption"]).column("caption").to_pylist()
    return captions


def fill_store(captions: list[str], store: EmbeddingStore, encoder: str, num_actors: int, *,
               flush_every: int = FLUSH_EVERY, progress: bool = True) -> EmbeddingReport:
    """Make sure every caption has an embedding in `store`; embed only the missing distinct ones."""
    tic = time.perf_counter()
    distinct = len(set(captions))
    todo, hashes = store.missing(captions)
    if todo:
        _embed_into(store, todo, hashes, encoder, num_actors, flush_every, progress)
    lookup = store.current()
    assert lookup is not None, "store is empty after filling it"
    return EmbeddingReport(lookup=lookup, distinct=distinct, embedded=len(todo),
                           seconds=time.perf_counter() - tic)


def _embed_into(store: EmbeddingStore, todo: list[str], hashes: np.ndarray, encoder: str, num_actors: int,
                flush_every: int, progress: bool) -> None:
    from tqdm import tqdm

    order = np.argsort([len(c) for c in todo], kind="stable")  # similar lengths share a batch: little padding
    blocks = [pa.table({"row": order[i:i + BLOCK_ROWS], "caption": [todo[j] for j in order[i:i + BLOCK_ROWS]]})
              for i in range(0, len(order), BLOCK_ROWS)]
    threads = max(1, (os.cpu_count() or 1) // num_actors)
    ds = ray.data.from_arrow(blocks).map_batches(
        CaptionEmbedder, fn_constructor_args=(encoder, threads), compute=ray.data.ActorPoolStrategy(size=num_actors),
        batch_size=ENCODER_BATCH, batch_format="numpy")
    rows, vectors = [], []
    with tqdm(total=len(todo), unit="caption", desc="embed captions", disable=not progress, mininterval=2.0) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            rows.append(batch["row"])
            vectors.append(batch["caption_embedding"])
            bar.update(len(batch["row"]))
            if sum(len(r) for r in rows) >= flush_every:
                _flush(store, hashes, rows, vectors)
        if rows:
            _flush(store, hashes, rows, vectors)


def _flush(store: EmbeddingStore, hashes: np.ndarray, rows: list, vectors: list) -> None:
    index = np.concatenate(rows)
    store.add(hashes[index], np.concatenate(vectors))
    rows.clear()
    vectors.clear()
