"""Encoding one output table as a Parquet file (io/output.py stages and publishes).

Writing is CPU-bound (Parquet encoding; the fsyncs are a small part), so:
decimals of up to 18 digits are stored as delta-encoded INT64 (read back as the
same decimal type), integers delta-encoded, dictionaries only for the columns
with few distinct values, statistics only for claim_id.  Columns that outputs
carry internally as another type (dictionaries; money as decimal64) are written
as they are, and every reader sees the contract's types (``plain_schema``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["plain_schema", "plain_table", "write_parquet"]


def _strip_pandas(table: pa.Table) -> pa.Table:
    metadata = table.schema.metadata
    if not metadata or b"pandas" not in metadata:
        return table
    kept = {k: v for k, v in metadata.items() if k != b"pandas"}
    return table.replace_schema_metadata(kept or None)


PARQUET_COMPRESSION = "snappy"  # fastest to write here (zstd is ~30% smaller, ~50% slower)
# Columns with few distinct values: dictionary-encoded (elsewhere it only costs time).
LOW_CARDINALITY = frozenset({"kind", "decision", "severity", "code", "rule_id", "facility_id"})
# Row-group min/max narrow a search only on the column the files are sorted by; in
# every other column each row group spans nearly the whole range (and computing
# them costs more than encoding some of those columns).
STATISTICS = frozenset({"claim_id"})
ROW_GROUP_ROWS = 1 << 20
WRITE_BUFFER = 1 << 20


def _read_back_type(type_: pa.DataType) -> pa.DataType:
    """The type a Parquet reader gives a column written as ``type_`` without the
    Arrow schema: a dictionary's values; a decimal of any width is decimal128."""
    if pa.types.is_dictionary(type_):
        return type_.value_type
    if pa.types.is_decimal(type_) and type_.bit_width < 128:
        return pa.decimal128(type_.precision, type_.scale)
    return type_


def _carried(type_: pa.DataType) -> bool:
    """A type that outputs carry internally and readers see as another
    (``_read_back_type``): dictionaries, and money as 8-byte decimals."""
    return not _read_back_type(type_).equals(type_)


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with each carried column typed as readers see it (dictionaries
    as their values, decimal64 money as decimal128)."""
    fields = [f.with_type(_read_back_type(f.type)) for f in schema]
    return pa.schema(fields, metadata=schema.metadata)


def plain_table(table: pa.Table) -> pa.Table:
    """``table`` with dictionary columns cast to their value type."""
    plain = plain_schema(table.schema)
    return table if plain.equals(table.schema) else table.cast(plain)


def _parquet_options(table: pa.Table) -> dict[str, Any]:
    dictionary = [
        f.name for f in table.schema if f.name in LOW_CARDINALITY or pa.types.is_dictionary(f.type)
    ]
    # Integers, and decimals of up to 18 digits stored as INT64 (the same Arrow type
    # when read), delta-encoded: smaller and faster to write than plain values (for
    # decimals, 8-byte big-endian FIXED_LEN_BYTE_ARRAY, which costs a byte swap).
    delta = {
        f.name: "DELTA_BINARY_PACKED"
        for f in table.schema
        if f.name not in dictionary
        and (
            (pa.types.is_decimal(f.type) and f.type.precision <= 18) or pa.types.is_integer(f.type)
        )
    }
    return {
        "compression": PARQUET_COMPRESSION,
        "use_dictionary": dictionary,
        "write_statistics": [n for n in table.column_names if n in STATISTICS],
        "store_decimal_as_integer": True,
        "column_encoding": delta or None,
    }


def _same_without_schema(f: pa.Field) -> bool:
    """Whether a field reads back with the same type from the Parquet types alone."""
    ty = f.type
    if pa.types.is_dictionary(ty):
        ty = ty.value_type
    if pa.types.is_list(ty):
        ty = ty.value_type
    simple = (
        pa.types.is_string(ty)
        or pa.types.is_integer(ty)
        or pa.types.is_decimal(ty)
        or pa.types.is_boolean(ty)
        or pa.types.is_date32(ty)
    )
    return simple and not f.metadata


def _writable(table: pa.Table) -> tuple[pa.Table, bool]:
    """The table to write, and whether to store its Arrow schema in the file.

    Carried columns are written as they are.  Dictionaries (kind, decision): their
    words become the column's dictionary page, where a cast to plain strings would
    have the writer hash 8 million strings back into that same dictionary.
    decimal64 money: its 8-byte values are the Parquet INT64 decimal as they are.
    The Arrow schema is then not stored, so readers see the Parquet types (plain
    strings and decimal128, as the contract says); that needs types that read
    back the same without it.  Otherwise, or with a null among a dictionary's
    words (the writer cannot write those), the plain table is written as usual.
    """
    if not any(_carried(f.type) for f in table.schema):
        return table, True
    dictionaries = [f for f in table.schema if pa.types.is_dictionary(f.type)]
    if not all(_same_without_schema(f) for f in table.schema) or any(
        c.dictionary.null_count for f in dictionaries for c in table.column(f.name).chunks
    ):
        return plain_table(table), True
    return table, False


def write_parquet(table: pa.Table, target: Path) -> None:
    """One Parquet file, written on this thread (not synced)."""
    table, store_schema = _writable(_strip_pandas(table))
    # An OSFile behind a buffer: the Parquet writer's many small writes (page
    # headers, pages) become few; a path would cost ~25% more CPU here.
    with (
        pa.OSFile(os.fspath(target), "wb") as raw,
        pa.BufferedOutputStream(raw, buffer_size=WRITE_BUFFER) as sink,
        pq.ParquetWriter(
            sink, table.schema, store_schema=store_schema, **_parquet_options(table)
        ) as writer,
    ):
        if table.schema.metadata and not store_schema:  # kept as the file's metadata
            writer.add_key_value_metadata(table.schema.metadata)
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
