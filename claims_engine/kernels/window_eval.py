"""Window measures (``ir.Window``) of an ``Evaluator``: the card-holder rules and others.

A window's rows are the history rows, then the batch rows, of its level (*combined*
positions: history first), or only those where its ``where`` holds.  Measures refer
to that combined numbering.  Each window spec is sorted once (``sorted_window``),
by one ``np.sort`` of packed int64 keys (``window.sort_window``):

* the claim keys of a line window are ranked per claim, not per line: the claim
  partition keys (card holder, facility, ...), the source (history before batch)
  and the leading claim order keys (admitted_at, claim_id) make one dense *claim
  rank*; a line reads its claim's rank, so 8M lines sort by (line partition keys,
  claim rank, other order keys) and the claim partition is the rank's group;
* a string order key (claim_id) is only compared where the keys before it tie: a
  few rows, not the million claim ids;
* string partition keys come from ``Evaluator.dictionary`` (codes cached per batch).

Null keys: a row with a null partition key (or day) is not keyed (no measure); null
order values sort first and equal one another.  With a ``where``, only the rows
where it holds take part and only they are encoded and sorted.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.kernels import evaluate as _ev
from claims_engine.kernels import values as V
from claims_engine.kernels import window
from claims_engine.kernels.values import Array, Vec
from claims_engine.lang import ir

if TYPE_CHECKING:
    from claims_engine.kernels.evaluate import Evaluator

Codes = tuple[Array, int, Array]  # codes 0..card-1 (0 where null), card, validity
_EMPTY = np.zeros(0, dtype=np.int64)


def n_history(ev: Evaluator) -> int:
    return ev.history.n if ev.history is not None else 0


# --- values at window rows ---------------------------------------------------


def _parts(ev: Evaluator, e: ir.Expr, rows: Array | None) -> list[tuple[Vec, int]]:
    """``e`` over the history rows and the batch rows (combined ``rows`` only if given)."""
    nh = n_history(ev)
    out: list[tuple[Vec, int]] = []
    if ev.history is not None:
        if rows is not None:
            hist = rows[: np.searchsorted(rows, nh)]
            out.append((_take(ev.history, e, hist), len(hist)))
        else:
            out.append((ev.history.eval(e), ev.history.n))
    if rows is not None:
        batch = rows[np.searchsorted(rows, nh) :] - nh
        out.append((_take(ev, e, batch), len(batch)))
    else:
        out.append((ev.eval(e), ev.n))
    return out


def _concat(arrays: list[Array]) -> Array:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _by_claim(ev: Evaluator, e: ir.Expr) -> bool:
    """A claim value at a line window: read per claim, through each line's claim
    (not broadcast to the lines first)."""
    return ev.level == "line" and e not in ev.cache and ev.ctx.level_of(e) == "claim"


def _pad(a: Array, fill: Any) -> Array:
    """Claim values plus the two virtual claims of lines without claim."""
    return np.concatenate((a, np.full(2, fill, dtype=a.dtype)))


def values_at(ev: Evaluator, e: ir.Expr, rows: Array | None) -> tuple[Array, Array]:
    """Numbers, dates, timestamps, booleans as int64 at combined ``rows``, and validity."""
    if _by_claim(ev, e):
        assert ev.parent is not None
        data, valid = values_at(ev.parent, e, None)
        at = _claims_of(ev, rows)
        return _pad(data, 0)[at], _pad(valid, False)[at]
    parts = _parts(ev, e, rows)
    data = _concat([np.asarray(V.full(v, n)).astype(np.int64, copy=False) for v, n in parts])
    valid = _concat([np.asarray(V.valid_mask(v, n)) for v, n in parts])
    return data, valid


def valid_at(ev: Evaluator, e: ir.Expr, rows: Array | None) -> Array:
    if _by_claim(ev, e):
        assert ev.parent is not None
        return _pad(valid_at(ev.parent, e, None), False)[_claims_of(ev, rows)]
    if isinstance(e, ir.Field) and e not in ev.cache:  # a column's nulls: not its values
        valid = _concat([_column_valid(x, e) for x in (ev.history, ev) if x is not None])
        return valid if rows is None else valid[rows]
    return _concat([np.asarray(V.valid_mask(v, n)) for v, n in _parts(ev, e, rows)])


def _column_valid(ev: Evaluator, e: ir.Field) -> Array:
    col = ev.table.column(e.name)
    if col.null_count == 0:
        return np.ones(ev.n, dtype=bool)
    return np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def truth_at(ev: Evaluator, e: ir.Expr | None, rows: Array | None) -> Array:
    """Where a condition is true at combined ``rows`` (null: not true)."""
    m = len(rows) if rows is not None else n_history(ev) + ev.n
    if e is None:
        return np.ones(m, dtype=bool)
    if m == 0:
        return np.zeros(0, dtype=bool)
    if _by_claim(ev, e):
        assert ev.parent is not None
        return _pad(truth_at(ev.parent, e, None), False)[_claims_of(ev, rows)]
    return _concat(
        [np.asarray(V.full(v, n), dtype=bool) & V.valid_mask(v, n) for v, n in _parts(ev, e, rows)]
    )


def take_combined(ev: Evaluator, e: ir.Expr, rows: Array) -> Vec:
    """Values of ``e`` at combined positions (-1: null).

    Mostly null (the first earlier claim of a line: most lines have none): only the
    rows asked for are read, and the column is built around them.
    """
    hit = np.flatnonzero(rows >= 0)
    if len(hit) * 8 >= len(rows):
        return _take_combined(ev, e, rows)
    return _spread(_take_combined(ev, e, rows[hit]), hit, len(rows))


def _take_combined(ev: Evaluator, e: ir.Expr, rows: Array) -> Vec:
    nh = n_history(ev)
    if ev.level == "line" and ev.ctx.level_of(e) == "claim":
        assert ev.parent is not None
        return _take_combined(ev.parent, e, _claim_of_rows(ev, rows))
    from_hist = (rows >= 0) & (rows < nh)
    batch_v = _take(ev, e, np.where(rows >= nh, rows - nh, -1))
    if not from_hist.any():
        return batch_v
    assert ev.history is not None
    hist_v = _take(ev.history, e, np.where(from_hist, rows, -1))
    return _ev._where(from_hist, hist_v, batch_v, len(rows))


def _take(ev: Evaluator, e: ir.Expr, rows: Array) -> Vec:
    """``e`` at ``rows`` (-1: null); a field not evaluated yet is read at those rows only."""
    if isinstance(e, ir.Field) and e not in ev.cache and len(rows) * 8 < ev.n:
        return V.from_arrow(_column_take(ev.table.column(e.name), rows), e.type)
    return _ev.take(ev.eval(e), rows)


def _column_take(col: pa.ChunkedArray, rows: Array) -> pa.Array:
    """A few rows of a column (-1: null), chunk by chunk: no chunk is copied whole."""
    if col.num_chunks == 1:
        out = col.chunk(0).take(pa.array(rows, mask=rows < 0))
        return out.cast(out.type.value_type) if pa.types.is_dictionary(out.type) else out
    ends = np.cumsum([len(c) for c in col.chunks])
    chunk_of = np.searchsorted(ends, rows, side="right")
    pieces, where = [], []
    for k in np.unique(chunk_of[rows >= 0]):
        at = np.flatnonzero((chunk_of == k) & (rows >= 0))
        piece = col.chunk(int(k)).take(pa.array(rows[at] - (ends[k] - len(col.chunk(int(k))))))
        if pa.types.is_dictionary(piece.type):
            piece = piece.cast(piece.type.value_type)
        pieces.append(piece)
        where.append(at)
    if not pieces:
        return pa.nulls(len(rows), _value_type(col.type))
    pos = np.full(len(rows), -1, dtype=np.int64)
    pos[np.concatenate(where)] = np.arange(sum(len(a) for a in where), dtype=np.int64)
    return pa.concat_arrays(pieces).take(pa.array(pos, mask=pos < 0))


def _value_type(ty: pa.DataType) -> pa.DataType:
    return ty.value_type if pa.types.is_dictionary(ty) else ty


def _spread(v: Vec, hit: Array, n: int) -> Vec:
    """``n`` values: ``v`` at rows ``hit``, null elsewhere."""
    if not v.is_arrow:
        data = window.zeros(n, np.asarray(v.data).dtype)
        valid = window.zeros(n, bool)
        data[hit] = V.full(v, len(hit))
        valid[hit] = V.valid_mask(v, len(hit))
        return Vec(v.type, data, valid)
    arr = V.to_arrow(v, len(hit))
    if len(hit) == 0:
        return Vec(v.type, pa.nulls(n, arr.type))
    if not pa.types.is_string(arr.type):
        pos = np.full(n, -1, dtype=np.int64)
        pos[hit] = np.arange(len(hit), dtype=np.int64)
        return Vec(v.type, arr.take(pa.array(pos, mask=pos < 0)))
    # a string column from buffers: offsets and validity for n rows, the hit rows' bytes
    ok = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False))
    arr, hit = arr.filter(pa.array(ok)), hit[ok]
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset :][: len(arr) + 1]
    # row i's offset: the bytes of the hit rows before it (written in order, once)
    gaps = np.diff(np.concatenate(([0], hit + 1, [n + 1])))
    out = np.repeat((offsets - offsets[0]).astype(np.int32), gaps)
    bitmap = np.zeros((n + 7) // 8, dtype=np.uint8)
    np.bitwise_or.at(bitmap, hit >> 3, (1 << (hit & 7)).astype(np.uint8))
    chars = arr.buffers()[2]
    if chars is not None:
        chars = chars.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    built = pa.StringArray.from_buffers(
        n, pa.py_buffer(out), chars, pa.py_buffer(bitmap), n - len(hit)
    )
    return Vec(v.type, built)


# --- key codes ---------------------------------------------------------------


def codes_at(ev: Evaluator, e: ir.Expr, rows: Array | None, ordered: bool = False) -> Codes:
    """Codes of ``e`` at combined ``rows`` (None: all): equal values, equal codes.

    Numbers, dates and timestamps are their offset from the smallest (order kept);
    strings are dictionary codes (with ``ordered``, ranks of the words).
    """
    if e.type.kind in ("str", "list_str"):
        return _string_codes(ev, e, rows, ordered)
    data, valid = values_at(ev, e, rows)
    if len(data) == 0:
        return _EMPTY, 1, valid
    every = bool(valid.all())
    span = V.bounds(data, None if every else valid)
    if span is None:
        return np.zeros(len(data), dtype=np.int64), 1, valid
    low, high = span
    codes = data - low if every else np.where(valid, data - low, 0)
    return codes, high - low + 1, valid


def _string_codes(ev: Evaluator, e: ir.Expr, rows: Array | None, ordered: bool) -> Codes:
    """Dictionary codes; history words join the batch's numbering after its own words."""
    nh = n_history(ev)
    idx, words = ev.dictionary(e)
    card = len(words)
    chunks = [idx if rows is None else idx[rows[np.searchsorted(rows, nh) :] - nh]]
    if ev.history is not None:
        h_idx, h_words = ev.history.dictionary(e)
        pos = np.asarray(pc.index_in(h_words, value_set=words).fill_null(-1), dtype=np.int64)
        new = pos < 0
        pos[new] = card + np.arange(int(new.sum()), dtype=np.int64)
        if new.any():
            words = pa.concat_arrays([words, h_words.filter(pa.array(new))])
            card = len(words)
        hist = h_idx if rows is None else h_idx[rows[: np.searchsorted(rows, nh)]]
        hist = np.asarray(hist, dtype=np.int64)
        chunks.insert(0, pos[hist] if len(pos) else np.full(len(hist), -1, dtype=np.int64))
        if len(pos):
            chunks[0][hist < 0] = -1
    raw = _concat(chunks)
    valid = raw >= 0
    codes = np.maximum(raw, 0).astype(np.int64)
    if ordered and card > 1:
        rank = np.empty(card, dtype=np.int64)
        rank[np.asarray(pc.sort_indices(words))] = np.arange(card, dtype=np.int64)
        codes = rank[codes]
    return codes, max(card, 1), valid


