"""Name resolution and type checking: errors with hints, decimal scales, typed IR."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from claims_engine import schema
from claims_engine.lang import ir
from claims_engine.lang import types as t
from claims_engine.lang.checker import LookupSig, Scope, check, const_from_python, power_of_ten
from claims_engine.lang.errors import ExprError, did_you_mean
from claims_engine.lang.parser import parse

CLAIM_FIELDS = {c.name: t.from_arrow(c.type) for c in schema.CLAIM_COLUMNS}
LINE_FIELDS = {c.name: t.from_arrow(c.type) for c in schema.LINE_COLUMNS}
PARAMS = {
    "grace_days": (15, t.INT),
    "rate": (1250, t.num(2)),  # 12.50
    "cutover": (date(2021, 1, 1), t.DATE),
    "start": (2, t.INT),
}
LOOKUPS = {
    "facility": LookupSig("claim", {"level": t.STR, "facility_id": t.STR, "valid_from": t.DATE}),
    "catalogue": LookupSig("line", {"max_unit_price": t.num(3), "coverage_rate": t.INT}),
}
DERIVED = {
    "inpatient": ("claim", t.BOOL),
    "benefit.rate": ("claim", t.num(2)),
    "date_of_service": ("line", t.DATE),
}
COMPUTED = {
    ("claim", "eligible"): t.num(2),
    ("line", "eligible"): t.num(2),
    ("claim", "fund_pays"): t.num(2),
}


USE_DATE_OF = "Use date_of(...) to compare a timestamp with a date."


def scope(level: str = "claim") -> Scope:
    return Scope(level, CLAIM_FIELDS, LINE_FIELDS, PARAMS, LOOKUPS, DERIVED, COMPUTED)


def typed(text: str, level: str = "claim", expect: t.Type | None = None) -> ir.Expr:
    return check(parse(text), scope(level), expect)


def error(text: str, level: str = "claim", expect: t.Type | None = None) -> ExprError:
    with pytest.raises(ExprError) as info:
        typed(text, level, expect)
    return info.value


# --- names ---------------------------------------------------------------------


def test_names_resolve_to_typed_nodes() -> None:
    assert typed("card_no") == ir.Field("claim", "card_no", t.STR)
    assert typed("claim.card_no") == ir.Field("claim", "card_no", t.STR)
    assert typed("quantity", "line") == ir.Field("line", "quantity", t.num(3))
    assert typed("line.unit_price", "line") == ir.Field("line", "unit_price", t.num(3))
    # a name on both levels means the line's in a line rule, the claim's in a claim rule
    assert typed("fund_pays", "line") == ir.Field("line", "fund_pays", t.num(2))
    assert typed("fund_pays") == ir.Field("claim", "fund_pays", t.num(2))
    assert typed("claim.fund_pays", "line") == ir.Field("claim", "fund_pays", t.num(2))
    assert typed("admitted_at", "line") == ir.Field("claim", "admitted_at", t.TIMESTAMP)
    assert typed("secondary_dx").type == t.LIST_STR
    assert typed("params.rate") == ir.Param("rate", 1250, t.num(2))
    assert typed("facility.level") == ir.LookupField("facility", "level", t.STR)
    assert typed("catalogue.max_unit_price", "line").type == t.num(3)
    assert typed("inpatient") == ir.Derived("inpatient", t.BOOL)
    assert typed("benefit.rate") == ir.Derived("benefit.rate", t.num(2))
    assert typed("date_of_service", "line") == ir.Derived("date_of_service", t.DATE)
    assert typed("computed.eligible") == ir.Computed("claim", "eligible", t.num(2))
    assert typed("computed.eligible", "line") == ir.Computed("line", "eligible", t.num(2))
    # a line rule sees the claim's computed value when there is no line one
    assert typed("computed.fund_pays", "line") == ir.Computed("claim", "fund_pays", t.num(2))


@pytest.mark.parametrize(
    ("text", "level", "message"),
    [
        ("card_noo == 'x'", "claim", "unknown name 'card_noo'. Did you mean 'card_no'?"),
        (
            "unit_pric > 1",
            "line",
            "unknown name 'unit_pric'. Did you mean one of 'unit_price', 'hospital_unit_price'?",
        ),
        (
            "claim.card_noo == 'x'",
            "claim",
            "unknown claim field 'card_noo'. Did you mean 'card_no'?",
        ),
        ("line.quantiti > 1", "line", "unknown line field 'quantiti'. Did you mean 'quantity'?"),
        ("zzz > 1", "claim", "unknown name 'zzz'."),
        (
            "params.grace > 1",
            "claim",
            "unknown parameter 'params.grace'. Did you mean one of 'rate', 'grace_days'?",
        ),
        ("params.zzz > 1", "claim", "unknown parameter 'params.zzz'."),
        (
            "facility.levle == 'x'",
            "claim",
            "lookup 'facility' has no column 'levle'. Did you mean 'level'?",
        ),
        (
            "catalogue.max_price > 1",
            "line",
            "lookup 'catalogue' has no column 'max_price'. Did you mean 'max_unit_price'?",
        ),
        (
            "facilty.level == 'x'",
            "claim",
            "unknown name 'facilty.level'. "
            "Did you mean one of 'facility.level', 'facility.valid_from'?",
        ),
        (
            "computed.eligble > 1",
            "claim",
            "unknown value 'computed.eligble'. Did you mean 'eligible'?",
        ),
        (
            "inpatiant",
            "claim",
            "unknown name 'inpatiant'. "
            "Did you mean one of 'inpatient', 'inpatient_at', 'patient_id'?",
        ),
        ("a.b.c > 1", "claim", "unknown name 'a.b.c'."),
        ("lines > 1", "claim", "unknown name 'lines'."),
    ],
)
def test_unknown_names_suggest(text: str, level: str, message: str) -> None:
    err = error(text, level)
    assert err.message == message
    assert err.offset == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "quantity > 1",
            "'quantity' is a line field; in a claim rule use an aggregate such as any(lines, ...) "
            "or sum(lines, quantity)",
        ),
        ("line.quantity > 1", "line fields are only visible in line rules and aggregates"),
        (
            "catalogue.max_unit_price > 1",
            "'catalogue' is per line; in a claim rule use it inside an aggregate",
        ),
        (
            "date_of_service > 2021-01-01",
            "'date_of_service' is per line; in a claim rule use it inside an aggregate",
        ),
        (
            "exists(catalogue)",
            "'catalogue' is per line; in a claim rule use it inside an aggregate",
        ),
    ],
)
def test_line_values_in_a_claim_rule(text: str, message: str) -> None:
    assert error(text).message == message
    # ... but inside an aggregate they are fine
    inner = text.replace("line.", "")
    typed(f"any(lines, {inner})" if "exists" not in text else "any(lines, exists(catalogue))")


def test_unknown_function_suggests() -> None:
    err = error("lenght(card_no) > 1")
    assert err.message == "unknown function 'lenght'. Did you mean 'length'?"
    assert err.offset == 0
    assert "Did you mean" in error("day_between(birth_date, card_valid_to) > 1").message
    assert error("summ(lines, quantity) > 1").message.endswith("Did you mean 'sum'?")
    err = error("exists(facilty)")
    assert (err.message, err.offset) == ("unknown lookup 'facilty'. Did you mean 'facility'?", 7)
    assert "exists() takes the name of a lookup" in error("exists(1)").message


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        (
            "admitted_at > card_valid_to",
            "cannot compare timestamp with date. " + USE_DATE_OF,
            12,
        ),
        (
            "card_valid_to == discharged_at",
            "cannot compare date with timestamp. " + USE_DATE_OF,
            14,
        ),
        ("card_no < 1", "cannot compare string with integer.", 8),
        ("inpatient < true", "'<' does not order bool values", 10),
        (
            "secondary_dx == secondary_dx",
            "cannot compare list of strings with list of strings.",
            13,
        ),
        ("card_no + 1 > 2", "'+' needs a number, this is a string", 0),
        ("-card_no == 'x'", "'-' needs a number, this is a string", 1),
        ("not visit_type", "'not' needs a condition (true/false), this is a integer", 4),
        ("inpatient and visit_type", "'and' needs a condition (true/false), this is a integer", 14),
        ("visit_type or inpatient", "'or' needs a condition (true/false), this is a integer", 0),
        ("[1, 2]", "a list is only allowed after 'in'", 0),
        ("route in [1, 2]", "cannot compare string with integer", 10),
        ("visit_type in [sex]", "the options of 'in' must be literal values", 15),
        ("visit_type in card_no", "'in' needs a list such as [3, 4] or a list field", 11),
        (
            "admitted_at between card_valid_from and card_valid_to",
            "cannot compare timestamp with date. " + USE_DATE_OF,
            12,
        ),
    ],
)
def test_type_errors(text: str, message: str, offset: int) -> None:
    err = error(text)
    assert (err.message, err.offset) == (message, offset)


@pytest.mark.parametrize(
    ("text", "level", "message"),
    [
        ("quantity * 2", "line", "expected a bool expression, this is a decimal(3)"),
        ("card_no", "claim", "expected a bool expression, this is a string"),
        ("date_of(admitted_at)", "claim", "expected a bool expression, this is a date"),
        ("sum(lines, quantity)", "claim", "expected a bool expression, this is a decimal(3)"),
    ],
)
def test_condition_must_be_bool(text: str, level: str, message: str) -> None:
    assert error(text, level, t.BOOL).message == message


def test_null_is_accepted_where_a_condition_is_expected() -> None:
    assert typed("null", expect=t.BOOL) == ir.Const(None, t.NULL)
    e = typed("inpatient and null")
    assert isinstance(e, ir.Logic) and e.items[1] == ir.Const(None, t.BOOL)
    assert typed("not null") == ir.Not(ir.Const(None, t.BOOL))


@pytest.mark.parametrize(
    ("text", "level", "message"),
    [
        (
            "sum(amount_hospital) > 1",
            "claim",
            "sum() aggregates a claim's lines: write sum(lines, <number>) or "
            "sum(lines, <number>, <condition>)",
        ),
        (
            "count() > 1",
            "claim",
            "count() aggregates a claim's lines: write count(lines) or count(lines, <condition>)",
        ),
        (
            "any(lines.x)",
            "claim",
            "any() aggregates a claim's lines: write any(lines, <condition>)",
        ),
        (
            "sum(lines, sum(lines, quantity)) > 1",
            "line",
            "sum(lines, ...) cannot be nested in another aggregate",
        ),
        (
            "sum(lines, count(lines)) > 1",
            "claim",
            "count(lines, ...) cannot be nested in another aggregate",
        ),
        ("sum(lines, card_no) > 1", "claim", "sum() needs a number, this is a string"),
        ("min(lines, kind) == 'x'", "claim", "min() needs a number or a date, this is a string"),
        (
            "count(lines, kind == 'drug', 1) > 1",
            "claim",
            "write count(lines) or count(lines, <condition>)",
        ),
        ("any(lines)", "claim", "write any(lines, <condition>)"),
        ("any(lines, quantity)", "claim", "expected a bool expression, this is a decimal(3)"),
        ("sum(lines)", "claim", "write sum(lines, <number>) or sum(lines, <number>, <condition>)"),
        ("sum(lines, quantity, kind) > 1", "claim", "expected a bool expression, this is a string"),
        ("sum(lines, quantiti) > 1", "claim", "unknown name 'quantiti'. Did you mean 'quantity'?"),
    ],
)
def test_aggregate_misuse(text: str, level: str, message: str) -> None:
    assert error(text, level).message == message


def test_aggregates_are_typed() -> None:
    assert typed("count(lines)") == ir.Aggregate("count", None, None, t.INT)
    c = typed("count(lines, kind == 'drug')")
    assert isinstance(c, ir.Aggregate) and c.where is not None and c.type == t.INT
    s = typed("sum(lines, quantity * unit_price, kind == 'drug')")
    assert isinstance(s, ir.Aggregate) and s.type == t.num(6)
    assert typed("max(lines, ordered_at)").type == t.TIMESTAMP
    assert typed("min(lines, date_of_service)").type == t.DATE
    assert typed("any(lines, catalogue.coverage_rate < 100)").type == t.BOOL
    assert typed("all(lines, quantity > 0 and card_no != '')").type == t.BOOL


# --- functions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("matches(card_no, '[')", "invalid regular expression '['"),
        ("matches(card_no, card_no)", "matches() needs a literal text here"),
        ("starts_with(visit_type, 'x')", "starts_with() needs a string, this is a integer"),
        ("substring(card_no, -1, 2) == 'x'", "substring() needs whole numbers >= 0"),
        (
            "substring(card_no, 0) == 'x'",
            "substring() takes a string, a start (0-based) and a length",
        ),
        # a decimal literal is not a count (it once passed as its scaled integer 25)
        ("round(fund_pays, 2.5) > 1", "round() needs a whole number of decimals from 0 to 18"),
        ("round(fund_pays, 2.0) > 1", "round() needs a whole number of decimals from 0 to 18"),
        ("round(fund_pays, true) > 1", "round() needs a whole number of decimals from 0 to 18"),
        ("round(fund_pays, 19) > 1", "round() needs a whole number of decimals from 0 to 18"),
        ("round(fund_pays, params.rate) > 1", "round() needs a whole number of decimals"),
        ("round(fund_pays, visit_type) > 1", "round() needs a literal count of decimals here"),
        ("substring(card_no, 1.5, 2) == 'x'", "substring() needs whole numbers >= 0"),
        ("substring(card_no, 0, true) == 'x'", "substring() needs whole numbers >= 0"),
        ("round(card_no, 2) > 1", "round() needs a number, this is a string"),
        (
            "minutes_between(admitted_at, card_valid_to) > 1",
            "minutes_between() needs two timestamps",
        ),
        (
            "days_between(card_no, card_valid_to) > 1",
            "days_between() needs a date or a timestamp, this is a string",
        ),
        (
            "date_of(card_no) > 2021-01-01",
            "date_of() needs a timestamp or a date, this is a string",
        ),
        ("if(visit_type, 1, 2) > 1", "if() needs a condition, this is a integer"),
        ("if(inpatient, 1, 'a') > 1", "if() branches differ: integer and string"),
        ("coalesce(card_no, 1) == 'x'", "coalesce() mixes string and integer"),
        ("least(card_no, route) == 'x'", "least() needs numbers or dates, these are string"),
        ("date('2021-13-01') > card_valid_to", "'2021-13-01' is not a date YYYY-MM-DD"),
        ("length(card_no, 1) > 1", "length() takes one string"),
        (
            "list_contains(card_no, 'x')",
            "list_contains() needs a list of strings, this is a string",
        ),
    ],
)
def test_function_errors(text: str, message: str) -> None:
    assert error(text).message.startswith(message)


def test_function_types() -> None:
    assert typed("date_of(admitted_at)") == ir.Call(
        "date_of", (ir.Field("claim", "admitted_at", t.TIMESTAMP),), (), t.DATE
    )
    # date_of() of a date is the date itself
    assert typed("date_of(card_valid_to)") == ir.Field("claim", "card_valid_to", t.DATE)
    assert typed("days_between(birth_date, card_valid_to)").type == t.INT
    assert typed("age_in_days(birth_date, card_valid_to)").fn == "days_between"  # type: ignore[attr-defined]
    assert typed("length(card_no)").type == t.INT
    assert typed("upper(card_no)").type == t.STR
    sub = typed("substring(card_no, params.start, 2)")
    assert isinstance(sub, ir.Call) and sub.consts == (2, 2)
    m = typed("matches(card_no, '[A-Z]{2}')")
    assert isinstance(m, ir.Call) and m.args == (ir.Field("claim", "card_no", t.STR),)
    assert m.consts == ("[A-Z]{2}",)
    assert typed("coalesce(hospital_unit_price, unit_price)", "line").type == t.num(3)
    assert typed("coalesce(fund_pays, 1, null)").type == t.num(2)
    assert typed("coalesce(null, card_no)").type == t.STR
    assert typed("round(quantity * unit_price, 2)", "line").type == t.num(2)
    assert typed("round(visit_type, 3)").type == t.num(3)
    assert typed("round(fund_pays, params.start)").type == t.num(2)
    assert typed("abs(-fund_pays)").type == t.num(2)
    assert typed("greatest(card_valid_to, params.cutover)").type == t.DATE
    assert typed("date('2021-03-04')") == ir.Const(date(2021, 3, 4), t.DATE)
    case = typed("if(inpatient, 1, 2.5)")
    assert isinstance(case, ir.Case) and case.type == t.num(1)
    contains = typed("primary_dx in secondary_dx")
    assert contains == ir.Call(
        "list_contains",
        (ir.Field("claim", "secondary_dx", t.LIST_STR), ir.Field("claim", "primary_dx", t.STR)),
        (),
        t.BOOL,
    )
    assert isinstance(typed("primary_dx not in secondary_dx"), ir.Not)


# --- decimals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scale"),
    [
        ("quantity + unit_price", 3),
        ("quantity + 1", 3),
        ("amount_hospital - quantity", 3),
        ("1.5 + 2.25", 2),
        ("service_rate - 1", 0),
        ("quantity * unit_price", 6),
        ("service_rate * quantity", 3),
        ("amount_hospital * 1.5", 3),
        ("amount_hospital / 3", 6),  # max(2, 0) + 4
        ("quantity / unit_price", 7),  # max(3, 3) + 4
        ("amount_hospital / 100.0", 6),  # a decimal 100.0 is an ordinary division
        ("amount_hospital / 7.5", 6),
        # division by an integer power of ten is a pure rescale: the scale grows by k
        ("amount_hospital / 100", 4),
        ("amount_hospital / 10", 3),
        ("amount_hospital / 1", 2),
        ("service_rate / 100", 2),
        ("quantity / 1000", 6),
        ("amount_hospital / 200", 6),  # 200 is not a power of ten
        ("amount_hospital / -100", 6),
        ("-amount_hospital", 2),
        ("quantity * unit_price * service_rate / 100", 8),
    ],
)
def test_arithmetic_scales(text: str, scale: int) -> None:
    e = typed(text, "line")
    assert e.type == t.num(scale)


def test_scale_limit() -> None:
    err = error(
        "unit_price * unit_price * unit_price * unit_price * unit_price * unit_price * 1.0", "line"
    )
    assert err.message == "the result would have 19 decimals (at most 18)"
    assert err.offset == 76  # the operator that goes past the limit
    assert "more than 18 decimals" in error("fund_pays > 0.0000000000000000001").message


def test_power_of_ten() -> None:
    assert power_of_ten(ir.Const(1, t.INT)) == 0
    assert power_of_ten(ir.Const(10, t.INT)) == 1
    assert power_of_ten(ir.Const(10**12, t.INT)) == 12
    assert power_of_ten(ir.Const(20, t.INT)) is None
    assert power_of_ten(ir.Const(0, t.INT)) is None
    assert power_of_ten(ir.Const(-10, t.INT)) is None
    assert power_of_ten(ir.Const(1000, t.num(1))) is None  # 100.0
    assert power_of_ten(ir.Param("p", 100, t.INT)) is None


@pytest.mark.parametrize(
    ("value", "const"),
    [
        (None, ir.Const(None, t.NULL)),
        (True, ir.Const(True, t.BOOL)),
        (15, ir.Const(15, t.INT)),
        (Decimal("12.50"), ir.Const(1250, t.num(2))),
        (Decimal("-0.005"), ir.Const(-5, t.num(3))),
        (Decimal("1E+2"), ir.Const(100, t.INT)),
        (0.1, ir.Const(1, t.num(1))),  # a YAML float goes via its shortest text: exactly 0.1
        (2.675, ir.Const(2675, t.num(3))),
        ("x", ir.Const("x", t.STR)),
        (date(2021, 1, 1), ir.Const(date(2021, 1, 1), t.DATE)),
    ],
)
def test_constants_are_scaled_integers(value: object, const: ir.Const) -> None:
    assert const_from_python(value, 0) == const


def test_literal_numbers_in_expressions() -> None:
    e = typed("fund_pays > 0.1 + 0.2")
    assert isinstance(e, ir.Compare) and isinstance(e.right, ir.Arith)
    assert e.right.left == ir.Const(1, t.num(1))
    assert e.right.type == t.num(1)


# --- in / between ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "values", "scale"),
    [
        ("visit_type in [3, 4]", (3, 4), 0),
        ("quantity in [1, 2.5]", (1000, 2500), 3),  # options at the operand's scale
        ("service_rate in [50, 80.5]", (500, 805), 1),  # ... or finer, if an option is finer
        ("service_rate in [1.25, null]", (125,), 2),  # null options never match
        ("fund_pays in [0.001, 1]", (1, 1000), 3),
        ("fund_pays in [-1.5]", (-150,), 2),
        ("route in ['a', 'b']", ("a", "b"), 0),
        ("card_valid_to in [2021-01-01]", (date(2021, 1, 1),), 0),
        ("visit_type in []", (), 0),
    ],
)
def test_in_set_options(text: str, values: tuple[object, ...], scale: int) -> None:
    e = typed(text, "line")
    assert isinstance(e, ir.InSet)
    assert (e.values, e.scale) == (values, scale)


def test_not_in_and_between() -> None:
    e = typed("visit_type not in [3, 4]")
    assert isinstance(e, ir.Not) and isinstance(e.operand, ir.InSet)
    b = typed("age_days between 0 and 365.25".replace("age_days", "visit_type"))
    assert isinstance(b, ir.Logic) and b.op == "and"
    assert [i.op for i in b.items] == [">=", "<="]  # type: ignore[attr-defined]
    nb = typed("visit_type not between 1 and 2")
    assert isinstance(nb, ir.Not) and isinstance(nb.operand, ir.Logic)
    n = typed("fund_pays is not null")
    assert isinstance(n, ir.Not) and isinstance(n.operand, ir.IsNull)


def test_logic_is_flattened() -> None:
    e = typed("inpatient and visit_type == 1 and sex == 2")
    assert isinstance(e, ir.Logic) and e.op == "and" and len(e.items) == 3
    e = typed("(inpatient or sex == 1) or (visit_type == 1 or sex == 2)")
    assert isinstance(e, ir.Logic) and e.op == "or" and len(e.items) == 4
    e = typed("inpatient and (sex == 1 or sex == 2)")
    assert isinstance(e, ir.Logic) and len(e.items) == 2
    assert isinstance(e.items[1], ir.Logic) and e.items[1].op == "or"


def test_ir_nodes_are_hashable_and_shared() -> None:
    a = typed("date_of(admitted_at) > card_valid_to")
    b = typed("date_of(admitted_at) < card_valid_from")
    assert isinstance(a, ir.Compare) and isinstance(b, ir.Compare)
    assert a.left == b.left and hash(a.left) == hash(b.left)
    assert len(ir.walk(a)) == 4


def test_did_you_mean() -> None:
    assert did_you_mean("card_noo", ["card_no", "route"]) == " Did you mean 'card_no'?"
    assert did_you_mean("zzz", ["card_no"]) == ""
    assert did_you_mean("lest", ["least", "length", "exists", "x"]).startswith(
        " Did you mean one of 'least'"
    )
