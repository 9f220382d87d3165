"""Vectorized evaluation of typed IR over a whole level (all claims or all lines).

One ``Evaluator`` per level.  A line evaluator evaluates subexpressions that only
involve claim values once per claim and broadcasts them to lines (``hoisting``);
a claim evaluator reduces line values per claim for aggregates.  Results of
fields, lookups, named values and shared subexpressions are cached per batch.

Null handling (Kleene): comparisons and arithmetic with a null operand are null;
``and``/``or`` follow three-valued logic; a rule whose condition is null does not
fire.  ``least``/``greatest``/``coalesce`` skip nulls.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.io.dictionary import Codes
from claims_engine.kernels import gather, groups, lookup, money, window, window_eval
from claims_engine.kernels import values as V
from claims_engine.kernels.columns import take_rows
from claims_engine.kernels.values import Array, Vec
from claims_engine.lang import ir
from claims_engine.lang import types as t
from claims_engine.lang.checker import power_of_ten

EPOCH = date(1970, 1, 1)
SECONDS_PER_DAY = 86_400
LEVEL_RANK = {"const": 0, "claim": 1, "line": 2}
# A message value is computed on the hit rows alone when they are fewer than this
# share of the rows (1/8); more hits reuse the whole column.
SUBSET_SHARE = 8


@dataclass
class Context:
    """What the evaluators of one batch share."""

    derived: Mapping[str, tuple[str, ir.Expr]]
    lookups: Mapping[str, ir.Lookup]
    reference: Mapping[str, pa.Table]
    cacheable: frozenset[ir.Expr] = frozenset()
    computed: dict[tuple[str, str], Vec] = field(default_factory=dict)
    _levels: dict[ir.Expr, str] = field(default_factory=dict)
    _ref_tables: dict[str, pa.Table] = field(default_factory=dict)
    _local: dict[ir.Expr, bool] = field(default_factory=dict)

    def level_of(self, e: ir.Expr) -> str:
        hit = self._levels.get(e)
        if hit is not None:
            return hit
        lvl: str
        if isinstance(e, ir.Const | ir.Param):
            lvl = "const"
        elif isinstance(e, ir.Field | ir.Computed):
            lvl = e.level
        elif isinstance(e, ir.LookupField | ir.LookupExists):
            lvl = self.lookups[e.lookup].level
        elif isinstance(e, ir.Derived):
            lvl = self.derived[e.name][0]
        elif isinstance(e, ir.Aggregate):
            lvl = "claim"
        elif isinstance(e, ir.Window):
            lvl = e.spec.level
        else:
            lvl = max(
                (self.level_of(c) for c in e.children()),
                key=LEVEL_RANK.__getitem__,
                default="const",
            )
        self._levels[e] = lvl
        return lvl

    def part(self, claims: tuple[int, int], lines: tuple[int, int]) -> Context:
        """The same context for a range of claims and lines: computed values sliced."""
        bounds = {"claim": claims, "line": lines}
        return self._with({k: V.rows(v, *bounds[k[0]]) for k, v in self.computed.items()})

    def subset(self, claims: Array, lines: Array | None) -> Context:
        """The context at some claim rows (and line rows): computed values taken."""
        rows = {"claim": claims} if lines is None else {"claim": claims, "line": lines}
        return self._with(
            {k: take(v, rows[k[0]]) for k, v in self.computed.items() if k[0] in rows}
        )

    def _with(self, computed: dict[tuple[str, str], Vec]) -> Context:
        """This context with other computed values; the reference tables and memos
        are shared (they only grow)."""
        return Context(
            self.derived,
            self.lookups,
            self.reference,
            self.cacheable,
            computed,
            self._levels,
            self._ref_tables,
            self._local,
        )

    def row_local(self, e: ir.Expr) -> bool:
        """Whether ``e``'s value at a row depends on that row (and its claim) alone:
        no aggregate over lines, no window, also inside named values and lookups."""
        hit = self._local.get(e)
        if hit is None:
            hit = True
            for node in ir.walk(e):
                if isinstance(node, ir.Aggregate | ir.Window):
                    hit = False
                elif isinstance(node, ir.Derived):
                    hit = self.row_local(self.derived[node.name][1])
                elif isinstance(node, ir.LookupField | ir.LookupExists):
                    lk = self.lookups[node.lookup]
                    keys = (lk.as_of, *(k for _, k in lk.keys), *(k for _, k in lk.prefer))
                    hit = all(self.row_local(k) for k in keys)
                if not hit:
                    break
            self._local[e] = hit
        return hit

    def ref_table(self, lk: ir.Lookup) -> pa.Table:
        """The lookup's reference table (several stacked, labelled by discriminator)."""
        if lk.name not in self._ref_tables:
            parts = []
            for label, name in lk.tables:
                tbl = self.reference[name]
                if lk.discriminator:
                    tbl = tbl.append_column(lk.discriminator, pa.repeat(pa.scalar(label), len(tbl)))
                parts.append(tbl)
            self._ref_tables[lk.name] = (
                pa.concat_tables(parts, promote_options="permissive")
                if len(parts) > 1
                else parts[0]
            )
        return self._ref_tables[lk.name]


