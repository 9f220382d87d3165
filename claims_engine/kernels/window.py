"""Numba kernels for window measures over rows sorted by (key, source, order).

Rows are sorted so that each partition (card holder, item, ...) is contiguous,
history rows come before batch rows (history is earlier than the batch), and
within each source rows follow the window's order.  Rows with equal order
values form a *tie group*: they are not earlier than one another.  For each row
the kernels look at the earlier rows of its partition: those before its tie group.

Everything is one pass (or a binary search per row) over the sorted arrays; no
Python loop per card holder or per claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Sorted:
    """The sort of a window's rows and the bounds each row looks back over."""

    order: Array  # sorted position -> row (rows: history first, then batch)
    part_start: Array  # per sorted position: first position of its partition
    tie_start: Array  # per sorted position: first position of its tie group
    batch_start: Array  # per sorted position: first batch position of its partition
    keyed: Array  # per sorted position: the row has a full (non-null) partition key


MAX_KEY = 1 << 62


def _argsort(key: Array) -> Array:
    """Indices sorting int64 ``key`` (ties in any order).

    When key and row number fit one int64 together, the row number is packed into
    the low bits and the values are sorted: several times faster than argsort.
    """
    n = len(key)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = int(key.min()), int(key.max())
    bits = max(n - 1, 1).bit_length()
    if (high - low) < (1 << (62 - bits)):
        packed = ((key - low) << bits) | np.arange(n, dtype=np.int64)
        packed.sort()
        return packed & ((1 << bits) - 1)
    return np.argsort(key)


def stable_argsort(key: Array) -> Array:
    """A stable argsort of int64 keys (the packed value sort keeps equal keys in row order)."""
    n = len(key)
    if n and (int(key.max()) - int(key.min())) < (1 << (62 - max(n - 1, 1).bit_length())):
        return _argsort(key)
    return np.argsort(key, kind="stable")


def dense(key: Array) -> tuple[Array, int]:
    """Dense ranks (0..k-1, order kept) of int64 keys, and k."""
    n = len(key)
    if n == 0:
        return key.astype(np.int64), 0
    order = _argsort(key)
    sk = key[order]
    step = np.empty(n, dtype=np.int64)
    step[0] = 0
    step[1:] = sk[1:] != sk[:-1]
    ranks_sorted = np.cumsum(step)
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = ranks_sorted
    return ranks, int(ranks_sorted[-1]) + 1


def combine(parts: list[tuple[Array, int]], n: int) -> tuple[Array, int]:
    """One int64 key from (codes, cardinality) parts, most significant first.

    Mixed radix while the key space fits; where it would not, what is combined so
    far is replaced by its dense ranks (order kept), so any number of keys works.
    """
    key = np.zeros(n, dtype=np.int64)
    size = 1
    for codes, card in parts:
        card = max(int(card), 1)
        if size * card >= MAX_KEY:
            key, size = dense(key)
            size = max(size, 1)
        key = key * card + codes
        size *= card
    return key, size


def sort_rows(partition: Array, order: Array, keyed: Array) -> Sorted:
    """Rows grouped by partition key, each group sorted by (order key, row).

    ``partition`` and ``order`` are single non-negative int64 keys (see combine);
    the order key puts history rows (its top digit) before batch rows.  Rows
    without a full key get a partition of their own.
    """
    n = len(partition)
    part = np.where(keyed, partition, -1 - np.arange(n, dtype=np.int64))
    grouped = _argsort(part)
    perm, part_start, tie_start = _group_sort(grouped, part, order)
    return Sorted(perm, part_start, tie_start, np.zeros(n, dtype=np.int64), keyed[perm])


