"""From rule hits to the output tables of contract section 4 and summary.json.

Decisions: a claim is rejected when a claim-level reject rule hits (MALFORMED
included) or every line is rejected; else flagged when a flag rule hits the claim
or one of its lines; else approved.  A line is rejected when a line reject rule
hits it or its claim is rejected; else adjusted when an adjust rule hits it; else
paid.  Amounts are exact decimals computed from scaled integers.

Everything per row stays numpy until the output columns are built, and each
column is built once, already in output order: the sort permutation (claims by
claim_id, lines by (claim_id, kind, line_no)) is applied to small integer arrays
(codes, cents, reason bitmasks) inside the kernels that build the Arrow buffers,
never by a ``Table.take`` of finished columns.  Input string columns may be plain
or dictionary-encoded; the outputs hold plain strings, except that ``kind`` and
``decision`` are dictionary arrays over their few values (cheap to build; the
writer casts them to strings, see io/output.py, and the ``Result`` properties give
plain tables).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine import __version__, schema
from claims_engine.engine import Outcome
from claims_engine.intake import Intake
from claims_engine.io.output import plain_table
from claims_engine.kernels import groups
from claims_engine.kernels import values as V
from claims_engine.kernels.columns import Column, chunks, plain, take_rows
from claims_engine.kernels.values import Array
from claims_engine.plan.plan import Plan

#: Largest magnitude of decimal128(18, 2), in cents.
MONEY_LIMIT = 10**18 - 1
_KINDS = tuple(sorted(schema.LINE_KINDS))
_NO_TAKE = np.zeros(0, dtype=np.int64)  # "identity" for the kernels' optional gather
_MAX_CODES = 63  # reason codes per level: bits of a non-negative int64


@dataclass(frozen=True, eq=False)
class Result:
    """The outputs of one batch.

    ``outputs`` are the tables as written (``tables()``); the properties give the
    same tables with every column in its contract type (plain strings).
    """

    outputs: Mapping[str, pa.Table]
    summary: dict[str, Any]
    claim_codes: Array  # per input claim row, in input order: index in schema.DECISIONS
    line_codes: Array  # per input line row, in input order: index in schema.LINE_DECISIONS

    def tables(self) -> dict[str, pa.Table]:
        return dict(self.outputs)

    @cached_property
    def approved(self) -> pa.Table:
        return plain_table(self.outputs["approved"])

    @cached_property
    def rejected(self) -> pa.Table:
        return plain_table(self.outputs["rejected"])

    @cached_property
    def flagged(self) -> pa.Table:
        return plain_table(self.outputs["flagged"])

    @cached_property
    def lines(self) -> pa.Table:
        return plain_table(self.outputs["lines"])

    @cached_property
    def reasons(self) -> pa.Table:
        return plain_table(self.outputs["reasons"])

    @cached_property
    def claim_decisions(self) -> pa.Array:
        """Per input claim row, in input order (for history): pa.string()."""
        return pa.array(schema.DECISIONS).take(pa.array(self.claim_codes))

    @cached_property
    def line_decisions(self) -> pa.Array:
        """Per input line row, in input order: pa.string()."""
        return pa.array(schema.LINE_DECISIONS).take(pa.array(self.line_codes))


def money_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}{cents // 100}.{cents % 100:02d}"


# --------------------------------------------------------------------------- kernels


@numba.njit(cache=True, nogil=True)
def _money_cents(data: Array, take: Array, out: Array) -> bool:  # pragma: no cover
    """``out[i] = data[take[i]]``; with ``take`` empty, ``out`` is ``data`` and is
    only checked.  False if a value is beyond 18 digits.  (One thread: a parallel
    version took 0.035 s against 0.05 s for a million claims' 15 money columns,
    where page-faulting the new columns in costs ~0.2 s.)"""
    ok = True
    if take.shape[0] == 0:
        for i in range(data.shape[0]):
            v = data[i]
            if v > MONEY_LIMIT or v < -MONEY_LIMIT:
                ok = False
        return ok
    for i in range(out.shape[0]):
        v = data[take[i]]
        if v > MONEY_LIMIT or v < -MONEY_LIMIT:
            ok = False
        out[i] = v
    return ok


@numba.njit(cache=True, nogil=True)
def _bit_lists(bits: Array, take: Array, offsets: Array) -> Array:  # pragma: no cover
    """List offsets (into ``offsets``, n + 1) and the set bit numbers, ascending per
    row, of bits[take[i]] (bits[i] if take is empty)."""
    n = offsets.shape[0] - 1
    gather = take.shape[0] > 0
    total = 0
    offsets[0] = 0
    for i in range(n):
        b = bits[take[i]] if gather else bits[i]
        while b:
            b &= b - 1
            total += 1
        offsets[i + 1] = total
    which = np.empty(total, dtype=np.int8)
    j = 0
    for i in range(n):
        b = bits[take[i]] if gather else bits[i]
        k = 0
        while b:
            if b & 1:
                which[j] = k
                j += 1
            b >>= 1
            k += 1
    return which


@numba.njit(cache=True, nogil=True)
def _match_words(
    offsets: Array, data: Array, words_offsets: Array, words_data: Array, out: Array
) -> None:  # pragma: no cover
    """out[i]: the index of string i among ``words`` (-2 when none); nulls not masked."""
    k = words_offsets.shape[0] - 1
    for i in range(out.shape[0]):
        start = offsets[i]
        size = offsets[i + 1] - start
        code = -2
        for w in range(k):
            ws = words_offsets[w]
            if words_offsets[w + 1] - ws != size:
                continue
            same = True
            for j in range(size):
                if data[start + j] != words_data[ws + j]:
                    same = False
                    break
            if same:
                code = w
                break
        out[i] = code


@numba.njit(cache=True, nogil=True)
def _valid_range(values: Array, valid: Array) -> tuple[int, int]:  # pragma: no cover
    """(min, max) of the valid values; (0, 0) when there is none."""
    low = 0
    high = 0
    seen = False
    for i in range(values.shape[0]):
        if valid[i]:
            v = values[i]
            if not seen:
                low = v
                high = v
                seen = True
            elif v < low:
                low = v
            elif v > high:
                high = v
    return low, high


@numba.njit(cache=True, nogil=True)
def _line_keys(
    row: Array,
    rank: Array,
    kind: Array,
    line_no: Array,
    valid: Array,
    low: int,
    span: int,
    key: Array,
) -> tuple[int, int]:  # pragma: no cover
    """key[i] = (claim rank, kind code, line number) of line i packed in one int64
    (unknown kind 3, null line number span - 1).  Returns how many keys and how
    many claim ranks are smaller than the previous line's."""
    descents = 0
    claim_descents = 0
    last_key = 0
    last_rank = 0
    for i in range(key.shape[0]):
        r = rank[row[i]]
        k = kind[i] if kind[i] >= 0 else 3
        no = line_no[i] - low if valid[i] else span - 1
        value = (r * 4 + k) * span + no
        key[i] = value
        if i > 0:
            if value < last_key:
                descents += 1
            if r < last_rank:
                claim_descents += 1
        last_key = value
        last_rank = r
    return descents, claim_descents