class RowsTable:
    """Some rows of a table, each column taken when first read (a message reads a few).

    ``Table.take`` would first join every chunk of every column; this takes the
    rows chunk by chunk, and only from the columns an expression reads.
    """

    def __init__(self, table: Any, rows: Array) -> None:
        self._table, self._rows = table, rows
        self.num_rows = len(rows)
        self._columns: dict[str, pa.Array] = {}

    def column(self, name: str) -> pa.Array:
        if name not in self._columns:
            self._columns[name] = take_rows(self._table.column(name), self._rows)
        return self._columns[name]


class Evaluator:
    def __init__(self, level: str, table: pa.Table, ctx: Context) -> None:
        self.level = level
        self.table = table
        self.n = table.num_rows
        self.ctx = ctx
        self.parent: Evaluator | None = None  # the claim evaluator, for a line evaluator
        self.to_parent: Array | None = None  # line -> claim row, -1 for an orphan line
        self.child: Evaluator | None = None  # the line evaluator, for a claim evaluator
        self.cache: dict[ir.Expr, Vec] = {}
        self.lookup_rows: dict[str, Array] = {}
        # Window rules: the history rows at this level (all earlier than the batch) and
        # which batch rows take part (not MALFORMED); set by the engine.
        self.history: Evaluator | None = None
        self.active: Array | None = None
        self.windows: dict[ir.WindowSpec, tuple[window.Sorted, Array | None]] = {}
        # claim ranks of window keys, kept across the card-holder rules (window_eval)
        self.window_codes: dict[tuple[Any, ...], tuple[Array, int]] = {}
        self.dictionaries: dict[ir.Expr, tuple[Array, pa.Array]] = {}
        # string columns the reader kept dictionary-encoded: their codes for free
        self.codes: Mapping[str, Codes] = {}
        self._rows_view: tuple[Array, Evaluator | None] | None = None

    @staticmethod
    def pair(
        claims: pa.Table, lines: pa.Table, line_claim_row: Array, ctx: Context
    ) -> tuple[Evaluator, Evaluator]:
        c, ln = Evaluator("claim", claims, ctx), Evaluator("line", lines, ctx)
        c.child, ln.parent, ln.to_parent = ln, c, line_claim_row
        return c, ln

    # --- entry points ---------------------------------------------------------
    def eval(self, e: ir.Expr) -> Vec:
        hit = self.cache.get(e)
        if hit is not None:
            return hit
        if self.level == "line" and self.ctx.level_of(e) == "claim":
            assert self.parent is not None and self.to_parent is not None
            v = take(self.parent.eval(e), self.to_parent)
        else:
            v = self._eval(e)
        if not isinstance(e, ir.Const | ir.Param) and (
            e in self.ctx.cacheable
            or isinstance(
                e, ir.Field | ir.Derived | ir.LookupField | ir.Computed | ir.Aggregate | ir.Window
            )
        ):
            self.cache[e] = v
        return v

    def eval_rows(self, e: ir.Expr, rows: Array) -> Vec:
        """``e`` at some rows only (a message's values at a rule's hits).

        A value already computed is taken at the rows; one that depends on its row
        alone (no aggregate or window anywhere in it) is computed on those rows only,
        so a message costs its hits, not the batch.
        """
        if e not in self.cache and len(rows) * SUBSET_SHARE < self.n and self.ctx.row_local(e):
            if self._rows_view is None or self._rows_view[0] is not rows:  # one per message
                self._rows_view = (rows, self._rows_evaluator(rows))
            sub = self._rows_view[1]
            if sub is not None:
                return sub.eval(e)
        if self.level == "line" and e not in self.cache and self.ctx.level_of(e) == "claim":
            assert self.parent is not None and self.to_parent is not None
            return take(self.parent.eval(e), self.to_parent[rows])
        return take(self.eval(e), rows)

    def _rows_evaluator(self, rows: Array) -> Evaluator | None:
        """An evaluator of just ``rows`` (a line's claim comes along), sharing what
        this one knows: lookup matches and dictionary codes at those rows."""
        lines = claims = None
        if self.level == "line":
            assert self.parent is not None and self.to_parent is not None
            claims = self.to_parent[rows]
            if bool((claims < 0).any()):
                return None  # an orphan line: no claim to bring along
            lines = rows
        else:
            claims = rows
        ctx = self.ctx.subset(claims, lines)
        parent = self.parent if self.level == "line" else self
        assert parent is not None
        c = Evaluator("claim", RowsTable(parent.table, claims), ctx)
        c.codes = {k: replace(v, indices=v.indices[claims]) for k, v in parent.codes.items()}
        c.lookup_rows = {k: v[claims] for k, v in parent.lookup_rows.items()}
        if lines is None:
            return c
        ln = Evaluator("line", RowsTable(self.table, lines), ctx)
        ln.codes = {k: replace(v, indices=v.indices[lines]) for k, v in self.codes.items()}
        ln.lookup_rows = {k: v[lines] for k, v in self.lookup_rows.items()}
        c.child, ln.parent, ln.to_parent = ln, c, np.arange(len(lines), dtype=np.int64)
        return ln

    def truth(self, e: ir.Expr) -> Array:
        """Rows where a condition is true (null counts as not true)."""
        v = self.eval(e)
        data = np.asarray(V.full(v, self.n), dtype=bool)  # a literal null holds int 0
        return np.asarray(data & V.valid_mask(v, self.n))

    def lookup_index(self, name: str) -> Array:
        if name not in self.lookup_rows:
            self.lookup_rows[name] = self._run_lookup(self.ctx.lookups[name])
        return self.lookup_rows[name]

    # --- dispatch -------------------------------------------------------------
    def _eval(self, e: ir.Expr) -> Vec:
        handler = _HANDLERS.get(type(e))
        if handler is None:
            raise NotImplementedError(f"no kernel for {type(e).__name__}")
        return handler(self, e)

    def _const(self, e: ir.Const | ir.Param) -> Vec:
        return const_vec(e.value, e.type)

    def _field(self, e: ir.Field) -> Vec:
        return V.from_arrow(self.table.column(e.name), e.type)

    def _computed(self, e: ir.Computed) -> Vec:
        v = self.ctx.computed.get((e.level, e.name))
        if v is None:
            raise RuntimeError(f"computed.{e.name} is not available yet (plan stage error)")
        return v

    def _derived(self, e: ir.Derived) -> Vec:
        return self.eval(self.ctx.derived[e.name][1])

    def _lookup_field(self, e: ir.LookupField) -> Vec:
        lk = self.ctx.lookups[e.lookup]
        ref = self.ctx.ref_table(lk)
        col = V.from_arrow(ref.column(e.name), e.type)
        return take(col, self.lookup_index(e.lookup))

    def _lookup_exists(self, e: ir.LookupExists) -> Vec:
        return Vec(t.BOOL, self.lookup_index(e.lookup) >= 0)

    def _run_lookup(self, lk: ir.Lookup) -> Array:
        ref = self.ctx.ref_table(lk)
        nref = ref.num_rows
        ref_from = lookup.dates_of(ref, "valid_from", lookup.NO_DATE_LOW)
        ref_to = lookup.dates_of(ref, "valid_to", lookup.NO_DATE_HIGH)
        as_of = self.eval(lk.as_of)
        row_date = np.ascontiguousarray(V.full(as_of, self.n), dtype=np.int64)
        row_ok = np.ascontiguousarray(V.valid_mask(as_of, self.n))

        encoded: dict[tuple[str, ir.Expr], tuple[Array, Array, int]] = {}

        def keyed(pairs: tuple[tuple[str, ir.Expr], ...]) -> tuple[Array, list[Array], list[int]]:
            ref_codes, row_codes, sizes = [], [], []
            for column, expr in pairs:
                if (column, expr) not in encoded:  # each key column is encoded once
                    encoded[(column, expr)] = self._encode_key(
                        ref.column(column).combine_chunks(), expr
                    )
                rc, wc, size = encoded[(column, expr)]
                ref_codes.append(rc)
                row_codes.append(wc)
                sizes.append(size)
            return lookup.combine(ref_codes, sizes, nref), row_codes, sizes

        rows = np.arange(nref, dtype=np.int64)
        ref_key, row_codes, sizes = keyed(lk.keys)
        if not lk.prefer:
            return lookup.asof_match_codes(
                ref_key, rows, ref_from, ref_to, row_codes, sizes, row_date, row_ok
            )
        general = np.ones(nref, dtype=bool)
        for column, _ in lk.prefer:
            general &= np.asarray(ref.column(column).is_null().to_numpy(zero_copy_only=False))
        sref, srow, ssizes = keyed(lk.keys + lk.prefer)
        specific = lookup.asof_match_codes(
            np.where(general, -1, sref), rows, ref_from, ref_to, srow, ssizes, row_date, row_ok
        )
        # rows without a facility-specific match take the all-facility one
        return lookup.asof_match_codes(
            np.where(general, ref_key, -1),
            rows,
            ref_from,
            ref_to,
            row_codes,
            sizes,
            row_date,
            row_ok,
            prior=specific,
        )

    def _encode_key(self, ref_col: pa.Array, expr: ir.Expr) -> tuple[Array, Array, int]:
        """Codes of a key; a claim-level key of a line lookup is encoded per claim."""
        if self.level == "line" and self.ctx.level_of(expr) == "claim":
            assert self.parent is not None and self.to_parent is not None
            rc, wc, size = self.parent._encode_key(ref_col, expr)
            return rc, gather.take_or(wc, self.to_parent, -1), size
        if expr.type.kind == "str" and pa.types.is_string(ref_col.type):
            # encode the few distinct values, not every row (a line's item code
            # is hashed once per batch however many lookups and windows use it)
            indices, words = self.dictionary(expr)
            ref_codes, word_codes, size = lookup.encode(ref_col, words)
            if len(words) == 0:  # every row null: nothing matches
                return ref_codes, np.full(self.n, -1, dtype=np.int64), size
            return ref_codes, gather.take_or(word_codes, indices, -1), size
        arr = V.to_arrow(self.eval(expr), self.n)
        if ref_col.type != arr.type:
            arr = arr.cast(ref_col.type)
        return lookup.encode(ref_col, arr)

    def _field_codes(self, e: ir.Expr) -> Codes | None:
        if isinstance(e, ir.Field) and e.level == self.level:
            return self.codes.get(e.name)
        return None

    def dictionary(self, e: ir.Expr) -> tuple[Array, pa.Array]:
        """A string expression as (row -> word index, -1 for null; distinct words)."""
        if e not in self.dictionaries:
            codes = self._field_codes(e)
            if codes is not None and codes.unique:
                self.dictionaries[e] = (codes.indices, codes.words)
                return self.dictionaries[e]
            sliced = self._sliced_codes(e)
            if sliced is not None:
                self.dictionaries[e] = sliced
                return sliced
            arr = V.to_arrow(self.eval(e), self.n).cast(pa.string())
            encoded = pc.dictionary_encode(arr)
            indices = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int32)
            self.dictionaries[e] = (indices, encoded.dictionary)
        return self.dictionaries[e]

    def _sliced_codes(self, e: ir.Expr) -> tuple[Array, pa.Array] | None:
        """Codes of a slice of a dictionary-coded column (the card holder: the last 10
        characters of card_no), computed on its distinct words, not on every row."""
        while isinstance(e, ir.Derived):
            e = self.ctx.derived[e.name][1]
        if not (isinstance(e, ir.Call) and e.fn in _SLICES and len(e.args) == 1):
            return None
        arg = e.args[0]
        codes = self._field_codes(arg)
        if codes is None or not codes.unique:
            return None
        assert isinstance(arg, ir.Field)
        words = Evaluator(self.level, pa.table({arg.name: codes.words}), self.ctx)
        sliced = V.to_arrow(words.eval(e), len(codes.words)).cast(pa.string())
        encoded = pc.dictionary_encode(sliced)  # several words can share a slice
        per_word = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int32)
        per_word = np.append(per_word, np.int32(-1))  # code -1 (null) stays null
        return np.asarray(per_word[codes.indices]), encoded.dictionary

    # --- operators --------------------------------------------------------------
    def _arith(self, e: ir.Arith) -> Vec:
        a, b = self.eval(e.left), self.eval(e.right)
        valid = _and_valid(a.valid, b.valid)
        if e.type.kind == "null" or a.type.kind == "null" or b.type.kind == "null":
            return null_vec(e.type)
        sa, sb, s = a.type.scale, b.type.scale, e.type.scale
        x, y = np.asarray(a.data), np.asarray(b.data)
        if e.op in ("+", "-"):
            x, y = V.rescale(x, sa, s), V.rescale(y, sb, s)
            out = V.add(x, y if e.op == "+" else V.neg(y))
        elif e.op == "*":
            out = V.mul(x, y)
        elif power_of_ten(e.right) == s - sa:  # x / 10**k: same integers, k more decimals
            out = x
        else:  # exact division at the result scale, half-up; x / 0 is null
            out = V.div_half_up(V.rescale(x, sa, s + sb), y)
            valid = _and_valid(valid, np.asarray(y != 0))
        return Vec(e.type, V.narrow(np.asarray(out)), valid)

    def _neg(self, e: ir.Neg) -> Vec:
        a = self.eval(e.operand)
        return Vec(a.type, V.neg(np.asarray(a.data)), a.valid)

    def _compare(self, e: ir.Compare) -> Vec:
        a, b = self.eval(e.left), self.eval(e.right)
        if a.type.kind == "null" or b.type.kind == "null":
            return null_vec(t.BOOL)
        if a.is_arrow:
            fn = {
                "==": pc.equal,
                "!=": pc.not_equal,
                "<": pc.less,
                "<=": pc.less_equal,
                ">": pc.greater,
                ">=": pc.greater_equal,
            }[e.op]
            res = fn(a.data, b.data)
            if isinstance(res, pa.Scalar):
                return Vec(t.BOOL, np.bool_(res.as_py() or False), np.asarray(res.is_valid))
            return V.arrow_bool_to_vec(res)
        x, y = np.asarray(a.data), np.asarray(b.data)
        if a.type.is_num:
            s = max(a.type.scale, b.type.scale)
            x, y = V.rescale(x, a.type.scale, s), V.rescale(y, b.type.scale, s)
        op: Callable[[Any, Any], Any] = {
            "==": np.equal,
            "!=": np.not_equal,
            "<": np.less,
            "<=": np.less_equal,
            ">": np.greater,
            ">=": np.greater_equal,
        }[e.op]
        return Vec(t.BOOL, np.asarray(op(x, y), dtype=bool), _and_valid(a.valid, b.valid))

    def _logic(self, e: ir.Logic) -> Vec:
        vs = [self.eval(i) for i in e.items]
        ds = [np.asarray(v.data, dtype=bool) for v in vs]  # a literal null holds int 0
        if e.op == "and":
            true = _all(d & _valid_or_true(v) for d, v in zip(ds, vs, strict=True))
            false = _any(~d & _valid_or_true(v) for d, v in zip(ds, vs, strict=True))
        else:
            true = _any(d & _valid_or_true(v) for d, v in zip(ds, vs, strict=True))
            false = _all(~d & _valid_or_true(v) for d, v in zip(ds, vs, strict=True))
        known = true | false
        return Vec(t.BOOL, true, None if bool(np.all(known)) else known)

    def _not(self, e: ir.Not) -> Vec:
        v = self.eval(e.operand)
        return Vec(t.BOOL, ~np.asarray(v.data, dtype=bool), v.valid)

    def _is_null(self, e: ir.IsNull) -> Vec:
        v = self.eval(e.operand)
        if v.type.kind == "null":
            return Vec(t.BOOL, np.bool_(True))
        return Vec(
            t.BOOL,
            ~V.valid_mask(v, self.n)
            if not v.is_scalar
            else np.bool_(not bool(np.all(V.valid_mask(v, 1)))),
        )

    def _in_set(self, e: ir.InSet) -> Vec:
        v = self.eval(e.operand)
        if v.is_arrow:
            res = pc.is_in(
                _arrow_rows(v, self.n), value_set=pa.array(list(e.values), type=pa.string())
            )
            return Vec(
                t.BOOL, res.fill_null(False).to_numpy(zero_copy_only=False), V.valid_mask(v, self.n)
            )
        data = np.asarray(v.data)
        if v.type.is_num:
            data = V.rescale(data, v.type.scale, e.scale)
            options = np.array(e.values, dtype=data.dtype)
        elif v.type.kind == "date":
            options = np.array([(d - EPOCH).days for d in e.values], dtype=np.int64)
        else:
            options = np.array(e.values)
        return Vec(t.BOOL, np.isin(data, options), v.valid)

    def _case(self, e: ir.Case) -> Vec:
        n = self.n
        out = self._as_type(self.eval(e.default), e.type)
        for cond, value in reversed(e.whens):
            hit = self.truth(cond)
            out = _where(hit, self._as_type(self.eval(value), e.type), out, n)
        return out

    def _as_type(self, v: Vec, ty: t.Type) -> Vec:
        if v.type.kind == "null":
            return null_vec(ty)
        if ty.is_num and v.type.scale != ty.scale:
            return Vec(ty, V.rescale(np.asarray(v.data), v.type.scale, ty.scale), v.valid)
        return v

    def _aggregate(self, e: ir.Aggregate) -> Vec:
        ln = self.child
        assert ln is not None and ln.to_parent is not None
        group = ln.to_parent
        include = ln.truth(e.where) if e.where is not None else np.ones(ln.n, dtype=bool)
        if e.fn == "count":
            return Vec(t.INT, groups.group_count(group, include, self.n))
        if e.fn in ("any", "all"):
            hits = groups.group_count(group, include, self.n)
            if e.fn == "any":
                return Vec(t.BOOL, hits > 0)
            total = groups.group_count(group, np.ones(ln.n, dtype=bool), self.n)
            return Vec(t.BOOL, hits == total)
        assert e.value is not None
        v = ln.eval(e.value)
        include = include & V.valid_mask(v, ln.n)
        data = np.asarray(V.full(v, ln.n))
        if e.fn == "sum":
            return Vec(e.type, V.narrow(groups.group_sum(group, data, include, self.n)))
        out, seen = groups.group_extreme(group, data, include, self.n, e.fn == "max")
        return Vec(e.type, out, seen)

    # --- windows ------------------------------------------------------------------
    # A window looks at [history rows, batch rows] of this level; positions refer to
    # that combined numbering.  The sorting and the measures are in window_eval.

    def _n_history(self) -> int:
        return window_eval.n_history(self)

    def _window_sorted(self, spec: ir.WindowSpec) -> tuple[window.Sorted, Array | None]:
        return window_eval.sorted_window(self, spec)

    def _window(self, e: ir.Window) -> Vec:
        return window_eval.measure(self, e)

    def _take_combined(self, e: ir.Expr, rows: Array) -> Vec:
        """Values of ``e`` at positions of [history rows, batch rows] (-1: null)."""
        return window_eval.take_combined(self, e, rows)

    def _call(self, e: ir.Call) -> Vec:
        fn = _FUNCTIONS.get(e.fn)
        if fn is None:
            raise NotImplementedError(f"no kernel for function {e.fn}()")
        return fn(self, e)


