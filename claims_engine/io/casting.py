"""Vectorized casting of raw Arrow columns to contract types (CONTRACT.md section 1).

Readers hand over whatever a file holds: strings from CSV, or typed columns from
Parquet/IPC whose types differ from the contract (int64 for int8, float64 money,
decimals of another scale, timestamps in ms or with a time zone, dictionaries...).
`cast_column` turns one such column into the contract type and, beside it, one
message per row (null where the value is fine).  A bad value never raises: it
becomes null and its message says the field, the value and what was expected.

Everything runs as Arrow compute kernels or numpy over whole columns; Python only
loops over columns (and, for float money in exponent notation, over the handful of
distinct exponents).  A column that already has its contract type only gets the
cheap checks (null count, enumeration, sign).

Message formats (the value is quoted when the input was text, shown plain when it
was a number; text longer than 40 characters is cut with "…"):

- ``sex: 'x' is not an integer``
- ``admitted_at: 'abc' is not a timestamp (YYYY-MM-DD HH:MM[:SS] or yyyymmddHHMM)``
- ``birth_date: '2025-02-30' is not a date (YYYY-MM-DD or YYYYMMDD)``
- ``quantity: 'abc' is not a decimal``
- ``unit_price: '1.2345' has more than 3 decimals``
- ``treatment_days: 40000 is out of range for int16 (-32768..32767)``
- ``total_hospital: '1e+17' is out of range for decimal128(18, 2)``
- ``card_no: null, a value is required``
- ``sex: 7 is not one of 1, 2, 3`` / ``route: 'bus' is not one of registered, ...``
- ``quantity: -1.000 is negative``
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.errors import ClaimsEngineError
from claims_engine.schema import LOCAL_TIMEZONE, Column

# pyarrow is untyped: these aliases only document intent.
Chunked: TypeAlias = Any  # pa.ChunkedArray
ArrowData: TypeAlias = Any  # pa.Array | pa.ChunkedArray

_NULL_STRING = pa.scalar(None, pa.string())
_MAX_SHOWN = 40  # characters of a bad text value repeated in a message
CAST_THREADS = 2  # columns cast at a time (cast_table)
PARALLEL_CAST_ROWS = 100_000  # below this, columns are cast one after another

_INT_RE = r"^[+-]?\d+(?:\.0*)?$"  # "1.0" is accepted: pandas writes ints with nulls as floats
_DECIMAL_RE = r"^-?\d+(?:\.\d+)?$"
_DATE_ISO_RE = r"^\d{4}-\d{2}-\d{2}$"
_DATE_COMPACT_RE = r"^\d{8}(?:(?:[01]\d|2[0-3])[0-5]\d)?$"  # yyyymmdd, or QĐ130 yyyymmddHHMM
_ZONE = r"(?:Z|[+-](?:0\d|1[0-4])(?::?[0-5]\d)?)"
_TS_ISO_RE = rf"^\d{{4}}-\d{{2}}-\d{{2}}[ T]\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?{_ZONE}?$"
_TS_COMPACT_RE = r"^\d{12}(?:\d{2})?$"  # QĐ130 yyyymmddHHMM (and yyyymmddHHMMSS)
_FLOAT_EXP_RE = r"^(?P<sign>-?)(?P<lead>\d)(?:\.(?P<frac>\d+))?e\+?(?P<exp>-?\d+)$"

DATE_FORMATS = "YYYY-MM-DD or YYYYMMDD"
TIMESTAMP_FORMATS = "YYYY-MM-DD HH:MM[:SS] or yyyymmddHHMM"


class Cast(NamedTuple):
    """A column cast to its contract type and one message per row (null: fine).

    Invariant: ``values`` is null wherever ``errors`` is not.
    """

    values: Chunked
    errors: Chunked


@dataclass(frozen=True)
class CastTable:
    """A table cast to contract columns, with each column's per-row messages."""

    table: pa.Table  # contract columns only, in contract order, every field nullable
    errors: dict[str, Chunked]  # column name -> pa.string() messages