@numba.njit(cache=True, nogil=True)
def _decision_codes(
    first: Array, first_code: int, second: Array, second_code: int
) -> Array:  # pragma: no cover
    """int8 per row: first_code where ``first``, else second_code where ``second``, else 0."""
    out = np.empty(first.shape[0], dtype=np.int8)
    for i in range(first.shape[0]):
        out[i] = first_code if first[i] else (second_code if second[i] else 0)
    return out


@numba.njit(cache=True, nogil=True)
def _descents(key: Array) -> int:  # pragma: no cover
    """How many rows have a smaller key than the row before."""
    count = 0
    for i in range(1, key.shape[0]):
        if key[i] < key[i - 1]:
            count += 1
    return count


# --------------------------------------------------------------------------- columns


def _valid(column: Column) -> Array:
    n = len(column)
    if column.null_count == 0:
        return np.ones(n, dtype=bool)
    return np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)


def _small_codes(column: Column, words: Sequence[str]) -> Array | None:
    """Per row, the index of its value in ``words`` (int8, -1 for null), or None when
    some value is not one of them.  No string is hashed: plain chunks are compared
    byte-wise against the few words, dictionary chunks through their dictionary."""
    vocabulary = pa.array(words, pa.string())
    parts = []
    for chunk in chunks(column):
        n = len(chunk)
        if pa.types.is_dictionary(chunk.type):
            mapping = pc.index_in(plain(chunk.dictionary), value_set=vocabulary)
            mapping = np.asarray(mapping.fill_null(-2).to_numpy(), dtype=np.int8)
            if chunk.dictionary.null_count:
                mapping[~_valid(chunk.dictionary)] = -1
            indices = chunk.indices.fill_null(0).to_numpy()
            codes = mapping[indices] if len(mapping) else np.full(n, -1, dtype=np.int8)
        else:
            if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
                chunk = chunk.cast(pa.string())
            codes = np.empty(n, dtype=np.int8)
            if n:
                offset_type = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
                buffers = chunk.buffers()
                offsets = np.frombuffer(buffers[1], dtype=offset_type)[
                    chunk.offset : chunk.offset + n + 1
                ]
                data = (
                    np.frombuffer(buffers[2], dtype=np.uint8)
                    if buffers[2] is not None
                    else np.zeros(0, dtype=np.uint8)
                )
                w = vocabulary.buffers()
                _match_words(
                    offsets,
                    data,
                    np.frombuffer(w[1], dtype=np.int32)[: len(words) + 1],
                    np.frombuffer(w[2], dtype=np.uint8),
                    codes,
                )
        if chunk.null_count:
            codes[~_valid(chunk)] = -1
        parts.append(codes)
    codes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)
    if bool((codes == -2).any()):
        return None
    return codes


