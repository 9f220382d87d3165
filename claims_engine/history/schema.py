"""Layout of the history store: one Delta table holding claims and lines.

Why one table and not two (``claims`` and ``lines``): a Delta transaction covers
one table.  A commit must replace a batch's claims *and* lines, and a resubmitted
claim *and* its lines, in one step that lands entirely or not at all; with two
tables a run killed between the two commits would leave claims without their lines
(or the reverse).  So both kinds of row live in one table, told apart by the
partition column ``row_kind`` (``claim`` or ``line``).  Because it is a partition
column a read of claims never opens a file of lines and the reverse, and each
data file holds one kind only (the columns of the other kind are all null there,
which Parquet stores in a few bytes).

Partitions: ``row_kind``, ``bucket`` (a stable hash of the card holder mod 64,
see :func:`bucket_of`), ``month`` (``YYYY-MM`` of the claim's admission).  The
lines of a claim carry the claim's card holder and admission, so they sit in the
same (bucket, month) as their claim.

Column names shared by claims and lines (claim_id, facility_id, admitted_at,
fund_pays, patient_copay, decision, ...) have the same type in both, which is
checked below at import.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.schema import CARD_HOLDER_CHARS, CLAIMS_SCHEMA, LINES_SCHEMA, TIMESTAMP

__all__ = [
    "BUCKETS",
    "CLAIM_KIND",
    "COMMITTED_AT",
    "HISTORY_CLAIMS_SCHEMA",
    "HISTORY_LINES_SCHEMA",
    "LINE_KIND",
    "PARTITION_COLUMNS",
    "PHYSICAL_SCHEMA",
    "ROW_KIND",
    "STATS_COLUMNS",
    "TABLE_NAME",
    "TABLE_SCHEMA",
    "bucket_of",
    "card_holder_of",
    "from_stored",
    "month_of",
    "to_stored",
]

TABLE_NAME = "claims_engine_history"
BUCKETS = 64
ROW_KIND = "row_kind"
CLAIM_KIND = "claim"
LINE_KIND = "line"
PARTITION_COLUMNS = (ROW_KIND, "bucket", "month")
#: When the rows were committed (UTC); kept per row so ``info`` can tell each
#: batch's commit time after old log entries have been cleaned up.  Not returned
#: by ``HistoryStore.read``.
COMMITTED_AT = "committed_at"
#: Columns with per-file min/max statistics in the Delta log: batch_id finds the
#: files of a batch being re-run without reading data (and counts a batch's rows
#: for ``info``); the others serve other readers of the table.  No timestamp
#: column: turning timestamp statistics into Arrow scalars costs a failed
#: ``import dateutil`` per value in pyarrow when python-dateutil is not installed.
STATS_COLUMNS = ("batch_id", "card_holder", "claim_id", "facility_id")

STORED_TIMESTAMP = pa.timestamp("us")  # Delta's timestamp_ntz is microseconds

_CLAIM_EXTRA = (
    pa.field("card_holder", pa.string(), nullable=False),
    pa.field("decision", pa.string(), nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("bucket", pa.int16(), nullable=False),
    pa.field("month", pa.string(), nullable=False),
)
_LINE_EXTRA = (
    pa.field("card_holder", pa.string(), nullable=False),
    pa.field("facility_id", pa.string(), nullable=False),
    pa.field("admitted_at", TIMESTAMP, nullable=False),
    pa.field("date_of_service", pa.date32(), nullable=False),
    pa.field("decision", pa.string(), nullable=False),
    pa.field("batch_id", pa.string(), nullable=False),
    pa.field("bucket", pa.int16(), nullable=False),
    pa.field("month", pa.string(), nullable=False),
)

#: What ``read`` returns for claims: the contract's columns, then the history's.
HISTORY_CLAIMS_SCHEMA = pa.schema([*CLAIMS_SCHEMA, *_CLAIM_EXTRA])
#: What ``read`` returns for lines: the contract's columns, then the history's.
HISTORY_LINES_SCHEMA = pa.schema([*LINES_SCHEMA, *_LINE_EXTRA])


def _stored_type(type_: pa.DataType) -> pa.DataType:
    return STORED_TIMESTAMP if pa.types.is_timestamp(type_) else type_


def _table_schema() -> pa.Schema:
    """The Delta table's schema: every column nullable (a claim row has no line_no)."""
    first = [
        ROW_KIND,
        "bucket",
        "month",
        "batch_id",
        COMMITTED_AT,
        "card_holder",
        "claim_id",
        "facility_id",
        "admitted_at",
        "decision",
    ]
    types: dict[str, pa.DataType] = {
        ROW_KIND: pa.string(),
        COMMITTED_AT: pa.timestamp("us", tz="UTC"),
    }
    for field in [*HISTORY_CLAIMS_SCHEMA, *HISTORY_LINES_SCHEMA]:
        stored = _stored_type(field.type)
        seen = types.setdefault(field.name, stored)
        if seen != stored:  # pragma: no cover - a contract change would trip this at import
            raise TypeError(f"history column {field.name}: {seen} for claims, {stored} for lines")
    names = first + [n for n in types if n not in first]
    return pa.schema([pa.field(n, types[n], nullable=True) for n in names])