def _nulls_first(c: Codes) -> tuple[Array, int]:
    codes, card, valid = c
    if valid.all():
        return codes, card
    return np.where(valid, codes + 1, 0), card + 1


# --- claim ranks ---------------------------------------------------------------


def _mix(key: Array, size: int, codes: Array, card: int) -> tuple[Array, int]:
    """Append a field to a mixed-radix key; dense ranks first where it would not fit."""
    return window.combine([(key, size), (codes, card)], len(key))


def _claim_rank(
    cev: Evaluator,
    partition: list[ir.Expr],
    order: list[ir.Expr],
    claims: Array | None,
    virtual: Array,
    source: bool,
) -> window.ClaimRank:
    """Dense rank of claims by (partition keys, source, order keys, nulls first).

    ``claims``: combined claim rows (None: all), then the ``virtual`` rows (a line
    without claim: nhc + nc for a history line, nhc + nc + 1 for a batch line) whose
    keys are all null.  The group of a rank is its claim partition; a claim is
    keyed when its partition keys are all non-null.

    A rank of all claims is kept in ``cev.window_codes`` for the next window with
    the same keys: without history, duplicate_claim's (card holder, facility,
    admitted_at; claim_id) is duplicate_line's (card holder, facility; admitted_at,
    claim_id), the partition only ends earlier.
    """
    nhc = n_history(cev)
    n_real = len(claims) if claims is not None else nhc + cev.n
    n = n_real + len(virtual)
    keyed = np.ones(n, dtype=bool)
    parts: list[tuple[Array, int]] = []
    for e in partition:
        codes, card, valid = _claim_codes(cev, e, claims, virtual)
        keyed &= valid
        parts.append(_nulls_first((codes, card, valid)))
    src = None
    if source:
        src = claims >= nhc if claims is not None else np.arange(n_real) >= nhc
        src = np.concatenate((src, virtual > nhc + cev.n)).astype(np.int64)
        if len(src) == 0 or src.min() == src.max():
            src = None  # one source: it orders nothing
    # the keys in rank order; a number's codes are the same as partition or order
    # key, a string's are not (dictionary codes or ranks)
    ident = (
        *((e, False) for e in partition),
        *(("source",) if src is not None else ()),
        *((e, e.type.kind == "str") for e in order),
        ("virtual", len(virtual)),
    )
    cached = cev.window_codes.get(ident) if claims is None else None
    if cached is not None:
        rank, count = cached
    else:
        rank, count = _lex_rank(cev, parts, src, order, claims, virtual)
        if claims is None:
            cev.window_codes[ident] = (rank, count)
    group = np.zeros(count, dtype=np.int64)
    if n and partition:
        group = window.rank_groups(rank, count, window.combine(parts, n)[0])
    return window.ClaimRank(rank, count, group, keyed)