def _dictionary(codes: Array, words: Sequence[str]) -> pa.DictionaryArray:
    """int8 codes (-1: null) over ``words`` as a dictionary array."""
    mask = codes < 0
    indices = pa.array(codes, type=pa.int8(), mask=mask if mask.any() else None)
    return pa.DictionaryArray.from_arrays(indices, pa.array(words, pa.string()))


def _money(data: Array, take: Array | None = None, valid: Array | None = None) -> pa.Array:
    """Cents -> money, gathered by ``take`` on the way (no Python objects).

    The column is a decimal64(18, 2) over the cents themselves: no 16-byte copy
    of 8 million values, and the Parquet writer stores those same 8 bytes per
    value (INT64 decimal(18, 2), read back as decimal128 like every other money
    column: io/parquet_out.py).  ``Result``'s tables show it as decimal128.
    """
    data = np.asarray(data)
    if data.dtype != object:
        data = data.astype(np.int64, copy=False)
        n = len(data) if take is None else len(take)
        cents = data if take is None else np.empty(n, dtype=np.int64)
        if _money_cents(data, _NO_TAKE if take is None else take, cents):
            null_count = 0
            bitmap = None
            if valid is not None:
                ok = valid if take is None else valid[take]
                null_count = int(n - np.count_nonzero(ok))
                if null_count:
                    bitmap = pa.py_buffer(np.packbits(ok, bitorder="little"))
            return pa.Array.from_buffers(
                schema.MONEY64, n, [bitmap, pa.py_buffer(cents)], null_count
            )
    # exact path: values beyond int64, or beyond 18 digits (Arrow refuses those)
    picked = data if take is None else data[take]
    kept = None if valid is None else (valid if take is None else valid[take])
    return V.scaled_to_decimal(picked.astype(object), kept, 2, 2)


def _select(column: Column, take: Array | None, mask: Array | None) -> Column:
    """Rows ``take`` of ``column`` (all when None); ``mask`` is the same selection
    as a boolean filter when the rows keep their order (filter beats take)."""
    if take is None:
        return column
    if mask is not None and len(take) * 8 >= len(column):
        return column.filter(pa.array(mask))
    return take_rows(column, take)


# --------------------------------------------------------------------------- codes


def _code_bits(n: int, rows: list[Array], codes: list[str], vocabulary: list[str]) -> Array:
    """Per row a bitmask of its hits' codes (bit i = vocabulary[i])."""
    bits = np.zeros(n, dtype=np.int64)
    for r, c in zip(rows, codes, strict=True):
        if len(r):
            bits[r] |= np.int64(1 << vocabulary.index(c))
    return bits


