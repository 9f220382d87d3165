"""Window kernels against a brute-force reference on random rows (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_engine.kernels import window

Row = tuple[
    int, int, int, int, bool, bool, int, int
]  # part, src, o1, o2, keyed, counted, day, value

EMPTY = np.zeros(0, dtype=np.int64)


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
).map(lambda rows: sorted(rows, key=lambda r: r[1]))  # history rows first

# how the key is split into sort fields (see _sorted)
layouts = st.sampled_from(["hi", "mid", "claims", "lines", "wide", "rank", "dense"])


def _col(rows: list[Row], i: int) -> np.ndarray:
    return np.asarray([r[i] for r in rows], dtype=np.int64)


def _arrange(rows: list[Row], layout: str) -> list[Row]:
    """lines: the rows of a "claim" (part, src, o1) together, as lines of a claim are."""
    return sorted(rows, key=lambda r: (r[1], r[0], r[2])) if layout == "lines" else rows


def _sorted(rows: list[Row], layout: str, alone: bool = False) -> window.Sorted:
    """The rows sorted by (part; src, o1, o2) with the key split as ``layout`` says:

    hi: part in a partition field, (src, o1, o2) ranked as the claim rank;
    mid: (part, src, o1) ranked as the claim rank with part as its group, o2 below;
    claims: like mid, but the ranks belong to "claims" (distinct (part, src, o1))
    that rows point to; wide: fields too wide to pack (the dense-rank path); rank,
    dense: like claims, packed with the rank and its group looked up, or dense ranks.
    ``alone`` (hi, wide): rows with no other keyed row in their partition are known.
    """
    n = len(rows)
    part, src, o1, o2 = (_col(rows, i) for i in range(4))
    keyed = np.asarray([r[4] for r in rows], dtype=bool)
    first_batch = int((src == 0).sum())
    if layout in ("hi", "wide"):
        lone = None
        if alone:
            counts = np.bincount(part[keyed], minlength=4)
            lone = keyed & (counts[part] == 1)
        rank, card = window.dense(window.combine([(src, 2), (o1, 5), (o2, 3)], n)[0])
        claims = window.ClaimRank(rank, max(card, 1), np.zeros(max(card, 1), np.int64), keyed, lone)
        hi = [(part, 0, 4)] if layout == "hi" else [(part * 2**56 + 7, 7, 2**58)]
        return window.sort_window(hi, claims, [], None, first_batch)
    key, _ = window.combine([(part, 4), (src, 2), (o1, 5)], n)
    rank, card = window.dense(key)
    group = np.zeros(max(card, 1), dtype=np.int64)
    group[rank] = part
    lo = [(o2 + 3, 3, 3)]
    if layout == "mid":
        claims = window.ClaimRank(rank, max(card, 1), group, keyed)
        return window.sort_window([], claims, lo, None, first_batch)
    # claims: one rank per distinct (part, src, o1), rows point to them (in reverse
    # order; lines: rows of a claim are together, claims numbered as they come)
    ranks = np.unique(rank)[::-1].copy()
    mid_of = np.searchsorted(-ranks, -rank).astype(np.int64)
    if layout == "lines" and n:  # rows come claim by claim (_arrange)
        ranks = rank[np.concatenate(([True], np.diff(rank) != 0))]
        mid_of = np.cumsum(np.concatenate(([0], np.diff(rank) != 0))).astype(np.int64)
    claims = window.ClaimRank(ranks, max(card, 1), group, np.ones(len(ranks), dtype=bool))
    packings = {"rank": ("rank",), "dense": ()}.get(layout, ("group", "rank"))
    return window.sort_window([], claims, lo, keyed, first_batch, mid_of, packings)


def _batch(rows: list[Row]) -> tuple[int, int]:
    nh = sum(1 for r in rows if r[1] == 0)
    return nh, len(rows) - nh


@settings(max_examples=300, deadline=None)
@given(rows_strategy, layouts, st.booleans())
def test_sort_groups_partitions_and_ties(rows: list[Row], layout: str, alone: bool) -> None:
    rows = _arrange(rows, layout)
    s = _sorted(rows, layout, alone)
    n = len(rows)
    keyed = [r[4] for r in rows]
    assert (s.keyed.tolist() if s.keyed is not None else [True] * n) == keyed
    counts = {p: sum(1 for r in rows if r[4] and r[0] == p) for p in range(4)}
    alone = alone and layout in ("hi", "wide")
    lone = [alone and r[4] and counts[r[0]] == 1 for r in rows]
    # only keyed rows are sorted (and not those alone in their partition)
    assert sorted(s.order.tolist()) == [i for i in range(n) if keyed[i] and not lone[i]]
    part, tie, _ = window.bounds(s.starts, s.order, s.first_batch)
    m = len(s.order)
    for pos, i in enumerate(s.order):
        r = rows[int(i)]
        members = [int(s.order[x]) for x in range(m) if part[x] == part[pos]]
        assert sorted(members) == [j for j in range(n) if keyed[j] and rows[j][0] == r[0]]
        ties = [int(s.order[x]) for x in range(m) if tie[x] == tie[pos]]
        assert sorted(ties) == [j for j in members if rows[j][1:4] == r[1:4]]
        if pos > 0 and part[pos - 1] == part[pos]:  # (source, order, row) increases
            prev = int(s.order[pos - 1])
            assert (*rows[prev][1:4], prev) < (*r[1:4], int(i))


@settings(max_examples=300, deadline=None)
@given(rows_strategy, layouts)
def test_count_and_sum_match_brute_force(rows: list[Row], layout: str) -> None:
    rows = _arrange(rows, layout)
    s = _sorted(rows, layout)
    nh, nb = _batch(rows)
    counted = np.asarray([r[5] for r in rows], dtype=bool)
    values = _col(rows, 7)
    count, ok = window.count_earlier(s, counted, EMPTY, EMPTY, nh, nb)
    total, _ = window.count_earlier(s, counted, values, EMPTY, nh, nb)
    for i in range(nh, len(rows)):
        earlier = _earlier(rows, i)
        assert (ok is None or ok[i - nh]) == rows[i][4]
        assert count[i - nh] == len(earlier)
        assert total[i - nh] == sum(rows[j][7] for j in earlier)


@settings(max_examples=300, deadline=None)
@given(rows_strategy, st.integers(1, 8), layouts)
def test_day_windows_match_brute_force(rows: list[Row], width: int, layout: str) -> None:
    # the day is the first order key, as the compiler requires
    rows = [(p, src, day % 5, o2, k, c, day % 5, v) for (p, src, _, o2, k, c, day, v) in rows]
    rows = _arrange(rows, layout)
    s = _sorted(rows, layout)
    nh, nb = _batch(rows)
    counted = np.asarray([r[5] for r in rows], dtype=bool)
    day = _col(rows, 6)
    widths = np.full(len(rows), width, dtype=np.int64)
    count, ok = window.count_days(s, counted, EMPTY, day, widths, EMPTY, nh, nb)
    for i in range(nh, len(rows)):
        d = rows[i][6]
        earlier = [j for j in _earlier(rows, i) if d - width + 1 <= rows[j][6] <= d]
        assert count[i - nh] == len(earlier), (rows, i)
        assert (ok is None or ok[i - nh]) == rows[i][4]


@settings(max_examples=300, deadline=None)
@given(rows_strategy, layouts)
def test_running_measures_match_brute_force(rows: list[Row], layout: str) -> None:
    rows = _arrange(rows, layout)
    s = _sorted(rows, layout)
    nh, nb = _batch(rows)
    counted = np.asarray([r[5] for r in rows], dtype=bool)
    values = _col(rows, 7)
    for mode in range(4):
        at, res = window.running(s, counted, values, mode, EMPTY, nh)
        got = dict(zip(at.tolist(), res.tolist(), strict=True))
        assert len(got) == len(at)
        out = np.asarray([got.get(i, 0) for i in range(nb)], dtype=np.int64)
        for i in range(nh, len(rows)):
            earlier = _earlier(rows, i)
            assert (i - nh in got) == bool(earlier)
            if not earlier:
                continue
            if mode == 0:
                assert out[i - nh] == max(rows[j][7] for j in earlier)
            elif mode == 1:
                assert out[i - nh] == min(rows[j][7] for j in earlier)
            else:  # first / last earlier row in window order (ties: by row)
                key = sorted(earlier, key=lambda j: (rows[j][1], rows[j][2], rows[j][3], j))
                assert out[i - nh] == (key[0] if mode == 2 else key[-1])


@settings(max_examples=100, deadline=None)
@given(rows_strategy)
def test_window_rows_map_to_combined_rows(rows: list[Row]) -> None:
    """A window of some rows (``rows``): results land on those rows' batch positions."""
    keep = [i for i, r in enumerate(rows) if r[7] % 2 == 0]
    sub = [rows[i] for i in keep]
    s = _sorted(sub, "hi")
    nh, nb = _batch(rows)
    counted = np.asarray([r[5] for r in sub], dtype=bool)
    sel = np.asarray(keep, dtype=np.int64)
    count, ok = window.count_earlier(s, counted, EMPTY, sel, nh, nb)
    for k, i in enumerate(keep):
        if i >= nh:
            assert ok is not None and ok[i - nh] == sub[k][4]
            assert count[i - nh] == len(_earlier(sub, k))
    outside = [i - nh for i in range(nh, len(rows)) if i not in keep]
    assert ok is not None and not ok[outside].any()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), max_size=50), st.booleans())
