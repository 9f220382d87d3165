"""Plans and expressions as stable, readable text (golden files, `rules show`)."""

from __future__ import annotations

from claims_engine.lang import ir
from claims_engine.plan.plan import STAGE_NAMES, Plan


def render_expr(e: ir.Expr) -> str:
    if isinstance(e, ir.Const):
        if e.type.is_num and e.type.scale:
            v = int(e.value)
            sign, v = ("-" if v < 0 else ""), abs(v)
            s = e.type.scale
            return f"{sign}{v // 10**s}.{v % 10**s:0{s}d}"
        return repr(e.value) if not hasattr(e.value, "isoformat") else e.value.isoformat()
    if isinstance(e, ir.Param):
        return f"params.{e.name}"
    if isinstance(e, ir.Field):
        return f"{e.level}.{e.name}"
    if isinstance(e, ir.LookupField):
        return f"{e.lookup}.{e.name}"
    if isinstance(e, ir.LookupExists):
        return f"exists({e.lookup})"
    if isinstance(e, ir.Derived):
        return f"<{e.name}>"
    if isinstance(e, ir.Computed):
        return f"computed.{e.level}.{e.name}"
    if isinstance(e, ir.Arith):
        return f"({render_expr(e.left)} {e.op} {render_expr(e.right)}):{e.type}"
    if isinstance(e, ir.Neg):
        return f"-{render_expr(e.operand)}"
    if isinstance(e, ir.Compare):
        return f"({render_expr(e.left)} {e.op} {render_expr(e.right)})"
    if isinstance(e, ir.Logic):
        return "(" + f" {e.op} ".join(render_expr(i) for i in e.items) + ")"
    if isinstance(e, ir.Not):
        return f"not {render_expr(e.operand)}"
    if isinstance(e, ir.IsNull):
        return f"({render_expr(e.operand)} is null)"
    if isinstance(e, ir.InSet):
        return f"({render_expr(e.operand)} in {list(e.values)}@{e.scale})"
    if isinstance(e, ir.Call):
        args = [render_expr(a) for a in e.args] + [repr(c) for c in e.consts]
        return f"{e.fn}({', '.join(args)}):{e.type}"
    if isinstance(e, ir.Aggregate):
        parts = [render_expr(x) for x in (e.value, e.where) if x is not None]
        return f"{e.fn}(lines{''.join(', ' + p for p in parts)})"
    if isinstance(e, ir.Window):
        sp = e.spec
        parts = [
            f"by {', '.join(render_expr(p) for p in sp.partition)}",
            f"order {', '.join(render_expr(o) for o in sp.order)}",
        ]
        if sp.where is not None:
            parts.append(f"where {render_expr(sp.where)}")
        if sp.day is not None and sp.days is not None:
            parts.append(f"days {render_expr(sp.days)} back from {render_expr(sp.day)}")
        args = [render_expr(x) for x in (e.value, e.cond) if x is not None]
        return f"window[{sp.level}; {'; '.join(parts)}].{e.fn}({', '.join(args)})"
    if isinstance(e, ir.Case):
        whens = " ".join(f"when {render_expr(c)} then {render_expr(v)}" for c, v in e.whens)
        return f"case {whens} else {render_expr(e.default)} end:{e.type}"
    raise TypeError(type(e).__name__)


def render_plan(plan: Plan) -> str:
    out = [f"pack {plan.pack_id} {plan.version}"]
    for name, value in plan.params:
        out.append(f"param {name} = {value}")
    for lk in plan.lookups.values():
        tables = ", ".join(f"{label}:{t}" if label else t for label, t in lk.tables)
        keys = ", ".join(f"{c} = {render_expr(x)}" for c, x in lk.keys)
        prefer = ", ".join(f"{c} = {render_expr(x)}" for c, x in lk.prefer)
        out.append(
            f"lookup {lk.name} [{lk.level}] in {tables} on {keys or '-'}"
            + (f" prefer {prefer}" if prefer else "")
            + f" as of {render_expr(lk.as_of)}"
            + (" required" if lk.required else "")
        )
    for name, (level, expr) in plan.derived.items():
        stage = STAGE_NAMES[plan.derived_stage[name]]
        out.append(f"derive {name} [{level}, {stage}] = {render_expr(expr)}")
    for r in plan.rules:
        out.append(f"rule {r.id} [{r.level} {r.severity} {r.code}, {STAGE_NAMES[r.stage]}]")
        out.append(f"  when {render_expr(r.when)}")
        for target, x in r.sets:
            out.append(f"  set {target} = {render_expr(x)}")
        msg = "".join(
            p.text if p.expr is None else "{" + render_expr(p.expr) + "}" for p in r.message
        )
        out.append(f"  message {msg}")
    shared = sorted(render_expr(e) for e in plan.cacheable)
    out.append(f"shared subexpressions: {len(shared)}")
    out += [f"  {s}" for s in shared]
    return "\n".join(out) + "\n"
