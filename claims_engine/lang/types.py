"""The value types of the rule language.

Numbers are exact decimals with a fixed scale known at load time: an integer is a
number of scale 0, money has scale 2, quantities and unit prices scale 3.  The
scale lives in the type, so the runtime stores plain scaled integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Type:
    kind: str  # bool | num | str | date | timestamp | list_str | null
    scale: int = 0  # digits after the decimal point, for num

    def __str__(self) -> str:
        if self.kind == "num":
            return "integer" if self.scale == 0 else f"decimal({self.scale})"
        return {"list_str": "list of strings", "str": "string"}.get(self.kind, self.kind)

    @property
    def is_num(self) -> bool:
        return self.kind == "num"

    @property
    def is_temporal(self) -> bool:
        return self.kind in ("date", "timestamp")


BOOL = Type("bool")
INT = Type("num", 0)
STR = Type("str")
DATE = Type("date")
TIMESTAMP = Type("timestamp")
LIST_STR = Type("list_str")
NULL = Type("null")


def num(scale: int) -> Type:
    return Type("num", scale)


def from_arrow(t: pa.DataType) -> Type:
    """The language type of an Arrow column type."""
    if pa.types.is_boolean(t):
        return BOOL
    if pa.types.is_integer(t):
        return INT
    if pa.types.is_decimal(t):
        return num(t.scale)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return STR
    if pa.types.is_date(t):
        return DATE
    if pa.types.is_timestamp(t):
        return TIMESTAMP
    if pa.types.is_list(t) and pa.types.is_string(t.value_type):
        return LIST_STR
    raise TypeError(f"no rule-language type for Arrow type {t}")


def comparable(a: Type, b: Type) -> bool:
    """Whether ``a`` and ``b`` may be compared (null compares with anything)."""
    if a.kind == "null" or b.kind == "null":
        return True
    return a.kind == b.kind and a.kind != "list_str"


def unify(a: Type, b: Type) -> Type | None:
    """The common type of two branches (if/coalesce/case), or None if they differ."""
    if a.kind == "null":
        return b
    if b.kind == "null":
        return a
    if a.kind == b.kind == "num":
        return num(max(a.scale, b.scale))
    return a if a == b else None
