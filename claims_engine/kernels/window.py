"""Numba kernels for window measures over rows sorted by (partition, source, order).

Rows are sorted so that each partition (card holder, item, ...) is contiguous,
history rows come before batch rows (history is earlier than the batch), and
within each source rows follow the window's order.  Rows with equal order
values form a *tie group*: they are not earlier than one another.  For each row
the kernels look at the earlier rows of its partition: those before its tie group.

The sort is one ``np.sort`` of int64 values packing the key fields and the row
number (``sort_window``); everything else is one pass (or a binary search per
row) over the sorted arrays; no Python loop per card holder or per claim.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

Array = np.ndarray[Any, Any]


PART = 1  # ``Sorted.starts`` flag: a partition starts at this sorted position
TIE = 2  # a tie group starts here (every partition start is one too)


@dataclass(frozen=True)
class Sorted:
    """The sort of a window's rows: partitions and tie groups are runs of positions."""

    order: Array  # sorted position -> window row; only keyed rows that may have earlier ones
    starts: Array  # uint8 per sorted position: PART | TIE flags
    keyed: Array | None  # per window row: a full (non-null) partition key (and day);
    # None: every row
    first_batch: int  # window rows from here on are batch rows


_EMPTY = np.zeros(0, dtype=np.int64)


def bits(card: int) -> int:
    """Bits holding the codes 0..card-1."""
    return max(int(card) - 1, 0).bit_length()


def _fits(span: int, n: int) -> bool:
    """Values 0..span-1 and a row number below ``n`` pack into one non-negative int64."""
    return span <= (1 << (63 - max(bits(n), 1)))


@numba.njit(cache=True, nogil=True)
def _packed(key: Array, low: int, b: int) -> Array:  # pragma: no cover
    """(key - low) << b | row, in one pass."""
    out = np.empty(key.shape[0], dtype=np.int64)
    for i in range(key.shape[0]):
        out[i] = ((np.int64(key[i]) - low) << b) | i
    return out


def _argsort(key: Array) -> Array:
    """Indices sorting int64 ``key`` (ties in row order).

    When key and row number fit one int64 together, the row number is packed into
    the low bits and the values are sorted: several times faster than argsort.
    """
    n = len(key)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = int(key.min()), int(key.max())
    if _fits(high - low + 1, n):
        b = max(bits(n), 1)
        packed = _packed(key, low, b)
        packed.sort()
        packed &= (1 << b) - 1
        return packed
    return np.argsort(key, kind="stable")


def stable_argsort(key: Array) -> Array:
    """A stable argsort of int64 keys (the packed value sort keeps equal keys in row order)."""
    return _argsort(key)


@numba.njit(cache=True, nogil=True)
def _ranks_of_packed(packed: Array, b: int, out: Array) -> int:  # pragma: no cover
    """Dense ranks from sorted (key << b | row) values, written per row; their count."""
    mask = (np.int64(1) << b) - 1
    r = -1
    prev = np.int64(-1)
    for j in range(packed.shape[0]):
        k = packed[j] >> b
        if r < 0 or k != prev:
            r += 1
            prev = k
        out[packed[j] & mask] = r
    return r + 1


@numba.njit(cache=True, nogil=True)
def _ranks_of_order(key: Array, order: Array, out: Array) -> int:  # pragma: no cover
    r = -1
    for j in range(order.shape[0]):
        if r < 0 or key[order[j]] != key[order[j - 1]]:
            r += 1
        out[order[j]] = r
    return r + 1


def dense(key: Array) -> tuple[Array, int]:
    """Dense ranks (0..k-1, order kept) of int64 keys, and k."""
    n = len(key)
    if n == 0:
        return key.astype(np.int64), 0
    out = np.empty(n, dtype=np.int64)
    low, high = int(key.min()), int(key.max())
    if low == high:
        out[:] = 0
        return out, 1
    if _fits(high - low + 1, n):
        b = max(bits(n), 1)
        packed = _packed(key, low, b)
        packed.sort()
        return out, int(_ranks_of_packed(packed, b, out))
    order = np.argsort(key, kind="stable")
    return out, int(_ranks_of_order(key, order, out))


