"""Atomic output writing: all files appear, or none change."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from claims_engine.errors import BatchError, ClaimsEngineError, OutputError
from claims_engine.io import output, parquet_out
from claims_engine.io.output import content_hash, output_lock, recover, write_outputs

REPO_ROOT = Path(__file__).resolve().parents[2]


def _tables(tag: str) -> dict[str, pa.Table]:
    return {
        "approved": pa.table(
            {
                "claim_id": pa.array([f"{tag}-1", f"{tag}-2"]),
                "fund_pays": pa.array([Decimal("10.50"), Decimal("0.00")], pa.decimal128(18, 2)),
            }
        ),
        "reasons": pa.table({"claim_id": pa.array([tag]), "code": pa.array(["X01"])}),
    }


def _summary(tag: str) -> dict[str, object]:
    return {"batch_id": tag, "pack": {"id": "vn_bhyt", "version": "1"}, "note": "Bảo hiểm y tế"}


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _side_dirs(out_dir: Path) -> list[str]:
    """Staging/old leftovers next to out_dir (the lock file is expected and kept)."""
    prefix = f".{out_dir.name}."
    return sorted(
        p.name
        for p in out_dir.parent.iterdir()
        if p.name.startswith(prefix) and p.name != f".{out_dir.name}.lock"
    )


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "results" / "out"


@pytest.fixture
def previous(out_dir: Path) -> dict[str, bytes]:
    """out_dir holding a first run's outputs; returns their bytes."""
    write_outputs(out_dir, _tables("old"), _summary("old"))
    return _snapshot(out_dir)


# --------------------------------------------------------------------------- happy path


def test_fresh_write_creates_all_files(out_dir: Path) -> None:
    tables = _tables("new")
    with_pandas = tables["reasons"].replace_schema_metadata({b"pandas": b"{}", b"keep": b"1"})
    tables["reasons"] = with_pandas

    write_outputs(out_dir, tables, _summary("new"))  # parent is created too

    assert sorted(p.name for p in out_dir.iterdir()) == [
        "approved.parquet",
        "reasons.parquet",
        "summary.json",
    ]
    approved = pq.read_table(out_dir / "approved.parquet")
    assert approved.equals(tables["approved"])
    reasons = pq.read_table(out_dir / "reasons.parquet")
    assert b"pandas" not in (reasons.schema.metadata or {})
    assert (reasons.schema.metadata or {}).get(b"keep") == b"1"
    column = pq.ParquetFile(out_dir / "approved.parquet").metadata.row_group(0).column(0)
    assert column.compression == "SNAPPY"

    text = (out_dir / "summary.json").read_text(encoding="utf-8")
    assert "Bảo hiểm y tế" in text  # ensure_ascii off
    assert text.startswith('{\n  "batch_id"')  # indent 2, insertion order kept
    parsed = json.loads(text)
    assert parsed == _summary("new")
    assert list(parsed) == ["batch_id", "pack", "note"]
    assert _side_dirs(out_dir) == []


def test_existing_empty_dir_is_fine(out_dir: Path) -> None:
    out_dir.mkdir(parents=True)
    write_outputs(out_dir, _tables("new"), _summary("new"))
    assert (out_dir / "summary.json").exists()
    assert _side_dirs(out_dir) == []


def test_second_write_replaces_outputs(out_dir: Path, previous: dict[str, bytes]) -> None:
    os.chmod(out_dir, 0o750)
    (out_dir / "report.txt").write_text("old report")

    write_outputs(out_dir, {"flagged": pa.table({"claim_id": ["n-1"]})}, _summary("new"))

    assert sorted(p.name for p in out_dir.iterdir()) == ["flagged.parquet", "summary.json"]
    assert pq.read_table(out_dir / "flagged.parquet").column("claim_id").to_pylist() == ["n-1"]
    assert json.loads((out_dir / "summary.json").read_text())["batch_id"] == "new"
    assert os.stat(out_dir).st_mode & 0o777 == 0o750  # permissions of the replaced dir kept
    assert _side_dirs(out_dir) == []


