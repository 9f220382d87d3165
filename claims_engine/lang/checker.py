"""Name resolution and type checking: untyped syntax tree -> typed IR.

Every rule expression passes through here when the pack is loaded, so a wrong
field, a wrong function or a type mismatch is reported before any batch is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

from claims_engine.lang import ast, ir
from claims_engine.lang import types as t
from claims_engine.lang.errors import ExprError, did_you_mean

MAX_SCALE = 18
AGGREGATES = ("count", "sum", "min", "max", "any", "all")


@dataclass(frozen=True)
class LookupSig:
    level: str  # claim | line: the level whose rows carry the lookup's keys
    fields: Mapping[str, t.Type]


@dataclass(frozen=True)
class Scope:
    """What names mean where an expression is written."""

    level: str  # claim | line
    claim_fields: Mapping[str, t.Type]
    line_fields: Mapping[str, t.Type]
    params: Mapping[str, tuple[Any, t.Type]] = field(default_factory=dict)
    lookups: Mapping[str, LookupSig] = field(default_factory=dict)
    derived: Mapping[str, tuple[str, t.Type]] = field(default_factory=dict)  # name -> level, type
    computed: Mapping[tuple[str, str], t.Type] = field(default_factory=dict)  # (level, name)
    window: Mapping[str, ir.Expr] = field(default_factory=dict)  # a window rule's measures

    def names(self) -> list[str]:
        out = list(self.claim_fields) + [f"params.{p}" for p in self.params] + list(self.derived)
        if self.level == "line":
            out += list(self.line_fields)
        for name, sig in self.lookups.items():
            out += [f"{name}.{f}" for f in sig.fields]
        out += [f"computed.{n}" for (_, n) in self.computed]
        out += [f"window.{n}" for n in self.window]
        return out


def const_from_python(value: Any, offset: int) -> ir.Const:
    """A literal as a typed constant; numbers become scaled integers."""
    if value is None:
        return ir.Const(None, t.NULL)
    if isinstance(value, bool):
        return ir.Const(value, t.BOOL)
    if isinstance(value, int):
        return ir.Const(value, t.INT)
    if isinstance(value, float):
        value = Decimal(repr(value))  # YAML floats: via their shortest text, never binary
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        scale = max(0, -exponent) if isinstance(exponent, int) else 0
        if scale > MAX_SCALE:
            raise ExprError(f"{value} has more than {MAX_SCALE} decimals", offset)
        return ir.Const(int(value.scaleb(scale)), t.num(scale))
    if isinstance(value, str):
        return ir.Const(value, t.STR)
    if isinstance(value, date):
        return ir.Const(value, t.DATE)
    raise ExprError(f"unsupported literal {value!r}", offset)


def _bool_null(e: ir.Expr) -> ir.Expr:
    """A literal null where a condition belongs is an unknown condition (typed bool)."""
    return ir.Const(None, t.BOOL) if isinstance(e, ir.Const) and e.type.kind == "null" else e


def power_of_ten(e: ir.Expr) -> int | None:
    """k when ``e`` is the integer literal 10**k (division by it is a pure rescale)."""
    if isinstance(e, ir.Const) and e.type == t.INT and isinstance(e.value, int) and e.value > 0:
        text = str(e.value)
        if text == "1" + "0" * (len(text) - 1):
            return len(text) - 1
    return None


def rescale_const(c: ir.Const, scale: int) -> int:
    assert c.type.is_num and scale >= c.type.scale
    return int(c.value) * int(10 ** (scale - c.type.scale))


class Checker:
    def __init__(self, scope: Scope, in_aggregate: bool = False) -> None:
        self.scope = scope
        self.in_aggregate = in_aggregate

    def check(self, node: ast.Node, expect: t.Type | None = None) -> ir.Expr:
        e = self.expr(node)
        if expect is not None and expect.kind != e.type.kind and e.type.kind != "null":
            raise ExprError(f"expected a {expect} expression, this is a {e.type}", node.pos.offset)
        return e

    # --- dispatch -----------------------------------------------------------
    def expr(self, node: ast.Node) -> ir.Expr:
        if isinstance(node, ast.Literal):
            return const_from_python(node.value, node.pos.offset)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Unary):
            return self.unary(node)
        if isinstance(node, ast.Binary):
            return self.binary(node)
        if isinstance(node, ast.In):
            return self.in_(node)
        if isinstance(node, ast.Between):
            return self.between(node)
        if isinstance(node, ast.IsNull):
            inner: ir.Expr = ir.IsNull(self.expr(node.operand))
            return ir.Not(inner) if node.negated else inner
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.ListLit):
            raise ExprError("a list is only allowed after 'in'", node.pos.offset)
        raise ExprError(f"unsupported expression {type(node).__name__}", node.pos.offset)

    # --- names --------------------------------------------------------------
    def name(self, node: ast.Name) -> ir.Expr:
        s = self.scope
        parts, off = node.parts, node.pos.offset
        head = parts[0]
        if node.dotted in s.derived:
            level, ty = s.derived[node.dotted]
            self._level_ok(level, node.dotted, off)
            return ir.Derived(node.dotted, ty)
        if len(parts) == 2:
            tail = parts[1]
            if head == "params":
                if tail not in s.params:
                    hint = did_you_mean(tail, s.params)
                    raise ExprError(f"unknown parameter 'params.{tail}'.{hint}", off)
                value, ty = s.params[tail]
                return ir.Param(tail, value, ty)
            if head in ("claim", "line"):
                return self._field(head, tail, off)
            if head == "window":
                if tail not in s.window:
                    hint = did_you_mean(tail, s.window)
                    raise ExprError(f"unknown window measure 'window.{tail}'.{hint}", off)
                return s.window[tail]
            if head == "computed":
                for level in (s.level, "claim") if s.level == "line" else ("claim",):
                    if (level, tail) in s.computed:
                        return ir.Computed(level, tail, s.computed[(level, tail)])
                known = [n for (_, n) in s.computed]
                raise ExprError(f"unknown value 'computed.{tail}'.{did_you_mean(tail, known)}", off)
            if head in s.lookups:
                sig = s.lookups[head]
                self._level_ok(sig.level, head, off)
                if tail not in sig.fields:
                    hint = did_you_mean(tail, sig.fields)
                    raise ExprError(f"lookup '{head}' has no column '{tail}'.{hint}", off)
                return ir.LookupField(head, tail, sig.fields[tail])
        if len(parts) == 1:
            if s.level == "line" and head in s.line_fields:
                return ir.Field("line", head, s.line_fields[head])
            if head in s.claim_fields:
                return ir.Field("claim", head, s.claim_fields[head])
            if head in s.line_fields:
                raise ExprError(
                    f"'{head}' is a line field; in a claim rule use an aggregate such as "
                    f"any(lines, ...) or sum(lines, {head})",
                    off,
                )
        hint = did_you_mean(node.dotted, s.names())
        raise ExprError(f"unknown name '{node.dotted}'.{hint}", off)

    def _field(self, level: str, name: str, off: int) -> ir.Expr:
        fields = self.scope.claim_fields if level == "claim" else self.scope.line_fields
        if level == "line" and self.scope.level != "line":
            raise ExprError("line fields are only visible in line rules and aggregates", off)
        if name not in fields:
            raise ExprError(f"unknown {level} field '{name}'.{did_you_mean(name, fields)}", off)
        return ir.Field(level, name, fields[name])

    def _level_ok(self, level: str, what: str, off: int) -> None:
        if level == "line" and self.scope.level != "line":
            raise ExprError(
                f"'{what}' is per line; in a claim rule use it inside an aggregate", off
            )

    # --- operators ----------------------------------------------------------
    def unary(self, node: ast.Unary) -> ir.Expr:
        operand = self.expr(node.operand)
        if node.op == "not":
            self._want(operand, "bool", "'not'", node.operand)
            return ir.Not(_bool_null(operand))
        self._want(operand, "num", "'-'", node.operand)
        return ir.Neg(operand)

    def binary(self, node: ast.Binary) -> ir.Expr:
        left, right = self.expr(node.left), self.expr(node.right)
        op, off = node.op, node.pos.offset
        if op in ("and", "or"):
            self._want(left, "bool", f"'{op}'", node.left)
            self._want(right, "bool", f"'{op}'", node.right)
            items: list[ir.Expr] = []
            for side in (_bool_null(left), _bool_null(right)):  # flatten a and b and c
                items += side.items if isinstance(side, ir.Logic) and side.op == op else [side]
            return ir.Logic(op, tuple(items))
        if op in ("+", "-", "*", "/"):
            self._want(left, "num", f"'{op}'", node.left)
            self._want(right, "num", f"'{op}'", node.right)
            sa, sb = left.type.scale, right.type.scale
            scale = {"+": max(sa, sb), "-": max(sa, sb), "*": sa + sb, "/": max(sa, sb) + 4}[op]
            shift = power_of_ten(right)
            if op == "/" and shift is not None:
                scale = sa + shift  # x / 100 is exact: same integers, two more decimals
            if scale > MAX_SCALE:
                raise ExprError(
                    f"the result would have {scale} decimals (at most {MAX_SCALE})", off
                )
            return ir.Arith(op, left, right, t.num(scale))
        return self.compare(op, left, right, node)

    def compare(self, op: str, left: ir.Expr, right: ir.Expr, node: ast.Binary) -> ir.Expr:
        if not t.comparable(left.type, right.type):
            hint = ""
            if {left.type.kind, right.type.kind} == {"date", "timestamp"}:
                hint = " Use date_of(...) to compare a timestamp with a date."
            raise ExprError(f"cannot compare {left.type} with {right.type}.{hint}", node.pos.offset)
        if op not in ("==", "!=") and left.type.kind in ("bool", "list_str"):
            raise ExprError(f"'{op}' does not order {left.type} values", node.pos.offset)
        return ir.Compare(op, left, right)

    def in_(self, node: ast.In) -> ir.Expr:
        operand = self.expr(node.operand)
        if not isinstance(node.options, ast.ListLit):
            options = self.expr(node.options)
            if options.type.kind != "list_str" or operand.type.kind != "str":
                raise ExprError("'in' needs a list such as [3, 4] or a list field", node.pos.offset)
            e: ir.Expr = ir.Call("list_contains", (options, operand), (), t.BOOL)
            return ir.Not(e) if node.negated else e
        consts: list[ir.Const] = []
        for item in node.options.items:
            c = self.expr(item)
            if not isinstance(c, ir.Const):
                raise ExprError("the options of 'in' must be literal values", item.pos.offset)
            if not t.comparable(operand.type, c.type):
                raise ExprError(f"cannot compare {operand.type} with {c.type}", item.pos.offset)
            consts.append(c)
        values: tuple[Any, ...]
        scale = 0
        if operand.type.is_num:
            # compare at the finest scale among the operand and the options
            scale = max([operand.type.scale] + [c.type.scale for c in consts if c.type.is_num])
            values = tuple(rescale_const(c, scale) for c in consts if c.value is not None)
        else:
            values = tuple(c.value for c in consts if c.value is not None)
        e = ir.InSet(operand, values, scale)
        return ir.Not(e) if node.negated else e

    def between(self, node: ast.Between) -> ir.Expr:
        x, low, high = self.expr(node.operand), self.expr(node.low), self.expr(node.high)
        fake = ast.Binary(node.pos, "<=", node.low, node.operand)
        e: ir.Expr = ir.Logic(
            "and", (self.compare(">=", x, low, fake), self.compare("<=", x, high, fake))
        )
        return ir.Not(e) if node.negated else e

    def _want(self, e: ir.Expr, kind: str, what: str, node: ast.Node) -> None:
        if e.type.kind not in (kind, "null"):
            wanted = {"num": "a number", "bool": "a condition (true/false)"}[kind]
            raise ExprError(f"{what} needs {wanted}, this is a {e.type}", node.pos.offset)

    # --- calls --------------------------------------------------------------
    def call(self, node: ast.Call) -> ir.Expr:
        from claims_engine.lang import functions  # the function table lives beside

        if node.name in AGGREGATES:
            return self.aggregate(node)
        if node.name == "exists":
            if len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
                raise ExprError(
                    "exists() takes the name of a lookup, e.g. exists(catalogue)", node.pos.offset
                )
            name = node.args[0].dotted
            if name not in self.scope.lookups:
                hint = did_you_mean(name, self.scope.lookups)
                raise ExprError(f"unknown lookup '{name}'.{hint}", node.args[0].pos.offset)
            self._level_ok(self.scope.lookups[name].level, name, node.pos.offset)
            return ir.LookupExists(name)
        sig = functions.SIGNATURES.get(node.name)
        if sig is None:
            names = list(functions.SIGNATURES) + list(AGGREGATES) + ["exists"]
            raise ExprError(
                f"unknown function '{node.name}'.{did_you_mean(node.name, names)}", node.pos.offset
            )
        return sig.check(self, node)

    def aggregate(self, node: ast.Call) -> ir.Expr:
        fn, args, off = node.name, node.args, node.pos.offset
        usage = {
            "count": "count(lines) or count(lines, <condition>)",
            "sum": "sum(lines, <number>) or sum(lines, <number>, <condition>)",
            "min": "min(lines, <value>[, <condition>])",
            "max": "max(lines, <value>[, <condition>])",
            "any": "any(lines, <condition>)",
            "all": "all(lines, <condition>)",
        }[fn]
        if not args or not (isinstance(args[0], ast.Name) and args[0].parts == ("lines",)):
            raise ExprError(f"{fn}() aggregates a claim's lines: write {usage}", off)
        if self.in_aggregate:
            raise ExprError(f"{fn}(lines, ...) cannot be nested in another aggregate", off)
        inner = Checker(replace(self.scope, level="line"), in_aggregate=True)
        rest = args[1:]
        value: ir.Expr | None = None
        where: ir.Expr | None = None
        if fn == "count":
            if len(rest) > 1:
                raise ExprError(f"write {usage}", off)
            where = inner.check(rest[0], t.BOOL) if rest else None
            return ir.Aggregate(fn, None, where, t.INT)
        if fn in ("any", "all"):
            if len(rest) != 1:
                raise ExprError(f"write {usage}", off)
            return ir.Aggregate(fn, None, inner.check(rest[0], t.BOOL), t.BOOL)
        if len(rest) not in (1, 2):
            raise ExprError(f"write {usage}", off)
        value = inner.expr(rest[0])
        if fn == "sum" and not value.type.is_num:
            raise ExprError(f"sum() needs a number, this is a {value.type}", rest[0].pos.offset)
        if fn in ("min", "max") and not (value.type.is_num or value.type.is_temporal):
            raise ExprError(
                f"{fn}() needs a number or a date, this is a {value.type}", rest[0].pos.offset
            )
        if len(rest) == 2:
            where = inner.check(rest[1], t.BOOL)
        return ir.Aggregate(fn, value, where, value.type)


def check(node: ast.Node, scope: Scope, expect: t.Type | None = None) -> ir.Expr:
    return Checker(scope).check(node, expect)


def check_regex(pattern: str, offset: int) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ExprError(f"invalid regular expression {pattern!r}: {exc}", offset) from None
