"""Small batches written by hand: one clean claim by default, overrides per test.

Declared amounts that a test does not give are filled in from the contract's
formulas with Python's Decimal (ROUND_HALF_UP), so a default claim is clean and a
test changes only what it is about.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pyarrow as pa

from claims_engine import schema
from claims_engine.io.batch import Batch

CENT = Decimal("0.01")

CLAIM: dict[str, Any] = {
    "claim_id": "C1",
    "facility_id": "01101",  # district level, Hà Nội
    "patient_id": "P1",
    "card_no": "DN4010123456789",  # group DN, benefit digit 4 (80%), province 01
    "registered_facility": "01101",
    "card_valid_from": date(2025, 1, 1),
    "card_valid_to": date(2025, 12, 31),
    "five_years_from": None,
    "copay_exempt_from": None,
    "birth_date": date(1980, 5, 1),
    "sex": 1,
    "visit_type": 1,
    "route": "registered",
    "admitted_at": datetime(2025, 3, 10, 8, 0),
    "inpatient_at": None,
    "discharged_at": datetime(2025, 3, 10, 11, 0),
    "treatment_days": 0,
    "primary_dx": "J18.9",
    "secondary_dx": None,
}

LINE: dict[str, Any] = {
    "claim_id": "C1",
    "line_no": 1,
    "kind": "drug",
    "group_code": 4,
    "item_code": "40.17",  # all-facility drug, ceiling 8860.000, coverage 100
    "quantity": Decimal("2"),
    "unit_price": Decimal("8860.000"),
    "hospital_unit_price": None,
    "service_rate": 100,
    "coverage_rate": 100,
    "benefit_rate": 100,  # low cost: below 15% of the base salary, so 100%
    "ordered_at": datetime(2025, 3, 10, 9, 0),
    "performed_at": None,
    "department": "K01",
    "practitioner": "BS001",
}


def half_up(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def fill_line(line: dict[str, Any]) -> dict[str, Any]:
    out = {**LINE, **line}
    q, up = Decimal(out["quantity"]), Decimal(out["unit_price"])
    hup = Decimal(out["hospital_unit_price"]) if out["hospital_unit_price"] is not None else up
    sr, cr = Decimal(out["service_rate"]), Decimal(out["coverage_rate"])
    out.setdefault("amount_hospital", None)
    if out["amount_hospital"] is None:
        out["amount_hospital"] = half_up(q * hup * sr / 100)
    if out.get("amount_insured") is None:
        out["amount_insured"] = half_up(q * up * sr / 100 * cr / 100)
    if out.get("fund_pays") is None:
        out["fund_pays"] = half_up(Decimal(out["amount_insured"]) * Decimal(out["benefit_rate"]) / 100)
    if out.get("patient_copay") is None:
        out["patient_copay"] = Decimal(out["amount_insured"]) - Decimal(out["fund_pays"])
    return out


def fill_claim(claim: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    out = {**CLAIM, **claim}
    mine = [ln for ln in lines if ln["claim_id"] == out["claim_id"]]
    hosp = sum((Decimal(ln["amount_hospital"]) for ln in mine), Decimal(0))
    ins = sum((Decimal(ln["amount_insured"]) for ln in mine), Decimal(0))
    copay = sum((Decimal(ln["patient_copay"]) for ln in mine), Decimal(0))
    defaults = {
        "total_hospital": hosp,
        "total_insured": ins,
        "patient_copay": copay,
        "patient_pays": hosp - ins,
        "fund_pays": ins - copay,
        "total_drugs": sum((Decimal(ln["amount_hospital"]) for ln in mine if ln["kind"] == "drug"),
                           Decimal(0)),
        "total_supplies": sum((Decimal(ln["amount_hospital"]) for ln in mine
                               if ln["kind"] == "supply"), Decimal(0)),
    }
    for k, v in defaults.items():
        if out.get(k) is None:
            out[k] = v
    return out


def tables(claims: list[dict[str, Any]] | None = None,
           lines: list[dict[str, Any]] | None = None) -> tuple[pa.Table, pa.Table]:
    claims = claims if claims is not None else [{}]
    if lines is None:
        lines = [{"claim_id": c.get("claim_id", CLAIM["claim_id"])} for c in claims]
    full_lines = [fill_line(ln) for ln in lines]
    full_claims = [fill_claim(c, full_lines) for c in claims]
    claims_t = pa.Table.from_pylist(full_claims, schema=schema.CLAIMS_SCHEMA.with_metadata(None)
                                    ) if full_claims else schema.CLAIMS_SCHEMA.empty_table()
    lines_t = pa.Table.from_pylist(full_lines, schema=schema.LINES_SCHEMA) if full_lines \
        else schema.LINES_SCHEMA.empty_table()
    return _nullable(claims_t), _nullable(lines_t)


def _nullable(t: pa.Table) -> pa.Table:
    return t.cast(pa.schema([f.with_nullable(True) for f in t.schema]))


def batch(claims: list[dict[str, Any]] | None = None,
          lines: list[dict[str, Any]] | None = None) -> Batch:
    c, ln = tables(claims, lines)
    return Batch(c, ln, pa.nulls(c.num_rows, pa.string()), pa.nulls(ln.num_rows, pa.string()), ())