def test_dense_and_argsort(values: list[int], wide: bool) -> None:
    key = np.asarray(values, dtype=np.int64) * (2**21 if wide else 1)
    ranks, card = window.dense(key)
    distinct = sorted(set(key.tolist()))
    assert card == len(distinct)
    assert [distinct[r] for r in ranks] == key.tolist()
    order = window.stable_argsort(key)
    assert order.tolist() == sorted(range(len(key)), key=lambda i: (key[i], i))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**30), st.integers(0, 2**30), st.integers(0, 3)), max_size=30
    )
)
def test_combine_keeps_lexicographic_order(rows: list[tuple[int, int, int]]) -> None:
    n = len(rows)
    cols = [np.asarray([r[i] for r in rows], dtype=np.int64) for i in range(3)]
    key, size = window.combine([(cols[0], 2**30 + 1), (cols[1], 2**30 + 1), (cols[2], 4)], n)
    assert (key < size).all() if n else True
    for i in range(n):
        for j in range(n):
            assert (key[i] < key[j]) == (rows[i] < rows[j])


words_strategy = st.sampled_from(["", "a", "b", "ab", None])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), words_strategy), max_size=30), st.booleans())
def test_dense_refined_ranks_by_key_then_string(
    rows: list[tuple[int, str | None]], wide: bool
) -> None:
    key = np.asarray([k for k, _ in rows], dtype=np.int64) * (2**60 if wide else 1)
    asked: list[int] = []

    def refine(sub: np.ndarray) -> np.ndarray:
        asked.extend(sub.tolist())
        words = sorted({s for _, s in rows if s is not None})
        return np.asarray([0 if rows[i][1] is None else 1 + words.index(rows[i][1]) for i in sub])

    ranks, count = window.dense_refined(key, refine)
    keys = key.tolist()
    tuples = [(keys[i], (0, "") if s is None else (1, s)) for i, (_, s) in enumerate(rows)]
    distinct = sorted(set(tuples))
    assert count == len(distinct)
    assert ranks.tolist() == [distinct.index(t) for t in tuples]
    # the strings are only read where the keys tie
    assert sorted(asked) == [i for i in range(len(rows)) if keys.count(keys[i]) > 1]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 40),
    st.lists(st.one_of(st.none(), st.text(max_size=4)), max_size=40),
    st.integers(0, 3),
)
def test_spread_builds_a_mostly_null_column(n: int, words: list[str | None], skip: int) -> None:
    """Values at a few rows, null elsewhere (a first/last measure: most rows have none)."""
    import pyarrow as pa

    from claims_engine.kernels.values import Vec
    from claims_engine.kernels.window_eval import _spread
    from claims_engine.lang import types as t

    hit = np.arange(n, dtype=np.int64)[skip :: skip + 2][: len(words)]
    vals = pa.array(words[: len(hit)], pa.string()).slice(0)
    if len(vals) > 1:  # an offset slice, as arrow hands out
        vals, hit = vals.slice(1), hit[1:]
    got = _spread(Vec(t.STR, vals), hit, n).data
    want: list[str | None] = [None] * n
    for i, w in zip(hit.tolist(), vals.to_pylist(), strict=True):
        want[i] = w
    got.validate(full=True)
    assert got.to_pylist() == want
    numbers = Vec(t.INT, np.arange(len(hit), dtype=np.int64) + 5)
    out = _spread(numbers, hit, n)
    assert [v if ok else None for v, ok in zip(out.data, out.valid, strict=True)] == [
        None if i not in hit.tolist() else 5 + hit.tolist().index(i) for i in range(n)
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.one_of(st.none(), st.text(max_size=3)), max_size=6), max_size=5),
    st.lists(st.integers(-1, 30), max_size=12),
    st.booleans(),
)
def test_column_take_reads_chunks(
    chunks: list[list[str | None]], picks: list[int], encoded: bool
) -> None:
    import pyarrow as pa

    from claims_engine.kernels.window_eval import _column_take

    col = pa.chunked_array([pa.array(c, pa.string()) for c in chunks], pa.string())
    if encoded:  # dictionary chunks, as a reader may keep them
        ty = pa.dictionary(pa.int32(), pa.string())
        col = pa.chunked_array([c.dictionary_encode() for c in col.chunks], ty)
    flat = [x for c in chunks for x in c]
    rows = np.asarray([p for p in picks if p < len(flat)], dtype=np.int64)
    got = _column_take(col, rows)
    assert got.to_pylist() == [None if r < 0 else flat[r] for r in rows.tolist()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.booleans()), max_size=30))
