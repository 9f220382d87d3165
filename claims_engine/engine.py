"""Run a compiled plan on a batch: rule hits, line and claim decisions, exact money.

Order of work (contract sections 5 and 6):

1. intake: MALFORMED and ORPHAN_LINE (no other rule sees a malformed claim);
2. input-stage rules on every other claim and line; rejections decide which lines
   are out; adjust rules replace money inputs (price, coverage rate);
3. eligible per line and claim (``computed.eligible``);
4. after-eligible rules on claims not rejected (benefit rate, its mismatch);
5. fund_pays per line and claim (``computed.fund_pays``);
6. after-fund rules on claims not rejected (HIGH_COST).

Every step is a vectorized pass over whole columns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine import parts, schema
from claims_engine.errors import ReferenceDataError
from claims_engine.intake import Intake, check_structure
from claims_engine.io.batch import Batch
from claims_engine.kernels import columns, evaluate, groups, money
from claims_engine.kernels import values as V
from claims_engine.kernels.format import render
from claims_engine.kernels.values import Array, Vec
from claims_engine.lang import ir
from claims_engine.lang import types as t
from claims_engine.plan.plan import STAGE_ELIGIBLE, STAGE_FUND, STAGE_INPUT, CompiledRule, Plan

MONEY_INPUTS = ("quantity", "unit_price", "service_rate", "coverage_rate", "benefit_rate")
# Columns the engine and the outputs read whatever the pack says.
ENGINE_FIELDS = {
    "claim": frozenset({"claim_id", "card_no", "facility_id", "fund_pays", "admitted_at"}),
    "line": frozenset({"claim_id", "kind", "line_no", "amount_hospital", *MONEY_INPUTS}),
}


def needed_fields(plan: Plan) -> dict[str, frozenset[str]]:
    """Input columns a run of ``plan`` reads: the pack's fields and the engine's."""
    used = plan.fields()
    return {level: used[level] | ENGINE_FIELDS[level] for level in ENGINE_FIELDS}


@dataclass(frozen=True)
class RuleHits:
    """The rows (of its level) where one rule fired, and the messages."""

    rule_id: str
    code: str
    severity: str
    level: str
    rows: Array
    messages: pa.Array


@dataclass
class Outcome:
    claims: pa.Table
    lines: pa.Table
    intake: Intake
    hits: list[RuleHits]
    claim_rejected: Array
    claim_flagged: Array
    line_rejected: Array
    line_adjusted: Array
    line_eligible: Array  # cents
    line_fund: Array  # cents
    claim_eligible: Array
    claim_fund: Array
    claim_benefit_rate: Vec | None
    timings: dict[str, float] = field(default_factory=dict)
    # seconds per rule id, for the rules evaluated on the whole batch (card-holder
    # rules, later stages); row rules run interleaved in parts and are not apart
    rule_seconds: dict[str, float] = field(default_factory=dict)


Progress = Callable[[str], None]


def _noop(_: str) -> None:
    return None


@dataclass(frozen=True)
class History:
    """Claims and lines of earlier batches (contract columns), all earlier than the batch."""

    claims: pa.Table
    lines: pa.Table


def _pair_keys(table: pa.Table) -> pa.Array:
    """claim_id and facility_id as one key (a claim is identified by both across batches)."""
    return pc.binary_join_element_wise(
        columns.array(table, "claim_id"), columns.array(table, "facility_id"), "\x1f"
    )


def _line_pair_keys(history: History) -> pa.Array:
    """Each history line's (claim_id, facility_id) key; the facility from its claim if absent."""
    if "facility_id" in history.lines.column_names:
        return _pair_keys(history.lines)
    ids = columns.array(history.lines, "claim_id")
    row = pc.index_in(ids, value_set=columns.array(history.claims, "claim_id"))
    facility = columns.array(history.claims, "facility_id").take(row)
    return pc.binary_join_element_wise(ids, facility, "\x1f")


def drop_resubmitted(history: History, batch_claims: pa.Table) -> History:
    """History without the claims (and lines) this batch resubmits (same claim_id + facility)."""
    if history.claims.num_rows == 0:
        return history
    resubmitted = pc.is_in(_pair_keys(history.claims), value_set=_pair_keys(batch_claims))
    keep_claims = pc.invert(resubmitted.fill_null(False))
    keep_lines = pc.invert(
        pc.is_in(
            _line_pair_keys(history), value_set=_pair_keys(history.claims.filter(resubmitted))
        ).fill_null(False)
    )
    return History(history.claims.filter(keep_claims), history.lines.filter(keep_lines))


