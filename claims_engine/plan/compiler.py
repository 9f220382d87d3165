"""Compile a rule pack into a Plan, as an ordered tuple of small passes.

    read pack (shapes) -> scope -> lookups -> named values -> rules -> stages
    -> shared subexpressions

Each pass is a plain function; every error in the author's text becomes a
PackError with file, line, column, the rule id and an excerpt with a caret.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from claims_engine import schema
from claims_engine.errors import PackError
from claims_engine.lang import ast, ir
from claims_engine.lang import types as t
from claims_engine.lang.checker import Checker, LookupSig, Scope, const_from_python
from claims_engine.lang.errors import ExprError
from claims_engine.lang.parser import parse
from claims_engine.pack.loader import Item, PackSource, read_pack
from claims_engine.pack.models import DeriveModel, RuleModel
from claims_engine.pack.source import PosDict, PosList, Where, excerpt, expression_position
from claims_engine.plan.plan import (
    STAGE_ELIGIBLE,
    STAGE_FUND,
    STAGE_INPUT,
    CompiledRule,
    MessagePart,
    Plan,
)

# Values the engine computes after rejections; rules reading them run later.
COMPUTED: dict[tuple[str, str], tuple[t.Type, int]] = {
    ("line", "eligible"): (t.num(2), STAGE_ELIGIBLE),
    ("claim", "eligible"): (t.num(2), STAGE_ELIGIBLE),
    ("line", "fund_pays"): (t.num(2), STAGE_FUND),
    ("claim", "fund_pays"): (t.num(2), STAGE_FUND),
}

# Named values every pack gets, written in the rule language itself.
BUILTIN_VALUES: tuple[tuple[str, str, str], ...] = (
    ("date_of_service", "line", "coalesce(date_of(ordered_at), date_of(admitted_at))"),
    ("admission_date", "claim", "date_of(admitted_at)"),
    ("age_days", "claim", "days_between(birth_date, date_of(admitted_at))"),
    ("inpatient", "claim", "visit_type in [3, 4]"),
    ("card_holder", "claim", "right(card_no, 10)"),
)


@dataclass
class _State:
    source: PackSource
    scope: Scope
    lookups: dict[str, ir.Lookup] = field(default_factory=dict)
    derived: dict[str, tuple[str, ir.Expr]] = field(default_factory=dict)
    derived_stage: dict[str, int] = field(default_factory=dict)
    rules: list[CompiledRule] = field(default_factory=list)


def _scope(state: _State, level: str, window: bool = True) -> Scope:
    """What names mean at ``level`` now: fields, params, lookups, the values so far."""
    return Scope(
        level,
        state.scope.claim_fields,
        state.scope.line_fields,
        state.scope.params,
        state.scope.lookups,
        {n: (lv, e.type) for n, (lv, e) in state.derived.items()},
        state.scope.computed,
        state.scope.window if window else {},
    )


def _fail(where: Where, label: str, key: str, text: str, err: ExprError) -> PackError:
    line, col = expression_position(where, text, err.offset)
    hint = ""
    if where.style is None and (
        text.count("(") != text.count(")") or text.count("[") != text.count("]")
    ):
        hint = (
            "\n  (YAML splits an unquoted expression at the commas inside [...] or {...}: "
            "quote it, or write it in block style)"
        )
    return PackError(
        f"{where.file}:{line}:{col}: {label}, {key}: {err.message}\n{excerpt(text, err.offset)}"
        + hint
    )


def _expr(
    state: _State,
    text: str,
    level: str,
    where: Where,
    label: str,
    key: str,
    expect: t.Type | None = None,
) -> ir.Expr:
    scope = _scope(state, level)
    try:
        return Checker(scope).check(parse(str(text)), expect)
    except ExprError as err:
        raise _fail(where, label, key, str(text), err) from None


# --- passes -------------------------------------------------------------------


def pass_scope(source: PackSource) -> Scope:
    params: dict[str, tuple[Any, t.Type]] = {}
    for name, value in source.pack.params.items():
        try:
            c = const_from_python(
                value if not isinstance(value, float) else Decimal(repr(value)), 0
            )
        except ExprError as err:
            raise PackError(
                f"{source.pack_raw.where.get('params')}: params.{name}: {err.message}"
            ) from None
        params[name] = (c.value, c.type)
    fields = {c.name: t.from_arrow(c.type) for c in schema.CLAIM_COLUMNS}
    lines = {c.name: t.from_arrow(c.type) for c in schema.LINE_COLUMNS}
    computed = {k: ty for k, (ty, _) in COMPUTED.items()}
    return Scope("claim", fields, lines, params, {}, {}, computed)


def pass_lookups(state: _State) -> None:
    raw_lookups = state.source.pack_raw.get("lookups", PosDict())
    for name, model in state.source.pack.lookups.items():
        where = raw_lookups.where.get(name, state.source.pack_raw.start)
        label = f"lookup {name}"
        tables = (
            tuple(model.table.items()) if isinstance(model.table, dict) else (("", model.table),)
        )
        columns: dict[str, t.Type] = {}
        for _, tname in tables:
            spec = schema.REFERENCE_TABLE_BY_NAME.get(tname)
            if spec is None:
                from claims_engine.lang.errors import did_you_mean

                hint = did_you_mean(tname, schema.REFERENCE_TABLE_BY_NAME)
                raise PackError(f"{where}: {label}: unknown reference table '{tname}'.{hint}")
            for col in spec.columns + schema.VALIDITY_COLUMNS:
                columns.setdefault(col.name, t.from_arrow(col.type))
        if model.discriminator:
            columns[model.discriminator] = t.STR
        raw_lk = raw_lookups.get(name)

        def at(
            key: str, column: str | None = None, _raw: Any = raw_lk, _where: Where = where
        ) -> Where:
            """Where the lookup's ``key`` (or its ``column`` entry) is written."""
            if not isinstance(_raw, PosDict):
                return _where
            if column is None:
                return _raw.where.get(key, _where)
            inner = _raw.get(key)
            return inner.where.get(column, _where) if isinstance(inner, PosDict) else _where

        def pairs(
            mapping: dict[str, str],
            key: str,
            _cols: dict[str, t.Type] = columns,
            _where: Where = where,
            _label: str = label,
            _level: str = model.level,
        ) -> tuple[tuple[str, ir.Expr], ...]:
            out = []
            for column, text in mapping.items():
                if column not in _cols:
                    raise PackError(
                        f"{_where}: {_label}: {key}: the table has no column "
                        f"'{column}' (columns: {', '.join(sorted(_cols))})"
                    )
                e = _expr(state, text, _level, at(key, column), _label, f"{key}.{column}")
                if not t.comparable(e.type, _cols[column]):
                    raise PackError(
                        f"{_where}: {_label}: {key}.{column}: {e.type} value for a "
                        f"{_cols[column]} column"
                    )
                out.append((column, e))
            return tuple(out)

        keys = pairs(model.keys, "keys")
        prefer = pairs(model.prefer, "prefer")
        as_of = _expr(state, model.as_of, model.level, at("as_of"), label, "as_of", t.DATE)
        lk = ir.Lookup(
            name,
            model.level,
            tables,
            model.discriminator,
            keys,
            prefer,
            as_of,
            model.required,
            tuple(sorted(columns.items())),
        )
        state.lookups[name] = lk
        state.scope = Scope(
            state.scope.level,
            state.scope.claim_fields,
            state.scope.line_fields,
            state.scope.params,
            {**state.scope.lookups, name: LookupSig(model.level, columns)},
            state.scope.derived,
            state.scope.computed,
        )


