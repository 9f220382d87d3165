"""Unneeded Parquet columns are skipped only when their metadata proves them valid."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from builders import tables

from claims_engine.io.batch import read_batch
from claims_engine.io.pruning import unread_columns
from claims_engine.schema import LINE_COLUMNS

NEEDED = {"claim": frozenset({"claim_id"}), "line": frozenset({"claim_id", "kind", "line_no"})}


def _write(folder: Path, lines: list[dict[str, object]]) -> Path:
    claims, ln = tables([{"claim_id": "C1"}], lines)
    schema = pa.schema([f.with_nullable(True) for f in ln.schema])
    folder.mkdir()
    pq.write_table(claims, folder / "claims.parquet")
    pq.write_table(ln.cast(schema), folder / "lines.parquet")
    return folder


def test_valid_unneeded_columns_are_not_read(tmp_path: Path) -> None:
    batch = read_batch(_write(tmp_path / "b", [{"claim_id": "C1"}]), NEEDED)
    assert "practitioner" not in batch.lines.column_names  # nullable string: nothing to check
    assert "patient_copay" not in batch.lines.column_names  # statistics: no nulls, min >= 0
    assert "kind" in batch.lines.column_names  # needed
    assert batch.line_errors.null_count == 1


def test_a_bad_unneeded_column_is_still_read_and_reported(tmp_path: Path) -> None:
    folder = _write(tmp_path / "b", [{"claim_id": "C1", "patient_copay": Decimal("-1.00")}])
    assert "patient_copay" not in unread_columns(
        folder / "lines.parquet", LINE_COLUMNS, NEEDED["line"]
    )
    batch = read_batch(folder, NEEDED)
    assert "patient_copay" in batch.lines.column_names
    assert "patient_copay: -1.00 is negative" in batch.line_errors[0].as_py()


def test_without_needed_everything_is_read(tmp_path: Path) -> None:
    batch = read_batch(_write(tmp_path / "b", [{"claim_id": "C1"}]))
    assert batch.lines.column_names == [c.name for c in LINE_COLUMNS]
