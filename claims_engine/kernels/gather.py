"""Gathers by row index where -1 means "no row" (a line without claim, a failed
lookup): one parallel pass instead of numpy's mask, where, fancy index and
validity passes over millions of lines.

Numba compiles these once per element type (cached on disk); object arrays (exact
values beyond int64) and small inputs take the numpy path.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

Array = np.ndarray[Any, Any]

# below this many rows numpy's passes cost less than entering the parallel region
PARALLEL_ROWS = 65_536


@numba.njit(cache=True, nogil=True, parallel=True)
def _take_or(data: Array, idx: Array, fill: Any, out: Array) -> None:  # pragma: no cover
    for i in numba.prange(len(idx)):
        j = idx[i]
        out[i] = data[j] if j >= 0 else fill


@numba.njit(cache=True, nogil=True, parallel=True)
def _take_valid(
    data: Array, idx: Array, valid: Array, has_valid: bool, out: Array, out_valid: Array
) -> int:  # pragma: no cover
    invalid = 0
    for i in numba.prange(len(idx)):
        j = idx[i]
        if j < 0:
            out_valid[i] = False
            invalid += 1
        else:
            out[i] = data[j]
            ok = valid[j] if has_valid else True
            out_valid[i] = ok
            if not ok:
                invalid += 1
    return invalid


def _numba_ok(data: Array, idx: Array) -> bool:
    return len(idx) >= PARALLEL_ROWS and data.dtype.kind in "biu" and idx.dtype.kind == "i"


def take_or(data: Array, idx: Array, fill: int) -> Array:
    """``data[idx]``, ``fill`` where ``idx`` is -1."""
    data = np.asarray(data)
    if not _numba_ok(data, idx) or len(data) == 0:
        return np.append(data, data.dtype.type(fill))[idx]  # -1: the appended fill
    out = np.empty(len(idx), dtype=data.dtype)
    _take_or(data, idx, data.dtype.type(fill), out)
    return out


def take_valid(data: Array, idx: Array, valid: Array | None) -> tuple[Array, Array | None]:
    """``data[idx]`` and its validity (-1: not valid); None when every row is valid.

    Rows without a source row hold zeros of ``data``'s type.
    """
    data = np.asarray(data)
    if not _numba_ok(data, idx) or len(data) == 0:
        missing = idx < 0
        any_missing = bool(missing.any())
        safe = np.where(missing, 0, idx) if any_missing else idx
        if len(data) == 0:
            return np.zeros(len(idx), dtype=data.dtype), np.zeros(len(idx), dtype=bool)
        out = data[safe]
        out_valid = None if valid is None else valid[safe]
        if any_missing:
            out[missing] = 0
            out_valid = ~missing if out_valid is None else out_valid & ~missing
        return out, out_valid
    out = np.zeros(len(idx), dtype=data.dtype)
    out_valid = np.empty(len(idx), dtype=bool)
    src_valid = valid if valid is not None else np.ones(1, dtype=bool)
    invalid = _take_valid(data, idx, src_valid, valid is not None, out, out_valid)
    return out, (out_valid if invalid else None)
