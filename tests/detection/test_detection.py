"""The real engine finds exactly the defects the generator injected.

A generated batch (claims with at most one injected defect each, listed in the
truth table) is written to Parquet, read back and adjudicated by the bundled
`vn_bhyt` pack against the bundled demo reference data, the way `adjudicate`
does.  The generator injects every code the pack can report, and the two of
intake (MALFORMED, ORPHAN_LINE): `test_every_pack_code_is_injectable` compares
DEFECT_CODES with the compiled pack's codes (`NOT_INJECTED` lists the documented
exceptions; there are none).  Then, per code (DEFECT_CODES, every code of the
truth and every code reported):

- recall 100%: every injected (claim_id, code) is in that claim's reason_codes,
  and a line-level defect is reported on the very line the generator changed (an
  orphan line, under a claim_id no claim row holds, is in no claim outcome: its
  code is read from the engine's lines output);
- precision 100%: nothing else is reported on a defective claim, and nothing at
  all on a claim the generator left untouched.

Documented exceptions (`IMPLIED`): DUPLICATE_CLAIM implies DUPLICATE_LINE, since
a copied claim repeats every line of its original (same card holder, item, day
and facility), so each of its lines is a duplicate line as well; the truth table
lists the claim-level code only.  A defect's consequences that are not extra
codes are not exceptions either: a claim-level reject rejects the claim's lines,
and a rejected line lowers the claim's eligible amount, both without a code of
their own.  Should a future defect necessarily trigger a second code, list it in
IMPLIED with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from claims_engine import engine, pipeline, schema
from claims_engine.adjudicate import Result
from claims_engine.cli import demo_reference_dir
from claims_engine.fixtures.detection import (
    claim_code_pairs,
    detection_report,
    misplaced_line_codes,
)
from claims_engine.fixtures.generator import (
    DEFECT_CODES,
    IMPLIED_CODES,
    GeneratedBatch,
    generate_batch,
    write_batch,
)
from claims_engine.io.batch import read_batch

N_CLAIMS = 3000
DEFECT_RATE = 0.2  # about 18 claims per code
SEED = 20260105

# injected code -> codes its defect necessarily triggers as well (with the reason).
IMPLIED: dict[str, tuple[str, ...]] = IMPLIED_CODES  # a copy repeats its original's lines
# Codes of the pack (or of intake) the generator does not inject, with the reason.
NOT_INJECTED: dict[str, str] = {}


@pytest.fixture(scope="module")
def inputs() -> pipeline.Inputs:
    return pipeline.prepare(demo_reference_dir())


def _adjudicate(gb: GeneratedBatch, folder: Path, inputs: pipeline.Inputs) -> Result:
    write_batch(gb, folder)
    batch = read_batch(folder, engine.needed_fields(inputs.plan))
    return pipeline.evaluate(batch, inputs, "detection")


def _outcome(result: Result) -> pa.Table:
    return pa.concat_tables([result.approved, result.rejected, result.flagged])


@pytest.fixture(scope="module")
def run(
    inputs: pipeline.Inputs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GeneratedBatch, Result]]:
    gb = generate_batch(N_CLAIMS, SEED, inputs.reference, defect_rate=DEFECT_RATE)
    yield gb, _adjudicate(gb, tmp_path_factory.mktemp("detection"), inputs)


def test_every_pack_code_is_injectable(inputs: pipeline.Inputs) -> None:
    """The generator's codes are the pack's (read from the compiled rules, so a rule
    added to the pack fails here until the generator injects it) and intake's."""
    pack = {rule.code for rule in inputs.plan.rules}
    assert len(pack) == len(inputs.plan.rules)  # one code per rule
    expected = (pack | {schema.MALFORMED, schema.ORPHAN_LINE}) - set(NOT_INJECTED)
    assert set(DEFECT_CODES) == expected, (
        sorted(expected - set(DEFECT_CODES)),
        sorted(set(DEFECT_CODES) - expected),
    )
    assert len(DEFECT_CODES) == len(set(DEFECT_CODES))
    for code, codes in IMPLIED.items():
        assert code in DEFECT_CODES and set(codes) <= set(DEFECT_CODES)


def test_every_defect_code_is_injected(run: tuple[GeneratedBatch, Result]) -> None:
    gb, _ = run
    injected = set(gb.truth.column("code").to_pylist())
    assert injected == set(DEFECT_CODES)
    assert gb.truth.num_rows == round(N_CLAIMS * DEFECT_RATE)
    # one row per defective claim (an orphan line: per orphan claim_id)
    assert len(set(gb.truth.column("claim_id").to_pylist())) == gb.truth.num_rows


def test_recall_and_precision_are_total(run: tuple[GeneratedBatch, Result]) -> None:
    gb, result = run
    report = detection_report(gb.truth, _outcome(result), DEFECT_CODES, IMPLIED, lines=result.lines)
    assert report.claims == N_CLAIMS
    assert report.perfect, report.describe()
    for code, score in report.scores.items():
        assert score.recall == 1.0, (code, score)
        assert score.precision == 1.0, (code, score)
    assert report.clean_hits.num_rows == 0
    # Only the documented implications are excused, and only on their causes.
    excused = set(report.excused.column("code").to_pylist())
    assert excused <= {code for codes in IMPLIED.values() for code in codes}
    causes = dict(
        zip(
            gb.truth.column("claim_id").to_pylist(),
            gb.truth.column("code").to_pylist(),
            strict=True,
        )
    )
    assert {causes[c] for c in report.excused.column("claim_id").to_pylist()} <= set(IMPLIED)


