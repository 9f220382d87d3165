"""Repeated keys within groups: the per-claim kernel against a brute-force count."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_engine.kernels.groups import repeated_keys


def _brute(group: list[int], key: list[int]) -> list[bool]:
    seen = Counter((g, k) for g, k in zip(group, key, strict=True) if g >= 0 and k >= 0)
    return [g >= 0 and k >= 0 and seen[(g, k)] > 1 for g, k in zip(group, key, strict=True)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-1, 5), st.integers(-1, 6), st.integers(1, 40)),
        max_size=60,
    ),
    st.booleans(),
)
def test_repeated_keys_matches_brute_force(runs: list[tuple[int, int, int]], grouped: bool) -> None:
    # runs of (group, key, length): grouped batches keep each group's rows together
    group, key = [], []
    for g, k, size in runs:
        for i in range(size % 30 if grouped else 1):
            group.append(g)
            key.append(-1 if k < 0 else (k * 7 + i) % 5)
    if grouped:
        order = np.argsort(np.array(group, dtype=np.int64), kind="stable")
        group = [group[i] for i in order]
        key = [key[i] for i in order]
    out = repeated_keys(np.array(group, dtype=np.int64), np.array(key, dtype=np.int64), 6)
    assert out.tolist() == _brute(group, key)


def test_orphans_inside_a_claims_lines_keep_it_grouped() -> None:
    group = np.array([0, 0, -1, 0, 1, -1, 1, 1] + [2] * 30 + [-1] + [2] * 5)
    key = np.array([1, 2, 1, 1, 3, 3, 4, 3, *list(range(30)), 0, 0, 40, 41, 29, -1])
    from claims_engine.kernels.groups import _repeats_in_runs

    _, grouped = _repeats_in_runs(group, key, 3)
    assert grouped  # the per-claim path, not the global sort
    assert repeated_keys(group, key, 3).tolist() == _brute(group.tolist(), key.tolist())


def test_long_claims_and_scattered_claims() -> None:
    rng = np.random.default_rng(3)
    group = np.repeat(np.arange(40), 60)  # 60 lines per claim: the sorting branch
    key = rng.integers(0, 80, len(group))
    assert repeated_keys(group, key, 40).tolist() == _brute(group.tolist(), key.tolist())
    shuffled = rng.permutation(len(group))  # a claim's lines scattered: the global sort
    g, k = group[shuffled], key[shuffled]
    assert repeated_keys(g, k, 40).tolist() == _brute(g.tolist(), k.tolist())
