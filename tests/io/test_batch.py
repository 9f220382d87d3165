"""Reading batch folders: formats, casting, value messages and unusable input."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from claims_engine.errors import BatchError
from claims_engine.io import casting
from claims_engine.io.batch import read_batch, read_table_file
from claims_engine.io.decimals import carried_type
from claims_engine.schema import CLAIMS_SCHEMA, LINES_SCHEMA

CLAIM = {
    "claim_id": "C1",
    "facility_id": "01001",
    "patient_id": "P1",
    "card_no": "DN4010123456789",
    "registered_facility": "01002",
    "card_valid_from": "2025-01-01",
    "card_valid_to": "2025-12-31",
    "five_years_from": "",
    "copay_exempt_from": "",
    "birth_date": "1980-05-17",
    "sex": "1",
    "visit_type": "1",
    "route": "registered",
    "admitted_at": "2025-03-01 08:00:00",
    "inpatient_at": "",
    "discharged_at": "2025-03-01 10:00:00",
    "treatment_days": "0",
    "total_drugs": "1000.00",
    "total_supplies": "",
    "primary_dx": "J06.9",
    "secondary_dx": "I10; E11",
    "total_hospital": "1000.00",
    "total_insured": "1000.00",
    "patient_copay": "200.00",
    "patient_pays": "0.00",
    "fund_pays": "800.00",
}

LINE = {
    "claim_id": "C1",
    "line_no": "3",
    "kind": "drug",
    "group_code": "4",
    "item_code": "40.18",
    "quantity": "10",
    "unit_price": "100.000",
    "hospital_unit_price": "",
    "service_rate": "100",
    "coverage_rate": "100",
    "benefit_rate": "80",
    "amount_hospital": "1000.00",
    "amount_insured": "1000.00",
    "fund_pays": "800.00",
    "patient_copay": "200.00",
    "ordered_at": "202503010815",
    "performed_at": "",
    "department": "K01",
    "practitioner": "",
}


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def csv_batch(
    folder: Path,
    claims: list[dict[str, str]] | None = None,
    lines: list[dict[str, str]] | None = None,
) -> Path:
    folder.mkdir(exist_ok=True)
    write_csv(folder / "claims.csv", claims or [CLAIM])
    write_csv(folder / "lines.csv", lines or [LINE])
    return folder


def typed_claims() -> pa.Table:
    row: dict[str, object] = {
        "claim_id": "C1",
        "facility_id": "01001",
        "card_no": "DN4010123456789",
        "card_valid_from": dt.date(2025, 1, 1),
        "card_valid_to": dt.date(2025, 12, 31),
        "birth_date": dt.date(1980, 5, 17),
        "sex": 1,
        "visit_type": 1,
        "route": "registered",
        "admitted_at": dt.datetime(2025, 3, 1, 8),
        "discharged_at": dt.datetime(2025, 3, 1, 10),
        "primary_dx": "J06.9",
        "secondary_dx": ["I10"],
        "total_hospital": Decimal("1000.00"),
        "total_insured": Decimal("1000.00"),
        "patient_copay": Decimal("200.00"),
        "patient_pays": Decimal("0.00"),
        "fund_pays": Decimal("800.00"),
    }
    return pa.Table.from_pylist([row], schema=CLAIMS_SCHEMA)


def typed_lines() -> pa.Table:
    row: dict[str, object] = {
        "claim_id": "C1",
        "line_no": 1,
        "kind": "drug",
        "item_code": "40.18",
        "quantity": Decimal("10.000"),
        "unit_price": Decimal("100.000"),
        "service_rate": 100,
        "coverage_rate": 100,
        "benefit_rate": 80,
        "amount_hospital": Decimal("1000.00"),
        "amount_insured": Decimal("1000.00"),
        "fund_pays": Decimal("800.00"),
        "patient_copay": Decimal("200.00"),
    }
    return pa.Table.from_pylist([row], schema=LINES_SCHEMA)


def assert_contract_shape(claims: pa.Table, lines: pa.Table) -> None:
    """The contract's columns and types, decimals carried as decimal64 of the same
    precision and scale (io/decimals.py), each in one chunk."""
    assert claims.column_names == CLAIMS_SCHEMA.names
    assert claims.schema.types == [carried_type(t) for t in CLAIMS_SCHEMA.types]
    assert lines.column_names == LINES_SCHEMA.names
    assert lines.schema.types == [carried_type(t) for t in LINES_SCHEMA.types]
    for table in (claims, lines):
        for field in table.schema:
            if pa.types.is_decimal(field.type):
                assert table.column(field.name).num_chunks == 1, field.name


# --- good batches in every format --------------------------------------------------------


def test_csv_batch_is_cast_to_the_contract(tmp_path: Path) -> None:
    batch = read_batch(csv_batch(tmp_path / "b"))
    assert_contract_shape(batch.claims, batch.lines)
    assert batch.claim_errors.to_pylist() == [None]
    assert batch.line_errors.to_pylist() == [None]
    assert batch.files == (tmp_path / "b" / "claims.csv", tmp_path / "b" / "lines.csv")
    claim = batch.claims.to_pylist()[0]
    assert claim["facility_id"] == "01001"  # leading zero kept
    assert claim["registered_facility"] == "01002"
    assert claim["five_years_from"] is None  # empty field = null
    assert claim["secondary_dx"] == ["I10", "E11"]
    assert claim["admitted_at"] == dt.datetime(2025, 3, 1, 8)
    assert claim["total_supplies"] is None
    line = batch.lines.to_pylist()[0]
    assert line["quantity"] == Decimal("10.000")
    assert line["ordered_at"] == dt.datetime(2025, 3, 1, 8, 15)
    assert line["item_code"] == "40.18"


def test_csv_text_na_is_a_value_not_null(tmp_path: Path) -> None:
    batch = read_batch(csv_batch(tmp_path / "b", lines=[{**LINE, "department": "NA"}]))
    assert batch.lines.column("department").to_pylist() == ["NA"]


def test_parquet_batch_fast_path(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    pq.write_table(typed_claims(), folder / "claims.parquet")
    pq.write_table(typed_lines(), folder / "lines.parquet")
    batch = read_batch(folder)
    assert_contract_shape(batch.claims, batch.lines)
    assert batch.claim_errors.null_count == 1
    assert batch.line_errors.null_count == 1
    # Parquet has no seconds unit; the ms it returns are brought back to seconds
    assert batch.claims.column("admitted_at").to_pylist() == [dt.datetime(2025, 3, 1, 8)]
    assert batch.claims.column("patient_id").to_pylist() == [None]


@pytest.mark.parametrize("stream", [False, True])
def test_arrow_ipc_file_and_stream(tmp_path: Path, stream: bool) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    for name, table in (("claims", typed_claims()), ("lines", typed_lines())):
        with pa.OSFile(str(folder / f"{name}.arrow"), "wb") as sink:
            opener = ipc.new_stream if stream else ipc.new_file
            with opener(sink, table.schema) as writer:
                writer.write_table(table)
    batch = read_batch(folder)
    assert_contract_shape(batch.claims, batch.lines)
    assert batch.claims.column("card_no").to_pylist() == ["DN4010123456789"]


def test_mixed_formats_and_absent_nullable_columns(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    claims = typed_claims().drop_columns(["patient_id", "secondary_dx", "inpatient_at"])
    pq.write_table(claims, folder / "claims.parquet")
    line = {k: v for k, v in LINE.items() if k not in ("department", "practitioner")}
    write_csv(folder / "lines.csv", [{**line, "extra_column": "ignored"}])
    batch = read_batch(folder)
    assert_contract_shape(batch.claims, batch.lines)
    assert batch.claims.column("patient_id").to_pylist() == [None]
    assert batch.claims.column("secondary_dx").to_pylist() == [None]
    assert batch.lines.column("department").to_pylist() == [None]
    assert batch.claim_errors.to_pylist() == [None]
    assert batch.line_errors.to_pylist() == [None]


def test_zoned_timestamps_and_float_money_from_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    claims = typed_claims()
    utc = pa.array([dt.datetime(2025, 3, 1, 1, 0, tzinfo=dt.UTC)], pa.timestamp("us", "UTC"))
    claims = claims.set_column(claims.schema.get_field_index("admitted_at"), "admitted_at", utc)
    pq.write_table(claims, folder / "claims.parquet")
    lines = typed_lines()
    money = pa.array([0.1], pa.float64())
    lines = lines.set_column(lines.schema.get_field_index("unit_price"), "unit_price", money)
    pq.write_table(lines, folder / "lines.parquet")
    batch = read_batch(folder)
    assert batch.claims.column("admitted_at").to_pylist() == [dt.datetime(2025, 3, 1, 8, 0)]
    assert batch.lines.column("unit_price").to_pylist() == [Decimal("0.100")]
    assert str(batch.lines.column("unit_price")[0].as_py()) == "0.100"
    assert batch.line_errors.to_pylist() == [None]


def test_zoned_timestamp_text_in_csv(tmp_path: Path) -> None:
    claim = {**CLAIM, "admitted_at": "2025-03-01T01:00:00Z"}
    batch = read_batch(csv_batch(tmp_path / "b", claims=[claim]))
    assert batch.claims.column("admitted_at").to_pylist() == [dt.datetime(2025, 3, 1, 8, 0)]


# --- bad values: messages, never exceptions ----------------------------------------------


@pytest.fixture(params=["one by one", "two at a time"])
def cast_threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways of casting a table's columns give the same values and messages
    (a big batch casts on threads; these small ones are made to as well)."""
    if request.param == "two at a time":
        monkeypatch.setattr(casting, "PARALLEL_CAST_ROWS", 0)


