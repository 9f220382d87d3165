"""Which Parquet columns a run may leave unread.

Reading is the costliest stage of a large batch.  A column that no rule, lookup
or output uses need not be decoded *if* nothing in it could make a claim
MALFORMED, and a typed Parquet file can prove that from its metadata alone:

* the file's Arrow type is the contract type (no cast, so no cast failure);
* the column is not an enumeration (those need the values);
* where the contract forbids nulls, every row group's statistics count 0 nulls;
* where it forbids negatives, every row group's minimum is >= 0.

Anything the metadata cannot prove (missing statistics, another type, CSV or
Arrow IPC input) is read and checked value by value as usual.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from claims_engine.schema import Column


def unread_columns(path: Path, columns: Iterable[Column], needed: frozenset[str]) -> frozenset[str]:
    """Contract columns of a Parquet file that are unneeded and proven valid by metadata."""
    columns = list(columns)
    return unneeded(columns, proven_valid(path, columns), needed)


def unneeded(
    columns: Iterable[Column], proven: frozenset[str], needed: frozenset[str]
) -> frozenset[str]:
    """Of the ``proven`` columns, those no one needs and that are no enumeration."""
    enums = {c.name for c in columns if c.enum is not None}
    return frozenset(proven - needed - enums)


def proven_valid(path: Path, columns: Iterable[Column]) -> frozenset[str]:
    """Contract columns of a Parquet file whose type is the contract's and whose
    statistics prove the null and sign checks (enumerations still need values)."""
    if path.suffix.lower() != ".parquet":
        return frozenset()
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError):
        return frozenset()  # the normal read reports the problem
    arrow_schema = pf.schema_arrow
    meta = pf.metadata
    leaf = {}
    if meta.num_row_groups:
        rg = meta.row_group(0)
        leaf = {rg.column(j).path_in_schema: j for j in range(rg.num_columns)}
    out = set()
    for col in columns:
        if arrow_schema.get_field_index(col.name) < 0 or col.name not in leaf:
            continue
        if arrow_schema.field(col.name).type != col.type:
            continue
        if _proven(
            meta, leaf[col.name], need_values=not col.nullable, need_non_negative=col.non_negative
        ):
            out.add(col.name)
    return frozenset(out)


def _proven(meta: pq.FileMetaData, index: int, need_values: bool, need_non_negative: bool) -> bool:
    if not (need_values or need_non_negative):
        return True
    for i in range(meta.num_row_groups):
        stats = meta.row_group(i).column(index).statistics
        if stats is None:
            return False
        if need_values and (not stats.has_null_count or stats.null_count != 0):
            return False
        if need_non_negative:
            if not stats.has_min_max:
                return bool(meta.row_group(i).num_rows == 0)
            try:
                if stats.min < 0:
                    return False
            except TypeError:
                return False
    return True