# --- small helpers --------------------------------------------------------------


def type_name(type_: pa.DataType) -> str:
    """The contract's spelling of an Arrow type (``date32``, ``list<string>``)."""
    if pa.types.is_date32(type_):
        return "date32"
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return f"list<{type_name(type_.value_type)}>"
    return str(type_)


def column_description(column: Column) -> str:
    """``decimal128(13, 3), QĐ130 SO_LUONG``: the type and, for batch fields, the origin."""
    if re.fullmatch(r"[A-Z0-9_ /]+", column.origin):
        return f"{type_name(column.type)}, QĐ130 {column.origin}"
    return type_name(column.type)


def _chunked(data: ArrowData) -> Chunked:
    if isinstance(data, pa.ChunkedArray):
        return data
    return pa.chunked_array([data], type=data.type)


def _nulls(length: int, type_: pa.DataType | None = None) -> Chunked:
    type_ = pa.string() if type_ is None else type_
    return _cached_nulls(length, type_)


@functools.lru_cache(maxsize=8)
def _cached_nulls(length: int, type_: pa.DataType) -> Chunked:
    # Arrays are immutable, so every clean column of a batch can share one
    # all-null message column instead of allocating its own.
    return pa.chunked_array([pa.nulls(length, type_)], type=type_)


def _any(mask: Chunked) -> bool:
    return bool(pc.any(mask).as_py())


def _null_where(mask: Chunked, values: Chunked) -> Chunked:
    """``values`` with null where ``mask`` is true (a null mask keeps the value)."""
    return pc.if_else(pc.fill_null(mask, False), pa.scalar(None, values.type), values)


def _decode(data: Chunked) -> Chunked:
    """Dictionaries decoded and every text type as plain ``string``."""
    type_ = data.type
    if pa.types.is_dictionary(type_):
        data = data.cast(type_.value_type)
        type_ = data.type
    if pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        data = data.cast(pa.string())
    return data


def _is_text(type_: pa.DataType) -> bool:
    return bool(pa.types.is_string(type_))


def _to_text(data: Chunked) -> Chunked | None:
    """The values as strings, or None when Arrow cannot render this type as text."""
    if _is_text(data.type):
        return data
    try:
        return data.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _cut(text: Chunked) -> Chunked:
    """Text cut at _MAX_SHOWN characters, so a garbage field cannot flood a report."""
    return pc.if_else(
        pc.greater(pc.utf8_length(text), _MAX_SHOWN),
        pc.binary_join_element_wise(pc.utf8_slice_codeunits(text, 0, _MAX_SHOWN), "…", ""),
        text,
    )


def display_text(data: ArrowData) -> Chunked:
    """Each value as text for a message, unquoted and cut (null stays null)."""
    data = _decode(_chunked(data))
    text = _to_text(data)
    if text is None:
        return pc.if_else(pc.is_null(data), _NULL_STRING, f"a {type_name(data.type)} value")
    return _cut(text)


def shown_values(data: ArrowData) -> Chunked:
    """Each value as a message shows it: text quoted, numbers and dates plain."""
    data = _decode(_chunked(data))
    text = display_text(data)
    if _is_text(data.type):
        return pc.binary_join_element_wise("'", text, "'", "")
    return text


class Shown:
    """The values as messages show them, rendered only for the rows a message needs.

    Most columns have no bad value, and a bad column has few bad rows; rendering 8
    million numbers as text for nothing would cost more than the checks themselves.
    """

    def __init__(self, data: ArrowData) -> None:
        self._data = _chunked(data)

    def rows(self, indices: pa.Array) -> Chunked:
        return shown_values(self._data.take(indices))

    def where(self, mask: pa.Array) -> Chunked:
        """The rows where ``mask`` is true, in order (chunk by chunk: no concatenation
        of a multi-chunk column, which ``take`` would do first)."""
        return shown_values(self._data.filter(mask))


