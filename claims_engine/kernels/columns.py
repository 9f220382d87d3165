"""Whole-array access to table columns without copies where the data is one chunk."""

from __future__ import annotations

import pyarrow as pa


def array(table: pa.Table, name: str) -> pa.Array:
    """Column ``name`` as one Array: zero-copy when it is a single chunk."""
    col = table.column(name)
    if col.num_chunks == 1:
        return col.chunk(0)
    return col.combine_chunks()
