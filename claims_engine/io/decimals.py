"""Decimal columns as a batch carries them: decimal64, one chunk.

The contract's decimals have at most 18 digits, so each fits an int64 of its
unscaled value; Arrow's Parquet reader and casts give decimal128, 16 bytes a
value.  Narrowed once after the cast, a column holds half the memory (317 MB
less for the five decimal columns of 7.9 million lines; the peak RSS of a
million-claim run fell by ~350 MB), and the rules read its
buffer as it is (one chunk; kernels/values.py), where a decimal128 column is
copied into int64 by every evaluator that reads it.

Readers of the batch tables see decimal64 with the contract's precision and
scale; a cast to decimal128 (the history store's) is exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["carried_type", "narrow_decimals", "unscaled_values"]


def carried_type(type_: pa.DataType) -> pa.DataType:
    """The type a batch table carries a contract column of type ``type_`` as."""
    if pa.types.is_decimal(type_) and type_.bit_width == 128 and type_.precision <= 18:
        return pa.decimal64(type_.precision, type_.scale)
    return type_


def unscaled_values(arr: pa.Array) -> np.ndarray[Any, Any]:
    """The unscaled values of a decimal array of up to 18 digits as int64,
    zero-copy: a decimal64's values, or the low 64-bit word of each of a
    decimal128's two's-complement values (which is the value).  Null slots hold
    whatever bytes."""
    words = np.frombuffer(arr.buffers()[1], dtype=np.int64)
    if arr.type.bit_width == 64:
        return words[arr.offset : arr.offset + len(arr)]
    return words[2 * arr.offset : 2 * (arr.offset + len(arr)) : 2]


def narrow_decimals(table: pa.Table) -> pa.Table:
    """``table`` with its decimal128 columns of up to 18 digits as decimal64."""
    for i, field in enumerate(table.schema):
        if carried_type(field.type) != field.type:
            narrowed = _narrowed(table.column(i))
            table = table.set_column(i, field.with_type(narrowed.type), narrowed)
    return table


def _narrowed(column: pa.ChunkedArray) -> pa.Array:
    """One decimal64 array of the column's values.  Null slots hold whatever bytes
    (kernels/values.py zeroes them when it reads a column with nulls)."""
    type_ = pa.decimal64(column.type.precision, column.type.scale)
    n = len(column)
    # from Arrow's pool, which holds the pages the file reader just freed: the
    # narrowing of a million claims took 0.14-0.20 s so, 0.35-0.39 s into new
    # numpy arrays (page faults of 64 MB per 8 million rows)
    buffer = pa.allocate_buffer(8 * n)
    data = np.frombuffer(buffer, dtype=np.int64)
    at = 0
    for chunk in column.chunks:
        data[at : at + len(chunk)] = unscaled_values(chunk)
        at += len(chunk)
    if not column.null_count:
        return pa.Array.from_buffers(type_, n, [None, buffer], 0)
    if column.num_chunks == 1 and column.chunk(0).offset == 0:
        bitmap = column.chunk(0).buffers()[0]  # the same rows: the same validity bits
    else:
        valid = np.concatenate([c.is_valid().to_numpy(zero_copy_only=False) for c in column.chunks])
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(type_, n, [bitmap, buffer], column.null_count)
