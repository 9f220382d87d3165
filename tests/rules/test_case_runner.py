"""The case runner itself (claims_engine/pack/testing.py) and `claims-engine rules test`.

Clean defaults with declared amounts from the contract's formulas; case files that
are wrong are reported with file, line and case name (exit 2); a case that the
engine does not satisfy fails with the difference (exit 1).
"""

from __future__ import annotations

import shutil
from datetime import datetime
from decimal import Decimal as D
from pathlib import Path

import pyarrow as pa
import pytest

from claims_engine.cli import run
from claims_engine.pack.testing import (
    CaseError,
    fill_claim,
    fill_line,
    load_case_file,
    load_suite,
    run_case,
    tables,
    treatment_days,
)

ROOT = Path(__file__).resolve().parents[2]


# --- defaults ------------------------------------------------------------------------


def test_default_line_amounts_follow_the_formulas() -> None:
    line = fill_line(
        {"quantity": D("1"), "unit_price": D("100.025"), "coverage_rate": 70, "benefit_rate": 95}
    )
    assert line["amount_hospital"] == D("100.03")  # 100.025 half-up
    assert line["amount_insured"] == D("70.02")  # 70.0175 half-up
    assert line["fund_pays"] == D("66.52")  # 70.02 x 95% = 66.519
    assert line["patient_copay"] == D("3.50")


def test_hospital_price_drives_amount_hospital_only() -> None:
    line = fill_line({"unit_price": D("100"), "hospital_unit_price": D("120"), "quantity": D(2)})
    assert (line["amount_hospital"], line["amount_insured"]) == (D("240.00"), D("200.00"))


def test_claim_totals_are_the_sums_of_its_lines() -> None:
    lines = [
        fill_line({}),
        fill_line({"line_no": 1, "kind": "supply", "quantity": D(1), "unit_price": D("10.5")}),
    ]
    claim = fill_claim({}, lines)
    assert claim["total_hospital"] == claim["total_insured"] == D("17730.50")
    assert (claim["total_drugs"], claim["total_supplies"]) == (D("17720.00"), D("10.50"))
    assert claim["fund_pays"] == D("17730.50") and claim["patient_pays"] == D(0)


@pytest.mark.parametrize(
    ("visit_type", "days"), [(1, 0), (7, 0), (9, 0), (2, 3), (3, 3), (4, 3), (6, 3)]
)
def test_treatment_days_follow_qd130(visit_type: int, days: int) -> None:
    adm, dis = datetime(2025, 3, 10, 23, 0), datetime(2025, 3, 12, 1, 0)
    assert treatment_days(visit_type, adm, dis) == days
    claim = fill_claim({"visit_type": visit_type, "admitted_at": adm, "discharged_at": dis}, [])
    assert claim["treatment_days"] == days


def test_explicit_null_treatment_days_stays_null() -> None:
    assert fill_claim({"visit_type": 3, "treatment_days": None}, [])["treatment_days"] is None


def test_builders_tables_are_one_clean_claim() -> None:
    claims, lines = tables()
    assert claims.num_rows == lines.num_rows == 1
    assert claims.column("treatment_days").to_pylist() == [0]


def test_default_case_is_approved_without_codes(
    reference: dict[str, pa.Table], tmp_path: Path
) -> None:
    case_file = tmp_path / "c.yaml"
    case_file.write_text("- name: clean\n  expect: {decision: approved, codes: []}\n")
    (case,) = load_case_file(case_file)
    assert case.lines[0]["ordered_at"] == case.claim["admitted_at"]
    suite = load_suite("vn_bhyt")
    assert run_case(case, suite.plan, reference).passed


def test_line_numbers_count_per_kind(tmp_path: Path) -> None:
    case_file = tmp_path / "c.yaml"
    case_file.write_text(
        "- name: n\n  lines: [{}, {kind: supply}, {}]\n  expect: {decision: approved, codes: []}\n"
    )
    (case,) = load_case_file(case_file)
    assert [(ln["kind"], ln["line_no"]) for ln in case.lines] == [
        ("drug", 1),
        ("supply", 1),
        ("drug", 2),
    ]


# --- case file errors ------------------------------------------------------------------

