"""Window kernels against a brute-force reference on random rows (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_engine.kernels import window

Row = tuple[
    int, int, int, int, bool, bool, int, int
]  # part, src, o1, o2, keyed, counted, day, value


def _earlier(rows: list[Row], i: int) -> list[int]:
    """Rows counted as earlier than row i: same partition; history first; then by order."""
    p, src, o1, o2, keyed, _, _, _ = rows[i]
    if not keyed:
        return []
    out = []
    for j, (pj, sj, a, b, kj, cj, _, _) in enumerate(rows):
        if j == i or not kj or not cj or pj != p:
            continue
        if (sj, a, b) < (src, o1, o2):
            out.append(j)
    return out


rows_strategy = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 1),
        st.integers(0, 4),
        st.integers(0, 2),
        st.booleans(),
        st.booleans(),
        st.integers(0, 20),
        st.integers(-50, 50),
    ),
    min_size=0,
    max_size=40,
)


def _sorted(rows: list[Row]) -> window.Sorted:
    from dataclasses import replace

    n = len(rows)
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    arr = [np.asarray(c, dtype=np.int64) for c in cols]
    keyed = np.asarray(cols[4], dtype=bool) if rows else np.zeros(0, dtype=bool)
    part, _ = window.combine([(arr[0], 4)], n)
    order, _ = window.combine([(arr[1], 2), (arr[2], 21), (arr[3], 3)], n)
    s = window.sort_rows(part, order, keyed)
    # the kernels' "history" is source 0: here rows are not split by source, so give
    # each sorted position its partition's first source-1 position
    is_batch = arr[1][s.order] == 1 if n else np.zeros(0, dtype=bool)
    return replace(s, batch_start=np.asarray(window._batch_starts(s.part_start, is_batch)))


@settings(max_examples=200, deadline=None)
@given(rows_strategy)
def test_count_and_sum_match_brute_force(rows: list[Row]) -> None:
    s = _sorted(rows)
    n = len(rows)
    counted = np.asarray([r[5] for r in rows], dtype=bool) if rows else np.zeros(0, bool)
    values = np.asarray([r[7] for r in rows], dtype=np.int64)
    perm = s.order
    w = (counted[perm] & s.keyed).astype(np.int64)
    zero = np.zeros(n, dtype=np.int64)
    count = window.count_sum(w, s.part_start, s.tie_start, s.batch_start, zero, zero, False)
    total = window.count_sum(
        w * values[perm], s.part_start, s.tie_start, s.batch_start, zero, zero, False
    )
    for pos, i in enumerate(perm):
        earlier = _earlier(rows, int(i))
        assert count[pos] == len(earlier)
        assert total[pos] == sum(rows[j][7] for j in earlier)


@settings(max_examples=200, deadline=None)
@given(rows_strategy, st.integers(1, 8))
def test_day_windows_match_brute_force(rows: list[Row], width: int) -> None:
    # the day is the first order key, as the compiler requires
    rows = [(p, src, day, o2, k, c, day, v) for (p, src, _, o2, k, c, day, v) in rows]
    s = _sorted(rows)
    n = len(rows)
    counted = np.asarray([r[5] for r in rows], dtype=bool) if rows else np.zeros(0, bool)
    day = np.asarray([r[6] for r in rows], dtype=np.int64)
    perm = s.order
    w = (counted[perm] & s.keyed).astype(np.int64)
    lo = day - width + 1
    count = window.count_sum(w, s.part_start, s.tie_start, s.batch_start, day[perm], lo[perm], True)
    for pos, i in enumerate(perm):
        if rows[int(i)][1] == 0:
            continue  # history rows are never judged
        d = rows[int(i)][6]
        earlier = [j for j in _earlier(rows, int(i)) if d - width + 1 <= rows[j][6] <= d]
        assert count[pos] == len(earlier), (rows, i)
    assert len(count) == n


@settings(max_examples=200, deadline=None)
@given(rows_strategy)
def test_running_measures_match_brute_force(rows: list[Row]) -> None:
    s = _sorted(rows)
    counted = np.asarray([r[5] for r in rows], dtype=bool) if rows else np.zeros(0, bool)
    values = np.asarray([r[7] for r in rows], dtype=np.int64)
    perm = s.order
    w = (counted[perm] & s.keyed).astype(np.int64)
    for mode in range(4):
        out, found = window.running(values[perm], w, s.part_start, s.tie_start, mode)
        for pos, i in enumerate(perm):
            earlier = _earlier(rows, int(i))
            assert found[pos] == bool(earlier)
            if not earlier:
                continue
            if mode == 0:
                assert out[pos] == max(rows[j][7] for j in earlier)
            elif mode == 1:
                assert out[pos] == min(rows[j][7] for j in earlier)
            else:  # first / last earlier row in window order
                key = sorted(earlier, key=lambda j: (rows[j][1], rows[j][2], rows[j][3]))
                picked = rows[int(perm[out[pos]])]
                want = rows[key[0] if mode == 2 else key[-1]]
                assert picked[1:4] == want[1:4]
