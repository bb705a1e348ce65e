"""UCR 2018 reader: tiny .tsv fixtures written in tmp_path (never the shared archive)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from seriesforge.data.sources.ucr import (
    ON_BAD_ROW, find_datasets, format_summary, load_dataset, load_label_map, read_split, save_label_map,
    stratified_split, summary, zero_fill,
)
from seriesforge.errors import DataError


def _write_tsv(path, rows):
    """rows: list of (label, values) or raw strings; values are written with repr (round-trippable)."""
    lines = []
    for row in rows:
        if isinstance(row, str):
            lines.append(row)
            continue
        label, values = row
        lines.append("\t".join([str(label), *("NaN" if v != v else repr(float(v)) for v in values)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _make_dataset(parent, name, train, test):
    folder = parent / name
    folder.mkdir(parents=True)
    _write_tsv(folder / f"{name}_TRAIN.tsv", train)
    _write_tsv(folder / f"{name}_TEST.tsv", test)
    return folder


def _f32(values):
    return [float(np.float32(v)) for v in values]  # values a float32 holds exactly


def _bad_file(tmp_path, lines):
    return _write_tsv(tmp_path / "Bad_TRAIN.tsv", lines)


# ---- reading


def test_round_trip_values_are_exact_float32(tmp_path):
    rows = [(1, _f32([0.1, -2.5, 3.75, 1e-3])), (2, _f32([4.0, 5.5, -6.25, 7.125]))]
    split = read_split(_write_tsv(tmp_path / "A_TRAIN.tsv", rows))
    assert split.x.dtype == np.float32 and split.x.shape == (2, 4)
    np.testing.assert_array_equal(split.x, np.asarray([v for _, v in rows], dtype=np.float32))
    assert split.labels.dtype == np.int64 and split.labels.tolist() == [1, 2]
    assert split.lengths.tolist() == [4, 4] and split.skipped == []


def test_float_written_labels_and_negative_labels_parse(tmp_path):
    path = _write_tsv(tmp_path / "A_TRAIN.tsv", ["1.0000000e+00\t1\t2", "-1\t3\t4", "2.0\t5\t6", " 3 \t7\t8"])
    assert read_split(path).labels.tolist() == [1, -1, 2, 3]


def test_variable_length_keeps_trailing_nan_padding(tmp_path):
    path = _write_tsv(tmp_path / "V_TRAIN.tsv", ["1\t1\t2\t3\t4", "1\t5\t6\tNaN\tNaN", "2\t7\t8\t9\t", "2\t1\t2"])
    split = read_split(path)
    assert split.lengths.tolist() == [4, 2, 3, 2]
    assert split.x.shape == (4, 4)
    np.testing.assert_array_equal(np.isnan(split.x).sum(axis=1), [0, 2, 1, 2])
    np.testing.assert_array_equal(split.x[2, :3], [7, 8, 9])


def test_trailing_blank_lines_are_ignored(tmp_path):
    path = tmp_path / "A_TRAIN.tsv"
    path.write_text("1\t1\t2\n2\t3\t4\n\n\n")
    assert read_split(path).x.shape == (2, 2)


@pytest.mark.parametrize("lines, row, column, reason", [
    (["1\t1\t2\t3", "1\t4\t5"], 2, 4, "ragged row: 3 fields, expected 4"),
    (["1\t1\t2\t3", "1\t1\t2\t3\t4"], 2, 5, "ragged row: 5 fields, expected 4"),
    (["1\t1\t2", "1\tabc\t2"], 2, 2, "value 'abc' is not a number"),
    (["1\t1\t2\t3", "1\t1\t2\tinf"], 2, 4, "value 'inf' is not finite"),
    (["1\t1\t2", "1.5\t1\t2"], 2, 1, "label '1.5' is not an integer"),
    (["a\t1\t2", "1\t1\t2"], 1, 1, "label 'a' is not an integer"),
    (["1\t1\t2\t3\t4", "1\t1\tNaN\t3\t4"], 2, 3, "NaN inside the series"),
    (["1\t1\t2\t3\t4", "1\t1\t\t3\tNaN"], 2, 3, "NaN inside the series"),
    (["1\t1\t2\t3", "1\tNaN\tNaN\tNaN"], 2, 2, "series has no values"),
    (["1\t1\t2\t3", "1\t7\tNaN\tNaN"], 2, 3, "series has 1 point(s), need at least 2"),
    (["1\t1\t2", "", "1\t3\t4"], 2, 1, "empty row"),
    (["1,1.0,2.0"], 1, 1, "must be tab-separated"),
])
def test_bad_rows_name_file_row_and_column(tmp_path, lines, row, column, reason):
    path = _bad_file(tmp_path, lines)
    with pytest.raises(DataError, match=re.escape(f"{path}: row {row}, column {column}: ") + ".*" + re.escape(reason)):
        read_split(path)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "E_TRAIN.tsv"
    path.write_text("\n\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: empty file")):
        read_split(path)


def test_skip_leaves_bad_rows_out_and_records_them(tmp_path):
    path = _bad_file(tmp_path, ["1\t1\t2\t3", "x\t1\t2\t3", "2\t4\t5\t6", "2\t1\tNaN\t3", "1\t7\t8"])
    split = read_split(path, on_bad_row="skip")
    assert split.labels.tolist() == [1, 2]
    np.testing.assert_array_equal(split.x, [[1, 2, 3], [4, 5, 6]])
    assert [r for r, _ in split.skipped] == [2, 4, 5]
    assert "column 1" in split.skipped[0][1] and "ragged row" in split.skipped[2][1]


def test_skip_with_no_good_rows_left_still_raises(tmp_path):
    path = _bad_file(tmp_path, ["a\t1\t2", "b\t1\t2"])
    with pytest.raises(DataError, match=r"no valid rows \(2 skipped; first: row 1, column 1"):
        read_split(path, on_bad_row="skip")


def test_invalid_on_bad_row_names_the_parameter(tmp_path):
    path = _write_tsv(tmp_path / "A_TRAIN.tsv", [(1, [1, 2])])
    assert ON_BAD_ROW == ("error", "skip")
    with pytest.raises(DataError, match=r"^on_bad_row: must be one of 'error', 'skip' \(got 'drop'\)"):
        read_split(path, on_bad_row="drop")


# ---- datasets


def test_labels_are_encoded_over_train_and_test_and_saved(tmp_path):
    folder = _make_dataset(tmp_path, "Sign", [(-1, [1, 2]), (1, [3, 4]), (1, [5, 6])], [(1, [1, 1]), (-1, [2, 2])])
    ds = load_dataset(folder, normalize="none")
    assert ds.name == "Sign" and ds.label_map == {-1: 0, 1: 1} and ds.n_classes == 2
    assert ds.y_train.tolist() == [0, 1, 1] and ds.y_test.tolist() == [1, 0]
    assert ds.y_train.dtype == np.int64
    out = tmp_path / "meta" / "labels.json"
    save_label_map(ds, out)
    assert json.loads(out.read_text()) == {"dataset": "Sign", "label_map": {"-1": 0, "1": 1}}
    assert load_label_map(out) == {-1: 0, 1: 1}
    assert [p.name for p in out.parent.iterdir()] == ["labels.json"]  # no temp file left behind


def test_test_only_label_is_in_the_map(tmp_path):
    folder = _make_dataset(tmp_path, "D", [(3, [1, 2]), (5, [3, 4])], [(3, [1, 1]), (7, [2, 2])])
    ds = load_dataset(folder)
    assert ds.label_map == {3: 0, 5: 1, 7: 2}
    assert ds.y_test.tolist() == [0, 2]


def test_zscore_uses_train_statistics_only(tmp_path):
    train = [(1, [1.0, 2.0, 3.0]), (2, [5.0, 6.0, 7.0])]
    ds = load_dataset(_make_dataset(tmp_path / "a", "D", train, [(1, [4.0, 4.0, 10.0])]))
    values = np.asarray([1, 2, 3, 5, 6, 7], dtype=np.float64)
    assert ds.train_mean == pytest.approx(values.mean()) and ds.train_std == pytest.approx(values.std())
    np.testing.assert_allclose(ds.x_test, [(np.asarray([4, 4, 10]) - 4.0) / values.std()], rtol=1e-6)
    np.testing.assert_allclose(ds.x_train.mean(), 0.0, atol=1e-6)
    other = load_dataset(_make_dataset(tmp_path / "b", "D", train, [(1, [100.0, -50.0, 3.0])]))
    assert (other.train_mean, other.train_std) == (ds.train_mean, ds.train_std)
    np.testing.assert_array_equal(other.x_train, ds.x_train)


def test_zscore_ignores_padding_and_pads_both_splits_to_one_length(tmp_path):
    folder = _make_dataset(tmp_path, "V", ["1\t1\t3\tNaN", "2\t5\t7\tNaN"], ["1\t1\t2\t3\t4"])
    ds = load_dataset(folder)
    assert ds.train_mean == pytest.approx(4.0) and ds.train_std == pytest.approx(np.sqrt(5.0))
    assert ds.length == 4 and ds.x_train.shape == (2, 4) and ds.x_test.shape == (1, 4)
    assert ds.lengths_train.tolist() == [2, 2] and ds.lengths_test.tolist() == [4]
    filled, mask = zero_fill(ds.x_train)
    assert mask.sum() == 4 and filled[0, 2:].tolist() == [0.0, 0.0]


def test_normalize_none_keeps_values(tmp_path):
    ds = load_dataset(_make_dataset(tmp_path, "D", [(1, [1.5, 2.5])], [(1, [3.5, 4.5])]), normalize="none")
    assert (ds.train_mean, ds.train_std) == (0.0, 1.0)
    np.testing.assert_array_equal(ds.x_test, [[3.5, 4.5]])
    with pytest.raises(DataError, match=r"^normalize: must be one of 'zscore', 'none' \(got 'minmax'\)"):
        load_dataset(_make_dataset(tmp_path / "x", "D", [(1, [1, 2])], [(1, [1, 2])]), normalize="minmax")


def _resplit_fixture(tmp_path):
    # 60 rows of class 1, 30 of class 2, 10 of class 3; value 0 of each row is its row id in TRAIN ++ TEST
    labels = [1] * 60 + [2] * 30 + [3] * 10
    rows = [(lab, [float(i), float(i % 7), float(i % 3)]) for i, lab in enumerate(labels)]
    return _make_dataset(tmp_path, "R", rows[::2], rows[1::2]), labels


def test_resplit_is_stratified_disjoint_complete_and_seeded(tmp_path):
    folder, labels = _resplit_fixture(tmp_path)
    ds = load_dataset(folder, normalize="none", resplit=0.8, seed=0)
    assert ds.x_train.shape == (80, 3) and ds.x_test.shape == (20, 3)
    assert np.bincount(ds.y_train).tolist() == [48, 24, 8] and np.bincount(ds.y_test).tolist() == [12, 6, 2]
    ids_train, ids_test = ds.x_train[:, 0].astype(int), ds.x_test[:, 0].astype(int)
    assert set(ids_train).isdisjoint(ids_test) and sorted([*ids_train, *ids_test]) == list(range(100))
    original = np.asarray(labels)
    assert [ds.label_map[v] for v in original[ids_train]] == ds.y_train.tolist()  # rows keep their labels
    same = load_dataset(folder, normalize="none", resplit=0.8, seed=0)
    np.testing.assert_array_equal(same.x_train, ds.x_train)
    other = load_dataset(folder, normalize="none", resplit=0.8, seed=1)
    assert set(other.x_test[:, 0].astype(int)) != set(ids_test)
    # split_index points into TRAIN ++ TEST as read (TRAIN holds the even row ids, TEST the odd ones)
    merged = np.concatenate([np.arange(0, 100, 2), np.arange(1, 100, 2)])
    np.testing.assert_array_equal(merged[ds.split_index["train"]], ids_train)


def test_resplit_stats_come_from_the_new_train_part(tmp_path):
    folder, _ = _resplit_fixture(tmp_path)
    ds = load_dataset(folder, resplit=0.8, seed=3)
    raw = load_dataset(folder, normalize="none", resplit=0.8, seed=3)
    assert ds.train_mean == pytest.approx(float(np.mean(raw.x_train.astype(np.float64))))
    assert ds.train_std == pytest.approx(float(np.std(raw.x_train.astype(np.float64))))


def test_stratified_split_keeps_a_train_row_for_every_class():
    labels = np.asarray([0] * 20 + [1] * 2 + [2])
    train, test = stratified_split(labels, 0.5, seed=0)
    assert set(labels[train]) == {0, 1, 2}
    assert len(train) + len(test) == len(labels) and not set(train) & set(test)
    assert len(test) == 12  # ⌈0.5 · 23⌉


def test_invalid_resplit_names_the_parameter(tmp_path):
    folder, _ = _resplit_fixture(tmp_path)
    with pytest.raises(DataError, match=r"^resplit: must be the train fraction"):
        load_dataset(folder, resplit=80)


# ---- finding and summarising


def test_find_datasets_in_a_root_of_many_and_in_one_folder(tmp_path):
    for name in ("Beta", "Alpha", "Gamma"):
        _make_dataset(tmp_path, name, [(1, [1, 2])], [(1, [1, 2])])
    (tmp_path / "notes").mkdir()
    assert [p.name for p in find_datasets(tmp_path)] == ["Alpha", "Beta", "Gamma"]
    assert find_datasets(tmp_path / "Beta") == [tmp_path / "Beta"]


def test_find_datasets_errors_name_root_or_missing_file(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"ucr:{tmp_path}: no UCR datasets found")):
        find_datasets(tmp_path)
    folder = tmp_path / "Half"
    folder.mkdir()
    _write_tsv(folder / "Half_TRAIN.tsv", [(1, [1, 2])])
    with pytest.raises(DataError, match=re.escape(f"{folder / 'Half_TEST.tsv'}: file not found")):
        find_datasets(tmp_path)


def test_summary_and_its_table(tmp_path):
    _make_dataset(tmp_path, "Fixed", [(1, [1, 2, 3]), (2, [3, 4, 5])], [(1, [1, 2, 3])] * 3)
    _make_dataset(tmp_path, "Vary", ["1\t1\t2\tNaN", "2\t1\t2\t3", "3\t4\t5\tNaN"], ["4\t1\t2\tNaN"])
    rows = summary(tmp_path)
    assert rows == [
        {"name": "Fixed", "train": 2, "test": 3, "length": 3, "variable_length": False, "classes": 2, "skipped": 0},
        {"name": "Vary", "train": 3, "test": 1, "length": 3, "variable_length": True, "classes": 4, "skipped": 0},
    ]
    assert format_summary(rows).splitlines() == [
        "name   train  test        length  classes",
        "Fixed      2     3             3        2",
        "Vary       3     1  max 3 (vary)        4",
    ]


def test_summary_reports_skipped_rows(tmp_path):
    _make_dataset(tmp_path, "D", ["1\t1\t2", "x\t1\t2"], ["1\t1\t2"])
    rows = summary(tmp_path, on_bad_row="skip")
    assert rows[0]["train"] == 1 and rows[0]["skipped"] == 1
    assert format_summary(rows).splitlines()[-1] == "bad rows skipped: D=1"
