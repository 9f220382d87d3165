"""Reading a batch folder into contract-typed tables (CONTRACT.md section 1).

A batch is a folder with ``claims`` and ``lines`` files, each ``.parquet``,
``.arrow`` (IPC file or stream) or ``.csv`` with a header; the two may differ in
format.  Anything that makes a file unusable as a whole (missing, unreadable, a
required column absent) raises `BatchError` (exit 2).  Bad values never raise:
they become null and their messages go to ``claim_errors`` / ``line_errors``,
which the engine turns into MALFORMED.  Structural checks (duplicate claim ids,
claims without lines, orphan lines) belong to the engine.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from claims_engine.errors import BatchError
from claims_engine.io.casting import (
    CastTable,
    cast_table,
    display_text,
    join_messages,
    prefix_messages,
)
from claims_engine.io.decimals import narrow_decimals
from claims_engine.io.dictionary import Codes, from_dictionary_column, without
from claims_engine.io.pruning import proven_valid, unneeded
from claims_engine.schema import CLAIM_COLUMNS, LINE_COLUMNS, Column

SUFFIXES = (".parquet", ".arrow", ".csv")
XML_NOT_SUPPORTED = "QĐ130 XML input is not supported yet"


@dataclass(frozen=True)
class Batch:
    """One batch, cast to the contract, with one message per row for bad values."""

    # schema.CLAIMS_SCHEMA / LINES_SCHEMA names, types and order, every field nullable,
    # except that decimals are decimal64 of the same precision and scale, one chunk
    # (io/decimals.py); read with ``needed``, proven-valid unneeded columns are
    # absent (io/pruning.py)
    claims: pa.Table
    lines: pa.Table
    claim_errors: pa.Array  # pa.string() per claims row: null, or messages joined by "; "
    line_errors: pa.Array  # pa.string() per lines row, each message names its line
    files: tuple[Path, ...]  # the files read (claims, lines), for a content hash
    # level ("claim"/"line") -> column -> dictionary codes of string columns that the
    # file stored dictionary-encoded (null where the table value is null)
    codes: Mapping[str, Mapping[str, Codes]] = field(default_factory=dict)


def read_table_file(
    path: Path, columns: list[str] | None = None, as_dictionary: frozenset[str] = frozenset()
) -> pa.Table:
    """Read a ``.parquet``, ``.arrow`` (IPC file or stream) or ``.csv`` file as it is.

    CSV columns are all read as strings (so "01001" keeps its zero) and only an
    empty field is null ("NA" or "NULL" are codes like any other).  Parquet string
    columns named in ``as_dictionary`` come back as Arrow dictionaries.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BatchError(f"{path}: unsupported file type (expected .parquet, .arrow or .csv)")
    if not path.exists():
        raise BatchError(f"{path}: file does not exist")
    if not path.is_file():
        raise BatchError(f"{path}: is not a file")
    try:
        if suffix == ".parquet":
            return _read_parquet(path, columns, as_dictionary)
        if suffix == ".arrow":
            return _read_ipc(path)
        return _read_csv(path)
    except BatchError:
        raise
    except (pa.ArrowException, OSError, ValueError, UnicodeDecodeError, csv.Error) as exc:
        kind = {".parquet": "Parquet", ".arrow": "Arrow IPC", ".csv": "CSV"}[suffix]
        raise BatchError(f"{path}: cannot be read as {kind}: {exc}") from exc


def _read_parquet(path: Path, columns: list[str] | None, as_dictionary: frozenset[str]) -> pa.Table:
    """A Parquet file read whole by its own reader, not the dataset scanner.

    ``pq.read_table`` scans through pyarrow.dataset, which cuts a million-row row
    group into ~130k-row batches: at a million claims that is 61 chunks per
    column, 12% more memory, and a third more time (0.8-1.5 s against 0.63-0.8 s
    for the lines file, measured).  The file reader returns one chunk per column
    (dictionary columns: one per row group), whose buffer the rules use as it is;
    reading row group by row group would touch less memory but leave 8 chunks
    per column for the rules to copy (docs/decisions.md, 45).
    """
    with pq.ParquetFile(path) as probe:
        schema = probe.schema_arrow
    wanted = [
        f.name
        for f in schema
        if f.name in as_dictionary
        and pa.types.is_string(f.type)
        and (columns is None or f.name in columns)
    ]
    with pq.ParquetFile(path, read_dictionary=wanted or None) as parquet:
        return parquet.read(columns=columns)


def _read_ipc(path: Path) -> pa.Table:
    # memory-mapped: a large IPC batch is used in place, not copied
    try:
        with ipc.open_file(pa.memory_map(str(path))) as reader:
            return reader.read_all()
    except pa.ArrowInvalid:
        with ipc.open_stream(pa.memory_map(str(path))) as reader:
            return reader.read_all()


def _read_csv(path: Path) -> pa.Table:
    # Arrow has no "every column is text" switch: name every header column.
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise BatchError(f"{path}: empty CSV file (a header row is required)")
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    return pa_csv.read_csv(path, convert_options=convert)


def _find_file(folder: Path, base: str) -> Path:
    found = [folder / f"{base}{suffix}" for suffix in SUFFIXES]
    found = [p for p in found if p.exists()]
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        raise BatchError(f"{folder}: both {names} exist; a batch must hold exactly one")
    if not found:
        try:
            has_xml = any(p.suffix.lower() == ".xml" for p in folder.iterdir())
        except OSError as exc:
            raise BatchError(f"{folder}: cannot list the batch folder: {exc}") from exc
        if has_xml:
            raise BatchError(f"{folder}: {XML_NOT_SUPPORTED}")
        raise BatchError(f"{folder}: {base}.parquet is missing (or {base}.arrow, {base}.csv)")
    return found[0]


