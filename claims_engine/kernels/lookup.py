"""As-of lookups into reference data: for every row, the reference row in force.

A lookup matches rows on equality keys and picks, among the reference rows valid
on the row's date (valid_from <= date <= valid_to, nulls open), the one with the
latest valid_from; reference rows whose ``prefer`` columns equal the row's values
(a facility-specific catalogue row) win over rows where those columns are null.

Keys are encoded to integers against the reference values (pyarrow index_in),
reference rows sorted by (key, valid_from), and a numba kernel scans each row's
candidate range: no Python loop per row.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Array = np.ndarray[Any, Any]
NO_DATE_LOW = np.iinfo(np.int64).min
NO_DATE_HIGH = np.iinfo(np.int64).max


@numba.njit(cache=True, nogil=True, parallel=True)
def _asof_scan(
    starts: Array,
    ends: Array,
    dates: Array,
    ok: Array,
    ref_from: Array,
    ref_to: Array,
    ref_row: Array,
) -> Array:  # pragma: no cover
    n = starts.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    for i in numba.prange(n):
        if not ok[i]:
            continue
        d = dates[i]
        best = -1
        for j in range(starts[i], ends[i]):  # sorted by valid_from: the last valid wins
            if ref_from[j] <= d and d <= ref_to[j]:
                best = j
        if best >= 0:
            out[i] = ref_row[best]
    return out


def encode(ref_values: pa.Array, row_values: pa.Array) -> tuple[Array, Array, int]:
    """Integer codes of reference and row values against the distinct reference values.

    Returns (ref_codes, row_codes, cardinality); a row value absent from the
    reference (or null) gets -1.
    """
    uniques = pc.unique(ref_values.drop_null())
    ref_codes = _codes(pc.index_in(ref_values, value_set=uniques))
    row_codes = _codes(pc.index_in(row_values, value_set=uniques))
    return ref_codes, row_codes, max(len(uniques), 1)


def _codes(found: pa.Array) -> Array:
    """index_in's result as int64 with -1 for "not found", in one conversion."""
    codes = np.asarray(found.fill_null(-1).to_numpy(), dtype=np.int64)
    return codes


@numba.njit(cache=True, nogil=True, parallel=True)
def _combine(codes: Array, sizes: Array) -> Array:  # pragma: no cover
    n = codes.shape[1]
    out = np.empty(n, dtype=np.int64)
    for i in numba.prange(n):
        key = 0
        for j in range(codes.shape[0]):
            c = codes[j, i]
            if c < 0:
                key = -1
                break
            key = key * sizes[j] + c
        out[i] = key
    return out


def combine(codes: list[Array], sizes: list[int], n: int) -> Array:
    """Mixed-radix combination of per-column codes into one int64 key (-1 if any is -1).

    With no key columns every row has key 0: a table such as base_salary where the
    date alone decides.  One pass over the rows, in parallel.
    """
    if not codes:
        return np.zeros(n, dtype=np.int64)
    if len(codes) == 1:
        return codes[0]
    return np.asarray(_combine(np.stack(codes), np.asarray(sizes, dtype=np.int64)))


def dates_of(table: pa.Table, column: str, fill: int) -> Array:
    arr = table.column(column).combine_chunks().cast(pa.int32())
    return (
        arr.fill_null(0).to_numpy().astype(np.int64)
        if arr.null_count == 0
        else np.where(
            arr.is_valid().to_numpy(zero_copy_only=False),
            arr.fill_null(0).to_numpy().astype(np.int64),
            fill,
        )
    )


DIRECT_TABLE_LIMIT = 1 << 24


def _ranges(sorted_keys: Array, row_key: Array) -> tuple[Array, Array]:
    """Each row's [start, end) in the sorted reference keys.

    Keys are small mixed-radix integers, so a direct table (one slot per possible
    key) answers each row with two array reads; binary search only for key spaces
    too large for a table.
    """
    space = int(sorted_keys[-1]) + 1 if len(sorted_keys) else 1
    if space > DIRECT_TABLE_LIMIT:
        return (
            np.searchsorted(sorted_keys, row_key, side="left"),
            np.searchsorted(sorted_keys, row_key, side="right"),
        )
    ends_table = np.cumsum(np.bincount(sorted_keys, minlength=space + 1))
    starts_table = np.concatenate(([0], ends_table[:-1]))
    slot = np.where((row_key >= 0) & (row_key < space), row_key, space)  # `space`: empty slot
    return starts_table[slot], ends_table[slot]