def _claim_codes(cev: Evaluator, e: ir.Expr, claims: Array | None, virtual: Array) -> Codes:
    """``codes_at`` for ranked claims: the virtual claims after them, null."""
    codes, card, valid = codes_at(cev, e, claims)
    if len(virtual):
        codes = np.concatenate((codes, np.zeros(len(virtual), dtype=np.int64)))
        valid = np.concatenate((valid, np.zeros(len(virtual), dtype=bool)))
    return codes, card, valid


def _lex_rank(
    cev: Evaluator,
    parts: list[tuple[Array, int]],
    src: Array | None,
    order: list[ir.Expr],
    claims: Array | None,
    virtual: Array,
) -> tuple[Array, int]:
    """Dense ranks by (partition codes, source, order keys with nulls first)."""
    n_real = len(claims) if claims is not None else n_history(cev) + cev.n
    n = n_real + len(virtual)
    key, size = window.combine([*parts, *([(src, 2)] if src is not None else [])], n)
    for i, e in enumerate(order):
        if e.type.kind == "str":  # compare the strings only where the rows tie so far
            strings = partial(_string_ranks, cev, e, claims, n_real)
            if i == len(order) - 1:
                key, size = window.dense_refined(key, strings)
                return key, max(size, 1)
            key, size = window.dense(key)
            if size >= n:
                return key, max(size, 1)
            tied = np.flatnonzero(np.bincount(key, minlength=size)[key] > 1)
            codes = np.zeros(n, dtype=np.int64)
            codes[tied] = strings(tied)
            card = int(codes.max()) + 1
        else:
            codes, card = _nulls_first(_claim_codes(cev, e, claims, virtual))
        key, size = _mix(key, size, codes, card)
    if size <= 1:
        return np.zeros(n, dtype=np.int64), 1
    key, size = window.dense(key)
    return key, max(size, 1)