BAD_CASES = [
    ("claim: {card_nr: DN4010123456789}", "unknown claim field 'card_nr'. Did you mean 'card_no'?"),
    ("claim: {unit_price: 9000}", "'unit_price' is a line field: give it under lines:"),
    ("lines: [{visit_type: 3}]", "'visit_type' is a claim field"),
    ("claim: {facility_id: 01101}", "YAML read 577 as a number; codes are text"),
    ("claim: {sex: male}", "claim.sex: expected a whole number, got 'male'"),
    ("claim: {admitted_at: 2025-03-10}", "expected a timestamp such as '2025-03-10 08:00'"),
    ("claim: {card_valid_to: 2025-02-30}", "not a valid value: day is out of range for month"),
    ("claim: {card_valid_to: '2025-02-30'}", "expected a date such as 2025-03-10"),
    ("lines: [{quantity: lots}]", "line.quantity: expected a number, got 'lots'"),
    ("lines: {quantity: 1}", "expected a list of line overrides"),
]


@pytest.mark.parametrize(("body", "message"), BAD_CASES, ids=[b for b, _ in BAD_CASES])
def test_bad_values_name_file_line_and_case(tmp_path: Path, body: str, message: str) -> None:
    case_file = tmp_path / "bad.yaml"
    case_file.write_text(
        f"- name: the case\n  {body}\n  expect: {{decision: approved, codes: []}}\n"
    )
    with pytest.raises(CaseError) as exc:
        load_case_file(case_file)
    assert f"{case_file}:2:" in exc.value.message
    if "not a valid value" not in message:  # a file YAML cannot read has no case names yet
        assert "case 'the case'" in exc.value.message
    assert message in exc.value.message


BAD_EXPECT = [
    ("{decision: approved}", "expect.codes is required"),
    ("{decision: accepted, codes: []}", "expected one of approved, rejected, flagged"),
    ("{decision: approved, codes: CARD_EXPIRED}", "expected a list of reason codes"),
    ("{decision: approved, codes: [CARD_EXPIRED, CARD_EXPIRED]}", "listed twice"),
    ("{decision: approved, codes: [], fund_pays: 17720.00}", "write the amount as quoted text"),
    ("{decision: approved, codes: [], fundpays: '1'}", "Did you mean 'fund_pays'?"),
    ("{decision: approved, codes: [], lines: [{line_no: 2}]}", "matches no line"),
    ("{decision: approved, codes: [], lines: [{decision: paid}]}", "line_no (a whole number)"),
]


@pytest.mark.parametrize(("expect", "message"), BAD_EXPECT, ids=[e for e, _ in BAD_EXPECT])
def test_bad_expectations_are_reported(tmp_path: Path, expect: str, message: str) -> None:
    case_file = tmp_path / "bad.yaml"
    case_file.write_text(f"- name: the case\n  expect: {expect}\n")
    with pytest.raises(CaseError, match="case 'the case'") as exc:
        load_case_file(case_file)
    assert message in exc.value.message


def test_a_case_without_name_or_twice_the_same_name(tmp_path: Path) -> None:
    case_file = tmp_path / "bad.yaml"
    case_file.write_text("- expect: {decision: approved, codes: []}\n")
    with pytest.raises(CaseError, match="needs a name"):
        load_case_file(case_file)
    case_file.write_text("- {name: a, expect: {decision: approved, codes: []}}\n" * 2)
    with pytest.raises(CaseError, match="defined twice"):
        load_case_file(case_file)


def _pack_copy(tmp_path: Path, cases: str | None = None, rule_tests: str | None = None) -> Path:
    pack = tmp_path / "pack"
    shutil.copytree(ROOT / "rules" / "vn_bhyt", pack, ignore=shutil.ignore_patterns("tests"))
    (pack / "tests").mkdir()
    if cases is not None:
        (pack / "tests" / "mine.yaml").write_text(cases, encoding="utf-8")
    if rule_tests is not None:
        text = (pack / "dates.yaml").read_text(encoding="utf-8")
        (pack / "dates.yaml").write_text(text + rule_tests, encoding="utf-8")
    return pack


def test_an_inline_test_expecting_another_rules_code_is_an_error(tmp_path: Path) -> None:
    pack = _pack_copy(
        tmp_path,
        rule_tests="""
- id: dates.extra
  title: t
  basis: b
  level: claim
  severity: flag
  code: EXTRA
  when: visit_type == 2
  message: m
  tests:
    - given: {visit_type: 2}
      expect: [CARD_EXPIRED]
""",
    )
    with pytest.raises(CaseError, match=r"rule dates\.extra only produces EXTRA, not CARD_EXPIRED"):
        load_suite(pack)


