"""Reading caption corpora: layouts, validation with errors naming file and row, and data SPECs."""

from __future__ import annotations

import numpy as np
import pytest

from seriesforge.data.sources.captions import detect_layout, normalize_batch
from seriesforge.data.specs import parse_spec
from seriesforge.errors import DataError


def _schema_batch(series, captions, path="part-0.parquet"):
    n = len(series)
    out = np.empty(n, dtype=object)
    out[:] = [np.asarray(s, dtype=np.float64) for s in series]
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
