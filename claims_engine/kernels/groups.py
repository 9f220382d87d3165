"""Numba kernels that reduce line values to their claims (per-claim aggregates).

``group`` maps each line to its claim row (-1 for a line without a claim).  Each
kernel is one pass over the lines; compiled once and cached on disk.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from claims_engine.kernels import values as V

Array = np.ndarray[Any, Any]


@numba.njit(cache=True, nogil=True)
def _group_sum(group: Array, values: Array, include: Array, n: int) -> Array:  # pragma: no cover
    out = np.zeros(n, dtype=np.int64)
    for i in range(group.shape[0]):
        g = group[i]
        if g >= 0 and include[i]:
            out[g] += values[i]
    return out


@numba.njit(cache=True, nogil=True)
def _group_extreme(
    group: Array, values: Array, include: Array, n: int, want_max: bool
) -> tuple[Array, Array]:  # pragma: no cover
    out = np.zeros(n, dtype=np.int64)
    seen = np.zeros(n, dtype=np.bool_)
    for i in range(group.shape[0]):
        g = group[i]
        if g < 0 or not include[i]:
            continue
        v = values[i]
        if not seen[g] or (want_max and v > out[g]) or (not want_max and v < out[g]):
            out[g] = v
            seen[g] = True
    return out, seen


def group_count(group: Array, include: Array, n: int) -> Array:
    sel = group[include & (group >= 0)]
    return np.bincount(sel, minlength=n).astype(np.int64)


def group_sum(group: Array, values: Array, include: Array, n: int) -> Array:
    """Exact per-group sums of scaled integers (object path if int64 could overflow)."""
    if values.dtype != object and values.size:
        bound = V.magnitude(values) * values.size  # no sum of them can exceed this
        if bound < 2.0**62:
            return np.asarray(_group_sum(group, values.astype(np.int64, copy=False), include, n))
    out = np.zeros(n, dtype=object)
    keep = include & (group >= 0)
    np.add.at(out, group[keep], values[keep].astype(object))
    return out


def group_extreme(
    group: Array, values: Array, include: Array, n: int, want_max: bool
) -> tuple[Array, Array]:
    if values.dtype == object:  # exact path for values beyond int64 (Python ints)
        keep = include & (group >= 0)
        g, v = group[keep], values[keep]
        order = np.argsort(v, kind="stable")
        if not want_max:
            order = order[::-1]
        res = np.zeros(n, dtype=object)
        res[g[order]] = v[order]  # the last write per group is the extreme
        hit = np.zeros(n, dtype=bool)
        hit[g] = True
        return res, hit
    out, seen = _group_extreme(group, values.astype(np.int64), include, n, want_max)
    return np.asarray(out), np.asarray(seen)


@numba.njit(cache=True, nogil=True)
def _repeats_in_runs(
    group: Array, key: Array, n_groups: int
) -> tuple[Array, bool]:  # pragma: no cover
    """Rows whose key another row of its group has, when each group's rows are
    contiguous (rows of group -1, orphans, may sit among them); the second result
    says whether they were.  Keys < 0 never match."""
    n = group.shape[0]
    out = np.zeros(n, dtype=np.bool_)
    seen = np.zeros(n_groups, dtype=np.bool_)
    i = 0
    while i < n:
        g = group[i]
        if g < 0:
            i += 1
            continue
        if seen[g]:
            return out, False
        seen[g] = True
        j = i + 1
        while j < n and (group[j] == g or group[j] < 0):
            j += 1
        if j - i <= 24:  # the usual claim: compare pairs, no allocation
            for a in range(i, j):
                ka = key[a]
                if ka < 0 or group[a] != g:
                    continue
                for b in range(a + 1, j):
                    if key[b] == ka and group[b] == g:
                        out[a] = True
                        out[b] = True
        else:
            sub = key[i:j].copy()
            for a in range(j - i):
                if group[i + a] != g:
                    sub[a] = -1
            order = np.argsort(sub, kind="mergesort")
            for a in range(j - i - 1):
                p, q = i + order[a], i + order[a + 1]
                if sub[order[a]] >= 0 and sub[order[a]] == sub[order[a + 1]]:
                    out[p] = True
                    out[q] = True
        i = j
    return out, True


@numba.njit(cache=True, nogil=True, parallel=True)
def _kind_number_keys(
    kind_index: Array, kind_of_word: Array, null_kind: int, number: Array, valid: Array, out: Array
) -> None:  # pragma: no cover
    for i in numba.prange(kind_index.shape[0]):
        w = kind_index[i]
        kind = kind_of_word[w] if w >= 0 else null_kind
        out[i] = kind * 2**33 + number[i] + 2**31 if valid[i] else -1


def kind_number_keys(
    kind_index: Array, kind_of_word: Array, null_kind: int, number: Array, valid: Array | None
) -> Array:
    """One key per line of (kind, line_no), -1 where line_no is null.

    ``kind_index``: each line's kind word (-1: null kind, coded ``null_kind``);
    ``kind_of_word``: each word's kind code (small); ``number``: an int32 line_no,
    so the pair fits one int64.
    """
    out = np.empty(len(kind_index), dtype=np.int64)
    _kind_number_keys(
        np.ascontiguousarray(kind_index),
        np.ascontiguousarray(kind_of_word, dtype=np.int64),
        null_kind,
        np.ascontiguousarray(number, dtype=np.int64),
        np.ones(len(number), dtype=bool) if valid is None else np.ascontiguousarray(valid),
        out,
    )
    return out


def repeated_keys(group: Array, key: Array, n_groups: int) -> Array:
    """Rows whose non-negative ``key`` another row of the same group (>= 0) also has.

    Lines come grouped by claim, so each claim's few lines are compared among
    themselves; only when a claim's lines are scattered is the whole key sorted.
    """
    group = np.ascontiguousarray(group, dtype=np.int64)
    key = np.ascontiguousarray(key, dtype=np.int64)
    out, grouped = _repeats_in_runs(group, key, n_groups)
    if grouped:
        return np.asarray(out)
    ok = (group >= 0) & (key >= 0)
    order = np.flatnonzero(ok)
    order = order[np.lexsort((key[order], group[order]))]
    eq = (group[order][1:] == group[order][:-1]) & (key[order][1:] == key[order][:-1])
    out = np.zeros(len(group), dtype=bool)
    out[order[1:][eq]] = True
    out[order[:-1][eq]] = True
    return out
