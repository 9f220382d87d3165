"""End to end: the CLI on files, good and bad inputs, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from builders import tables

from claims_engine.cli import run

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "fixtures" / "reference"

CLAIMS = [
    {"claim_id": "A1"},  # clean
    {"claim_id": "A2", "card_no": "XX9010123456789"},  # CARD_FORMAT
    {"claim_id": "A3", "card_valid_to": "2025-03-01", "card_no": "DN4010000000003"},  # expired
    {"claim_id": "A4", "card_no": "DN4010000000004"},  # a line above the ceiling
]
LINES = [
    {"claim_id": "A1"},
    {"claim_id": "A2"},
    {"claim_id": "A3"},
    {"claim_id": "A4", "unit_price": "12000.000"},
    {"claim_id": "A4", "line_no": 2, "item_code": "NOPE.999"},
    {"claim_id": "ZZ", "line_no": 1},  # orphan
]


def write_batch(
    folder: Path,
    claims: list[dict[str, Any]] | None = None,
    lines: list[dict[str, Any]] | None = None,
) -> Path:
    from datetime import date
    from decimal import Decimal

    def norm(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            r = dict(r)
            for k, v in r.items():
                if isinstance(v, str) and k.startswith("card_valid"):
                    r[k] = date.fromisoformat(v)
                if isinstance(v, str) and k in ("unit_price", "quantity"):
                    r[k] = Decimal(v)
            out.append(r)
        return out

    c, ln = tables(
        norm(claims if claims is not None else CLAIMS), norm(lines if lines is not None else LINES)
    )
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(c, folder / "claims.parquet")
    pq.write_table(ln, folder / "lines.parquet")
    return folder


def adjudicate(batch: Path, out: Path, *extra: str) -> int:
    return run(
        [
            "adjudicate",
            str(batch),
            "--out",
            str(out),
            "--reference",
            str(REFERENCE),
            "--quiet",
            *extra,
        ]
    )


def test_adjudicate_writes_every_claim_and_line_once(tmp_path: Path) -> None:
    batch = write_batch(tmp_path / "batch")
    out = tmp_path / "out"
    assert adjudicate(batch, out) == 0
    files = {p.name for p in out.iterdir()}
    assert files == {
        "approved.parquet",
        "rejected.parquet",
        "flagged.parquet",
        "lines.parquet",
        "reasons.parquet",
        "summary.json",
    }
    decided = {
        name: pq.read_table(out / f"{name}.parquet").to_pylist()
        for name in ("approved", "rejected", "flagged")
    }
    ids = sorted(c["claim_id"] for rows in decided.values() for c in rows)
    assert ids == ["A1", "A2", "A3", "A4"]
    assert [c["claim_id"] for c in decided["approved"]] == ["A1", "A4"]
    assert [c["claim_id"] for c in decided["rejected"]] == ["A2", "A3"]
    a4 = decided["approved"][1]
    assert a4["reason_codes"] == ["ITEM_NOT_IN_CATALOGUE", "PRICE_ABOVE_CEILING"]
    lines = pq.read_table(out / "lines.parquet").to_pylist()
    assert len(lines) == len(LINES)
    assert [(r["claim_id"], r["line_no"]) for r in lines] == sorted(
        (r["claim_id"], r["line_no"]) for r in lines
    )
    orphan = next(r for r in lines if r["claim_id"] == "ZZ")
    assert orphan["decision"] == "rejected" and orphan["reason_codes"] == ["ORPHAN_LINE"]
    price = next(r for r in lines if r["claim_id"] == "A4" and r["line_no"] == 1)
    assert price["decision"] == "adjusted"
    # paid at the ceiling 8860.000 x 2 = 17720.00 (low cost: 100%)
    assert str(price["eligible"]) == "17720.00"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["input"] == {"claims": 4, "lines": 6}
    assert summary["decisions"]["rejected"]["claims"] == 2
    assert summary["codes"]["ORPHAN_LINE"] == 1
    assert summary["pack"]["id"] == "vn_bhyt"
    reasons = pq.read_table(out / "reasons.parquet").to_pylist()
    expired = next(r for r in reasons if r["code"] == "CARD_EXPIRED")
    assert expired["claim_id"] == "A3" and "2025-03-01" in expired["message"]


def test_rerun_is_identical_but_times(tmp_path: Path) -> None:
    batch = write_batch(tmp_path / "batch")
    assert adjudicate(batch, tmp_path / "o1") == 0
    assert adjudicate(batch, tmp_path / "o2") == 0
    s1 = json.loads((tmp_path / "o1" / "summary.json").read_text())
    s2 = json.loads((tmp_path / "o2" / "summary.json").read_text())
    for timed in ("timings", "rule_seconds"):
        s1.pop(timed), s2.pop(timed)
    assert s1 == s2
    for name in ("approved", "rejected", "flagged", "lines", "reasons"):
        assert pq.read_table(tmp_path / "o1" / f"{name}.parquet").equals(
            pq.read_table(tmp_path / "o2" / f"{name}.parquet")
        )


def test_malformed_value_rejects_its_claim_naming_the_field(tmp_path: Path) -> None:
    batch = write_batch(tmp_path / "batch")
    lines = pq.read_table(batch / "lines.parquet")
    csv_path = batch / "lines.csv"
    pacsv.write_csv(lines, csv_path)
    (batch / "lines.parquet").unlink()
    text = csv_path.read_text().splitlines()
    header = text[0].split(",")
    q = header.index('"quantity"')
    row = text[1].split(",")
    row[q] = '"-1.000"'
    text[1] = ",".join(row)
    csv_path.write_text("\n".join(text) + "\n")
    out = tmp_path / "out"
    assert adjudicate(batch, out) == 0
    rejected = {c["claim_id"]: c for c in pq.read_table(out / "rejected.parquet").to_pylist()}
    assert rejected["A1"]["reason_codes"] == ["MALFORMED"]
    reasons = [
        r for r in pq.read_table(out / "reasons.parquet").to_pylist() if r["code"] == "MALFORMED"
    ]
    assert "quantity" in reasons[0]["message"] and "negative" in reasons[0]["message"]


def test_missing_reference_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLAIMS_ENGINE_REFERENCE", raising=False)
    batch = write_batch(tmp_path / "batch")
    code = run(["adjudicate", str(batch), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "--reference" in capsys.readouterr().err


def test_missing_required_column_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = write_batch(tmp_path / "batch")
    lines = pq.read_table(batch / "lines.parquet").drop_columns(["quantity"])
    pq.write_table(lines, batch / "lines.parquet")
    assert adjudicate(batch, tmp_path / "o") == 2
    msg = capsys.readouterr().err
    assert "lines.parquet" in msg and "quantity" in msg
    assert not (tmp_path / "o").exists()


def test_unreadable_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = write_batch(tmp_path / "batch")
    (batch / "claims.parquet").write_bytes(b"not parquet at all")
    assert adjudicate(batch, tmp_path / "o") == 2
    assert "claims.parquet" in capsys.readouterr().err


def test_bad_pack_is_exit_2_with_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "pack.yaml").write_text("id: mini\nversion: '1'\n")
    (pack / "r.yaml").write_text(
        "- id: r.one\n  title: t\n  basis: b\n  level: claim\n  severity: flag\n"
        "  code: X\n  when: card_numb == 'x'\n  message: m\n"
    )
    batch = write_batch(tmp_path / "batch")
    assert adjudicate(batch, tmp_path / "o", "--rules", str(pack)) == 2
    msg = capsys.readouterr().err
    assert "r.yaml:7" in msg and "card_no" in msg


def test_reference_not_covering_a_date_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = write_batch(
        tmp_path / "batch",
        [{"claim_id": "OLD", "admitted_at": "x"}][:0] or [{"claim_id": "A1"}],
        [{"claim_id": "A1"}],
    )
    ref = tmp_path / "ref"
    ref.mkdir()
    for f in REFERENCE.iterdir():
        (ref / f.name).write_bytes(f.read_bytes())
    (ref / "base_salary.csv").write_text('"valid_from","amount"\n2026-01-01,2340000.00\n')
    code = run(
        ["adjudicate", str(batch), "--out", str(tmp_path / "o"), "--reference", str(ref), "--quiet"]
    )
    assert code == 2
    msg = capsys.readouterr().err
    assert "base_salary" in msg and "2025-03-10" in msg


def test_check_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = write_batch(tmp_path / "clean", [{"claim_id": "A1"}], [{"claim_id": "A1"}])
    assert run(["check", str(clean), "--reference", str(REFERENCE)]) == 0
    capsys.readouterr()
    mixed = write_batch(tmp_path / "mixed")
    assert run(["check", str(mixed), "--reference", str(REFERENCE), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    by_id = {c["claim_id"]: c for c in report["claims"]}
    assert by_id["A2"]["decision"] == "rejected"
    assert "CARD_FORMAT" in [r["code"] for r in by_id["A2"]["reasons"]]


def test_rules_check_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["rules", "check", "vn_bhyt"]) == 0
    assert "vn_bhyt" in capsys.readouterr().out
    assert run(["rules", "show", "vn_bhyt"]) == 0
    assert "rule card.expired" in capsys.readouterr().out


def test_real_process_no_traceback(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it: exit code 2, one line, no traceback."""
    env = {**os.environ, "CLAIMS_ENGINE_REFERENCE": ""}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "claims_engine.cli",
            "adjudicate",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "o"),
            "--reference",
            str(REFERENCE),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "missing" in proc.stderr