# --- helpers ------------------------------------------------------------------

# string slices (null in, null out) whose codes come from the sliced column's words
_SLICES = frozenset({"right", "substring"})


def const_vec(value: Any, ty: t.Type) -> Vec:
    if value is None or ty.kind == "null":
        return null_vec(ty)
    if ty.kind == "str":
        return Vec(ty, V.str_scalar(value))
    if ty.kind == "date":
        return Vec(ty, np.int64((value - EPOCH).days))
    if ty.kind == "bool":
        return Vec(ty, np.bool_(value))
    return Vec(ty, np.int64(value) if abs(int(value)) < 2**63 else np.asarray(value, dtype=object))


def null_vec(ty: t.Type) -> Vec:
    if ty.kind in ("str", "list_str"):
        return Vec(ty, pa.scalar(None, pa.string()))
    return Vec(ty, np.int64(0) if ty.kind != "bool" else np.bool_(False), np.asarray(False))


def take(v: Vec, idx: Array) -> Vec:
    """Rows ``idx`` of ``v``; -1 gives null (a line without claim, a failed lookup)."""
    if v.is_arrow:
        if isinstance(v.data, pa.Scalar):
            return v
        missing = idx < 0
        any_missing = bool(missing.any())
        indices = pa.array(
            np.where(missing, 0, idx) if any_missing else idx, mask=missing if any_missing else None
        )
        return Vec(v.type, v.data.take(indices))
    if v.is_scalar:
        missing = idx < 0
        return (
            v
            if not missing.any()
            else Vec(v.type, v.data, ~missing & bool(np.all(V.valid_mask(v, 1))))
        )
    valid = v.valid
    if valid is not None and not np.ndim(valid):  # a constant's 0-d mask: every row
        valid = np.full(len(v.data), bool(valid))
    data, valid = gather.take_valid(np.asarray(v.data), idx, valid)
    return Vec(v.type, data, valid)