def _message(mask: Chunked, name: str, shown: Shown | str, suffix: str) -> Chunked:
    """``name: <shown><suffix>`` where mask is true, else null (built for those rows only)."""
    mask = pc.fill_null(mask, False)
    if not _any(mask):
        return _nulls(len(mask))
    flat = mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask
    if isinstance(shown, str):
        value: Chunked | str = shown
        count = None
    else:
        value = shown.where(flat)
        count = len(value)
    text = pc.binary_join_element_wise(f"{name}: ", value, suffix, "")
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if count is None:
        text = pa.repeat(text, int(pc.sum(flat).as_py())) if isinstance(text, pa.Scalar) else text
    return pa.chunked_array([pc.replace_with_mask(pa.nulls(len(flat), pa.string()), flat, text)])


def _clean_text(text: Chunked) -> Chunked:
    """Trimmed text; blank text is null (no value), as an empty CSV field is."""
    trimmed = pc.utf8_trim_whitespace(text)
    return pc.if_else(pc.equal(trimmed, ""), _NULL_STRING, trimmed)


def join_messages(errors: Sequence[ArrowData], length: int, separator: str = "; ") -> pa.Array:
    """Per-row join of several message columns (nulls skipped; null if none).

    Built pairwise: pyarrow's ``null_handling="skip"`` drops all-null rows (pyarrow 26).
    """
    present = [_chunked(e) for e in errors if e.null_count < len(e)]
    if not present:
        return pa.nulls(length, pa.string())
    joined = present[0]
    for more in present[1:]:
        both = pc.binary_join_element_wise(joined, more, separator)
        joined = pc.coalesce(both, joined, more)
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def prefix_messages(errors: ArrowData, prefix: ArrowData) -> Chunked:
    """``<prefix><message>`` per row; null stays null."""
    return pc.binary_join_element_wise(prefix, errors, "")


# --- integers -------------------------------------------------------------------


def _int_limits(type_: pa.DataType) -> tuple[int, int]:
    info = np.iinfo(type_.to_pandas_dtype())
    return int(info.min), int(info.max)


def _range_suffix(type_: pa.DataType) -> str:
    lo, hi = _int_limits(type_)
    return f" is out of range for {type_name(type_)} ({lo}..{hi})"


