"""Small batches written by hand: one clean claim by default, overrides per test.

Declared amounts that a test does not give are filled in from the contract's
formulas with Python's Decimal (ROUND_HALF_UP), so a default claim is clean and a
test changes only what it is about.  The defaults live in the package
(``claims_engine.pack.testing``), where the rule-pack case runner uses them too.
"""

from __future__ import annotations

from claims_engine.pack.testing import (
    CENT,
    CLAIM,
    LINE,
    batch,
    fill_claim,
    fill_line,
    half_up,
    tables,
    treatment_days,
)

__all__ = [
    "CENT",
    "CLAIM",
    "LINE",
    "batch",
    "fill_claim",
    "fill_line",
    "half_up",
    "tables",
    "treatment_days",
]
