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
    return _SCALARS.construct_object(node)  # plain YAML typing (int, date, ...)


def expression_position(where: Where, text: str, offset: int) -> tuple[int, int]:
    """File line and column of character ``offset`` of an expression value."""
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