def _int_from_ints(data: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    lo, hi = _int_limits(column.type)
    if pa.types.is_unsigned_integer(data.type):
        out = pc.greater(data, pa.scalar(hi, data.type)) if hi < _int_limits(data.type)[1] else None
    else:
        out = pc.or_(pc.less(data, lo), pc.greater(data, hi))
    if out is None or not _any(out):
        return data.cast(column.type), _nulls(len(data))
    values = _null_where(out, data).cast(column.type)
    return values, _message(out, column.name, shown, _range_suffix(column.type))


def _int_from_floats(data: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    lo, hi = _int_limits(column.type)
    integral = pc.and_(pc.is_finite(data), pc.equal(pc.floor(data), data))
    not_int = pc.invert(integral)
    out = pc.and_(integral, pc.or_(pc.less(data, lo), pc.greater(data, hi)))
    values = _null_where(pc.or_(not_int, out), data).cast(column.type)
    errors = pc.coalesce(
        _message(not_int, column.name, shown, " is not an integer"),
        _message(out, column.name, shown, _range_suffix(column.type)),
    )
    return values, errors


def _int_from_text(text: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    lo, hi = _int_limits(column.type)
    clean = _clean_text(text)
    well_formed = pc.match_substring_regex(clean, _INT_RE)
    digits = pc.replace_substring_regex(pc.replace_substring_regex(clean, r"\.0*$", ""), r"^\+", "")
    significant = pc.utf8_length(pc.replace_substring_regex(digits, r"^-?0*", ""))
    too_long = pc.and_(well_formed, pc.greater(significant, 18))  # beyond int64
    parsable = pc.and_(well_formed, pc.invert(too_long))
    wide = pc.if_else(parsable, digits, _NULL_STRING).cast(pa.int64())
    out = pc.or_(too_long, pc.or_(pc.less(wide, lo), pc.greater(wide, hi)))
    values = _null_where(out, wide).cast(column.type)
    errors = pc.coalesce(
        _message(pc.invert(well_formed), column.name, shown, " is not an integer"),
        _message(out, column.name, shown, _range_suffix(column.type)),
    )
    return values, errors


def _to_int(data: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    if pa.types.is_integer(data.type):
        return _int_from_ints(data, column, shown)
    if pa.types.is_floating(data.type):
        return _int_from_floats(data, column, shown)
    return _from_text(data, column, shown, _int_from_text, "an integer")


# --- decimals -------------------------------------------------------------------


def _expand_exponent(text: Chunked) -> Chunked:
    """Float text in exponent notation ("1.25e+15") written out ("1250000000000000").

    Arrow renders large and tiny floats with an exponent; the decimal check needs
    plain digits.  Loops over the distinct exponents only, not over rows.
    """
    has_exp = pc.match_substring_regex(text, _FLOAT_EXP_RE)
    if not _any(has_exp):
        return text
    parts = pc.extract_regex(text, _FLOAT_EXP_RE)
    sign = pc.struct_field(parts, "sign")
    digits = pc.binary_join_element_wise(
        pc.struct_field(parts, "lead"), pc.fill_null(pc.struct_field(parts, "frac"), ""), ""
    )
    exponent = pc.if_else(has_exp, pc.struct_field(parts, "exp"), _NULL_STRING).cast(pa.int64())
    result = text
    for exp in np.unique(exponent.drop_null().to_numpy()):
        whole = int(exp) + 1  # digits before the decimal point
        if whole <= 0:
            plain = pc.binary_join_element_wise(sign, "0." + "0" * -whole, digits, "")
        else:
            padded = pc.utf8_rpad(digits, width=whole, padding="0")
            plain = pc.binary_join_element_wise(
                sign,
                pc.utf8_slice_codeunits(padded, 0, whole),
                ".",
                pc.utf8_slice_codeunits(padded, whole),
                "",
            )
            plain = pc.replace_substring_regex(plain, r"\.$", "")
        result = pc.if_else(pc.fill_null(pc.equal(exponent, int(exp)), False), plain, result)
    return result


def _decimal_from_text(text: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    precision, scale = column.type.precision, column.type.scale
    clean = _clean_text(text)
    well_formed = pc.match_substring_regex(clean, _DECIMAL_RE)
    # trailing zeros of the fraction hold no value: "1.2300" fits 2 decimals
    normal = pc.replace_substring_regex(
        pc.replace_substring_regex(clean, r"(\.\d*?)0+$", r"\1"), r"\.$", ""
    )
    whole_digits = pc.utf8_length(pc.replace_substring_regex(normal, r"^-?0*(\d*).*$", r"\1"))
    fraction_digits = pc.utf8_length(pc.replace_substring_regex(normal, r"^[^.]*\.?", ""))
    too_fine = pc.and_(well_formed, pc.greater(fraction_digits, scale))
    too_big = pc.and_(
        pc.and_(well_formed, pc.invert(too_fine)), pc.greater(whole_digits, precision - scale)
    )
    good = pc.and_(well_formed, pc.invert(pc.or_(too_fine, too_big)))
    values = pc.if_else(good, normal, _NULL_STRING).cast(column.type)
    errors = pc.coalesce(
        _message(pc.invert(well_formed), column.name, shown, " is not a decimal"),
        _message(too_fine, column.name, shown, f" has more than {scale} decimals"),
        _message(too_big, column.name, shown, f" is out of range for {type_name(column.type)}"),
    )
    return values, errors


def _decimal_from_ints(data: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    precision, scale = column.type.precision, column.type.scale
    whole_digits = precision - scale
    if whole_digits >= 19:  # every int64 fits
        out = None
    else:
        limit = 10**whole_digits
        out = pc.greater_equal(data, limit)
        if pa.types.is_signed_integer(data.type):
            out = pc.or_(out, pc.less_equal(data, -limit))
    wide = data if out is None else _null_where(out, data)
    # Arrow wants room for any int64 before scaling, then narrows (values now fit)
    values = wide.cast(pa.decimal128(38, scale)).cast(column.type)
    if out is None:
        return values, _nulls(len(data))
    suffix = f" is out of range for {type_name(column.type)}"
    return values, _message(out, column.name, shown, suffix)


def _to_decimal(data: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    type_ = data.type
    if (
        pa.types.is_decimal(type_)
        and type_.scale == column.type.scale
        and type_.precision <= column.type.precision
    ):
        return data.cast(column.type), _nulls(len(data))  # widening: always exact
    if pa.types.is_integer(type_):
        return _decimal_from_ints(data, column, shown)
    if pa.types.is_floating(type_):
        # Money as float: through its shortest repr ("0.1"), never float arithmetic,
        # so 0.1 becomes exactly 0.10 and 1.2345 is flagged, not rounded.
        text = _expand_exponent(data.cast(pa.string()))
        return _decimal_from_text(text, column, shown)
    # other decimals (exact text, e.g. "1.2345") and anything else: via text
    return _from_text(data, column, shown, _decimal_from_text, "a decimal")


# --- dates and timestamps -----------------------------------------------------------


def _to_local_naive(data: Chunked) -> Chunked:
    """A zoned timestamp as naive Vietnam local time (same unit)."""
    zoned = data.cast(pa.timestamp(data.type.unit, tz=LOCAL_TIMEZONE))  # same instant
    return pc.local_timestamp(zoned)


def _utc_seconds_to_local(seconds: Chunked) -> Chunked:
    utc = seconds.cast(pa.timestamp("s", tz="UTC"))
    return _to_local_naive(utc)


def _date_from_text(text: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    clean = _clean_text(text)
    form = pc.or_(
        pc.match_substring_regex(clean, _DATE_ISO_RE),
        pc.match_substring_regex(clean, _DATE_COMPACT_RE),
    )
    canonical = pc.replace_substring_regex(clean, r"^(\d{4})(\d{2})(\d{2})(?:\d{4})?$", r"\1-\2-\3")
    canonical = pc.if_else(form, canonical, _NULL_STRING)
    parsed = pc.strptime(canonical, format="%Y-%m-%d", unit="s", error_is_null=True)
    # strptime rolls 2025-02-30 over to March: only a value that prints back is a date
    good = pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), canonical), False)
    values = _null_where(pc.invert(good), parsed).cast(pa.date32(), safe=False)
    bad = pc.and_(pc.is_valid(clean), pc.invert(good))
    errors = _message(bad, column.name, shown, f" is not a date ({DATE_FORMATS})")
    return values, errors


def _to_date(data: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    type_ = data.type
    if pa.types.is_timestamp(type_):
        if type_.tz is not None:
            data = _to_local_naive(data)
        # the calendar day of the local time (floor, also before 1970)
        return data.cast(pa.date32(), safe=False), _nulls(len(data))
    if pa.types.is_date(type_):
        return data.cast(pa.date32(), safe=False), _nulls(len(data))
    return _from_text(data, column, shown, _date_from_text, "a date")


def _zone_offsets(zone: Chunked) -> Chunked:
    """Seconds east of UTC for "Z", "+07:00", "+0700", "-05"."""
    zone = pc.if_else(pc.equal(zone, "Z"), "+00:00", zone)
    zone = pc.utf8_rpad(pc.replace_substring(zone, ":", ""), width=5, padding="0")
    hours = pc.utf8_slice_codeunits(zone, 1, 3).cast(pa.int64())
    minutes = pc.utf8_slice_codeunits(zone, 3, 5).cast(pa.int64())
    size = pc.add(pc.multiply(hours, 3600), pc.multiply(minutes, 60))
    return pc.if_else(pc.starts_with(zone, "-"), pc.negate(size), size)


def _timestamp_from_text(text: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    given = _clean_text(text)
    form = pc.or_(
        pc.match_substring_regex(given, _TS_ISO_RE),
        pc.match_substring_regex(given, _TS_COMPACT_RE),
    )
    clean = pc.if_else(form, given, _NULL_STRING)
    zone = pc.struct_field(pc.extract_regex(clean, rf"(?P<zone>{_ZONE})$"), "zone")
    body = pc.replace_substring_regex(clean, rf"{_ZONE}$", "")
    # finer than seconds is truncated, as for typed timestamps
    body = pc.replace_substring_regex(body, r"\.\d+$", "")
    canonical = body
    for pattern, rewrite in (
        (r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})$", r"\1 \2:00"),
        (r"^(\d{4}-\d{2}-\d{2})T", r"\1 "),
        (r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})$", r"\1-\2-\3 \4:\5:00"),
        (r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$", r"\1-\2-\3 \4:\5:\6"),
    ):
        canonical = pc.replace_substring_regex(canonical, pattern, rewrite)
    fmt = "%Y-%m-%d %H:%M:%S"
    parsed = pc.strptime(canonical, format=fmt, unit="s", error_is_null=True)
    # strptime rolls 24:00 or Feb 30 over: only a value that prints back is valid
    good = pc.fill_null(pc.equal(pc.strftime(parsed, format=fmt), canonical), False)
    parsed = _null_where(pc.invert(good), parsed)
    if zone.null_count < len(zone):
        utc = pc.subtract(parsed.cast(pa.int64()), _zone_offsets(zone))
        parsed = pc.if_else(pc.is_null(zone), parsed, _utc_seconds_to_local(utc))
    bad = pc.and_(pc.is_valid(given), pc.invert(good))
    errors = _message(bad, column.name, shown, f" is not a timestamp ({TIMESTAMP_FORMATS})")
    return parsed, errors


_PER_SECOND = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _whole_seconds(data: Chunked) -> Chunked:
    """A naive ms/us/ns timestamp column as timestamp[s], floored.

    One integer division over each chunk's value buffer; the validity bitmap is
    shared, not rebuilt (Arrow's checked cast costs several passes per column).
    """
    per_second = _PER_SECOND[data.type.unit]
    chunks = []
    for chunk in data.chunks:
        if chunk.buffers()[1] is None:  # empty, or all null without a value buffer
            chunks.append(pa.nulls(len(chunk), pa.timestamp("s")))
            continue
        # chunks of one row group slice one buffer: convert this chunk's rows only
        ticks = np.frombuffer(chunk.buffers()[1], dtype=np.int64)
        ticks = ticks[chunk.offset : chunk.offset + len(chunk)]
        seconds = pa.py_buffer(np.floor_divide(ticks, per_second))
        validity = None
        if chunk.null_count:  # a bitmap of its own, starting at this chunk's first row
            flags = chunk.is_valid()
            if flags.offset:
                flags = pa.array(flags.to_numpy(zero_copy_only=False), pa.bool_())
            validity = flags.buffers()[1]
        chunks.append(
            pa.Array.from_buffers(
                pa.timestamp("s"), len(chunk), [validity, seconds], chunk.null_count
            )
        )
    return pa.chunked_array(chunks, pa.timestamp("s"))


def _to_timestamp(data: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    type_ = data.type
    if pa.types.is_timestamp(type_):
        if type_.tz is not None:
            data = _to_local_naive(data)  # zoned: to Vietnam local time, then naive
        if type_.unit != "s":
            # Finer units (ms/us/ns; Parquet has no seconds unit, so timestamp[s]
            # comes back as ms) are truncated to whole seconds: floor, so pre-1970
            # values round down.
            data = _whole_seconds(data)
        return data, _nulls(len(data))
    if pa.types.is_date(type_):
        return data.cast(pa.timestamp("s")), _nulls(len(data))
    return _from_text(data, column, shown, _timestamp_from_text, "a timestamp")


# --- strings and lists ----------------------------------------------------------------


def _to_string(data: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    # Codes must come as text: a number cast here has already lost leading zeros,
    # but it is the best we can do with what the file holds.
    text = _to_text(data)
    if text is None:
        return _unreadable(data, column, shown, "text")
    return text, _nulls(len(data))


def _split_codes(text: Chunked) -> Chunked:
    """Split "A01; B02;;" into ["A01", "B02"]: on ";", trimmed, empty parts dropped."""
    flat_text = text.combine_chunks()
    parts = pc.split_pattern(flat_text, ";")
    items = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    keep = pc.greater(pc.utf8_length(items), 0)
    parents = pc.list_parent_indices(parts).filter(keep).to_numpy()
    counts = np.bincount(parents, minlength=len(flat_text))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    lists = pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), items.filter(keep), mask=flat_text.is_null()
    )
    return _chunked(lists.cast(pa.list_(pa.string())))


def _to_string_list(data: Chunked, column: Column, shown: Shown) -> tuple[Chunked, Chunked]:
    type_ = data.type
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_list_view(type_):
        try:
            return data.cast(column.type), _nulls(len(data))
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            return _unreadable(data, column, shown, "a list of codes")
    text = _to_text(data)
    if text is None:
        return _unreadable(data, column, shown, "a list of codes")
    return _split_codes(_clean_text(text)), _nulls(len(data))


# --- dispatch -------------------------------------------------------------------------


def _unreadable(
    data: Chunked, column: Column, shown: Shown, expected: str
) -> tuple[Chunked, Chunked]:
    """Every non-null value fails: its type cannot become the contract type at all."""
    errors = _message(pc.is_valid(data), column.name, shown, f" is not {expected}")
    return _nulls(len(data), column.type), errors


def _from_text(
    data: Chunked,
    column: Column,
    shown: Shown,
    parse: Any,
    expected: str,
) -> tuple[Chunked, Chunked]:
    """Parse the values' text (decimals, booleans, dates as int...)."""
    text = _to_text(data)
    if text is None:
        return _unreadable(data, column, shown, expected)
    values, errors = parse(text, column, shown)
    return values, errors


_CONVERTERS: dict[str, Any] = {
    "int": _to_int,
    "decimal": _to_decimal,
    "date": _to_date,
    "timestamp": _to_timestamp,
    "string": _to_string,
    "list": _to_string_list,
}


def _target_kind(type_: pa.DataType) -> str:
    if pa.types.is_integer(type_):
        return "int"
    if pa.types.is_decimal(type_):
        return "decimal"
    if pa.types.is_date32(type_):
        return "date"
    if pa.types.is_timestamp(type_):
        return "timestamp"
    if pa.types.is_string(type_):
        return "string"
    if pa.types.is_list(type_) and pa.types.is_string(type_.value_type):
        return "list"
    raise TypeError(f"no cast to contract type {type_}")  # a schema.py change, not input


def _zero(type_: pa.DataType) -> pa.Scalar:
    return pa.scalar(0, type_)


def _dictionary_in_enum(raw: Chunked, column: Column) -> bool:
    """A dictionary column whose every dictionary word is allowed: no row can be outside."""
    if column.enum is None or not pa.types.is_dictionary(raw.type):
        return False
    allowed = pa.array(column.enum, type=column.type)
    seen: set[int] = set()
    for chunk in raw.chunks:
        words = chunk.dictionary
        key = id(words)
        if key in seen:
            continue
        seen.add(key)
        try:
            inside = pc.is_in(words.cast(column.type), value_set=allowed)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            return False
        if not pc.all(inside.fill_null(False)).as_py() and len(words):
            return False
    return True


def _check(
    values: Chunked, column: Column, failed: Chunked, proven: bool = False, enum_ok: bool = False
) -> Chunked:
    """Value-level checks on correctly typed values: null, enumeration, sign.

    ``proven``: file metadata proved the null and sign checks (io/pruning.py);
    ``enum_ok``: the file's dictionaries proved the enumeration check.
    """
    messages = [failed]
    if not proven and not column.nullable and values.null_count > 0:
        missing = pc.and_(pc.is_null(values), pc.is_null(failed))
        messages.append(_message(missing, column.name, "null", ", a value is required"))
    if column.enum is not None and not enum_ok:
        allowed = pa.array(column.enum, type=column.type)
        outside = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=allowed)))
        if _any(outside):
            listed = ", ".join(str(v) for v in column.enum)
            messages.append(
                _message(outside, column.name, Shown(values), f" is not one of {listed}")
            )
    if column.non_negative and not proven:
        negative = pc.less(values, _zero(column.type))
        if _any(negative):
            messages.append(_message(negative, column.name, Shown(values), " is negative"))
    present = [m for m in messages if m.null_count < len(m)]
    if not present:
        return _nulls(len(values))
    return pc.coalesce(*present) if len(present) > 1 else present[0]


def cast_column(raw: ArrowData, column: Column, proven: bool = False) -> Cast:
    """Cast one raw column to ``column.type``; bad values become null with a message.

    A column that already has the contract type skips casting (the fast path for
    correctly typed Parquet): only null count, enumeration and sign are checked,
    and not even those that the file's metadata proved (``proven``, for a column
    whose file type is the contract type) or its dictionaries did.
    """
    enum_ok = _dictionary_in_enum(_chunked(raw), column)
    data = _decode(_chunked(raw))
    if data.type == column.type:
        values, failed = data, _nulls(len(data))
        if pa.types.is_list(column.type):
            values = values.cast(column.type)  # list<element: ...> from Parquet -> list<item: ...>
    else:
        proven = False
        convert = _CONVERTERS[_target_kind(column.type)]
        values, failed = convert(data, column, Shown(data))
    errors = _check(values, column, failed, proven, enum_ok)
    if errors.null_count < len(errors):
        values = _null_where(pc.is_valid(errors), values)
    return Cast(values.cast(column.type), errors)


def null_column(column: Column, length: int) -> Cast:
    """An absent column read as all null (with a message per row if null is not allowed)."""
    return cast_column(pa.nulls(length, column.type), column)


def cast_table(
    table: pa.Table,
    columns: Sequence[Column],
    file: Path,
    error: type[ClaimsEngineError],
    proven: frozenset[str] = frozenset(),
) -> CastTable:
    """Cast ``table`` to ``columns`` (extra columns dropped, nullable ones may be absent).

    Raises ``error`` when a required column is missing or a column name is repeated.
    ``proven``: columns whose null and sign checks the file's metadata proved.
    """
    names = table.column_names
    for column in columns:  # every problem with the file's columns before any work
        count = names.count(column.name)
        if count > 1:
            raise error(f"{file}: column '{column.name}' appears {count} times")
        if count == 0 and not column.nullable:
            raise error(
                f"{file}: required column '{column.name}' ({column_description(column)}) is missing"
            )

    def cast(column: Column) -> Cast:
        if column.name not in names:
            return null_column(column, table.num_rows)
        return cast_column(table.column(column.name), column, column.name in proven)

    if table.num_rows < PARALLEL_CAST_ROWS:  # a small batch: no threads to start
        casts = [cast(column) for column in columns]
    else:
        # Columns cast two at a time: Arrow's kernels release the GIL, and a column's
        # cast is a few kernels in a row (dictionary decode, checks, messages); at a
        # million claims 0.33-0.53 s instead of 0.52-0.77 s
        with ThreadPoolExecutor(max_workers=CAST_THREADS, thread_name_prefix="cast") as pool:
            casts = list(pool.map(cast, columns))
    schema = pa.schema([pa.field(c.name, c.type) for c in columns])
    values = [c.values for c in casts]
    errors = {column.name: c.errors for column, c in zip(columns, casts, strict=True)}
    return CastTable(pa.Table.from_arrays(values, schema=schema), errors)