def _string_ranks(
    cev: Evaluator, e: ir.Expr, claims: Array | None, n_real: int, sub: Array
) -> Array:
    """Ordered codes of a string key at positions ``sub`` of the ranked claims (null
    and the virtual claims: 0; values from 1, equal strings equal codes)."""
    codes = np.zeros(len(sub), dtype=np.int64)
    real = sub < n_real
    if not real.any():
        return codes
    at = sub[real]
    rows = claims[at] if claims is not None else at
    values = V.to_arrow(take_combined(cev, e, rows), len(rows)).cast(pa.string())
    rank = np.asarray(pc.rank(values, tiebreaker="dense"), dtype=np.int64)
    valid = np.asarray(values.is_valid().to_numpy(zero_copy_only=False))
    codes[real] = np.where(valid, rank, 0)
    return codes


# --- lines and their claims ------------------------------------------------------


def _claim_of_rows(ev: Evaluator, rows: Array) -> Array:
    """Combined line positions -> combined claim rows (-1: no claim, or rows -1)."""
    assert ev.parent is not None and ev.to_parent is not None
    nh, nhc = n_history(ev), n_history(ev.parent)
    out = np.full(len(rows), -1, dtype=np.int64)
    batch = rows >= nh
    tp = ev.to_parent[rows[batch] - nh]
    out[batch] = np.where(tp >= 0, tp + nhc, -1)
    hist = (rows >= 0) & ~batch
    if hist.any():
        assert ev.history is not None and ev.history.to_parent is not None
        out[hist] = ev.history.to_parent[rows[hist]]
    return out