def pass_builtin_values(state: _State) -> None:
    for name, level, text in BUILTIN_VALUES:
        state.derived[name] = (
            level,
            _expr(
                state, text, level, state.source.pack_raw.start, f"built-in value {name}", "value"
            ),
        )


def _cell_condition(
    state: _State, input_ast: ast.Node, cell: Any, level: str, where: Where, label: str
) -> ir.Expr | None:
    """A decision-table cell as a condition on its input (None for 'any')."""
    if cell is None or (isinstance(cell, str) and cell.strip().lower() == "any"):
        return None
    pos = ast.Pos(0)
    node: ast.Node
    if isinstance(cell, list):
        node = ast.In(
            pos, input_ast, ast.ListLit(pos, tuple(ast.Literal(pos, v) for v in cell)), False
        )
    elif (isinstance(cell, str) and cell.strip()[:2] in ("<=", ">=", "!=", "==")) or (
        isinstance(cell, str) and cell.strip()[:1] in ("<", ">")
    ):
        text = cell.strip()
        op = text[:2] if text[:2] in ("<=", ">=", "!=", "==") else text[:1]
        try:
            literal = parse(text[len(op) :].strip())
        except ExprError as err:
            raise PackError(f"{where}: {label}: cell {cell!r}: {err.message}") from None
        node = ast.Binary(pos, op, input_ast, literal)
    else:
        node = ast.Binary(pos, "==", input_ast, ast.Literal(pos, cell))
    scope = _scope(state, level, window=False)
    try:
        return Checker(scope).check(node, t.BOOL)
    except ExprError as err:
        raise PackError(f"{where}: {label}: cell {cell!r}: {err.message}") from None


