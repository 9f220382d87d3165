"""Window rules a rule author writes: visits in N days, item pairs, required items,
one practitioner in two places at once, yearly limits (issue 4, item 2)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from builders import batch

from claims_engine import adjudicate, engine
from claims_engine.errors import PackError
from claims_engine.kernels import evaluate
from claims_engine.kernels import values as V
from claims_engine.kernels.values import Vec
from claims_engine.lang import ir, types
from claims_engine.plan.compiler import compile_pack

RULES = """
- id: visits.too_many
  title: More than 2 outpatient visits in 30 days
  basis: test
  level: claim
  severity: flag
  code: TOO_MANY_VISITS
  window:
    partition: [card_holder]
    order: [admission_date, admitted_at, claim_id]
    where: visit_type == 1
    day: admission_date
    days: 30
    measures: {visits: count()}
  when: visit_type == 1 and window.visits >= 2
  message: "{window.visits} earlier visits in 30 days"

- id: pair.same_day
  title: Items A1 and B1 not both on one day for one person; the second is rejected
  basis: test
  level: line
  severity: reject
  code: PAIR_SAME_DAY
  window:
    partition: [card_holder, date_of_service]
    order: [admitted_at, claim_id, line_no]
    measures:
      a: count(item_code == 'A1')
      b: count(item_code == 'B1')
  when: (item_code == 'A1' and window.b > 0) or (item_code == 'B1' and window.a > 0)
  message: "{item_code} on {date_of_service} after its pair"

- id: requires.other_item
  title: Item R1 requires item R2 in the same claim
  basis: test
  level: line
  severity: reject
  code: REQUIRES_ITEM
  when: item_code == 'R1' and not any(lines, item_code == 'R2')
  message: "{item_code} without R2"

- id: practitioner.two_places
  title: One practitioner performing in two facilities in the same minute
  basis: test
  level: line
  severity: flag
  code: PRACTITIONER_TWO_PLACES
  window:
    partition: [practitioner, performed_at]
    order: [admitted_at, claim_id, line_no]
    measures: {first_facility: first(facility_id), n: count()}
  when: window.n > 0 and window.first_facility != facility_id
  message: "{practitioner} at {performed_at} also at {window.first_facility}"

- id: yearly.limit
  title: At most 1 Y1 per calendar year
  basis: test
  level: line
  severity: reject
  code: YEARLY_LIMIT
  window:
    partition: [card_holder, item_code, year_of(date_of_service)]
    order: [date_of_service, admitted_at, claim_id, line_no]
    where: item_code == 'Y1'
    measures: {n: count()}
  when: item_code == 'Y1' and window.n >= 1
  message: "{item_code}: {window.n} earlier this year"
