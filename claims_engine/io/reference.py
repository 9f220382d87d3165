"""Loading reference data (CONTRACT.md section 2).

Unlike a batch, reference data must be entirely clean: a rule evaluated against a
half-read price list would silently pay the wrong amounts.  So any bad value
raises `ReferenceDataError` (exit 2) naming the file, the 1-based data row (the
header is not counted), the column, the value and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.errors import BatchError, ReferenceDataError
from claims_engine.io.batch import read_table_file
from claims_engine.io.casting import cast_table, join_messages
from claims_engine.schema import REFERENCE_TABLES, VALIDITY_COLUMNS, Column, ReferenceTable

# Parquet and CSV as the contract says; Arrow IPC too, as for batches.
REFERENCE_SUFFIXES = (".parquet", ".csv", ".arrow")


@dataclass(frozen=True)
class Reference:
    """Every table of schema.REFERENCE_TABLES, cast to the contract types."""

    folder: Path
    # Contract columns in contract order, then valid_from/valid_to (date32, all null
    # when the file has none), then any extra columns of the file as read.  An
    # absent optional table (frequency_limits) is an empty table with those columns.
    tables: dict[str, pa.Table]


def _table_columns(spec: ReferenceTable) -> tuple[Column, ...]:
    """The table's own columns, then the validity columns it does not list itself."""
    own = {c.name for c in spec.columns}
    return spec.columns + tuple(c for c in VALIDITY_COLUMNS if c.name not in own)


def _find_file(folder: Path, name: str) -> Path | None:
    found = [folder / f"{name}{suffix}" for suffix in REFERENCE_SUFFIXES]
    found = [p for p in found if p.exists()]
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        raise ReferenceDataError(f"{folder}: both {names} exist; keep exactly one")
    return found[0] if found else None


def _first_bad_row(file: Path, errors: pa.Array, more: str = "bad values") -> None:
    """Raise for the first row with a message, saying how many more there are."""
    if errors.null_count == len(errors):
        return
    bad_rows = pc.indices_nonzero(pc.is_valid(errors))
    row = bad_rows[0].as_py()
    others = len(bad_rows) - 1
    tail = f" (and {others} more rows with {more})" if others else ""
    raise ReferenceDataError(f"{file}: data row {row + 1}: {errors[row].as_py()}{tail}")


def _check_validity(file: Path, table: pa.Table) -> None:
    """valid_from <= valid_to wherever both are given (both ends are included)."""
    start, end = table.column("valid_from"), table.column("valid_to")
    reversed_ = pc.fill_null(pc.greater(start, end), False)
    message = pc.binary_join_element_wise(
        "valid_from ", start.cast(pa.string()), " is after valid_to ", end.cast(pa.string()), ""
    )
    errors = pc.if_else(reversed_, message, pa.scalar(None, pa.string()))
    _first_bad_row(file, errors.combine_chunks(), "valid_from after valid_to")


def _load_table(file: Path, spec: ReferenceTable) -> pa.Table:
    try:
        raw = read_table_file(file)
    except BatchError as exc:
        raise ReferenceDataError(exc.message) from exc
    columns = _table_columns(spec)
    cast = cast_table(raw, columns, file, ReferenceDataError)
    _first_bad_row(file, join_messages(list(cast.errors.values()), raw.num_rows))
    _check_validity(file, cast.table)
    table = cast.table
    contract = {c.name for c in columns}
    for name in raw.column_names:
        if name not in contract:  # kept as read: a rule pack may use it
            table = table.append_column(raw.schema.field(name), raw.column(name))
    return table


def _empty_table(spec: ReferenceTable) -> pa.Table:
    return pa.schema([pa.field(c.name, c.type) for c in _table_columns(spec)]).empty_table()


def load_reference(path: Path) -> Reference:
    """Load and check every reference table in ``path``; see the module docstring."""
    folder = Path(path)
    if not folder.is_dir():
        raise ReferenceDataError(f"{folder}: reference data folder does not exist")
    tables: dict[str, pa.Table] = {}
    for spec in REFERENCE_TABLES:
        file = _find_file(folder, spec.name)
        if file is None:
            if not spec.optional:
                raise ReferenceDataError(
                    f"{folder}: reference table '{spec.name}' is missing "
                    f"(expected {spec.name}.parquet or {spec.name}.csv)"
                )
            tables[spec.name] = _empty_table(spec)
        else:
            tables[spec.name] = _load_table(file, spec)
    return Reference(folder=folder, tables=tables)