def _has_window(rule: CompiledRule) -> bool:
    return any(isinstance(node, ir.Window) for node in ir.walk(rule.when))


def _in_force(rule: CompiledRule, ev: evaluate.Evaluator) -> Array | None:
    """Rows on dates within the rule's effective period (None: every row)."""
    if rule.effective_from is None and rule.effective_to is None:
        return None
    name = "admission_date" if rule.level == "claim" else "date_of_service"
    day = ev.eval(ir.Derived(name, t.DATE))
    d = V.full(day, ev.n)
    ok = V.valid_mask(day, ev.n).copy()
    epoch = evaluate.EPOCH
    if rule.effective_from is not None:
        ok &= d >= (rule.effective_from - epoch).days
    if rule.effective_to is not None:
        ok &= d <= (rule.effective_to - epoch).days
    return ok


def _evaluate_rule(
    rule: CompiledRule,
    cev: evaluate.Evaluator,
    lev: evaluate.Evaluator,
    claim_mask: Array,
    line_mask: Array,
) -> tuple[Array, Array, pa.Array, list[Vec]]:
    """One rule on a claim/line evaluator pair (the batch or a part of it): where it
    fires, those rows, their messages, and the values its ``sets`` replace."""
    ev = cev if rule.level == "claim" else lev
    hit = ev.truth(rule.when) & (claim_mask if rule.level == "claim" else line_mask)
    window = _in_force(rule, ev)
    if window is not None:
        hit &= window
    rows = np.flatnonzero(hit)
    new = [lev.eval(expr) for _, expr in rule.sets]
    return hit, rows, render(rule.message, ev, rows), new


def _drop_cached(*evaluators: evaluate.Evaluator, keep: set[ir.Expr]) -> None:
    """Drop the cached values no later rule reads."""
    for ev in evaluators:
        for node in [k for k in ev.cache if k not in keep]:
            del ev.cache[node]


