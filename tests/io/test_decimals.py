"""Decimals carried as decimal64 in one chunk (io/decimals.py), and read by the
rules without a copy (kernels/values.py)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from claims_engine.io.decimals import carried_type, narrow_decimals
from claims_engine.kernels import values as V

PRICE = pa.decimal128(18, 3)
VALUES = [Decimal("1.234"), None, Decimal("-0.001"), Decimal("999999999999999.999"), Decimal(0)]


def _column(chunks: list[list[Decimal | None]], offset: int = 0) -> pa.ChunkedArray:
    """Chunks of decimal128, each sliced ``offset`` rows into a longer array (the
    way a reader's row groups share buffers)."""
    arrays = [pa.array([Decimal(7)] * offset + c, PRICE).slice(offset) for c in chunks]
    return pa.chunked_array(arrays, type=PRICE)


@pytest.mark.parametrize("offset", [0, 3])
@pytest.mark.parametrize("split", [[5], [2, 3], [0, 5], [1, 0, 4]])
def test_narrowed_columns_keep_every_value_and_null(split: list[int], offset: int) -> None:
    chunks, at = [], 0
    for size in split:
        chunks.append(VALUES[at : at + size])
        at += size
    table = pa.table({"id": pa.array(range(5)), "price": _column(chunks, offset)})
    narrowed = narrow_decimals(table)
    column = narrowed.column("price")
    assert column.type == pa.decimal64(18, 3) == carried_type(PRICE)
    assert column.num_chunks == 1
    assert column.to_pylist() == VALUES
    assert column.null_count == 1
    assert narrowed.column("id").equals(table.column("id"))  # other columns untouched
    assert column.cast(PRICE).equals(table.column("price"))


def test_other_types_are_carried_as_they_are() -> None:
    assert carried_type(pa.decimal128(38, 2)) == pa.decimal128(38, 2)  # beyond int64
    assert carried_type(pa.int16()) == pa.int16()
    assert narrow_decimals(pa.table({"x": pa.array([], PRICE)})).column("x").type == (
        pa.decimal64(18, 3)
    )


def test_rules_read_a_narrowed_column_without_copying() -> None:
    column = narrow_decimals(pa.table({"p": _column([[Decimal("1.5"), Decimal("-2")]])}))
    array = column.column("p").chunk(0)
    vec = V.from_arrow(column.column("p"))
    assert list(vec.data) == [1500, -2000]
    assert np.shares_memory(vec.data, np.frombuffer(array.buffers()[1], dtype=np.int64))


def test_nulls_read_as_zero_whatever_their_slots_hold() -> None:
    """A narrowed column's null slots hold whatever the decimal128 held; the rules
    see 0 there (and the validity)."""
    words = pa.py_buffer(np.array([5, 123456, -7], dtype=np.int64))
    bitmap = pa.py_buffer(np.packbits([True, False, True], bitorder="little"))
    array = pa.Array.from_buffers(pa.decimal64(18, 3), 3, [bitmap, words], 1)
    vec = V.from_arrow(array)
    assert list(vec.data) == [5, 0, -7]
    assert list(V.valid_mask(vec, 3)) == [True, False, True]
    chunked = V.from_arrow(pa.chunked_array([array, array]))
    assert list(chunked.data) == [5, 0, -7, 5, 0, -7]
