"""Casting raw columns to contract types: values and per-row messages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from claims_engine.io.casting import cast_column, join_messages, null_column, type_name
from claims_engine.schema import CLAIM_COLUMN_BY_NAME, LINE_COLUMN_BY_NAME, Column

CLAIM = CLAIM_COLUMN_BY_NAME
LINE = LINE_COLUMN_BY_NAME


def cast(values: list[object] | pa.Array, column: Column) -> tuple[list[object], list[object]]:
    raw = values if isinstance(values, pa.Array) else pa.array(values)
    result = cast_column(raw, column)
    assert result.values.type == column.type
    assert len(result.values) == len(raw) == len(result.errors)
    assert result.errors.type == pa.string()
    return result.values.to_pylist(), result.errors.to_pylist()


# --- integers --------------------------------------------------------------------


def test_int_from_text_every_error_class() -> None:
    values, errors = cast(["1", "x", "7", None, "300", " 2 ", "3.0"], CLAIM["sex"])
    assert values == [1, None, None, None, None, 2, 3]
    assert errors == [
        None,
        "sex: 'x' is not an integer",
        "sex: 7 is not one of 1, 2, 3",
        "sex: null, a value is required",
        "sex: '300' is out of range for int8 (-128..127)",
        None,
        None,
    ]


def test_int_from_typed_ints_and_floats() -> None:
    values, errors = cast(pa.array([1, 300, None], pa.int64()), CLAIM["sex"])
    assert values == [1, None, None]
    assert errors == [
        None,
        "sex: 300 is out of range for int8 (-128..127)",
        "sex: null, a value is required",
    ]
    # pandas writes an int column with nulls as float64: integral floats are fine
    values, errors = cast(pa.array([2.0, 1.5, float("nan"), None]), CLAIM["visit_type"])
    assert values == [2, None, None, None]
    assert errors == [
        None,
        "visit_type: 1.5 is not an integer",
        "visit_type: nan is not an integer",
        "visit_type: null, a value is required",
    ]


def test_int_negative_and_nullable() -> None:
    values, errors = cast(pa.array([-1, 4, None], pa.int16()), CLAIM["treatment_days"])
    assert values == [None, 4, None]
    assert errors == ["treatment_days: -1 is negative", None, None]
    values, errors = cast(["40000"], CLAIM["treatment_days"])
    assert errors == ["treatment_days: '40000' is out of range for int16 (-32768..32767)"]


# --- decimals --------------------------------------------------------------------


def test_decimal_from_text_every_error_class() -> None:
    values, errors = cast(
        ["1.5", "-1", "1.2345", "abc", "12345678901", None, "0002.500", "1,5"],
        LINE["quantity"],
    )
    assert values == [Decimal("1.500"), None, None, None, None, None, Decimal("2.500"), None]
    assert errors == [
        None,
        "quantity: -1.000 is negative",
        "quantity: '1.2345' has more than 3 decimals",
        "quantity: 'abc' is not a decimal",
        "quantity: '12345678901' is out of range for decimal128(13, 3)",
        "quantity: null, a value is required",
        None,
        "quantity: '1,5' is not a decimal",
    ]


def test_float_money_goes_through_its_shortest_repr() -> None:
    raw = pa.array([0.1, 0.30000000000000004, 1.25e15, 1e17, 1e-7, 19.99, float("inf")])
    values, errors = cast(raw, CLAIM["total_hospital"])
    assert values[0] == Decimal("0.10")
    assert str(values[0]) == "0.10"
    assert values[2] == Decimal("1250000000000000.00")  # exponent notation expanded
    assert values[5] == Decimal("19.99")  # not 19.989999999999998...
    assert errors == [
        None,
        "total_hospital: 0.30000000000000004 has more than 2 decimals",
        None,
        "total_hospital: 1e+17 is out of range for decimal128(18, 2)",
        "total_hospital: 1e-7 has more than 2 decimals",
        None,
        "total_hospital: inf is not a decimal",
    ]


def test_decimal_of_another_scale() -> None:
    raw = pa.array([Decimal("1.2345"), Decimal("1.2300"), None], pa.decimal128(20, 4))
    values, errors = cast(raw, LINE["unit_price"])
    assert values == [None, Decimal("1.230"), None]
    assert errors == [
        "unit_price: 1.2345 has more than 3 decimals",
        None,
        "unit_price: null, a value is required",
    ]
    # narrower type, same scale: widened exactly
    values, errors = cast(pa.array([Decimal("-2.5")], pa.decimal128(5, 1)), LINE["unit_price"])
    assert values == [None]
    assert errors == ["unit_price: -2.500 is negative"]


def test_decimal_from_ints() -> None:
    raw = pa.array([150000, 10**17, -3], pa.int64())
    values, errors = cast(raw, LINE["amount_hospital"])
    assert values == [Decimal("150000.00"), None, None]
    assert errors == [
        None,
        "amount_hospital: 100000000000000000 is out of range for decimal128(18, 2)",
        "amount_hospital: -3.00 is negative",
    ]


# --- dates and timestamps ----------------------------------------------------------


def test_dates_from_text() -> None:
    raw = ["2025-03-01", "20250301", "202503011530", "2025-02-30", "2025-3-1", "x", None]
    values, errors = cast(raw, CLAIM["birth_date"])
    march_1 = dt.date(2025, 3, 1)
    assert values == [march_1, march_1, march_1, None, None, None, None]
    expected = "is not a date (YYYY-MM-DD or YYYYMMDD)"
    assert errors == [
        None,
        None,
        None,
        f"birth_date: '2025-02-30' {expected}",
        f"birth_date: '2025-3-1' {expected}",
        f"birth_date: 'x' {expected}",
        "birth_date: null, a value is required",
    ]


def test_dates_from_typed_values() -> None:
    before_1970 = pa.array([-500], pa.timestamp("ms"))  # 1969-12-31 23:59:59.5
    assert cast(before_1970, CLAIM["birth_date"]) == ([dt.date(1969, 12, 31)], [None])
    zoned = pa.array([dt.datetime(2025, 2, 28, 20, 0, tzinfo=dt.UTC)], pa.timestamp("s", "UTC"))
    assert cast(zoned, CLAIM["card_valid_to"])[0] == [dt.date(2025, 3, 1)]  # 03:00 in Hanoi
    assert cast(pa.array([20250301], pa.int64()), CLAIM["birth_date"])[0] == [dt.date(2025, 3, 1)]


def test_timestamps_from_text_all_formats() -> None:
    raw = [
        "2025-03-01 08:30:00",
        "2025-03-01T08:30:00",
        "2025-03-01 08:30",
        "202503010830",
        "2025-03-01 08:30:00.999",  # finer than seconds: truncated
        "2025-03-01T01:30:00Z",
        "2025-03-01T08:30:00+07:00",
        "2025-02-28T20:30:00-0500",
    ]
    values, errors = cast(raw, CLAIM["admitted_at"])
    assert values == [dt.datetime(2025, 3, 1, 8, 30)] * len(raw)
    assert errors == [None] * len(raw)


def test_timestamps_from_text_bad() -> None:
    raw = ["2025-03-01 24:00:00", "2025-02-30 08:00", "yesterday", "2025-03-01", None]
    values, errors = cast(raw, CLAIM["admitted_at"])
    assert values == [None] * 5
    expected = "is not a timestamp (YYYY-MM-DD HH:MM[:SS] or yyyymmddHHMM)"
    assert errors == [
        f"admitted_at: '2025-03-01 24:00:00' {expected}",
        f"admitted_at: '2025-02-30 08:00' {expected}",
        f"admitted_at: 'yesterday' {expected}",
        f"admitted_at: '2025-03-01' {expected}",
        "admitted_at: null, a value is required",
    ]
    # a nullable timestamp column: null is fine, garbage is not
    values, errors = cast(["", "nope"], LINE["ordered_at"])
    assert errors == [None, f"ordered_at: 'nope' {expected}"]


def test_zoned_typed_timestamps_become_naive_vietnam_time() -> None:
    instant = dt.datetime(2025, 3, 1, 1, 0, tzinfo=dt.UTC)
    for unit in ("s", "ms", "us", "ns"):
        raw = pa.array([instant], pa.timestamp(unit, tz="UTC"))
        assert cast(raw, CLAIM["admitted_at"]) == ([dt.datetime(2025, 3, 1, 8, 0)], [None])
    raw = pa.array([instant], pa.timestamp("s", tz="Europe/Paris"))  # same instant
    assert cast(raw, CLAIM["admitted_at"])[0] == [dt.datetime(2025, 3, 1, 8, 0)]


def test_finer_units_are_truncated_to_seconds() -> None:
    raw = pa.array([1_500, -500], pa.timestamp("ms"))
    values, errors = cast(raw, CLAIM["admitted_at"])
    assert values == [dt.datetime(1970, 1, 1, 0, 0, 1), dt.datetime(1969, 12, 31, 23, 59, 59)]
    assert errors == [None, None]


def test_chunks_sliced_from_one_buffer_keep_their_own_rows_and_nulls() -> None:
    """Parquet hands back chunks that slice one buffer at odd offsets; each chunk is
    converted from its own rows, with its own nulls."""
    ms = [None if i % 7 == 3 else (i - 20) * 1_250 for i in range(50)]
    whole = pa.array(ms, pa.timestamp("ms"))
    chunked = pa.chunked_array([whole.slice(0, 13), whole.slice(13, 20), whole.slice(33)])
    cast_values = cast_column(chunked, CLAIM["admitted_at"]).values
    assert cast_values.to_pylist() == [
        None if v is None else dt.datetime(1970, 1, 1) + dt.timedelta(seconds=v // 1_000)
        for v in ms
    ]
    cast_values.validate(full=True)


# --- strings and lists -----------------------------------------------------------------


def test_codes_stay_strings() -> None:
    assert cast(["01001", "NA", None], CLAIM["registered_facility"]) == (
        ["01001", "NA", None],
        [None, None, None],
    )
    assert cast(pa.array(["01001"], pa.large_string()), CLAIM["facility_id"])[0] == ["01001"]
    dictionary = pa.array(["01001", "01001", None]).dictionary_encode()
    values, errors = cast(dictionary, CLAIM["facility_id"])
    assert values == ["01001", "01001", None]
    assert errors == [None, None, "facility_id: null, a value is required"]


def test_string_enumeration() -> None:
    values, errors = cast(["registered", "bus"], CLAIM["route"])
    assert values == ["registered", None]
    assert errors == [
        None,
        "route: 'bus' is not one of registered, referral, emergency, open_access, self_referred",
    ]


def test_secondary_dx_split_and_list_kept() -> None:
    values, errors = cast(["A01; B02;;", " C03 ", None, ";"], CLAIM["secondary_dx"])
    assert values == [["A01", "B02"], ["C03"], None, []]
    assert errors == [None] * 4
    kept = pa.array([["A01", "B02"], None], pa.list_(pa.string()))
    assert cast(kept, CLAIM["secondary_dx"]) == ([["A01", "B02"], None], [None, None])


def test_long_bad_text_is_cut_in_the_message() -> None:
    _, errors = cast(["9" * 30 + "x" * 30], CLAIM["sex"])
    assert errors == [f"sex: '{'9' * 30 + 'x' * 10}…' is not an integer"]


# --- fast path, absent columns, helpers --------------------------------------------------


def test_same_type_skips_casting() -> None:
    raw = pa.array([Decimal("1.500"), Decimal("2.000")], pa.decimal128(13, 3))
    result = cast_column(raw, LINE["quantity"])
    assert result.errors.null_count == 2
    # the very same buffer: no copy, no round trip
    assert result.values.chunk(0).buffers()[1].address == raw.buffers()[1].address


def test_absent_column() -> None:
    result = null_column(CLAIM["patient_id"], 2)
    assert result.values.to_pylist() == [None, None]
    assert result.errors.to_pylist() == [None, None]
    result = null_column(CLAIM["card_no"], 1)
    assert result.errors.to_pylist() == ["card_no: null, a value is required"]


def test_join_messages() -> None:
    first = pa.array(["a", None, None, "b"])
    second = pa.array([None, "c", None, "d"])
    joined = join_messages([first, second], 4)
    assert joined.to_pylist() == ["a", "c", None, "b; d"]
    assert join_messages([pa.nulls(2, pa.string())], 2).to_pylist() == [None, None]


@pytest.mark.parametrize(
    ("type_", "name"),
    [
        (pa.date32(), "date32"),
        (pa.list_(pa.string()), "list<string>"),
        (pa.decimal128(13, 3), "decimal128(13, 3)"),
        (pa.timestamp("s"), "timestamp[s]"),
    ],
)
def test_type_name(type_: pa.DataType, name: str) -> None:
    assert type_name(type_) == name