@numba.njit(cache=True, nogil=True)
def _tied_rows(packed: Array, b: int) -> Array:  # pragma: no cover
    """Rows of sorted (key << b | row) values that share their key with another row."""
    n = packed.shape[0]
    out = np.empty(n, dtype=np.int64)
    mask = (np.int64(1) << b) - 1
    m = 0
    j = 0
    while j < n:
        e = j + 1
        while e < n and packed[e] >> b == packed[j] >> b:
            e += 1
        if e - j > 1:
            for x in range(j, e):
                out[m] = packed[x] & mask
                m += 1
        j = e
    return out[:m]


@numba.njit(cache=True, nogil=True)
def _ranks_refined(packed: Array, b: int, sub: Array, out: Array) -> int:  # pragma: no cover
    """Dense ranks by (key, sub) from sorted (key << b | row) values; ``sub`` only
    matters among rows of equal key.  Returns the number of ranks."""
    n = packed.shape[0]
    mask = (np.int64(1) << b) - 1
    rows = np.empty(32, dtype=np.int64)  # a short run of equal keys
    codes = np.empty(32, dtype=np.int64)
    r = -1
    j = 0
    while j < n:
        e = j + 1
        while e < n and packed[e] >> b == packed[j] >> b:
            e += 1
        m = e - j
        if m == 1:
            r += 1
            out[packed[j] & mask] = r
            j = e
            continue
        if m > 32:  # a long run (a window ordered by a string alone): merge sort
            members = packed[j:e] & mask
            keys = sub[members]
            idx = np.argsort(keys, kind="mergesort")
            for t in range(m):
                if t == 0 or keys[idx[t]] != keys[idx[t - 1]]:
                    r += 1
                out[members[idx[t]]] = r
            j = e
            continue
        for t in range(m):  # insertion sort by code: stable, rows stay in order
            row = packed[j + t] & mask
            c = sub[row]
            y = t - 1
            while y >= 0 and codes[y] > c:
                codes[y + 1] = codes[y]
                rows[y + 1] = rows[y]
                y -= 1
            codes[y + 1] = c
            rows[y + 1] = row
        for t in range(m):
            if t == 0 or codes[t] != codes[t - 1]:
                r += 1
            out[rows[t]] = r
        j = e
    return r + 1


def dense_refined(key: Array, refine: Callable[[Array], Array]) -> tuple[Array, int]:
    """Dense ranks of (key, a last key known only through ``refine``).

    ``refine(rows)`` gives the codes (order kept) of the last key at the rows that
    share their ``key`` with another row: the only rows where it matters (a claim_id
    after card holder and admission time: a few rows, not every claim's string).
    """
    n = len(key)
    if n == 0:
        return key.astype(np.int64), 0
    low, high = int(key.min()), int(key.max())
    b = max(bits(n), 1)
    if not _fits(high - low + 1, n):
        key, size = dense(key)
        sub = np.zeros(n, dtype=np.int64)
        tied = np.flatnonzero(np.bincount(key, minlength=size)[key] > 1)
        sub[tied] = refine(tied)
        return dense(combine([(key, size), (sub, int(sub.max()) + 1)], n)[0])
    packed = _packed(key, low, b)
    packed.sort()
    tied = _tied_rows(packed, b)
    out = np.empty(n, dtype=np.int64)
    if len(tied) == 0:
        return out, int(_ranks_of_packed(packed, b, out))
    sub = np.zeros(n, dtype=np.int64)
    sub[tied] = refine(tied)
    return out, int(_ranks_refined(packed, b, sub, out))


def combine(parts: list[tuple[Array, int]], n: int) -> tuple[Array, int]:
    """One int64 key from (codes, cardinality) parts, most significant first.

    Mixed radix while the key packs with a row number into an int64 (see
    ``dense``); where it would not, what is combined so far is replaced by its
    dense ranks (order kept), so any number of keys works.
    """
    key = np.zeros(n, dtype=np.int64)
    size = 1
    for codes, card in parts:
        card = max(int(card), 1)
        if card == 1:
            continue
        if size > 1 and not _fits(size * card, n):
            key, size = dense(key)
            size = max(size, 1)
            if not _fits(size * card, n):  # sparse codes (a timestamp's seconds)
                codes, card = dense(codes)
        key = codes.astype(np.int64, copy=False) if size == 1 else key * card + codes
        size *= card
    return key, size