@numba.njit(cache=True, nogil=True)
def _group_sort(
    grouped: Array, part: Array, order: Array
) -> tuple[Array, Array, Array]:  # pragma: no cover
    """Within each run of equal partition keys, sort by (order, row); mark group bounds."""
    n = grouped.shape[0]
    perm = grouped.copy()
    part_start = np.empty(n, dtype=np.int64)
    tie_start = np.empty(n, dtype=np.int64)
    a = 0
    while a < n:
        b = a + 1
        while b < n and part[perm[b]] == part[perm[a]]:
            b += 1
        m = b - a
        if m > 1:
            if m <= 32:  # insertion sort on (order, row): the usual small groups
                for x in range(a + 1, b):
                    row = perm[x]
                    key = order[row]
                    y = x - 1
                    while y >= a and (
                        order[perm[y]] > key or (order[perm[y]] == key and perm[y] > row)
                    ):
                        perm[y + 1] = perm[y]
                        y -= 1
                    perm[y + 1] = row
            else:
                seg = np.sort(perm[a:b])  # by row, then a stable sort by order
                idx = np.argsort(order[seg], kind="mergesort")
                for x in range(m):
                    perm[a + x] = seg[idx[x]]
        for x in range(a, b):
            part_start[x] = a
            if x == a or order[perm[x]] != order[perm[x - 1]]:
                tie_start[x] = x
            else:
                tie_start[x] = tie_start[x - 1]
        a = b
    return perm, part_start, tie_start


@numba.njit(cache=True, nogil=True)
def _batch_starts(part_start: Array, is_batch: Array) -> Array:  # pragma: no cover
    """Per sorted position: the first batch position of its partition (or its end)."""
    n = part_start.shape[0]
    out = np.empty(n, dtype=np.int64)
    j = 0
    while j < n:
        k = j + 1
        while k < n and part_start[k] == part_start[j]:
            k += 1
        first = k
        for m in range(j, k):
            if is_batch[m]:
                first = m
                break
        for m in range(j, k):
            out[m] = first
        j = k
    return out


def batch_starts(s: Sorted, n_history: int) -> Array:
    return np.asarray(_batch_starts(s.part_start, s.order >= n_history))


@numba.njit(cache=True, nogil=True, parallel=True)
def count_sum(
    weights: Array,
    s_part: Array,
    s_tie: Array,
    s_batch: Array,
    day: Array,
    lo: Array,
    use_days: bool,
) -> Array:  # pragma: no cover
    """Sum of ``weights`` over each row's earlier rows (in the day range if used)."""
    n = weights.shape[0]
    prefix = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        prefix[i + 1] = prefix[i] + weights[i]
    out = np.zeros(n, dtype=np.int64)
    for i in numba.prange(n):
        ps, ts, bs = s_part[i], s_tie[i], s_batch[i]
        if not use_days:
            out[i] = prefix[ts] - prefix[ps]
            continue
        d, low = day[i], lo[i]
        # history rows of the partition: sorted by day; count low <= day <= d
        hist_end = bs if bs < ts else ts
        a = ps + np.searchsorted(day[ps:hist_end], low, side="left")
        b = ps + np.searchsorted(day[ps:hist_end], d, side="right")
        total = prefix[b] - prefix[a] if b > a else 0
        # earlier batch rows (before this tie group): their day <= d by order
        if ts > bs:
            c = bs + np.searchsorted(day[bs:ts], low, side="left")
            total += prefix[ts] - prefix[c]
        out[i] = total
    return out


@numba.njit(cache=True, nogil=True)
def running(
    values: Array, weights: Array, s_part: Array, s_tie: Array, mode: int
) -> tuple[Array, Array]:  # pragma: no cover
    """Per row, over earlier counted rows: mode 0 max, 1 min, 2 first index, 3 last index.

    Returns (result, found); for first/last the result is a sorted position.
    """
    n = values.shape[0]
    before = np.zeros(n, dtype=np.int64)  # the aggregate of rows [part_start, i)
    seen_before = np.zeros(n, dtype=np.bool_)
    cur = np.int64(0)
    seen = False
    for i in range(n):
        if i == 0 or s_part[i] != s_part[i - 1]:
            seen = False
            cur = np.int64(0)
        before[i] = cur
        seen_before[i] = seen
        if weights[i] > 0:
            v = values[i] if mode < 2 else np.int64(i)
            if not seen or (mode == 0 and v > cur) or (mode == 1 and v < cur) or mode == 3:
                cur = v
            seen = True
    out = np.zeros(n, dtype=np.int64)
    found = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        t = s_tie[i]
        out[i] = before[t]
        found[i] = seen_before[t]
    return out, found
