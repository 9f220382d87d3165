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
from claims_engine.kernels import groups
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

    def tables(self) -> dict[str, pa.Table]:
        return {"approved": self.approved, "rejected": self.rejected, "flagged": self.flagged,
                "lines": self.lines, "reasons": self.reasons}


def money_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def _money(data: Array, valid: Array | None = None) -> pa.Array:
    return V.scaled_to_decimal(np.asarray(data), valid, 2, 2)


def _code_lists(n: int, rows: list[Array], codes: list[str]) -> pa.Array:
    """Per row, the sorted distinct codes of its hits, as list<string>."""
    vocabulary = sorted(set(codes))
    code_id = {c: i for i, c in enumerate(vocabulary)}
    if not vocabulary:
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)),
                                        pa.array([], pa.string()))
    keys = [r.astype(np.int64) * len(vocabulary) + code_id[c] for r, c in zip(rows, codes,
                                                                                strict=True)]
    pairs = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    owner, which = np.divmod(pairs, len(vocabulary))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(owner, minlength=n), out=offsets[1:])
    values = pa.array(vocabulary, pa.string()).take(pa.array(which))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _reasons(out: Outcome, claim_ids: pa.Array, kinds: pa.Array, line_nos: pa.Array
             ) -> pa.Table:
    parts: list[pa.Table] = []
    intake = out.intake

    def table(level: str, rows: Array, rule_id: str, code: str, severity: str,
              messages: pa.Array) -> pa.Table:
        idx = pa.array(rows, type=pa.int64())
        if level == "claim":
            cid = claim_ids.take(idx)
            kind = pa.nulls(len(rows), pa.string())
            no = pa.nulls(len(rows), pa.int32())
        else:
            cid, kind, no = claim_ids_of_lines.take(idx), kinds.take(idx), line_nos.take(idx)
        n = len(rows)
        return pa.table({
            "claim_id": cid, "kind": kind, "line_no": no,
            "rule_id": pa.repeat(pa.scalar(rule_id), n).cast(pa.string()),
            "code": pa.repeat(pa.scalar(code), n).cast(pa.string()),
            "severity": pa.repeat(pa.scalar(severity), n).cast(pa.string()),
            "message": messages.cast(pa.string()),
        }, schema=schema.REASONS_SCHEMA)

    claim_ids_of_lines = out.lines.column("claim_id").combine_chunks()
    bad = np.flatnonzero(intake.malformed)
    parts.append(table("claim", bad, "intake.malformed", schema.MALFORMED, "reject",
                       intake.malformed_message.take(pa.array(bad, type=pa.int64()))))
    orphans = np.flatnonzero(intake.orphan)
    orphan_msg = pc.binary_join_element_wise(
        pa.scalar("claim_id "), claim_ids_of_lines.take(pa.array(orphans, type=pa.int64()))
        .fill_null("null"), pa.scalar(" matches no claim row"), "")
    parts.append(table("line", orphans, "intake.orphan_line", schema.ORPHAN_LINE, "reject",
                       orphan_msg))
    for h in out.hits:
        if len(h.rows):
            parts.append(table(h.level, h.rows, h.rule_id, h.code, h.severity, h.messages))
    reasons = pa.concat_tables(parts)
    if reasons.num_rows:
        reasons = reasons.sort_by([("claim_id", "ascending"), ("kind", "ascending"),
                                   ("line_no", "ascending"), ("rule_id", "ascending")])
    return reasons


def build(out: Outcome, plan: Plan, batch_id: str) -> Result:
    claims, lines = out.claims, out.lines
    nc, nl = claims.num_rows, lines.num_rows
    row = out.intake.line_claim_row
    safe_row = np.maximum(row, 0)
    claim_ids = claims.column("claim_id").combine_chunks()
    kinds = lines.column("kind").combine_chunks()
    line_nos = lines.column("line_no").combine_chunks()

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

    decision = np.where(out.claim_rejected, "rejected",
                        np.where(out.claim_flagged, "flagged", "approved"))
    line_decision = np.where(out.line_rejected, "rejected",
                             np.where(out.line_adjusted, "adjusted", "paid"))
    rate = out.claim_benefit_rate
    rate_arr = V.to_arrow(rate, nc) if rate is not None else pa.nulls(nc, pa.decimal128(18, 2))
    if rate is not None:
        rate_arr = pc.if_else(pa.array(out.claim_rejected), pa.scalar(None, rate_arr.type),
                              rate_arr)

    claim_out = pa.table({
        "claim_id": claim_ids,
        "card_no": claims.column("card_no").combine_chunks(),
        "facility_id": claims.column("facility_id").combine_chunks(),
        "decision": pa.array(decision, pa.string()),
        "reason_codes": claim_reason_codes,
        "requested": _money(requested),
        "eligible": _money(out.claim_eligible),
        "fund_pays": _money(out.claim_fund),
        "patient_pays": _money(claim_patient),
        "declared_fund_pays": claims.column("fund_pays").combine_chunks(),
        "benefit_rate": rate_arr,
    })
    claim_out = claim_out.take(pc.sort_indices(claim_out, [("claim_id", "ascending")]))
    line_out = pa.table({
        "claim_id": lines.column("claim_id").combine_chunks(),
        "kind": kinds,
        "line_no": line_nos,
        "decision": pa.array(line_decision, pa.string()),
        "reason_codes": line_reason_codes,
        "eligible": _money(out.line_eligible),
        "fund_pays": _money(out.line_fund),
        "patient_pays": _money(line_patient, amount_ok if not amount_ok.all() else None),
    })
    line_out = line_out.take(pc.sort_indices(
        line_out, [("claim_id", "ascending"), ("kind", "ascending"), ("line_no", "ascending")]))
    reasons = _reasons(out, claim_ids, kinds, line_nos)

    by_decision = {}
    for name in schema.DECISIONS:
        mask = decision == name
        by_decision[name] = {"claims": int(mask.sum()),
                             "fund_pays": money_text(int(out.claim_fund[mask].sum()))}
    split = {name: claim_out.filter(pc.equal(claim_out.column("decision"), name))
             for name in schema.DECISIONS}
    summary: dict[str, Any] = {
        "batch_id": batch_id,
        "pack": {"id": plan.pack_id, "version": plan.version, "hash": plan.pack_hash},
        "engine_version": __version__,
        "input": {"claims": nc, "lines": nl},
        "decisions": by_decision,
        "lines": {name: int((line_decision == name).sum()) for name in schema.LINE_DECISIONS},
        "codes": {c: n for c, n in sorted(code_hits.items()) if n},
        "timings": {k: round(v, 4) for k, v in out.timings.items()},
    }
    return Result(split["approved"], split["rejected"], split["flagged"], line_out, reasons,
                  summary)


__all__ = ["Result", "build", "money_text"]