def _and_valid(a: Array | None, b: Array | None) -> Array | None:
    if a is None:
        return b
    if b is None:
        return a
    return np.asarray(a & b)


def _valid_or_true(v: Vec) -> Any:
    return True if v.valid is None else np.asarray(v.valid)


def _all(items: Any) -> Array:
    out: Any = True
    for i in items:
        out = out & i
    return np.asarray(out)


def _any(items: Any) -> Array:
    out: Any = False
    for i in items:
        out = out | i
    return np.asarray(out)


def _where(hit: Array, a: Vec, b: Vec, n: int) -> Vec:
    if a.is_arrow:
        da = a.data if not isinstance(a.data, pa.Scalar) else pa.repeat(a.data, n)
        db = b.data if not isinstance(b.data, pa.Scalar) else pa.repeat(b.data, n)
        return Vec(a.type, pc.if_else(pa.array(hit), da, db))
    data = np.where(hit, np.asarray(a.data), np.asarray(b.data))
    if a.valid is None and b.valid is None:
        return Vec(a.type, data)
    return Vec(a.type, data, np.where(hit, V.valid_mask(a, n), V.valid_mask(b, n)))


def _arrow_rows(v: Vec, n: int) -> pa.Array:
    """A string Vec as an array of ``n`` rows (a literal is one scalar until here)."""
    return pa.repeat(v.data, n) if isinstance(v.data, pa.Scalar) else v.data