def _code_lists(bits: Array, vocabulary: list[str], take: Array | None = None) -> pa.Array:
    """list<string>: per row (gathered by ``take``) the sorted codes of its bitmask.

    Each row's bitmask expands to its codes in vocabulary (= sorted) order; hits
    are sparse, so this is one pass over the rows, not a sort.
    """
    n = len(bits) if take is None else len(take)
    offsets = np.empty(n + 1, dtype=np.int32)
    which = _bit_lists(bits, _NO_TAKE if take is None else take, offsets)
    values = pa.array(vocabulary or [""], pa.string()).take(pa.array(which))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _vocabulary(codes: list[str]) -> list[str]:
    vocabulary = sorted(set(codes))
    if len(vocabulary) > _MAX_CODES:
        raise ValueError(f"more than {_MAX_CODES} distinct reason codes in one batch")
    return vocabulary


# --------------------------------------------------------------------------- order


def _claim_order(claim_ids: Column) -> Array | None:
    """Claims by claim_id (nulls last), or None if already in that order."""
    n = len(claim_ids)
    if n < 2:
        return None
    if claim_ids.null_count == 0:
        ordered = pc.less_equal(claim_ids.slice(0, n - 1), claim_ids.slice(1))
        if pc.all(ordered).as_py():
            return None
    return np.asarray(pc.sort_indices(claim_ids), dtype=np.int64)


def _sort_key(key: Array, descents: int | None = None) -> Array | None:
    """A stable sort of ``key``: None when sorted already (the usual case); an
    adaptive merge sort when nearly sorted (a few lines out of place), else a
    sort of the keys with the row number packed in.  ``descents``: how many keys
    are smaller than the one before, if known."""
    if descents is None:
        descents = _descents(key)
    if descents == 0:
        return None
    n = len(key)
    if descents <= n // 64:
        return np.asarray(np.argsort(key, kind="stable"))
    # the row number packed under the key: a plain value sort, several times faster
    low = int(key.min())
    bits = max(n - 1, 1).bit_length()
    if int(key.max()) - low < 1 << (62 - bits):
        packed = ((key - low) << bits) | np.arange(n, dtype=np.int64)
        packed.sort()
        return np.asarray(packed & ((1 << bits) - 1))
    return np.asarray(np.argsort(key, kind="stable"))


def _ranks_with_orphans(claim_ids: Column, line_ids: Column, intake: Intake) -> tuple[Array, Array]:
    """Ranks by value (nulls last) of the claims' ids and of the orphan lines'
    distinct ids together, and each line's position in them: an orphan line sorts
    between the claims as its claim_id does, with no sort of millions of lines."""
    nc = len(claim_ids)
    orphan_rows = np.flatnonzero(intake.orphan)
    orphan_ids = take_rows(line_ids, orphan_rows)
    distinct = pc.unique(orphan_ids)
    together = pa.concat_arrays([*chunks(plain(claim_ids)), distinct])
    order = np.asarray(pc.array_sort_indices(together, null_placement="at_end"), dtype=np.int64)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    row = intake.line_claim_row.copy()
    at = pc.index_in(orphan_ids, value_set=distinct).to_numpy(zero_copy_only=False)
    row[orphan_rows] = nc + np.asarray(at, dtype=np.int64)
    return rank, row


@dataclass(frozen=True)
class _LineOrder:
    take: Array | None  # output position -> input line row (None: input order)
    same_claims: bool  # the claim of each output position is that of the same input row


def _line_order(
    out: Outcome,
    claim_order: Array | None,
    kind_codes: Array | None,
    line_no: Array,
    line_no_valid: Array,
    columns: tuple[Column, Column, Column],
) -> _LineOrder:
    """Lines by (claim_id, kind, line_no), nulls last, ties in input order.

    One int64 key (claim rank, kind code, line number) when every kind is a known
    one (orphan lines' claim_ids are ranked among the claims'); otherwise a sort of
    the values themselves.
    """
    nc = out.claims.num_rows
    nl = len(line_no)
    row = out.intake.line_claim_row
    if nl < 2:
        return _LineOrder(None, True)
    packed = kind_codes is not None
    rank = np.arange(nc, dtype=np.int64)
    if claim_order is not None:
        rank[claim_order] = np.arange(nc, dtype=np.int64)
    if bool(out.intake.orphan.any()):
        rank, row = _ranks_with_orphans(out.claims.column("claim_id"), columns[0], out.intake)
    if packed:
        low, high = (int(v) for v in _valid_range(line_no, line_no_valid))
        span = high - low + 2  # the last value: null line numbers
        packed = len(rank) * 4 * span < 2**62
    if not packed:  # orphans' ids fall between claims', or unknown kinds: sort the values
        c, k, n = columns
        table = pa.table({"c": plain(c), "k": plain(k), "n": n})
        order = pc.sort_indices(table, [("c", "ascending"), ("k", "ascending"), ("n", "ascending")])
        return _LineOrder(np.asarray(order, dtype=np.int64), False)
    assert kind_codes is not None
    key = np.empty(nl, dtype=np.int64)
    descents, claim_descents = _line_keys(
        row, rank, kind_codes, line_no, line_no_valid, low, span, key
    )
    return _LineOrder(_sort_key(key, descents), claim_descents == 0)


