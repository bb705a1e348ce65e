"""UCR, Sines and CSV windows as Ray Datasets, the prepared parquet layout and `seriesforge data ucr prepare`.

Tiny fixtures written in tmp directories (never ../shared); one embedded Ray for the session (`ray_local`).
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from seriesforge.cli import main
from seriesforge.data import series_splits
from seriesforge.data.series_splits import (holdout_buckets, load_spec_datasets, load_ucr_archive, read_prepared,
                                            select_ucr_datasets, write_prepared)
from seriesforge.data.sources.ucr import load_dataset, load_label_map
from seriesforge.data.sources.windows import load_csv_windows, load_sines
from seriesforge.errors import DataError


@pytest.fixture(scope="module")
def archive(tmp_path_factory, make_ucr_dataset):
    """Three datasets: GunPoint (labels 1/2), ArrowHead (labels 3/5/7), Vary (labels -1/1, NaN-padded rows)."""
    root = tmp_path_factory.mktemp("ucr")
    rng = np.random.RandomState(0)
    make_ucr_dataset(root, "GunPoint", [(1 + i % 2, rng.randn(6)) for i in range(10)],
                     [(1 + i % 2, rng.randn(6)) for i in range(6)])
    make_ucr_dataset(root, "ArrowHead", [((3, 5, 7)[i % 3], rng.randn(5)) for i in range(9)],
                     [((3, 5, 7)[i % 3], rng.randn(5)) for i in range(3)])
    make_ucr_dataset(root, "Vary", ["-1\t1\t2\tNaN\tNaN", "1\t3\t4\t5\t6", "1\t2\t2\t4\tNaN"], ["-1\t1\t5\t2\tNaN"])
    return root


def rows_of(ds) -> dict[str, np.ndarray]:
    """Every row of a Dataset as numpy columns, ordered by `index`."""
    batches = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    columns = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
    order = np.argsort(columns["index"])
    return {key: value[order] for key, value in columns.items()}


# ---- SPECs ----------------------------------------------------------------------------------------------------------

def test_ucr_spec_gives_train_and_test_with_encoded_labels(ray_local, archive):
    splits = load_spec_datasets(f"ucr:{archive / 'ArrowHead'}")
    assert (splits.name, splits.length, splits.channels, splits.num_classes) == ("ArrowHead", 5, 1, 3)
    assert splits.label_map == {3: 0, 5: 1, 7: 2}
    expected = load_dataset(archive / "ArrowHead")
    for ds, x, y in ((splits.train, expected.x_train, expected.y_train), (splits.test, expected.x_test,
                                                                           expected.y_test)):
        batch = next(iter(ds.iter_batches(batch_size=2, batch_format="numpy")))
        assert batch["series"].shape == (2, 5, 1) and batch["series"].dtype == np.float32  # (B, L, K)
        assert batch["label"].dtype == np.int64 and batch["index"].dtype == np.int64
        rows = rows_of(ds)
        np.testing.assert_array_equal(rows["series"][:, :, 0], x)
        np.testing.assert_array_equal(rows["label"], y)
        assert set(rows["label"]) == {0, 1, 2} and rows["index"].tolist() == list(range(len(y)))
    assert splits.meta["normalization"] == {"kind": "zscore", "mean": expected.train_mean, "std": expected.train_std}


def test_variable_length_rows_are_zero_padded_with_their_length(ray_local, archive):
    splits = load_spec_datasets(f"ucr:{archive / 'Vary'}", on_bad_row="skip")
    rows = rows_of(splits.train)
    assert rows["length"].tolist() == [2, 4, 3] and splits.meta["variable_length"] is True
    assert rows["series"][0, 2:, 0].tolist() == [0.0, 0.0] and not np.isnan(rows["series"]).any()
    assert splits.label_map == {-1: 0, 1: 1} and rows["label"].tolist() == [0, 1, 1]


def test_sines_spec_gives_windows_and_no_test_split(ray_local):
    splits = load_spec_datasets("sines:16", seed=3, sines_n=40)
    assert splits.test is None and (splits.length, splits.channels, splits.num_classes) == (16, 5, 0)
    rows = rows_of(splits.train)
    assert set(rows) == {"series", "index", "holdout"} and rows["series"].dtype == np.float32
    assert rows["holdout"].tolist() == holdout_buckets(rows["index"])  # the held-out rule of caption rows
    np.testing.assert_array_equal(rows["series"], load_sines(40, 16, seed=3).x)  # (N, L, K)


def test_csv_spec_gives_stride_one_windows(ray_local, tmp_path):
    path = tmp_path / "etth.csv"
    path.write_text("date,HUFL,OT\n" + "".join(f"2016-07-01 {h:02d}:00:00,{h % 5}.5,{h * h}\n" for h in range(12)))
    splits = load_spec_datasets(f"csv:{path}:4")
    assert splits.name == "etth" and splits.test is None and (splits.length, splits.channels) == (4, 2)
    rows = rows_of(splits.train)
    np.testing.assert_array_equal(rows["series"], load_csv_windows(path, 4).x)  # (9, 4, 2)
    assert splits.meta["columns"] == ["HUFL", "OT"] and splits.meta["rows"] == {"train": 9}


def test_captions_spec_and_misplaced_resplit_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=rf"--data 'captions:{tmp_path}': caption corpora are read by the caption "
                                        r"pipeline"):
        load_spec_datasets(f"captions:{tmp_path}")
    with pytest.raises(DataError, match=r"^resplit: only ucr: specs .*'sines:24'"):
        load_spec_datasets("sines:24", resplit=0.8)


# ---- many UCR datasets ----------------------------------------------------------------------------------------------

def test_all_and_a_list_each_give_one_dataset_per_name(ray_local, archive):
    every = load_ucr_archive(archive, "all", on_bad_row="skip")
    assert list(every) == ["ArrowHead", "GunPoint", "Vary"]
    assert [s.num_classes for s in every.values()] == [3, 2, 2]
    chosen = load_ucr_archive(archive, "GunPoint, ArrowHead")
    assert list(chosen) == ["GunPoint", "ArrowHead"] and chosen["GunPoint"].train.count() == 10
    assert [p.name for p in select_ucr_datasets(archive, ["Vary"])] == ["Vary"]


def test_unknown_dataset_names_are_listed_with_the_available_ones(archive):
    with pytest.raises(DataError, match=r"^datasets: Nope, Other not found under .* \(available: ArrowHead, "
                                        r"GunPoint, Vary\)"):
        select_ucr_datasets(archive, "GunPoint,Nope,Other")
    with pytest.raises(DataError, match="no dataset names given"):
        select_ucr_datasets(archive, " , ")


def test_two_shards_are_disjoint_and_cover_every_row(ray_local):
    ds = load_spec_datasets("sines:8", sines_n=50).train
    for shards in ([rows_of(s)["index"] for s in ds.split(2)], streamed_shards(ds)):
        assert len(shards) == 2 and not set(shards[0]) & set(shards[1])
        assert sorted([*shards[0], *shards[1]]) == list(range(50))


def streamed_shards(ds) -> list[np.ndarray]:
    """`streaming_split` iterators must be read concurrently (as Train workers do): one thread per shard."""
    iterators = ds.streaming_split(2, equal=False)
    seen: list[list[int]] = [[], []]

    def consume(i: int) -> None:
        for batch in iterators[i].iter_batches(batch_size=8, batch_format="numpy"):
            seen[i].extend(batch["index"].tolist())

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return [np.asarray(s) for s in seen]


# ---- prepared layout ------------------------------------------------------------------------------------------------

def test_write_then_read_prepared_gives_the_same_rows_and_label_map(ray_local, archive, tmp_path):
    splits = load_spec_datasets(f"ucr:{archive / 'GunPoint'}", resplit=0.75, seed=1)
    target = write_prepared(splits, tmp_path / "out")
    assert target == tmp_path / "out" / "GunPoint"
    assert sorted(p.name for p in target.iterdir()) == ["label_map.json", "meta.json", "test", "train"]
    assert load_label_map(target / "label_map.json") == {1: 0, 2: 1}
    meta = json.loads((target / "meta.json").read_text())
    assert (meta["length"], meta["channels"], meta["num_classes"], meta["resplit"], meta["seed"]) == (6, 1, 2, 0.75, 1)
    assert meta["source"] == str((archive / "GunPoint").resolve()) and len(meta["split_index"]["train"]) == 12
    back = read_prepared(target)
    assert (back.name, back.length, back.channels, back.num_classes, back.label_map, back.meta) == (
        splits.name, splits.length, splits.channels, splits.num_classes, splits.label_map, splits.meta)
    for before, after in ((splits.train, back.train), (splits.test, back.test)):
        a, b = rows_of(before), rows_of(after)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_windows_are_written_without_test_split_or_label_map(ray_local, tmp_path):
    splits = load_spec_datasets("sines:8", sines_n=12)
    target = write_prepared(splits, tmp_path)
    assert sorted(p.name for p in target.iterdir()) == ["meta.json", "train"]
    back = read_prepared(target)  # lazy: rows are compared in the UCR round trip (each parquet read costs seconds)
    assert back.test is None and back.label_map == {} and (back.length, back.channels) == (8, 5)
    assert back.meta["normalization"] == {"kind": "minmax", "lo": [0.0] * 5, "hi": [1.0] * 5}


def test_a_crash_mid_write_leaves_nothing_and_an_existing_target_is_kept(ray_local, tmp_path, monkeypatch):
    splits = load_spec_datasets("sines:8", sines_n=12)

    def crash(*_):
        raise OSError("disk full")

    monkeypatch.setattr(series_splits, "_write_meta", crash)  # after the parquet files, before the rename
    with pytest.raises(OSError, match="disk full"):
        write_prepared(splits, tmp_path)
    assert list(tmp_path.iterdir()) == [], "a failed write left files behind"
    monkeypatch.undo()
    (tmp_path / "sines").mkdir()
    with pytest.raises(DataError, match=rf"^{tmp_path / 'sines'}: already exists"):
        write_prepared(splits, tmp_path)
    with pytest.raises(DataError, match=r"meta\.json: file not found"):
        read_prepared(tmp_path / "sines")


# ---- CLI ------------------------------------------------------------------------------------------------------------

def test_cli_prepare_writes_each_dataset_and_prints_a_table(ray_local, archive, tmp_path, capsys):
    out = tmp_path / "prepared"
    code = main(["data", "ucr", "prepare", str(archive), "--datasets", "GunPoint,Vary", "--out", str(out),
                 "--on-bad-row", "skip"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "train", "test", "length", "classes"]
    assert lines[1].split() == ["GunPoint", "10", "6", "6", "2"]
    assert lines[2].split() == ["Vary", "3", "1", "max", "4", "(vary)", "2"]
    assert lines[-1].startswith(f"wrote 2 dataset(s) to {out}")
    assert sorted(p.name for p in out.iterdir()) == ["GunPoint", "Vary"]
    assert load_label_map(out / "Vary" / "label_map.json") == {-1: 0, 1: 1}
    assert read_prepared(out / "GunPoint").test.count() == 6
    code = main(["data", "ucr", "prepare", str(archive), "--datasets", "Vary", "--out", str(out)])
    assert code == 2 and "already holds Vary" in capsys.readouterr().err


def test_cli_prepare_unknown_dataset_fails_naming_it(archive, tmp_path, capsys):
    code = main(["data", "ucr", "prepare", str(archive), "--datasets", "GunPoint,Nope", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "datasets: Nope not found" in err[0] and "available: ArrowHead" in err[0]
    assert not (tmp_path / "o").exists()
