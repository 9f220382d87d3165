"""Loading reference data: every table cast, any bad value fatal with its row."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from claims_engine.errors import ReferenceDataError
from claims_engine.io.reference import load_reference
from claims_engine.schema import REFERENCE_TABLE_BY_NAME, REFERENCE_TABLES

CATALOGUE = [
    {"facility_id": "", "item_code": "40.18", "max_unit_price": "389.327", "coverage_rate": "70"},
    {"facility_id": "01001", "item_code": "40.18", "max_unit_price": "", "coverage_rate": "70"},
]

TABLES: dict[str, list[dict[str, str]]] = {
    "facilities": [{"facility_id": "01001", "level": "central", "province_code": "01"}],
    "drugs": CATALOGUE,
    "services": CATALOGUE,
    "supplies": CATALOGUE,
    "icd10": [
        {"code": "J06.9", "sex": "", "min_age_days": "", "max_age_days": ""},
        {"code": "O80", "sex": "2", "min_age_days": "3650", "max_age_days": ""},
    ],
    "card_groups": [{"group_code": "DN", "benefit_level": "4"}],
    "provinces": [{"province_code": "01", "name": "Hà Nội", "merged_into": ""}],
    "base_salary": [
        {"valid_from": "2023-07-01", "amount": "1800000.00", "valid_to": "2024-06-30"},
        {"valid_from": "2024-07-01", "amount": "2340000.00", "valid_to": ""},
    ],
    "blocked_cards": [{"card_no": "DN4010123456789", "valid_from": "2025-01-10", "reason": ""}],
}


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def reference_folder(tmp_path: Path, **changes: list[dict[str, str]]) -> Path:
    folder = tmp_path / "ref"
    folder.mkdir(exist_ok=True)
    for name, rows in {**TABLES, **changes}.items():
        write_csv(folder / f"{name}.csv", rows)
    return folder


def test_loads_every_table_with_contract_types(tmp_path: Path) -> None:
    reference = load_reference(reference_folder(tmp_path))
    assert reference.folder == tmp_path / "ref"
    assert set(reference.tables) == {t.name for t in REFERENCE_TABLES}
    for spec in REFERENCE_TABLES:
        table = reference.tables[spec.name]
        for column in spec.columns:
            assert table.schema.field(column.name).type == column.type, (spec.name, column)
        assert table.schema.field("valid_from").type == pa.date32()
        assert table.schema.field("valid_to").type == pa.date32()
    drugs = reference.tables["drugs"]
    assert drugs.column("facility_id").to_pylist() == [None, "01001"]
    assert drugs.column("max_unit_price").to_pylist() == [Decimal("389.327"), None]
    assert drugs.column("valid_from").to_pylist() == [None, None]  # absent: all null
    salary = reference.tables["base_salary"]
    assert salary.column("valid_to").to_pylist() == [dt.date(2024, 6, 30), None]
    assert reference.tables["facilities"].column("province_code").to_pylist() == ["01"]


def test_optional_table_absent_is_empty(tmp_path: Path) -> None:
    reference = load_reference(reference_folder(tmp_path))
    limits = reference.tables["frequency_limits"]
    assert limits.num_rows == 0
    assert limits.column_names == [
        "item_code",
        "max_count",
        "window_days",
        "valid_from",
        "valid_to",
    ]
    assert limits.schema.types == [pa.string(), pa.int32(), pa.int32(), pa.date32(), pa.date32()]


def test_optional_table_present_is_checked(tmp_path: Path) -> None:
    limits = [{"item_code": "23.2769", "max_count": "1", "window_days": "-90"}]
    folder = reference_folder(tmp_path, frequency_limits=limits)
    with pytest.raises(ReferenceDataError) as info:
        load_reference(folder)
    assert str(info.value) == (
        f"{folder / 'frequency_limits.csv'}: data row 1: window_days: -90 is negative"
    )


def test_parquet_table_and_extra_columns(tmp_path: Path) -> None:
    folder = reference_folder(tmp_path)
    (folder / "card_groups.csv").unlink()
    table = pa.table(
        {
            "group_code": ["DN", "HT"],
            "benefit_level": pa.array([4, 1], pa.int64()),
            "label": ["workers", "retired"],
        }
    )
    pq.write_table(table, folder / "card_groups.parquet")
    groups = load_reference(folder).tables["card_groups"]
    assert groups.column_names == ["group_code", "benefit_level", "valid_from", "valid_to", "label"]
    assert groups.column("benefit_level").type == pa.int8()
    assert groups.column("label").to_pylist() == ["workers", "retired"]


def test_missing_table(tmp_path: Path) -> None:
    folder = reference_folder(tmp_path)
    (folder / "drugs.csv").unlink()
    with pytest.raises(ReferenceDataError) as info:
        load_reference(folder)
    assert info.value.exit_code == 2
    assert str(info.value) == (
        f"{folder}: reference table 'drugs' is missing (expected drugs.parquet or drugs.csv)"
    )


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ReferenceDataError, match="reference data folder does not exist"):
        load_reference(tmp_path / "nowhere")


def test_missing_required_column(tmp_path: Path) -> None:
    rows = [{"facility_id": "01001", "level": "central"}]
    folder = reference_folder(tmp_path, facilities=rows)
    with pytest.raises(ReferenceDataError) as info:
        load_reference(folder)
    assert str(info.value) == (
        f"{folder / 'facilities.csv'}: required column 'province_code' (string) is missing"
    )


@pytest.mark.parametrize(
    ("table", "row", "expected"),
    [
        ("drugs", {"coverage_rate": "abc"}, "coverage_rate: 'abc' is not an integer"),
        ("drugs", {"item_code": ""}, "item_code: null, a value is required"),
        ("drugs", {"max_unit_price": "-5"}, "max_unit_price: -5.000 is negative"),
        ("drugs", {"max_unit_price": "1.23456"},
         "max_unit_price: '1.23456' has more than 3 decimals"),
        ("drugs", {"valid_from": "2025-13-01"},
         "valid_from: '2025-13-01' is not a date (YYYY-MM-DD or YYYYMMDD)"),
        ("facilities", {"level": "national"},
         "level: 'national' is not one of central, provincial, district, commune"),
        ("icd10", {"sex": "3"}, "sex: 3 is not one of 1, 2"),
        ("card_groups", {"benefit_level": "6"}, "benefit_level: 6 is not one of 1, 2, 3, 4, 5"),
        ("base_salary", {"valid_from": ""}, "valid_from: null, a value is required"),
    ],
)  # fmt: skip
def test_bad_value_names_file_row_and_column(
    tmp_path: Path, table: str, row: dict[str, str], expected: str
) -> None:
    assert set(row) <= {c.name for c in REFERENCE_TABLE_BY_NAME[table].columns} | {"valid_from"}
    # the good rows (with the bad row's columns, empty, when they lack them), then the bad one
    good = [{**{name: "" for name in row}, **r} for r in TABLES[table]]
    rows = [*good, {**good[0], **row}]
    folder = reference_folder(tmp_path, **{table: rows})
    with pytest.raises(ReferenceDataError) as info:
        load_reference(folder)
    bad_row = len(rows)  # 1-based data row, header not counted
    assert str(info.value) == f"{folder / (table + '.csv')}: data row {bad_row}: {expected}"


def test_several_bad_rows_are_counted(tmp_path: Path) -> None:
    rows = [{**CATALOGUE[0], "coverage_rate": "x"}, {**CATALOGUE[1], "coverage_rate": "-1"}]
    folder = reference_folder(tmp_path, services=rows)
    with pytest.raises(ReferenceDataError) as info:
        load_reference(folder)
    assert str(info.value) == (
        f"{folder / 'services.csv'}: data row 1: coverage_rate: 'x' is not an integer "
        "(and 1 more rows with bad values)"
    )


def test_valid_from_after_valid_to(tmp_path: Path) -> None:
    rows = [
        {"valid_from": "2024-07-01", "amount": "2340000.00", "valid_to": "2024-12-31"},
        {"valid_from": "2025-07-01", "amount": "2340000.00", "valid_to": "2025-06-30"},
    ]
    folder = reference_folder(tmp_path, base_salary=rows)
    with pytest.raises(ReferenceDataError) as info:
        load_reference(folder)
    assert str(info.value) == (
        f"{folder / 'base_salary.csv'}: data row 2: valid_from 2025-07-01 is after "
        "valid_to 2025-06-30"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    folder = reference_folder(tmp_path)
    (folder / "icd10.csv").unlink()
    (folder / "icd10.parquet").write_bytes(b"PAR1 but not really")
    with pytest.raises(ReferenceDataError, match=r"icd10\.parquet: cannot be read as Parquet"):
        load_reference(folder)
