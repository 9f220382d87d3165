"""Column access without needless copies: whole arrays, and a few rows of many chunks."""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

Array = np.ndarray[Any, Any]
Column: TypeAlias = pa.Array | pa.ChunkedArray  # a column, in one piece or chunked


def array(table: pa.Table, name: str) -> pa.Array:
    """Column ``name`` as one Array: zero-copy when it is a single chunk."""
    col = table.column(name)
    if col.num_chunks == 1:
        return col.chunk(0)
    return col.combine_chunks()


def chunks(column: Column) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def plain(column: Column) -> Column:
    """A dictionary-encoded column as its plain values (other columns unchanged)."""
    if pa.types.is_dictionary(column.type):
        return column.cast(column.type.value_type)
    return column


def take_rows(column: Column, rows: Array) -> pa.Array:
    """``column[rows]`` (any order) as one plain-typed array.

    ``ChunkedArray.take`` concatenates every chunk first: fine for a permutation
    of all rows, but for a few rows out of millions each chunk is taken from
    apart instead.
    """
    rows = np.asarray(rows, dtype=np.int64)
    parts_of = chunks(column)
    if len(parts_of) == 1:
        return plain(parts_of[0].take(pa.array(rows)))
    if len(rows) * 8 >= len(column):
        whole = pa.chunked_array(parts_of, column.type).combine_chunks()
        return plain(whole.take(pa.array(rows)))
    starts = np.cumsum([0] + [len(c) for c in parts_of])
    which = np.searchsorted(starts, rows, side="right") - 1
    grouped = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[grouped], np.arange(len(parts_of) + 1))
    parts = [
        plain(chunk.take(pa.array(rows[grouped[bounds[k] : bounds[k + 1]]] - starts[k])))
        for k, chunk in enumerate(parts_of)
        if bounds[k + 1] > bounds[k]
    ]
    if not parts:
        return pa.array([], type=plain(pa.array([], type=column.type)).type)
    back = np.empty(len(rows), dtype=np.int64)
    back[grouped] = np.arange(len(rows), dtype=np.int64)
    return pa.concat_arrays(parts).take(pa.array(back))