# --- the sort of a window ------------------------------------------------------


Field = tuple[Array, int, int]  # codes per row (any integer dtype), low, cardinality


@dataclass(frozen=True)
class ClaimRank:
    """Claims (or the rows of a claim window) ranked for a window's sort."""

    rank: Array  # per claim: dense rank by (claim partition keys, source, order keys)
    count: int  # number of ranks
    group: Array  # per rank: its claim partition (non-decreasing)
    keyed: Array  # per claim: its partition keys are all non-null
    alone: Array | None = None  # per claim: no earlier row can share its partition


@numba.njit(cache=True, nogil=True)
def _pack(
    h1: Array,
    h1_low: int,
    s_h1: int,
    h2: Array,
    h2_low: int,
    s_h2: int,
    a: Array,
    s_a: int,
    b: Array,
    s_b: int,
    l1: Array,
    l1_low: int,
    s_l1: int,
    l2: Array,
    l2_low: int,
    s_l2: int,
    mid_of: Array,
    row_ok: Array,
    claim_ok: Array,
    alone: Array,
    m: int,
) -> tuple[Array, Array]:  # pragma: no cover
    """Packed keys of the rows to sort, and which rows are keyed (empty: all of them,
    when row_ok and claim_ok are empty).

    Row p (claim c = mid_of[p], or p) is keyed when row_ok[p] and claim_ok[c]; it is
    sorted unless alone[c].  Its key: (h1 - low) << s_h1 | ... | a[c] << s_a |
    b[c] << s_b | (l1 - low) << s_l1 | ... | p; empty fields are left out.
    """
    out = np.empty(m, dtype=np.int64)
    track = row_ok.shape[0] > 0 or claim_ok.shape[0] > 0
    keyed = np.empty(m if track else 0, dtype=np.bool_)
    j = 0
    for p in range(m):
        c = mid_of[p] if mid_of.shape[0] else p
        k = (claim_ok[c] if claim_ok.shape[0] else True) and (
            row_ok[p] if row_ok.shape[0] else True
        )
        if track:
            keyed[p] = k
        if not k or (alone.shape[0] and alone[c]):
            continue
        v = np.int64(p)
        if h1.shape[0]:
            v |= (np.int64(h1[p]) - h1_low) << s_h1
        if h2.shape[0]:
            v |= (np.int64(h2[p]) - h2_low) << s_h2
        if a.shape[0]:
            v |= np.int64(a[c]) << s_a
        if b.shape[0]:
            v |= np.int64(b[c]) << s_b
        if l1.shape[0]:
            v |= (np.int64(l1[p]) - l1_low) << s_l1
        if l2.shape[0]:
            v |= (np.int64(l2[p]) - l2_low) << s_l2
        out[j] = v
        j += 1
    return out[:j], keyed


@numba.njit(cache=True, nogil=True)
def _bounds(
    packed: Array, b_row: int, s_part: int, s_a: int, m_a: int, grp: Array
) -> Array:  # pragma: no cover
    """Where partitions and tie groups start in sorted packed keys; the keys become
    their rows (in place).

    A partition is the bits from ``s_part`` up and, with a ``grp`` table, the group
    of the field at ``s_a`` (``grp[(key >> s_a) & m_a]``); a tie group is every bit
    above the row.
    """
    n = packed.shape[0]
    row_mask = (np.int64(1) << b_row) - 1
    starts = np.empty(n, dtype=np.uint8)
    use_grp = grp.shape[0] > 0
    prev_p = np.int64(-1)
    prev_g = np.int64(-1)
    prev_t = np.int64(-1)
    for j in range(n):
        k = packed[j]
        p = k >> s_part
        g = grp[(k >> s_a) & m_a] if use_grp else np.int64(0)
        t = k >> b_row
        if j == 0 or p != prev_p or g != prev_g:
            starts[j] = PART | TIE
        elif t != prev_t:
            starts[j] = TIE
        else:
            starts[j] = 0
        prev_p, prev_g, prev_t = p, g, t
        packed[j] = k & row_mask
    return starts