def _table(state: _State, item: Item, model: DeriveModel) -> ir.Expr:
    assert model.table is not None
    label = f"table {model.derive}"
    body = item.raw.get("table")
    if not isinstance(body, PosDict):  # RULES-EXAMPLE.md form: inputs and rows beside 'table'
        body = item.raw
    rows_raw = body.get("rows") if isinstance(body, PosDict) else None
    rows_where: list[Where] = rows_raw.where if isinstance(rows_raw, PosList) else []
    inputs_raw = body.get("inputs") if isinstance(body, PosDict) else None
    inputs: list[ast.Node] = []
    for i, text in enumerate(model.table.inputs):
        w = inputs_raw.where[i] if isinstance(inputs_raw, PosList) else item.where()
        _expr(state, text, model.level, w, label, f"inputs[{i}]")  # type-check it alone first
        inputs.append(parse(text))
    whens: list[tuple[ir.Expr, ir.Expr]] = []
    out_type: t.Type | None = None
    default: ir.Expr | None = None
    for r, row in enumerate(model.table.rows):
        where = rows_where[r] if r < len(rows_where) else item.where()
        if len(row) != len(inputs) + 1:
            raise PackError(
                f"{where}: {label}: row {r + 1} has {len(row)} cells, expected "
                f"{len(inputs)} inputs and 1 result"
            )
        value = const_from_python(row[-1], 0)
        out_type = value.type if out_type is None else t.unify(out_type, value.type)
        if out_type is None:
            raise PackError(
                f"{where}: {label}: row {r + 1}: result {row[-1]!r} does not match "
                "the type of the results above"
            )
        conds = [
            c
            for c in (
                _cell_condition(state, inp, cell, model.level, where, label)
                for inp, cell in zip(inputs, row[:-1], strict=True)
            )
            if c is not None
        ]
        if not conds:
            default = value
            if r != len(model.table.rows) - 1:
                raise PackError(
                    f"{where}: {label}: row {r + 1} matches everything, so the "
                    "rows below it can never be reached"
                )
            break
        whens.append((conds[0] if len(conds) == 1 else ir.Logic("and", tuple(conds)), value))
    if default is None:
        raise PackError(
            f"{item.where()}: {label}: the last row must match everything "
            "(all cells 'any'), so every claim gets a value"
        )
    assert out_type is not None
    return ir.Case(tuple(whens), default, out_type)


def pass_values_and_rules(state: _State) -> None:
    for item in state.source.items:
        m = item.model
        if isinstance(m, DeriveModel):
            if m.value is not None:
                e = _expr(state, m.value, m.level, item.where("value"), item.label, "value")
            else:
                e = _table(state, item, m)
            state.derived[m.derive] = (m.level, e)
            state.derived_stage[m.derive] = _stage(state, e)
        else:
            state.rules.append(_rule(state, item, m))


WINDOW_MEASURES = ("count", "sum", "min", "max", "first", "last")


