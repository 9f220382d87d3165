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

import numpy as np

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Part:
    claims: tuple[int, int]  # [start, stop) claim rows
    lines: tuple[int, int]  # [start, stop) line rows; their claims are all in ``claims``


def split(line_claim_row: Array, n_claims: int, max_lines: int) -> list[Part] | None:
    """Consecutive claim ranges of about ``max_lines`` lines each.

    None when the lines are not in claim order (a claim's lines apart, or claims
    out of order): the batch is then evaluated whole.  Orphan lines (-1) go with
    the part they sit in; they take part in no rule.
    """
    n_lines = len(line_claim_row)
    if n_lines <= max_lines:
        return None
    # each line's claim, orphans taking the claim before them: non-decreasing if grouped
    filled = np.maximum.accumulate(np.where(line_claim_row >= 0, line_claim_row, -1))
    real = line_claim_row >= 0
    if not bool(np.all(line_claim_row[real] == filled[real])):
        return None  # a claim row lower than an earlier line's: not in claim order
    cuts = [0]
    for at in range(max_lines, n_lines, max_lines):
        claim = int(filled[at])
        if claim > cuts[-1]:
            cuts.append(claim)  # the part starts with the claim of its first line
    starts = np.searchsorted(filled, np.array(cuts, dtype=np.int64), side="left")
    claim_bounds = [*cuts, n_claims]
    line_bounds = [0, *[int(s) for s in starts[1:]], n_lines]
    return [
        Part((claim_bounds[i], claim_bounds[i + 1]), (line_bounds[i], line_bounds[i + 1]))
        for i in range(len(cuts))
    ]


__all__ = ["Part", "split"]
