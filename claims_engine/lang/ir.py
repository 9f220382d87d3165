"""Typed, immutable expression nodes: what the checker produces and the kernels run.

Every node knows its type; a node is built only from operands of the right type
(the checker guarantees it), so nothing type-related can fail mid-batch.  Nodes are
frozen and hashable: the evaluator caches results by node, so a subexpression used
by many rules (``date_of(admitted_at)``) is computed once per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from claims_engine.lang.types import BOOL, Type


@dataclass(frozen=True)
class Expr:
    @property
    def type(self) -> Type:  # overridden by a field in each subclass
        raise NotImplementedError

    def children(self) -> tuple[Expr, ...]:
        return ()


@dataclass(frozen=True)
class Const(Expr):
    value: Any  # bool | int (scaled for num) | str | date | None
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_


@dataclass(frozen=True)
class Param(Expr):
    """A pack parameter: a constant, kept by name so explanations can show it."""

    name: str
    value: Any  # scaled int for num, as Const
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_


@dataclass(frozen=True)
class Field(Expr):
    """A column of the claims (level='claim') or lines (level='line') table."""

    level: str
    name: str
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_


@dataclass(frozen=True)
class LookupField(Expr):
    """A column of the reference row a lookup found (null when none was found)."""

    lookup: str
    name: str
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_


@dataclass(frozen=True)
class LookupExists(Expr):
    lookup: str

    @property
    def type(self) -> Type:
        return BOOL


@dataclass(frozen=True)
class Derived(Expr):
    """A value the pack defines once by name (a decision table, a named formula)."""

    name: str
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_


@dataclass(frozen=True)
class Computed(Expr):
    """A value the engine computes after line rejections: ``computed.eligible`` etc."""

    level: str
    name: str
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_


@dataclass(frozen=True)
class Arith(Expr):
    op: str  # + - * /
    left: Expr
    right: Expr
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Neg(Expr):
    operand: Expr

    @property
    def type(self) -> Type:
        return self.operand.type

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Compare(Expr):
    op: str  # == != < <= > >=
    left: Expr
    right: Expr

    @property
    def type(self) -> Type:
        return BOOL

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Logic(Expr):
    """Kleene and/or: false and null = false, true or null = true, else null."""

    op: str  # and | or
    items: tuple[Expr, ...]

    @property
    def type(self) -> Type:
        return BOOL

    def children(self) -> tuple[Expr, ...]:
        return self.items


@dataclass(frozen=True)
class Not(Expr):
    operand: Expr

    @property
    def type(self) -> Type:
        return BOOL

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class IsNull(Expr):
    operand: Expr

    @property
    def type(self) -> Type:
        return BOOL

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class InSet(Expr):
    """``x in [a, b]`` with literal options; null x gives null."""

    operand: Expr
    values: tuple[Any, ...]
    scale: int = 0  # numbers: the options are scaled integers at this scale

    @property
    def type(self) -> Type:
        return BOOL

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Call(Expr):
    """A scalar function (see lang/functions.py); ``consts`` are literal arguments."""

    fn: str
    args: tuple[Expr, ...]
    consts: tuple[Any, ...]
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_

    def children(self) -> tuple[Expr, ...]:
        return self.args


@dataclass(frozen=True)
class Aggregate(Expr):
    """count/sum/min/max/any/all over a claim's lines; ``where`` filters lines.

    Null handling: ``where`` keeps only lines where it is true (as SQL WHERE); sum,
    min and max skip nulls; any = count(where) > 0; all = count(where) == count.
    """

    fn: str
    value: Expr | None
    where: Expr | None
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_

    def children(self) -> tuple[Expr, ...]:
        return tuple(e for e in (self.value, self.where) if e is not None)


@dataclass(frozen=True)
class Case(Expr):
    """First-hit: the value of the first condition that is true, else ``default``."""

    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_

    def children(self) -> tuple[Expr, ...]:
        out: list[Expr] = []
        for cond, value in self.whens:
            out += [cond, value]
        return (*out, self.default)


def walk(e: Expr) -> list[Expr]:
    """Every node of the tree, parents first."""
    out = [e]
    for c in e.children():
        out += walk(c)
    return out


@dataclass(frozen=True)
class Lookup:
    """A declared lookup into reference data, type-checked like any expression.

    ``tables`` is one table, or several stacked with a ``discriminator`` column
    holding each one's label (the three catalogues stacked by line kind).
    """

    name: str
    level: str
    tables: tuple[tuple[str, str], ...]  # (label, reference table); label "" for one table
    discriminator: str | None
    keys: tuple[tuple[str, Expr], ...]  # reference column == row expression
    prefer: tuple[tuple[str, Expr], ...]  # rows with these columns set and equal win
    as_of: Expr
    required: bool
    fields: tuple[tuple[str, Type], ...]


@dataclass(frozen=True)
class WindowSpec:
    """Rows sharing a key, in an order: what a window measure looks back over.

    ``partition``: the key (card holder, item, ...); ``order``: defines "earlier"
    (rows with equal order values are not earlier than each other); ``where``:
    which rows take part (only they are counted, and only they get a measure:
    elsewhere it is null); ``day``/``days``: only earlier rows whose day lies in
    the ``days`` days ending on this row's day (``day`` must be the first order
    key).  History rows, when present, are all earlier than the batch.
    """

    level: str
    partition: tuple[Expr, ...]
    order: tuple[Expr, ...]
    where: Expr | None
    day: Expr | None
    days: Expr | None


@dataclass(frozen=True)
class Window(Expr):
    """One measure over the earlier rows of a window: count/sum/min/max/first/last."""

    spec: WindowSpec
    fn: str
    value: Expr | None
    cond: Expr | None
    type_: Type

    @property
    def type(self) -> Type:
        return self.type_

    def children(self) -> tuple[Expr, ...]:
        s = self.spec
        parts = [*s.partition, *s.order, s.where, s.day, s.days, self.value, self.cond]
        return tuple(p for p in parts if p is not None)