# --------------------------------------------------------------------------- reasons


def _reasons(out: Outcome, claim_ids: Column, line_ids: Column, kinds: Column) -> pa.Table:
    """One row per hit, sorted by (claim_id, kind, line_no, rule_id).

    The hit rows' ids are gathered in one pass per column (a few rows out of
    millions: see ``_take``), then cut into the per-rule parts.
    """
    intake = out.intake
    bad = np.flatnonzero(intake.malformed)
    orphans = np.flatnonzero(intake.orphan)
    parts: list[tuple[str, Array, str, str, str, Column | None]] = [
        (
            "claim",
            bad,
            "intake.malformed",
            schema.MALFORMED,
            "reject",
            take_rows(intake.malformed_message, bad),
        ),
        ("line", orphans, "intake.orphan_line", schema.ORPHAN_LINE, "reject", None),
    ]
    parts += [
        (h.level, h.rows, h.rule_id, h.code, h.severity, h.messages)
        for h in out.hits
        if len(h.rows)
    ]
    empty = np.zeros(0, dtype=np.int64)
    claim_rows = np.concatenate([empty] + [p[1] for p in parts if p[0] == "claim"])
    line_rows = np.concatenate([empty] + [p[1] for p in parts if p[0] != "claim"])
    of_claims = take_rows(claim_ids, claim_rows)
    of_lines = {
        "claim_id": take_rows(line_ids, line_rows),
        "kind": take_rows(kinds, line_rows),
        "line_no": take_rows(out.lines.column("line_no"), line_rows),
    }
    tables: list[pa.Table] = []
    at = {"claim": 0, "line": 0}
    for level, rows, rule_id, code, severity, messages in parts:
        n = len(rows)
        side = "claim" if level == "claim" else "line"
        start = at[side]
        at[side] += n
        if side == "claim":
            cid = of_claims.slice(start, n)
            kind = pa.nulls(n, pa.string())
            no = pa.nulls(n, pa.int32())
        else:
            cid = of_lines["claim_id"].slice(start, n)
            kind = of_lines["kind"].slice(start, n)
            no = of_lines["line_no"].slice(start, n)
        if messages is None:  # orphan lines: their claim_id
            messages = pc.binary_join_element_wise(
                pa.scalar("claim_id "),
                cid.fill_null("null"),
                pa.scalar(" matches no claim row"),
                "",
            )
        tables.append(
            pa.table(
                {
                    "claim_id": cid,
                    "kind": kind,
                    "line_no": no,
                    "rule_id": pa.repeat(pa.scalar(rule_id), n).cast(pa.string()),
                    "code": pa.repeat(pa.scalar(code), n).cast(pa.string()),
                    "severity": pa.repeat(pa.scalar(severity), n).cast(pa.string()),
                    "message": plain(messages).cast(pa.string()),
                },
                schema=schema.REASONS_SCHEMA,
            )
        )
    reasons = pa.concat_tables(tables)
    if reasons.num_rows:
        reasons = reasons.sort_by(
            [
                ("claim_id", "ascending"),
                ("kind", "ascending"),
                ("line_no", "ascending"),
                ("rule_id", "ascending"),
            ]
        )
    return reasons


# --------------------------------------------------------------------------- build


# The input columns the outputs are built from (contract section 4).
OUTPUT_FIELDS = {
    "claim": ("claim_id", "card_no", "facility_id", "fund_pays"),
    "line": ("claim_id", "kind", "line_no", "amount_hospital"),
}


def slim(out: Outcome) -> Outcome:
    """``out`` holding only the input columns the outputs need: once nothing else
    holds the batch, its other columns (a gigabyte at 8 million lines) are freed
    before the outputs are built."""
    return replace(
        out,
        claims=out.claims.select(list(OUTPUT_FIELDS["claim"])),
        lines=out.lines.select(list(OUTPUT_FIELDS["line"])),
    )