def _codes(fields: list[Field]) -> list[tuple[Array, int]]:
    """Fields as codes 0..card-1 (rows where a field is not valid may hold anything)."""
    return [(np.clip(np.asarray(c, dtype=np.int64) - low, 0, k - 1), k) for c, low, k in fields]


@numba.njit(cache=True, nogil=True)
def rank_groups(rank: Array, count: int, part: Array) -> Array:  # pragma: no cover
    """The group of each rank: dense ranks of the claims' partition keys ``part``
    (each rank's claims share theirs; ranks are ordered by partition first)."""
    g = np.zeros(count, dtype=np.int64)
    for c in range(rank.shape[0]):
        g[rank[c]] = part[c]
    gid = np.int64(-1)
    prev = np.int64(0)
    for r in range(count):
        v = g[r]
        if r == 0 or v != prev:
            gid += 1
            prev = v
        g[r] = gid
    return g


@numba.njit(cache=True, nogil=True)
def alone(rank: Array, group: Array, keyed: Array) -> Array:  # pragma: no cover
    """Claims that are the only keyed claim of their group."""
    sizes = np.zeros(group[group.shape[0] - 1] + 1 if group.shape[0] else 1, dtype=np.int64)
    for c in range(rank.shape[0]):
        if keyed[c]:
            sizes[group[rank[c]]] += 1
    out = np.empty(rank.shape[0], dtype=np.bool_)
    for c in range(rank.shape[0]):
        out[c] = sizes[group[rank[c]]] == 1
    return out


@numba.njit(cache=True, nogil=True)
def _layout(rank: Array, group: Array) -> tuple[Array, Array, Any, Any]:  # pragma: no cover
    """Per claim: its group (dense) and its rank within the group; their counts."""
    count = group.shape[0]
    dense_g = np.empty(count, dtype=np.int64)
    within = np.empty(count, dtype=np.int64)
    gid = np.int64(-1)
    first = 0
    widest = np.int64(0)
    for r in range(count):
        if r == 0 or group[r] != group[r - 1]:
            gid += 1
            first = r
        dense_g[r] = gid
        within[r] = r - first
        if within[r] > widest:
            widest = within[r]
    a = np.empty(rank.shape[0], dtype=np.int64)
    b = np.empty(rank.shape[0], dtype=np.int64)
    for c in range(rank.shape[0]):
        a[c] = dense_g[rank[c]]
        b[c] = within[rank[c]]
    return a, b, gid + 1, widest + 1


def _fold(fields: list[Field], n: int) -> list[Field]:
    """At most two fields: the leading ones combined (mixed radix, dense if needed)."""
    fields = [f for f in fields if f[2] > 1]
    if len(fields) <= 2:
        return fields
    key, size = combine(_codes(fields[:-1]), n)
    return [(key, 0, size), fields[-1]]


def _shifts(fields: list[Field], start: int) -> tuple[list[tuple[Array, int, int]], int]:
    """(codes, low, shift) of up to two fields packed from bit ``start`` up (last field
    lowest), padded with empty fields; and the bit above them."""
    out: list[tuple[Array, int, int]] = []
    at = start
    for codes, low, card in reversed(fields):
        out.insert(0, (codes, low, at))
        at += bits(card)
    while len(out) < 2:
        out.append((_EMPTY, 0, 0))
    return out, at