@numba.njit(cache=True, nogil=True, parallel=True)
def _scan_direct(
    codes: Any,
    sizes: Array,
    starts_table: Array,
    ends_table: Array,
    dates: Array,
    ok: Array,
    ref_from: Array,
    ref_to: Array,
    ref_row: Array,
    prior: Array,
) -> Array:  # pragma: no cover
    """combine + _ranges + _asof_scan in one pass: no 8M-row key or range arrays.

    ``codes`` is a tuple of per-column row codes; a row whose ``prior`` (when given)
    is a match keeps it (facility-specific rows before the all-facility ones).
    """
    n = dates.shape[0]
    out = np.full(n, -1, dtype=np.int64)
    space = starts_table.shape[0] - 1  # the last slot is empty: keys never reach it
    has_prior = prior.shape[0] == n
    for i in numba.prange(n):
        if has_prior and prior[i] >= 0:
            out[i] = prior[i]
            continue
        if not ok[i]:
            continue
        key = 0
        for j in range(len(codes)):
            c = codes[j][i]
            if c < 0:
                key = -1
                break
            key = key * sizes[j] + c
        if key < 0 or key >= space:
            continue
        d = dates[i]
        best = -1
        for q in range(starts_table[key], ends_table[key]):  # by valid_from: last valid wins
            if ref_from[q] <= d and d <= ref_to[q]:
                best = q
        if best >= 0:
            out[i] = ref_row[best]
    return out


def _candidates(
    ref_key: Array, ref_rows: Array, ref_from: Array, ref_to: Array
) -> tuple[Array, Array, Array, Array, Array]:
    """The reference rows that can match (key >= 0), and their order by key, then
    valid_from, then file order (the scan keeps the last valid row)."""
    keep = ref_key >= 0
    ref_key, ref_rows, ref_from, ref_to = (
        ref_key[keep],
        ref_rows[keep],
        ref_from[keep],
        ref_to[keep],
    )
    return ref_key, ref_rows, ref_from, ref_to, np.lexsort((ref_rows, ref_from, ref_key))


def asof_match_codes(
    ref_key: Array,
    ref_rows: Array,
    ref_from: Array,
    ref_to: Array,
    row_codes: list[Array],
    sizes: list[int],
    row_date: Array,
    row_ok: Array,
    prior: Array | None = None,
) -> Array:
    """``asof_match`` with the rows' key given as per-column codes (combined on the fly
    as in ``combine``); rows where ``prior`` >= 0 keep that match."""
    n = len(row_date)
    if not row_codes:  # no key column: every row has key 0
        row_codes, sizes = [np.zeros(n, dtype=np.int64)], [1]
    ref_key, ref_rows, ref_from, ref_to, order = _candidates(ref_key, ref_rows, ref_from, ref_to)
    sk = ref_key[order]
    space = int(sk[-1]) + 1 if len(sk) else 1
    if space > DIRECT_TABLE_LIMIT:
        row_key = combine(row_codes, sizes, n)
        found = asof_match(ref_key, ref_rows, ref_from, ref_to, row_key, row_date, row_ok)
        return found if prior is None else np.where(prior >= 0, prior, found)
    ends_table = np.cumsum(np.bincount(sk, minlength=space + 1))
    starts_table = np.concatenate(([0], ends_table[:-1]))
    return np.asarray(
        _scan_direct(
            tuple(np.ascontiguousarray(c, dtype=np.int64) for c in row_codes),
            np.asarray(sizes, dtype=np.int64),
            starts_table.astype(np.int64),
            ends_table.astype(np.int64),
            np.ascontiguousarray(row_date, dtype=np.int64),
            np.ascontiguousarray(row_ok, dtype=np.bool_),
            ref_from[order],
            ref_to[order],
            ref_rows[order],
            np.zeros(0, dtype=np.int64) if prior is None else prior.astype(np.int64, copy=False),
        )
    )


def asof_match(
    ref_key: Array,
    ref_rows: Array,
    ref_from: Array,
    ref_to: Array,
    row_key: Array,
    row_date: Array,
    row_ok: Array,
) -> Array:
    """Index (into the reference table) of each row's match, -1 where none.

    ``ref_rows`` are the candidate reference rows (positions in the table) with
    their keys and validity; rows whose key is -1 or ``row_ok`` false never match.
    """
    ref_key, ref_rows, ref_from, ref_to, order = _candidates(ref_key, ref_rows, ref_from, ref_to)
    sk = ref_key[order]
    starts, ends = _ranges(sk, row_key)
    ok = row_ok & (row_key >= 0)
    return np.asarray(
        _asof_scan(
            starts.astype(np.int64),
            ends.astype(np.int64),
            row_date,
            ok,
            ref_from[order],
            ref_to[order],
            ref_rows[order],
        )
    )