@pytest.mark.usefixtures("cast_threads")
def test_bad_claim_values_are_messages(tmp_path: Path) -> None:
    bad = {
        **CLAIM,
        "claim_id": "C2",
        "card_no": "",
        "sex": "x",
        "visit_type": "12",
        "route": "bus",
        "admitted_at": "2025-02-30 08:00",
        "total_hospital": "-1",
        "fund_pays": "800.123",
        "treatment_days": "99999",
    }
    batch = read_batch(csv_batch(tmp_path / "b", claims=[CLAIM, bad]))
    assert batch.claim_errors.to_pylist() == [
        None,
        "card_no: null, a value is required; "
        "sex: 'x' is not an integer; "
        "visit_type: 12 is not one of 1, 2, 3, 4, 5, 6, 7, 8, 9; "
        "route: 'bus' is not one of registered, referral, emergency, open_access, "
        "self_referred; "
        "admitted_at: '2025-02-30 08:00' is not a timestamp "
        "(YYYY-MM-DD HH:MM[:SS] or yyyymmddHHMM); "
        "treatment_days: '99999' is out of range for int16 (-32768..32767); "
        "total_hospital: -1.00 is negative; "
        "fund_pays: '800.123' has more than 2 decimals",
    ]
    # the record is kept, its bad values are null
    row = batch.claims.to_pylist()[1]
    assert row["claim_id"] == "C2"
    assert row["sex"] is None
    assert row["route"] is None
    assert row["total_hospital"] is None
    assert row["total_insured"] == Decimal("1000.00")