def test_output_folder_with_foreign_files_is_refused(tmp_path: Path) -> None:
    batch = write_batch(tmp_path / "batch")
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.docx").write_text("precious")
    assert adjudicate(batch, out) == 2
    assert (out / "thesis.docx").read_text() == "precious"


def test_rules_functions_lists_the_language(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["rules", "functions"]) == 0
    listing = capsys.readouterr().out
    for usage in ("days_between(from, to)", "right(text, n)", "exists(lookup)"):
        assert usage in listing


def test_adjudicate_selected_codes_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = write_batch(tmp_path / "batch")
    out = tmp_path / "out"
    assert adjudicate(batch, out, "--codes", "CARD_EXPIRED, ORPHAN_LINE") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pack"]["selected_codes"] == ["CARD_EXPIRED", "ORPHAN_LINE"]
    # CARD_FORMAT, PRICE_ABOVE_CEILING and ITEM_NOT_IN_CATALOGUE did not run
    assert summary["codes"] == {"CARD_EXPIRED": 1, "ORPHAN_LINE": 1}
    assert adjudicate(batch, out, "--codes", "CARD_EXPIRD") == 2
    assert (
        "has no rule with code CARD_EXPIRD (did you mean CARD_EXPIRED?)" in capsys.readouterr().err
    )