def _days(v: Vec) -> Array:
    d = np.asarray(v.data)
    return V.floor_div(d, SECONDS_PER_DAY) if v.type.kind == "timestamp" else d


# --- functions ------------------------------------------------------------------


def _str_unary(kernel: Callable[[Any], Any], result: t.Type) -> Callable[[Evaluator, ir.Call], Vec]:
    def run(ev: Evaluator, e: ir.Call) -> Vec:
        v = ev.eval(e.args[0])
        res = kernel(_arrow_rows(v, ev.n))
        if result.kind == "num":
            return V.arrow_num_to_vec(res)
        return Vec(result, res)

    return run


def _str_pattern(kernel: Callable[..., Any]) -> Callable[[Evaluator, ir.Call], Vec]:
    def run(ev: Evaluator, e: ir.Call) -> Vec:
        v = ev.eval(e.args[0])
        return V.arrow_bool_to_vec(kernel(_arrow_rows(v, ev.n), e.consts[0]))

    return run


def _matches(data: Any, pattern: str) -> Any:
    return pc.match_substring_regex(data, pattern=f"^(?:{pattern})$")


def _substring(ev: Evaluator, e: ir.Call) -> Vec:
    v = ev.eval(e.args[0])
    start, length = e.consts
    return Vec(t.STR, pc.utf8_slice_codeunits(v.data, start=start, stop=start + length))