def sort_window(
    hi: list[Field],
    claims: ClaimRank,
    lo: list[Field],
    row_ok: Array | None,
    first_batch: int,
    mid_of: Array | None = None,
    layouts: tuple[str, ...] = ("group", "rank"),
) -> Sorted:
    """Sort window rows by (hi, claim rank, lo, row) into partitions and tie groups.

    ``hi``: partition fields of the rows; ``claims``: the rank of each row's claim
    (``mid_of[row]``; a claim window: of the row itself), whose partition part is
    its group; ``lo``: order fields.  Rows from ``first_batch`` on are batch rows.
    Only keyed rows (``row_ok`` and their claim keyed) are sorted, and not those
    whose claim is ``alone`` (no row of its partition that is not tied with it).

    The key packs into one int64 with the row: when it fits, the group and the
    rank within the group go in (the partition is then the high bits); else the
    rank, and its group is looked up per row; else dense ranks of the whole key
    (``layouts``: the packings to try, "group" and "rank"; tests force the others).
    One np.sort of the packed keys beats sorting each card holder's lines apart:
    a holder's claims lie all over the batch, so that reads them at random.
    """
    m = len(mid_of) if mid_of is not None else len(claims.rank)
    hi, lo = _fold(hi, m), _fold(lo, m)
    b_row = max(bits(m), 1)
    b_hi, b_lo = sum(bits(f[2]) for f in hi), sum(bits(f[2]) for f in lo)
    rank, grp = claims.rank, claims.group
    if len(grp) == 0:
        grp = np.zeros(max(claims.count, 1), dtype=np.int64)
    # per claim: its group and its rank within the group
    a, b, n_groups, widest = _layout(rank, grp)
    b_g, b_w, b_r = bits(int(n_groups)), bits(int(widest)), bits(claims.count)
    if "group" in layouts and b_hi + b_g + b_w + b_lo + b_row <= 63:
        a, b = a if b_g else _EMPTY, b if b_w else _EMPTY
        (l1, l2), s_b = _shifts(lo, b_row)
        s_a = s_b + b_w
        (h1, h2), _ = _shifts(hi, s_a + b_g)
        s_part, s_grp, m_grp, table = s_a, 0, 0, _EMPTY
    elif "rank" in layouts and b_hi + b_r + b_lo + b_row <= 63:
        a, b = rank if b_r else _EMPTY, _EMPTY
        (l1, l2), s_a = _shifts(lo, b_row)
        s_b, s_part = 0, s_a + b_r
        (h1, h2), _ = _shifts(hi, s_part)
        s_grp, m_grp, table = s_a, (1 << b_r) - 1, grp
    else:
        return _sort_dense(hi, claims, lo, row_ok, first_batch, mid_of)
    packed, keyed = _pack(
        *h1, *h2, a, s_a, b, s_b, *l1, *l2,
        _EMPTY if mid_of is None else mid_of,
        np.zeros(0, dtype=bool) if row_ok is None else row_ok,
        np.zeros(0, dtype=bool) if claims.keyed.all() else claims.keyed,
        np.zeros(0, dtype=bool) if claims.alone is None else claims.alone,
        m,
    )  # fmt: skip
    packed.sort()
    starts = _bounds(packed, b_row, s_part, s_grp, m_grp, table)
    return Sorted(packed, starts, keyed if len(keyed) or m == 0 else None, first_batch)


def _sort_dense(
    hi: list[Field],
    claims: ClaimRank,
    lo: list[Field],
    row_ok: Array | None,
    first_batch: int,
    mid_of: Array | None,
) -> Sorted:
    """``sort_window`` for keys too wide to pack: by dense ranks of the whole key.

    Each rank of the whole key (partition fields first) lies in one partition, so
    the ranks with their partition as group sort like any packed key.
    """
    m = len(mid_of) if mid_of is not None else len(claims.rank)
    at = mid_of if mid_of is not None else np.arange(m, dtype=np.int64)
    rank = claims.rank[at]
    keyed = claims.keyed[at] if row_ok is None else claims.keyed[at] & row_ok
    parts = _codes(hi)
    if len(claims.group) and int(claims.group.max()) > 0:
        parts.append((claims.group[rank], int(claims.group.max()) + 1))
    part, pcard = combine(parts, m)
    whole, _ = combine([(part, pcard), (rank, claims.count), *_codes(lo)], m)
    whole, wcard = dense(whole)
    group = np.zeros(max(wcard, 1), dtype=np.int64)
    group[whole] = part
    alone = claims.alone[at] if claims.alone is not None else None
    return sort_window([], ClaimRank(whole, wcard, group, keyed, alone), [], None, first_batch)


