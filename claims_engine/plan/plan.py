"""The executable plan: a pack compiled once, reusable for any number of batches.

Everything here is immutable and already type-checked; the engine only runs it.
``describe()`` renders the plan as stable text for golden-file tests and for
rule authors who want to see what the compiler made of their rules.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from claims_engine.lang import ir

# Stages: a rule runs once everything it reads is known.
STAGE_INPUT = 0  # reads only input and reference data: may reject
STAGE_ELIGIBLE = 1  # reads computed.eligible (after rejections and price adjustments)
STAGE_FUND = 2  # reads computed.fund_pays
INTAKE_CODES = frozenset({"MALFORMED", "ORPHAN_LINE"})  # the engine's, before any rule
STAGE_NAMES = {STAGE_INPUT: "input", STAGE_ELIGIBLE: "after-eligible", STAGE_FUND: "after-fund"}


@dataclass(frozen=True)
class MessagePart:
    text: str  # literal text, or the placeholder source when ``expr`` is set
    expr: ir.Expr | None = None


@dataclass(frozen=True)
class CompiledRule:
    id: str
    title: str
    basis: str
    level: str
    severity: str
    code: str
    when: ir.Expr
    message: tuple[MessagePart, ...]
    sets: tuple[tuple[str, ir.Expr], ...]
    stage: int
    effective_from: date | None
    effective_to: date | None
    source: str  # file:line of the rule, for explanations


@dataclass(frozen=True)
class Plan:
    pack_id: str
    version: str
    pack_hash: str
    params: tuple[tuple[str, Any], ...]
    lookups: dict[str, ir.Lookup]
    derived: dict[str, tuple[str, ir.Expr]]  # name -> (level, expression), in definition order
    derived_stage: dict[str, int]
    rules: tuple[CompiledRule, ...]
    cacheable: frozenset[ir.Expr]

    def fields(self) -> dict[str, frozenset[str]]:
        """The input columns the plan reads, per level ("claim", "line")."""
        roots: list[ir.Expr] = [e for _, e in self.derived.values()]
        for lk in self.lookups.values():
            roots += [lk.as_of, *(e for _, e in lk.keys), *(e for _, e in lk.prefer)]
        for r in self.rules:
            roots += [
                r.when,
                *(e for _, e in r.sets),
                *(p.expr for p in r.message if p.expr is not None),
            ]
        out: dict[str, set[str]] = {"claim": set(), "line": set()}
        for root in roots:
            for node in ir.walk(root):
                if isinstance(node, ir.Field):
                    out[node.level].add(node.name)
        return {level: frozenset(names) for level, names in out.items()}

    def select(self, codes: set[str] | frozenset[str]) -> Plan:
        """The plan with only the rules of these reason codes (intake always runs).

        For measuring a subset (the DuckDB baseline's rules) or a change's impact;
        an unknown code raises ValueError naming the closest known one.
        """
        known = {r.code for r in self.rules} | INTAKE_CODES
        for code in sorted(codes - known):
            close = difflib.get_close_matches(code, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"pack {self.pack_id} has no rule with code {code}{hint}")
        return replace(self, rules=tuple(r for r in self.rules if r.code in codes))

    def rules_at(self, stage: int) -> tuple[CompiledRule, ...]:
        return tuple(r for r in self.rules if r.stage == stage)

    def describe(self) -> str:
        from claims_engine.plan.render import render_plan

        return render_plan(self)