def _right(ev: Evaluator, e: ir.Call) -> Vec:
    v = ev.eval(e.args[0])
    (n,) = e.consts
    if n == 0:
        return Vec(t.STR, pc.utf8_slice_codeunits(v.data, start=0, stop=0))
    return Vec(t.STR, pc.utf8_slice_codeunits(v.data, start=-n))


def _date_of(ev: Evaluator, e: ir.Call) -> Vec:
    v = ev.eval(e.args[0])
    return Vec(t.DATE, _days(v), v.valid)


def _date_part(part: str) -> Callable[[Evaluator, ir.Call], Vec]:
    def run(ev: Evaluator, e: ir.Call) -> Vec:
        v = ev.eval(e.args[0])
        days = np.asarray(_days(v)).astype("datetime64[D]")
        years = days.astype("datetime64[Y]").astype(np.int64) + 1970
        if part == "year":
            return Vec(t.INT, years, v.valid)
        months = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
        return Vec(t.INT, years * 100 + months, v.valid)

    return run


def _days_between(ev: Evaluator, e: ir.Call) -> Vec:
    a, b = ev.eval(e.args[0]), ev.eval(e.args[1])
    return Vec(t.INT, np.asarray(_days(b) - _days(a)), _and_valid(a.valid, b.valid))