@numba.njit(cache=True, nogil=True)
def bounds(
    starts: Array, order: Array, first_batch: int
) -> tuple[Array, Array, Array]:  # pragma: no cover
    """Per sorted position: the first position of its partition, of its tie group, and
    of its partition's batch rows (the partition's end if none)."""
    n = starts.shape[0]
    part = np.empty(n, dtype=np.int64)
    tie = np.empty(n, dtype=np.int64)
    batch = np.empty(n, dtype=np.int64)
    a = 0
    while a < n:
        b = a + 1
        while b < n and not starts[b] & PART:
            b += 1
        first = b
        for x in range(a, b):
            if order[x] >= first_batch:
                first = x
                break
        for x in range(a, b):
            part[x] = a
            tie[x] = x if starts[x] & TIE else tie[x - 1]
            batch[x] = first
        a = b
    return part, tie, batch


# --- measures ----------------------------------------------------------------
# Each measure gives every batch row of the window its value: out[r], ok[r] for
# r = combined row - n_history (rows outside the window: ok False).  ``rows`` maps
# window rows to combined rows (empty: the window holds every row).  The kernels
# only look into partitions with more than one tie group: elsewhere no row has an
# earlier one and keeps the default (count 0; no max, min, first, last), so most
# rows of a card-holder window are never read or written.


def zeros(n: int, dtype: Any) -> Array:
    """Zeros written in order: fresh pages then filled a few at random cost a page
    fault each, far more than writing them all once (on this VM: 80 ms vs 10 ms)."""
    out = np.empty(n, dtype=dtype)
    out.fill(0)
    return out


def _keyed_rows(s: Sorted, rows: Array, n_history: int, n: int) -> Array | None:
    """ok of a count: every keyed batch row of the window (None: every batch row)."""
    if s.keyed is None and not len(rows):
        return None
    ok = zeros(n, bool)
    if s.keyed is not None and len(s.keyed) == 0:  # an empty window
        return ok
    batch = s.keyed[s.first_batch :] if s.keyed is not None else True
    if len(rows):
        ok[rows[s.first_batch :] - n_history] = batch
    elif s.first_batch - n_history < n:
        ok[s.first_batch - n_history :] = batch
    return ok


def count_earlier(
    s: Sorted, counted: Array, value: Array, rows: Array, n_history: int, n: int
) -> tuple[Array, Array | None]:
    """Count (``value`` empty) or sum of ``value`` over each row's earlier counted rows,
    and which batch rows get a measure (None: every one)."""
    out = zeros(n, np.int64)
    _count_earlier(s.order, s.starts, counted, value, rows, s.first_batch, n_history, out)
    return out, _keyed_rows(s, rows, n_history, n)


def count_days(
    s: Sorted,
    counted: Array,
    value: Array,
    day: Array,
    width: Array,
    rows: Array,
    n_history: int,
    n: int,
) -> tuple[Array, Array | None]:
    """``count_earlier`` over the earlier rows whose day lies in the ``width`` days
    ending on the row's day (the day is the first order key after the source)."""
    out = zeros(n, np.int64)
    _count_days(s.order, s.starts, counted, value, day, width, rows, s.first_batch, n_history, out)
    return out, _keyed_rows(s, rows, n_history, n)


def running(
    s: Sorted, counted: Array, values: Array, mode: int, rows: Array, n_history: int
) -> tuple[Array, Array]:
    """Over each row's earlier counted rows: mode 0 max, 1 min of ``values``; 2 the
    first, 3 the last of them in window order, as a combined row.

    Only the batch rows that have earlier counted rows get one: (their rows, the
    results), a few of a card-holder window's millions of rows.
    """
    return _running(s.order, s.starts, counted, values, mode, rows, s.first_batch, n_history)


@numba.njit(cache=True, nogil=True)
def _partition_end(starts: Array, a: int) -> tuple[int, bool]:  # pragma: no cover
    """The end of the partition starting at ``a``, and whether it has several tie groups."""
    n = starts.shape[0]
    b = a + 1
    ties = False
    while b < n and not starts[b] & PART:
        if starts[b] & TIE:
            ties = True
        b += 1
    return b, ties


