"""Which claim row carries each claim_id word of the lines: a walk in file order.

QĐ130 exports list a claim's lines together and in the claims' order, so the
lines' claim_id words (from the Parquet dictionaries, in first-seen order) mostly
follow the claim rows one for one.  ``rows_of_words`` walks both in step and
compares bytes: one sequential pass instead of hashing a million ids.  A word
that does not meet its claim near the walk's position (a claim without lines, an
orphan line, lines out of order) is looked up by hash afterwards, so the result
never depends on the order; only the speed does.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Array = np.ndarray[Any, Any]

# how far the walk looks ahead for a word's claim (claims without lines between)
LOOK_AHEAD = 4
_UNSEEN = -2


def _parts(arr: pa.Array) -> tuple[Array, Array, Array]:
    """(offsets as int64, bytes, validity) of a string array."""
    n = len(arr)
    width: Any = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=width)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else None
    valid = (
        np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
        if arr.null_count
        else np.ones(n, dtype=np.bool_)
    )
    return (
        offsets.astype(np.int64),
        data if data is not None else np.zeros(0, dtype=np.uint8),
        valid,
    )


@numba.njit(cache=True, nogil=True)
def _walk(
    w_off: Array,
    w_data: Array,
    w_valid: Array,
    c_off: Array,
    c_data: Array,
    c_valid: Array,
    out: Array,
) -> int:  # pragma: no cover
    """``out[w]``: a claim row with word w's bytes, found near the walk; _UNSEEN where
    not found there.  Returns how many were not found."""
    n_words, n_claims = w_off.shape[0] - 1, c_off.shape[0] - 1
    j = 0  # the claim row the next word most likely carries
    missed = 0
    for w in range(n_words):
        out[w] = _UNSEEN
        if not w_valid[w]:  # a null word: the hash lookup decides
            missed += 1
            continue
        a0, a1 = w_off[w], w_off[w + 1]
        for d in range(-1, LOOK_AHEAD + 1):  # -1: a claim split over two row groups
            k = j + d
            if k < 0 or k >= n_claims or not c_valid[k]:
                continue
            b0, b1 = c_off[k], c_off[k + 1]
            if b1 - b0 != a1 - a0:
                continue
            same = True
            for x in range(a1 - a0):
                if w_data[a0 + x] != c_data[b0 + x]:
                    same = False
                    break
            if same:
                out[w] = k
                if k + 1 > j:
                    j = k + 1
                break
        if out[w] == _UNSEEN:
            missed += 1
    return missed


@numba.njit(cache=True, nogil=True, inline="always")
def _compare(a: Array, a0: int, a1: int, b: Array, b0: int, b1: int) -> int:  # pragma: no cover
    """-1, 0, 1: bytes a[a0:a1] before, equal to, after b[b0:b1] (byte order)."""
    for x in range(min(a1 - a0, b1 - b0)):
        if a[a0 + x] != b[b0 + x]:
            return -1 if a[a0 + x] < b[b0 + x] else 1
    if a1 - a0 == b1 - b0:
        return 0
    return -1 if a1 - a0 < b1 - b0 else 1


@numba.njit(cache=True, nogil=True)
def _ascending(c_off: Array, c_data: Array, c_valid: Array) -> bool:  # pragma: no cover
    for k in range(c_off.shape[0] - 1):
        if not c_valid[k]:
            return False
        if k and _compare(c_data, c_off[k - 1], c_off[k], c_data, c_off[k], c_off[k + 1]) > 0:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _search(
    w_off: Array,
    w_data: Array,
    w_valid: Array,
    rest: Array,
    c_off: Array,
    c_data: Array,
    out: Array,
) -> None:  # pragma: no cover
    """Binary search of the ``rest`` words among ascending claim ids (first equal row)."""
    for r in range(rest.shape[0]):
        w = rest[r]
        out[w] = -1
        if not w_valid[w]:
            continue
        a0, a1 = w_off[w], w_off[w + 1]
        lo, hi = 0, c_off.shape[0] - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if _compare(c_data, c_off[mid], c_off[mid + 1], w_data, a0, a1) < 0:
                lo = mid + 1
            else:
                hi = mid
        if (
            lo < c_off.shape[0] - 1
            and _compare(c_data, c_off[lo], c_off[lo + 1], w_data, a0, a1) == 0
        ):
            out[w] = lo


class ClaimIds:
    """The claims' claim_id column with its buffers, and whether the ids ascend
    (checked once, for both the walk's leftovers and the repeated ids)."""

    def __init__(self, ids: pa.Array | pa.ChunkedArray) -> None:
        self.array = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        self.strings = pa.types.is_string(self.array.type)
        if self.strings:
            self.offsets, self.data, self.valid = _parts(self.array)

    @cached_property
    def ascending(self) -> bool:
        return self.strings and bool(_ascending(self.offsets, self.data, self.valid))

    def hashed(self, values: pa.Array) -> Array:
        """The first row of each value by a hash lookup (-1: none)."""
        looked = pc.index_in(values, value_set=self.array)
        return np.asarray(looked.fill_null(-1).to_numpy(), dtype=np.int64)


def rows_of_words(words: pa.Array, ids: ClaimIds, first_row: Array) -> Array:
    """Per word, the first claim row carrying it (-1: none).

    ``first_row``: per claim row, the first row with the same claim_id (a repeated
    id's rows all lead to the first, as a hash lookup of the id would).
    """
    if isinstance(words, pa.ChunkedArray):
        words = words.combine_chunks()
    if not (pa.types.is_string(words.type) and ids.strings):
        return ids.hashed(words)
    out = np.empty(len(words), dtype=np.int64)
    w_off, w_data, w_valid = _parts(words)
    missed = _walk(w_off, w_data, w_valid, ids.offsets, ids.data, ids.valid, out)
    rest = np.flatnonzero(out < 0) if missed else np.zeros(0, dtype=np.int64)
    # the rest: binary search when the ids ascend (as exports list them), else hashed
    searched = len(rest) > 0 and bool(w_valid[rest].all()) and ids.ascending
    if searched:
        _search(w_off, w_data, w_valid, rest, ids.offsets, ids.data, out)
    found = out >= 0
    out[found] = first_row[out[found]]
    if len(rest) and not searched:  # nulls, or ids out of order
        out[rest] = ids.hashed(words.take(pa.array(rest)))
    return out


@numba.njit(cache=True, nogil=True)
def _run_starts(c_off: Array, c_data: Array, out: Array) -> None:  # pragma: no cover
    """For ascending ids: each row's first row with the same id (equal ids adjoin)."""
    for k in range(c_off.shape[0] - 1):
        if k and _compare(c_data, c_off[k - 1], c_off[k], c_data, c_off[k], c_off[k + 1]) == 0:
            out[k] = out[k - 1]
        else:
            out[k] = k


def first_rows(ids: ClaimIds) -> Array:
    """Per claim row, the first row with the same claim_id (nulls: the first null
    row), as a hash lookup of the ids in themselves gives; one pass when the ids
    ascend, as exports list them."""
    if ids.ascending and ids.array.null_count == 0:
        out = np.empty(len(ids.array), dtype=np.int64)
        _run_starts(ids.offsets, ids.data, out)
        return out
    return ids.hashed(ids.array)