def _window(state: _State, item: Item, m: RuleModel) -> dict[str, ir.Expr]:
    """A window rule's measures, type-checked; named ``window.<name>`` in its rule."""
    assert m.window is not None
    w, label, level = m.window, item.label, m.level
    raw = item.raw.get("window")
    where: dict[Any, Where] = raw.where if isinstance(raw, PosDict) else {}
    block = item.where("window")

    def at(key: str, default: Where | None = None) -> Where:
        return where.get(key, default or block)

    def expr(text: str, key: str, expect: t.Type | None = None) -> ir.Expr:
        return _expr(
            state, text, level, at(key, item.where("window")), label, f"window.{key}", expect
        )

    partition = tuple(expr(x, "partition") for x in w.partition)
    order = tuple(expr(x, "order") for x in w.order)
    for e in (*partition, *order):
        if e.type.kind in ("bool", "list_str", "null"):
            raise PackError(
                f"{item.where('window')}: {label}: window keys must be numbers, "
                f"dates, timestamps or text, not {e.type}"
            )
    cond = expr(w.where, "where", t.BOOL) if w.where else None
    day = expr(w.day, "day", t.DATE) if w.day else None
    days = expr(w.days, "days", t.INT) if w.days else None
    if day is not None and order[0] != day:
        raise PackError(
            f"{item.where('window')}: {label}: window.day must also be the first "
            "order key (the window looks back over days in order)"
        )
    spec = ir.WindowSpec(level, partition, order, cond, day, days)
    measures: dict[str, ir.Expr] = {}
    for name, text in w.measures.items():
        try:
            node = parse(text)
        except ExprError as err:
            raise _fail(
                at("measures", item.where()), label, f"window.measures.{name}", text, err
            ) from None
        if not isinstance(node, ast.Call) or node.name not in WINDOW_MEASURES:
            raise PackError(
                f"{at('measures', item.where())}: {label}: window.measures.{name}: "
                f"expected one of {', '.join(f'{f}(...)' for f in WINDOW_MEASURES)}"
            )
        args = [
            _expr(state, a, level, at("measures", item.where()), label, f"window.measures.{name}")
            for a in _call_arguments(text)
        ]
        fn = node.name
        if fn == "count":
            if len(args) > 1 or (args and args[0].type.kind != "bool"):
                raise PackError(
                    f"{at('measures', item.where())}: {label}: count() takes an optional condition"
                )
            measures[name] = ir.Window(spec, fn, None, args[0] if args else None, t.INT)
            continue
        if len(args) not in (1, 2) or (len(args) == 2 and args[1].type.kind != "bool"):
            raise PackError(
                f"{at('measures', item.where())}: {label}: {fn}() takes a value "
                "and an optional condition"
            )
        value = args[0]
        if fn == "sum" and not value.type.is_num:
            raise PackError(f"{at('measures', item.where())}: {label}: sum() needs a number")
        if fn in ("min", "max") and not (value.type.is_num or value.type.is_temporal):
            raise PackError(
                f"{at('measures', item.where())}: {label}: {fn}() needs a number or a date"
            )
        if days is not None and fn not in ("count", "sum"):
            raise PackError(
                f"{at('measures', item.where())}: {label}: with days:, only count() "
                "and sum() are supported"
            )
        measures[name] = ir.Window(spec, fn, value, args[1] if len(args) == 2 else None, value.type)
    return measures


def _call_arguments(text: str) -> list[str]:
    """The source text of each argument of the call ``text`` (``f(a, g(b, c))`` -> a, g(b, c))."""
    from claims_engine.lang.parser import tokenize

    args: list[str] = []
    depth, start = 0, -1
    for tok in tokenize(text):
        if tok.kind == "op" and tok.text in ("(", "["):
            depth += 1
            if depth == 1:
                start = tok.offset + 1
        elif tok.kind == "op" and tok.text in (")", "]"):
            depth -= 1
            if depth == 0:
                if text[start : tok.offset].strip():
                    args.append(text[start : tok.offset])
                break
        elif tok.kind == "op" and tok.text == "," and depth == 1:
            args.append(text[start : tok.offset])
            start = tok.offset + 1
    return [a.strip() for a in args]


def _rule(state: _State, item: Item, m: RuleModel) -> CompiledRule:
    label = item.label
    saved = state.scope
    if m.window is not None:
        state.scope = replace(state.scope, window=_window(state, item, m))
    try:
        return _checked_rule(state, item, m, label)
    finally:
        state.scope = saved


