"""As-of matching with row keys given per column, against a brute-force search."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_engine.kernels import lookup

LOW, HIGH = lookup.NO_DATE_LOW, lookup.NO_DATE_HIGH


def _brute(
    ref: list[tuple[int, int, int, int]], rows: list[tuple[int, int, int, bool]]
) -> list[int]:
    """ref: (code a, code b, from, to); rows: (a, b, date, ok).

    The match: the valid row with the latest valid_from, then the last in the file."""
    out = []
    for a, b, d, ok in rows:
        best, best_key = -1, None
        for i, (ra, rb, lo, hi) in enumerate(ref):
            if ok and a >= 0 and b >= 0 and (ra, rb) == (a, b) and lo <= d <= hi:
                key = (lo, i)
                if best_key is None or key > best_key:
                    best, best_key = i, key
        out.append(best)
    return out


REF = st.tuples(
    st.integers(0, 2),
    st.integers(0, 3),
    st.sampled_from([LOW, 0, 5, 10]),
    st.sampled_from([4, 9, HIGH]),
)
ROW = st.tuples(st.integers(-1, 2), st.integers(-1, 4), st.integers(-2, 12), st.booleans())


@settings(max_examples=150, deadline=None)
@given(st.lists(REF, max_size=12), st.lists(ROW, min_size=1, max_size=30), st.booleans())
def test_matches_brute_force(ref: list, rows: list, huge: bool) -> None:
    sizes = [3, 5]
    if huge:  # a key space beyond the direct table: the binary-search path
        sizes = [3, lookup.DIRECT_TABLE_LIMIT]
    ref_codes = [
        np.array([r[0] for r in ref], dtype=np.int64),
        np.array([r[1] for r in ref], dtype=np.int64),
    ]
    ref_key = lookup.combine(ref_codes, sizes, len(ref))
    row_codes = [
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
    ]
    row_codes[1] = np.where(row_codes[1] >= 4, -1, row_codes[1])  # 4: a value not in the table
    got = lookup.asof_match_codes(
        ref_key,
        np.arange(len(ref), dtype=np.int64),
        np.array([r[2] for r in ref], dtype=np.int64),
        np.array([r[3] for r in ref], dtype=np.int64),
        row_codes,
        sizes,
        np.array([r[2] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=bool),
    )
    want = _brute(ref, [(a, -1 if b >= 4 else b, d, ok) for a, b, d, ok in rows])
    assert got.tolist() == want


def test_prior_matches_win_and_no_key_columns() -> None:
    ref_from = np.array([0, 5], dtype=np.int64)
    ref_to = np.array([HIGH, HIGH], dtype=np.int64)
    dates = np.array([1, 6, 7], dtype=np.int64)
    ok = np.array([True, True, False])
    got = lookup.asof_match_codes(
        np.zeros(2, dtype=np.int64), np.arange(2), ref_from, ref_to, [], [], dates, ok
    )
    assert got.tolist() == [0, 1, -1]  # key-less table: the date alone decides
    prior = np.array([-1, 0, 1], dtype=np.int64)
    got = lookup.asof_match_codes(
        np.zeros(2, dtype=np.int64), np.arange(2), ref_from, ref_to, [], [], dates, ok, prior
    )
    assert got.tolist() == [0, 0, 1]  # a prior match is kept, even on a row not ok