def _claims_of(ev: Evaluator, sel: Array | None) -> Array:
    """Per window row (line): its claim's combined row; a line without claim gets the
    virtual claim nhc + nc (history line) or nhc + nc + 1 (batch line)."""
    assert ev.parent is not None and ev.to_parent is not None
    nh, nhc, nc = n_history(ev), n_history(ev.parent), ev.parent.n
    tp = ev.to_parent.astype(np.int64, copy=False)
    if sel is None and ev.history is None:
        return tp if len(tp) == 0 or tp.min() >= 0 else np.where(tp >= 0, tp, nc + 1)
    rows = sel if sel is not None else np.arange(nh + ev.n, dtype=np.int64)
    out = _claim_of_rows(ev, rows)
    missing = out < 0
    if missing.any():
        out[missing] = np.where(rows[missing] < nh, nhc + nc, nhc + nc + 1)
    return out


# --- the sort of a window --------------------------------------------------------


def where_rows(ev: Evaluator, spec: ir.WindowSpec) -> Array | None:
    """The combined rows taking part: those where ``where`` holds (None: every row)."""
    if spec.where is None:
        return None
    return np.flatnonzero(truth_at(ev, spec.where, None)).astype(np.int64)


def sorted_window(ev: Evaluator, spec: ir.WindowSpec) -> tuple[window.Sorted, Array | None]:
    if spec in ev.windows:
        return ev.windows[spec]
    nh = n_history(ev)
    sel = where_rows(ev, spec)
    first_batch = int(np.searchsorted(sel, nh)) if sel is not None else nh
    partition = list(dict.fromkeys(spec.partition))
    # a partition key is constant within a partition: it never orders
    order = [o for o in dict.fromkeys(spec.order) if o not in partition]
    hi: list[window.Field] = []
    lo: list[window.Field] = []
    row_ok: Array | None = None
    mid_of: Array | None = None
    if ev.level == "line" and ev.parent is not None:
        cev = ev.parent
        on_claim = [ev.ctx.level_of(k) != "line" for k in order]
        lead = len(order) if all(on_claim) else on_claim.index(False)
        claim_part = [p for p in partition if ev.ctx.level_of(p) != "line"]
        claim_of = _claims_of(ev, sel)
        virt_from = n_history(cev) + cev.n
        if sel is not None:  # rank only the claims of the window's lines
            claims, mid_of = np.unique(claim_of, return_inverse=True)
            mid_of = mid_of.astype(np.int64, copy=False)
            n_real = int(np.searchsorted(claims, virt_from))
            claims, virtual = claims[:n_real], claims[n_real:]
        else:
            mid_of, claims, virtual = claim_of, None, _EMPTY
            if len(claim_of) and int(claim_of.max()) >= virt_from:
                virtual = np.asarray([virt_from, virt_from + 1], dtype=np.int64)
        rank = _claim_rank(cev, claim_part, order[:lead], claims, virtual, source=True)
        for p in partition:
            if ev.ctx.level_of(p) == "line":
                f, ok = line_field(ev, p, sel)
                hi.append(f)
                row_ok = _and(row_ok, ok)
        lo = _order_fields(ev, order[lead:], sel, claims, virtual, mid_of)
    else:
        rank = _claim_rank(ev, partition, order, sel, _EMPTY, source=True)
    if spec.day is not None:
        day_ok = valid_at(ev, spec.day, sel)
        row_ok = _and(row_ok, None if day_ok.all() else day_ok)
    if not lo:  # ordered by claim only: a claim alone in its claim partition has no
        # earlier row (its own lines tie): most claims of a card-holder window
        rank = replace(rank, alone=window.alone(rank.rank, rank.group, rank.keyed))
    s = window.sort_window(hi, rank, lo, row_ok, first_batch, mid_of)
    ev.windows[spec] = (s, sel)
    return s, sel


