"""Runtime column values and exact decimal arithmetic on scaled integers.

A ``Vec`` is one evaluated expression over all rows of a level (claims or lines):

* numbers, booleans, dates (days since epoch) and timestamps (seconds) are numpy
  arrays plus a validity mask; numbers are *scaled integers*, their scale is in the
  static type (``Type.scale``), so 12.50 at scale 2 is the integer 1250;
* strings and string lists stay Arrow arrays (pyarrow.compute works on them).

Scaled integers are int64.  Where a product could leave int64, the operation is
redone on Python integers (numpy object arrays): exact at any size, slower, and
needed only by rows with values far beyond any real claim.  No binary floating
point ever carries a value; floats are only used to *detect* possible overflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.io.decimals import unscaled_values
from claims_engine.lang import types as t

INT64_SAFE = float(2**62)  # products estimated above this go the exact (object) path
Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Vec:
    type: t.Type
    data: Any  # numpy array (or numpy scalar for a constant) | pa.Array | pa.Scalar
    valid: Array | None = None  # numpy-backed kinds only; None = every row valid

    @property
    def is_arrow(self) -> bool:
        return self.type.kind in ("str", "list_str")

    @property
    def is_scalar(self) -> bool:
        return np.ndim(self.data) == 0 if not self.is_arrow else isinstance(self.data, pa.Scalar)


def valid_mask(v: Vec, n: int) -> Array:
    """Row validity as a numpy bool array of length ``n``."""
    if v.is_arrow:
        if isinstance(v.data, pa.Scalar):
            return np.full(n, v.data.is_valid)
        if v.data.null_count == 0:
            return np.ones(n, dtype=bool)
        return np.asarray(v.data.is_valid().to_numpy(zero_copy_only=False))
    if v.valid is None:
        return np.ones(n, dtype=bool)
    return np.broadcast_to(v.valid, (n,))


def rows(v: Vec, start: int, stop: int) -> Vec:
    """Rows [start, stop) of a column value (a constant stays a constant)."""
    if v.is_scalar:
        return v
    if v.is_arrow:
        return Vec(v.type, v.data.slice(start, stop - start))
    valid = v.valid if v.valid is None or np.ndim(v.valid) == 0 else v.valid[start:stop]
    return Vec(v.type, v.data[start:stop], valid)


def full(v: Vec, n: int) -> Array:
    """Numpy data broadcast to ``n`` rows (for numpy-backed kinds)."""
    return np.broadcast_to(np.asarray(v.data), (n,))


# --- Arrow <-> Vec ---------------------------------------------------------


def _validity(arr: pa.Array) -> Array | None:
    if arr.null_count == 0:
        return None
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False))


def decimal_to_scaled(arr: pa.Array) -> Array:
    """The unscaled integers of a decimal array, as int64 (exact for p <= 18);
    null slots hold 0.

    A decimal64 without nulls (a batch's decimals, io/decimals.py) is its value
    buffer as it is: zero-copy and read-only.  A decimal128's values are the low
    64-bit words of its 128-bit two's-complement values (at most 18 digits).
    """
    if arr.type.precision > 18:
        raise ValueError(f"{arr.type} does not fit int64 scaled integers")
    data = unscaled_values(arr)
    if arr.type.bit_width == 64 and not arr.null_count:
        return data
    data = data.copy()
    if arr.null_count:
        data[~np.asarray(arr.is_valid().to_numpy(zero_copy_only=False))] = 0
    return data


def _bits(arr: pa.Array) -> Array:
    """The validity bitmap of an array with nulls, one bool per row."""
    # only this array's bytes: chunks of a row group share one bitmap
    first, skip = divmod(arr.offset, 8)
    bitmap = np.frombuffer(arr.buffers()[0], dtype=np.uint8)
    bitmap = bitmap[first : first + (skip + len(arr) + 7) // 8]
    return np.unpackbits(bitmap, bitorder="little")[skip : skip + len(arr)].view(bool)


def _fixed_width(arr: pa.Array) -> Array | None:
    """The value buffer of an integer, date or timestamp array, zero-copy (None for
    other types)."""
    at = arr.type
    if pa.types.is_timestamp(at) or pa.types.is_date64(at):
        dtype: Any = np.int64
    elif pa.types.is_date32(at):
        dtype = np.int32
    elif pa.types.is_integer(at):
        dtype = at.to_pandas_dtype()
    else:
        return None
    return np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset : arr.offset + len(arr)]


def _from_chunks(col: pa.ChunkedArray, ty: t.Type) -> Vec:
    """A chunked number/date/decimal column as one int64 array: each chunk's values
    copied once into place from its buffer (no per-chunk fill_null, no second
    concatenation); nulls hold 0."""
    chunks = col.chunks
    if pa.types.is_decimal(col.type) and col.type.precision <= 18:
        values_of: Any = unscaled_values
    elif _fixed_width(chunks[0]) is not None:
        values_of = _fixed_width
    else:  # booleans
        parts = [from_arrow(c, ty) for c in chunks]
        data = np.concatenate([np.asarray(p.data) for p in parts])
        valid = None
        if any(p.valid is not None for p in parts):
            valid = np.concatenate(
                [valid_mask(p, len(c)) for p, c in zip(parts, chunks, strict=True)]
            )
        return Vec(parts[0].type, data, valid)
    data = np.empty(len(col), dtype=np.int64)
    valid = np.ones(len(col), dtype=bool) if col.null_count else None
    at = 0
    for c in chunks:
        end = at + len(c)
        if len(c):
            data[at:end] = values_of(c)
        if c.null_count:
            assert valid is not None
            ok = _bits(c)
            valid[at:end] = ok
            data[at:end][~ok] = 0
        at = end
    return Vec(ty, data, valid)


def from_arrow(arr: pa.Array | pa.ChunkedArray, ty: t.Type | None = None) -> Vec:
    if isinstance(arr, pa.ChunkedArray):
        if arr.num_chunks == 1:
            arr = arr.chunk(0)
        elif t.from_arrow(arr.type).kind in ("str", "list_str") or arr.num_chunks == 0:
            arr = arr.combine_chunks()
        else:  # numbers and dates: chunk by chunk into one numpy array
            return _from_chunks(arr, ty or t.from_arrow(arr.type))
    ty = ty or t.from_arrow(arr.type)
    at = arr.type
    if ty.kind in ("str", "list_str"):
        return Vec(ty, arr)
    valid = _validity(arr)
    if pa.types.is_decimal(at):
        return Vec(ty, decimal_to_scaled(arr), valid)
    if pa.types.is_date32(at):
        data = arr.cast(pa.int32()).fill_null(0).to_numpy().astype(np.int64)
    elif pa.types.is_timestamp(at):
        data = arr.cast(pa.int64()).fill_null(0).to_numpy()
    elif pa.types.is_boolean(at):
        data = arr.fill_null(False).to_numpy(zero_copy_only=False)
    elif pa.types.is_integer(at):
        data = arr.fill_null(0).to_numpy().astype(np.int64)
    else:
        raise TypeError(f"cannot evaluate a column of Arrow type {at}")
    return Vec(ty, data, valid)


def scaled_to_decimal(
    data: Array, valid: Array | None, scale: int, out_scale: int, precision: int = 18
) -> pa.Array:
    """Scaled integers -> decimal128(precision, out_scale), rounding half-up if needed."""
    data = rescale(data, scale, out_scale)
    if data.dtype == object:
        return pa.array(
            [
                None if (valid is not None and not ok) else _py_decimal(int(v), out_scale)
                for v, ok in zip(
                    data, valid if valid is not None else np.ones(len(data), bool), strict=True
                )
            ],
            type=pa.decimal128(precision, out_scale),
        )
    n = len(data)
    if n == 0 or int(data.min()) >= 0:
        words = np.zeros((n, 2), dtype=np.int64)  # calloc'd: the high words cost nothing
        words[:, 0] = data
    else:
        words = np.column_stack((data, data >> 63))  # sign extension into the high word
    bitmap = None
    null_count = 0
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
        null_count = int(n - valid.sum())
    return pa.Array.from_buffers(
        pa.decimal128(precision, out_scale), n, [bitmap, pa.py_buffer(words)], null_count
    )


def _py_decimal(v: int, scale: int) -> Any:
    from decimal import Decimal

    return Decimal(v).scaleb(-scale)


def to_arrow(v: Vec, n: int) -> pa.Array:
    """A Vec as an Arrow array of ``n`` rows (numbers as decimal128(18, scale))."""
    if v.is_arrow:
        if isinstance(v.data, pa.Scalar):
            return pa.repeat(v.data, n)
        return v.data
    data = np.ascontiguousarray(full(v, n))
    valid = None if v.valid is None else np.ascontiguousarray(np.broadcast_to(v.valid, (n,)))
    kind = v.type.kind
    if kind == "num":
        return scaled_to_decimal(
            data, valid, v.type.scale, v.type.scale, precision=max(18, v.type.scale + 1)
        )
    mask = None if valid is None else ~valid
    if kind == "bool":
        return pa.array(data.astype(bool), mask=mask)
    if kind == "date":
        return pa.array(data.astype(np.int32), mask=mask).cast(pa.date32())
    if kind == "timestamp":
        return pa.array(data, mask=mask).cast(pa.timestamp("s"))
    return pa.nulls(n)


# --- exact integer arithmetic ------------------------------------------------


def _exact(*arrays: Array) -> list[Array]:
    return [a.astype(object) if a.dtype != object else a for a in arrays]


@numba.njit(cache=True, nogil=True, parallel=True)
def _max_abs(a: Array) -> float:  # pragma: no cover
    m = 0.0
    for i in numba.prange(a.shape[0]):
        m = max(m, abs(float(a[i])))
    return m


def magnitude(a: Array) -> float:
    """Largest absolute value (a float bound, only used to detect possible overflow)."""
    if a.dtype == object:
        return float("inf")
    if a.ndim == 0:
        return abs(float(a))
    if a.size == 0:
        return 0.0
    return float(_max_abs(np.ascontiguousarray(a).astype(np.int64, copy=False)))


_magnitude = magnitude


def _may_overflow(a: Array, b: Array) -> bool:
    if a.dtype == object or b.dtype == object:
        return True
    if a.size == 0 or b.size == 0:
        return False
    return _magnitude(a) * _magnitude(b) >= INT64_SAFE


@numba.njit(cache=True, nogil=True, parallel=True)
def _mul_checked(a: Array, b: Array) -> tuple[Array, bool]:  # pragma: no cover
    """a * b in int64, and whether every product fit (checked row by row in float)."""
    n = max(a.shape[0], b.shape[0])
    out = np.empty(n, dtype=np.int64)
    # a one-row side broadcasts: its stride is 0
    da = np.int64(1) if a.shape[0] > 1 else np.int64(0)
    db = np.int64(1) if b.shape[0] > 1 else np.int64(0)
    too_big = 0
    for i in numba.prange(n):
        x, y = a[i * da], b[i * db]
        if abs(float(x) * float(y)) >= INT64_SAFE:
            too_big += 1
        else:
            out[i] = x * y
    return out, too_big == 0


def mul(a: Array, b: Array) -> Array:
    """Exact product of scaled integers: int64 when every row's product fits (the
    bound of the largest values first; then row by row), else Python integers."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != object and b.dtype != object and not _may_overflow(a, b):
        return np.asarray(a * b)
    if a.dtype != object and b.dtype != object and a.size and b.size:
        # the largest quantity and the largest price are rarely on one line
        shape = np.broadcast_shapes(a.shape, b.shape)
        out, fits = _mul_checked(
            np.ascontiguousarray(a.reshape(-1), dtype=np.int64),
            np.ascontiguousarray(b.reshape(-1), dtype=np.int64),
        )
        if fits:
            return np.asarray(out).reshape(shape)
    x, y = _exact(a, b)
    return np.asarray(x * y)


