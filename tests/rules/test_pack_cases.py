"""The bundled pack's own tests, one pytest test each, run with the real engine.

Every case of ``rules/vn_bhyt/tests/*.yaml`` and every inline ``tests:`` entry of
its rules goes through the batch reader, ``engine.run`` and ``adjudicate.build``
against the demo reference data, exactly as ``claims-engine rules test`` runs them.
The other tests here check that the suite covers the pack: a hit and a near miss
for every rule, and every reason code of the contract hit by some case.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from claims_engine import schema
from claims_engine.pack.testing import Case, load_suite, run_case
from claims_engine.plan.plan import CompiledRule

ROOT = Path(__file__).resolve().parents[2]
SUITE = load_suite(ROOT / "rules" / "vn_bhyt")

# CONTRACT.md section 5, except the card-holder codes (they need more than one claim).
CONTRACT_CODES = {
    "MALFORMED", "ORPHAN_LINE", "CARD_FORMAT", "CARD_GROUP_UNKNOWN", "CARD_PROVINCE_UNKNOWN",
    "CARD_NOT_YET_VALID", "CARD_EXPIRED", "CARD_BLOCKED", "DX_UNKNOWN", "DX_SEX_CONFLICT",
    "DX_AGE_CONFLICT", "DATES_ORDER", "LINE_DATE_OUTSIDE_STAY", "ITEM_NOT_IN_CATALOGUE",
    "PRICE_ABOVE_CEILING", "COVERAGE_RATE_MISMATCH", "AMOUNT_ARITHMETIC",
    "CLAIM_TOTALS_MISMATCH", "BENEFIT_RATE_MISMATCH", "HIGH_COST",
}  # fmt: skip
# Card-holder rules compare claims with each other (and with history): a case holds one
# claim, so these are tested elsewhere (tests/history, tests/engine).
CARD_HOLDER_CODES = {"DUPLICATE_LINE", "DUPLICATE_CLAIM", "OVERLAPPING_STAY", "FREQUENCY_LIMIT"}
SINGLE_CLAIM_RULES = [r for r in SUITE.plan.rules if r.code not in CARD_HOLDER_CODES]
ASSESSOR_CODES = {
    "BED_DAY_SHORT_STAY", "BED_DAYS_EXCESS_SHORT", "BED_DAYS_ABOVE_TREATMENT",
    "EXAM_FEE_INPATIENT", "BED_DAY_OUTPATIENT", "TREATMENT_DAYS_MISMATCH",
    "EXAM_VISIT_TOO_LONG", "DRUG_SUPPLY_TOTALS_MISMATCH", "SELF_REFERRED_AT_REGISTERED",
}  # fmt: skip


@pytest.mark.parametrize("case", SUITE.cases, ids=[c.id for c in SUITE.cases])
def test_case(case: Case, reference: dict[str, pa.Table]) -> None:
    result = run_case(case, SUITE.plan, reference)
    assert result.passed, result.report()


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in SUITE.cases]
    assert len(ids) == len(set(ids))


def test_the_pack_produces_every_contract_and_assessor_code() -> None:
    codes = {r.code for r in SUITE.plan.rules} | {schema.MALFORMED, schema.ORPHAN_LINE}
    assert codes >= CONTRACT_CODES | ASSESSOR_CODES


@pytest.mark.parametrize("rule", SINGLE_CLAIM_RULES, ids=[r.id for r in SINGLE_CLAIM_RULES])
def test_every_rule_has_an_inline_hit_and_near_miss(rule: CompiledRule) -> None:
    mine = [c.expect.rule_codes for c in SUITE.cases if c.rule == rule.id]
    assert (rule.code,) in mine, f"rule {rule.id} has no inline test where it hits"
    assert () in mine, f"rule {rule.id} has no inline near miss (expect: [])"


def test_every_code_is_expected_by_a_case_file() -> None:
    expected: set[str] = set()
    for case in SUITE.cases:
        if case.rule is None:
            expected |= set(case.expect.codes or ())
            for line in case.expect.lines:
                expected |= set(line.codes or ())
    codes = {r.code for r in SINGLE_CLAIM_RULES} | {schema.MALFORMED, schema.ORPHAN_LINE}
    assert codes <= expected, f"no case file expects {sorted(codes - expected)}"


def test_every_case_file_case_has_a_near_miss_for_its_codes() -> None:
    """Each code a case file expects is also absent from some other case of that file."""
    by_file: dict[Path, list[Case]] = {}
    for case in SUITE.cases:
        if case.rule is None:
            by_file.setdefault(case.where.file, []).append(case)
    for file, cases in by_file.items():
        for code in {c for case in cases for c in case.expect.codes or ()}:
            assert any(code not in (case.expect.codes or ()) for case in cases), (file, code)
