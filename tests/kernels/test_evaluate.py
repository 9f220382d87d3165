"""Vectorized evaluation on small hand-built Arrow tables, checked value by value.

``World`` holds a claims table, a lines table mapped to their claims, optional
reference tables and lookups; ``World.eval(text)`` type-checks an expression
against exactly those columns and returns the evaluated values as Python values
(Decimal, bool, date, datetime, str, None), one per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from claims_engine.kernels import values as V
from claims_engine.kernels.evaluate import Context, Evaluator
from claims_engine.kernels.values import Vec
from claims_engine.lang import ir
from claims_engine.lang import types as t
from claims_engine.lang.checker import Checker, LookupSig, Scope
from claims_engine.lang.parser import parse

EPOCH = date(1970, 1, 1)


def py(v: Vec, n: int) -> list[Any]:
    """A Vec as Python values (numbers exact, at their static scale)."""
    if v.is_arrow:
        return list(V.to_arrow(v, n).to_pylist())
    data, valid = V.full(v, n), V.valid_mask(v, n)
    out: list[Any] = []
    for x, ok in zip(data, valid, strict=True):
        if not ok:
            out.append(None)
        elif v.type.kind == "num":
            out.append(Decimal(int(x)).scaleb(-v.type.scale))
        elif v.type.kind == "bool":
            out.append(bool(x))
        elif v.type.kind == "date":
            out.append(EPOCH + timedelta(days=int(x)))
        elif v.type.kind == "timestamp":
            out.append(datetime(1970, 1, 1) + timedelta(seconds=int(x)))
        else:
            out.append(x)
    return out


def _fields(table: pa.Table) -> dict[str, t.Type]:
    return {f.name: t.from_arrow(f.type) for f in table.schema}


class World:
    def __init__(
        self,
        claims: Mapping[str, Any],
        lines: Mapping[str, Any] | None = None,
        line_claim: Sequence[int] | None = None,
        *,
        params: Mapping[str, tuple[Any, t.Type]] | None = None,
        reference: Mapping[str, pa.Table] | None = None,
        lookups: Sequence[Mapping[str, Any]] = (),
        derived: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        self.claims = pa.table(dict(claims))
        self.lines = pa.table(dict(lines)) if lines else pa.table({"_": pa.array([], pa.int8())})
        self.line_claim = np.asarray(line_claim if line_claim is not None else [], dtype=np.int64)
        self.reference = dict(reference or {})
        self.scope = Scope("claim", _fields(self.claims), _fields(self.lines), dict(params or {}))
        self.lookups: dict[str, ir.Lookup] = {}
        for spec in lookups:
            self._add_lookup(**spec)
        self.derived: dict[str, tuple[str, ir.Expr]] = {}
        for name, level, text in derived:
            self.derived[name] = (level, self.typed(text, level))
            self.scope = Scope(
                "claim",
                self.scope.claim_fields,
                self.scope.line_fields,
                self.scope.params,
                self.scope.lookups,
                {n: (lv, e.type) for n, (lv, e) in self.derived.items()},
            )

    def _add_lookup(
        self,
        name: str,
        tables: Sequence[tuple[str, str]],
        keys: Mapping[str, str],
        as_of: str,
        level: str = "claim",
        prefer: Mapping[str, str] | None = None,
        discriminator: str | None = None,
    ) -> None:
        columns: dict[str, t.Type] = {}
        for _, tname in tables:
            columns.update(_fields(self.reference[tname]))
        if discriminator:
            columns[discriminator] = t.STR
        lk = ir.Lookup(
            name,
            level,
            tuple(tables),
            discriminator,
            tuple((c, self.typed(x, level)) for c, x in keys.items()),
            tuple((c, self.typed(x, level)) for c, x in (prefer or {}).items()),
            self.typed(as_of, level),
            False,
            tuple(sorted(columns.items())),
        )
        self.lookups[name] = lk
        self.scope = Scope(
            "claim",
            self.scope.claim_fields,
            self.scope.line_fields,
            self.scope.params,
            {**self.scope.lookups, name: LookupSig(level, columns)},
        )

    def typed(self, text: str, level: str = "claim") -> ir.Expr:
        s = self.scope
        return Checker(
            Scope(level, s.claim_fields, s.line_fields, s.params, s.lookups, s.derived)
        ).check(parse(text))

    def evaluators(
        self, cacheable: frozenset[ir.Expr] = frozenset()
    ) -> tuple[Evaluator, Evaluator]:
        ctx = Context(self.derived, self.lookups, self.reference, cacheable)
        return Evaluator.pair(self.claims, self.lines, self.line_claim, ctx)

    def vec(self, text: str, level: str = "claim") -> tuple[Vec, int]:
        c, ln = self.evaluators()
        ev = c if level == "claim" else ln
        return ev.eval(self.typed(text, level)), ev.n

    def eval(self, text: str, level: str = "claim") -> list[Any]:
        return py(*self.vec(text, level))

    def truth(self, text: str, level: str = "claim") -> list[bool]:
        c, ln = self.evaluators()
        ev = c if level == "claim" else ln
        return [bool(x) for x in ev.truth(self.typed(text, level))]


def dec(values: Sequence[str | None], scale: int) -> pa.Array:
    return pa.array([None if v is None else Decimal(v) for v in values], pa.decimal128(18, scale))


def D(s: str) -> Decimal:
    return Decimal(s)


T, F, N = True, False, None


# --- Kleene logic and nulls ----------------------------------------------------------

KLEENE = World(
    {
        "a": pa.array([T, T, T, F, F, F, N, N, N], pa.bool_()),
        "b": pa.array([T, F, N, T, F, N, T, F, N], pa.bool_()),
    }
)


def test_kleene_and() -> None:
    assert KLEENE.eval("a and b") == [T, F, N, F, F, F, N, F, N]


def test_kleene_or() -> None:
    assert KLEENE.eval("a or b") == [T, T, T, T, F, N, T, N, N]


def test_kleene_not() -> None:
    assert KLEENE.eval("not a") == [F, F, F, T, T, T, N, N, N]
    assert KLEENE.eval("not (a and b)") == [F, T, N, T, T, T, N, T, N]


def test_kleene_with_literals() -> None:
    assert KLEENE.eval("a and null") == [N, N, N, F, F, F, N, N, N]
    assert KLEENE.eval("a or null") == [T, T, T, N, N, N, N, N, N]
    assert KLEENE.eval("a and true") == KLEENE.eval("a")
    assert KLEENE.eval("a or false") == KLEENE.eval("a")
    assert KLEENE.eval("a or true") == [T] * 9
    assert KLEENE.eval("a and false") == [F] * 9
    assert KLEENE.eval("not null") == [N] * 9
    assert KLEENE.eval("true and null") == [N] * 9
    assert KLEENE.eval("false and null") == [F] * 9
    assert KLEENE.eval("true or null") == [T] * 9


def test_null_literal_in_a_condition_is_a_bool_null() -> None:
    c, _ = KLEENE.evaluators()
    for text in ("a and null", "a or null", "true or null", "not null"):
        assert c.truth(KLEENE.typed(text)).dtype == np.bool_
    # a string-valued if() on such a condition (it crashed in if_else on int64 data)
    assert KLEENE.eval("if(a or null, 'x', 'y')") == ["x"] * 3 + ["y"] * 6


def test_kleene_three_items() -> None:
    # a and b and (not a): true never; false where any is known false
    assert KLEENE.eval("a and b and not a") == [F, F, F, F, F, F, N, F, N]
    assert KLEENE.eval("a or b or not a") == [T, T, T, T, T, T, T, N, N]


def test_null_condition_is_not_true() -> None:
    assert KLEENE.truth("a and b") == [T, F, F, F, F, F, F, F, F]
    assert KLEENE.truth("not (a and b)") == [F, T, F, T, T, T, F, T, F]
    assert KLEENE.truth("a and null") == [F] * 9


def test_is_null() -> None:
    assert KLEENE.eval("a is null") == [F] * 6 + [T] * 3
    assert KLEENE.eval("a is not null") == [T] * 6 + [F] * 3
    assert KLEENE.eval("(a and b) is null") == [F, F, T, F, F, F, T, F, T]
    assert KLEENE.eval("null is null") == [T] * 9


NUMS = World(
    {
        "x": dec(["1.50", None, "-2.25", "0.00"], 2),
        "y": pa.array([2, 3, None, 0], pa.int16()),
        "s": pa.array(["AB", None, "cd", ""]),
        "d": pa.array([date(2021, 1, 1), None, date(2020, 2, 29), date(1969, 12, 31)], pa.date32()),
    }
)


def test_null_propagation() -> None:
    assert NUMS.eval("x + y") == [D("3.50"), N, N, D("0.00")]
    assert NUMS.eval("x * y") == [D("3.00"), N, N, D("0.00")]
    assert NUMS.eval("-x") == [D("-1.50"), N, D("2.25"), D("0.00")]
    assert NUMS.eval("x > 1") == [T, N, F, F]
    assert NUMS.eval("x == y") == [F, N, N, T]
    assert NUMS.eval("s == 'AB'") == [T, N, F, F]
    assert NUMS.eval("s != 'AB'") == [F, N, T, T]
    assert NUMS.eval("d < 2021-01-01") == [F, N, T, T]
    assert NUMS.eval("x > null") == [N] * 4
    assert NUMS.eval("x + null") == [N] * 4
    assert NUMS.truth("x > 1 or y > 2") == [T, T, F, F]


def test_comparisons_across_scales() -> None:
    assert NUMS.eval("x == 1.5") == [T, N, F, F]
    assert NUMS.eval("x >= 1.500") == [T, N, F, F]
    assert NUMS.eval("y < 2.001") == [T, F, N, T]
    assert NUMS.eval("x between -2.25 and 1.5") == [T, N, T, T]
    assert NUMS.eval("x not between 0 and 1") == [T, N, T, F]
    assert NUMS.eval("d between 2020-01-01 and 2020-12-31") == [F, N, T, F]


def test_in_sets() -> None:
    assert NUMS.eval("y in [2, 3]") == [T, T, N, F]
    assert NUMS.eval("y not in [2, 3]") == [F, F, N, T]
    assert NUMS.eval("x in [1.5, 0]") == [T, N, F, T]
    assert NUMS.eval("x in [1.500]") == [T, N, F, F]  # options finer than the operand
    assert NUMS.eval("x in [-2.25]") == [F, N, T, F]
    assert NUMS.eval("y in [2.5]") == [F, F, N, F]  # 2.5 is not 2 or 3
    assert NUMS.eval("y in [3.0, null]") == [F, T, N, F]
    assert NUMS.eval("y in []") == [F, F, N, F]
    assert NUMS.eval("s in ['AB', '']") == [T, N, F, T]
    assert NUMS.eval("s not in ['AB']") == [F, N, T, T]
    assert NUMS.eval("d in [2020-02-29, 1969-12-31]") == [F, N, T, T]


# --- exact decimals ---------------------------------------------------------------------


def test_point_one_plus_point_two() -> None:
    w = World({"a": dec(["0.1"], 1), "b": dec(["0.2"], 1)})
    assert w.eval("a + b") == [D("0.3")]
    assert w.eval("a + b == 0.3") == [T]
    assert w.eval("0.1 + 0.2 == 0.3") == [T]
    assert w.eval("0.1 + 0.2") == [D("0.3")]
    assert w.eval("a * 3 - 0.3") == [D("0.0")]


def test_round_half_up() -> None:
    w = World({"x": dec(["2.5", "-2.5", "0.5", "-0.5", "1.49", "-1.49", "2.45", None], 2)})
    assert w.eval("round(x, 0)") == [D(3), D(-3), D(1), D(-1), D(1), D(-1), D(2), N]
    assert w.eval("round(x, 1)") == [
        D("2.5"),
        D("-2.5"),
        D("0.5"),
        D("-0.5"),
        D("1.5"),
        D("-1.5"),
        D("2.5"),
        N,
    ]
    assert w.eval("round(x, 3)") == [
        D("2.500"),
        D("-2.500"),
        D("0.500"),
        D("-0.500"),
        D("1.490"),
        D("-1.490"),
        D("2.450"),
        N,
    ]
    money = World({"p": dec(["0.005", "0.015", "-0.005", "0.0049", "1.9999"], 4)})
    assert money.eval("round(p, 2)") == [D("0.01"), D("0.02"), D("-0.01"), D("0.00"), D("2.00")]


def test_division_half_up() -> None:
    w = World(
        {
            "n": pa.array([1, 2, -2, 1, -1, 7, 0], pa.int64()),
            "d": pa.array([3, 3, 3, 32, 32, 2, 5], pa.int64()),
        }
    )
    # n / d at scale 0 + 4
    assert w.eval("n / d") == [
        D("0.3333"),
        D("0.6667"),
        D("-0.6667"),
        D("0.0313"),
        D("-0.0313"),
        D("3.5000"),
        D("0.0000"),
    ]
    assert w.eval("n / 16") == [
        D("0.0625"),
        D("0.1250"),
        D("-0.1250"),
        D("0.0625"),
        D("-0.0625"),
        D("0.4375"),
        D("0.0000"),
    ]
    # a decimal divisor: 1 / 0.3 at scale max(0, 1) + 4
    assert w.eval("n / 0.3") == [
        D("3.33333"),
        D("6.66667"),
        D("-6.66667"),
        D("3.33333"),
        D("-3.33333"),
        D("23.33333"),
        D("0.00000"),
    ]
    # ... and a decimal dividend: 0.07 / 0.08 = 0.875 exactly
    assert World({"a": dec(["0.07"], 2)}).eval("a / 0.08") == [D("0.875000")]


def test_division_by_zero_is_null() -> None:
    w = World({"n": pa.array([5, 5, None], pa.int64()), "d": pa.array([0, 2, 0], pa.int64())})
    assert w.eval("n / d") == [N, D("2.5000"), N]
    assert w.eval("n / 0") == [N, N, N]
    assert w.truth("n / d > 0") == [F, T, F]
    assert w.eval("(n / d) is null") == [T, F, T]


def test_division_by_power_of_ten_is_a_rescale() -> None:
    w = World({"a": dec(["123.45", "-0.01", None], 2), "r": pa.array([80, 95, 100], pa.int16())})
    assert w.eval("a / 100") == [D("1.2345"), D("-0.0001"), N]
    assert w.eval("a / 1") == [D("123.45"), D("-0.01"), N]
    assert w.eval("r / 100") == [D("0.80"), D("0.95"), D("1.00")]
    assert w.eval("a * r / 100") == [D("98.7600"), D("-0.0095"), N]
    assert w.eval("round(a * r / 100, 2)") == [D("98.76"), D("-0.01"), N]


def test_contract_money_formula() -> None:
    """round2(quantity x unit_price x service_rate/100 x coverage_rate/100), exactly."""
    w = World(
        {
            "quantity": dec(["2.000", "3.333", "1.000"], 3),
            "unit_price": dec(["11977.954", "0.335", "0.005"], 3),
            "service_rate": pa.array([100, 50, 100], pa.int16()),
            "coverage_rate": pa.array([100, 70, 100], pa.int16()),
        }
    )
    got = w.eval("round(quantity * unit_price * service_rate / 100 * coverage_rate / 100, 2)")
    # 23955.908 -> 23955.91; 3.333 * 0.335 * 0.35 = 0.39079425 -> 0.39; 0.005 -> 0.01
    assert got == [D("23955.91"), D("0.39"), D("0.01")]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-(10**9), 10**9)),  # quantity, 3 decimals
            st.one_of(st.none(), st.integers(-(10**16), 10**16)),  # price, 3 decimals
            st.integers(0, 100),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_rounded_product_is_one_exact_rounding(rows: list[tuple[Any, Any, int]]) -> None:
    """round(a * b * c / 100, s) is computed in one pass (money.product_rounded): the
    same as exact Decimal arithmetic rounded once, half away from zero, with nulls
    and products past int64 (the exact path) included."""
    q = [None if r[0] is None else Decimal(r[0]).scaleb(-3) for r in rows]
    p = [None if r[1] is None else Decimal(r[1]).scaleb(-3) for r in rows]
    w = World(
        {
            "q": pa.array(q, pa.decimal128(18, 3)),
            "p": pa.array(p, pa.decimal128(18, 3)),
            "r": pa.array([r[2] for r in rows], pa.int16()),
        }
    )
    for text, scale in (("round(q * p * r / 100, 2)", 2), ("round(q * r * 7 / 1000, 1)", 1)):
        got = w.eval(text)
        with localcontext() as ctx:
            ctx.prec = 80
            for i, (qi, pi, ri) in enumerate(zip(q, p, [r[2] for r in rows], strict=True)):
                if qi is None or ("p" in text and pi is None):
                    assert got[i] is None
                    continue
                exact = qi * pi * ri / 100 if "p" in text else qi * ri * 7 / 1000
                step = Decimal(1).scaleb(-scale)
                want = abs(exact).quantize(step, rounding=ROUND_HALF_UP).copy_sign(exact)
                assert got[i] == want, (text, qi, pi, ri)


def test_overflow_goes_the_exact_path() -> None:
    big = World(
        {
            "x": dec(["1000000000000000.00", "2.00", None], 2),  # 10**15 at scale 2
            "y": dec(["1000000.000", "3.000", "1.000"], 3),  # 10**6 at scale 3
            "i": pa.array([10**15, 3, 9_223_372_036_854_775_807], pa.int64()),
        }
    )
    v, n = big.vec("x * y")
    assert v.type == t.num(5)
    assert py(v, n) == [Decimal(10**21), D("6.00000"), N]
    assert py(*big.vec("i * 1000000")) == [
        Decimal(10**21),
        Decimal(3_000_000),
        Decimal((2**63 - 1) * 10**6),
    ]
    assert big.eval("x * y > 999999999999999999999") == [T, F, N]
    # division by a power of ten is a rescale: the object integers are kept as they are
    assert big.eval("x * y / 1000000") == [Decimal(10**15), D("0.00000600000"), N]
    assert big.eval("x * y / 1000000 / 1000000 == x * y / 1000000000000") == [T, T, N]
    assert big.eval("i + i") == [Decimal(2 * 10**15), D(6), Decimal(2 * (2**63 - 1))]
    assert big.eval("i - -i") == big.eval("i + i")
    assert big.eval("-(x * y)") == [-Decimal(10**21), D("-6.00000"), N]
    assert big.eval("abs(-(x * y))") == [Decimal(10**21), D("6.00000"), N]


def _object_division_works() -> bool:
    try:
        V.div_half_up(np.array([10**30], dtype=object), np.asarray(10, dtype=np.int64))
    except TypeError:
        return False
    return True


# Known kernel bugs, reported: xfail only while they are there, so these tests run for
# real (and must pass) as soon as they are fixed.
OBJECT_DIVMOD = pytest.mark.xfail(
    not _object_division_works(),
    strict=True,
    raises=TypeError,
    reason="kernels/values.py div_half_up: np.divmod has no object-dtype loop (numpy 2), so "
    "rounding or dividing values past int64 fails instead of taking the exact path",
)


@OBJECT_DIVMOD
def test_overflow_division_and_rounding_stay_exact() -> None:
    big = World(
        {"x": dec(["1000000000000000.00", "2.00"], 2), "y": dec(["1000000.000", "3.000"], 3)}
    )
    assert big.eval("round(x * y / 7, 2)") == [D("142857142857142857142.86"), D("0.86")]
    assert big.eval("round(x * y, 2)") == [Decimal(10**21), D("6.00")]


# --- strings and dates ------------------------------------------------------------------

STRINGS = World({"s": pa.array(["DN4010123456789", "ab-c", None, "Ärzte"])})


def test_string_functions() -> None:
    assert STRINGS.eval("length(s)") == [D(15), D(4), N, D(5)]
    assert STRINGS.eval("upper(s)") == ["DN4010123456789", "AB-C", N, "ÄRZTE"]
    assert STRINGS.eval("lower(s)") == ["dn4010123456789", "ab-c", N, "ärzte"]
    assert STRINGS.eval("substring(s, 0, 2)") == ["DN", "ab", N, "Är"]
    assert STRINGS.eval("substring(s, 2, 1)") == ["4", "-", N, "z"]
    assert STRINGS.eval("substring(s, 20, 3)") == ["", "", N, ""]
    assert STRINGS.eval("starts_with(s, 'DN')") == [T, F, N, F]
    assert STRINGS.eval("ends_with(s, '-c')") == [F, T, N, F]
    assert STRINGS.eval("contains(s, 'b-')") == [F, T, N, F]
    assert STRINGS.eval("contains(s, '.')") == [F, F, N, F]  # a literal part, not a regex
    # matches() is a whole-text match
    assert STRINGS.eval("matches(s, '[A-Z]{2}[1-5][0-9]{12}')") == [T, F, N, F]
    assert STRINGS.eval("matches(s, '[A-Z]{2}')") == [F, F, N, F]
    assert STRINGS.eval("matches(s, 'a|ab-c')") == [F, T, N, F]
    assert STRINGS.eval("coalesce(s, 'none')") == ["DN4010123456789", "ab-c", "none", "Ärzte"]
    assert STRINGS.eval("if(length(s) > 4, s, 'short')") == [
        "DN4010123456789",
        "short",
        "short",
        "Ärzte",
    ]
    assert STRINGS.eval("substring(s, 0, 2) == 'DN'") == [T, F, N, F]


def test_list_contains() -> None:
    w = World(
        {
            "dx": pa.array(["A01", "B02", None, "C03"]),
            "more": pa.array([["X", "A01"], [], ["Z"], None], pa.list_(pa.string())),
        }
    )
    assert w.eval("dx in more") == [T, F, N, N]
    assert w.eval("'Z' in more") == [F, F, T, N]
    assert w.eval("dx not in more") == [F, T, N, N]


TIMES = World(
    {
        "a": pa.array(
            [
                datetime(2025, 3, 10, 8, 0),
                datetime(2025, 3, 10, 23, 59, 59),
                datetime(1969, 12, 31, 23, 0),
                None,
            ],
            pa.timestamp("s"),
        ),
        "b": pa.array(
            [
                datetime(2025, 3, 12, 7, 30),
                datetime(2025, 3, 11, 0, 0, 58),
                datetime(1970, 1, 1, 0, 59, 59),
                datetime(2025, 1, 1),
            ],
            pa.timestamp("s"),
        ),
        "d": pa.array(
            [date(2025, 3, 1), date(2024, 2, 28), date(1969, 12, 1), date(2025, 1, 1)], pa.date32()
        ),
    }
)


def test_date_of() -> None:
    assert TIMES.eval("date_of(a)") == [date(2025, 3, 10), date(2025, 3, 10), date(1969, 12, 31), N]
    assert TIMES.eval("date_of(d)") == TIMES.eval("d")
    assert TIMES.eval("date_of(a) == 2025-03-10") == [T, T, F, N]


def test_days_between() -> None:
    assert TIMES.eval("days_between(d, date_of(a))") == [D(9), D(376), D(30), N]
    assert TIMES.eval("days_between(date_of(a), d)") == [D(-9), D(-376), D(-30), N]
    # timestamps count calendar days, not 24-hour periods
    assert TIMES.eval("days_between(a, b)") == [D(2), D(1), D(1), N]
    assert TIMES.eval("age_in_days(d, b)") == [D(11), D(377), D(31), D(0)]


def test_minutes_between() -> None:
    assert TIMES.eval("minutes_between(a, b)") == [D(2850), D(0), D(119), N]
    assert TIMES.eval("minutes_between(b, b)") == [D(0)] * 4


def test_least_greatest_coalesce_skip_nulls() -> None:
    w = World({"x": dec(["1.5", None, "3.0", None], 1), "y": pa.array([2, 1, None, None])})
    assert w.eval("least(x, y)") == [D("1.5"), D("1.0"), D("3.0"), N]
    assert w.eval("greatest(x, y)") == [D("2.0"), D("1.0"), D("3.0"), N]
    assert w.eval("coalesce(x, y)") == [D("1.5"), D("1.0"), D("3.0"), N]
    assert w.eval("coalesce(x, y, 0)") == [D("1.5"), D("1.0"), D("3.0"), D("0.0")]
    assert w.eval("abs(-x)") == [D("1.5"), N, D("3.0"), N]
    assert TIMES.eval("least(date_of(a), d)") == [
        date(2025, 3, 1),
        date(2024, 2, 28),
        date(1969, 12, 1),
        date(2025, 1, 1),
    ]


def test_if_and_case() -> None:
    w = World({"v": pa.array([3, 1, None], pa.int8())})
    assert w.eval("if(v in [3, 4], 1.5, 2)") == [D("1.5"), D("2.0"), D("2.0")]
    assert w.eval("if(v == 1, null, v)") == [D(3), N, N]


# --- aggregates over lines ----------------------------------------------------------------

AGG = World(
    {
        "claim_id": pa.array(["C0", "C1", "C2", "C3"]),
        "total": dec(["10.00", "0.00", "5.00", "1.00"], 2),
        "cap": pa.array([3, 0, 1, None], pa.int64()),
    },
    {
        "amount": dec(["1.25", "2.50", None, "4.00", "9.99", "7.00"], 2),
        "kind": pa.array(["drug", "service", "drug", "drug", "drug", None]),
        "when": pa.array(
            [
                date(2025, 1, 3),
                date(2025, 1, 1),
                date(2025, 1, 2),
                None,
                date(2025, 1, 9),
                date(2025, 1, 4),
            ],
            pa.date32(),
        ),
    },
    # claim 0: lines 0-2; claim 1: none; claim 2: line 3; claim 3: line 5; line 4 is an orphan
    [0, 0, 0, 2, -1, 3],
)


def test_count() -> None:
    assert AGG.eval("count(lines)") == [D(3), D(0), D(1), D(1)]
    assert AGG.eval("count(lines, kind == 'drug')") == [D(2), D(0), D(1), D(0)]
    # where keeps lines where it is true: the null kind of line 5 is not counted
    assert AGG.eval("count(lines, kind != 'drug')") == [D(1), D(0), D(0), D(0)]
    assert AGG.eval("count(lines, amount is null)") == [D(1), D(0), D(0), D(0)]


def test_sum_skips_nulls_and_empty_is_zero() -> None:
    assert AGG.eval("sum(lines, amount)") == [D("3.75"), D("0.00"), D("4.00"), D("7.00")]
    assert AGG.eval("sum(lines, amount, kind == 'drug')") == [
        D("1.25"),
        D("0.00"),
        D("4.00"),
        D("0.00"),
    ]
    assert AGG.eval("sum(lines, amount * 2)") == [D("7.50"), D("0.00"), D("8.00"), D("14.00")]
    assert AGG.eval("total == sum(lines, amount) + 6.25") == [T, F, F, F]


def test_min_max_empty_is_null() -> None:
    assert AGG.eval("min(lines, amount)") == [D("1.25"), N, D("4.00"), D("7.00")]
    assert AGG.eval("max(lines, amount)") == [D("2.50"), N, D("4.00"), D("7.00")]
    assert AGG.eval("max(lines, amount, kind == 'drug')") == [D("1.25"), N, D("4.00"), N]
    assert AGG.eval("min(lines, when)") == [date(2025, 1, 1), N, N, date(2025, 1, 4)]
    assert AGG.eval("max(lines, when)") == [date(2025, 1, 3), N, N, date(2025, 1, 4)]


def test_any_all() -> None:
    assert AGG.eval("any(lines, kind == 'service')") == [T, F, F, F]
    assert AGG.eval("any(lines, amount > 3)") == [F, F, T, T]
    # all() over no lines is true; a line whose condition is null is not "true"
    assert AGG.eval("all(lines, kind == 'drug')") == [F, T, T, F]
    assert AGG.eval("all(lines, amount > 1)") == [F, T, T, T]


def test_aggregate_with_claim_values_inside() -> None:
    # a claim value inside an aggregate is broadcast to the claim's lines
    assert AGG.eval("count(lines, amount * 4 < total)") == [D(1), D(0), D(0), D(0)]
    assert AGG.eval("sum(lines, amount, amount * 4 < total)") == [
        D("1.25"),
        D("0.00"),
        D("0.00"),
        D("0.00"),
    ]
    assert AGG.eval("max(lines, amount, cap is null)") == [N, N, N, D("7.00")]


def _claim_division_broadcasts() -> bool:
    try:
        AGG.eval("amount < total / 4", "line")
    except IndexError:
        return False
    return True


SCALAR_VALIDITY = pytest.mark.xfail(
    not _claim_division_broadcasts(),
    strict=True,
    raises=IndexError,
    reason="kernels/evaluate.py: a claim-level division by a constant has a 0-d validity "
    "(y != 0 of a scalar), and take() indexes it when broadcasting to lines",
)


@SCALAR_VALIDITY
def test_claim_division_broadcast_to_lines() -> None:
    assert AGG.eval("amount < total / 4", "line") == [T, F, N, F, N, F]


@SCALAR_VALIDITY
def test_claim_division_inside_an_aggregate() -> None:
    assert AGG.eval("count(lines, amount < total / 4)") == [D(1), D(0), D(0), D(0)]


def test_claim_expression_in_a_line_evaluator_is_broadcast() -> None:
    assert AGG.eval("total", "line") == [
        D("10.00"),
        D("10.00"),
        D("10.00"),
        D("5.00"),
        N,
        D("1.00"),
    ]
    assert AGG.eval("amount * 4 < total", "line") == [T, F, N, F, N, F]
    assert AGG.eval("amount * 10 < total", "line") == [F, F, N, F, N, F]
    assert AGG.eval("amount < total / 10", "line") == [F, F, N, F, N, F]  # a rescale: no crash
    assert AGG.eval("claim_id", "line") == ["C0", "C0", "C0", "C2", None, "C3"]
    assert AGG.eval("cap + 1", "line") == [D(4), D(4), D(4), D(2), N, N]
    # an orphan line has no claim: its claim values are null, even "is null" of them
    assert AGG.eval("cap is null", "line") == [F, F, F, F, N, T]


def test_hoisting_computes_claim_values_per_claim() -> None:
    c, ln = AGG.evaluators()
    e = AGG.typed("cap + 1", "line")
    v = ln.eval(e)
    assert np.asarray(v.data).shape == (6,)
    # the claim evaluator computed it over the 4 claims, the line evaluator took rows
    assert c.ctx.level_of(e) == "claim"
    assert "cap" in {getattr(k, "name", None) for k in c.cache}


def test_derived_values() -> None:
    w = World(
        {"v": pa.array([3, 1], pa.int8()), "total": dec(["10.00", "2.00"], 2)},
        {"amount": dec(["1.00", "2.00", "3.00"], 2)},
        [0, 0, 1],
        derived=[
            ("inpatient", "claim", "v in [3, 4]"),
            ("share", "line", "amount / total"),
            ("big", "claim", "sum(lines, amount) > 2"),
        ],
    )
    assert w.eval("inpatient") == [T, F]
    assert w.eval("share", "line") == [D("0.100000"), D("0.200000"), D("1.500000")]
    assert w.eval("inpatient and big") == [T, F]
    assert w.eval("inpatient", "line") == [T, T, F]


# --- lookups ------------------------------------------------------------------------------


def _ref(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("facility_id", pa.string()),
                ("item_code", pa.string()),
                ("max_unit_price", pa.decimal128(18, 3)),
                ("valid_from", pa.date32()),
                ("valid_to", pa.date32()),
            ]
        ),
    )


def _row(
    item: str, price: str, start: date | None, end: date | None = None, facility: str | None = None
) -> dict[str, Any]:
    return {
        "facility_id": facility,
        "item_code": item,
        "max_unit_price": Decimal(price),
        "valid_from": start,
        "valid_to": end,
    }


CATALOGUE = _ref(
    [
        _row("A", "10", date(2020, 1, 1)),
        _row("A", "15", date(2022, 1, 1), date(2022, 6, 30)),
        _row("A", "12", date(2021, 1, 1)),
        _row("A", "8", date(2021, 6, 1), facility="F1"),
        _row("B", "5", None, date(2020, 12, 31)),
        _row("B", "7", date(2023, 1, 1), facility="F2"),
    ]
)


def lookup_world(items: list[str | None], days: list[date | None], facilities: list[str]) -> World:
    return World(
        {"facility_id": pa.array(facilities)},
        {"item_code": pa.array(items), "day": pa.array(days, pa.date32())},
        [0] * len(items),
        reference={"drugs": CATALOGUE},
        lookups=[
            {
                "name": "catalogue",
                "level": "line",
                "tables": [("", "drugs")],
                "keys": {"item_code": "item_code"},
                "prefer": {"facility_id": "facility_id"},
                "as_of": "day",
            }
        ],
    )


def test_lookup_as_of_dates() -> None:
    days = [
        date(2019, 6, 1),
        date(2020, 1, 1),
        date(2020, 12, 31),
        date(2021, 1, 1),
        date(2022, 3, 1),
        date(2022, 6, 30),
        date(2022, 7, 1),
        None,
    ]
    w = lookup_world(["A"] * len(days), days, ["F9"])
    assert w.eval("catalogue.max_unit_price", "line") == [
        N,
        D("10.000"),
        D("10.000"),
        D("12.000"),
        D("15.000"),
        D("15.000"),
        D("12.000"),
        N,
    ]
    assert w.eval("exists(catalogue)", "line") == [F, T, T, T, T, T, T, F]
    assert w.eval("catalogue.valid_from", "line")[3] == date(2021, 1, 1)


def test_lookup_open_start_and_end() -> None:
    w = lookup_world(
        ["B", "B", "B"], [date(1900, 1, 1), date(2020, 12, 31), date(2021, 1, 1)], ["F9"]
    )
    assert w.eval("catalogue.max_unit_price", "line") == [D("5.000"), D("5.000"), N]


def test_lookup_prefers_facility_specific_rows() -> None:
    days = [date(2021, 5, 31), date(2021, 6, 1), date(2022, 3, 1), date(2030, 1, 1)]
    at_f1 = lookup_world(["A"] * 4, days, ["F1"])
    # F1's own row wins from its valid_from on, even over newer general rows
    assert at_f1.eval("catalogue.max_unit_price", "line") == [
        D("12.000"),
        D("8.000"),
        D("8.000"),
        D("8.000"),
    ]
    assert at_f1.eval("catalogue.facility_id", "line") == [None, "F1", "F1", "F1"]
    at_f2 = lookup_world(["A"] * 4, days, ["F2"])
    assert at_f2.eval("catalogue.max_unit_price", "line") == [
        D("12.000"),
        D("12.000"),
        D("15.000"),
        D("12.000"),
    ]


def test_lookup_specific_row_without_general_row() -> None:
    w = lookup_world(["B", "B"], [date(2023, 1, 1), date(2023, 1, 1)], ["F2"])
    assert w.eval("catalogue.max_unit_price", "line") == [D("7.000"), D("7.000")]
    other = lookup_world(["B"], [date(2023, 1, 1)], ["F1"])
    assert other.eval("exists(catalogue)", "line") == [F]


def test_lookup_no_match() -> None:
    w = lookup_world(["Z", None, "A"], [date(2021, 1, 1), date(2021, 1, 1), None], ["F1"])
    assert w.eval("catalogue.max_unit_price", "line") == [N, N, N]
    assert w.eval("exists(catalogue)", "line") == [F, F, F]
    assert w.truth("catalogue.max_unit_price < 100", "line") == [F, F, F]
    assert w.eval("not exists(catalogue)", "line") == [T, T, T]


def test_lookup_stacked_tables_with_discriminator() -> None:
    services = _ref([_row("A", "99", date(2020, 1, 1))])
    w = World(
        {"facility_id": pa.array(["F9"])},
        {"kind": pa.array(["drug", "service", "supply"]), "item_code": pa.array(["A", "A", "A"])},
        [0, 0, 0],
        reference={"drugs": CATALOGUE, "services": services},
        lookups=[
            {
                "name": "cat",
                "level": "line",
                "tables": [("drug", "drugs"), ("service", "services")],
                "discriminator": "kind",
                "keys": {"kind": "kind", "item_code": "item_code"},
                "as_of": "2021-02-01",
            }
        ],
    )
    assert w.eval("cat.max_unit_price", "line") == [D("12.000"), D("99.000"), N]
    assert w.eval("cat.kind", "line") == ["drug", "service", None]


def test_claim_lookup_without_keys() -> None:
    salary = pa.table(
        {
            "valid_from": pa.array([date(2023, 7, 1), date(2024, 7, 1)], pa.date32()),
            "valid_to": pa.nulls(2, pa.date32()),  # the loader always adds it
            "amount": dec(["1800000.00", "2340000.00"], 2),
        }
    )
    w = World(
        {"day": pa.array([date(2024, 1, 1), date(2024, 7, 1), date(2020, 1, 1)], pa.date32())},
        reference={"base_salary": salary},
        lookups=[{"name": "base", "tables": [("", "base_salary")], "keys": {}, "as_of": "day"}],
    )
    assert w.eval("base.amount") == [D("1800000.00"), D("2340000.00"), N]
    assert w.eval("base.amount * 15 / 100") == [D("270000.0000"), D("351000.0000"), N]
