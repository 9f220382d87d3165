"""What a rule author writes, validated at the edge with pydantic.

These models check the *shape* of a pack (required keys, allowed values, no typo'd
keys); the expressions inside are parsed and type-checked by the compiler.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CODE_PATTERN = r"^[A-Z][A-Z0-9_]*$"
ID_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
SETTABLE = ("quantity", "unit_price", "service_rate", "coverage_rate", "benefit_rate")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleTest(_Strict):
    given: dict[str, Any] = Field(default_factory=dict)
    lines: list[dict[str, Any]] | None = None
    expect: list[str]


class WindowModel(_Strict):
    """Look back over earlier rows that share a key (see lang/ir.py WindowSpec)."""

    partition: list[str] = Field(min_length=1)
    order: list[str] = Field(min_length=1)
    where: str | None = None
    day: str | None = None
    days: str | None = None
    measures: dict[str, str] = Field(min_length=1)

    @field_validator("days", mode="before")
    @classmethod
    def _number_is_an_expression(cls, v: object) -> object:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _day_and_days(self) -> WindowModel:
        if (self.day is None) != (self.days is None):
            raise ValueError("give both day: <date> and days: <number>, or neither")
        return self


class RuleModel(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str
    basis: str
    level: Literal["claim", "line"]
    severity: Literal["reject", "adjust", "flag"]
    code: str = Field(pattern=CODE_PATTERN)
    when: str
    message: str
    set: dict[str, str] | None = None
    window: WindowModel | None = None
    effective_from: date | None = None
    effective_to: date | None = None
    tests: list[RuleTest] = Field(default_factory=list)

    @field_validator("set")
    @classmethod
    def _settable(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for target in v or {}:
            if target not in SETTABLE:
                raise ValueError(f"'{target}' cannot be set; settable: {', '.join(SETTABLE)}")
        return v

    @model_validator(mode="after")
    def _adjust_sets(self) -> RuleModel:
        if self.severity == "adjust" and not self.set:
            raise ValueError("an adjust rule must say what it replaces (set: {field: value})")
        if self.severity != "adjust" and self.set:
            raise ValueError("only adjust rules may set values")
        if self.level == "claim" and self.set:
            raise ValueError("set: applies to line money fields; make this a line rule")
        return self


class DecisionTable(_Strict):
    inputs: list[str] = Field(min_length=1)
    rows: list[list[Any]] = Field(min_length=1)


class DeriveModel(_Strict):
    """A named value: a formula (``value``) or a first-hit decision table (``table``)."""

    derive: str = Field(pattern=ID_PATTERN)
    title: str
    basis: str = ""
    level: Literal["claim", "line"] = "claim"
    value: str | None = None
    table: DecisionTable | None = None

    @model_validator(mode="after")
    def _one_body(self) -> DeriveModel:
        if (self.value is None) == (self.table is None):
            raise ValueError("give either value: <expression> or table: {inputs, rows}")
        return self


class LookupModel(_Strict):
    table: str | dict[str, str]
    level: Literal["claim", "line"] = "claim"
    discriminator: str | None = None
    keys: dict[str, str] = Field(default_factory=dict)
    prefer: dict[str, str] = Field(default_factory=dict)
    as_of: str
    required: bool = False

    @model_validator(mode="after")
    def _discriminated(self) -> LookupModel:
        if isinstance(self.table, dict) and not self.discriminator:
            raise ValueError("several tables need a discriminator column name")
        return self


class PackModel(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: str
    title: str = ""
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    lookups: dict[str, LookupModel] = Field(default_factory=dict)
    files: list[str] | None = None  # rule files in order; default: every *.yaml but pack.yaml