def test_line_defects_on_their_line(run: tuple[GeneratedBatch, Result]) -> None:
    gb, result = run
    located = gb.truth.filter(pc.is_valid(gb.truth.column("line_no")))
    assert located.num_rows > 0
    misplaced = misplaced_line_codes(gb.truth, result.lines)
    assert misplaced.num_rows == 0, misplaced.slice(0, 10).to_pylist()


def test_clean_claims_are_paid_as_declared(run: tuple[GeneratedBatch, Result]) -> None:
    """Untouched claims are approved, and the engine's fund share is the declared one
    (the generator declares the amounts of contract section 6)."""
    gb, result = run
    defective = pc.unique(gb.truth.column("claim_id"))
    outcome = _outcome(result)
    clean = outcome.filter(pc.invert(pc.is_in(outcome.column("claim_id"), value_set=defective)))
    orphans = gb.truth.filter(pc.equal(gb.truth.column("code"), schema.ORPHAN_LINE)).num_rows
    assert orphans > 0
    assert clean.num_rows == N_CLAIMS - (len(defective) - orphans)
    assert set(clean.column("decision").to_pylist()) == {"approved"}
    differ = clean.filter(
        pc.not_equal(clean.column("fund_pays"), clean.column("declared_fund_pays"))
    )
    assert differ.num_rows == 0, differ.slice(0, 5).to_pylist()


@pytest.mark.parametrize(
    ("start", "days"),
    [
        (date(2020, 12, 15), 40),  # across the 2021-01-01 self-referral cut-over
        (date(2024, 6, 25), 10),  # across a base-salary change
        (date(2025, 6, 20), 28),  # across the 2025-07-01 price change and province merger
    ],
)
def test_detection_across_cutovers(
    inputs: pipeline.Inputs, tmp_path: Path, start: date, days: int
) -> None:
    gb = generate_batch(1200, 7, inputs.reference, defect_rate=0.1, start=start, days=days)
    result = _adjudicate(gb, tmp_path, inputs)
    report = detection_report(gb.truth, _outcome(result), DEFECT_CODES, IMPLIED, lines=result.lines)
    assert report.perfect, report.describe()
    assert misplaced_line_codes(gb.truth, result.lines).num_rows == 0


def test_report_counts_misses_and_false_positives() -> None:
    """The scoring itself, on a hand-made outcome."""
    truth = pa.table(
        {
            "claim_id": ["a", "b", "c"],
            "kind": pa.array([None, "drug", None], pa.string()),
            "line_no": pa.array([None, 2, None], pa.int32()),
            "code": ["X", "Y", "X"],
            "detail": ["", "", ""],
        }
    )
    outcome = pa.table(
        {
            "claim_id": ["a", "b", "c", "d"],
            "reason_codes": pa.array([["X"], ["Y", "Z"], [], ["X"]], pa.list_(pa.string())),
        }
    )
    report = detection_report(truth, outcome, ["X", "Y", "W"], {"Y": ["Z"]})
    assert report.scores["X"].recall == 0.5 and report.scores["X"].precision == 0.5
    assert report.scores["Y"].recall == 1.0 and report.scores["Y"].excused == 0 + 0
    assert report.scores["Z"].excused == 1 and report.scores["Z"].false_positives == 0
    assert report.scores["W"].injected == 0 and report.scores["W"].recall == 1.0
    assert report.missed.to_pylist() == [{"claim_id": "c", "code": "X"}]
    assert report.clean_hits.to_pylist() == [{"claim_id": "d", "code": "X"}]
    assert not report.perfect
    assert claim_code_pairs(outcome).num_rows == 4
    lines = pa.table(
        {
            "claim_id": ["b"],
            "kind": ["drug"],
            "line_no": pa.array([1], pa.int32()),
            "reason_codes": pa.array([["Y"]], pa.list_(pa.string())),
        }
    )
    assert misplaced_line_codes(truth, lines).column("claim_id").to_pylist() == ["b"]


def test_report_reads_orphan_lines_from_the_line_outcome() -> None:
    """An orphan line's claim_id is in no claim outcome: without the lines its
    injected code is missed, with them it is found (and nothing else is counted)."""
    truth = pa.table(
        {
            "claim_id": ["a", "T-1"],
            "kind": pa.array([None, "drug"], pa.string()),
            "line_no": pa.array([None, 3], pa.int32()),
            "code": ["X", "ORPHAN_LINE"],
            "detail": ["", ""],
        }
    )
    outcome = pa.table(
        {"claim_id": ["a", "b"], "reason_codes": pa.array([["X"], []], pa.list_(pa.string()))}
    )
    lines = pa.table(
        {
            "claim_id": ["a", "b", "T-1"],
            "kind": ["drug", "drug", "drug"],
            "line_no": pa.array([1, 1, 3], pa.int32()),
            "reason_codes": pa.array([["X"], [], ["ORPHAN_LINE"]], pa.list_(pa.string())),
        }
    )
    blind = detection_report(truth, outcome, ["X", "ORPHAN_LINE"])
    assert blind.scores["ORPHAN_LINE"].recall == 0.0 and not blind.perfect
    report = detection_report(truth, outcome, ["X", "ORPHAN_LINE"], lines=lines)
    assert report.perfect, report.describe()
    assert report.claims == 2 and report.scores["ORPHAN_LINE"].detected == 1
    assert misplaced_line_codes(truth, lines).num_rows == 0
