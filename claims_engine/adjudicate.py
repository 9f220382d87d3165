"""From rule hits to the output tables of contract section 4 and summary.json.

Decisions: a claim is rejected when a claim-level reject rule hits (MALFORMED
included) or every line is rejected; else flagged when a flag rule hits the claim
or one of its lines; else approved.  A line is rejected when a line reject rule
hits it or its claim is rejected; else adjusted when an adjust rule hits it; else
paid.  Amounts are exact decimals computed from scaled integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine import __version__, schema
from claims_engine.engine import Outcome
from claims_engine.kernels import columns, groups, window
from claims_engine.kernels import values as V
from claims_engine.kernels.values import Array
from claims_engine.plan.plan import Plan


@dataclass(frozen=True)
class Result:
    approved: pa.Table
    rejected: pa.Table
    flagged: pa.Table
    lines: pa.Table
    reasons: pa.Table
    summary: dict[str, Any]
    claim_decisions: pa.Array  # per input claim row, in input order (for history)
    line_decisions: pa.Array  # per input line row, in input order

    def tables(self) -> dict[str, pa.Table]:
        return {
            "approved": self.approved,
            "rejected": self.rejected,
            "flagged": self.flagged,
            "lines": self.lines,
            "reasons": self.reasons,
        }


def money_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def _money(data: Array, valid: Array | None = None) -> pa.Array:
    return V.scaled_to_decimal(np.asarray(data), valid, 2, 2)


def _code_lists(n: int, rows: list[Array], codes: list[str]) -> pa.Array:
    """Per row, the sorted distinct codes of its hits, as list<string>.

    Each row gets a bitmask of its codes (bit i = i-th code in sorted order); only
    the rows with a hit are expanded into lists.  Hits are sparse, so this costs a
    pass over the hit rows, not a sort of every row.
    """
    vocabulary = sorted(set(codes))
    if len(vocabulary) > 63:
        raise ValueError("more than 63 distinct reason codes in one batch")
    bits = np.zeros(n, dtype=np.uint64)
    for r, c in zip(rows, codes, strict=True):
        if len(r):
            bits[r] |= np.uint64(1 << vocabulary.index(c))
    hit = np.flatnonzero(bits)
    table = (
        (bits[hit, None] >> np.arange(len(vocabulary), dtype=np.uint64)) & np.uint64(1)
    ).astype(bool)
    _owner, which = np.nonzero(table)  # row-major: codes in sorted order within a row
    counts = np.zeros(n, dtype=np.int32)
    counts[hit] = table.sum(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    values = pa.array(vocabulary or [""], pa.string()).take(pa.array(which, type=pa.int64()))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _sorted_order(key: Array) -> Array | None:
    """Indices that sort ``key`` stably, or None when it is sorted already (the usual case)."""
    if len(key) < 2 or bool(np.all(key[1:] >= key[:-1])):
        return None
    return np.asarray(window.stable_argsort(key))


def _claim_order(claim_ids: pa.Array) -> Array | None:
    """Claims by claim_id (nulls last), or None if already in that order."""
    n = len(claim_ids)
    if n < 2:
        return None
    if claim_ids.null_count == 0:
        ordered = pc.less_equal(claim_ids.slice(0, n - 1), claim_ids.slice(1))
        if pc.all(ordered).as_py():
            return None
    return np.asarray(pc.sort_indices(claim_ids))


def _line_order(
    out: Outcome,
    claim_order: Array | None,
    claim_ids: pa.Array,
    kinds: pa.Array,
    line_nos: pa.Array,
) -> Array | None:
    """Lines by (claim_id, kind, line_no), via one integer key when every line has a claim."""
    nl = out.lines.num_rows
    row = out.intake.line_claim_row
    if nl < 2:
        return None
    if out.intake.orphan.any():  # orphans' ids fall between claims': sort the strings
        table = pa.table({"c": out.lines.column("claim_id"), "k": kinds, "n": line_nos})
        return np.asarray(
            pc.sort_indices(table, [("c", "ascending"), ("k", "ascending"), ("n", "ascending")])
        )
    rank = np.arange(len(claim_ids), dtype=np.int64)
    if claim_order is not None:
        rank[claim_order] = np.arange(len(claim_ids), dtype=np.int64)
    kind_code = pc.index_in(kinds, value_set=pa.array(["drug", "service", "supply"]))
    kind_code = kind_code.fill_null(3).to_numpy().astype(np.int64)
    no = line_nos.cast(pa.int64()).fill_null(2**31).to_numpy() + 2**31
    no = no - int(no.min())  # line numbers span a small range: a compact key sorts fast
    key = (rank[row] * 4 + kind_code) * (int(no.max()) + 1) + no
    return _sorted_order(key)


def _take(table: pa.Table, order: Array | None) -> pa.Table:
    return table if order is None else table.take(pa.array(order))


def _reasons(out: Outcome, claim_ids: pa.Array, kinds: pa.Array, line_nos: pa.Array) -> pa.Table:
    parts: list[pa.Table] = []
    intake = out.intake

    def table(
        level: str, rows: Array, rule_id: str, code: str, severity: str, messages: pa.Array
    ) -> pa.Table:
        idx = pa.array(rows, type=pa.int64())
        if level == "claim":
            cid = claim_ids.take(idx)
            kind = pa.nulls(len(rows), pa.string())
            no = pa.nulls(len(rows), pa.int32())
        else:
            cid, kind, no = claim_ids_of_lines.take(idx), kinds.take(idx), line_nos.take(idx)
        n = len(rows)
        return pa.table(
            {
                "claim_id": cid,
                "kind": kind,
                "line_no": no,
                "rule_id": pa.repeat(pa.scalar(rule_id), n).cast(pa.string()),
                "code": pa.repeat(pa.scalar(code), n).cast(pa.string()),
                "severity": pa.repeat(pa.scalar(severity), n).cast(pa.string()),
                "message": messages.cast(pa.string()),
            },
            schema=schema.REASONS_SCHEMA,
        )

    claim_ids_of_lines = columns.array(out.lines, "claim_id")
    bad = np.flatnonzero(intake.malformed)
    parts.append(
        table(
            "claim",
            bad,
            "intake.malformed",
            schema.MALFORMED,
            "reject",
            intake.malformed_message.take(pa.array(bad, type=pa.int64())),
        )
    )
    orphans = np.flatnonzero(intake.orphan)
    orphan_msg = pc.binary_join_element_wise(
        pa.scalar("claim_id "),
        claim_ids_of_lines.take(pa.array(orphans, type=pa.int64())).fill_null("null"),
        pa.scalar(" matches no claim row"),
        "",
    )
    parts.append(
        table("line", orphans, "intake.orphan_line", schema.ORPHAN_LINE, "reject", orphan_msg)
    )
    for h in out.hits:
        if len(h.rows):
            parts.append(table(h.level, h.rows, h.rule_id, h.code, h.severity, h.messages))
    reasons = pa.concat_tables(parts)
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


def build(out: Outcome, plan: Plan, batch_id: str) -> Result:
    claims, lines = out.claims, out.lines
    nc, nl = claims.num_rows, lines.num_rows
    row = out.intake.line_claim_row
    np.maximum(row, 0)
    claim_ids = columns.array(claims, "claim_id")
    kinds = columns.array(lines, "kind")
    line_nos = columns.array(lines, "line_no")

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
    claim_reason_codes = _code_lists(nc, claim_rows, claim_codes)
    line_reason_codes = _code_lists(nl, line_rows, line_codes)

    # amounts
    amount = V.from_arrow(lines.column("amount_hospital"))
    amount_data = np.asarray(V.full(amount, nl))
    amount_ok = V.valid_mask(amount, nl)
    requested = groups.group_sum(row, amount_data, amount_ok, nc)
    line_patient = np.asarray(amount_data - out.line_fund)
    claim_patient = np.asarray(requested - out.claim_fund)

    # decisions as small codes, turned into strings by one Arrow take (no Python strings)
    claim_code = np.where(out.claim_rejected, 1, np.where(out.claim_flagged, 2, 0))
    line_code = np.where(out.line_rejected, 2, np.where(out.line_adjusted, 1, 0))
    decision = pa.array(schema.DECISIONS).take(pa.array(claim_code.astype(np.int8)))
    line_decision = pa.array(schema.LINE_DECISIONS).take(pa.array(line_code.astype(np.int8)))
    rate = out.claim_benefit_rate
    rate_arr = V.to_arrow(rate, nc) if rate is not None else pa.nulls(nc, pa.decimal128(18, 2))
    if rate is not None:
        rate_arr = pc.if_else(
            pa.array(out.claim_rejected), pa.scalar(None, rate_arr.type), rate_arr
        )

    claim_out = pa.table(
        {
            "claim_id": claim_ids,
            "card_no": columns.array(claims, "card_no"),
            "facility_id": columns.array(claims, "facility_id"),
            "decision": decision,
            "reason_codes": claim_reason_codes,
            "requested": _money(requested),
            "eligible": _money(out.claim_eligible),
            "fund_pays": _money(out.claim_fund),
            "patient_pays": _money(claim_patient),
            "declared_fund_pays": columns.array(claims, "fund_pays"),
            "benefit_rate": rate_arr,
        }
    )
    claim_order = _claim_order(claim_ids)
    claim_out = _take(claim_out, claim_order)
    line_out = pa.table(
        {
            "claim_id": columns.array(lines, "claim_id"),
            "kind": kinds,
            "line_no": line_nos,
            "decision": line_decision,
            "reason_codes": line_reason_codes,
            "eligible": _money(out.line_eligible),
            "fund_pays": _money(out.line_fund),
            "patient_pays": _money(line_patient, amount_ok if not amount_ok.all() else None),
        }
    )
    line_out = _take(line_out, _line_order(out, claim_order, claim_ids, kinds, line_nos))
    reasons = _reasons(out, claim_ids, kinds, line_nos)

    by_decision = {}
    for i, name in enumerate(schema.DECISIONS):
        mask = claim_code == i
        by_decision[name] = {
            "claims": int(mask.sum()),
            "fund_pays": money_text(int(out.claim_fund[mask].sum())),
        }
    split = {
        name: claim_out.filter(pc.equal(claim_out.column("decision"), name))
        for name in schema.DECISIONS
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
    }
    return Result(
        split["approved"],
        split["rejected"],
        split["flagged"],
        line_out,
        reasons,
        summary,
        decision,
        line_decision,
    )


__all__ = ["Result", "build", "money_text"]