def test_write_inside_held_lock_is_reentrant(out_dir: Path) -> None:
    with output_lock(out_dir):
        write_outputs(out_dir, _tables("a"), _summary("a"))
        write_outputs(out_dir, _tables("b"), _summary("b"))
    assert json.loads((out_dir / "summary.json").read_text())["batch_id"] == "b"
    assert output._held == {}


# --------------------------------------------------------------------------- failures


def _failing_after_first(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """The second Parquet file written fails (files are written by two threads)."""
    real = output._write_table
    calls = {"n": 0}
    guard = threading.Lock()

    def write_table(table: pa.Table, target: Path) -> None:
        with guard:
            calls["n"] += 1
            n = calls["n"]
        if n > 1:
            raise exc
        real(table, target)

    monkeypatch.setattr(output, "_write_table", write_table)


def test_failure_midway_leaves_previous_outputs(
    out_dir: Path, previous: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_after_first(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))

    with pytest.raises(OutputError) as info:
        write_outputs(out_dir, _tables("new"), _summary("new"))

    assert info.value.exit_code == 3
    assert str(out_dir) in str(info.value)
    assert "No space left on device" in str(info.value)
    assert _snapshot(out_dir) == previous
    assert _side_dirs(out_dir) == []


def test_non_os_failure_propagates_and_cleans_up(
    out_dir: Path, previous: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_after_first(monkeypatch, RuntimeError("boom"))

    with pytest.raises(RuntimeError, match="boom"):
        write_outputs(out_dir, _tables("new"), _summary("new"))

    assert _snapshot(out_dir) == previous
    assert _side_dirs(out_dir) == []


def test_failure_on_fresh_dir_leaves_nothing(
    out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_after_first(monkeypatch, OSError(errno.EIO, "I/O error"))
    with pytest.raises(OutputError):
        write_outputs(out_dir, _tables("new"), _summary("new"))
    assert not out_dir.exists()
    assert _side_dirs(out_dir) == []


_SLOW_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import pyarrow as pa
    from claims_engine.io import output, parquet_out

    real = output._write_table

    def slow(table, target):
        real(table, target)
        print("WROTE", flush=True)
        time.sleep(120)

    output._write_table = slow
    tables = {"a": pa.table({"x": [1]}), "b": pa.table({"x": [2]})}
    output.write_outputs(Path(sys.argv[1]), tables, {"batch_id": "killed"})
    """
)


def test_sigkill_while_writing_leaves_previous_outputs(
    out_dir: Path, previous: dict[str, bytes]
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(out_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = proc.stdout.readline()
            assert line.startswith("WROTE"), proc.stderr.read()
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    assert _snapshot(out_dir) == previous
    leftovers = _side_dirs(out_dir)
    assert len(leftovers) == 1 and ".staging-" in leftovers[0]
    assert any((out_dir.parent / leftovers[0]).glob("*.parquet"))  # written in parallel

    write_outputs(out_dir, _tables("next"), _summary("next"))

    assert json.loads((out_dir / "summary.json").read_text())["batch_id"] == "next"
    assert _side_dirs(out_dir) == []


def test_stale_dir_with_foreign_content_is_left_alone(
    out_dir: Path, previous: dict[str, bytes]
) -> None:
    stale = out_dir.parent / f".{out_dir.name}.staging-{'0' * 16}"
    stale.mkdir()
    (stale / "notes.docx").write_text("not ours")
    write_outputs(out_dir, _tables("new"), _summary("new"))
    assert (stale / "notes.docx").exists()


# --------------------------------------------------------------------------- safety


def test_foreign_file_is_refused(out_dir: Path, previous: dict[str, bytes]) -> None:
    (out_dir / "thesis.docx").write_text("precious")
    (out_dir / "photos").mkdir()

    with pytest.raises(ClaimsEngineError) as info:
        write_outputs(out_dir, _tables("new"), _summary("new"))

    assert not isinstance(info.value, OutputError)
    assert info.value.exit_code == 2
    assert "thesis.docx" in str(info.value)
    assert "photos" in str(info.value)
    assert (out_dir / "thesis.docx").read_text() == "precious"
    assert (out_dir / "photos").is_dir()
    for name, data in previous.items():
        assert (out_dir / name).read_bytes() == data
    assert _side_dirs(out_dir) == []


def test_directory_named_like_an_output_is_refused(out_dir: Path) -> None:
    (out_dir / "nested.parquet").mkdir(parents=True)
    with pytest.raises(ClaimsEngineError, match=r"nested\.parquet"):
        write_outputs(out_dir, _tables("new"), _summary("new"))


def test_existing_file_is_refused(out_dir: Path) -> None:
    out_dir.parent.mkdir(parents=True)
    out_dir.write_text("a file")
    with pytest.raises(ClaimsEngineError) as info:
        write_outputs(out_dir, _tables("new"), _summary("new"))
    assert info.value.exit_code == 2
    assert "not a directory" in str(info.value)
    assert out_dir.read_text() == "a file"


def test_output_lock_checks_the_directory_up_front(out_dir: Path) -> None:
    (out_dir / "keep.me").parent.mkdir(parents=True)
    (out_dir / "keep.me").write_text("x")
    with pytest.raises(ClaimsEngineError, match=r"keep\.me"), output_lock(out_dir):
        pass
    assert output._held == {}


def test_invalid_table_name_is_rejected(out_dir: Path) -> None:
    with pytest.raises(ValueError, match="table name"):
        write_outputs(out_dir, {"../escape": pa.table({"x": [1]})}, {})
    assert not out_dir.exists()


# --------------------------------------------------------------------------- lock


_LOCK_HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from claims_engine.io.output import output_lock

    with output_lock(Path(sys.argv[1])):
        print("LOCKED", flush=True)
        sys.stdin.read()
    """
)


def test_lock_held_by_another_process(out_dir: Path, previous: dict[str, bytes]) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _LOCK_HOLDER, str(out_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            assert proc.stdout.readline() == "LOCKED\n", proc.stderr.read()
            with pytest.raises(OutputError) as info:
                write_outputs(out_dir, _tables("new"), _summary("new"))
            assert info.value.exit_code == 3
            assert f"another run is writing {out_dir}" in str(info.value)
            assert f"pid {proc.pid}" in str(info.value)
            with pytest.raises(OutputError), output_lock(out_dir):
                pass
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)
    assert proc.returncode == 0
    assert _snapshot(out_dir) == previous
    assert output._held == {}

    write_outputs(out_dir, _tables("new"), _summary("new"))  # free again
    assert json.loads((out_dir / "summary.json").read_text())["batch_id"] == "new"


def test_lock_held_by_another_thread(out_dir: Path) -> None:
    errors: list[BaseException] = []

    def other() -> None:
        try:
            write_outputs(out_dir, _tables("t"), _summary("t"))
        except BaseException as exc:
            errors.append(exc)

    with output_lock(out_dir):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(errors) == 1 and isinstance(errors[0], OutputError)
    assert "another run is writing" in str(errors[0])


# --------------------------------------------------------------------------- permissions


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses file permissions")
def test_unwritable_parent(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    os.chmod(parent, 0o500)
    try:
        with pytest.raises(OutputError) as info:
            write_outputs(parent / "out", _tables("new"), _summary("new"))
        assert info.value.exit_code == 3
        assert "Permission denied" in str(info.value)
    finally:
        os.chmod(parent, 0o700)
    assert list(parent.iterdir()) == []


def test_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError) as info:
        write_outputs(tmp_path / "afile" / "out", _tables("new"), _summary("new"))
    assert info.value.exit_code == 3
    assert str(tmp_path / "afile") in str(info.value)


# --------------------------------------------------------------------------- fallback


def _exchange_fails(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def exchange(src: Path, dst: Path) -> None:
        raise OSError(code, os.strerror(code), os.fspath(src))

    monkeypatch.setattr(output, "_rename_exchange", exchange)


def test_fallback_when_renameat2_unsupported(
    out_dir: Path, previous: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _exchange_fails(monkeypatch, errno.EINVAL)

    write_outputs(out_dir, _tables("new"), _summary("new"))

    assert json.loads((out_dir / "summary.json").read_text())["batch_id"] == "new"
    assert _snapshot(out_dir) != previous
    assert _side_dirs(out_dir) == []


def test_other_exchange_error_is_an_output_error(
    out_dir: Path, previous: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _exchange_fails(monkeypatch, errno.EIO)
    with pytest.raises(OutputError):
        write_outputs(out_dir, _tables("new"), _summary("new"))
    assert _snapshot(out_dir) == previous
    assert _side_dirs(out_dir) == []


def test_recover_restores_leftover_old_dir(out_dir: Path, previous: dict[str, bytes]) -> None:
    # A crash between rename(out_dir -> old) and rename(staging -> out_dir).
    old = out_dir.parent / f".{out_dir.name}.old-{'ab' * 8}"
    os.rename(out_dir, old)
    staging = out_dir.parent / f".{out_dir.name}.staging-{'cd' * 8}"
    staging.mkdir()
    (staging / "approved.parquet").write_bytes(b"partial")

    assert recover(out_dir) == old
    assert _snapshot(out_dir) == previous
    assert recover(out_dir) is None  # out_dir present: nothing to do

    write_outputs(out_dir, _tables("new"), _summary("new"))
    assert _side_dirs(out_dir) == []


def test_crash_between_fallback_renames_is_recovered_by_next_write(
    out_dir: Path, previous: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _exchange_fails(monkeypatch, errno.ENOSYS)
    real_rename = os.rename

    def rename(src: object, dst: object) -> None:
        if Path(str(dst)) == out_dir:  # neither staging nor the old dir gets back
            raise OSError(errno.EIO, "I/O error", str(src))
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OutputError):
        write_outputs(out_dir, _tables("new"), _summary("new"))
    monkeypatch.setattr(os, "rename", real_rename)

    assert not out_dir.exists()
    assert any(".old-" in name for name in _side_dirs(out_dir))

    write_outputs(out_dir, _tables("next"), _summary("next"))
    assert json.loads((out_dir / "summary.json").read_text())["batch_id"] == "next"
    assert _side_dirs(out_dir) == []


# --------------------------------------------------------------------------- content_hash


def test_content_hash(tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    claims, lines = batch / "claims.csv", batch / "lines.csv"
    claims.write_bytes(b"claim_id\nA\n" * 1000)
    lines.write_bytes(b"claim_id,line_no\nA,1\n")

    first = content_hash([claims, lines])
    assert len(first) == 16 and all(c in "0123456789abcdef" for c in first)
    assert content_hash([claims, lines]) == first
    assert content_hash([lines, claims]) == first  # order given does not matter

    moved = tmp_path / "elsewhere" / "batch"
    moved.mkdir(parents=True)
    for f in (claims, lines):
        (moved / f.name).write_bytes(f.read_bytes())
    assert content_hash([moved / "claims.csv", moved / "lines.csv"]) == first

    data = bytearray(claims.read_bytes())
    data[500] ^= 1
    claims.write_bytes(bytes(data))
    assert content_hash([claims, lines]) != first

    claims.write_bytes(b"claim_id\nA\n" * 1000)
    assert content_hash([claims, lines]) == first
    renamed = batch / "claims2.csv"
    claims.rename(renamed)
    assert content_hash([renamed, lines]) != first


def test_content_hash_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(BatchError, match=r"missing\.csv"):
        content_hash([tmp_path / "missing.csv"])


def test_rename_exchange_swaps_directories(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "from_a").touch()
    (b / "from_b").touch()
    try:
        output._rename_exchange(a, b)
    except OSError as exc:
        if exc.errno in output._EXCHANGE_UNSUPPORTED:
            pytest.skip(f"renameat2 RENAME_EXCHANGE unsupported here: {exc}")
        raise
    assert [p.name for p in a.iterdir()] == ["from_b"]
    assert [p.name for p in b.iterdir()] == ["from_a"]


def test_second_write_uses_the_exchange(
    out_dir: Path, previous: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, Path]] = []
    real = output._rename_exchange

    def spy(src: Path, dst: Path) -> None:
        calls.append((src, dst))
        real(src, dst)

    monkeypatch.setattr(output, "_rename_exchange", spy)
    write_outputs(out_dir, _tables("new"), _summary("new"))
    assert len(calls) == 1 and calls[0][1] == out_dir
    assert ".staging-" in calls[0][0].name
    assert _side_dirs(out_dir) == []


# --------------------------------------------------------------------------- encoding


def _read_back(out_dir: Path, name: str) -> pa.Table:
    return pq.read_table(out_dir / f"{name}.parquet")


def _encodings(out_dir: Path, name: str, column: str) -> set[str]:
    meta = pq.ParquetFile(out_dir / f"{name}.parquet").metadata
    index = meta.schema.names.index(column)
    return {
        e for g in range(meta.num_row_groups) for e in meta.row_group(g).column(index).encodings
    }


def test_dictionary_columns_read_back_as_strings(
    out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kinds = ["drug", "service", None, "supply", "drug"]
    kind = pa.chunked_array(
        [
            pa.array(kinds[:2]).dictionary_encode(),
            pa.DictionaryArray.from_arrays(  # another dictionary, with an unused word
                pa.array([None, 1, 0], pa.int32()), pa.array(["drug", "supply", "x"])
            ),
        ]
    )
    plain = pa.schema(
        [pa.field("claim_id", pa.string(), nullable=False), pa.field("kind", pa.string())],
        metadata={b"keep": b"1"},
    )
    table = pa.Table.from_arrays(
        [pa.array(["a", "b", "c", "d", "e"]), kind],
        schema=pa.schema(
            [plain.field("claim_id"), pa.field("kind", kind.type)], metadata=plain.metadata
        ),
    )
    write_outputs(out_dir, {"lines": table}, {})
    back = _read_back(out_dir, "lines")
    assert back.schema.equals(plain, check_metadata=True)
    assert back.column("kind").to_pylist() == kinds
    assert back.equals(output.plain_table(table))
    assert "RLE_DICTIONARY" in _encodings(out_dir, "lines", "kind")  # a low-cardinality column


def test_dictionary_beside_a_list_column(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """list<item: string> reads back as list<element: string>; the dictionary as strings."""
    table = pa.table(
        {
            "kind": pa.array(["drug", "supply", "drug"]).dictionary_encode(),
            "reason_codes": pa.array([["A"], [], None], pa.list_(pa.string())),
        }
    )
    write_outputs(out_dir, {"lines": table}, {})
    back = _read_back(out_dir, "lines")
    assert back.schema.field("kind").type == pa.string()
    assert back.column("kind").to_pylist() == ["drug", "supply", "drug"]
    assert back.column("reason_codes").to_pylist() == [["A"], [], None]


def test_null_in_a_dictionary_is_written_plain(
    out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0]), pa.array(["drug", None]))
    write_outputs(out_dir, {"lines": pa.table({"kind": kind})}, {})
    back = _read_back(out_dir, "lines")
    assert back.schema.field("kind").type == pa.string()
    assert back.column("kind").to_pylist() == ["drug", None, "drug"]


def test_dictionary_reads_back_as_a_usual_write(
    out_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """timestamp[s] reads back as timestamp[ms] (Parquet has no seconds), list items
    as "element", field metadata is kept: whatever a usual write of the plain table
    gives, the file gives too."""
    table = pa.table(
        {
            "kind": pa.array(["drug", "supply"]).dictionary_encode(),
            "at": pa.array([1, 2], pa.timestamp("s")),
            "codes": pa.array([["A"], None], pa.list_(pa.string())),
        }
    )
    table = table.replace_schema_metadata({b"keep": b"1"})
    table = table.cast(
        pa.schema(
            [table.schema.field(0).with_metadata({b"note": b"x"}), *list(table.schema)[1:]],
            metadata=table.schema.metadata,
        )
    )
    pq.write_table(output.plain_table(table), tmp_path / "usual.parquet")
    usual = pq.read_table(tmp_path / "usual.parquet")
    write_outputs(out_dir, {"t": table}, {})
    back = _read_back(out_dir, "t")
    assert back.schema.equals(usual.schema, check_metadata=True)
    assert back.schema.field("kind").metadata == {b"note": b"x"}
    assert back.equals(usual)


def test_dictionaries_are_written_as_dictionaries_and_read_back_plain(
    out_dir: Path, tmp_path: Path
) -> None:
    """The outputs' own shape (dictionary kind and decision, decimals, list of codes,
    schema metadata): written without a cast to plain strings and without the Arrow
    schema, it reads back exactly as a usual write of the plain table."""
    table = pa.table(
        {
            "claim_id": ["C1", "C1", "C2"],
            "kind": pa.array(["drug", "supply", "drug"]).dictionary_encode(),
            "line_no": pa.array([1, 2, None], pa.int32()),
            "decision": pa.array(["approved", None, "rejected"]).dictionary_encode(),
            "reason_codes": pa.array([["A"], [], None], pa.list_(pa.string())),
            "fund_pays": pa.array([Decimal("1.25"), None, Decimal("-3.00")], pa.decimal128(18, 2)),
        }
    ).replace_schema_metadata({b"keep": b"1"})
    pq.write_table(output.plain_table(table), tmp_path / "usual.parquet")
    usual = pq.read_table(tmp_path / "usual.parquet")
    write_outputs(out_dir, {"lines": table}, {})
    assert b"ARROW:schema" not in (pq.read_metadata(out_dir / "lines.parquet").metadata or {})
    back = _read_back(out_dir, "lines")
    assert back.schema.equals(usual.schema, check_metadata=True)
    assert back.equals(usual)


def test_money_is_exact_at_the_extremes(out_dir: Path) -> None:
    limit = Decimal("9999999999999999.99")  # decimal128(18, 2) at its largest
    money = [limit, -limit, Decimal("-0.01"), Decimal("0.00"), None, Decimal("12345.67")]
    wide = [Decimal("1" * 28 + ".0123456789"), None, Decimal("-1.5"), Decimal(0), None, None]
    table = pa.table(
        {
            "claim_id": [str(i) for i in range(len(money))],
            "line_no": pa.array([1, None, -3, 2**31 - 1, 0, 5], pa.int32()),
            "fund_pays": pa.array(money, pa.decimal128(18, 2)),
            "rate": pa.array([Decimal("0.80")] * len(money), pa.decimal128(5, 2)),
            "wide": pa.array(wide, pa.decimal128(38, 10)),  # beyond INT64: as before
        }
    )
    write_outputs(out_dir, {"lines": table}, {})
    back = _read_back(out_dir, "lines")
    assert back.equals(table)
    assert back.column("fund_pays").to_pylist() == money
    meta = pq.ParquetFile(out_dir / "lines.parquet").metadata
    physical = {meta.schema.column(i).name: meta.schema.column(i).physical_type for i in range(5)}
    assert physical["fund_pays"] == "INT64" and physical["rate"] == "INT32"
    assert physical["wide"] == "FIXED_LEN_BYTE_ARRAY"
    assert "DELTA_BINARY_PACKED" in _encodings(out_dir, "lines", "fund_pays")


def test_statistics_only_for_the_sort_column(out_dir: Path) -> None:
    table = pa.table(
        {
            "claim_id": ["a", "b", "c"],
            "code": ["X", "Y", "X"],
            "fund_pays": pa.array([Decimal("1.00")] * 3, pa.decimal128(18, 2)),
        }
    )
    write_outputs(out_dir, {"reasons": table}, {})
    group = pq.ParquetFile(out_dir / "reasons.parquet").metadata.row_group(0)
    stats = group.column(0).statistics
    assert stats is not None and (stats.min, stats.max) == ("a", "c")
    assert not group.column(1).is_stats_set and not group.column(2).is_stats_set


def test_empty_and_many_row_group_tables(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet_out, "ROW_GROUP_ROWS", 4)
    big = pa.table(
        {
            "claim_id": [f"{i:03d}" for i in range(10)],
            "kind": pa.array(["drug", "supply"] * 5).dictionary_encode(),
        }
    )
    empty = big.slice(0, 0)
    write_outputs(out_dir, {"lines": big, "flagged": empty}, {})
    assert pq.ParquetFile(out_dir / "lines.parquet").metadata.num_row_groups == 3
    assert _read_back(out_dir, "lines").equals(output.plain_table(big))
    back = _read_back(out_dir, "flagged")
    assert back.num_rows == 0 and back.schema.equals(output.plain_schema(big.schema))


def test_failure_in_one_file_leaves_previous_outputs(
    out_dir: Path, previous: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = output._write_table

    def failing(table: pa.Table, target: Path) -> None:
        if target.name == "lines.parquet":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(table, target)

    monkeypatch.setattr(output, "_write_table", failing)
    lines = pa.table({"claim_id": ["a"] * 100, "line_no": pa.array(range(100), pa.int32())})
    with pytest.raises(OutputError, match="No space left"):
        write_outputs(out_dir, {"lines": lines, **_tables("new")}, _summary("new"))
    assert _snapshot(out_dir) == previous
    assert _side_dirs(out_dir) == []


# --------------------------------------------------------------------------- staged writing


def test_stage_writes_each_table_as_added_and_publishes_at_once(
    out_dir: Path, previous: dict[str, bytes]
) -> None:
    tables = _tables("new")
    with output.OutputStage(out_dir) as stage:
        stage.add("approved", tables["approved"])
        # being written into the staging folder: the previous outputs are untouched
        assert _snapshot(out_dir) == previous
        stage.add("reasons", tables["reasons"])
        stage.publish(_summary("new"))
    assert _read_back(out_dir, "approved").equals(tables["approved"])
    assert _read_back(out_dir, "reasons").equals(tables["reasons"])
    assert json.loads((out_dir / "summary.json").read_text())["batch_id"] == "new"
    assert _side_dirs(out_dir) == []


def test_stage_left_without_publishing_keeps_previous_outputs(
    out_dir: Path, previous: dict[str, bytes]
) -> None:
    with (
        pytest.raises(RuntimeError, match="building failed"),
        output.OutputStage(out_dir) as stage,
    ):
        stage.add("approved", _tables("new")["approved"])
        raise RuntimeError("building failed")
    assert _snapshot(out_dir) == previous
    assert _side_dirs(out_dir) == []


def test_stage_refuses_a_table_added_twice_or_badly_named(out_dir: Path) -> None:
    table = _tables("new")["reasons"]
    with output.OutputStage(out_dir) as stage:
        stage.add("reasons", table)
        with pytest.raises(ValueError, match="added twice"):
            stage.add("reasons", table)
        with pytest.raises(ValueError, match="invalid output table name"):
            stage.add("../x", table)
        stage.publish({})
    assert sorted(p.name for p in out_dir.iterdir()) == ["reasons.parquet", "summary.json"]


def test_money_carried_as_decimal64_is_written_and_read_as_decimal128(out_dir: Path) -> None:
    cents = pa.py_buffer(np.array([1050, -1, 0], dtype=np.int64))
    money = pa.Array.from_buffers(pa.decimal64(18, 2), 3, [None, cents])
    table = pa.table({"claim_id": ["a", "b", "c"], "fund_pays": money})
    assert output.plain_schema(table.schema).field("fund_pays").type == pa.decimal128(18, 2)
    write_outputs(out_dir, {"approved": table}, {})
    back = _read_back(out_dir, "approved")
    assert back.schema.field("fund_pays").type == pa.decimal128(18, 2)
    assert back.column("fund_pays").to_pylist() == [Decimal("10.50"), Decimal("-0.01"), Decimal(0)]
    assert back.equals(output.plain_table(table))
