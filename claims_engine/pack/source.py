"""YAML reading that remembers where each value came from (file, line, column).

Errors in a pack must point at the author's text, so mappings keep the start mark
of each value and expressions map a character offset back to a line and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from claims_engine.errors import PackError


@dataclass(frozen=True)
class Where:
    file: Path
    line: int  # 1-based
    column: int  # 1-based
    style: str | None = None  # YAML scalar style: None plain, "'", '"', ">", "|"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class PosDict(dict[Any, Any]):
    """A dict that also knows where its keys' values start in the file."""

    where: dict[Any, Where]
    start: Where


class PosList(list[Any]):
    where: list[Where]
    start: Where


_SCALARS = yaml.SafeLoader("")  # only its scalar constructors are used


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PackError(f"{path}: cannot read rule file: {exc.strerror}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise PackError(f"{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if node is None:
        return None
    return _build(node, path)


def _where(node: yaml.Node, path: Path) -> Where:
    style = getattr(node, "style", None)
    return Where(path, node.start_mark.line + 1, node.start_mark.column + 1, style)


def _build(node: yaml.Node, path: Path) -> Any:
    if isinstance(node, yaml.MappingNode):
        out = PosDict()
        out.where, out.start = {}, _where(node, path)
        for k, v in node.value:
            key = _build(k, path)
            out[key] = _build(v, path)
            out.where[key] = _where(v, path)
        return out
    if isinstance(node, yaml.SequenceNode):
        lst = PosList(_build(v, path) for v in node.value)
        lst.where, lst.start = [_where(v, path) for v in node.value], _where(node, path)
        return lst
    try:
        return _SCALARS.construct_object(node)  # plain YAML typing (int, date, ...)
    except (ValueError, yaml.YAMLError) as exc:  # e.g. a date that does not exist: 2021-02-30
        w = _where(node, path)
        raise PackError(f"{w}: {node.value!r} is not a valid value: {exc}") from None


def _segments(where: Where, text: str) -> list[tuple[int, int, str]] | None:
    """(line, column, content) of each source line of a block or multi-line plain scalar.

    None when the value is on one line (the plain formula is exact there) or the
    file cannot be read again.
    """
    if where.style not in (">", "|", None):
        return None
    try:
        lines = where.file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    out: list[tuple[int, int, str]] = []
    if where.style is None:
        if where.line > len(lines):
            return None
        first = lines[where.line - 1][where.column - 1 :]
        if first.startswith(text.rstrip("\n")):
            return None  # a one-line plain scalar (perhaps inside [...] or {...})
        out.append((where.line, where.column, first.rstrip()))
    indent: int | None = None
    for i in range(where.line, len(lines)):  # continuation lines / the block's lines
        line = lines[i]
        if not line.strip():
            continue
        here = len(line) - len(line.lstrip(" "))
        if indent is None:
            indent = here
        if here < indent:
            break
        content = line[indent:].rstrip() if where.style else line.strip()
        col = indent + 1 if where.style else here + 1
        out.append((i + 1, col, content))
    return out


def _locate(where: Where, text: str, offset: int) -> tuple[int, int] | None:
    """Find ``offset`` of the (folded) value among its source lines."""
    segments = _segments(where, text)
    if not segments:
        return None
    cursor = 0
    last: tuple[int, int] | None = None
    for line, col, content in segments:
        if not content:
            continue
        pos = text.find(content, cursor)
        if pos < 0:
            break
        if offset < pos:  # between two source lines: point at the next one
            return line, col
        if offset < pos + len(content):
            return line, col + offset - pos
        cursor = pos + len(content)
        last = (line, col + len(content))
    if last is not None and offset >= len(text.rstrip()):
        return last  # the end of the expression
    return None


def expression_position(where: Where, text: str, offset: int) -> tuple[int, int]:
    """File line and column of character ``offset`` of an expression value."""
    located = _locate(where, text, offset)
    if located is not None:
        return located
    if where.style in (">", "|"):
        # A block scalar starts on the line after the indicator; count lines in the text.
        before = text[:offset]
        line = where.line + 1 + before.count("\n") if where.style == "|" else where.line + 1
        if where.style == ">":
            return line, offset + 1
        return line, offset - (before.rfind("\n") + 1) + 1
    quote = 1 if where.style in ("'", '"') else 0
    return where.line, where.column + quote + offset


def excerpt(text: str, offset: int) -> str:
    """The expression with a caret under ``offset`` (single-line view)."""
    flat = text.replace("\n", " ").rstrip()
    return f"    {flat}\n    {' ' * min(offset, len(flat))}^"
