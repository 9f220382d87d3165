"""Small synthetic batches (contract types plus decisions) for the history tests."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa

from claims_engine.schema import CLAIMS_SCHEMA, LINES_SCHEMA

CLAIM_DECISIONS = ("approved", "rejected", "flagged")
LINE_DECISIONS = ("paid", "adjusted", "rejected")


def holders(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct 10-digit card holders."""
    rng = np.random.default_rng(seed)
    values = rng.choice(9 * 10**9, size=n, replace=False) + 10**9
    return [f"{v:010d}" for v in values.tolist()]


def batch(
    claim_ids: list[str],
    holder_of: list[str],
    admitted: list[datetime],
    *,
    facility: str | list[str] = "01101",
    lines_per_claim: int = 2,
    seed: int = 0,
) -> tuple[pa.Table, pa.Table]:
    """Claims (one per id) and ``lines_per_claim`` lines each, with decisions."""
    n = len(claim_ids)
    rng = np.random.default_rng(seed)
    facilities = [facility] * n if isinstance(facility, str) else list(facility)
    claims = {
        "claim_id": claim_ids,
        "facility_id": facilities,
        "patient_id": [f"P{i}" for i in range(n)],
        "card_no": [f"DN401{h}" for h in holder_of],
        "registered_facility": facilities,
        "card_valid_from": [date(2020, 1, 1)] * n,
        "card_valid_to": [date(2030, 12, 31)] * n,
        "five_years_from": [None] * n,
        "copay_exempt_from": [None] * n,
        "birth_date": [date(1980, 5, 1)] * n,
        "sex": rng.integers(1, 3, n).tolist(),
        "visit_type": [1] * n,
        "route": ["registered"] * n,
        "admitted_at": admitted,
        "inpatient_at": [None] * n,
        "discharged_at": [a + timedelta(hours=2) for a in admitted],
        "treatment_days": [0] * n,
        "total_drugs": [Decimal("10.00")] * n,
        "total_supplies": [None] * n,
        "primary_dx": ["J06.9"] * n,
        "secondary_dx": [["I10", "E11"] if i % 2 else None for i in range(n)],
        "total_hospital": [Decimal("123456789012.34")] * n,
        "total_insured": [Decimal("100.00")] * n,
        "patient_copay": [Decimal("20.00")] * n,
        "patient_pays": [Decimal("20.00")] * n,
        "fund_pays": [Decimal("80.00")] * n,
    }
    claims_t = pa.Table.from_pydict(claims, schema=CLAIMS_SCHEMA)
    claims_t = claims_t.append_column(
        "decision", pa.array([CLAIM_DECISIONS[i % 3] for i in range(n)], pa.string())
    )
    rows: dict[str, list[object]] = {f.name: [] for f in LINES_SCHEMA}
    decisions: list[str] = []
    for i, cid in enumerate(claim_ids):
        for k in range(lines_per_claim):
            rows["claim_id"].append(cid)
            rows["line_no"].append(k + 1)
            rows["kind"].append("drug" if k % 2 == 0 else "service")
            rows["group_code"].append(4)
            rows["item_code"].append(f"40.{k}")
            rows["quantity"].append(Decimal("2.500"))
            rows["unit_price"].append(Decimal("8860.125"))
            rows["hospital_unit_price"].append(None)
            rows["service_rate"].append(100)
            rows["coverage_rate"].append(100)
            rows["benefit_rate"].append(80)
            rows["amount_hospital"].append(Decimal("22150.31"))
            rows["amount_insured"].append(Decimal("22150.31"))
            rows["fund_pays"].append(Decimal("17720.25"))
            rows["patient_copay"].append(Decimal("4430.06"))
            rows["ordered_at"].append(None if k == 0 else admitted[i] + timedelta(days=k))
            rows["performed_at"].append(None)
            rows["department"].append("K01")
            rows["practitioner"].append(None)
            decisions.append(LINE_DECISIONS[(i + k) % 3])
    lines_t = pa.Table.from_pydict(rows, schema=LINES_SCHEMA)
    lines_t = lines_t.append_column("decision", pa.array(decisions, pa.string()))
    return claims_t, lines_t


def simple_batch(
    prefix: str,
    n: int,
    people: list[str],
    start: datetime,
    *,
    step_days: int = 3,
    facility: str = "01101",
    lines_per_claim: int = 2,
) -> tuple[pa.Table, pa.Table]:
    """``n`` claims ``prefix``0.. of ``people`` in turn, admitted every ``step_days`` days."""
    ids = [f"{prefix}{i}" for i in range(n)]
    who = [people[i % len(people)] for i in range(n)]
    when = [start + timedelta(days=step_days * i, hours=i % 5) for i in range(n)]
    return batch(ids, who, when, facility=facility, lines_per_claim=lines_per_claim)
