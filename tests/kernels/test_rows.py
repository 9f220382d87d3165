"""Taking a few rows of a chunked column without joining its chunks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_engine.kernels.columns import take_rows
from claims_engine.kernels.evaluate import RowsTable


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=5), min_size=1, max_size=5
    ),
    st.data(),
)
def test_take_rows_is_take(chunks: list[list[str | None]], data: st.DataObject) -> None:
    column = pa.chunked_array([pa.array(c, pa.string()) for c in chunks], type=pa.string())
    n = len(column)
    rows = np.array(
        data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=8 if n else 0)), dtype=np.int64
    )
    got = take_rows(column, rows)
    assert got.to_pylist() == column.combine_chunks().take(pa.array(rows, pa.int64())).to_pylist()


def test_rows_table_reads_columns_on_demand() -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    view = RowsTable(table, np.array([2, 0]))
    assert view.num_rows == 2
    assert view.column("b").to_pylist() == ["z", "x"]
    assert view.column("a").to_pylist() == [3, 1]
