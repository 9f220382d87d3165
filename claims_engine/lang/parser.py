"""Tokenizer and precedence-climbing parser for rule conditions.

Grammar (lowest precedence first)::

    expr    := or
    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := sum [ cmp_op sum | ['not'] 'in' sum | ['not'] 'between' sum 'and' sum
                   | 'is' ['not'] 'null' ]
    sum     := product (('+' | '-') product)*
    product := unary (('*' | '/') unary)*
    unary   := '-' unary | atom
    atom    := number | 'string' | "string" | date (2021-01-01) | true | false | null
             | name ('.' name)* | name '(' [expr (',' expr)*] ')' | '[' items ']' | '(' expr ')'

No Python ``eval`` anywhere: the text only ever becomes these nodes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from claims_engine.lang import ast
from claims_engine.lang.errors import ExprError

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\d.]))
  | (?P<number>\d+(?:\.\d+)?)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<>|=|<|>|\+|-|\*|/|\(|\)|\[|\]|,|\.)
    """,
    re.VERBOSE,
)
KEYWORDS = {"and", "or", "not", "in", "between", "is", "null", "true", "false"}
COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}


@dataclass(frozen=True)
class Token:
    kind: str  # date number string name op keyword end
    text: str
    offset: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ExprError(f"unexpected character {text[pos]!r}", pos)
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "name" and value.lower() in KEYWORDS:
            kind, value = "keyword", value.lower()
        if kind == "op" and value in ("=", "<>"):
            value = "==" if value == "=" else "!="
        if kind != "ws":
            tokens.append(Token(kind, value, pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def at(self, kind: str, text: str | None = None) -> bool:
        t = self.tok
        return t.kind == kind and (text is None or t.text == text)

    def expect(self, kind: str, text: str, what: str) -> Token:
        if not self.at(kind, text):
            found = "the end of the expression" if self.tok.kind == "end" else repr(self.tok.text)
            raise ExprError(f"expected {what}, found {found}", self.tok.offset)
        return self.advance()

    # precedence levels, lowest first
    def parse(self) -> ast.Node:
        node = self.or_()
        if not self.at("end"):
            raise ExprError(
                f"unexpected {self.tok.text!r} after a complete expression", self.tok.offset
            )
        return node

    def or_(self) -> ast.Node:
        node = self.and_()
        while self.at("keyword", "or"):
            t = self.advance()
            node = ast.Binary(ast.Pos(t.offset), "or", node, self.and_())
        return node

    def and_(self) -> ast.Node:
        node = self.not_()
        while self.at("keyword", "and"):
            t = self.advance()
            node = ast.Binary(ast.Pos(t.offset), "and", node, self.not_())
        return node

    def not_(self) -> ast.Node:
        if self.at("keyword", "not"):
            t = self.advance()
            return ast.Unary(ast.Pos(t.offset), "not", self.not_())
        return self.compare()

    def compare(self) -> ast.Node:
        left = self.sum_()
        t = self.tok
        if t.kind == "op" and t.text in COMPARISONS:
            self.advance()
            return ast.Binary(ast.Pos(t.offset), t.text, left, self.sum_())
        negated = False
        if self.at("keyword", "not") and self.tokens[self.i + 1].text in ("in", "between"):
            self.advance()
            negated = True
        if self.at("keyword", "in"):
            t = self.advance()
            return ast.In(ast.Pos(t.offset), left, self.sum_(), negated)
        if self.at("keyword", "between"):
            t = self.advance()
            low = self.sum_()
            self.expect("keyword", "and", "'and' between the two bounds of 'between'")
            return ast.Between(ast.Pos(t.offset), left, low, self.sum_(), negated)
        if self.at("keyword", "is"):
            t = self.advance()
            neg = False
            if self.at("keyword", "not"):
                self.advance()
                neg = True
            self.expect("keyword", "null", "'null' after 'is'")
            return ast.IsNull(ast.Pos(t.offset), left, neg)
        return left

    def sum_(self) -> ast.Node:
        node = self.product()
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            t = self.advance()
            node = ast.Binary(ast.Pos(t.offset), t.text, node, self.product())
        return node

    def product(self) -> ast.Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            t = self.advance()
            node = ast.Binary(ast.Pos(t.offset), t.text, node, self.unary())
        return node

    def unary(self) -> ast.Node:
        if self.at("op", "-"):
            t = self.advance()
            operand = self.unary()
            value = operand.value if isinstance(operand, ast.Literal) else None
            if isinstance(value, int | Decimal) and not isinstance(value, bool):
                return ast.Literal(ast.Pos(t.offset), -value)
            return ast.Unary(ast.Pos(t.offset), "-", operand)
        return self.atom()

    def atom(self) -> ast.Node:
        t = self.tok
        pos = ast.Pos(t.offset)
        if t.kind == "number":
            self.advance()
            return ast.Literal(pos, Decimal(t.text) if "." in t.text else int(t.text))
        if t.kind == "date":
            self.advance()
            try:
                return ast.Literal(pos, date.fromisoformat(t.text))
            except ValueError:
                raise ExprError(f"{t.text} is not a valid date", t.offset) from None
        if t.kind == "string":
            self.advance()
            body = t.text[1:-1]
            return ast.Literal(pos, re.sub(r"\\(.)", r"\1", body))
        if t.kind == "keyword" and t.text in ("true", "false", "null"):
            self.advance()
            return ast.Literal(pos, {"true": True, "false": False, "null": None}[t.text])
        if t.kind == "name":
            return self.name_or_call()
        if self.at("op", "("):
            self.advance()
            node = self.or_()
            self.expect("op", ")", "')'")
            return node
        if self.at("op", "["):
            self.advance()
            items: list[ast.Node] = []
            if not self.at("op", "]"):
                items.append(self.or_())
                while self.at("op", ","):
                    self.advance()
                    items.append(self.or_())
            self.expect("op", "]", "',' or ']' in the list")
            return ast.ListLit(pos, tuple(items))
        found = "the end of the expression" if t.kind == "end" else repr(t.text)
        raise ExprError(f"expected a value, a field or a function, found {found}", t.offset)

    def name_or_call(self) -> ast.Node:
        first = self.advance()
        pos = ast.Pos(first.offset)
        if self.at("op", "("):
            self.advance()
            args: list[ast.Node] = []
            if not self.at("op", ")"):
                args.append(self.or_())
                while self.at("op", ","):
                    self.advance()
                    args.append(self.or_())
            self.expect("op", ")", f"',' or ')' to close the call of {first.text}()")
            return ast.Call(pos, first.text, tuple(args))
        parts = [first.text]
        while self.at("op", "."):
            self.advance()
            if self.tok.kind not in ("name", "keyword"):
                raise ExprError("expected a name after '.'", self.tok.offset)
            parts.append(self.advance().text)
        return ast.Name(pos, tuple(parts))


def parse(text: str) -> ast.Node:
    """Parse one expression; raises ExprError with the offset of the problem."""
    return _Parser(text).parse()
