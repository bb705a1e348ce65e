"""The Ray Data pipeline's whole-corpus checks: bad rows (error or skip, never silent) and duplicate ids."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from seriesforge.config import DataConfig
from seriesforge.errors import DataError
from seriesforge.protocols import DataNeeds

NO_TEXT = DataNeeds(text_encoder=None)


def write_jsonl(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True)
    with open(folder / "part.jsonl", "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return folder


def good_rows(n: int, length: int = 24) -> list[dict]:
    return [{"id": f"r{i}", "series": [float((i + t) % 7) for t in range(length)], "caption": f"row {i}"}
            for i in range(n)]


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) if cache.exists() else []


def prepare(corpus: Path, tmp_path: Path, **data):
    from seriesforge.data.pipeline import prepare_training_data

    cfg = DataConfig(spec=f"captions:{corpus}", lengths=[24], **data)
    return prepare_training_data(cfg, NO_TEXT, fallback_cache=tmp_path / "fallback")


def test_bad_row_is_an_error_by_default_and_nothing_is_left(ray_local, tmp_path):
    rows = good_rows(20)
    rows[7]["series"][3] = math.nan
    corpus = write_jsonl(tmp_path / "c", rows)
    with pytest.raises(Exception, match=r"part\.jsonl: row id=r7: series contains NaN at position 3"):
        prepare(corpus, tmp_path)
    cache = corpus / "_seriesforge_cache"
    assert leftovers(cache) == [] and not any(cache.glob("*-none-*")), "a failed pass left a table behind"


def test_skip_mode_counts_lists_and_reports_bad_rows(ray_local, tmp_path):
    rows = good_rows(20)
    rows[7]["series"][3] = math.nan
    rows[11]["caption"] = "   "
    corpus = write_jsonl(tmp_path / "c", rows)
    data = prepare(corpus, tmp_path, on_bad_row="skip")
    assert data.rows_per_length == {24: 18}
    reasons = sorted((r["where"].split(": ")[-1], r["reason"]) for r in data.skipped_rows)
    assert reasons == [("row id=r11", "empty caption"), ("row id=r7", "series contains NaN at position 3")]
    assert "2 bad row(s) skipped (data.on_bad_row=skip)" in data.describe()
    again = prepare(corpus, tmp_path, on_bad_row="skip")  # cache hit: the skips are still reported
    assert again.table == data.table and len(again.skipped_rows) == 2
    with pytest.raises(Exception, match="series contains NaN"):  # a skip-mode table never serves error mode
        prepare(corpus, tmp_path)
    assert leftovers(corpus / "_seriesforge_cache") == []


def test_duplicate_ids_are_an_error_in_either_mode(ray_local, tmp_path):
    rows = good_rows(10)
    rows[4]["id"] = "r2"
    corpus = write_jsonl(tmp_path / "c", rows)
    for mode in ("error", "skip"):
        with pytest.raises(DataError, match=r"duplicate id 'r2' \(2 rows; 1 id\(s\) repeated in all\)"):
            prepare(corpus, tmp_path, on_bad_row=mode)
    cache = corpus / "_seriesforge_cache"
    assert leftovers(cache) == [] and [p.name for p in cache.iterdir()] == []


def test_a_parquet_corpus_without_ids_keeps_every_row_however_ray_splits_its_files(ray_local, tmp_path):
    """Ray hands a file over in several blocks; ids made from a row's place in its batch collided across them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = good_rows(400)
    corpus = tmp_path / "noid"
    corpus.mkdir()
    table = pa.table({"series": [r["series"] for r in rows], "caption": [r["caption"] for r in rows]})
    pq.write_table(table, corpus / "part-0.parquet", row_group_size=50)
    data = prepare(corpus, tmp_path)
    assert data.rows_per_length == {24: 400}
    ids = pq.read_table(str(data.table / "length=24"), columns=["id"]).column("id").to_pylist()
    assert len(set(ids)) == 400
    # two identical rows in such a file share their content id: an error that says why
    pq.write_table(pa.concat_tables([table, table.slice(7, 1)]), corpus / "part-0.parquet")
    with pytest.raises(DataError, match=r"duplicate id 'part-0\.parquet:content-[0-9a-f]{16}' \(2 rows; 1 id.*"
                                        r"no id column, so rows are named by file and content"):
        prepare(corpus, tmp_path)


def test_validation_rows_are_held_out_stably_and_disjointly(ray_local, tmp_path):
    from seriesforge.data.pipeline import TRAIN_KEY, training_datasets

    corpus = write_jsonl(tmp_path / "corpus", good_rows(400))
    split_cfg = DataConfig(spec=f"captions:{corpus}", lengths=[24], val_fraction=0.25)
    data = prepare(corpus, tmp_path, val_fraction=0.25)
    assert data.datasets[TRAIN_KEY].columns() == ["series"]  # workers read only what a batch carries
    ids, train_rows = training_datasets(data.table, split_cfg, data.rows_per_length,
                                        ("id",))  # the same split, read for the rows' ids
    train_ids = {r["id"] for r in ids[TRAIN_KEY].take_all()}
    assert train_rows == data.train_rows == len(train_ids)
    val_ids = {r["id"] for r in ids["val_24"].take_all()}
    assert not train_ids & val_ids and len(train_ids | val_ids) == 400
    assert 60 < len(val_ids) < 140  # crc32 buckets: about a quarter
    again = prepare(corpus, tmp_path, val_fraction=0.25)  # same split from the cached table
    again_ids, _ = training_datasets(again.table, split_cfg, again.rows_per_length, ("id",))
    assert {r["id"] for r in again_ids["val_24"].take_all()} == val_ids
    assert "holdout" in data.fingerprint and "holdout" not in prepare(corpus, tmp_path).fingerprint


def test_training_streams_whole_table_files_as_blocks_and_splits_only_large_ones(ray_local, tmp_path, monkeypatch):
    # Ray Data's default cut every ~20 000-row file into 10 blocks, and per-block work was most of an epoch
    from seriesforge.data import pipeline
    from seriesforge.data.pipeline import TRAIN_KEY, training_datasets

    corpus = write_jsonl(tmp_path / "corpus", good_rows(300) + [{**r, "id": f"b{i}"} for i, r in
                                                                 enumerate(good_rows(200, length=48))])
    cfg = DataConfig(spec=f"captions:{corpus}", lengths=[24, 48])
    data = pipeline.prepare_training_data(cfg, NO_TEXT, fallback_cache=tmp_path / "fallback")
    files = list(data.table.rglob("*.parquet"))
    stream = data.datasets[TRAIN_KEY].materialize()
    assert stream.num_blocks() == len(files) and stream.count() == 500
    monkeypatch.setattr(pipeline, "TRAIN_BLOCK_BYTES", 1024)  # long series: files above it are split
    split, rows = training_datasets(data.table, cfg, data.rows_per_length, ("series",))
    split = split[TRAIN_KEY].materialize()
    assert split.num_blocks() > len(files) and split.count() == rows == 500


def test_a_split_that_leaves_one_side_empty_is_a_clear_error(ray_local, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus", good_rows(3))
    with pytest.raises(DataError, match="val_fraction=0.0001"):
        prepare(corpus, tmp_path, val_fraction=0.0001)


def test_the_table_pass_map_tasks_do_not_import_torch():
    """A map task's worker imports the module of its function and keeps it for the rest of the run: torch there
    cost each of the table pass's pooled workers ~250 MB (data.table_rows)."""
    import subprocess
    import sys

    check = ("import sys, seriesforge.data.table_rows, seriesforge.data.series_splits; "
             "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
