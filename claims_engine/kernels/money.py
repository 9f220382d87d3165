"""Exact money of contract section 6, on scaled integers, rounded half-up.

    eligible   = round2(quantity x unit_price x service_rate/100 x coverage_rate/100)
    fund_pays  = round2(eligible x benefit_rate/100)

with the *effective* inputs (declared values, replaced where an adjust rule set
them).  Each row is computed in int64 when its exact product provably fits, and
on Python integers otherwise (only rows with absurd magnitudes take that path).
"""

from __future__ import annotations

import numba
import numpy as np

from claims_engine.kernels import values as V
from claims_engine.kernels.values import Array

SAFE = 2.0**62


@numba.njit(cache=True, nogil=True, parallel=True)
def _product_half_up(
    f1: Array, f2: Array, f3: Array, f4: Array, steps: Array, divisor: int, out: Array, big: Array
) -> int:  # pragma: no cover
    """Per row: f1*f2*f3*f4 / divisor rounded half away from zero, in one pass; rows
    whose product may leave int64 (estimated in float) are marked in ``big`` and
    left for the exact path.  A factor with step 0 is one value for every row."""
    n_big = 0
    for i in numba.prange(out.shape[0]):
        a, b = f1[i * steps[0]], f2[i * steps[1]]
        c, d = f3[i * steps[2]], f4[i * steps[3]]
        if abs(float(a) * float(b) * float(c) * float(d)) >= SAFE:
            big[i] = True
            out[i] = 0
            n_big += 1
            continue
        p = a * b * c * d
        q, r = divmod(abs(p), divisor)
        if 2 * r >= divisor:
            q += 1
        out[i] = -q if p < 0 else q
    return n_big


def _fused(factors: list[Array], n: int, divide_by: int) -> tuple[Array, Array] | None:
    """``_product_half_up`` for up to four int64 factors (None: another shape)."""
    if len(factors) > 4 or any(f.dtype.kind not in "iu" or f.ndim > 1 for f in factors):
        return None
    one = np.ones(1, dtype=np.int64)
    padded = [np.ascontiguousarray(f.reshape(-1), dtype=np.int64) for f in factors]
    padded += [one] * (4 - len(padded))
    steps = np.asarray([1 if len(f) == n and n > 1 else 0 for f in padded], dtype=np.int64)
    if any(len(f) not in (1, n) for f in padded):
        return None
    out = np.empty(n, dtype=np.int64)
    big = np.zeros(n, dtype=np.bool_)
    f1, f2, f3, f4 = padded
    _product_half_up(f1, f2, f3, f4, steps, divide_by, out, big)
    return out, big


def product_rounded(factors: list[tuple[Array, int]], divide_digits: int, out_scale: int) -> Array:
    """round_half_up(prod(factors) / 10**divide_digits) at ``out_scale``, per row.

    ``factors`` are (scaled integers, scale) pairs; the result is int64 scaled by
    ``out_scale`` (object only if a result itself leaves int64).
    """
    n = max(np.size(f) for f, _ in factors)
    in_scale = sum(s for _, s in factors) + divide_digits
    fused = (
        _fused([np.asarray(f) for f, _ in factors], n, 10 ** (in_scale - out_scale))
        if in_scale > out_scale and n
        else None
    )
    if fused is not None:
        if not fused[1].any():
            return fused[0]
        return _exact_rows(factors, n, in_scale, out_scale, *fused)
    bound = 1.0
    for f, _ in factors:
        bound *= V.magnitude(np.asarray(f)) if np.size(f) else 0.0
    if bound < SAFE:  # the usual case: every row's product provably fits int64
        prod = np.ones(n, dtype=np.int64)
        for f, _ in factors:
            prod *= np.asarray(f, dtype=np.int64)
        return np.asarray(V.rescale(prod, in_scale, out_scale))
    estimate = np.ones(n, dtype=np.float64)
    for f, _ in factors:
        estimate = estimate * np.abs(np.asarray(f, dtype=np.float64))
    big = estimate >= SAFE
    prod = np.ones(n, dtype=np.int64)
    for f, _ in factors:
        prod = prod * np.where(big, 0, np.asarray(f, dtype=np.int64))
    out: Array = V.rescale(prod, in_scale, out_scale)
    if big.any():
        out = _exact_rows(factors, n, in_scale, out_scale, out, big)
    return out


def _exact_rows(
    factors: list[tuple[Array, int]], n: int, in_scale: int, out_scale: int, out: Array, big: Array
) -> Array:
    """``out`` with the ``big`` rows computed on Python integers (exact at any size)."""
    idx = np.flatnonzero(big)
    exact = np.ones(len(idx), dtype=object)
    for f, _ in factors:
        exact = exact * np.broadcast_to(np.asarray(f), (n,))[idx].astype(object)
    exact_out = V.rescale(exact, in_scale, out_scale)
    out = out.astype(object)
    out[idx] = exact_out
    return V.narrow(out)


def line_eligible(
    quantity: tuple[Array, int],
    unit_price: tuple[Array, int],
    service_rate: tuple[Array, int],
    coverage_rate: tuple[Array, int],
) -> Array:
    """Eligible amount per line in cents (percent rates: 4 more digits to divide)."""
    return product_rounded([quantity, unit_price, service_rate, coverage_rate], 4, 2)


def fund_share(eligible_cents: Array, benefit_rate: tuple[Array, int]) -> Array:
    """fund_pays in cents: eligible x benefit_rate / 100, rounded half-up."""
    return product_rounded([(eligible_cents, 2), benefit_rate], 2, 2)
