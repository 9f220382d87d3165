"""Window rules a rule author writes: visits in N days, item pairs, required items,
one practitioner in two places at once, yearly limits (issue 4, item 2)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from builders import batch

from claims_engine import adjudicate, engine
from claims_engine.errors import PackError
from claims_engine.plan.compiler import compile_pack

RULES = """
- id: visits.too_many
  title: More than 2 outpatient visits in 30 days
  basis: test
  level: claim
  severity: flag
  code: TOO_MANY_VISITS
  window:
    partition: [card_holder]
    order: [admission_date, admitted_at, claim_id]
    where: visit_type == 1
    day: admission_date
    days: 30
    measures: {visits: count()}
  when: visit_type == 1 and window.visits >= 2
  message: "{window.visits} earlier visits in 30 days"

- id: pair.same_day
  title: Items A1 and B1 not both on one day for one person; the second is rejected
  basis: test
  level: line
  severity: reject
  code: PAIR_SAME_DAY
  window:
    partition: [card_holder, date_of_service]
    order: [admitted_at, claim_id, line_no]
    measures:
      a: count(item_code == 'A1')
      b: count(item_code == 'B1')
  when: (item_code == 'A1' and window.b > 0) or (item_code == 'B1' and window.a > 0)
  message: "{item_code} on {date_of_service} after its pair"

- id: requires.other_item
  title: Item R1 requires item R2 in the same claim
  basis: test
  level: line
  severity: reject
  code: REQUIRES_ITEM
  when: item_code == 'R1' and not any(lines, item_code == 'R2')
  message: "{item_code} without R2"

- id: practitioner.two_places
  title: One practitioner performing in two facilities in the same minute
  basis: test
  level: line
  severity: flag
  code: PRACTITIONER_TWO_PLACES
  window:
    partition: [practitioner, performed_at]
    order: [admitted_at, claim_id, line_no]
    measures: {first_facility: first(facility_id), n: count()}
  when: window.n > 0 and window.first_facility != facility_id
  message: "{practitioner} at {performed_at} also at {window.first_facility}"

- id: yearly.limit
  title: At most 1 Y1 per calendar year
  basis: test
  level: line
  severity: reject
  code: YEARLY_LIMIT
  window:
    partition: [card_holder, item_code, year_of(date_of_service)]
    order: [date_of_service, admitted_at, claim_id, line_no]
    where: item_code == 'Y1'
    measures: {n: count()}
  when: item_code == 'Y1' and window.n >= 1
  message: "{item_code}: {window.n} earlier this year"
"""


@pytest.fixture(scope="module")
def mini_plan(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("pack")
    (folder / "pack.yaml").write_text("id: mini\nversion: '1'\n")
    (folder / "rules.yaml").write_text(RULES)
    return compile_pack(folder)


def codes(
    plan: Any,
    reference: dict[str, pa.Table],
    claims: list[dict[str, Any]],
    lines: list[dict[str, Any]],
) -> dict[Any, list[str]]:
    result = adjudicate.build(engine.run(plan, batch(claims, lines), reference), plan, "t")
    out: dict[Any, list[str]] = {}
    for t in (result.approved, result.rejected, result.flagged):
        for r in t.to_pylist():
            out[r["claim_id"]] = r["reason_codes"]
    for r in result.lines.to_pylist():
        out[(r["claim_id"], r["line_no"])] = r["reason_codes"]
    return out


def visit(cid: str, day: int, month: int = 3, year: int = 2025, **kw: Any) -> dict[str, Any]:
    return {
        "claim_id": cid,
        "admitted_at": datetime(year, month, day, 8),
        "discharged_at": datetime(year, month, day, 9),
        **kw,
    }


def test_visits_in_30_days(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    claims = [visit("V1", 1), visit("V2", 10), visit("V3", 20), visit("V4", 2, month=5)]
    out = codes(mini_plan, reference, claims, [{"claim_id": c["claim_id"]} for c in claims])
    assert out["V3"] == ["TOO_MANY_VISITS"]
    assert out["V1"] == out["V2"] == out["V4"] == []


def test_item_pairs_reject_the_second(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    claims = [visit("P1", 1), visit("P2", 1)]
    claims[1]["admitted_at"] = datetime(2025, 3, 1, 10)
    claims[1]["discharged_at"] = datetime(2025, 3, 1, 11)
    lines = [
        {"claim_id": "P1", "item_code": "A1", "ordered_at": datetime(2025, 3, 1, 8, 30)},
        {"claim_id": "P2", "item_code": "B1", "ordered_at": datetime(2025, 3, 1, 10, 30)},
    ]
    out = codes(mini_plan, reference, claims, lines)
    assert "PAIR_SAME_DAY" not in out[("P1", 1)]
    assert "PAIR_SAME_DAY" in out[("P2", 1)]


def test_required_item_in_the_same_claim(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    claims = [visit("R", 1), visit("S", 2)]
    lines = [
        {"claim_id": "R", "item_code": "R1"},
        {"claim_id": "R", "line_no": 2, "item_code": "R2"},
        {"claim_id": "S", "item_code": "R1", "ordered_at": datetime(2025, 3, 2, 8, 30)},
    ]
    out = codes(mini_plan, reference, claims, lines)
    assert "REQUIRES_ITEM" not in out[("R", 1)]
    assert "REQUIRES_ITEM" in out[("S", 1)]


def test_practitioner_in_two_facilities(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    at = datetime(2025, 3, 1, 8, 30)
    claims = [visit("D1", 1), visit("D2", 1, card_no="DN4010999999999", facility_id="01102")]
    lines = [
        {"claim_id": "D1", "practitioner": "BS9", "performed_at": at},
        {"claim_id": "D2", "practitioner": "BS9", "performed_at": at},
    ]
    out = codes(mini_plan, reference, claims, lines)
    assert out[("D1", 1)] == []
    assert out[("D2", 1)] == ["PRACTITIONER_TWO_PLACES"]


def test_calendar_year_windows(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    claims = [
        visit("Y1a", 1, month=2),
        visit("Y1b", 1, month=11),
        visit("Y1c", 5, month=1, year=2026, card_valid_to=None),
    ]
    claims[2]["card_valid_to"] = datetime(2026, 12, 31).date()
    lines = [
        {"claim_id": c["claim_id"], "item_code": "Y1", "ordered_at": c["admitted_at"]}
        for c in claims
    ]
    out = codes(mini_plan, reference, claims, lines)
    assert "YEARLY_LIMIT" not in out[("Y1a", 1)]
    assert "YEARLY_LIMIT" in out[("Y1b", 1)]
    assert "YEARLY_LIMIT" not in out[("Y1c", 1)]


def test_window_day_must_lead_the_order(tmp_path: Path) -> None:
    (tmp_path / "pack.yaml").write_text("id: bad\nversion: '1'\n")
    (tmp_path / "r.yaml").write_text(
        "- id: r.x\n  title: t\n  basis: b\n  level: claim\n  severity: flag\n  code: X\n"
        "  window:\n    partition: [card_holder]\n    order: [admitted_at]\n"
        "    day: admission_date\n    days: 3\n    measures: {n: count()}\n"
        "  when: window.n > 0\n  message: m\n"
    )
    with pytest.raises(PackError, match="first order key"):
        compile_pack(tmp_path)
