"""Structural checks of a batch, before any rule: what makes a claim MALFORMED.

The readers already turned every bad *value* into a per-row message; here the
batch's *shape* is checked: a claim_id carried by several claim rows (every such
row is malformed), a claim without lines, a line number repeated within
(claim_id, kind), a bad value on one of a claim's lines, and lines whose claim_id
matches no claim row (ORPHAN_LINE).  All vectorized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.kernels import columns
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
    claims: pa.Table, lines: pa.Table, claim_errors: pa.Array, line_errors: pa.Array
) -> Intake:
    n_claims = claims.num_rows
    claim_ids = columns.array(claims, "claim_id")
    line_ids = columns.array(lines, "claim_id")

    # each line -> the first claim row with its claim_id
    line_claim_row = _claim_rows(line_ids, claim_ids)
    orphan = line_claim_row < 0

    # claim_id carried by more than one claim row
    own_first = pc.index_in(claim_ids, value_set=claim_ids).fill_null(-1).to_numpy()
    counts = np.bincount(own_first[own_first >= 0], minlength=n_claims)
    repeated = np.zeros(n_claims, dtype=bool)
    has_id = own_first >= 0
    repeated[has_id] = counts[own_first[has_id]] > 1

    # claims without lines (a repeated claim_id's lines all count for its first row)
    n_lines = np.bincount(line_claim_row[~orphan], minlength=n_claims)
    no_lines = np.zeros(n_claims, dtype=bool)
    no_lines[has_id] = n_lines[own_first[has_id]] == 0

    # line_no repeated within (claim_id, kind)
    dup_line = _repeated_line_numbers(lines, line_claim_row)

    # the first bad line of each claim names the problem; more are counted
    bad_line = (~pc.is_null(line_errors).to_numpy(zero_copy_only=False)) | dup_line
    bad_line &= ~orphan
    line_msg = line_errors
    if dup_line.any():
        kinds = columns.array(lines, "kind")
        nos = columns.array(lines, "line_no").cast(pa.string())
        dup_msg = pc.binary_join_element_wise(
            pa.scalar("line "),
            kinds.fill_null("?"),
            pa.scalar(" #"),
            nos.fill_null("?"),
            pa.scalar(": line_no repeats within (claim_id, kind)"),
            "",
        )
        dup_msg = pc.if_else(pa.array(dup_line), dup_msg, pa.nulls(len(dup_line), pa.string()))
        line_msg = _join(line_errors, dup_msg)
    per_claim = np.full(n_claims, -1, dtype=np.int64)
    bad_count = np.bincount(line_claim_row[bad_line], minlength=n_claims)
    rows = np.flatnonzero(bad_line)
    if len(rows):
        owners, first = np.unique(line_claim_row[rows][::-1], return_index=True)
        per_claim[owners] = rows[::-1][first]  # earliest bad line of each claim row
    # a repeated claim_id: its lines belong to the first row; share the message
    per_claim[has_id] = per_claim[own_first[has_id]]
    bad_count[has_id] = bad_count[own_first[has_id]]
    has_bad_line = per_claim >= 0
    line_part = pa.nulls(n_claims, pa.string())
    if has_bad_line.any():
        taken = line_msg.take(pa.array(np.where(has_bad_line, per_claim, 0)))
        more = pc.binary_join_element_wise(
            pa.scalar(" (and "),
            pa.array(bad_count - 1).cast(pa.string()),
            pa.scalar(" more bad lines)"),
            "",
        )
        taken = pc.if_else(
            pa.array(bad_count > 1), pc.binary_join_element_wise(taken, more, ""), taken
        )
        line_part = pc.if_else(pa.array(has_bad_line), taken, line_part)

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


def _repeated_line_numbers(lines: pa.Table, claim_row: Array) -> Array:
    """Lines whose (claim, kind, line_no) another line also has."""
    n = lines.num_rows
    if n == 0:
        return np.zeros(0, dtype=bool)
    kind = pc.index_in(lines.column("kind"), value_set=pa.array(["drug", "service", "supply"]))
    kind_code = kind.fill_null(3).to_numpy().astype(np.int64)
    line_no = columns.array(lines, "line_no")
    no = line_no.cast(pa.int64()).fill_null(-(2**31)).to_numpy() + 2**31
    key = (claim_row * 4 + kind_code) * 2**33 + no
    key_ok = (claim_row >= 0) & line_no.is_valid().to_numpy(zero_copy_only=False)
    if not bool(np.all(key[1:] >= key[:-1])):  # lines usually come sorted: skip the sort
        order = np.argsort(key, kind="stable")
        key, key_ok = key[order], key_ok[order]
    else:
        order = None
    eq = (key[1:] == key[:-1]) & key_ok[1:] & key_ok[:-1]
    same = np.zeros(n, dtype=bool)
    same[:-1] |= eq
    same[1:] |= eq
    if order is not None:
        out = np.zeros(n, dtype=bool)
        out[order] = same
        return out
    return same