def _and(a: Array | None, b: Array | None) -> Array | None:
    if a is None:
        return b
    return a if b is None else a & b


def line_field(
    ev: Evaluator, e: ir.Expr, rows: Array | None, ordered: bool = False
) -> tuple[window.Field, Array | None]:
    """A key at the window's rows as a sort field (codes, low, cardinality), and where
    it is valid (None: everywhere); dictionary indices and values are used as they are."""
    if e.type.kind in ("str", "list_str"):
        if ev.history is None and not ordered:
            idx, words = ev.dictionary(e)
            raw = idx if rows is None else idx[rows]
            ok = None if len(raw) == 0 or int(raw.min()) >= 0 else raw >= 0
            return (raw, 0, max(len(words), 1)), ok
        codes, card, valid = _string_codes(ev, e, rows, ordered)
        return (codes, 0, card), None if valid.all() else valid
    data, valid = values_at(ev, e, rows)
    every = bool(valid.all())
    span = V.bounds(data, None if every else valid)
    if span is None:
        return (np.zeros(len(data), dtype=np.int64), 0, 1), None if every else valid
    low, high = span
    return (data, low, high - low + 1), None if every else valid


def _order_fields(
    ev: Evaluator,
    order: list[ir.Expr],
    sel: Array | None,
    claims: Array | None,
    virtual: Array,
    mid_of: Array,
) -> list[window.Field]:
    """Order keys after the claim rank: line keys (nulls first), and runs of claim keys
    ranked per claim."""
    assert ev.parent is not None
    fields: list[window.Field] = []
    i = 0
    while i < len(order):
        if ev.ctx.level_of(order[i]) == "line":
            (codes, low, card), ok = line_field(ev, order[i], sel, ordered=True)
            if ok is not None:
                codes, low, card = np.where(ok, np.asarray(codes) - low + 1, 0), 0, card + 1
            fields.append((codes, low, card))
            i += 1
            continue
        j = i
        while j < len(order) and ev.ctx.level_of(order[j]) != "line":
            j += 1
        rank = _claim_rank(ev.parent, [], order[i:j], claims, virtual, source=False)
        fields.append((rank.rank[mid_of], 0, rank.count))
        i = j
    return fields


# --- measures ----------------------------------------------------------------


def measure(ev: Evaluator, e: ir.Window) -> Vec:
    spec = e.spec
    s, sel = sorted_window(ev, spec)
    nh = n_history(ev)
    counted = _counted(ev, e, sel, s.first_batch)
    value = _EMPTY
    if e.value is not None and e.fn not in ("first", "last"):
        value, value_ok = values_at(ev, e.value, sel)
        counted &= value_ok
    rows = sel if sel is not None else _EMPTY
    if e.fn in ("count", "sum"):
        summed = value if e.fn == "sum" else _EMPTY
        if spec.day is not None and spec.days is not None:
            day, _ = values_at(ev, spec.day, sel)
            width, width_ok = values_at(ev, spec.days, sel)
            counted = counted & width_ok
            out, ok = window.count_days(s, counted, summed, day, width, rows, nh, ev.n)
        else:
            out, ok = window.count_earlier(s, counted, summed, rows, nh, ev.n)
        return Vec(e.type, out, None if ok is None or ok.all() else ok)
    mode = {"max": 0, "min": 1, "first": 2, "last": 3}[e.fn]
    at, res = window.running(s, counted, value, mode, rows, nh)
    if e.fn in ("first", "last"):  # the combined row of that earlier row -> its value
        assert e.value is not None
        order = np.argsort(at)
        return _spread(_take_combined(ev, e.value, res[order]), at[order], ev.n)
    return _spread(Vec(e.type, res), at, ev.n)


def _counted(ev: Evaluator, e: ir.Window, sel: Array | None, first_batch: int) -> Array:
    """The window rows a measure counts: its condition holds, the value is not null
    (first/last: here; others: by the caller), and the row is not MALFORMED."""
    nh = n_history(ev)
    active = ev.active if ev.active is not None and not ev.active.all() else None
    if e.cond is None and e.value is None and sel is None and nh == 0 and active is not None:
        return active  # read only
    counted = truth_at(ev, e.cond, sel)
    if e.value is not None and e.fn in ("first", "last"):  # only positions are needed
        counted &= valid_at(ev, e.value, sel)
    if active is not None:  # MALFORMED batch rows never count
        if sel is None:
            counted[nh:] &= active
        else:
            counted[first_batch:] &= active[sel[first_batch:] - nh]
    return counted