def _minutes_between(ev: Evaluator, e: ir.Call) -> Vec:
    a, b = ev.eval(e.args[0]), ev.eval(e.args[1])
    return Vec(
        t.INT,
        np.asarray((np.asarray(b.data) - np.asarray(a.data)) // 60),
        _and_valid(a.valid, b.valid),
    )


def _coalesce(ev: Evaluator, e: ir.Call) -> Vec:
    """The first non-null argument; a later argument is read only where the ones
    before it are null (date_of_service falls back to the admission day on the few
    lines without ordered_at: 2% of the lines, not a broadcast to all of them)."""
    out = ev._as_type(ev.eval(e.args[0]), e.type)
    if out.is_arrow:  # strings: every argument whole, chosen row by row
        vs = [out, *(ev._as_type(ev.eval(a), e.type) for a in e.args[1:])]
        out = vs[-1]
        for v in reversed(vs[:-1]):
            out = _where(V.valid_mask(v, ev.n), v, out, ev.n)
        return out
    for arg in e.args[1:]:
        missing = np.flatnonzero(~V.valid_mask(out, ev.n))
        if len(missing) == 0:
            break
        fill = ev._as_type(ev.eval_rows(arg, missing), e.type)
        data = np.array(V.full(out, ev.n), copy=True)
        filled = V.full(fill, len(missing))
        if data.dtype != filled.dtype:  # an exact (object) value on either side
            data = data.astype(object)
        data[missing] = filled
        valid = np.array(V.valid_mask(out, ev.n), copy=True)
        valid[missing] = V.valid_mask(fill, len(missing))
        out = Vec(e.type, data, None if valid.all() else valid)
    return out


def _extreme(want_max: bool) -> Callable[[Evaluator, ir.Call], Vec]:
    def run(ev: Evaluator, e: ir.Call) -> Vec:
        a, b = (ev._as_type(ev.eval(x), e.type) for x in e.args)
        va, vb = V.valid_mask(a, ev.n), V.valid_mask(b, ev.n)
        x, y = V.full(a, ev.n), V.full(b, ev.n)
        pick_a = va & (~vb | ((x > y) if want_max else (x < y)))
        return _where(pick_a, a, b, ev.n)

    return run


def _round(ev: Evaluator, e: ir.Call) -> Vec:
    fused = _rounded_product(ev, e.args[0], e.type)
    if fused is not None:
        return fused
    v = ev.eval(e.args[0])
    return Vec(e.type, V.rescale(np.asarray(v.data), v.type.scale, e.type.scale), v.valid)


def _product_factors(e: ir.Expr) -> tuple[list[ir.Expr], int] | None:
    """``a * b * ... / 10**k``: its factors and the digits divided off (None: not
    such a chain).  Products and divisions by a power of ten are exact, so the
    chain's value is exact up to the one rounding around it."""
    if isinstance(e, ir.Arith) and e.op == "*":
        left, right = _product_factors(e.left), _product_factors(e.right)
        if left is None or right is None or e.type.scale != e.left.type.scale + e.right.type.scale:
            return None
        return left[0] + right[0], left[1] + right[1]
    if isinstance(e, ir.Arith) and e.op == "/":
        k = power_of_ten(e.right)
        left = _product_factors(e.left)
        if k is None or left is None or e.type.scale != e.left.type.scale + k:
            return None
        return left[0], left[1] + k
    if isinstance(e, ir.Arith) or not e.type.is_num:
        return None
    return [e], 0


def _rounded_product(ev: Evaluator, e: ir.Expr, ty: t.Type) -> Vec | None:
    """``round(a * b * c / 100, 2)`` in one pass (money.product_rounded): the line
    amounts' formulas, without a full column per intermediate product."""
    chain = _product_factors(e)
    if chain is None or not 2 <= len(chain[0]) <= 4:
        return None
    factors, digits = chain
    values = [ev.eval(f) for f in factors]
    arrays = [np.asarray(v.data) for v in values]
    if any(v.is_arrow for v in values) or any(a.dtype.kind not in "iu" for a in arrays):
        return None
    if all(a.ndim == 0 for a in arrays):
        return None  # constants only: the usual path
    # a constant stays one value (stride 0 in the kernel), not a column of copies
    data = money.product_rounded(
        [(a, v.type.scale) for a, v in zip(arrays, values, strict=True)], digits, ty.scale
    )
    valid: Array | None = None
    for v in values:
        valid = _and_valid(valid, None if v.valid is None else V.valid_mask(v, ev.n))
    return Vec(ty, data, valid)


def _abs(ev: Evaluator, e: ir.Call) -> Vec:
    v = ev.eval(e.args[0])
    return Vec(v.type, np.abs(np.asarray(v.data)), v.valid)


def _list_contains(ev: Evaluator, e: ir.Call) -> Vec:
    lst, s = ev.eval(e.args[0]), ev.eval(e.args[1])
    flat = pc.list_flatten(lst.data)
    parents = pc.list_parent_indices(lst.data).to_numpy()
    needle = s.data if isinstance(s.data, pa.Scalar) else s.data.take(pa.array(parents))
    eq = pc.equal(flat, needle).fill_null(False).to_numpy(zero_copy_only=False)
    out = np.zeros(ev.n, dtype=bool)
    out[parents[eq]] = True
    return Vec(t.BOOL, out, V.valid_mask(lst, ev.n) & V.valid_mask(s, ev.n))


_FUNCTIONS: dict[str, Callable[[Evaluator, ir.Call], Vec]] = {
    "length": _str_unary(pc.utf8_length, t.INT),
    "upper": _str_unary(pc.utf8_upper, t.STR),
    "lower": _str_unary(pc.utf8_lower, t.STR),
    "starts_with": _str_pattern(lambda d, p: pc.starts_with(d, pattern=p)),
    "ends_with": _str_pattern(lambda d, p: pc.ends_with(d, pattern=p)),
    "contains": _str_pattern(lambda d, p: pc.match_substring(d, pattern=p)),
    "matches": _str_pattern(_matches),
    "substring": _substring,
    "right": _right,
    "year_of": _date_part("year"),
    "month_of": _date_part("month"),
    "date_of": _date_of,
    "days_between": _days_between,
    "minutes_between": _minutes_between,
    "coalesce": _coalesce,
    "least": _extreme(False),
    "greatest": _extreme(True),
    "round": _round,
    "abs": _abs,
    "list_contains": _list_contains,
}

_HANDLERS: dict[type, Callable[[Evaluator, Any], Vec]] = {
    ir.Const: Evaluator._const,
    ir.Param: Evaluator._const,
    ir.Field: Evaluator._field,
    ir.Computed: Evaluator._computed,
    ir.Derived: Evaluator._derived,
    ir.LookupField: Evaluator._lookup_field,
    ir.LookupExists: Evaluator._lookup_exists,
    ir.Arith: Evaluator._arith,
    ir.Neg: Evaluator._neg,
    ir.Compare: Evaluator._compare,
    ir.Logic: Evaluator._logic,
    ir.Not: Evaluator._not,
    ir.IsNull: Evaluator._is_null,
    ir.InSet: Evaluator._in_set,
    ir.Case: Evaluator._case,
    ir.Aggregate: Evaluator._aggregate,
    ir.Call: Evaluator._call,
    ir.Window: Evaluator._window,
}
