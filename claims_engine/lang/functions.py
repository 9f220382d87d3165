"""The scalar functions of the rule language: name, arguments, result type.

A function is a small record: how to type-check a call (here) and how to run it
(kernels/evaluate.py, keyed by the same name).  Literal arguments that must be
known at load time (a regex, a substring position) are checked here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from claims_engine.lang import ast, ir
from claims_engine.lang import types as t
from claims_engine.lang.errors import ExprError

if False:  # typing only: avoid an import cycle with the checker
    from claims_engine.lang.checker import Checker


@dataclass(frozen=True)
class Signature:
    name: str
    usage: str
    doc: str
    check: Callable[[Checker, ast.Call], ir.Expr]


def _args(checker: Checker, node: ast.Call, n: int | tuple[int, ...], usage: str) -> list[ir.Expr]:
    counts = (n,) if isinstance(n, int) else n
    if len(node.args) not in counts:
        raise ExprError(f"{node.name}() takes {usage}", node.pos.offset)
    return [checker.expr(a) for a in node.args]


def _want(e: ir.Expr, kinds: tuple[str, ...], node: ast.Node, fn: str, what: str) -> None:
    if e.type.kind not in (*kinds, "null"):
        raise ExprError(f"{fn}() needs {what}, this is a {e.type}", node.pos.offset)


def _literal(e: ir.Expr, node: ast.Node, fn: str, what: str) -> Any:
    if not isinstance(e, ir.Const | ir.Param):
        raise ExprError(f"{fn}() needs a literal {what} here", node.pos.offset)
    if e.type.is_num and e.type.scale and e.value is not None:  # a scaled integer: unscale
        return Decimal(int(e.value)).scaleb(-e.type.scale)
    return e.value


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _string_fn(result: t.Type) -> Callable[[Checker, ast.Call], ir.Expr]:
    def check(c: Checker, node: ast.Call) -> ir.Expr:
        (s,) = _args(c, node, 1, "one string")
        _want(s, ("str",), node.args[0], node.name, "a string")
        return ir.Call(node.name, (s,), (), result)

    return check


def _string_pattern(c: Checker, node: ast.Call) -> ir.Expr:
    from claims_engine.lang.checker import check_regex

    s, p = _args(c, node, 2, "a string and a literal text")
    _want(s, ("str",), node.args[0], node.name, "a string")
    pattern = _literal(p, node.args[1], node.name, "text")
    if not isinstance(pattern, str):
        raise ExprError(
            f"{node.name}() needs a text as its second argument", node.args[1].pos.offset
        )
    if node.name == "matches":
        check_regex(pattern, node.args[1].pos.offset)
    return ir.Call(node.name, (s,), (pattern,), t.BOOL)


def _substring(c: Checker, node: ast.Call) -> ir.Expr:
    s, start, length = _args(c, node, 3, "a string, a start (0-based) and a length")
    _want(s, ("str",), node.args[0], node.name, "a string")
    a = _literal(start, node.args[1], node.name, "start")
    b = _literal(length, node.args[2], node.name, "length")
    if not (_whole(a) and _whole(b) and a >= 0 and b >= 0):
        raise ExprError(
            "substring() needs whole numbers >= 0 for start and length", node.pos.offset
        )
    return ir.Call("substring", (s,), (a, b), t.STR)


def _right(c: Checker, node: ast.Call) -> ir.Expr:
    s, count = _args(c, node, 2, "a string and a literal count of characters")
    _want(s, ("str",), node.args[0], node.name, "a string")
    n = _literal(count, node.args[1], node.name, "count")
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ExprError("right() needs a whole number of characters >= 0", node.pos.offset)
    return ir.Call("right", (s,), (n,), t.STR)


def _date_of(c: Checker, node: ast.Call) -> ir.Expr:
    (x,) = _args(c, node, 1, "one timestamp")
    _want(x, ("timestamp", "date"), node.args[0], node.name, "a timestamp or a date")
    return x if x.type.kind == "date" else ir.Call("date_of", (x,), (), t.DATE)


def _date_part(c: Checker, node: ast.Call) -> ir.Expr:
    (x,) = _args(c, node, 1, "one date or timestamp")
    _want(x, ("date", "timestamp"), node.args[0], node.name, "a date or a timestamp")
    return ir.Call(node.name, (x,), (), t.INT)


def _between_dates(fn: str) -> Callable[[Checker, ast.Call], ir.Expr]:
    def check(c: Checker, node: ast.Call) -> ir.Expr:
        a, b = _args(c, node, 2, "two dates or timestamps (from, to)")
        for e, n in ((a, node.args[0]), (b, node.args[1])):
            _want(e, ("date", "timestamp"), n, fn, "a date or a timestamp")
        if fn == "minutes_between" and "date" in (a.type.kind, b.type.kind):
            raise ExprError("minutes_between() needs two timestamps", node.pos.offset)
        return ir.Call(fn, (a, b), (), t.INT)

    return check


def _date_literal(c: Checker, node: ast.Call) -> ir.Expr:
    from datetime import date

    (s,) = _args(c, node, 1, "a literal text 'YYYY-MM-DD'")
    text = _literal(s, node.args[0], "date", "text 'YYYY-MM-DD'")
    try:
        return ir.Const(date.fromisoformat(str(text)), t.DATE)
    except ValueError:
        raise ExprError(f"{text!r} is not a date YYYY-MM-DD", node.args[0].pos.offset) from None


def _unified(fn: str, counts: tuple[int, ...]) -> Callable[[Checker, ast.Call], ir.Expr]:
    def check(c: Checker, node: ast.Call) -> ir.Expr:
        args = _args(c, node, counts, "values of one type")
        ty = args[0].type
        for e, n in zip(args[1:], node.args[1:], strict=True):
            u = t.unify(ty, e.type)
            if u is None:
                raise ExprError(f"{fn}() mixes {ty} and {e.type}", n.pos.offset)
            ty = u
        if fn in ("least", "greatest") and not (ty.is_num or ty.is_temporal):
            raise ExprError(f"{fn}() needs numbers or dates, these are {ty}", node.pos.offset)
        return ir.Call(fn, tuple(args), (), ty)

    return check


def _if(c: Checker, node: ast.Call) -> ir.Expr:
    cond, a, b = _args(c, node, 3, "a condition, a value if true, a value otherwise")
    _want(cond, ("bool",), node.args[0], "if", "a condition")
    ty = t.unify(a.type, b.type)
    if ty is None:
        raise ExprError(f"if() branches differ: {a.type} and {b.type}", node.pos.offset)
    return ir.Case(((cond, a),), b, ty)


def _round(c: Checker, node: ast.Call) -> ir.Expr:
    x, d = _args(c, node, 2, "a number and a literal count of decimals")
    _want(x, ("num",), node.args[0], "round", "a number")
    digits = _literal(d, node.args[1], "round", "count of decimals")
    from claims_engine.lang.checker import MAX_SCALE

    if not _whole(digits) or not 0 <= digits <= MAX_SCALE:
        raise ExprError(
            f"round() needs a whole number of decimals from 0 to {MAX_SCALE}",
            node.args[1].pos.offset,
        )
    return ir.Call("round", (x,), (digits,), t.num(digits))


def _abs(c: Checker, node: ast.Call) -> ir.Expr:
    (x,) = _args(c, node, 1, "a number")
    _want(x, ("num",), node.args[0], "abs", "a number")
    return ir.Call("abs", (x,), (), x.type)


def _list_contains(c: Checker, node: ast.Call) -> ir.Expr:
    lst, s = _args(c, node, 2, "a list field and a string")
    _want(lst, ("list_str",), node.args[0], node.name, "a list of strings")
    _want(s, ("str",), node.args[1], node.name, "a string")
    return ir.Call("list_contains", (lst, s), (), t.BOOL)


def _sig(
    name: str, usage: str, doc: str, check: Callable[[Checker, ast.Call], ir.Expr]
) -> Signature:
    return Signature(name, usage, doc, check)


SIGNATURES: dict[str, Signature] = {
    s.name: s
    for s in (
        _sig("length", "length(text)", "number of characters", _string_fn(t.INT)),
        _sig("upper", "upper(text)", "upper case", _string_fn(t.STR)),
        _sig("lower", "lower(text)", "lower case", _string_fn(t.STR)),
        _sig("starts_with", "starts_with(text, 'prefix')", "text begins with", _string_pattern),
        _sig("ends_with", "ends_with(text, 'suffix')", "text ends with", _string_pattern),
        _sig("contains", "contains(text, 'part')", "text contains", _string_pattern),
        _sig("matches", "matches(text, 'regex')", "whole text matches a regex", _string_pattern),
        _sig("substring", "substring(text, start, length)", "0-based slice", _substring),
        _sig("right", "right(text, n)", "the last n characters", _right),
        _sig("year_of", "year_of(date)", "the calendar year (for yearly windows)", _date_part),
        _sig("month_of", "month_of(date)", "year * 100 + month (for monthly windows)", _date_part),
        _sig("date_of", "date_of(timestamp)", "the calendar day", _date_of),
        _sig(
            "days_between",
            "days_between(from, to)",
            "to - from in days",
            _between_dates("days_between"),
        ),
        _sig(
            "age_in_days",
            "age_in_days(birth_date, at)",
            "days from birth to at",
            _between_dates("days_between"),
        ),
        _sig(
            "minutes_between",
            "minutes_between(from, to)",
            "to - from in whole minutes",
            _between_dates("minutes_between"),
        ),
        _sig("date", "date('YYYY-MM-DD')", "a date literal", _date_literal),
        _sig(
            "coalesce", "coalesce(a, b, ...)", "first non-null", _unified("coalesce", (2, 3, 4, 5))
        ),
        _sig("least", "least(a, b)", "smaller of two", _unified("least", (2,))),
        _sig("greatest", "greatest(a, b)", "larger of two", _unified("greatest", (2,))),
        _sig("if", "if(condition, then, else)", "choose a value", _if),
        _sig("round", "round(number, decimals)", "round half-up", _round),
        _sig("abs", "abs(number)", "absolute value", _abs),
        _sig("list_contains", "list_contains(list, text)", "list holds the text", _list_contains),
    )
}
