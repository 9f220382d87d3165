"""Structural checks of a batch, before any rule: what makes a claim MALFORMED.

The readers already turned every bad *value* into a per-row message; here the
batch's *shape* is checked: a claim_id carried by several claim rows (every such
row is malformed), a claim without lines, a line number repeated within
(claim_id, kind), a bad value on one of a claim's lines, and lines whose claim_id
matches no claim row (ORPHAN_LINE).  All vectorized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.io.dictionary import Codes, from_dictionary_column
from claims_engine.kernels import columns, groups, join
from claims_engine.kernels import values as V
from claims_engine.kernels.values import Array


@dataclass(frozen=True)
class Intake:
    line_claim_row: Array  # claim row of each line (first row with its claim_id), -1 if none
    orphan: Array  # line has no claim row
    malformed: Array  # per claim row
    malformed_message: pa.Array  # per claim row, null when not malformed


def _join(*parts: pa.Array) -> pa.Array:
    """Join per-row messages with '; ', skipping nulls."""
    out = parts[0]
    for p in parts[1:]:
        both = pc.binary_join_element_wise(out, p, "; ")
        out = pc.coalesce(both, out, p)
    return out


def check_structure(
    claims: pa.Table,
    lines: pa.Table,
    claim_errors: pa.Array,
    line_errors: pa.Array,
    line_codes: Mapping[str, Codes] | None = None,
) -> Intake:
    """``line_codes``: dictionary codes of the lines' string columns, if the reader
    kept them (claim_id and kind are then matched per distinct value)."""
    n_claims = claims.num_rows
    line_codes = line_codes or {}
    claim_ids = columns.array(claims, "claim_id")
    line_ids = columns.array(lines, "claim_id")

    # each claim row -> the first claim row with its claim_id
    ids = join.ClaimIds(claim_ids)
    own_first = join.first_rows(ids)

    # each line -> the first claim row with its claim_id
    if "claim_id" in line_codes:
        line_claim_row = _claim_rows_by_code(line_codes["claim_id"], ids, own_first)
    else:
        line_claim_row = _claim_rows(line_ids, claim_ids)
    orphan = line_claim_row < 0

    # claim_id carried by more than one claim row
    counts = np.bincount(own_first[own_first >= 0], minlength=n_claims)
    repeated = np.zeros(n_claims, dtype=bool)
    has_id = own_first >= 0
    repeated[has_id] = counts[own_first[has_id]] > 1

    # claims without lines (a repeated claim_id's lines all count for its first row)
    n_lines = np.bincount(line_claim_row[~orphan], minlength=n_claims)
    no_lines = np.zeros(n_claims, dtype=bool)
    no_lines[has_id] = n_lines[own_first[has_id]] == 0

    # line_no repeated within (claim_id, kind)
    dup_line = _repeated_line_numbers(lines, line_claim_row, line_codes.get("kind"), n_claims)

    # the first bad line of each claim names the problem; more are counted
    bad_line = (~pc.is_null(line_errors).to_numpy(zero_copy_only=False)) | dup_line
    bad_line &= ~orphan
    per_claim = np.full(n_claims, -1, dtype=np.int64)
    bad_count = np.bincount(line_claim_row[bad_line], minlength=n_claims)
    rows = np.flatnonzero(bad_line)
    if len(rows):
        # rows ascend: the first occurrence of each owner is its earliest bad line
        owners, first = np.unique(line_claim_row[rows], return_index=True)
        per_claim[owners] = rows[first]
    # a repeated claim_id: its lines belong to the first row; share the message
    per_claim[has_id] = per_claim[own_first[has_id]]
    bad_count[has_id] = bad_count[own_first[has_id]]
    has_bad_line = per_claim >= 0
    line_part = pa.nulls(n_claims, pa.string())
    if has_bad_line.any():
        # built for the claims with a bad line only (a few in a million)
        claim_rows = np.flatnonzero(has_bad_line)
        text = _bad_line_messages(lines, line_errors, dup_line, per_claim[claim_rows])
        more = bad_count[claim_rows] - 1
        extra = pc.binary_join_element_wise(
            pa.scalar(" (and "), pa.array(more).cast(pa.string()), pa.scalar(" more bad lines)"), ""
        )
        text = pc.if_else(pa.array(more > 0), pc.binary_join_element_wise(text, extra, ""), text)
        if isinstance(text, pa.ChunkedArray):
            text = text.combine_chunks()
        line_part = pc.replace_with_mask(line_part, pa.array(has_bad_line), text)

    def flag(mask: Array, text: str) -> pa.Array:
        return pc.if_else(pa.array(mask), pa.scalar(text), pa.nulls(n_claims, pa.string()))

    message = _join(
        claim_errors,
        flag(repeated, "claim_id is carried by more than one claim row"),
        flag(no_lines & ~repeated, "the claim has no lines"),
        line_part,
    )
    malformed = ~pc.is_null(message).to_numpy(zero_copy_only=False)
    return Intake(line_claim_row, orphan, malformed, message)


def _bad_line_messages(
    lines: pa.Table, line_errors: pa.Array, dup_line: Array, rows: Array
) -> pa.Array:
    """The message of each of the bad lines ``rows``: its values' errors, and its
    line_no if another line of its claim and kind has it too."""
    taken = line_errors.take(pa.array(rows))
    dup = dup_line[rows]
    if not dup.any():
        return taken
    kinds = columns.array(lines, "kind").take(pa.array(rows))
    nos = columns.array(lines, "line_no").take(pa.array(rows)).cast(pa.string())
    dup_msg = pc.binary_join_element_wise(
        pa.scalar("line "),
        kinds.fill_null("?"),
        pa.scalar(" #"),
        nos.fill_null("?"),
        pa.scalar(": line_no repeats within (claim_id, kind)"),
        "",
    )
    dup_msg = pc.if_else(pa.array(dup), dup_msg, pa.nulls(len(rows), pa.string()))
    return _join(taken, dup_msg)


def _claim_rows(line_ids: pa.Array, claim_ids: pa.Array) -> Array:
    """The first claim row carrying each line's claim_id (-1 for none).

    Lines arrive grouped by claim (a QĐ130 file lists a claim's lines together),
    so the ids are looked up once per run of equal ids, not once per line.
    """
    n = len(line_ids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    change = pc.not_equal(line_ids.slice(1), line_ids.slice(0, n - 1)).fill_null(True)
    starts = np.concatenate(([0], np.flatnonzero(change.to_numpy(zero_copy_only=False)) + 1))
    if len(starts) * 2 > n:  # not grouped: look every line up
        rows = pc.index_in(line_ids, value_set=claim_ids)
        return np.asarray(rows.fill_null(-1).to_numpy(), dtype=np.int64)
    run_rows = pc.index_in(line_ids.take(pa.array(starts)), value_set=claim_ids)
    lengths = np.diff(np.append(starts, n))
    return np.repeat(run_rows.fill_null(-1).to_numpy().astype(np.int64), lengths)


def _claim_rows_by_code(codes: Codes, ids: join.ClaimIds, own_first: Array) -> Array:
    """``_claim_rows`` from dictionary codes: each claim_id word is found once, by a
    walk beside the claim rows in file order (kernels/join.py)."""
    word_rows = join.rows_of_words(codes.words, ids, own_first)
    # code -1 (a null id) joins the first claim row with a null id, as index_in does
    null_row = -1
    if ids.array.null_count:
        null_row = int(np.argmin(ids.array.is_valid().to_numpy(zero_copy_only=False)))
    word_rows = np.append(np.asarray(word_rows, dtype=np.int64), null_row)
    return np.asarray(word_rows[codes.indices])


_KINDS = pa.array(["drug", "service", "supply"])


def _repeated_line_numbers(
    lines: pa.Table, claim_row: Array, kind_codes: Codes | None, n_claims: int
) -> Array:
    """Lines whose (claim, kind, line_no) another line also has."""
    n = lines.num_rows
    if n == 0:
        return np.zeros(0, dtype=bool)
    if kind_codes is None:
        kind_codes = from_dictionary_column(pc.dictionary_encode(columns.array(lines, "kind")))
        assert kind_codes is not None
    # the kind of each distinct word (3: null or not a kind), then per line in the key
    per_word = pc.index_in(kind_codes.words, value_set=_KINDS).fill_null(3).to_numpy()
    line_no = V.from_arrow(lines.column("line_no"))
    key = groups.kind_number_keys(kind_codes.indices, per_word, 3, line_no.data, line_no.valid)
    return groups.repeated_keys(claim_row, key, n_claims)