@pytest.mark.usefixtures("cast_threads")
def test_bad_line_values_name_the_line(tmp_path: Path) -> None:
    lines = [
        {**LINE, "quantity": "-1"},
        {**LINE, "line_no": "4", "unit_price": "1.2345", "coverage_rate": "abc"},
        {**LINE, "line_no": "x", "kind": "pill"},
        {**LINE, "line_no": "", "kind": ""},
        {**LINE, "line_no": "6", "performed_at": "soon", "item_code": ""},
    ]
    batch = read_batch(csv_batch(tmp_path / "b", lines=lines))
    assert batch.line_errors.to_pylist() == [
        "line drug #3: quantity: -1.000 is negative",
        "line drug #4: unit_price: '1.2345' has more than 3 decimals; "
        "line drug #4: coverage_rate: 'abc' is not an integer",
        "line pill #x: line_no: 'x' is not an integer; "
        "line pill #x: kind: 'pill' is not one of drug, service, supply",
        "line ? #?: line_no: null, a value is required; line ? #?: kind: null, a value is required",
        "line drug #6: item_code: null, a value is required; "
        "line drug #6: performed_at: 'soon' is not a timestamp "
        "(YYYY-MM-DD HH:MM[:SS] or yyyymmddHHMM)",
    ]
    assert batch.lines.column("quantity").to_pylist()[0] is None
    assert batch.lines.num_rows == 5