def _line_table(
    out: Outcome,
    claim_order: Array | None,
    keys: tuple[Column, Column, Column],
    line_code: Array,
    codes: tuple[Array, list[str]],
    patient: tuple[Array, Array | None],
) -> pa.Table:
    """The lines output, in (claim_id, kind, line_no) order.  ``keys``: the lines'
    claim_id, kind and line_no; ``codes``: reason bits and their vocabulary;
    ``patient``: what the patient pays per line, and where that is known."""
    line_ids, kinds, line_nos = keys
    line_bits, line_vocabulary = codes
    line_patient, patient_ok = patient
    kind_codes = _small_codes(kinds, _KINDS)
    line_no_valid = _valid(line_nos)
    line_no = np.asarray(line_nos.fill_null(0).to_numpy(), dtype=np.int32)
    order = _line_order(
        out, claim_order, kind_codes, line_no, line_no_valid, (line_ids, kinds, line_nos)
    )
    take = order.take
    if take is None or order.same_claims:
        line_claim_ids = plain(line_ids)
    else:
        line_claim_ids = take_rows(line_ids, take)
    if kind_codes is not None:
        kind_out: Column = _dictionary(kind_codes if take is None else kind_codes[take], _KINDS)
    else:
        kind_out = plain(kinds) if take is None else take_rows(kinds, take)
    if take is None:
        line_no_out: Column = line_nos
    else:
        ok = line_no_valid[take]
        line_no_out = pa.array(line_no[take], type=pa.int32(), mask=None if ok.all() else ~ok)
    return pa.table(
        {
            "claim_id": line_claim_ids,
            "kind": kind_out,
            "line_no": line_no_out,
            "decision": _dictionary(
                line_code if take is None else line_code[take], schema.LINE_DECISIONS
            ),
            "reason_codes": _code_lists(line_bits, line_vocabulary, take),
            "eligible": _money(out.line_eligible, take),
            "fund_pays": _money(out.line_fund, take),
            "patient_pays": _money(line_patient, take, patient_ok),
        }
    )


def _keep(name: str, table: pa.Table) -> None:
    """``build``'s default ``emit``: the tables are only returned."""


