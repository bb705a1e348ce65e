"""Benchmark windows (models.md §1.2): the Sines recipe, min-max then stride-1 windows, strict CSV reading."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from seriesforge.data.sources.windows import (load_csv_windows, load_sines, minmax_apply, minmax_fit, minmax_invert,
                                              read_numeric_csv, sines, windows)
from seriesforge.errors import DataError

ETTH_LIKE = ("date,HUFL,OT\n"
             "2016-07-01 00:00:00,5.0,30.0\n"
             "2016-07-01 01:00:00,6.0,20.0\n"
             "2016-07-01 02:00:00,4.0,10.0\n"
             "2016-07-01 03:00:00,8.0,25.0\n"
             "2016-07-01 04:00:00,7.0,40.0\n")


def _csv(tmp_path, text: str, name: str = "data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- Sines ---------------------------------------------------------------------------------------------------------

def test_sines_shape_dtype_and_range():
    x = sines(64, 24, seed=3)
    assert x.shape == (64, 24, 5) and x.dtype == np.float32
    assert x.min() >= 0.5 and x.max() <= 1.0  # f·t + φ ≤ 2.4 rad < π at L = 24, so sin ≥ 0
    long = sines(8, 400, features=2, seed=3)
    assert long.shape == (8, 400, 2) and long.min() >= 0.0 and long.max() <= 1.0 and long.min() < 0.01


def test_sines_deterministic_per_seed_and_different_across_seeds():
    np.testing.assert_array_equal(sines(10, 24, seed=7), sines(10, 24, seed=7))
    assert not np.allclose(sines(10, 24, seed=7), sines(10, 24, seed=8))
    np.testing.assert_array_equal(sines(10, 24, seed=7)[:4], sines(4, 24, seed=7))  # sample i does not depend on n


def test_sines_matches_the_reference_loop():
    """The TimeGAN / Diffusion-TS loop: per sample, per feature, draw f then φ from U(0, 0.1); (sin + 1) / 2."""
    rng = np.random.RandomState(123)
    expected = np.empty((6, 24, 5))
    for i in range(6):
        for k in range(5):
            f, phase = rng.uniform(0, 0.1), rng.uniform(0, 0.1)
            expected[i, :, k] = (np.sin([f * t + phase for t in range(24)]) + 1) * 0.5
    np.testing.assert_allclose(sines(6, 24, seed=123), expected, atol=1e-7)


def test_each_sines_series_is_a_sinusoid_with_the_stated_frequency_and_phase():
    x = sines(2000, 24, features=5, seed=0).astype(np.float64)
    s = 2 * x - 1  # (n, L, K) = sin(f·t + φ)
    phase = np.arcsin(s[:, 0])  # (n, K); φ ≤ 0.1 so arcsin is exact
    freq = np.arcsin(s[:, 1]) - phase  # f + φ ≤ 0.2 < π/2
    assert freq.min() > -1e-5 and freq.max() < 0.1 + 1e-5
    assert phase.min() > -1e-6 and phase.max() < 0.1 + 1e-6
    t = np.arange(24)[None, :, None]
    np.testing.assert_allclose(s, np.sin(freq[:, None] * t + phase[:, None]), atol=2e-5)
    for draws in (freq.ravel(), phase.ravel()):  # uniform on [0, 0.1]: deciles at 0.01, 0.02, ...
        np.testing.assert_allclose(np.quantile(draws, np.linspace(0.1, 0.9, 9)), np.linspace(0.01, 0.09, 9),
                                   atol=0.004)


def test_load_sines_is_identity_scaled():
    data = load_sines(5, 24, features=3, seed=1)
    np.testing.assert_array_equal(data.x, sines(5, 24, features=3, seed=1))
    assert data.columns == ["sine_0", "sine_1", "sine_2"]
    np.testing.assert_array_equal(data.lo, [0, 0, 0])
    np.testing.assert_array_equal(data.hi, [1, 1, 1])
    assert "seed=1" in data.source


@pytest.mark.parametrize("kwargs", [dict(n=0, length=24), dict(n=3, length=0), dict(n=3, length=24, features=0)])
def test_sines_rejects_non_positive_sizes(kwargs):
    with pytest.raises(ValueError, match="must be a positive integer"):
        sines(**kwargs)


# ---- windows and min-max -------------------------------------------------------------------------------------------

def test_windows_stride_1_count_and_content():
    data = np.arange(20, dtype=np.float64).reshape(10, 2)  # (T, K)
    w = windows(data, 4)
    assert w.shape == (7, 4, 2)  # N = T − L + 1
    for i in range(7):
        np.testing.assert_array_equal(w[i], data[i:i + 4])
    w[0, 0, 0] = -1.0
    assert data[0, 0] == 0.0 and w.flags.c_contiguous  # a copy, not a view


def test_windows_stride_and_exact_length():
    data = np.arange(10, dtype=np.float64)[:, None]
    w = windows(data, 4, stride=3)
    assert w.shape == (3, 4, 1) and list(w[:, 0, 0]) == [0, 3, 6]
    assert windows(data, 10).shape == (1, 10, 1)


def test_windows_rejects_a_series_shorter_than_the_window():
    with pytest.raises(DataError, match=r"^series: 3 rows, shorter than the window length 4$"):
        windows(np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="length must be a positive integer"):
        windows(np.zeros((3, 2)), 0)


def test_minmax_maps_each_column_to_unit_range_and_inverts():
    data = np.random.default_rng(0).normal(size=(50, 3)) * [1, 10, 1000] + [0, -5, 7]
    lo, hi = minmax_fit(data)
    u = minmax_apply(data, lo, hi)
    np.testing.assert_allclose(u.min(axis=0), 0.0)
    np.testing.assert_allclose(u.max(axis=0), 1.0)
    np.testing.assert_allclose(minmax_invert(u, lo, hi), data)
    lo3, hi3 = minmax_fit(data.reshape(5, 10, 3))  # (N, L, K): statistics over all but the last axis
    np.testing.assert_array_equal(lo3, lo)
    np.testing.assert_array_equal(hi3, hi)


def test_minmax_constant_column_maps_to_zero_without_dividing_by_zero():
    data = np.stack([np.linspace(0, 1, 6), np.full(6, 3.5)], axis=1)  # (T, K); column 1 constant
    lo, hi = minmax_fit(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        u = minmax_apply(data, lo, hi)
    np.testing.assert_array_equal(u[:, 1], 0.0)
    np.testing.assert_allclose(u[:, 0], np.linspace(0, 1, 6))
    np.testing.assert_array_equal(minmax_invert(u, lo, hi)[:, 1], 3.5)


def test_minmax_fit_rejects_non_finite():
    with pytest.raises(DataError, match="NaN or inf"):
        minmax_fit(np.array([[1.0], [np.nan]]))


# ---- CSV -----------------------------------------------------------------------------------------------------------

def test_read_csv_drops_the_date_column(tmp_path):
    data, names = read_numeric_csv(_csv(tmp_path, ETTH_LIKE))
    assert names == ["HUFL", "OT"]
    assert data.dtype == np.float64 and data.shape == (5, 2)
    np.testing.assert_array_equal(data[:, 0], [5, 6, 4, 8, 7])


def test_read_csv_selected_columns_in_the_given_order(tmp_path):
    data, names = read_numeric_csv(_csv(tmp_path, ETTH_LIKE), columns=["OT", "HUFL"])
    assert names == ["OT", "HUFL"]
    np.testing.assert_array_equal(data[0], [30.0, 5.0])


def test_read_csv_only_validates_the_columns_it_uses(tmp_path):
    path = _csv(tmp_path, "a,b\n1,x\n2,\n")
    data, names = read_numeric_csv(path, columns=["a"])
    assert names == ["a"] and data[:, 0].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("text, kept", [
    ("when,v\n2016/07/01,1\n2016/07/02,2\n", ["v"]),  # first column of dates under another name
    ("Timestamp,v\n1,1\n2,2\n", ["v"]),  # by name, any case, even if numeric
    ("id,v\n20160701,1\n20160702,2\n", ["id", "v"]),  # a numeric first column is never a timestamp
    ("v,when\n1,2016-07-01\n2,2016-07-02\n", None),  # dates elsewhere are not dropped: an error names them
])
def test_timestamp_column_detection(tmp_path, text, kept):
    path = _csv(tmp_path, text)
    if kept is None:
        with pytest.raises(DataError, match="row 2, column when: not a number: '2016-07-01'"):
            read_numeric_csv(path)
    else:
        assert read_numeric_csv(path)[1] == kept


def test_read_csv_handles_bom_crlf_and_trailing_blank_lines(tmp_path):
    path = tmp_path / "win.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,2\r\n3,4\r\n\r\n")
    data, names = read_numeric_csv(path)
    assert names == ["a", "b"] and data.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize("text, columns, message", [
    ("a,b\n1,2\n3,\n", None, "row 3, column b: empty cell"),
    ("a,b\n1,2\n3,4\nfoo,5\n", None, "row 4, column a: not a number: 'foo'"),
    ("a,b\n1,NaN\n", None, "row 2, column b: NaN"),
    ("a,b\n1,2\ninf,3\n", None, "row 3, column a: inf"),
    ("a,b\n1,2\n3,-inf\n", None, "row 3, column b: inf"),
    ("a,b\n1,2\n3,4,5\n", None, "row 3: 3 fields, the header has 2"),
    ("a,b\n1,2\n3\n", None, "row 3: 1 fields, the header has 2"),
    ("a,b\n1,2\n\n3,4\n", None, "row 3: blank line between data rows"),
    ("", None, "empty file (expected a header row)"),
    ("a,b\n", None, "no data rows after the header"),
    ("a,a\n1,2\n", None, "row 1: duplicate column name a"),
    ("a,,c\n1,2,3\n", None, "row 1: header field 2 has no column name"),
    ("a,b\n1,2\n", ["a", "zz"], "no column zz (columns: a, b)"),
    ("a,b\n1,2\n", ["a", "a"], "column a requested twice"),
    ("a,b\n1,2\n", [], "no columns requested"),
    ("date\n2016-07-01\n", None, "no numeric columns besides timestamp column(s) date"),
])
def test_read_csv_bad_input_names_file_row_and_column(tmp_path, text, columns, message):
    path = _csv(tmp_path, text, name="bad.csv")
    with pytest.raises(DataError) as err:
        read_numeric_csv(path, columns=columns)
    assert str(err.value) == f"{path}: {message}"


def test_read_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'nope.csv'}: file not found")):
        read_numeric_csv(tmp_path / "nope.csv")


# ---- end to end ----------------------------------------------------------------------------------------------------

def test_load_csv_windows_scales_the_whole_series_then_windows(tmp_path):
    path = _csv(tmp_path, ETTH_LIKE)
    data = load_csv_windows(path, 3)
    assert data.x.shape == (3, 3, 2) and data.x.dtype == np.float32  # N = 5 − 3 + 1
    assert data.columns == ["HUFL", "OT"] and data.source == str(path)
    np.testing.assert_array_equal(data.lo, [4.0, 10.0])
    np.testing.assert_array_equal(data.hi, [8.0, 40.0])
    hufl = (np.array([5, 6, 4, 8, 7]) - 4) / 4  # scaled on all rows, before windowing
    np.testing.assert_allclose(data.x[:, :, 0], [hufl[0:3], hufl[1:4], hufl[2:5]], rtol=1e-6)
    assert data.x[0, :, 1].max() < 1.0  # window 0 is not rescaled on its own (its OT max is 30 of 40)
    raw, _ = read_numeric_csv(path)
    np.testing.assert_allclose(minmax_invert(data.x[:, 0], data.lo, data.hi), raw[:3], rtol=1e-6)


def test_load_csv_windows_with_columns_and_too_short(tmp_path):
    path = _csv(tmp_path, ETTH_LIKE)
    assert load_csv_windows(path, 5, columns=["OT"]).x.shape == (1, 5, 1)
    with pytest.raises(DataError, match=re.escape(f"{path}: 5 rows, shorter than the window length 6")):
        load_csv_windows(path, 6)
