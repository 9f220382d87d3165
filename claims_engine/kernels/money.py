"""Exact money of contract section 6, on scaled integers, rounded half-up.

    eligible   = round2(quantity x unit_price x service_rate/100 x coverage_rate/100)
    fund_pays  = round2(eligible x benefit_rate/100)

with the *effective* inputs (declared values, replaced where an adjust rule set
them).  Each row is computed in int64 when its exact product provably fits, and
on Python integers otherwise (only rows with absurd magnitudes take that path).
"""

from __future__ import annotations

import numpy as np

from claims_engine.kernels import values as V
from claims_engine.kernels.values import Array

SAFE = 2.0**62


def product_rounded(factors: list[tuple[Array, int]], divide_digits: int, out_scale: int) -> Array:
    """round_half_up(prod(factors) / 10**divide_digits) at ``out_scale``, per row.

    ``factors`` are (scaled integers, scale) pairs; the result is int64 scaled by
    ``out_scale`` (object only if a result itself leaves int64).
    """
    n = max(np.size(f) for f, _ in factors)
    in_scale = sum(s for _, s in factors) + divide_digits
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
    if big.any():  # the exact path, for the few rows whose product may leave int64
        idx = np.flatnonzero(big)
        exact = np.ones(len(idx), dtype=object)
        for f, _ in factors:
            exact = exact * np.broadcast_to(np.asarray(f), (n,))[idx].astype(object)
        exact_out = V.rescale(exact, in_scale, out_scale)
        out = out.astype(object)
        out[idx] = exact_out
        out = V.narrow(out)
    return out


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
