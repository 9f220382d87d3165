"""Card-holder rules of the vn_bhyt pack on hand-made batches (contract section 5)."""

from __future__ import annotations

import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from builders import batch

from claims_engine import adjudicate, engine
from claims_engine.plan.plan import Plan


def run(
    plan: Plan,
    reference: dict[str, pa.Table],
    claims: list[dict[str, Any]],
    lines: list[dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    result = adjudicate.build(engine.run(plan, batch(claims, lines), reference), plan, "t")
    out = {}
    for table in (result.approved, result.rejected, result.flagged):
        for row in table.to_pylist():
            out[row["claim_id"]] = row
    out["_lines"] = {(r["claim_id"], r["line_no"]): r for r in result.lines.to_pylist()}
    return out


T0 = datetime(2025, 3, 10, 8, 0)


def test_duplicate_claim_same_person_despite_new_group_letters(
    plan: Plan, reference: dict[str, pa.Table]
) -> None:
    claims = [
        {"claim_id": "B2", "card_no": "HT3010123456789"},  # same holder, other group letters
        {"claim_id": "A1", "card_no": "DN4010123456789"},
        {"claim_id": "C3", "card_no": "DN4010999999999"},  # another person
    ]
    lines = [{"claim_id": c["claim_id"]} for c in claims]
    out = run(plan, reference, claims, lines)
    assert "DUPLICATE_CLAIM" not in out["A1"]["reason_codes"]  # earliest by claim_id keeps it
    assert out["B2"]["decision"] == "rejected"
    assert "DUPLICATE_CLAIM" in out["B2"]["reason_codes"]
    assert "DUPLICATE_CLAIM" not in out["C3"]["reason_codes"]


def test_duplicate_line_needs_another_claim(plan: Plan, reference: dict[str, pa.Table]) -> None:
    claims = [
        {"claim_id": "A1"},
        {
            "claim_id": "A2",
            "admitted_at": T0.replace(hour=14),
            "discharged_at": T0.replace(hour=16),
        },
    ]
    lines = [
        {"claim_id": "A1", "line_no": 1},
        {"claim_id": "A1", "line_no": 2},  # same item twice in one claim: not a duplicate line
        {"claim_id": "A2", "line_no": 1, "ordered_at": T0.replace(hour=15)},  # same item, same day
        {"claim_id": "A2", "line_no": 2, "item_code": "40.18", "unit_price": Decimal("1")},
    ]
    out = run(plan, reference, claims, lines)
    assert out["_lines"][("A1", 1)]["reason_codes"] == []
    assert out["_lines"][("A1", 2)]["reason_codes"] == []
    assert "DUPLICATE_LINE" in out["_lines"][("A2", 1)]["reason_codes"]
    assert out["_lines"][("A2", 1)]["decision"] == "rejected"
    assert "DUPLICATE_LINE" not in out["_lines"][("A2", 2)]["reason_codes"]


def test_overlapping_inpatient_stays(plan: Plan, reference: dict[str, pa.Table]) -> None:
    stay = {"visit_type": 3, "treatment_days": None}
    claims = [
        {
            "claim_id": "S1",
            **stay,
            "admitted_at": datetime(2025, 3, 1, 8),
            "discharged_at": datetime(2025, 3, 5, 8),
        },
        {
            "claim_id": "S2",
            **stay,
            "admitted_at": datetime(2025, 3, 4, 8),
            "discharged_at": datetime(2025, 3, 6, 8),
        },
        {
            "claim_id": "S3",
            **stay,
            "admitted_at": datetime(2025, 3, 6, 8),
            "discharged_at": datetime(2025, 3, 7, 8),
        },
    ]
    lines = [{"claim_id": c["claim_id"], "ordered_at": c["admitted_at"]} for c in claims]
    out = run(plan, reference, claims, lines)
    assert "OVERLAPPING_STAY" not in out["S1"]["reason_codes"]
    assert "OVERLAPPING_STAY" in out["S2"]["reason_codes"]
    assert "OVERLAPPING_STAY" not in out["S3"]["reason_codes"]  # admitted exactly at discharge


def test_frequency_limit_counts_lines_in_the_window(
    plan: Plan, reference: dict[str, pa.Table]
) -> None:
    # 24.3683.8610: at most 2 in 7 days (bundled frequency_limits)
    item = {
        "kind": "service",
        "item_code": "24.3683.8610",
        "unit_price": Decimal("191400.000"),
        "group_code": 1,
    }
    days = [1, 2, 3, 8, 9]  # the 3rd (day 3) exceeds; day 8 sees days 2,3 -> 2 earlier: exceeds
    claims = [
        {
            "claim_id": f"F{d}",
            "admitted_at": datetime(2025, 3, d, 8),
            "discharged_at": datetime(2025, 3, d, 10),
        }
        for d in days
    ]
    lines = [{"claim_id": f"F{d}", **item, "ordered_at": datetime(2025, 3, d, 9)} for d in days]
    out = run(plan, reference, claims, lines)
    hit = {d: "FREQUENCY_LIMIT" in out["_lines"][(f"F{d}", 1)]["reason_codes"] for d in days}
    # day 8: window 2..8 holds days 2 and 3 (2 lines) -> the 3rd in the window: rejected;
    # day 9: window 3..9 holds days 3 and 8 -> rejected too (rejected lines still count)
    assert hit == {1: False, 2: False, 3: True, 8: True, 9: True}


def _history(claims: list[dict[str, Any]], lines: list[dict[str, Any]]) -> engine.History:
    from builders import tables

    c, ln = tables(claims, lines)
    return engine.History(c, ln)


def run_with_history(
    plan: Plan,
    reference: dict[str, pa.Table],
    history: engine.History,
    claims: list[dict[str, Any]],
    lines: list[dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    outcome = engine.run(plan, batch(claims, lines), reference, history=history)
    result = adjudicate.build(outcome, plan, "t")
    return {
        r["claim_id"]: r
        for t in (result.approved, result.rejected, result.flagged)
        for r in t.to_pylist()
    }


def test_history_is_earlier_than_the_batch(plan: Plan, reference: dict[str, pa.Table]) -> None:
    history = _history([{"claim_id": "Z9"}], [{"claim_id": "Z9"}])
    # "A0" sorts before "Z9", but history counts as earlier than the whole batch
    out = run_with_history(plan, reference, history, [{"claim_id": "A0"}], [{"claim_id": "A0"}])
    assert out["A0"]["decision"] == "rejected"
    assert "DUPLICATE_CLAIM" in out["A0"]["reason_codes"]


def test_a_resubmission_replaces_its_history_claim(
    plan: Plan, reference: dict[str, pa.Table]
) -> None:
    history = _history([{"claim_id": "A0"}], [{"claim_id": "A0"}])
    out = run_with_history(plan, reference, history, [{"claim_id": "A0"}], [{"claim_id": "A0"}])
    assert out["A0"]["reason_codes"] == []  # same claim_id and facility: not a duplicate
    other = run_with_history(
        plan, reference, history, [{"claim_id": "A0", "facility_id": "01102"}], [{"claim_id": "A0"}]
    )
    assert "DUPLICATE_CLAIM" not in other["A0"]["reason_codes"]  # other facility: no duplicate


def test_frequency_limit_counts_history_lines(plan: Plan, reference: dict[str, pa.Table]) -> None:
    item = {
        "kind": "service",
        "item_code": "23.2783.5221",
        "unit_price": Decimal("149000.000"),
        "group_code": 1,
    }  # at most 1 in 7 days
    history = _history(
        [
            {
                "claim_id": "H1",
                "admitted_at": datetime(2025, 3, 5, 8),
                "discharged_at": datetime(2025, 3, 5, 10),
            }
        ],
        [{"claim_id": "H1", **item, "ordered_at": datetime(2025, 3, 5, 9)}],
    )
    claims = [
        {
            "claim_id": "N1",
            "admitted_at": datetime(2025, 3, 10, 8),
            "discharged_at": datetime(2025, 3, 10, 10),
        },
        {
            "claim_id": "N2",
            "admitted_at": datetime(2025, 3, 20, 8),
            "discharged_at": datetime(2025, 3, 20, 10),
        },
    ]
    lines = [{"claim_id": c["claim_id"], **item, "ordered_at": c["admitted_at"]} for c in claims]
    out = run_with_history(plan, reference, history, claims, lines)
    assert "FREQUENCY_LIMIT" in out["N1"]["reason_codes"]  # 2025-03-05 is within 7 days
    assert "FREQUENCY_LIMIT" not in out["N2"]["reason_codes"]  # 2025-03-10 was rejected but
    # still counts ... 03-14..03-20 holds nothing earlier
