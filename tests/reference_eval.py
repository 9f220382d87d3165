"""A slow, obviously-correct reference for the engine: one row at a time, plain Python.

Nothing here uses numpy or pyarrow compute: numbers are ``Decimal`` (divisions go
through ``Fraction``, so no rounding happens anywhere but where the language says),
dates are ``date``, timestamps naive ``datetime``, strings ``str``, null is ``None``.

``ReferenceEvaluator.eval`` evaluates any typed IR expression (``claims_engine.lang.ir``)
for one claim or one line, with the semantics documented in
``claims_engine/kernels/evaluate.py`` and ``claims_engine/kernels/lookup.py``:

* comparisons and arithmetic with a null operand are null; ``and``/``or`` are Kleene;
* ``least``/``greatest``/``coalesce`` skip nulls;
* ``x / 0`` is null; a division's result has the scale of its type, rounded half-up
  (away from zero), ``x / 10**k`` is exact; ``round`` is half-up away from zero;
* aggregates: ``where`` keeps lines where it is true; sum of nothing is 0, min/max of
  nothing null; ``any`` = count > 0; ``all`` = count(where) == count;
* lookups: among reference rows whose keys equal the row's values and valid on the
  ``as_of`` date (valid_from <= date <= valid_to, null ends open), rows whose
  ``prefer`` columns equal the row's values win over rows where they are null; then
  the latest valid_from wins (ties: the later row of the table).
* windows (``ir.Window``): over the batch's rows of the window's level with the same
  full (non-null) partition key and a smaller order tuple (nulls first, equal tuples
  are not earlier), where ``where`` holds (and, with ``day``/``days``, whose day lies in
  the ``days`` days ending on this row's day): count, sum, min, max, first, last.

``reference_adjudicate`` reproduces the engine's decisions (contract sections 4-6) for
well-formed batches: input rules, rejections, adjust sets, eligible, after-eligible
rules, fund_pays, after-fund rules.  ``contract_benefit_rate`` is section 6 written out
by hand, independent of the pack, to check the pack's ``benefit.rate`` against.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from decimal import Context as DecimalContext
from fractions import Fraction
from typing import Any

from claims_engine.lang import ir
from claims_engine.lang import types as t

# Wide enough that + - * on any value the contract allows are exact.
EXACT = DecimalContext(prec=100, rounding=ROUND_HALF_UP)
ZERO = Decimal(0)
HUNDRED = Decimal(100)
MONEY_INPUTS = ("quantity", "unit_price", "service_rate", "coverage_rate", "benefit_rate")

Row = dict[str, Any]
LineKey = tuple[str, str, int]


# --- numbers ------------------------------------------------------------------


def scaled(value: int, scale: int) -> Decimal:
    """The number a scaled integer stands for (1250 at scale 2 is 12.50)."""
    return EXACT.scaleb(Decimal(int(value)), -scale)


def round_half_up(x: Fraction | Decimal | int, scale: int) -> Decimal:
    """``x`` rounded to ``scale`` decimals, ties away from zero, computed exactly."""
    q = Fraction(x) * 10**scale
    sign = -1 if q < 0 else 1
    a = abs(q)
    whole = a.numerator // a.denominator
    if (a - whole) * 2 >= 1:
        whole += 1
    return scaled(sign * whole, scale)


def round2(x: Decimal) -> Decimal:
    return round_half_up(x, 2)


def line_key(line: Mapping[str, Any]) -> LineKey:
    return (line["claim_id"], line["kind"], line["line_no"])


def to_value(v: Any, ty: t.Type) -> Any:
    """A value read from a table (Python via Arrow's to_pylist) in the evaluator's form."""
    if v is None:
        return None
    if ty.kind == "num":
        return v if isinstance(v, Decimal) else Decimal(int(v))
    if ty.kind == "date" and isinstance(v, datetime):
        return v.date()
    if ty.kind == "list_str":
        return list(v)
    return v


def _as_date(v: date | datetime) -> date:
    return v.date() if isinstance(v, datetime) else v


# --- evaluation scope -----------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Where an expression is evaluated: a claim, its lines, and maybe one of them."""

    claim: Row
    lines: Sequence[Row]
    line: Row | None = None

    def at_claim(self) -> Scope:
        return Scope(self.claim, self.lines) if self.line is not None else self

    def at_line(self, line: Row) -> Scope:
        return Scope(self.claim, self.lines, line)


@dataclass(frozen=True)
class _WindowRow:
    index: int  # position in the batch's claims or lines
    scope: Scope
    key: tuple[Any, ...]
    keyed: bool  # a full partition key (and a day, when the window has one)
    order: tuple[tuple[Any, ...], ...]
    counts: bool  # the window's where holds
    day: date | None
    days: Decimal | None


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    raise ValueError(op)


class ReferenceEvaluator:
    """Evaluate typed IR on one row, with the plan's lookups and named values."""

    def __init__(
        self,
        reference: Mapping[str, Any] | None = None,
        lookups: Mapping[str, ir.Lookup] | None = None,
        derived: Mapping[str, tuple[str, ir.Expr]] | None = None,
    ) -> None:
        self.reference = {
            name: (tbl.to_pylist() if hasattr(tbl, "to_pylist") else list(tbl))
            for name, tbl in (reference or {}).items()
        }
        self.lookups = dict(lookups or {})
        self.derived = dict(derived or {})
        # computed.<name> per claim_id (level claim) or per line key (level line)
        self.computed: dict[tuple[str, str], dict[Any, Any]] = {}
        self._stacked: dict[str, list[tuple[int, Row]]] = {}
        self._index: dict[str, dict[tuple[Any, ...], list[tuple[int, Row]]]] = {}
        # the whole batch, for window measures (set_batch)
        self.claims: list[Row] = []
        self.lines: list[Row] = []
        self._lines_of: dict[str, list[Row]] = {}
        self._windows: dict[ir.WindowSpec, list[_WindowRow]] = {}

    def set_batch(self, claims: Sequence[Row], lines: Sequence[Row]) -> None:
        """The batch's rows: what window measures look back over (all of them count)."""
        self.claims, self.lines = list(claims), list(lines)
        self._lines_of = {c["claim_id"]: [] for c in self.claims}
        for ln in self.lines:
            self._lines_of.setdefault(ln["claim_id"], []).append(ln)
        self._windows = {}

    # --- entry points -------------------------------------------------------------
    def eval_claim(self, e: ir.Expr, claim: Row, lines: Sequence[Row]) -> Any:
        return self.eval(e, Scope(claim, lines))

    def eval_line(self, e: ir.Expr, claim: Row, lines: Sequence[Row], line: Row) -> Any:
        return self.eval(e, Scope(claim, lines, line))

    def truth(self, e: ir.Expr, scope: Scope) -> bool:
        return self.eval(e, scope) is True

    def eval(self, e: ir.Expr, scope: Scope) -> Any:
        if isinstance(e, ir.Const | ir.Param):
            return self._const(e.value, e.type)
        if isinstance(e, ir.Field):
            row = scope.claim if e.level == "claim" else scope.line
            if row is None:
                raise ValueError(f"line field {e.name} outside a line")
            return to_value(row[e.name], e.type)
        if isinstance(e, ir.Computed):
            if e.level == "claim":
                key: Any = scope.claim["claim_id"]
            else:
                assert scope.line is not None
                key = line_key(scope.line)
            values = self.computed.get((e.level, e.name))
            if values is None:
                raise RuntimeError(f"computed.{e.name} not available yet")
            return values[key]
        if isinstance(e, ir.Derived):
            level, expr = self.derived[e.name]
            return self.eval(expr, scope.at_claim() if level == "claim" else scope)
        if isinstance(e, ir.LookupExists):
            return self.lookup_row(e.lookup, scope) is not None
        if isinstance(e, ir.LookupField):
            found = self.lookup_row(e.lookup, scope)
            return None if found is None else to_value(found.get(e.name), e.type)
        if isinstance(e, ir.Arith):
            return self._arith(e, scope)
        if isinstance(e, ir.Neg):
            v = self.eval(e.operand, scope)
            return None if v is None else -v
        if isinstance(e, ir.Compare):
            a, b = self.eval(e.left, scope), self.eval(e.right, scope)
            if a is None or b is None:
                return None
            return _compare(e.op, a, b)
        if isinstance(e, ir.Logic):
            vals = [self.eval(i, scope) for i in e.items]
            if e.op == "and":
                if any(v is False for v in vals):
                    return False
                return None if any(v is None for v in vals) else True
            if any(v is True for v in vals):
                return True
            return None if any(v is None for v in vals) else False
        if isinstance(e, ir.Not):
            v = self.eval(e.operand, scope)
            return None if v is None else not v
        if isinstance(e, ir.IsNull):
            return self.eval(e.operand, scope) is None
        if isinstance(e, ir.InSet):
            v = self.eval(e.operand, scope)
            if v is None:
                return None
            options = (
                [scaled(x, e.scale) for x in e.values] if e.operand.type.is_num else list(e.values)
            )
            return any(v == o for o in options)
        if isinstance(e, ir.Case):
            for cond, value in e.whens:
                if self.truth(cond, scope):
                    return self.eval(value, scope)
            return self.eval(e.default, scope)
        if isinstance(e, ir.Aggregate):
            return self._aggregate(e, scope.at_claim())
        if isinstance(e, ir.Call):
            return self._call(e, scope)
        if isinstance(e, ir.Window):
            return self._window(e, scope)
        raise NotImplementedError(type(e).__name__)

    # --- pieces ---------------------------------------------------------------------
    @staticmethod
    def _const(value: Any, ty: t.Type) -> Any:
        if value is None or ty.kind == "null":
            return None
        if ty.kind == "num":
            return scaled(value, ty.scale)
        return value

    def _arith(self, e: ir.Arith, scope: Scope) -> Decimal | None:
        a, b = self.eval(e.left, scope), self.eval(e.right, scope)
        if a is None or b is None or e.type.kind == "null":
            return None
        if e.op == "+":
            return EXACT.add(a, b)
        if e.op == "-":
            return EXACT.subtract(a, b)
        if e.op == "*":
            return EXACT.multiply(a, b)
        if b == 0:
            return None
        return round_half_up(Fraction(a) / Fraction(b), e.type.scale)

    def _aggregate(self, e: ir.Aggregate, scope: Scope) -> Any:
        chosen = [
            ln for ln in scope.lines if e.where is None or self.truth(e.where, scope.at_line(ln))
        ]
        if e.fn == "count":
            return Decimal(len(chosen))
        if e.fn == "any":
            return len(chosen) > 0
        if e.fn == "all":
            return len(chosen) == len(scope.lines)
        assert e.value is not None
        vals = [self.eval(e.value, scope.at_line(ln)) for ln in chosen]
        vals = [v for v in vals if v is not None]
        if e.fn == "sum":
            total = ZERO
            for v in vals:
                total = EXACT.add(total, v)
            return total
        if not vals:
            return None
        return max(vals) if e.fn == "max" else min(vals)

    def _call(self, e: ir.Call, scope: Scope) -> Any:
        fn = e.fn
        args = [self.eval(a, scope) for a in e.args]
        if fn == "coalesce":
            return next((a for a in args if a is not None), None)
        if fn in ("least", "greatest"):
            present = [a for a in args if a is not None]
            if not present:
                return None
            return min(present) if fn == "least" else max(present)
        if fn == "list_contains":
            lst, s = args
            if lst is None or s is None:
                return None
            return s in [x for x in lst if x is not None]
        if any(a is None for a in args):
            return None
        x = args[0]
        if fn == "length":
            return Decimal(len(x))
        if fn == "upper":
            return x.upper()
        if fn == "lower":
            return x.lower()
        if fn == "starts_with":
            return x.startswith(e.consts[0])
        if fn == "ends_with":
            return x.endswith(e.consts[0])
        if fn == "contains":
            return e.consts[0] in x
        if fn == "matches":
            return re.fullmatch(e.consts[0], x) is not None
        if fn == "substring":
            start, length = e.consts
            return x[start : start + length]
        if fn == "right":
            (n,) = e.consts
            return x[-n:] if n else ""
        if fn == "date_of":
            return _as_date(x)
        if fn == "days_between":
            return Decimal((_as_date(args[1]) - _as_date(x)).days)
        if fn == "minutes_between":
            return Decimal((args[1] - x) // timedelta(minutes=1))
        if fn == "round":
            return round_half_up(x, e.consts[0])
        if fn == "abs":
            return abs(x)
        raise NotImplementedError(f"function {fn}")

    # --- windows ----------------------------------------------------------------------
    def _window_rows(self, spec: ir.WindowSpec) -> list[_WindowRow]:
        """Every row of the window's level with its key, order, day and where."""
        if spec not in self._windows:
            scopes: list[Scope]
            if spec.level == "claim":
                scopes = [Scope(c, self._lines_of[c["claim_id"]]) for c in self.claims]
            else:
                by_id = {c["claim_id"]: c for c in self.claims}
                scopes = [
                    Scope(by_id[ln["claim_id"]], self._lines_of[ln["claim_id"]], ln)
                    for ln in self.lines
                ]
            rows = []
            for i, s in enumerate(scopes):
                key = tuple(self.eval(p, s) for p in spec.partition)
                day = self.eval(spec.day, s) if spec.day is not None else None
                rows.append(
                    _WindowRow(
                        index=i,
                        scope=s,
                        key=key,
                        keyed=all(k is not None for k in key)
                        and (spec.day is None or day is not None),
                        # null sorts first; nulls are equal to one another
                        order=tuple(
                            (0,) if v is None else (1, v)
                            for v in (self.eval(o, s) for o in spec.order)
                        ),
                        counts=spec.where is None or self.truth(spec.where, s),
                        day=day,
                        days=self.eval(spec.days, s) if spec.days is not None else None,
                    )
                )
            self._windows[spec] = rows
        return self._windows[spec]

    def _window(self, e: ir.Window, scope: Scope) -> Any:
        """A measure over the earlier rows of this row's partition (see ir.WindowSpec)."""
        spec = e.spec
        rows = self._window_rows(spec)
        if spec.level == "claim":
            me = next(r for r in rows if r.scope.claim["claim_id"] == scope.claim["claim_id"])
        else:
            assert scope.line is not None
            mine = line_key(scope.line)
            me = next(r for r in rows if r.scope.line and line_key(r.scope.line) == mine)
        if not me.keyed or not me.counts:  # outside the window's where: no measure
            return None
        earlier = [
            r for r in rows if r.keyed and r.key == me.key and r.order < me.order and r.counts
        ]
        if spec.day is not None and spec.days is not None:
            if me.days is None:
                earlier = []
            else:
                low = me.day - timedelta(days=int(me.days) - 1)
                earlier = [r for r in earlier if r.days is not None and low <= r.day <= me.day]
        if e.cond is not None:
            earlier = [r for r in earlier if self.truth(e.cond, r.scope)]
        if e.fn == "count":
            return Decimal(len(earlier))
        assert e.value is not None
        valued = [(r, self.eval(e.value, r.scope)) for r in earlier]
        valued = [(r, v) for r, v in valued if v is not None]
        if e.fn == "sum":
            return sum((v for _, v in valued), ZERO)
        if not valued:
            return None
        if e.fn in ("min", "max"):
            vals = [v for _, v in valued]
            return min(vals) if e.fn == "min" else max(vals)
        valued.sort(key=lambda rv: (rv[0].order, rv[0].index))
        return valued[0][1] if e.fn == "first" else valued[-1][1]

    # --- lookups ----------------------------------------------------------------------
    def _rows(self, lk: ir.Lookup) -> list[tuple[int, Row]]:
        """The lookup's reference rows (stacked tables labelled by the discriminator)."""
        if lk.name not in self._stacked:
            rows: list[Row] = []
            for label, name in lk.tables:
                for r in self.reference[name]:
                    rows.append({**r, lk.discriminator: label} if lk.discriminator else dict(r))
            self._stacked[lk.name] = list(enumerate(rows))
            index: dict[tuple[Any, ...], list[tuple[int, Row]]] = {}
            for i, r in enumerate(rows):
                key = tuple(r.get(col) for col, _ in lk.keys)
                if any(k is None for k in key):
                    continue  # a null key never matches
                index.setdefault(key, []).append((i, r))
            self._index[lk.name] = index
        return self._stacked[lk.name]

    def lookup_row(self, name: str, scope: Scope) -> Row | None:
        lk = self.lookups[name]
        s = scope.at_claim() if lk.level == "claim" else scope
        self._rows(lk)
        key = tuple(self.eval(expr, s) for _, expr in lk.keys)
        if any(k is None for k in key):
            return None
        day = self.eval(lk.as_of, s)
        if day is None:
            return None
        prefer = [(col, self.eval(expr, s)) for col, expr in lk.prefer]
        candidates = [
            (i, r)
            for i, r in self._index[lk.name].get(key, [])
            if (r.get("valid_from") is None or r["valid_from"] <= day)
            and (r.get("valid_to") is None or day <= r["valid_to"])
        ]
        specific = [
            (i, r)
            for i, r in candidates
            if all(v is not None and r.get(col) is not None and r[col] == v for col, v in prefer)
        ]
        general = [(i, r) for i, r in candidates if all(r.get(col) is None for col, _ in prefer)]
        pool = specific or general
        if not pool:
            return None
        _, best = max(pool, key=lambda p: (p[1].get("valid_from") or date.min, p[0]))
        return best


# --- adjudication -------------------------------------------------------------------


class RequiredLookupMissing(LookupError):
    """A required lookup (base salary) has no row for a date: the engine's exit 2."""


@dataclass
class _Hit:
    rule_id: str
    code: str
    severity: str
    level: str
    key: Any  # claim_id or line key


def _in_force(ev: ReferenceEvaluator, rule: Any, scope: Scope) -> bool:
    if rule.effective_from is None and rule.effective_to is None:
        return True
    name = "admission_date" if rule.level == "claim" else "date_of_service"
    day = ev.eval(ir.Derived(name, t.DATE), scope)
    if day is None:
        return False
    if rule.effective_from is not None and day < rule.effective_from:
        return False
    return not (rule.effective_to is not None and day > rule.effective_to)


def contract_benefit_rate(
    claim: Mapping[str, Any],
    facility_level: str | None,
    eligible: Decimal,
    base_salary: Decimal | None,
) -> Decimal:
    """Contract section 6, written out by hand (independent of the pack's rules)."""
    card = claim["card_no"]
    rate = Decimal({"1": 100, "2": 100, "3": 95, "4": 80, "5": 100}.get(card[2:3], 0))
    admission = claim["admitted_at"].date()
    inpatient = claim["visit_type"] in (3, 4)
    if claim["route"] == "self_referred":
        if facility_level == "commune":
            rate = HUNDRED
        if inpatient:
            mult = {"central": 40, "provincial": 60 if admission < date(2021, 1, 1) else 100}
        else:
            mult = {"central": 0, "provincial": 0}
        return rate * Decimal(mult.get(facility_level or "", 100)) / HUNDRED
    low_cost = base_salary is not None and eligible < base_salary * 15 / HUNDRED
    exempt = claim.get("copay_exempt_from") is not None and claim["copay_exempt_from"] <= admission
    if facility_level == "commune" or low_cost or exempt:
        return HUNDRED
    return rate


def reference_adjudicate(
    plan: Any,
    claims: Iterable[Row],
    lines: Iterable[Row],
    reference: Mapping[str, Any],
    evaluator: ReferenceEvaluator | None = None,
) -> dict[str, dict[Any, dict[str, Any]]]:
    """Decisions, codes and money of a well-formed batch, one row at a time.

    Returns ``{"claims": {claim_id: {...}}, "lines": {(claim_id, kind, line_no): {...}}}``
    with ``decision``, ``reason_codes`` (sorted, distinct), ``eligible``, ``fund_pays``
    (and ``benefit_rate`` for claims: the pack's computed rate, None when rejected).
    """
    from claims_engine.plan.plan import STAGE_ELIGIBLE, STAGE_FUND, STAGE_INPUT

    claims = list(claims)
    lines = list(lines)
    ev = evaluator or ReferenceEvaluator(reference, plan.lookups, plan.derived)
    ev.lookups, ev.derived, ev.computed = dict(plan.lookups), dict(plan.derived), {}
    ev.set_batch(claims, lines)
    lines_of: dict[str, list[Row]] = {c["claim_id"]: [] for c in claims}
    claim_of: dict[LineKey, Row] = {}
    by_id = {c["claim_id"]: c for c in claims}
    for ln in lines:
        lines_of[ln["claim_id"]].append(ln)
        claim_of[line_key(ln)] = by_id[ln["claim_id"]]

    def claim_scope(c: Row) -> Scope:
        return Scope(c, lines_of[c["claim_id"]])

    def line_scope(ln: Row) -> Scope:
        c = claim_of[line_key(ln)]
        return Scope(c, lines_of[c["claim_id"]], ln)

    # required lookups (base salary): no row in force is an error, as in the engine
    for lk in plan.lookups.values():
        if not lk.required:
            continue
        scopes = (
            [claim_scope(c) for c in claims]
            if lk.level == "claim"
            else [line_scope(ln) for ln in lines]
        )
        for s in scopes:
            if ev.eval(lk.as_of, s) is not None and ev.lookup_row(lk.name, s) is None:
                raise RequiredLookupMissing(f"{lk.name} on {ev.eval(lk.as_of, s)}")

    hits: list[_Hit] = []

    def run(stage: int, claim_ok: set[str], line_ok: set[LineKey]) -> list[tuple[Any, list[Any]]]:
        fired = []
        for rule in plan.rules_at(stage):
            rows: list[Any] = []
            if rule.level == "claim":
                for c in claims:
                    s = claim_scope(c)
                    if (
                        c["claim_id"] in claim_ok
                        and ev.truth(rule.when, s)
                        and _in_force(ev, rule, s)
                    ):
                        rows.append(c["claim_id"])
            else:
                for ln in lines:
                    s = line_scope(ln)
                    if (
                        line_key(ln) in line_ok
                        and ev.truth(rule.when, s)
                        and _in_force(ev, rule, s)
                    ):
                        rows.append(line_key(ln))
            for key in rows:
                hits.append(_Hit(rule.id, rule.code, rule.severity, rule.level, key))
            fired.append((rule, rows))
        return fired

    effective: dict[LineKey, dict[str, Any]] = {
        line_key(ln): {name: to_value(ln[name], t.num(0)) for name in MONEY_INPUTS} for ln in lines
    }

    def apply_sets(fired: list[tuple[Any, list[Any]]]) -> None:
        for rule, rows in fired:
            for key in rows:
                targets = [key] if rule.level == "line" else [line_key(ln) for ln in lines_of[key]]
                for lkey in targets:
                    ln = next(x for x in lines if line_key(x) == lkey)
                    for target, expr in rule.sets:
                        new = ev.eval(expr, line_scope(ln))
                        if new is not None:  # a null replacement keeps the declared value
                            effective[lkey][target] = new

    # 1. input rules on every (well-formed) claim and line
    all_claims = {c["claim_id"] for c in claims}
    all_lines = {line_key(ln) for ln in lines}
    fired_a = run(STAGE_INPUT, all_claims, all_lines)

    # 2. rejections
    claim_rejected = {c: False for c in all_claims}
    line_rejected = {k: False for k in all_lines}
    for rule, rows in fired_a:
        if rule.severity != "reject":
            continue
        for key in rows:
            if rule.level == "claim":
                claim_rejected[key] = True
            else:
                line_rejected[key] = True
    for cid in all_claims:
        own = [line_key(ln) for ln in lines_of[cid]]
        if claim_rejected[cid] or all(line_rejected[k] for k in own):
            claim_rejected[cid] = True
            for k in own:
                line_rejected[k] = True

    # 3. adjustments, 4. eligible
    apply_sets(fired_a)
    eligible: dict[LineKey, Decimal] = {}
    for ln in lines:
        k = line_key(ln)
        eff = effective[k]
        parts = [eff[n] for n in ("quantity", "unit_price", "service_rate", "coverage_rate")]
        if line_rejected[k] or any(p is None for p in parts):
            eligible[k] = ZERO
        else:
            q, up, sr, cr = (Fraction(p) for p in parts)
            eligible[k] = round_half_up(q * up * sr / 100 * cr / 100, 2)
    claim_eligible = {
        cid: sum((eligible[line_key(ln)] for ln in lines_of[cid]), ZERO) for cid in all_claims
    }
    ev.computed[("line", "eligible")] = eligible
    ev.computed[("claim", "eligible")] = claim_eligible

    # 5. after-eligible rules on what is not rejected, then their adjustments
    payable_claims = {c for c in all_claims if not claim_rejected[c]}
    payable_lines = {k for k in all_lines if not line_rejected[k]}
    fired_b = run(STAGE_ELIGIBLE, payable_claims, payable_lines)
    apply_sets(fired_b)

    # 6. fund_pays, 7. after-fund rules
    fund: dict[LineKey, Decimal] = {}
    for k in all_lines:
        br = effective[k]["benefit_rate"]
        fund[k] = (
            ZERO
            if line_rejected[k] or br is None
            else round_half_up(Fraction(eligible[k]) * Fraction(br) / 100, 2)
        )
    claim_fund = {
        cid: sum((fund[line_key(ln)] for ln in lines_of[cid]), ZERO) for cid in all_claims
    }
    ev.computed[("line", "fund_pays")] = fund
    ev.computed[("claim", "fund_pays")] = claim_fund
    run(STAGE_FUND, payable_claims, payable_lines)

    # decisions and codes
    claim_codes: dict[str, set[str]] = {c: set() for c in all_claims}
    line_codes: dict[LineKey, set[str]] = {k: set() for k in all_lines}
    flagged = {c: False for c in all_claims}
    adjusted = {k: False for k in all_lines}
    for h in hits:
        if h.level == "claim":
            cid = h.key
            claim_codes[cid].add(h.code)
        else:
            cid = h.key[0]
            line_codes[h.key].add(h.code)
            claim_codes[cid].add(h.code)
            if h.severity == "adjust":
                adjusted[h.key] = True
        if h.severity == "flag":
            flagged[cid] = True

    rate_expr = ir.Derived("benefit.rate", t.num(2)) if "benefit.rate" in plan.derived else None
    out_claims: dict[Any, dict[str, Any]] = {}
    for c in claims:
        cid = c["claim_id"]
        rejected = claim_rejected[cid]
        out_claims[cid] = {
            "decision": "rejected" if rejected else ("flagged" if flagged[cid] else "approved"),
            "reason_codes": sorted(claim_codes[cid]),
            "eligible": claim_eligible[cid],
            "fund_pays": claim_fund[cid],
            "benefit_rate": None
            if rejected or rate_expr is None
            else ev.eval(rate_expr, claim_scope(c)),
        }
    out_lines: dict[Any, dict[str, Any]] = {}
    for ln in lines:
        k = line_key(ln)
        out_lines[k] = {
            "decision": "rejected" if line_rejected[k] else ("adjusted" if adjusted[k] else "paid"),
            "reason_codes": sorted(line_codes[k]),
            "eligible": eligible[k],
            "fund_pays": fund[k],
        }
    return {"claims": out_claims, "lines": out_lines}