class _Run:
    def __init__(
        self,
        plan: Plan,
        batch: Batch,
        reference: dict[str, pa.Table],
        progress: Progress,
        history: History | None = None,
        part_lines: int = 500_000,
    ) -> None:
        self.plan = plan
        self.claims, self.lines = batch.claims, batch.lines
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.rule_seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        self.intake = check_structure(
            batch.claims,
            batch.lines,
            batch.claim_errors,
            batch.line_errors,
            batch.codes.get("line"),
        )
        self.timings["intake"] = time.perf_counter() - t0
        ctx = evaluate.Context(plan.derived, plan.lookups, reference, plan.cacheable)
        self.ctx = ctx
        self.cev, self.lev = evaluate.Evaluator.pair(
            batch.claims, batch.lines, self.intake.line_claim_row, ctx
        )
        self.cev.codes = batch.codes.get("claim", {})
        self.lev.codes = batch.codes.get("line", {})
        self.nc, self.nl = batch.claims.num_rows, batch.lines.num_rows
        self.batch = batch
        # row rules run per claim range, two at a time (parts.py); None: whole batch
        self.parts = parts.split(self.intake.line_claim_row, self.nc, part_lines)
        # replacement values of adjust rules, computed where the rule ran
        self.set_values: dict[tuple[str, str], Vec] = {}
        self.claim_ok = ~self.intake.malformed
        row = self.intake.line_claim_row
        self.line_ok = (
            (row >= 0) & self.claim_ok[np.maximum(row, 0)] if self.nl else np.zeros(0, dtype=bool)
        )
        # window rules count every claim and line that is not MALFORMED, and history
        self.cev.active, self.lev.active = self.claim_ok, self.line_ok
        if history is not None:
            history = drop_resubmitted(history, batch.claims)
            line_rows = pc.index_in(_line_pair_keys(history), value_set=_pair_keys(history.claims))
            hc, hl = evaluate.Evaluator.pair(
                history.claims,
                history.lines,
                np.asarray(line_rows.fill_null(-1).to_numpy(), dtype=np.int64),
                ctx,
            )
            self.cev.history, self.lev.history = hc, hl
        self.hits: list[RuleHits] = []
        self.effective: dict[str, Vec] = {}

    # --- helpers --------------------------------------------------------------
    def ev(self, level: str) -> evaluate.Evaluator:
        return self.cev if level == "claim" else self.lev

    def _uses(self, e: ir.Expr, seen: set[ir.Expr]) -> None:
        """Every node evaluating ``e`` touches: through named values and lookups too."""
        for node in ir.walk(e):
            if node in seen:
                continue
            seen.add(node)
            if isinstance(node, ir.Derived):
                self._uses(self.plan.derived[node.name][1], seen)
            elif isinstance(node, ir.LookupField | ir.LookupExists):
                lk = self.plan.lookups[node.lookup]
                for x in (lk.as_of, *(k for _, k in lk.keys), *(k for _, k in lk.prefer)):
                    self._uses(x, seen)

    def _still_needed(self, rules: tuple[CompiledRule, ...]) -> list[set[ir.Expr]]:
        """For each rule, the nodes that it or a later rule of the stage (or a set) reads."""
        later: set[ir.Expr] = set()
        for rule in rules:
            for _, x in rule.sets:
                self._uses(x, later)
        out: list[set[ir.Expr]] = []
        for rule in reversed(rules):
            out.append(set(later))
            self._uses(rule.when, later)
            for part in rule.message:
                if part.expr is not None:
                    self._uses(part.expr, later)
        return out[::-1]

    def run_rules(
        self, rules: tuple[CompiledRule, ...], claim_mask: Array, line_mask: Array
    ) -> list[tuple[CompiledRule, Array]]:
        row_rules = tuple(r for r in rules if not _has_window(r))
        in_parts: dict[str, tuple[Array, Array, pa.Array]] = {}
        if self.parts is not None and row_rules:
            started = time.perf_counter()
            in_parts = self._row_rules_in_parts(row_rules, claim_mask, line_mask)
            self.timings["rules.row"] = (
                self.timings.get("rules.row", 0.0) + time.perf_counter() - started
            )
        fired = []
        needed_after = self._still_needed(rules)
        for i, rule in enumerate(rules):
            if rule.id in in_parts:
                hit, rows, messages = in_parts[rule.id]
                self.hits.append(
                    RuleHits(rule.id, rule.code, rule.severity, rule.level, rows, messages)
                )
                fired.append((rule, hit))
                continue
            started = time.perf_counter()
            hit, rows, messages, new = _evaluate_rule(
                rule, self.cev, self.lev, claim_mask, line_mask
            )
            self.hits.append(
                RuleHits(rule.id, rule.code, rule.severity, rule.level, rows, messages)
            )
            fired.append((rule, hit))
            for (target, _), value in zip(rule.sets, new, strict=True):
                self.set_values[(rule.id, target)] = value
            # time per kind of rule: window (card-holder) rules apart from row rules
            kind = "rules.window" if _has_window(rule) else "rules.row"
            self.timings[kind] = self.timings.get(kind, 0.0) + time.perf_counter() - started
            self.rule_seconds[rule.id] = time.perf_counter() - started
            # a window's sort serves one rule: free it (~100 MB per 8M lines); the
            # claim ranks (8 MB per million claims) serve the next card-holder rule
            self.ev(rule.level).windows.clear()
            _drop_cached(self.cev, self.lev, keep=needed_after[i])
        return fired

    # --- row rules per part -----------------------------------------------------
    def _part_evaluators(self, part: parts.Part) -> tuple[evaluate.Evaluator, evaluate.Evaluator]:
        (c0, c1), (l0, l1) = part.claims, part.lines
        row = self.intake.line_claim_row[l0:l1]
        cev, lev = evaluate.Evaluator.pair(
            self.batch.claims.slice(c0, c1 - c0),
            self.batch.lines.slice(l0, l1 - l0),
            np.where(row >= 0, row - c0, -1),
            self.ctx.part(part.claims, part.lines),
        )
        for ev, full, (lo, hi) in ((cev, self.cev, part.claims), (lev, self.lev, part.lines)):
            ev.codes = {k: replace(c, indices=c.indices[lo:hi]) for k, c in full.codes.items()}
            # lookups the whole batch already matched (required ones) are not redone
            ev.lookup_rows = {k: r[lo:hi] for k, r in full.lookup_rows.items()}
        return cev, lev

    def _run_part(
        self,
        part: parts.Part,
        rules: tuple[CompiledRule, ...],
        needed_after: list[set[ir.Expr]],
        claim_mask: Array,
        line_mask: Array,
    ) -> list[tuple[Array, Array, pa.Array, list[Vec]]]:
        numba.set_num_threads(1)  # thread-local: the parts are the parallelism
        cev, lev = self._part_evaluators(part)
        out = []
        (c0, c1), (l0, l1) = part.claims, part.lines
        for i, rule in enumerate(rules):
            hit, rows, messages, new = _evaluate_rule(
                rule, cev, lev, claim_mask[c0:c1], line_mask[l0:l1]
            )
            out.append((hit, rows + (c0 if rule.level == "claim" else l0), messages, new))
            _drop_cached(cev, lev, keep=needed_after[i])
        # the pair refers to itself (parent, child): free its columns now, not at
        # the cycle collector's next pass
        for level_ev in (cev, lev):
            level_ev.cache.clear()
            level_ev.lookup_rows.clear()
            level_ev.dictionaries.clear()
        cev.child = lev.parent = None
        return out

    def _row_rules_in_parts(
        self, rules: tuple[CompiledRule, ...], claim_mask: Array, line_mask: Array
    ) -> dict[str, tuple[Array, Array, pa.Array]]:
        """Hits, hit rows and messages of each row rule, evaluated part by part."""
        assert self.parts is not None
        needed_after = self._still_needed(rules)
        workers = min(len(self.parts), os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="part") as pool:
            results = list(
                pool.map(
                    lambda p: self._run_part(p, rules, needed_after, claim_mask, line_mask),
                    self.parts,
                )
            )
        out = {}
        for i, rule in enumerate(rules):
            per_part = [r[i] for r in results]
            out[rule.id] = (
                np.concatenate([x[0] for x in per_part]),
                np.concatenate([x[1] for x in per_part]),
                pa.concat_arrays([x[2] for x in per_part]),
            )
            for k, (target, _) in enumerate(rule.sets):
                vecs = [
                    (x[3][k], p.lines[1] - p.lines[0])
                    for x, p in zip(per_part, self.parts, strict=True)
                ]
                self.set_values[(rule.id, target)] = Vec(
                    vecs[0][0].type,
                    np.concatenate([V.full(v, n) for v, n in vecs]),
                    np.concatenate([V.valid_mask(v, n) for v, n in vecs]),
                )
        return out

    def apply_sets(self, fired: list[tuple[CompiledRule, Array]]) -> None:
        for rule, hit in fired:
            for target, _ in rule.sets:
                new = self.set_values.pop((rule.id, target))
                cur = self.effective[target]
                scale = max(cur.type.scale, new.type.scale)
                # the rows it adjusts (a null replacement keeps the declared value):
                # few, so the current column is copied and patched there
                rows = np.flatnonzero(hit & V.valid_mask(new, self.nl))
                data = np.array(V.rescale(V.full(cur, self.nl), cur.type.scale, scale))
                replaced = V.rescale(V.full(new, self.nl)[rows], new.type.scale, scale)
                if data.dtype != replaced.dtype:  # an exact (object) value on either side
                    data = data.astype(object)
                data[rows] = replaced
                self.effective[target] = Vec(t.num(scale), data, cur.valid)

    def check_required_lookups(self) -> None:
        for lk in self.plan.lookups.values():
            if not lk.required:
                continue
            ev = self.ev(lk.level)
            mask = self.claim_ok if lk.level == "claim" else self.line_ok
            missing = (ev.lookup_index(lk.name) < 0) & mask
            as_of = V.valid_mask(ev.eval(lk.as_of), ev.n)
            missing &= as_of
            if missing.any():
                first = int(np.flatnonzero(missing)[0])
                day = V.to_arrow(ev.eval(lk.as_of), ev.n)[first].as_py()
                tables = ", ".join(name for _, name in lk.tables)
                raise ReferenceDataError(
                    f"reference table {tables} has no row in force on {day} (lookup "
                    f"'{lk.name}', needed by {int(missing.sum())} "
                    f"{'claims' if lk.level == 'claim' else 'lines'})"
                )

    # --- the run ----------------------------------------------------------------
    def run(self) -> Outcome:
        t0 = time.perf_counter()
        self.check_required_lookups()
        self.timings["lookups.required"] = time.perf_counter() - t0
        row = self.intake.line_claim_row
        safe_row = np.maximum(row, 0)
        self.progress("input rules")
        fired = self.run_rules(self.plan.rules_at(STAGE_INPUT), self.claim_ok, self.line_ok)
        self.timings["rules.input"] = time.perf_counter() - t0

        # rejections: a line reject, its claim rejected, or every line rejected
        line_reject = np.zeros(self.nl, dtype=bool)
        claim_reject = self.intake.malformed.copy()
        for rule, hit in fired:
            if rule.severity == "reject":
                if rule.level == "line":
                    line_reject |= hit
                else:
                    claim_reject |= hit
        line_reject |= self.intake.orphan | claim_reject[safe_row]
        live = groups.group_count(row, ~line_reject, self.nc)
        claim_reject |= live == 0
        line_rejected = line_reject | claim_reject[safe_row]

        # money inputs, with input-stage adjustments (the input rules' cached columns
        # and window sorts are freed first: the money needs only its own inputs)
        t1 = time.perf_counter()
        self._release(keep=())
        for name in MONEY_INPUTS:
            self.effective[name] = self.lev.eval(
                ir.Field("line", name, t.from_arrow(schema.LINE_COLUMN_BY_NAME[name].type))
            )
        self.apply_sets(fired)
        eligible = self._eligible(line_rejected)
        claim_eligible = groups.group_sum(row, eligible, ~line_rejected, self.nc)
        # Input-stage values are no longer needed: free them before the later stages
        # (a batch of 8 million lines holds ~70 MB per cached column).
        self._release(keep=("benefit_rate",))
        self.ctx.computed[("line", "eligible")] = Vec(t.num(2), eligible)
        self.ctx.computed[("claim", "eligible")] = Vec(t.num(2), V.narrow(claim_eligible))
        self.timings["money.eligible"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        payable_claims = ~claim_reject
        payable_lines = ~line_rejected
        fired_b = self.run_rules(self.plan.rules_at(STAGE_ELIGIBLE), payable_claims, payable_lines)
        self.apply_sets(fired_b)
        br = self.effective["benefit_rate"]
        fund = money.fund_share(eligible, (np.asarray(V.full(br, self.nl)), br.type.scale))
        fund = np.where(line_rejected, 0, fund)
        claim_fund = groups.group_sum(row, fund, ~line_rejected, self.nc)
        self.ctx.computed[("line", "fund_pays")] = Vec(t.num(2), fund)
        self.ctx.computed[("claim", "fund_pays")] = Vec(t.num(2), V.narrow(claim_fund))
        self._release(keep=())
        fired_c = self.run_rules(self.plan.rules_at(STAGE_FUND), payable_claims, payable_lines)
        self.timings["rules.after_money"] = time.perf_counter() - t2

        adjusted = np.zeros(self.nl, dtype=bool)
        flag_claim = np.zeros(self.nc, dtype=bool)
        for rule, hit in fired + fired_b + fired_c:
            if rule.severity == "adjust" and rule.level == "line":
                adjusted |= hit
            if rule.severity == "flag":
                if rule.level == "claim":
                    flag_claim |= hit
                else:
                    flag_claim |= groups.group_count(row, hit, self.nc) > 0
        rate = (
            self.cev.eval(ir.Derived("benefit.rate", t.num(2)))
            if "benefit.rate" in self.plan.derived
            else None
        )
        return Outcome(
            self.claims,
            self.lines,
            self.intake,
            self.hits,
            claim_reject,
            flag_claim & ~claim_reject,
            line_rejected,
            adjusted & ~line_rejected,
            eligible,
            fund,
            V.narrow(claim_eligible),
            V.narrow(claim_fund),
            rate,
            self.timings,
            self.rule_seconds,
        )

    def _release(self, keep: tuple[str, ...]) -> None:
        """Drop cached intermediate columns (lookup matches stay: they are reused)."""
        for ev in (self.cev, self.lev):
            ev.cache.clear()
            ev.windows.clear()
            ev.window_codes.clear()
        self.effective = {k: v for k, v in self.effective.items() if k in keep}

    def _eligible(self, rejected: Array) -> Array:
        n = self.nl
        q, up = self.effective["quantity"], self.effective["unit_price"]
        sr, cr = self.effective["service_rate"], self.effective["coverage_rate"]
        out = money.line_eligible(
            *[(np.asarray(V.full(v, n)), v.type.scale) for v in (q, up, sr, cr)]
        )
        ok = ~rejected
        for v in (q, up, sr, cr):
            ok &= V.valid_mask(v, n)
        return np.asarray(np.where(ok, out, 0))


# Below this many lines, parallel kernels cost more in thread wake-ups than they save:
# a hospital's one-claim pre-validation runs single-threaded.
SMALL_BATCH_LINES = 50_000
# Lines per part of the row rules (parts.py): big enough that per-part overhead is
# noise, small enough that a part's columns stay in cache and two run at once.
PART_LINES = 500_000


def run(
    plan: Plan,
    batch: Batch,
    reference: dict[str, pa.Table],
    progress: Progress = _noop,
    history: History | None = None,
    part_lines: int = PART_LINES,
) -> Outcome:
    """Evaluate ``plan`` on ``batch`` against reference tables (and earlier batches).

    ``part_lines``: row rules run per claim range of about this many lines (a
    batch at most this big runs whole); the result does not depend on it.
    """
    threads = numba.get_num_threads()
    if batch.lines.num_rows < SMALL_BATCH_LINES:
        numba.set_num_threads(1)
    try:
        return _Run(plan, batch, reference, progress, history, part_lines).run()
    finally:
        numba.set_num_threads(threads)


__all__ = ["Outcome", "RuleHits", "pc", "run"]
