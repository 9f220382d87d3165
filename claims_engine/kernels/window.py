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


def sort_rows(partition: list[Array], order: list[Array], source: Array, keyed: Array) -> Sorted:
    """Sort rows by (partition keys, source, order keys) and find the group bounds.

    ``partition`` and ``order`` hold int64 codes (order codes preserve order);
    rows without a full key get a partition of their own (they never match).
    """
    n = len(source)
    unkeyed = np.flatnonzero(~keyed)
    parts = [p.copy() for p in partition]
    if len(unkeyed):  # give each unkeyed row a unique, unmatched partition
        parts.append(np.where(keyed, -1, np.arange(n, dtype=np.int64)))
    keys = [*reversed(order), source, *reversed(parts)]
    perm = np.lexsort(keys) if n else np.zeros(0, dtype=np.int64)
    change_part = np.zeros(n, dtype=bool)
    change_tie = np.zeros(n, dtype=bool)
    if n:
        change_part[0] = True
        for p in parts:
            sp = p[perm]
            change_part[1:] |= sp[1:] != sp[:-1]
        change_tie[:] = change_part
        ss = source[perm]
        change_tie[1:] |= ss[1:] != ss[:-1]
        for o in order:
            so = o[perm]
            change_tie[1:] |= so[1:] != so[:-1]
    pos = np.arange(n, dtype=np.int64)
    part_start = np.maximum.accumulate(np.where(change_part, pos, 0)) if n else pos
    tie_start = np.maximum.accumulate(np.where(change_tie, pos, 0)) if n else pos
    batch_start = _batch_starts(part_start, source[perm].astype(np.int8))
    return Sorted(perm, part_start, tie_start, batch_start, keyed[perm])


@numba.njit(cache=True, nogil=True)
def _batch_starts(part_start: Array, source: Array) -> Array:  # pragma: no cover
    n = part_start.shape[0]
    out = np.empty(n, dtype=np.int64)
    # every row of a partition gets the partition's first batch position
    j = 0
    while j < n:
        k = j
        first = n
        while k < n and part_start[k] == part_start[j]:
            if source[k] == 1 and first == n:
                first = k
            k += 1
        end = k
        if first == n:
            first = end
        for m in range(j, end):
            out[m] = first
        j = end
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def count_sum(weights: Array, s_part: Array, s_tie: Array, s_batch: Array, day: Array,
              lo: Array, use_days: bool) -> Array:  # pragma: no cover
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
def running(values: Array, weights: Array, s_part: Array, s_tie: Array, mode: int
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
            if not seen:
                cur = v
            elif mode == 0 and v > cur:
                cur = v
            elif mode == 1 and v < cur:
                cur = v
            elif mode == 3:
                cur = v
            seen = True
    out = np.zeros(n, dtype=np.int64)
    found = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        t = s_tie[i]
        out[i] = before[t]
        found[i] = seen_before[t]
    return out, found
