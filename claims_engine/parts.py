"""Claim ranges of a batch that can be evaluated apart: row rules run per part.

A row rule (no window) reads one claim and its lines, so a batch whose lines come
grouped by claim (QĐ130 files list a claim's lines together) splits into ranges
of consecutive claims with their contiguous lines.  Evaluating a part touches
arrays of a million rows instead of eight, which stay in cache and reuse freed
memory, and two parts run at once on two cores (Arrow, numpy and numba release
the GIL).  The same cut, by card holder instead of claim range, is what a
distributed run partitions on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Part:
    claims: tuple[int, int]  # [start, stop) claim rows
    lines: tuple[int, int]  # [start, stop) line rows; their claims are all in ``claims``


@numba.njit(cache=True, nogil=True)
def _cuts(line_claim_row: Array, max_lines: int) -> tuple[bool, Array, Array]:  # pragma: no cover
    """Whether lines are in claim order (orphans anywhere), and the claim and line
    where each part starts: the claim of the line at every ``max_lines``-th
    position, if later than the previous part's, and that claim's first line."""
    n = line_claim_row.shape[0]
    claims = np.zeros(n // max_lines + 2, dtype=np.int64)
    lines = np.zeros(n // max_lines + 2, dtype=np.int64)
    parts = 1
    last = -1  # the claim of the latest line with one: orphans take it too
    for at in range(n):
        row = line_claim_row[at]
        if row >= 0:
            if row < last:
                return False, claims[:0], lines[:0]
            if row > last and row > claims[parts - 1] and at >= parts * max_lines:
                claims[parts] = row  # the first line of a claim at or after the mark
                lines[parts] = at
                parts += 1
            last = row
    return True, claims[:parts], lines[:parts]


def split(line_claim_row: Array, n_claims: int, max_lines: int) -> list[Part] | None:
    """Consecutive claim ranges of about ``max_lines`` lines each.

    None when the lines are not in claim order (a claim's lines apart, or claims
    out of order): the batch is then evaluated whole.  Orphan lines (-1) go with
    the part they sit in; they take part in no rule.
    """
    n_lines = len(line_claim_row)
    if n_lines <= max_lines:
        return None
    ordered, claims, lines = _cuts(np.ascontiguousarray(line_claim_row, dtype=np.int64), max_lines)
    if not ordered:
        return None  # a claim row lower than an earlier line's: not in claim order
    claim_bounds = [*(int(c) for c in claims), n_claims]
    line_bounds = [*(int(x) for x in lines), n_lines]
    return [
        Part((claim_bounds[i], claim_bounds[i + 1]), (line_bounds[i], line_bounds[i + 1]))
        for i in range(len(claims))
    ]


__all__ = ["Part", "split"]
