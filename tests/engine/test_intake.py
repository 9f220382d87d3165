"""Structural checks: the same verdicts from dictionary codes as from plain strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_engine.intake import check_structure
from claims_engine.io.dictionary import Codes, from_dictionary_column


def _codes(values: list[str | None], unique: bool = True) -> Codes:
    half = len(values) // 2  # two chunks with their own dictionaries, as row groups have
    chunks = [pa.array(v, pa.string()).dictionary_encode() for v in (values[:half], values[half:])]
    codes = from_dictionary_column(pa.chunked_array(chunks), unique=unique)
    assert codes is not None
    return codes


IDS = st.sampled_from(["C1", "C2", "C3", "C4", None])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(IDS, max_size=6),
    st.lists(
        st.tuples(
            IDS, st.sampled_from(["drug", "service", "supply"]), st.integers(1, 3) | st.none()
        ),
        max_size=25,
    ),
    st.booleans(),
)
def test_codes_and_strings_agree(
    claim_ids: list[str | None],
    lines: list[tuple[str | None, str, int | None]],
    grouped: bool,
) -> None:
    if grouped:  # the usual file: a claim's lines together
        lines = sorted(lines, key=lambda x: x[0] or "~")
    claims = pa.table({"claim_id": pa.array(claim_ids, pa.string())})
    table = pa.table(
        {
            "claim_id": pa.array([x[0] for x in lines], pa.string()),
            "kind": pa.array([x[1] for x in lines], pa.string()),
            "line_no": pa.array([x[2] for x in lines], pa.int32()),
        }
    )
    claim_errors = pa.nulls(len(claim_ids), pa.string())
    line_errors = pa.nulls(len(lines), pa.string())
    plain = check_structure(claims, table, claim_errors, line_errors)
    coded = check_structure(
        claims,
        table,
        claim_errors,
        line_errors,
        {
            "claim_id": _codes([x[0] for x in lines], unique=False),
            "kind": _codes([x[1] for x in lines]),
        },
    )
    assert np.array_equal(plain.line_claim_row, coded.line_claim_row)
    assert np.array_equal(plain.orphan, coded.orphan)
    assert np.array_equal(plain.malformed, coded.malformed)
    assert plain.malformed_message.equals(coded.malformed_message)


def test_repeated_line_number_and_repeated_claim_id() -> None:
    claims = pa.table({"claim_id": ["A", "B", "B"]})
    lines = pa.table(
        {
            "claim_id": ["A", "A", "A", "B", "X"],
            "kind": ["drug", "service", "drug", "drug", "drug"],
            "line_no": pa.array([1, 1, 1, 1, 1], pa.int32()),
        }
    )
    out = check_structure(
        claims,
        lines,
        pa.nulls(3, pa.string()),
        pa.nulls(5, pa.string()),
        {
            "claim_id": _codes(["A", "A", "A", "B", "X"]),
            "kind": _codes(["drug", "service", "drug", "drug", "drug"]),
        },
    )
    assert out.line_claim_row.tolist() == [0, 0, 0, 1, -1]
    assert out.orphan.tolist() == [False, False, False, False, True]
    assert out.malformed.tolist() == [True, True, True]
    messages = out.malformed_message.to_pylist()
    assert "line drug #1: line_no repeats within (claim_id, kind)" in messages[0]
    assert messages[1] == messages[2] == "claim_id is carried by more than one claim row"


def test_a_claims_first_bad_line_names_the_problem_and_counts_the_rest() -> None:
    """Per claim: the first bad line's messages (its values' and a repeated
    line_no, joined), and how many more bad lines it has."""
    claims = pa.table({"claim_id": ["A", "B", "C"]})
    lines = pa.table(
        {
            "claim_id": ["A", "A", "A", "B", "B", "C"],
            "kind": ["drug", "drug", "service", "drug", "supply", "drug"],
            "line_no": pa.array([1, 1, 2, 1, 1, 1], pa.int32()),
        }
    )
    line_errors = pa.array(
        ["line drug #1: quantity: -1 is negative", None, None, None, "line supply #1: bad", None]
    )
    out = check_structure(claims, lines, pa.nulls(3, pa.string()), line_errors)
    assert out.malformed.tolist() == [True, True, False]
    assert out.malformed_message.to_pylist() == [
        "line drug #1: quantity: -1 is negative; "
        "line drug #1: line_no repeats within (claim_id, kind) (and 1 more bad lines)",
        "line supply #1: bad",
        None,
    ]
