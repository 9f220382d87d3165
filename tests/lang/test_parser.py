"""The expression parser: precedence, the special forms, literals and syntax errors."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from claims_engine.lang import ast
from claims_engine.lang.errors import ExprError
from claims_engine.lang.parser import parse, tokenize


def sx(node: ast.Node) -> str:
    """A compact s-expression of a syntax tree, for readable assertions."""
    if isinstance(node, ast.Literal):
        v = node.value
        if isinstance(v, str):
            return repr(v)
        if isinstance(v, date):
            return f"#{v.isoformat()}"
        if isinstance(v, Decimal):
            return f"{v}d"
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    if isinstance(node, ast.Name):
        return node.dotted
    if isinstance(node, ast.ListLit):
        return "[" + " ".join(sx(i) for i in node.items) + "]"
    if isinstance(node, ast.Unary):
        return f"({node.op} {sx(node.operand)})"
    if isinstance(node, ast.Binary):
        return f"({node.op} {sx(node.left)} {sx(node.right)})"
    if isinstance(node, ast.In):
        return f"({'not-in' if node.negated else 'in'} {sx(node.operand)} {sx(node.options)})"
    if isinstance(node, ast.Between):
        op = "not-between" if node.negated else "between"
        return f"({op} {sx(node.operand)} {sx(node.low)} {sx(node.high)})"
    if isinstance(node, ast.IsNull):
        return f"({'is-not-null' if node.negated else 'is-null'} {sx(node.operand)})"
    if isinstance(node, ast.Call):
        return f"{node.name}(" + " ".join(sx(a) for a in node.args) + ")"
    raise TypeError(node)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        # boolean operators: not > and > or
        ("a or b and c", "(or a (and b c))"),
        ("a and b or c", "(or (and a b) c)"),
        ("a or b or c", "(or (or a b) c)"),
        ("not a and b", "(and (not a) b)"),
        ("not a or not b", "(or (not a) (not b))"),
        ("not not a", "(not (not a))"),
        ("not (a or b)", "(not (or a b))"),
        ("(a or b) and c", "(and (or a b) c)"),
        # comparison binds tighter than and/not, looser than arithmetic
        ("not x == 1", "(not (== x 1))"),
        ("x == 1 and y != 2", "(and (== x 1) (!= y 2))"),
        ("x + 1 > y * 2", "(> (+ x 1) (* y 2))"),
        ("x <= 1 or x >= 2", "(or (<= x 1) (>= x 2))"),
        ("x < 1", "(< x 1)"),
        # arithmetic: * / before + -, left associative
        ("a + b * c", "(+ a (* b c))"),
        ("a * b + c", "(+ (* a b) c)"),
        ("a - b - c", "(- (- a b) c)"),
        ("a / b / c", "(/ (/ a b) c)"),
        ("a - b + c", "(+ (- a b) c)"),
        ("(a + b) * c", "(* (+ a b) c)"),
        ("a * b / c", "(/ (* a b) c)"),
        # unary minus: folded into number literals, kept on anything else
        ("-1", "-1"),
        ("-2.50", "-2.50d"),
        ("-x", "(- x)"),
        ("a - -1", "(- a -1)"),
        ("-x * y", "(* (- x) y)"),
        ("- - 3", "3"),
        # the SQL-like alternative spellings
        ("a = 1", "(== a 1)"),
        ("a <> 1", "(!= a 1)"),
        ("A AND B Or NOT c", "(or (and A B) (not c))"),
    ],
)
def test_precedence(text: str, tree: str) -> None:
    assert sx(parse(text)) == tree


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("visit_type in [3, 4]", "(in visit_type [3 4])"),
        ("visit_type not in [3, 4]", "(not-in visit_type [3 4])"),
        ("route in ['a', \"b\"]", "(in route ['a' 'b'])"),
        ("x in []", "(in x [])"),
        ("x in [1.5, 2]", "(in x [1.5d 2])"),
        ("dx in secondary_dx", "(in dx secondary_dx)"),
        ("not x in [1] and y", "(and (not (in x [1])) y)"),
        ("x + 1 in [2]", "(in (+ x 1) [2])"),
        ("x between 1 and 5", "(between x 1 5)"),
        ("x not between 1 and 5", "(not-between x 1 5)"),
        ("x between 1 and 5 and y", "(and (between x 1 5) y)"),
        ("x between a + 1 and b * 2", "(between x (+ a 1) (* b 2))"),
        ("x is null", "(is-null x)"),
        ("x is not null", "(is-not-null x)"),
        ("x is null or y is not null", "(or (is-null x) (is-not-null y))"),
        ("not x is null", "(not (is-null x))"),
        ("a.b is NULL", "(is-null a.b)"),
    ],
)
def test_special_forms(text: str, tree: str) -> None:
    assert sx(parse(text)) == tree


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2021-01-01", date(2021, 1, 1)),
        ("2024-02-29", date(2024, 2, 29)),
        ("42", 42),
        ("0", 0),
        ("12.50", Decimal("12.50")),
        ("0.001", Decimal("0.001")),
        ("'plain'", "plain"),
        ('"double"', "double"),
        ("'with \"inner\" quotes'", 'with "inner" quotes'),
        ("\"with 'inner' quotes\"", "with 'inner' quotes"),
        (r"'escaped \' quote'", "escaped ' quote"),
        (r'"escaped \" quote"', 'escaped " quote'),
        ("'a, b'", "a, b"),
        ("''", ""),
        ("true", True),
        ("FALSE", False),
        ("null", None),
    ],
)
def test_literals(text: str, value: object) -> None:
    node = parse(text)
    assert isinstance(node, ast.Literal)
    assert node.value == value
    assert type(node.value) is type(value)


def test_decimal_keeps_its_scale() -> None:
    node = parse("1.10")
    assert isinstance(node, ast.Literal) and str(node.value) == "1.10"


def test_date_compares_and_is_not_arithmetic() -> None:
    assert sx(parse("d < 2021-01-01")) == "(< d #2021-01-01)"
    # spaces make it arithmetic again
    assert sx(parse("2021 - 01 - 01")) == "(- (- 2021 1) 1)"


def test_calls_and_dotted_names() -> None:
    assert sx(parse("f()")) == "f()"
    assert sx(parse("date_of(admitted_at)")) == "date_of(admitted_at)"
    assert (
        sx(parse("days_between(card_valid_to, date_of(discharged_at)) > params.card_grace_days"))
        == "(> days_between(card_valid_to date_of(discharged_at)) params.card_grace_days)"
    )
    assert sx(parse("catalogue.max_unit_price")) == "catalogue.max_unit_price"
    assert sx(parse("a.b.c")) == "a.b.c"
    assert sx(parse("sum(lines, amount, kind == 'drug')")) == ("sum(lines amount (== kind 'drug'))")
    assert sx(parse("if(a or b, 1, 2)")) == "if((or a b) 1 2)"
    # a keyword after a dot is a name part (computed.null is a name, not null)
    node = parse("x.null")
    assert isinstance(node, ast.Name) and node.parts == ("x", "null")


def test_name_parts_and_positions() -> None:
    node = parse("  catalogue.max_unit_price > 3")
    assert isinstance(node, ast.Binary)
    assert node.pos.offset == 27
    assert isinstance(node.left, ast.Name)
    assert node.left.parts == ("catalogue", "max_unit_price")
    assert node.left.pos.offset == 2
    assert isinstance(node.right, ast.Literal) and node.right.pos.offset == 29


def test_tokenizer_kinds() -> None:
    kinds = [(t.kind, t.text) for t in tokenize("a.b >= 2021-01-01 and 'x' <> 1.5")]
    assert kinds == [
        ("name", "a"),
        ("op", "."),
        ("name", "b"),
        ("op", ">="),
        ("date", "2021-01-01"),
        ("keyword", "and"),
        ("string", "'x'"),
        ("op", "!="),
        ("number", "1.5"),
        ("end", ""),
    ]


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("a and", "expected a value, a field or a function, found the end of the expression", 5),
        ("(a or b", "expected ')', found the end of the expression", 7),
        ("a b", "unexpected 'b' after a complete expression", 2),
        ("a == == b", "expected a value, a field or a function, found '=='", 5),
        ("x between 1 or 2", "expected 'and' between the two bounds of 'between', found 'or'", 12),
        ("x is 1", "expected 'null' after 'is', found '1'", 5),
        ("x is not", "expected 'null' after 'is', found the end of the expression", 8),
        (
            "f(a, b",
            "expected ',' or ')' to close the call of f(), found the end of the expression",
            6,
        ),
        ("f(a b)", "expected ',' or ')' to close the call of f(), found 'b'", 4),
        ("x in [1, 2", "expected ',' or ']' in the list, found the end of the expression", 10),
        ("x in [1 2]", "expected ',' or ']' in the list, found '2'", 8),
        ("a.", "expected a name after '.'", 2),
        ("a.1", "expected a name after '.'", 2),
        ("x > 3 #", "unexpected character '#'", 6),
        ("'unclosed", 'unexpected character "\'"', 0),
        ("2021-02-30", "2021-02-30 is not a valid date", 0),
        ("'it''s'", "unexpected \"'s'\" after a complete expression", 4),
        ("", "expected a value, a field or a function, found the end of the expression", 0),
        (")", "expected a value, a field or a function, found ')'", 0),
    ],
)
def test_syntax_errors(text: str, message: str, offset: int) -> None:
    with pytest.raises(ExprError) as info:
        parse(text)
    assert info.value.message == message
    assert info.value.offset == offset
