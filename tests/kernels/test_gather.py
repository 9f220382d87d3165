"""Gathers with -1 as "no row", and the parallel helpers of values: the numba path
(large inputs) and the numpy path (small ones) give the same answers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_engine.kernels import gather
from claims_engine.kernels import values as V

BIG = gather.PARALLEL_ROWS + 7


def _expected(data: np.ndarray, idx: np.ndarray, valid: np.ndarray | None):
    ok = idx >= 0
    if valid is not None:
        ok &= valid[np.where(idx >= 0, idx, 0)]
    return np.where(idx >= 0, data[np.where(idx >= 0, idx, 0)], 0), ok


@pytest.mark.parametrize("n_rows", [5, BIG])
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.bool_])
@pytest.mark.parametrize("with_valid", [False, True])
def test_take_valid_matches_numpy(n_rows: int, dtype: type, with_valid: bool) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(-50, 50, 40).astype(dtype)
    valid = rng.random(40) > 0.3 if with_valid else None
    idx = rng.integers(-1, 40, n_rows)
    out, ok = gather.take_valid(data, idx, valid)
    want, want_ok = _expected(data, idx, valid)
    assert out.dtype == data.dtype
    assert np.array_equal(ok if ok is not None else np.ones(n_rows, bool), want_ok)
    assert np.array_equal(out[want_ok], want.astype(dtype)[want_ok])
    assert not np.any(out[idx < 0])  # rows without a source row hold zero


def test_take_valid_reports_all_valid_as_none() -> None:
    data = np.arange(10, dtype=np.int64)
    idx = np.tile(np.arange(10), BIG // 10 + 1)
    out, ok = gather.take_valid(data, idx, None)
    assert ok is None and np.array_equal(out, data[idx])


@pytest.mark.parametrize("n_rows", [3, BIG])
def test_take_or_fills_missing(n_rows: int) -> None:
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 9, 12).astype(np.int64)
    idx = rng.integers(-1, 12, n_rows).astype(np.int32)
    out = gather.take_or(codes, idx, -1)
    assert np.array_equal(out, np.where(idx >= 0, codes[np.maximum(idx, 0)], -1))


def test_take_or_of_an_empty_table_is_all_fill() -> None:
    out = gather.take_or(np.zeros(0, dtype=np.int64), np.full(BIG, -1, dtype=np.int64), -1)
    assert (out == -1).all() and len(out) == BIG


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=50), st.integers(1, 10**6))
def test_floor_div_is_python_floor_division(values: list[int], k: int) -> None:
    small = np.asarray(values, dtype=np.int64)
    big = np.resize(small, BIG)
    assert np.array_equal(V.floor_div(small, k), small // k)
    assert np.array_equal(V.floor_div(big, k), big // k)


@pytest.mark.parametrize("n_rows", [6, BIG])
def test_bounds_skip_invalid_rows(n_rows: int) -> None:
    rng = np.random.default_rng(11)
    data = rng.integers(-1000, 1000, n_rows)
    valid = rng.random(n_rows) > 0.5
    data[~valid] = 10**9  # an invalid row's value never counts
    assert V.bounds(data, valid) == (int(data[valid].min()), int(data[valid].max()))
    assert V.bounds(data, np.zeros(n_rows, dtype=bool)) is None
    assert V.bounds(np.zeros(0, dtype=np.int64), None) is None


def test_chunked_numbers_keep_values_and_nulls() -> None:
    """Chunked columns are copied chunk by chunk from their buffers: sliced chunks,
    nulls (held as 0) and narrow integer types included."""
    ts = pa.chunked_array(
        [
            pa.array([1, None, 3], pa.timestamp("s")),
            pa.array([4, 5, None, 7], pa.timestamp("s")).slice(1),
        ]
    )
    v = V.from_arrow(ts)
    assert v.data.tolist() == [1, 0, 3, 5, 0, 7]
    assert v.valid is not None and v.valid.tolist() == [True, False, True, True, False, True]
    small = pa.chunked_array([pa.array([1, 2], pa.int16()), pa.array([-3], pa.int16())])
    w = V.from_arrow(small)
    assert w.data.dtype == np.int64 and w.data.tolist() == [1, 2, -3] and w.valid is None
    days = pa.chunked_array([pa.array([0, 1], pa.date32()), pa.array([None], pa.date32())])
    d = V.from_arrow(days)
    assert d.data.tolist() == [0, 1, 0] and d.valid is not None and d.valid.tolist() == [1, 1, 0]


@pytest.mark.parametrize("arrow_type", [pa.int64(), pa.int32(), pa.timestamp("s")])
def test_chunks_slicing_one_buffer_read_their_own_rows(arrow_type: pa.DataType) -> None:
    """Parquet chunks of a row group slice one buffer (and one bitmap) at odd offsets."""
    values = [None if i % 5 == 2 else i for i in range(100)]
    whole = pa.array(values, pa.int64()).cast(arrow_type)
    v = V.from_arrow(pa.chunked_array([whole.slice(0, 13), whole.slice(13, 30), whole.slice(43)]))
    assert v.valid is not None and v.valid.tolist() == [x is not None for x in values]
    assert v.data.tolist() == [x or 0 for x in values]