@numba.njit(cache=True, nogil=True)
def _count_earlier(
    order: Array,
    starts: Array,
    counted: Array,
    value: Array,
    rows: Array,
    first_batch: int,
    n_history: int,
    out: Array,
) -> None:  # pragma: no cover
    a = 0
    while a < order.shape[0]:
        b, ties = _partition_end(starts, a)
        if ties:
            total = np.int64(0)
            before = np.int64(0)
            for j in range(a, b):
                if starts[j] & TIE:
                    before = total
                w = order[j]
                if counted[w]:
                    total += value[w] if value.shape[0] else 1
                if w >= first_batch and before != 0:
                    out[(rows[w] if rows.shape[0] else w) - n_history] = before
        a = b


@numba.njit(cache=True, nogil=True)
def _count_days(
    order: Array,
    starts: Array,
    counted: Array,
    value: Array,
    day: Array,
    width: Array,
    rows: Array,
    first_batch: int,
    n_history: int,
    out: Array,
) -> None:  # pragma: no cover
    """Within a partition history rows come first, sorted by day; the batch rows
    before a tie group have a day <= the row's day (by order), so a binary search
    for the first day of the range bounds each part."""
    m = order.shape[0]
    d = np.empty(m, dtype=np.int64)
    prefix = np.zeros(m + 1, dtype=np.int64)
    a = 0
    while a < m:
        b, ties = _partition_end(starts, a)
        if not ties:
            a = b
            continue
        for j in range(a, b):
            w = order[j]
            d[j] = day[w]
            add = np.int64(0)
            if counted[w]:
                add = value[w] if value.shape[0] else np.int64(1)
            prefix[j + 1] = prefix[j] + add
        bs = b  # the partition's first batch row
        for y in range(a, b):
            if order[y] >= first_batch:
                bs = y
                break
        ts = a
        for j in range(a, b):
            if starts[j] & TIE:
                ts = j
            w = order[j]
            if w < first_batch:
                continue
            high = d[j]
            low = high - width[w] + 1
            hist_end = bs if bs < ts else ts
            lo_h = a + np.searchsorted(d[a:hist_end], low, side="left")
            hi_h = a + np.searchsorted(d[a:hist_end], high, side="right")
            total = prefix[hi_h] - prefix[lo_h] if hi_h > lo_h else 0
            if ts > bs:
                c = bs + np.searchsorted(d[bs:ts], low, side="left")
                total += prefix[ts] - prefix[c]
            if total:
                out[(rows[w] if rows.shape[0] else w) - n_history] = total
        a = b


@numba.njit(cache=True, nogil=True)
def _running(
    order: Array,
    starts: Array,
    counted: Array,
    values: Array,
    mode: int,
    rows: Array,
    first_batch: int,
    n_history: int,
) -> tuple[Array, Array]:  # pragma: no cover
    size = 0  # rows of partitions with several tie groups: at most that many results
    a = 0
    while a < order.shape[0]:
        b, ties = _partition_end(starts, a)
        if ties:
            size += b - a
        a = b
    at = np.empty(size, dtype=np.int64)
    out = np.empty(size, dtype=np.int64)
    k = 0
    a = 0
    while a < order.shape[0]:
        b, ties = _partition_end(starts, a)
        if ties:
            cur = np.int64(0)
            seen = False
            cur_before = np.int64(0)
            seen_before = False
            for j in range(a, b):
                if starts[j] & TIE:
                    cur_before = cur
                    seen_before = seen
                w = order[j]
                row = rows[w] if rows.shape[0] else w
                if counted[w]:
                    v = values[w] if mode < 2 else np.int64(row)
                    if not seen or (mode == 0 and v > cur) or (mode == 1 and v < cur) or mode == 3:
                        cur = v
                    seen = True
                if w >= first_batch and seen_before:
                    at[k] = row - n_history
                    out[k] = cur_before
                    k += 1
        a = b
    return at[:k], out[:k]
