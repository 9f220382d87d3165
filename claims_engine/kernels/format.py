"""Rule messages: templates filled with the values that caused each hit, vectorized."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.kernels import values as V
from claims_engine.kernels.evaluate import Evaluator
from claims_engine.plan.plan import MessagePart


def as_text(arr: pa.Array) -> pa.Array:
    """Values as message text: decimals plain, dates ISO, null as 'null'."""
    if pa.types.is_list(arr.type):
        arr = pc.binary_join(arr, ";")
    elif pa.types.is_boolean(arr.type):
        arr = pc.if_else(arr, pa.scalar("true"), pa.scalar("false"))
    elif not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    return arr.fill_null("null")


def render(parts: tuple[MessagePart, ...], ev: Evaluator, rows: np.ndarray) -> pa.Array:
    """The message of each hit row; values are converted for the hit rows only."""
    if len(rows) == 0:
        return pa.array([], pa.string())
    pieces: list[pa.Array | pa.Scalar] = []
    for part in parts:
        if part.expr is None:
            pieces.append(pa.scalar(part.text))
        else:
            values = V.to_arrow(ev.eval_rows(part.expr, rows), len(rows))
            pieces.append(as_text(values))
    if not any(isinstance(p, pa.Array) for p in pieces):
        text = "".join(p.as_py() for p in pieces)  # type: ignore[union-attr]
        return pa.repeat(pa.scalar(text), len(rows)).cast(pa.string())
    return pc.binary_join_element_wise(*pieces, "")