# --- the command ---------------------------------------------------------------------

PASSING = """
- name: mine passes
  expect: {decision: approved, codes: [], fund_pays: "17720.00"}
"""
FAILING = """
- name: mine fails
  lines: [{unit_price: "8860.001"}]
  expect:
    decision: flagged
    codes: []
    fund_pays: "17720.01"
    lines: [{line_no: 1, decision: paid}]
"""


def test_cli_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = _pack_copy(tmp_path, PASSING)
    assert run(["rules", "test", str(pack), "-k", "mine"]) == 0
    out = capsys.readouterr().out
    assert "PASS mine::mine passes" in out
    assert "1 passed, 0 failed" in out


def test_cli_fails_with_the_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = _pack_copy(tmp_path, FAILING)
    assert (
        run(
            [
                "rules",
                "test",
                str(pack),
                "-k",
                "mine",
                "--reference",
                str(ROOT / "fixtures" / "reference"),
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "FAIL mine::mine fails" in out
    assert "decision: expected flagged, got approved" in out
    assert "codes: expected [], got [PRICE_ABOVE_CEILING]" in out
    assert "fund_pays: expected 17720.01, got 17720.00" in out
    assert "line #1 of C1 decision: expected paid, got adjusted" in out
    assert "PRICE_ABOVE_CEILING (adjust, catalogue.price_ceiling, drug #1)" in out
    assert "0 passed, 1 failed" in out


def test_cli_inline_test_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = _pack_copy(
        tmp_path,
        rule_tests="""
- id: dates.extra
  title: t
  basis: b
  level: claim
  severity: flag
  code: EXTRA
  when: visit_type == 2
  message: "visit {visit_type}"
  tests:
    - given: {visit_type: 2}
      expect: [EXTRA]
    - given: {visit_type: 1}
      expect: [EXTRA]
""",
    )
    assert run(["rules", "test", str(pack), "-k", "dates.extra"]) == 1
    out = capsys.readouterr().out
    assert "PASS dates.extra #1" in out
    assert "FAIL dates.extra #2" in out
    assert "codes of rule dates.extra: expected [EXTRA], got []" in out


def test_cli_broken_case_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = _pack_copy(
        tmp_path, "- name: broken\n  claim: {sexe: 1}\n  expect: {decision: approved, codes: []}\n"
    )
    assert run(["rules", "test", str(pack)]) == 2
    err = capsys.readouterr().err
    assert "mine.yaml:2:" in err and "case 'broken'" in err and "Did you mean 'sex'?" in err


def test_cli_no_matching_test_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = _pack_copy(tmp_path, PASSING)
    assert run(["rules", "test", str(pack), "-k", "no such test"]) == 1
    assert "no tests match" in capsys.readouterr().err


def test_bundled_reference_is_found_in_a_checkout() -> None:
    from claims_engine.pack.testing import bundled_reference_dir

    found = bundled_reference_dir()
    assert (found / "facilities.csv").is_file()
    assert found.resolve() == (Path(__file__).resolve().parents[2] / "fixtures" / "reference")


def test_zoned_timestamps_are_converted_by_the_reader(
    reference: dict[str, pa.Table], tmp_path: Path
) -> None:
    # 01:00 UTC is 08:00 in Vietnam: the same claim as the default
    case_file = tmp_path / "z.yaml"
    case_file.write_text(
        "- name: z\n  claim: {admitted_at: '2025-03-10T01:00:00+00:00'}\n"
        "  lines: [{ordered_at: '2025-03-10 09:00'}]\n"
        "  expect: {decision: approved, codes: []}\n"
    )
    (case,) = load_case_file(case_file)
    result = run_case(case, load_suite("vn_bhyt").plan, reference)
    assert result.passed, result.report()


def test_reference_data_not_covering_a_case_names_the_case(
    reference: dict[str, pa.Table], tmp_path: Path
) -> None:
    case_file = tmp_path / "old.yaml"
    case_file.write_text(
        "- name: before any base salary\n"
        "  claim: {card_valid_from: 2010-01-01, admitted_at: '2010-03-10 08:00',"
        " discharged_at: '2010-03-10 11:00'}\n"
        "  expect: {decision: approved, codes: []}\n"
    )
    (case,) = load_case_file(case_file)
    with pytest.raises(
        CaseError, match="case 'before any base salary': reference table base_salary"
    ):
        run_case(case, load_suite("vn_bhyt").plan, reference)