def test_claim_groups_and_alone_claims(claims: list[tuple[int, int, bool]]) -> None:
    """Claims ranked by (partition, order): each rank's group is its partition's
    dense rank; a claim is alone when no other keyed claim shares its partition."""
    part = np.asarray([p for p, _, _ in claims], dtype=np.int64)
    order = np.asarray([o for _, o, _ in claims], dtype=np.int64)
    keyed = np.asarray([k for _, _, k in claims], dtype=bool)
    rank, count = window.dense(window.combine([(part, 4), (order, 4)], len(claims))[0])
    group = window.rank_groups(rank, max(count, 1), part)
    parts = sorted(set(part.tolist()))
    assert [group[r] for r in rank.tolist()] == [parts.index(p) for p in part.tolist()]
    lone = window.alone(rank, group, keyed)
    for i, (p, _, _) in enumerate(claims):
        assert lone[i] == (sum(1 for q, _, k in claims if q == p and k) == 1)


def test_dense_refined_long_runs() -> None:
    """Runs of more than 32 equal keys (a window ordered by a string alone)."""
    rng = np.random.default_rng(7)
    key = rng.integers(0, 3, 500)
    words = rng.integers(0, 40, 500)

    def refine(sub: np.ndarray) -> np.ndarray:
        return np.asarray(words[sub], dtype=np.int64)

    ranks, count = window.dense_refined(key, refine)
    tuples = list(zip(key.tolist(), words.tolist(), strict=True))
    distinct = sorted(set(tuples))
    assert count == len(distinct)
    assert ranks.tolist() == [distinct.index(t) for t in tuples]