"""


@pytest.fixture(scope="module")
def mini_plan(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("pack")
    (folder / "pack.yaml").write_text("id: mini\nversion: '1'\n")
    (folder / "rules.yaml").write_text(RULES)
    return compile_pack(folder)


def codes(
    plan: Any,
    reference: dict[str, pa.Table],
    claims: list[dict[str, Any]],
    lines: list[dict[str, Any]],
) -> dict[Any, list[str]]:
    result = adjudicate.build(engine.run(plan, batch(claims, lines), reference), plan, "t")
    out: dict[Any, list[str]] = {}
    for t in (result.approved, result.rejected, result.flagged):
        for r in t.to_pylist():
            out[r["claim_id"]] = r["reason_codes"]
    for r in result.lines.to_pylist():
        out[(r["claim_id"], r["line_no"])] = r["reason_codes"]
    return out


def visit(cid: str, day: int, month: int = 3, year: int = 2025, **kw: Any) -> dict[str, Any]:
    return {
        "claim_id": cid,
        "admitted_at": datetime(year, month, day, 8),
        "discharged_at": datetime(year, month, day, 9),
        **kw,
    }


def test_visits_in_30_days(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    claims = [visit("V1", 1), visit("V2", 10), visit("V3", 20), visit("V4", 2, month=5)]
    out = codes(mini_plan, reference, claims, [{"claim_id": c["claim_id"]} for c in claims])
    assert out["V3"] == ["TOO_MANY_VISITS"]
    assert out["V1"] == out["V2"] == out["V4"] == []


def test_item_pairs_reject_the_second(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    claims = [visit("P1", 1), visit("P2", 1)]
    claims[1]["admitted_at"] = datetime(2025, 3, 1, 10)
    claims[1]["discharged_at"] = datetime(2025, 3, 1, 11)
    lines = [
        {"claim_id": "P1", "item_code": "A1", "ordered_at": datetime(2025, 3, 1, 8, 30)},
        {"claim_id": "P2", "item_code": "B1", "ordered_at": datetime(2025, 3, 1, 10, 30)},
    ]
    out = codes(mini_plan, reference, claims, lines)
    assert "PAIR_SAME_DAY" not in out[("P1", 1)]
    assert "PAIR_SAME_DAY" in out[("P2", 1)]


def test_required_item_in_the_same_claim(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    claims = [visit("R", 1), visit("S", 2)]
    lines = [
        {"claim_id": "R", "item_code": "R1"},
        {"claim_id": "R", "line_no": 2, "item_code": "R2"},
        {"claim_id": "S", "item_code": "R1", "ordered_at": datetime(2025, 3, 2, 8, 30)},
    ]
    out = codes(mini_plan, reference, claims, lines)
    assert "REQUIRES_ITEM" not in out[("R", 1)]
    assert "REQUIRES_ITEM" in out[("S", 1)]


def test_practitioner_in_two_facilities(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    at = datetime(2025, 3, 1, 8, 30)
    claims = [visit("D1", 1), visit("D2", 1, card_no="DN4010999999999", facility_id="01102")]
    lines = [
        {"claim_id": "D1", "practitioner": "BS9", "performed_at": at},
        {"claim_id": "D2", "practitioner": "BS9", "performed_at": at},
    ]
    out = codes(mini_plan, reference, claims, lines)
    assert out[("D1", 1)] == []
    assert out[("D2", 1)] == ["PRACTITIONER_TWO_PLACES"]


def test_calendar_year_windows(mini_plan: Any, reference: dict[str, pa.Table]) -> None:
    claims = [
        visit("Y1a", 1, month=2),
        visit("Y1b", 1, month=11),
        visit("Y1c", 5, month=1, year=2026, card_valid_to=None),
    ]
    claims[2]["card_valid_to"] = datetime(2026, 12, 31).date()
    lines = [
        {"claim_id": c["claim_id"], "item_code": "Y1", "ordered_at": c["admitted_at"]}
        for c in claims
    ]
    out = codes(mini_plan, reference, claims, lines)
    assert "YEARLY_LIMIT" not in out[("Y1a", 1)]
    assert "YEARLY_LIMIT" in out[("Y1b", 1)]
    assert "YEARLY_LIMIT" not in out[("Y1c", 1)]


def test_window_day_must_lead_the_order(tmp_path: Path) -> None:
    (tmp_path / "pack.yaml").write_text("id: bad\nversion: '1'\n")
    (tmp_path / "r.yaml").write_text(
        "- id: r.x\n  title: t\n  basis: b\n  level: claim\n  severity: flag\n  code: X\n"
        "  window:\n    partition: [card_holder]\n    order: [admitted_at]\n"
        "    day: admission_date\n    days: 3\n    measures: {n: count()}\n"
        "  when: window.n > 0\n  message: m\n"
    )
    with pytest.raises(PackError, match="first order key"):
        compile_pack(tmp_path)


# --- any window against a brute force, with history rows -------------------------
# Random claims and lines (history and batch, nulls, lines without claim, MALFORMED
# rows) and random window specs over claim and line keys, evaluated by the
# evaluator and row by row here: the semantics of ir.WindowSpec, history first.

CLAIM_COLS = {
    "claim_id": pa.string(),
    "holder": pa.string(),
    "fac": pa.string(),
    "adm": pa.timestamp("s"),
    "flag": pa.bool_(),
    "val": pa.int64(),
}
LINE_COLS = {
    "item": pa.string(),
    "day": pa.date32(),
    "line_no": pa.int64(),
    "lflag": pa.bool_(),
    "lval": pa.int64(),
    "width": pa.int64(),
}


Source = tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]  # claims, lines, owner


def _field(level: str, name: str) -> ir.Field:
    cols = CLAIM_COLS if level == "claim" else LINE_COLS
    return ir.Field(level, name, types.from_arrow(cols[name]))


def _maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values, values, values)


@st.composite
def _source(draw: st.DrawFn, prefix: str) -> Source:
    n = draw(st.integers(0, 6))
    claims = [
        {
            # some ids repeat (or are null): history and batch may share them
            "claim_id": draw(_maybe(st.sampled_from(["a", "b", "ab"])))
            if i % 3
            else f"{prefix}{i}",
            "holder": draw(_maybe(st.sampled_from(["h1", "h2"]))),
            "fac": draw(_maybe(st.sampled_from(["f1", "f2"]))),
            "adm": draw(_maybe(st.integers(0, 3))),
            "flag": draw(_maybe(st.booleans())),
            "val": draw(_maybe(st.integers(-3, 3))),
        }
        for i in range(n)
    ]
    m = draw(st.integers(0, 10))
    owner = [draw(st.integers(-1, n - 1)) for _ in range(m)]
    lines = [
        {
            "item": draw(_maybe(st.sampled_from(["x", "y"]))),
            "day": draw(_maybe(st.integers(0, 4))),
            "line_no": draw(_maybe(st.integers(0, 2))),
            "lflag": draw(_maybe(st.booleans())),
            "lval": draw(_maybe(st.integers(-3, 3))),
            "width": draw(_maybe(st.integers(1, 3))),
        }
        for _ in range(m)
    ]
    return claims, lines, owner


@st.composite
def _spec(draw: st.DrawFn) -> ir.Window:
    level = draw(st.sampled_from(["claim", "line"]))
    claim_keys = [_field("claim", k) for k in ("holder", "fac", "adm", "claim_id")]
    line_keys = [_field("line", k) for k in ("item", "day", "line_no")]
    keys = claim_keys + (line_keys if level == "line" else [])
    partition = tuple(draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)))
    order = list(draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)))
    day = days = None
    if level == "line" and draw(st.booleans()):
        day = _field("line", "day")
        order = [day, *[o for o in order if o != day]]
        days = draw(st.sampled_from([ir.Const(2, types.INT), _field("line", "width")]))
    flag = _field(level, "flag" if level == "claim" else "lflag")
    where = draw(st.sampled_from([None, flag]))
    cond = draw(st.sampled_from([None, flag, ir.Not(flag)]))
    # with days, only count and sum (the compiler's rule)
    fns = ["count", "sum"] if day is not None else ["count", "sum", "max", "min", "first", "last"]
    fn = draw(st.sampled_from(fns))
    value = None
    if fn != "count":
        names = ["val"] + (["lval"] if level == "line" else [])
        if fn in ("first", "last"):
            names += ["claim_id"] + (["item"] if level == "line" else [])
        name = draw(st.sampled_from(names))
        value = _field("claim" if name in CLAIM_COLS else "line", name)
    ty = types.INT if fn == "count" or value is None else value.type
    spec = ir.WindowSpec(level, partition, tuple(order), where, day, days)
    return ir.Window(spec, fn, value, cond, ty)


def _evaluators(
    batch_src: Source,
    hist_src: Source | None,
    active: list[bool],
) -> tuple[evaluate.Evaluator, evaluate.Evaluator]:
    ctx = evaluate.Context(derived={}, lookups={}, reference={})

    def pair(src: Any) -> tuple[evaluate.Evaluator, evaluate.Evaluator]:
        claims, lines, owner = src
        ct = pa.table({k: pa.array([c[k] for c in claims], ty) for k, ty in CLAIM_COLS.items()})
        lt = pa.table({k: pa.array([r[k] for r in lines], ty) for k, ty in LINE_COLS.items()})
        return evaluate.Evaluator.pair(ct, lt, np.asarray(owner, dtype=np.int64), ctx)

    cev, lev = pair(batch_src)
    if hist_src is not None:
        cev.history, lev.history = pair(hist_src)
    nc = len(batch_src[0])
    cev.active = np.asarray(active[:nc] + [True] * (nc - len(active[:nc])), dtype=bool)
    lev.active = np.asarray([o >= 0 and bool(cev.active[o]) for o in batch_src[2]], dtype=bool)
    return cev, lev


def _brute(
    w: ir.Window,
    batch_src: Any,
    hist_src: Any,
    active: np.ndarray,
) -> list[Any]:
    """The measure of each batch row of the window's level, row by row."""
    spec = w.spec
    rows = []  # (source, row dict, active)
    for src, data in ((0, hist_src), (1, batch_src)):
        if data is None:
            continue
        claims, lines, owner = data
        if spec.level == "claim":
            rows += [(src, dict(c), True) for c in claims]
        else:
            for ln, o in zip(lines, owner, strict=True):
                claim = claims[o] if o >= 0 else dict.fromkeys(CLAIM_COLS)
                rows.append((src, {**claim, **ln}, True))
    nb = sum(1 for s, _, _ in rows if s == 1)
    batch_rows = [i for i, (s, _, _) in enumerate(rows) if s == 1]
    for k, i in enumerate(batch_rows):
        rows[i] = (1, rows[i][1], bool(active[k]))

    def get(r: dict[str, Any], e: ir.Expr | None) -> Any:
        if e is None:
            return None
        if isinstance(e, ir.Const):
            return e.value
        if isinstance(e, ir.Not):
            v = get(r, e.operand)
            return None if v is None else not v
        assert isinstance(e, ir.Field)
        return r[e.name]

    def truth(r: dict[str, Any], e: ir.Expr | None) -> bool:
        return e is None or get(r, e) is True

    def info(i: int) -> tuple[Any, ...]:
        s, r, _ = rows[i]
        key = tuple(get(r, p) for p in spec.partition)
        keyed = all(k is not None for k in key)
        keyed = keyed and (spec.day is None or get(r, spec.day) is not None)
        order = (s, *(((0,) if get(r, o) is None else (1, get(r, o))) for o in spec.order))
        return key, keyed, order

    out: list[Any] = []
    for i in batch_rows:
        r = rows[i][1]
        key, keyed, order = info(i)
        if not keyed or not truth(r, spec.where):
            out.append(None)
            continue
        earlier = []
        for j, (_, q, act) in enumerate(rows):
            kj, keyed_j, order_j = info(j)
            if keyed_j and kj == key and order_j < order and truth(q, spec.where) and act:
                earlier.append(j)
        if spec.day is not None:
            width = get(r, spec.days)
            if width is None:
                earlier = []
            else:
                low = r["day"] - width + 1
                earlier = [
                    j
                    for j in earlier
                    if get(rows[j][1], spec.days) is not None
                    and low <= rows[j][1]["day"] <= r["day"]
                ]
        earlier = [j for j in earlier if truth(rows[j][1], w.cond)]
        if w.fn == "count":
            out.append(len(earlier))
            continue
        valued = [(j, get(rows[j][1], w.value)) for j in earlier]
        valued = [(j, v) for j, v in valued if v is not None]
        if w.fn == "sum":
            out.append(sum(v for _, v in valued))
        elif not valued:
            out.append(None)
        elif w.fn in ("max", "min"):
            out.append((max if w.fn == "max" else min)(v for _, v in valued))
        else:
            valued.sort(key=lambda jv: (info(jv[0])[2], jv[0]))
            out.append(valued[0][1] if w.fn == "first" else valued[-1][1])
    assert len(out) == nb
    return out


def _as_python(v: Vec, n: int, ty: types.Type) -> list[Any]:
    if v.is_arrow:
        return list(V.to_arrow(v, n).to_pylist())
    data = np.broadcast_to(np.asarray(v.data), (n,))
    valid = V.valid_mask(v, n)
    return [int(x) if ok else None for x, ok in zip(data.tolist(), valid.tolist(), strict=True)]


@settings(max_examples=400, deadline=None)
@given(
    batch_src=_source("b"),
    hist_src=st.one_of(st.none(), _source("h")),
    window_spec=_spec(),
    active=st.lists(st.booleans(), max_size=6),
)
def test_windows_match_brute_force(
    batch_src: Any, hist_src: Any, window_spec: ir.Window, active: list[bool]
) -> None:
    w = window_spec
    cev, lev = _evaluators(batch_src, hist_src, active)
    ev = cev if w.spec.level == "claim" else lev
    got = _as_python(ev.eval(w), ev.n, w.type)
    # timestamps and dates are numbers here: seconds and days
    want = _brute(w, batch_src, hist_src, np.asarray(ev.active, dtype=bool))
    assert got == want