#: The Delta table's schema (partition columns included).
TABLE_SCHEMA = _table_schema()
#: The schema of a data file: the table's without the partition columns.
PHYSICAL_SCHEMA = pa.schema([f for f in TABLE_SCHEMA if f.name not in PARTITION_COLUMNS])


def to_stored(table: pa.Table) -> pa.Table:
    """``table`` (history columns of one kind) in :data:`PHYSICAL_SCHEMA`; absent columns null."""
    arrays = []
    n = table.num_rows
    for field in PHYSICAL_SCHEMA:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=PHYSICAL_SCHEMA)


def from_stored(table: pa.Table, target: pa.Schema) -> pa.Table:
    """Rows read from the table in ``target``'s types (timestamps back to seconds)."""
    arrays = [table.column(f.name).cast(f.type) for f in target]
    return pa.Table.from_arrays(arrays, schema=target)


# --------------------------------------------------------------------------- keys

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _fnv1a64(values: pa.Array) -> np.ndarray:
    """64-bit FNV-1a of each string's UTF-8 bytes, vectorised over rows (one pass per byte)."""
    arr = values.cast(pa.large_string())
    n = len(arr)
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64, count=arr.offset + n + 1)[arr.offset :]
    data = (
        np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    )
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    if n == 0:
        return h
    longest = int(lengths.max())
    if int(lengths.min()) == longest:  # the usual case: every holder is 10 characters
        for j in range(longest):
            h ^= data[starts + j].astype(np.uint64)
            h *= _FNV_PRIME
        return h
    for j in range(longest):
        rows = np.flatnonzero(lengths > j)
        h[rows] = (h[rows] ^ data[starts[rows] + j].astype(np.uint64)) * _FNV_PRIME
    return h


def bucket_of(card_holders: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The hash bucket (int16, 0..63) of each card holder; null stays null.

    ``((h ^ (h >> 32)) & 0xFFFFFFFF) % 64`` where ``h`` is the 64-bit FNV-1a hash of
    the holder's UTF-8 bytes: the same in every process, Python run and machine
    (unlike ``hash()``), computed with numpy over the whole column.
    """
    if isinstance(card_holders, pa.ChunkedArray):
        card_holders = card_holders.combine_chunks()
    h = _fnv1a64(card_holders)
    folded = (h ^ (h >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
    buckets = (folded % np.uint64(BUCKETS)).astype(np.int16)
    nulls = card_holders.null_count
    mask = card_holders.is_null().to_numpy(zero_copy_only=False) if nulls else None
    return pa.array(buckets, type=pa.int16(), mask=mask)


def card_holder_of(card_no: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The card holder: the last CARD_HOLDER_CHARS characters of card_no."""
    result: pa.Array | pa.ChunkedArray = pc.utf8_slice_codeunits(card_no, -CARD_HOLDER_CHARS)
    return result


def month_of(timestamps: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``YYYY-MM`` of each timestamp (the partition value)."""
    result: pa.Array | pa.ChunkedArray = pc.strftime(timestamps, format="%Y-%m")
    return result