@numba.njit(cache=True, nogil=True, parallel=True)
def _floor_div(a: Array, k: int, out: Array) -> None:  # pragma: no cover
    for i in numba.prange(a.shape[0]):
        out[i] = a[i] // k  # numba keeps Python's floor semantics for negatives


def floor_div(a: Array, k: int) -> Array:
    """``a // k`` for a positive constant ``k`` (timestamps to days), in parallel."""
    a = np.asarray(a)
    if a.ndim != 1 or a.dtype != np.int64 or a.shape[0] < 65_536:
        return np.asarray(a // k)
    out = np.empty(a.shape[0], dtype=np.int64)
    _floor_div(a, k, out)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _bounds(a: Array, valid: Array, has_valid: bool) -> tuple[Any, Any, int]:  # pragma: no cover
    lo: Any = np.iinfo(np.int64).max
    hi: Any = np.iinfo(np.int64).min
    seen = 0
    for i in numba.prange(a.shape[0]):
        if not has_valid or valid[i]:
            x = np.int64(a[i])
            lo = min(lo, x)
            hi = max(hi, x)
            seen += 1
    return lo, hi, seen


def bounds(a: Array, valid: Array | None) -> tuple[int, int] | None:
    """The smallest and largest valid value of an integer array (None: no valid row)."""
    a = np.asarray(a)
    if a.dtype.kind not in "iu" or a.ndim != 1:
        present = a if valid is None else a[valid]
        return (int(present.min()), int(present.max())) if len(present) else None
    mask = valid if valid is not None else np.ones(1, dtype=bool)
    lo, hi, seen = _bounds(a, mask, valid is not None)
    return (int(lo), int(hi)) if seen else None


def add(a: Array, b: Array) -> Array:
    if (
        a.dtype == object
        or b.dtype == object
        or _may_overflow(a, np.asarray(2))
        or _may_overflow(b, np.asarray(2))
    ):
        x, y = _exact(np.asarray(a), np.asarray(b))
        return np.asarray(x + y)
    return np.asarray(a + b)


def neg(a: Array) -> Array:
    return np.asarray(-a)


def div_half_up(n: Array, d: Array) -> Array:
    """n / d rounded half away from zero; d == 0 gives 0 (callers mask it invalid)."""
    n, d = np.asarray(n), np.asarray(d)
    exact = n.dtype == object or d.dtype == object
    if not exact and d.ndim == 0 and int(d) > 0 and (n.size == 0 or int(n.min()) >= 0):
        # the common case (money, rescaling): one add and one floor division
        half = np.int64(int(d) // 2) if int(d) % 2 == 0 else None
        if half is not None and (n.size == 0 or int(n.max()) < 2**62):
            return np.asarray((n + half) // d)
    sign = np.where((n < 0) != (d < 0), -1, 1)
    an, ad = np.abs(n), np.abs(d)
    safe_d = np.where(ad == 0, 1, ad)
    if exact:
        an, safe_d = _exact(np.asarray(an), np.asarray(safe_d))
    q, r = an // safe_d, an % safe_d  # np.divmod has no object (exact) loop
    q = q + (2 * r >= safe_d)
    out = np.where(ad == 0, 0, sign * q)
    return np.asarray(out if not exact else out.astype(object))


def rescale(a: Array, scale: int, new_scale: int) -> Array:
    """Change the scale of scaled integers (half-up when dropping digits)."""
    a = np.asarray(a)
    if new_scale == scale:
        return a
    if new_scale > scale:
        return mul(a, np.asarray(10 ** (new_scale - scale), dtype=np.int64))
    return div_half_up(a, np.asarray(10 ** (scale - new_scale), dtype=np.int64))


def narrow(a: Array) -> Array:
    """Back to int64 when an exact (object) result fits again."""
    if a.dtype != object or a.size == 0:
        return a
    if max(abs(int(a.max())), abs(int(a.min()))) < 2**63:
        return a.astype(np.int64)
    return a


def str_scalar(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.string())


def arrow_bool_to_vec(arr: pa.Array | pa.ChunkedArray) -> Vec:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return Vec(t.BOOL, arr.fill_null(False).to_numpy(zero_copy_only=False), _validity(arr))


def arrow_num_to_vec(arr: pa.Array) -> Vec:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return Vec(t.INT, arr.fill_null(0).to_numpy().astype(np.int64), _validity(arr))


__all__ = ["Vec", "pc"]
