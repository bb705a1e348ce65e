"""Reading caption corpora: layouts, validation with errors naming file and row, and data SPECs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from seriesforge.data.sources.captions import detect_layout, normalize_batch, read_skip_log
from seriesforge.data.specs import parse_spec
from seriesforge.errors import DataError


def _schema_batch(series, captions, path="part-0.parquet"):
    n = len(series)
    out = np.empty(n, dtype=object)
    out[:] = [s if isinstance(s, np.ndarray) else np.asarray(s, dtype=np.float64) for s in series]
    return {"id": np.asarray([f"r{i}" for i in range(n)], dtype=object), "series": out,
            "caption": np.asarray(captions, dtype=object), "path": np.asarray([path] * n, dtype=object)}


def test_layouts_are_detected(tiny_corpus, tiny_tsfragment, tmp_path):
    assert detect_layout(tiny_corpus).kind == "parquet"
    assert detect_layout(tiny_tsfragment).kind == "tsfragment-csv"
    (tmp_path / "a.jsonl").write_text('{"series": [1, 2], "caption": "x"}\n')
    assert detect_layout(tmp_path).kind == "jsonl"
    with pytest.raises(DataError, match="no corpus files found"):
        detect_layout(tmp_path / "empty" if (tmp_path / "empty").mkdir() is None else tmp_path)


def test_normalize_scales_each_series_to_unit_range():
    out = normalize_batch(_schema_batch([[1, 3, 2], [5, 5, 5, 5]], ["a", "b"]), layout="parquet",
                          scaling="series_minmax")
    np.testing.assert_allclose(out["series"][0], [0, 1, 0.5])
    np.testing.assert_allclose(out["series"][1], [0, 0, 0, 0])  # flat series: zeros, no division by zero
    assert list(out["length"]) == [3, 4]


@pytest.mark.parametrize("series, caption, message", [
    ([1.0, np.nan, 2.0], "ok", "part-0.parquet: row id=r0: series contains NaN at position 1"),
    ([1.0, np.inf], "ok", "row id=r0: series contains inf at position 1"),
    ([1.0], "ok", "row id=r0: series has 1 point"),
    ([1.0, 2.0], "   ", "row id=r0: empty caption"),
])
def test_bad_rows_name_file_and_row(series, caption, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        normalize_batch(_schema_batch([series], [caption]), layout="parquet", scaling="none")


def test_tsfragment_rows_parse_safely_and_name_sample_ids():
    batch = {"SampleID": np.asarray([3, 4]), "SampleNumID": np.asarray([1, 2]),
             "Text": np.asarray(["rises", "falls"], dtype=object),
             "OT": np.asarray(["[1.0, 2.0, 3.0]", "__import__('os')"], dtype=object),
             "path": np.asarray(["/c/embedding_cleaned_ETTh1_24.csv"] * 2, dtype=object)}
    with pytest.raises(DataError, match=r"embedding_cleaned_ETTh1_24.csv: row SampleID=4, SampleNumID=2: "
                                        r"field OT is not a list of numbers"):
        normalize_batch(batch, layout="tsfragment-csv", scaling="none")
    batch["OT"][1] = "[3, 2, 1]"
    out = normalize_batch(batch, layout="tsfragment-csv", scaling="none")
    assert list(out["id"]) == ["ETTh1_24_3_1", "ETTh1_24_4_2"]
    assert list(out["domain"]) == ["ETTh1", "ETTh1"]


def test_missing_columns_are_named():
    with pytest.raises(DataError, match="missing column"):
        normalize_batch({"series": np.asarray([[1.0, 2.0]])}, layout="parquet", scaling="none")


def test_specs(tmp_path):
    assert parse_spec(f"captions:{tmp_path}").path == tmp_path.resolve()
    with pytest.raises(DataError, match="unknown data kind 'parquet'"):
        parse_spec("parquet:/x")
    with pytest.raises(DataError, match="does not exist"):
        parse_spec(f"captions:{tmp_path / 'nope'}")
    with pytest.raises(DataError, match="unknown data kind"):
        parse_spec("no-colon-here")


# --- the vectorised check/scale against a plain per-row reference, and on_bad_row="skip" ---------------------------

def _reference(batch, scaling):
    """The obvious per-row implementation (what normalize_batch did before it was vectorised)."""
    series = []
    for raw in batch["series"]:
        v = np.asarray(raw, dtype=np.float64).reshape(-1)
        if scaling != "none":
            lo, hi = v.min(), v.max()
            v = (v - lo) / (hi - lo if hi > lo else 1.0)
        series.append(v.astype(np.float32))
    n = len(series)
    ids = [str(x) for x in batch["id"]] if "id" in batch else None  # content ids: checked where they are made
    return {"id": ids, "series": series, "length": [len(v) for v in series],
            "caption": [str(c).strip() for c in batch["caption"]],
            "domain": [str(x) for x in batch.get("domain", ["unknown"] * n)],
            "level": [str(x) for x in batch.get("level", ["unknown"] * n)]}


def _assert_same(out, ref):
    assert out["id"].dtype == object and out["series"].dtype == object and out["length"].dtype == np.int32
    assert out["caption"].dtype == object and out["domain"].dtype == object and out["level"].dtype == object
    assert out["series"].shape == (len(ref["series"]),)
    for key in ("id", "caption", "domain", "level"):
        assert ref[key] is None or list(out[key]) == ref[key], key
    assert list(out["length"]) == ref["length"]
    for got, want in zip(out["series"], ref["series"]):
        assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)  # exact, not approximately equal


@pytest.mark.parametrize("scaling", ["series_minmax", "none"])
def test_vectorised_path_matches_per_row_reference(scaling):
    rng = np.random.default_rng(3)
    lengths = [24, 2, 96, 48, 3, 24, 7, 96, 2, 48]
    series = [rng.normal(rng.uniform(-1e3, 1e3), rng.uniform(1e-3, 1e3), n).astype(np.float32) for n in lengths]
    series[3] = np.full(48, 7.25, dtype=np.float32)  # flat: zeros under min-max
    series[4] = [1, 5, 3]  # a plain list of ints
    series[6] = rng.normal(size=7)  # float64
    batch = _schema_batch(series, [f"  caption {i} " for i in range(len(series))])
    batch["domain"] = np.asarray(["trend"] * len(series), dtype=object)
    out = normalize_batch(batch, layout="parquet", scaling=scaling)
    _assert_same(out, _reference(batch, scaling))
    assert out["series"][3].max() == (0 if scaling != "none" else 7.25)

    for skip in ("error", "skip"):  # equal lengths, n == L, and a 2-D numeric column (Ray's fixed-shape tensors)
        square = _schema_batch([rng.normal(size=3) for _ in range(3)], ["a", "b", "c"])
        _assert_same(normalize_batch(square, layout="jsonl", scaling=scaling, on_bad_row=skip),
                     _reference(square, scaling))
        square["series"] = np.stack(list(square["series"]))
        _assert_same(normalize_batch(square, layout="jsonl", scaling=scaling, on_bad_row=skip),
                     _reference(square, scaling))


def test_rows_that_do_not_concatenate_take_the_per_row_path_with_the_same_result():
    rows = [np.arange(4.0).reshape(4, 1), [3, 1, 2], np.asarray([2.0, 9.0])]  # a (L, 1) row flattens as before
    batch = _schema_batch(rows, ["a", "b", "c"])
    del batch["id"]  # ids then come from the file name and the row's content
    out = normalize_batch(batch, layout="parquet", scaling="series_minmax")
    _assert_same(out, _reference(batch, "series_minmax"))
    assert len(set(out["id"])) == 3 and all(i.startswith("part-0.parquet:content-") for i in out["id"])
    # named by content, not position: the same row gets the same id in any batch of its file
    later = _schema_batch([rows[2]], ["c"])
    del later["id"]
    assert normalize_batch(later, layout="parquet", scaling="series_minmax")["id"][0] == out["id"][2]


def test_real_corpus_batch_matches_reference(tiny_corpus):
    t = pq.read_table(sorted(tiny_corpus.rglob("*.parquet"))[0])
    batch = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
    batch["path"] = np.asarray(["/c/part-00000.parquet"] * len(t), dtype=object)
    assert len(set(map(len, batch["series"]))) > 1  # mixed lengths in one batch
    for scaling in ("series_minmax", "none"):
        _assert_same(normalize_batch(batch, layout="parquet", scaling=scaling), _reference(batch, scaling))


_BAD_ROWS = [  # (series, caption, reason): one bad row of each kind
    ([1.0, np.nan, 2.0, np.inf], "ok", "series contains NaN at position 1"),
    ([1.0, 2.0, -np.inf], "ok", "series contains inf at position 2"),
    ([1.0], "ok", "series has 1 point(s), need at least 2"),
    ([], "ok", "series has 0 point(s), need at least 2"),
    (None, "ok", "series has 1 point(s), need at least 2"),  # np.asarray(None, float64) is one NaN
    (["1.0", "x"], "ok", "series is not numeric"),
    ([1.0, 2.0], "   ", "empty caption"),
    ([1.0, 2.0], None, "empty caption"),
    ([1.0, 2.0], float("nan"), "empty caption"),
]


@pytest.mark.parametrize("series, caption, reason", _BAD_ROWS)
def test_skip_drops_exactly_the_bad_row_and_logs_it(tmp_path, series, caption, reason):
    good = [[4.0, 2.0, 3.0], [1.0, 1.0], [0.0, 5.0, 10.0, 2.5], [9.0, 8.0]]
    rows = good[:2] + [series] + good[2:]
    captions = ["a", "b", caption, "c", "d"]
    batch = _schema_batch([[0.0, 0.0]] * 5, captions)
    batch["series"][:] = [r if r is None else np.asarray(r, dtype=object if "x" in r else np.float64) for r in rows]
    log = tmp_path / "skipped"
    with pytest.raises(DataError) as err:  # error mode: the same text, raised
        normalize_batch(batch, layout="parquet", scaling="series_minmax", skip_log=str(log))
    assert str(err.value) == f"part-0.parquet: row id=r2: {reason}"
    assert read_skip_log(log) == []  # error mode never logs

    out = normalize_batch(batch, layout="parquet", scaling="series_minmax", on_bad_row="skip", skip_log=str(log))
    assert list(out["id"]) == ["r0", "r1", "r3", "r4"]
    assert list(out["caption"]) == ["a", "b", "c", "d"]
    assert list(out["length"]) == [3, 2, 4, 2]
    np.testing.assert_array_equal(out["series"][2], np.asarray([0.0, 0.5, 1.0, 0.25], dtype=np.float32))
    assert read_skip_log(log) == [{"where": "part-0.parquet: row id=r2", "reason": reason}]
    assert [p.name for p in log.iterdir()][0].endswith(".jsonl") and len(list(log.iterdir())) == 1  # no temp left


def test_skip_keeps_row_order_and_logs_each_bad_row_once(tmp_path):
    batch = _schema_batch([[1.0, np.nan], [1.0, 2.0], [np.inf], [3.0, 4.0], [5.0, 6.0]], ["a", "b", "c", "", "e"])
    out = normalize_batch(batch, layout="parquet", scaling="none", on_bad_row="skip", skip_log=str(tmp_path))
    assert list(out["id"]) == ["r1", "r4"]
    np.testing.assert_array_equal(out["series"][1], np.asarray([5.0, 6.0], dtype=np.float32))
    assert read_skip_log(tmp_path) == [
        {"where": "part-0.parquet: row id=r0", "reason": "series contains NaN at position 1"},
        {"where": "part-0.parquet: row id=r2", "reason": "series has 1 point(s), need at least 2"},
        {"where": "part-0.parquet: row id=r3", "reason": "empty caption"},
    ]
    with pytest.raises(DataError, match="row id=r1: series contains NaN"):  # error mode: the first bad row
        normalize_batch(_schema_batch([[1.0, 2.0], [1.0, np.nan], [np.nan, 1.0]], ["a", "b", "c"]),
                        layout="parquet", scaling="none")


def test_skip_on_a_batch_where_every_row_is_bad_returns_empty_arrays(tmp_path):
    batch = _schema_batch([[1.0], [np.nan, 1.0], [2.0, 3.0]], ["a", "b", " "])
    out = normalize_batch(batch, layout="parquet", scaling="series_minmax", on_bad_row="skip", skip_log=str(tmp_path))
    assert set(out) == {"id", "series", "length", "caption", "domain", "level"}
    for key, dtype in [("id", object), ("series", object), ("length", np.int32), ("caption", object),
                       ("domain", object), ("level", object)]:
        assert out[key].shape == (0,) and out[key].dtype == dtype, key
    assert [r["where"] for r in read_skip_log(tmp_path)] == [f"part-0.parquet: row id=r{i}" for i in range(3)]


def test_skip_without_bad_rows_or_without_a_log_writes_nothing(tmp_path):
    batch = _schema_batch([[1.0, 2.0], [3.0, 4.0]], ["a", "b"])
    out = normalize_batch(batch, layout="parquet", scaling="none", on_bad_row="skip", skip_log=str(tmp_path / "log"))
    assert list(out["id"]) == ["r0", "r1"] and not (tmp_path / "log").exists()
    batch = _schema_batch([[1.0, 2.0], [3.0]], ["a", "b"])
    out = normalize_batch(batch, layout="parquet", scaling="none", on_bad_row="skip")  # no log: still skipped
    assert list(out["id"]) == ["r0"]


def test_skip_log_has_one_file_per_batch_read_back_in_file_name_order(tmp_path):
    for k in range(3):
        batch = _schema_batch([[1.0, 2.0], [float(k)]], ["a", "b"], path=f"part-{k}.parquet")
        normalize_batch(batch, layout="parquet", scaling="none", on_bad_row="skip", skip_log=str(tmp_path))
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3 and all(len(f.stem) == 32 and f.suffix == ".jsonl" for f in files)
    expected = [json.loads(f.read_text())["where"] for f in files]
    assert [r["where"] for r in read_skip_log(tmp_path)] == expected
    assert sorted(expected) == [f"part-{k}.parquet: row id=r1" for k in range(3)]


def test_read_skip_log_of_a_missing_directory_is_empty(tmp_path):
    assert read_skip_log(tmp_path / "never-written") == []


def test_skip_mode_on_tsfragment_rows(tmp_path):
    batch = {"SampleID": np.asarray([3, 4, 5, 6]), "SampleNumID": np.asarray([1, 2, 3, 4]),
             "Text": np.asarray(["rises", "falls", "", "flat"], dtype=object),
             "OT": np.asarray(["[1.0, 2.0, 3.0]", "__import__('os')", "[1, 2]", "[2, 2, nan]"], dtype=object),
             "path": np.asarray(["/c/embedding_cleaned_ETTh1_24.csv"] * 4, dtype=object)}
    batch["OT"][3] = "[2, 2, 1e999]"  # parses to inf
    out = normalize_batch(batch, layout="tsfragment-csv", scaling="series_minmax", on_bad_row="skip",
                          skip_log=str(tmp_path))
    assert list(out["id"]) == ["ETTh1_24_3_1"] and list(out["level"]) == ["fragment"]
    np.testing.assert_array_equal(out["series"][0], np.asarray([0.0, 0.5, 1.0], dtype=np.float32))
    where = "/c/embedding_cleaned_ETTh1_24.csv: row SampleID={}, SampleNumID={}"
    assert read_skip_log(tmp_path) == [
        {"where": where.format(4, 2), "reason": "field OT is not a list of numbers"},
        {"where": where.format(5, 3), "reason": "empty caption"},
        {"where": where.format(6, 4), "reason": "series contains inf at position 2"},
    ]


def test_on_bad_row_must_be_error_or_skip():
    with pytest.raises(DataError, match=r"data\.on_bad_row: must be one of 'error', 'skip' \(got 'drop'\)"):
        normalize_batch(_schema_batch([[1.0, 2.0]], ["a"]), layout="parquet", scaling="none", on_bad_row="drop")


def test_missing_columns_raise_even_in_skip_mode(tmp_path):
    with pytest.raises(DataError, match="missing column"):
        normalize_batch({"series": np.asarray([[1.0, 2.0]])}, layout="parquet", scaling="none", on_bad_row="skip",
                        skip_log=str(tmp_path))
    with pytest.raises(DataError, match="missing column.*OT"):
        normalize_batch({"SampleID": np.asarray([1]), "SampleNumID": np.asarray([1]), "Text": np.asarray(["x"])},
                        layout="tsfragment-csv", scaling="none", on_bad_row="skip", skip_log=str(tmp_path))
    assert read_skip_log(tmp_path) == []


def test_error_mode_raises_what_it_always_did_when_several_rows_are_bad():
    """Captions are checked (for the whole batch) before series, as before vectorising; skip logs both."""
    batch = _schema_batch([[1.0, np.nan], [1.0, 2.0], [3.0, 4.0]], ["a", "b", " "])
    with pytest.raises(DataError, match=r"row id=r2: empty caption"):
        normalize_batch(batch, layout="parquet", scaling="none")
    out = normalize_batch(batch, layout="parquet", scaling="none", on_bad_row="skip")
    assert list(out["id"]) == ["r1"]