def _checked_rule(state: _State, item: Item, m: RuleModel, label: str) -> CompiledRule:
    when = _expr(state, m.when, m.level, item.where("when"), label, "when", t.BOOL)
    sets = []
    for target, text in (m.set or {}).items():
        e = _expr(
            state,
            text,
            m.level,
            item.raw.get("set", PosDict()).where.get(target, item.where("set"))
            if isinstance(item.raw.get("set"), PosDict)
            else item.where("set"),
            label,
            f"set.{target}",
        )
        if not e.type.is_num:
            raise PackError(
                f"{item.where('set')}: {label}: set.{target} needs a number, this is a {e.type}"
            )
        sets.append((target, e))
    message = _message(state, m.message, m.level, item.where("message"), label)
    stage = max(
        [_stage(state, when)]
        + [_stage(state, e) for _, e in sets]
        + [_stage(state, p.expr) for p in message if p.expr is not None]
    )
    if stage > STAGE_INPUT and m.severity == "reject":
        raise PackError(
            f"{item.where('severity')}: {label}: a reject rule cannot read computed "
            "amounts (computed.*): rejections decide what is eligible; use flag"
        )
    if stage == STAGE_FUND and m.severity == "adjust":
        raise PackError(
            f"{item.where('severity')}: {label}: an adjust rule cannot read "
            "computed.fund_pays, which it would change"
        )
    return CompiledRule(
        m.id,
        m.title,
        m.basis,
        m.level,
        m.severity,
        m.code,
        when,
        message,
        tuple(sets),
        stage,
        m.effective_from,
        m.effective_to,
        f"{item.file.name}:{item.where().line}",
    )


def _message(
    state: _State, text: str, level: str, where: Where, label: str
) -> tuple[MessagePart, ...]:
    parts: list[MessagePart] = []
    i = 0
    while i < len(text):
        j = text.find("{", i)
        if j < 0:
            parts.append(MessagePart(text[i:]))
            break
        if j > i:
            parts.append(MessagePart(text[i:j]))
        k = text.find("}", j)
        if k < 0:
            raise PackError(f"{where}: {label}, message: '{{' at character {j + 1} is not closed")
        source = text[j + 1 : k]
        try:
            e = Checker(_scope(state, level)).check(parse(source))
        except ExprError as err:
            raise _fail(
                where, label, "message", text, ExprError(err.message, j + 1 + err.offset)
            ) from None
        parts.append(MessagePart(source, e))
        i = k + 1
    return tuple(parts)


def _stage(state: _State, e: ir.Expr) -> int:
    stage = STAGE_INPUT
    for node in ir.walk(e):
        if isinstance(node, ir.Computed):
            stage = max(stage, COMPUTED[(node.level, node.name)][1])
        elif isinstance(node, ir.Derived):
            stage = max(stage, state.derived_stage.get(node.name, STAGE_INPUT))
    return stage


def pass_shared(state: _State) -> frozenset[ir.Expr]:
    """Subexpressions used more than once across rules and values: computed once."""
    counts: Counter[ir.Expr] = Counter()
    roots: list[ir.Expr] = [e for _, e in state.derived.values()]
    roots += [e for lk in state.lookups.values() for e in (lk.as_of,)]
    for r in state.rules:
        roots += [r.when, *(e for _, e in r.sets)]
    for root in roots:
        for node in ir.walk(root):
            if node.children():
                counts[node] += 1
    return frozenset(e for e, n in counts.items() if n > 1)


PASSES: tuple[Callable[[_State], None], ...] = (
    pass_builtin_values,
    pass_lookups,
    pass_values_and_rules,
)


def compile_source(source: PackSource) -> Plan:
    state = _State(source, pass_scope(source))
    for run in PASSES:
        run(state)
    for name in state.derived:
        state.derived_stage.setdefault(name, _stage(state, state.derived[name][1]))
    params = tuple((name, source.pack.params[name]) for name in source.pack.params)
    return Plan(
        source.pack.id,
        source.pack.version,
        source.hash,
        params,
        state.lookups,
        state.derived,
        state.derived_stage,
        tuple(state.rules),
        pass_shared(state),
    )


def compile_pack(name_or_path: str | Path = "vn_bhyt") -> Plan:
    """Read, check and compile a pack; raises PackError on any problem in it."""
    return compile_source(read_pack(name_or_path))


__all__ = ["compile_pack", "compile_source", "date"]