def build(
    out: Outcome, plan: Plan, batch_id: str, emit: Callable[[str, pa.Table], None] = _keep
) -> Result:
    """The output tables and summary of an evaluated batch.

    ``emit(name, table)`` is called as each output table is complete, the lines
    first (io/output.OutputStage writes each while the next is built).
    """
    claims, lines = out.claims, out.lines
    nc, nl = claims.num_rows, lines.num_rows
    row = out.intake.line_claim_row
    claim_ids = plain(claims.column("claim_id"))
    line_ids = lines.column("claim_id")
    kinds = lines.column("kind")
    line_nos = lines.column("line_no")

    # reason codes: a line's own; a claim's own plus its lines'
    claim_rows, claim_codes, line_rows, line_codes = [], [], [], []
    bad = np.flatnonzero(out.intake.malformed)
    claim_rows.append(bad)
    claim_codes.append(schema.MALFORMED)
    orphan_rows = np.flatnonzero(out.intake.orphan)
    line_rows.append(orphan_rows)
    line_codes.append(schema.ORPHAN_LINE)
    code_hits: dict[str, int] = {schema.MALFORMED: len(bad), schema.ORPHAN_LINE: len(orphan_rows)}
    for h in out.hits:
        code_hits[h.code] = code_hits.get(h.code, 0) + len(h.rows)
        if h.level == "claim":
            claim_rows.append(h.rows)
            claim_codes.append(h.code)
        else:
            line_rows.append(h.rows)
            line_codes.append(h.code)
            owners = row[h.rows]
            claim_rows.append(owners[owners >= 0])
            claim_codes.append(h.code)
    claim_vocabulary = _vocabulary(claim_codes)
    line_vocabulary = _vocabulary(line_codes)
    claim_bits = _code_bits(nc, claim_rows, claim_codes, claim_vocabulary)
    line_bits = _code_bits(nl, line_rows, line_codes, line_vocabulary)

    # amounts
    amount = V.from_arrow(lines.column("amount_hospital"))
    amount_data = np.asarray(V.full(amount, nl))
    amount_ok = V.valid_mask(amount, nl)
    requested = groups.group_sum(row, amount_data, amount_ok, nc)
    line_patient = np.asarray(amount_data - out.line_fund)
    claim_patient = np.asarray(requested - out.claim_fund)
    patient_ok = None if amount_ok.all() else amount_ok

    # decisions as small codes
    claim_code = _decision_codes(
        np.asarray(out.claim_rejected, dtype=bool), 1, np.asarray(out.claim_flagged, dtype=bool), 2
    )
    line_code = _decision_codes(
        np.asarray(out.line_rejected, dtype=bool), 2, np.asarray(out.line_adjusted, dtype=bool), 1
    )
    rate = out.claim_benefit_rate
    rate_arr = V.to_arrow(rate, nc) if rate is not None else pa.nulls(nc, pa.decimal128(18, 2))
    if rate is not None:
        rate_arr = pc.if_else(
            pa.array(out.claim_rejected), pa.scalar(None, rate_arr.type), rate_arr
        )

    claim_order = _claim_order(claim_ids)
    line_out = _line_table(
        out,
        claim_order,
        (line_ids, kinds, line_nos),
        line_code,
        (line_bits, line_vocabulary),
        (line_patient, patient_ok),
    )
    emit("lines", line_out)  # the biggest file: written while the rest is built

    # claims: one table per decision, each in claim_id order
    claim_arrow = {
        "claim_id": claim_ids,
        "card_no": plain(claims.column("card_no")),
        "facility_id": plain(claims.column("facility_id")),
        "declared_fund_pays": claims.column("fund_pays"),
        "benefit_rate": rate_arr,
    }
    split: dict[str, pa.Table] = {}
    for i, name in enumerate(schema.DECISIONS):
        chosen = claim_code == i
        mask: Array | None = None
        take: Array | None
        if claim_order is None:
            take = np.flatnonzero(chosen)
            if len(take) == nc:
                take = None
            else:
                mask = chosen
        else:
            take = claim_order[chosen[claim_order]]
        n = nc if take is None else len(take)

        def pick(name_: str, take: Array | None = take, mask: Array | None = mask) -> Column:
            return _select(claim_arrow[name_], take, mask)

        split[name] = pa.table(
            {
                "claim_id": pick("claim_id"),
                "card_no": pick("card_no"),
                "facility_id": pick("facility_id"),
                "decision": _dictionary(np.zeros(n, dtype=np.int8), [name]),
                "reason_codes": _code_lists(claim_bits, claim_vocabulary, take),
                "requested": _money(requested, take),
                "eligible": _money(out.claim_eligible, take),
                "fund_pays": _money(out.claim_fund, take),
                "patient_pays": _money(claim_patient, take),
                "declared_fund_pays": pick("declared_fund_pays"),
                "benefit_rate": pick("benefit_rate"),
            }
        )

    for name in schema.DECISIONS:
        emit(name, split[name])
    reasons = _reasons(out, claim_ids, line_ids, kinds)
    emit("reasons", reasons)

    by_decision = {}
    for i, name in enumerate(schema.DECISIONS):
        chosen = claim_code == i
        by_decision[name] = {
            "claims": int(chosen.sum()),
            "fund_pays": money_text(int(out.claim_fund[chosen].sum())),
        }
    summary: dict[str, Any] = {
        "batch_id": batch_id,
        "pack": {"id": plan.pack_id, "version": plan.version, "hash": plan.pack_hash},
        "engine_version": __version__,
        "input": {"claims": nc, "lines": nl},
        "decisions": by_decision,
        "lines": {
            name: int(n)
            for name, n in zip(
                schema.LINE_DECISIONS, np.bincount(line_code, minlength=3), strict=True
            )
        },
        "codes": {c: n for c, n in sorted(code_hits.items()) if n},
        "timings": {k: round(v, 4) for k, v in out.timings.items()},
        # seconds of each rule run on the whole batch (card-holder rules, later
        # stages): which rule a pack change made slow
        "rule_seconds": {k: round(v, 4) for k, v in out.rule_seconds.items()},
    }
    outputs = {**split, "lines": line_out, "reasons": reasons}
    return Result(outputs, summary, claim_code, line_code)


__all__ = ["MONEY_LIMIT", "Result", "build", "money_text"]