def test_bad_typed_values_in_parquet(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    claims = typed_claims()
    sex = pa.array([7], pa.int64())
    claims = claims.set_column(claims.schema.get_field_index("sex"), "sex", sex)
    pq.write_table(claims, folder / "claims.parquet")
    lines = typed_lines()
    quantity = pa.array([Decimal("-1.000")], pa.decimal128(13, 3))
    lines = lines.set_column(lines.schema.get_field_index("quantity"), "quantity", quantity)
    pq.write_table(lines, folder / "lines.parquet")
    batch = read_batch(folder)
    assert batch.claim_errors.to_pylist() == ["sex: 7 is not one of 1, 2, 3"]
    assert batch.line_errors.to_pylist() == ["line drug #1: quantity: -1.000 is negative"]


# --- unusable input: BatchError (exit 2) ---------------------------------------------------


def test_missing_required_column(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    pq.write_table(typed_claims(), folder / "claims.parquet")
    pq.write_table(typed_lines().drop_columns(["quantity"]), folder / "lines.parquet")
    with pytest.raises(BatchError) as info:
        read_batch(folder)
    assert info.value.exit_code == 2
    assert str(info.value) == (
        f"{folder / 'lines.parquet'}: required column 'quantity' "
        "(decimal128(13, 3), QĐ130 SO_LUONG) is missing"
    )


def test_missing_required_column_in_csv(tmp_path: Path) -> None:
    claim = {k: v for k, v in CLAIM.items() if k != "card_valid_from"}
    with pytest.raises(BatchError, match=r"claims\.csv: required column 'card_valid_from' "):
        read_batch(csv_batch(tmp_path / "b", claims=[claim]))


def test_garbage_file_is_unreadable(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "claims.parquet").write_bytes(b"\x00\x01garbage, not parquet\xff" * 10)
    pq.write_table(typed_lines(), folder / "lines.parquet")
    with pytest.raises(BatchError) as info:
        read_batch(folder)
    assert str(info.value).startswith(f"{folder / 'claims.parquet'}: cannot be read as Parquet")
    (folder / "claims.parquet").unlink()
    (folder / "claims.arrow").write_bytes(b"not arrow either")
    with pytest.raises(BatchError, match=r"claims\.arrow: cannot be read as Arrow IPC"):
        read_batch(folder)


def test_csv_with_a_broken_row_is_unreadable(tmp_path: Path) -> None:
    folder = csv_batch(tmp_path / "b")
    with (folder / "lines.csv").open("a", encoding="utf-8") as handle:
        handle.write("C1,1,drug,extra,fields,too,many,,,,,,,,,,,,,,,,,\n")
    with pytest.raises(BatchError, match=r"lines\.csv: cannot be read as CSV"):
        read_batch(folder)


def test_missing_folder_and_files(tmp_path: Path) -> None:
    with pytest.raises(BatchError, match="batch folder does not exist"):
        read_batch(tmp_path / "nowhere")
    folder = tmp_path / "b"
    folder.mkdir()
    write_csv(folder / "claims.csv", [CLAIM])
    with pytest.raises(BatchError, match=r"lines\.parquet is missing"):
        read_batch(folder)


def test_two_formats_of_one_file_are_ambiguous(tmp_path: Path) -> None:
    folder = csv_batch(tmp_path / "b")
    pq.write_table(typed_claims(), folder / "claims.parquet")
    with pytest.raises(BatchError, match=r"both claims\.parquet and claims\.csv exist"):
        read_batch(folder)


def test_xml_input_not_supported_yet(tmp_path: Path) -> None:
    envelope = tmp_path / "upload.xml"
    envelope.write_text("<GIAMDINHHS/>", encoding="utf-8")
    with pytest.raises(BatchError, match="QĐ130 XML input is not supported yet"):
        read_batch(envelope)
    folder = tmp_path / "xmls"
    folder.mkdir()
    (folder / "a.xml").write_text("<GIAMDINHHS/>", encoding="utf-8")
    with pytest.raises(BatchError, match="QĐ130 XML input is not supported yet"):
        read_batch(folder)


def test_read_table_file_rejects_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(BatchError, match="unsupported file type"):
        read_table_file(path)


def test_csv_columns_all_text(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [{"a": "007", "b": "", "c": "1.50"}])
    table = read_table_file(path)
    assert table.schema.types == [pa.string()] * 3
    assert table.to_pylist() == [{"a": "007", "b": None, "c": "1.50"}]


def test_empty_batch(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    pq.write_table(CLAIMS_SCHEMA.empty_table(), folder / "claims.parquet")
    pq.write_table(LINES_SCHEMA.empty_table(), folder / "lines.parquet")
    batch = read_batch(folder)
    assert_contract_shape(batch.claims, batch.lines)
    assert len(batch.claim_errors) == 0
    assert len(batch.line_errors) == 0


def test_parquet_checks_skipped_only_where_metadata_proves_them(tmp_path: Path) -> None:
    """Row groups whose statistics and dictionaries prove the checks skip them; the
    others (a bad kind, a null card, a negative quantity) are still caught per row."""
    folder = tmp_path / "b"
    folder.mkdir()
    claims = pa.concat_tables([typed_claims()] * 3)
    claim_ids = pa.array(["C1", "C2", "C3"])
    cards = pa.array(["DN4010123456789", "DN4010123456789", None])
    routes = pa.array(["registered", "bus", "registered"])
    for name, col in (("claim_id", claim_ids), ("card_no", cards), ("route", routes)):
        claims = claims.set_column(claims.schema.get_field_index(name), name, col)
    pq.write_table(claims, folder / "claims.parquet", row_group_size=1)
    lines = pa.concat_tables([typed_lines()] * 4)
    kinds = pa.array(["drug", "drug", "pill", "drug"])
    nos = pa.array([1, 2, 3, 4], pa.int32())
    qty = pa.array([Decimal("1.000"), Decimal("-1.000"), Decimal("1.000"), Decimal("2.000")])
    for name, col in (
        ("kind", kinds),
        ("line_no", nos),
        ("quantity", qty.cast(pa.decimal128(13, 3))),
    ):
        lines = lines.set_column(lines.schema.get_field_index(name), name, col)
    pq.write_table(lines, folder / "lines.parquet", row_group_size=2, store_decimal_as_integer=True)
    batch = read_batch(folder, {"claim": frozenset(), "line": frozenset()})
    assert batch.claim_errors.to_pylist() == [
        None,
        "route: 'bus' is not one of registered, referral, emergency, open_access, self_referred",
        "card_no: null, a value is required",
    ]
    assert batch.line_errors.to_pylist() == [
        None,
        "line drug #2: quantity: -1.000 is negative",
        "line pill #3: kind: 'pill' is not one of drug, service, supply",
        None,
    ]
    assert batch.lines.column("kind").to_pylist() == ["drug", "drug", None, "drug"]
    assert batch.codes["line"]["kind"].indices.tolist()[2] == -1  # codes follow the nulls


@pytest.mark.parametrize("row_groups", [1, 4])
def test_parquet_read_whole_by_the_file_reader(tmp_path: Path, row_groups: int) -> None:
    """A file of several row groups reads back as one table, one chunk per number
    column (the rules use its buffer as it is), string columns as dictionaries
    where asked, nothing lost or reordered."""
    n = 1000
    table = pa.table(
        {
            "claim_id": [f"c{i // 3:04d}" for i in range(n)],
            "line_no": pa.array(range(n), pa.int32()),
            "amount": pa.array([Decimal(i) / 100 for i in range(n)], pa.decimal128(18, 2)),
            "note": [None if i % 7 else "x" for i in range(n)],
        }
    )
    path = tmp_path / "lines.parquet"
    pq.write_table(table, path, row_group_size=n // row_groups)
    back = read_table_file(path, ["claim_id", "line_no", "amount"], frozenset({"claim_id"}))
    assert back.column_names == ["claim_id", "line_no", "amount"]
    assert back.column("line_no").num_chunks == 1
    assert back.column("amount").num_chunks == 1
    assert pa.types.is_dictionary(back.schema.field("claim_id").type)
    assert back.column("claim_id").cast(pa.string()).equals(table.column("claim_id"))
    assert back.select(["line_no", "amount"]).equals(table.select(["line_no", "amount"]))
    whole = read_table_file(path)
    assert whole.equals(table)