def _line_labels(raw: pa.Table, cast: CastTable, rows: pa.Array) -> pa.Array:
    """``line drug #3: `` for each of ``rows``: the cast kind/line_no, or their raw
    text if bad.  Only the lines with a bad value are labelled: a batch with a few
    bad lines must not pay for labelling millions of good ones."""
    parts = []
    for name in ("kind", "line_no"):
        good = cast.table.column(name).take(rows).cast(pa.string())
        raw_text = display_text(raw.column(name).take(rows)) if name in raw.column_names else good
        parts.append(pc.coalesce(good, raw_text, pa.scalar("?")))
    labels = pc.binary_join_element_wise("line ", parts[0], " #", parts[1], ": ", "")
    return labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels


def _line_messages(raw: pa.Table, cast: CastTable) -> pa.Array:
    """One message per line (null for a good line), each naming its line; built on
    the bad lines only, then spread over all lines."""
    n = raw.num_rows
    bad_columns = [e for e in cast.errors.values() if e.null_count < len(e)]
    if not bad_columns:
        return pa.nulls(n, pa.string())
    bad = np.zeros(n, dtype=bool)
    for e in bad_columns:
        bad |= pc.is_valid(e).to_numpy(zero_copy_only=False)
    rows = pa.array(np.flatnonzero(bad))
    labels = _line_labels(raw, cast, rows)
    joined = join_messages([prefix_messages(e.take(rows), labels) for e in bad_columns], len(rows))
    return pc.replace_with_mask(pa.nulls(n, pa.string()), pa.array(bad), joined)


def _read_present(path: Path, columns: tuple[Column, ...], skip: frozenset[str]) -> pa.Table:
    """The file, without the contract columns proven valid and not needed.

    String columns are read as dictionaries (see io/dictionary.py), then decoded
    by the cast; the codes are kept beside the table by ``_codes``.
    """
    strings = frozenset(c.name for c in columns if pa.types.is_string(c.type))
    if not skip:
        return read_table_file(path, as_dictionary=strings)
    names = pq.read_schema(path).names
    return read_table_file(path, [n for n in names if n not in skip], as_dictionary=strings)


def _codes(
    raw: pa.Table, cast: CastTable, join_only: frozenset[str] = frozenset()
) -> dict[str, Codes]:
    """Dictionary codes of the raw dictionary columns, null where the cast value is.

    Columns in ``join_only`` (claim_id: the lines' only join their claims, the
    claims' are one per row) keep the file's dictionaries as they are, without
    making their words distinct.
    """
    out: dict[str, Codes] = {}
    for name in cast.table.column_names:
        if name not in raw.column_names or not pa.types.is_string(
            cast.table.schema.field(name).type
        ):
            continue
        codes = from_dictionary_column(raw.column(name), unique=name not in join_only)
        if codes is not None:
            values = cast.table.column(name)
            out[name] = without(codes, values.is_valid()) if values.null_count else codes
    return out


def _read_cast(
    path: Path,
    columns: tuple[Column, ...],
    needed: Mapping[str, frozenset[str]] | None,
    level: str,
) -> tuple[pa.Table, CastTable]:
    """One file read (without the unneeded columns its metadata proves valid) and cast."""
    proven = proven_valid(path, columns)
    skip: frozenset[str] = frozenset()
    if needed is not None:
        wanted = needed.get(level, frozenset())
        if level == "line":  # kind and line_no label a bad line's message: always read
            wanted = wanted | {"kind", "line_no"}
        skip = unneeded(columns, proven, wanted)
    raw = _read_present(path, columns, skip)
    kept = [c for c in columns if c.name not in skip]
    return raw, cast_table(raw, kept, path, BatchError, proven)


def batch_files(path: Path) -> tuple[Path, Path]:
    """The claims and lines files of a batch folder (BatchError if there are none)."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        raise BatchError(f"{path}: {XML_NOT_SUPPORTED}")
    if not path.exists():
        raise BatchError(f"{path}: batch folder does not exist")
    if not path.is_dir():
        raise BatchError(f"{path}: a batch is a folder holding claims and lines files")
    return _find_file(path, "claims"), _find_file(path, "lines")


def read_batch(path: Path, needed: Mapping[str, frozenset[str]] | None = None) -> Batch:
    """Read and cast a batch folder; see the module docstring for what raises.

    With ``needed`` (per level, "claim" and "line", the columns a plan and the
    outputs use), Parquet columns
    outside it whose validity the file's metadata proves are left unread and are
    absent from the returned tables (see io/pruning.py).
    """
    claims_file, lines_file = batch_files(path)

    raw_claims, claims = _read_cast(claims_file, CLAIM_COLUMNS, needed, "claim")
    raw_lines, lines = _read_cast(lines_file, LINE_COLUMNS, needed, "line")

    claim_errors = join_messages(
        [claims.errors[c.name] for c in CLAIM_COLUMNS if c.name in claims.errors],
        raw_claims.num_rows,
    )
    line_errors = _line_messages(raw_lines, lines)
    codes = {
        # claim_id: one row per claim, so its words need no hashing into
        # distinct codes (intake finds repeated ids by itself)
        "claim": _codes(raw_claims, claims, frozenset({"claim_id"})),
        "line": _codes(raw_lines, lines, frozenset({"claim_id"})),
    }
    del raw_claims, raw_lines  # their decimal128 buffers go with the narrowing
    return Batch(
        claims=narrow_decimals(claims.table),
        lines=narrow_decimals(lines.table),
        claim_errors=claim_errors,
        line_errors=line_errors,
        files=(claims_file, lines_file),
        codes=codes,
    )
