"""The history store in one process: what a commit writes and a read returns."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from history_synth import batch, holders, simple_batch

from claims_engine.errors import ClaimsEngineError, OutputError
from claims_engine.history import store as store_module
from claims_engine.history.schema import (
    HISTORY_CLAIMS_SCHEMA,
    HISTORY_LINES_SCHEMA,
    bucket_of,
    month_of,
)
from claims_engine.history.store import LOCK_NAME, HistoryStore

START = datetime(2025, 1, 1, 8, 0, 0)
PEOPLE = holders(12)


def _ids(table: pa.Table) -> set[str]:
    return set(table.column("claim_id").to_pylist())


def _line_keys(table: pa.Table) -> set[tuple[str, int]]:
    return set(
        zip(table.column("claim_id").to_pylist(), table.column("line_no").to_pylist(), strict=True)
    )


def _per_batch(table: pa.Table) -> dict[str, int]:
    counts = table.group_by("batch_id").aggregate([("batch_id", "count")])
    return dict(
        zip(
            counts.column("batch_id").to_pylist(),
            counts.column("batch_id_count").to_pylist(),
            strict=True,
        )
    )


def _everything(store: HistoryStore) -> tuple[pa.Table, pa.Table]:
    rows = store.read(pa.array(PEOPLE))
    claims = rows.claims.sort_by([("batch_id", "ascending"), ("claim_id", "ascending")])
    lines = rows.lines.sort_by(
        [
            ("batch_id", "ascending"),
            ("claim_id", "ascending"),
            ("kind", "ascending"),
            ("line_no", "ascending"),
        ]
    )
    return claims, lines


def _referenced_and_on_disk(path: Path) -> tuple[set[str], set[str]]:
    from deltalake import DeltaTable

    referenced = {os.path.relpath(u, path) for u in DeltaTable(path).file_uris()}
    on_disk = set()
    for directory, _, names in os.walk(path):
        for name in names:
            if name.endswith(".parquet") and "_delta_log" not in directory:
                on_disk.add(os.path.relpath(os.path.join(directory, name), path))
    return referenced, on_disk


# --------------------------------------------------------------------------- read


def test_commit_then_read_returns_the_asked_holders_and_dates_in_contract_types(
    tmp_path: Path,
) -> None:
    store = HistoryStore(tmp_path / "history")
    claims, lines = simple_batch("A", 48, PEOPLE, START)  # every 3 days: Jan .. May
    since = date(2025, 2, 15)
    # a claim at the first second of `since`, and one the second before it
    edge, edge_lines = batch(
        ["EDGE-IN", "EDGE-OUT"],
        [PEOPLE[0], PEOPLE[0]],
        [datetime(2025, 2, 15), datetime(2025, 2, 14, 23, 59, 59)],
    )
    claims = pa.concat_tables([claims, edge])
    lines = pa.concat_tables([lines, edge_lines])
    info = store.commit("A", claims, lines)
    assert (info.claims, info.lines, info.version) == (50, 100, 1)

    asked = PEOPLE[:4]
    rows = store.read(pa.array(asked), since=since)

    holder = pc.utf8_slice_codeunits(claims.column("card_no"), -10)
    wanted = claims.filter(
        pc.and_(
            pc.is_in(holder, pa.array(asked)),
            pc.greater_equal(
                claims.column("admitted_at"), pa.scalar(datetime(2025, 2, 15), pa.timestamp("s"))
            ),
        )
    )
    assert _ids(rows.claims) == _ids(wanted)
    assert "EDGE-IN" in _ids(rows.claims) and "EDGE-OUT" not in _ids(rows.claims)
    wanted_lines = lines.filter(pc.is_in(lines.column("claim_id"), wanted.column("claim_id")))
    assert _line_keys(rows.lines) == _line_keys(wanted_lines)
    assert rows.version == 1

    # contract types, exactly (timestamps in seconds, decimals, lists)
    assert rows.claims.schema == HISTORY_CLAIMS_SCHEMA
    assert rows.lines.schema == HISTORY_LINES_SCHEMA
    got = rows.claims.sort_by("claim_id")
    expected = wanted.sort_by("claim_id")
    for name in claims.column_names:
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name
    assert set(got.column("batch_id").to_pylist()) == {"A"}
    assert got.column("card_holder").to_pylist() == [
        c[-10:] for c in expected.column("card_no").to_pylist()
    ]
    assert got.column("bucket").to_pylist() == bucket_of(got.column("card_holder")).to_pylist()
    assert got.column("month").to_pylist() == month_of(got.column("admitted_at")).to_pylist()
    assert got.column("total_hospital")[0].as_py() == Decimal("123456789012.34")

    # lines carry their claim's holder, facility and admission; date of service
    by_claim = {r["claim_id"]: r for r in got.to_pylist()}
    for line in rows.lines.to_pylist():
        claim = by_claim[line["claim_id"]]
        assert line["card_holder"] == claim["card_holder"]
        assert line["facility_id"] == claim["facility_id"]
        assert line["admitted_at"] == claim["admitted_at"]
        assert (line["bucket"], line["month"]) == (claim["bucket"], claim["month"])
        day = (line["ordered_at"] or line["admitted_at"]).date()
        assert line["date_of_service"] == day
        assert line["quantity"] == Decimal("2.500") and line["unit_price"] == Decimal("8860.125")
    source = {(r["claim_id"], r["line_no"]): r for r in wanted_lines.to_pylist()}
    for line in rows.lines.to_pylist():
        original = source[(line["claim_id"], line["line_no"])]
        assert {k: line[k] for k in original} == original


def test_read_touches_only_the_holders_buckets_and_months_from_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = HistoryStore(tmp_path / "history")
    claims, lines = simple_batch("A", 60, PEOPLE, START)
    store.commit("A", claims, lines)
    seen: list[str] = []
    real = HistoryStore._dataset

    def spy(self: HistoryStore, *args: Any, **kwargs: Any) -> Any:
        dataset = real(self, *args, **kwargs)
        seen.extend(f.path for f in dataset.get_fragments())
        return dataset

    monkeypatch.setattr(HistoryStore, "_dataset", spy)
    person = PEOPLE[3]
    bucket = bucket_of(pa.array([person]))[0].as_py()
    rows = store.read(pa.array([person]), since=date(2025, 4, 10))
    assert seen, "no file read"
    for path in seen:
        assert f"/bucket={bucket}/" in path
        month = path.split("month=")[1][:7]
        assert month >= "2025-04"
    assert set(rows.claims.column("card_holder").to_pylist()) == {person}
    assert all(a >= datetime(2025, 4, 10) for a in rows.claims.column("admitted_at").to_pylist())
    assert rows.claims.num_rows == 2  # admitted 2025-04-10 .. 2025-06-27 every 36 days


def test_read_of_no_history_is_empty_with_contract_types(tmp_path: Path) -> None:
    for folder in (tmp_path / "missing", tmp_path):
        rows = HistoryStore(folder).read(pa.array(PEOPLE))
        assert rows.claims.num_rows == rows.lines.num_rows == 0
        assert rows.claims.schema == HISTORY_CLAIMS_SCHEMA
        assert rows.lines.schema == HISTORY_LINES_SCHEMA
        assert rows.version == -1
    store = HistoryStore(tmp_path / "h")
    store.commit("A", *simple_batch("A", 3, PEOPLE, START))
    assert store.read(pa.array([], pa.string())).claims.num_rows == 0


def test_exclude_batch_hides_that_batch(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    store.commit("A", *simple_batch("A", 10, PEOPLE, START))
    store.commit("B", *simple_batch("B", 10, PEOPLE, START))
    everything = store.read(pa.array(PEOPLE))
    assert _per_batch(everything.claims) == {"A": 10, "B": 10}
    assert _per_batch(everything.lines) == {"A": 20, "B": 20}
    rows = store.read(pa.array(PEOPLE), exclude_batch="A")
    assert _per_batch(rows.claims) == {"B": 10}
    assert _per_batch(rows.lines) == {"B": 20}


def test_exclude_claims_hides_resubmitted_claims_and_their_lines(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    store.commit("A", *simple_batch("A", 10, PEOPLE, START))
    keys = pa.table({"claim_id": ["A1", "A2", "A3"], "facility_id": ["01101", "01101", "99999"]})
    rows = store.read(pa.array(PEOPLE), exclude_claims=keys)
    assert _ids(rows.claims) == {f"A{i}" for i in range(10)} - {"A1", "A2"}
    assert {c for c, _ in _line_keys(rows.lines)} == _ids(rows.claims)


# --------------------------------------------------------------------------- commit


def test_recommitting_a_batch_id_replaces_its_rows(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    store.commit("B", *simple_batch("B", 7, PEOPLE, START))
    claims, lines = simple_batch("A", 30, PEOPLE, START)
    first = store.commit("A", claims, lines)
    before = _everything(store)
    second = store.commit("A", claims, lines)
    after = _everything(store)
    assert (second.rerun_claims, second.rerun_lines) == (30, 60)
    assert (first.rerun_claims, first.rerun_lines) == (0, 0)
    assert _per_batch(after[0]) == {"A": 30, "B": 7}
    assert _per_batch(after[1]) == {"A": 60, "B": 14}
    assert after[0].drop_columns(["month"]).equals(before[0].drop_columns(["month"]))
    assert after[1].equals(before[1])
    # a re-run with other content: only the new rows remain
    fewer_claims, fewer_lines = simple_batch("A", 5, PEOPLE, START + timedelta(days=400))
    store.commit("A", fewer_claims, fewer_lines)
    claims_now, lines_now = _everything(store)
    assert _per_batch(claims_now) == {"A": 5, "B": 7}
    assert _per_batch(lines_now) == {"A": 10, "B": 14}
    again = claims_now.filter(pc.equal(claims_now.column("batch_id"), "A"))
    assert min(again.column("admitted_at").to_pylist()) >= START + timedelta(days=400)
    info = store.info()
    assert [(b.batch_id, b.claims, b.lines) for b in info.batches] == [("B", 7, 14), ("A", 5, 10)]


def test_a_resubmitted_claim_replaces_the_history_claim_and_its_lines(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    old_claims, old_lines = batch(
        ["X1", "X2", "X3"],
        [PEOPLE[0]] * 3,
        [START, START + timedelta(days=40), START + timedelta(days=80)],
        lines_per_claim=3,
    )
    store.commit("OLD", old_claims, old_lines)
    # X1 resubmitted by the same facility with another card and date (a corrected
    # claim); X2 from another facility is a different claim and stays.
    new_claims, new_lines = batch(
        ["X1", "X2"],
        [PEOPLE[5], PEOPLE[5]],
        [START + timedelta(days=200)] * 2,
        facility=["01101", "79001"],
        lines_per_claim=2,
    )
    info = store.commit("NEW", new_claims, new_lines)
    assert (info.resubmitted_claims, info.resubmitted_lines) == (1, 3)
    claims, lines = _everything(store)
    assert sorted(
        zip(
            claims.column("batch_id").to_pylist(),
            claims.column("claim_id").to_pylist(),
            claims.column("facility_id").to_pylist(),
            strict=True,
        )
    ) == [
        ("NEW", "X1", "01101"),
        ("NEW", "X2", "79001"),
        ("OLD", "X2", "01101"),
        ("OLD", "X3", "01101"),
    ]
    x1 = lines.filter(pc.equal(lines.column("claim_id"), "X1"))
    assert x1.num_rows == 2 and set(x1.column("batch_id").to_pylist()) == {"NEW"}
    assert set(x1.column("card_holder").to_pylist()) == {PEOPLE[5]}
    assert _per_batch(lines) == {"OLD": 6, "NEW": 4}
    assert store.read(pa.array([PEOPLE[0]])).claims.column("claim_id").to_pylist().count("X1") == 0


def test_orphan_lines_are_not_stored_and_bad_input_is_refused(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    claims, lines = simple_batch("A", 3, PEOPLE, START)
    orphan = lines.slice(0, 1).set_column(0, lines.schema.field(0), pa.array(["NOPE"]))
    info = store.commit("A", claims, pa.concat_tables([lines, orphan]))
    assert (info.lines, info.orphan_lines) == (6, 1)
    with pytest.raises(ValueError, match="missing column decision"):
        store.commit("A", claims.drop_columns(["decision"]), lines)
    with pytest.raises(ValueError, match="not unique"):
        store.commit("A", pa.concat_tables([claims, claims]), lines)
    with pytest.raises(ValueError, match="batch_id"):
        store.commit("", claims, lines)


def test_a_folder_that_is_not_a_history_store_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"meow")
    store = HistoryStore(folder)
    for call in (
        lambda: store.read(pa.array(PEOPLE)),
        store.info,
        store.vacuum,
        lambda: store.commit("A", *simple_batch("A", 2, PEOPLE, START)),
    ):
        with pytest.raises(ClaimsEngineError) as caught:
            call()
        assert caught.value.exit_code == 2
        assert str(folder) in caught.value.message and "not a history store" in caught.value.message
    assert sorted(os.listdir(folder)) == ["cat.jpg"]  # nothing written into it
    with pytest.raises(ClaimsEngineError, match="does not exist"):
        HistoryStore(tmp_path / "nothing").info()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ClaimsEngineError, match="not a folder"):
        HistoryStore(a_file).read(pa.array(PEOPLE))


def test_a_delta_table_of_something_else_is_refused(tmp_path: Path) -> None:
    from deltalake import write_deltalake

    write_deltalake(tmp_path / "other", pa.table({"x": [1, 2]}))
    with pytest.raises(ClaimsEngineError, match="not a claims-engine history store") as caught:
        HistoryStore(tmp_path / "other").read(pa.array(PEOPLE))
    assert caught.value.exit_code == 2


def test_bucket_hash_is_stable() -> None:
    def fnv_bucket(text: str) -> int:  # the documented function, byte by byte
        h = 0xCBF29CE484222325
        for byte in text.encode("utf-8"):
            h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        return ((h ^ (h >> 32)) & 0xFFFFFFFF) % 64

    values = ["0123456789", "7901234567", "", "ÂÊÔ", "12345678901234567890", *PEOPLE]
    got = bucket_of(pa.array([*values, None])).to_pylist()
    assert got == [fnv_bucket(v) for v in values] + [None]
    assert got[0] == fnv_bucket("0123456789") == 15  # a known value, the same in every run
    assert bucket_of(pa.chunked_array([["0123456789"], ["7901234567"]])).to_pylist() == got[:2]
    sliced = pa.array(["x", "0123456789", "7901234567"]).slice(1)
    assert bucket_of(sliced).to_pylist() == got[:2]


# ------------------------------------------------------------------- concurrency, in process


def test_expected_version_refuses_a_commit_after_another_runs_change(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    store.commit("A", *simple_batch("A", 5, PEOPLE, START))
    read = store.read(pa.array(PEOPLE), exclude_batch="C")
    store.vacuum(retain_hours=0)  # maintenance in between is not a change of history
    store.commit("C", *simple_batch("C", 5, PEOPLE, START), expected_version=read.version)
    with pytest.raises(OutputError) as caught:
        store.commit("B", *simple_batch("B", 5, PEOPLE, START), expected_version=read.version)
    assert caught.value.exit_code == 3
    assert caught.value.message.startswith(
        f"history at {store.path} was changed by another run; nothing was written"
    )
    assert "batch C" in caught.value.message
    assert _per_batch(_everything(store)[0]) == {"A": 5, "C": 5}
    # a first run against a store that did not exist yet
    fresh = HistoryStore(tmp_path / "fresh")
    version = fresh.read(pa.array(PEOPLE)).version
    fresh.commit("A", *simple_batch("A", 2, PEOPLE, START), expected_version=version)
    with pytest.raises(OutputError, match="changed by another run"):
        fresh.commit("B", *simple_batch("B", 2, PEOPLE, START), expected_version=version)


def test_a_commit_overtaken_by_a_writer_without_the_lock_fails_and_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = HistoryStore(tmp_path / "h")
    store.commit("A", *simple_batch("A", 6, PEOPLE, START))
    intruder = HistoryStore(tmp_path / "h")

    @contextlib.contextmanager
    def no_lock() -> Iterator[None]:
        yield

    intruder._writer_lock = no_lock  # type: ignore[method-assign]
    real = store_module._commit_actions
    calls = []

    def overtaken(*args: Any, **kwargs: Any) -> None:
        if not calls:
            calls.append(1)
            monkeypatch.setattr(store_module, "_commit_actions", real)
            intruder.commit("B", *simple_batch("B", 4, PEOPLE, START))
        real(*args, **kwargs)

    monkeypatch.setattr(store_module, "_commit_actions", overtaken)
    with pytest.raises(OutputError) as caught:
        store.commit("A", *simple_batch("A", 3, PEOPLE, START + timedelta(days=9)))
    assert caught.value.exit_code == 3
    assert caught.value.message == (
        f"history at {store.path} was changed by another run; nothing was written"
    )
    claims, lines = _everything(store)
    assert _per_batch(claims) == {"A": 6, "B": 4}  # A as before, B landed
    assert _per_batch(lines) == {"A": 12, "B": 8}
    referenced, on_disk = _referenced_and_on_disk(store.path)
    assert on_disk == referenced  # the failed commit's files were deleted


def test_lock_timeout_is_an_output_error(tmp_path: Path) -> None:
    import fcntl

    store = HistoryStore(tmp_path / "h", lock_timeout=0.2)
    store.commit("A", *simple_batch("A", 2, PEOPLE, START))
    fd = os.open(store.path / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(OutputError, match="another run is writing history") as caught:
            store.commit("B", *simple_batch("B", 2, PEOPLE, START))
        assert caught.value.exit_code == 3
        assert store.read(pa.array(PEOPLE)).claims.num_rows == 2  # reads are never blocked
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- info, vacuum


def test_info_and_vacuum_report_sensible_numbers(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    # three batches over the same people and months: several files per partition
    for name in ("A", "B", "C"):
        store.commit(name, *simple_batch(name, 24, PEOPLE[:4], START, step_days=5))
    store.commit("A", *simple_batch("A", 24, PEOPLE[:4], START, step_days=5))  # a re-run
    info = store.info()
    assert info.version == 4
    assert [(b.batch_id, b.claims, b.lines) for b in info.batches] == [
        ("B", 24, 48),
        ("C", 24, 48),
        ("A", 24, 48),
    ]
    assert all(b.committed_at is not None for b in info.batches)
    assert (info.claims, info.lines) == (72, 144)
    assert info.first_admitted == START
    assert info.last_admitted == START + timedelta(days=5 * 23, hours=23 % 5)
    assert 0 < info.data_bytes < info.disk_bytes
    before = _everything(store)

    vac = store.vacuum(retain_hours=0)
    assert vac.files_before == info.files
    assert vac.files_compacted > 0 and vac.files_after < vac.files_before
    assert vac.files_deleted > 0
    assert vac.disk_bytes_after < vac.disk_bytes_before
    referenced, on_disk = _referenced_and_on_disk(store.path)
    assert referenced == on_disk  # nothing unreferenced left
    after = _everything(store)
    assert after[0].equals(before[0]) and after[1].equals(before[1])
    info2 = store.info()  # counts from files that now mix batches
    assert [(b.batch_id, b.claims, b.lines) for b in info2.batches] == [
        (b.batch_id, b.claims, b.lines) for b in info.batches
    ]
    assert [b.committed_at for b in info2.batches] == [b.committed_at for b in info.batches]
    assert info2.files == vac.files_after

    # re-running a batch whose rows now share files with other batches
    rerun = store.commit("B", *simple_batch("B", 10, PEOPLE[:4], START, step_days=5))
    assert (rerun.rerun_claims, rerun.rerun_lines) == (24, 48)
    claims, lines = _everything(store)
    assert _per_batch(claims) == {"A": 24, "B": 10, "C": 24}
    assert _per_batch(lines) == {"A": 48, "B": 20, "C": 48}
    with pytest.raises(ClaimsEngineError, match="retain-hours"):
        store.vacuum(retain_hours=-1)


def test_read_of_some_columns_only(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h")
    store.commit("A", *simple_batch("A", 12, PEOPLE, START))
    full = store.read(pa.array(PEOPLE[:5]), since=date(2025, 1, 10))
    some = store.read(
        pa.array(PEOPLE[:5]),
        since=date(2025, 1, 10),
        claim_columns=["admitted_at", "claim_id", "decision"],
        line_columns=["item_code", "date_of_service"],
        exclude_claims=pa.table({"claim_id": ["A4"], "facility_id": ["01101"]}),
    )
    assert some.claims.schema.names == ["admitted_at", "claim_id", "decision"]
    assert some.claims.schema.field("admitted_at").type == pa.timestamp("s")
    assert some.lines.schema.names == ["item_code", "date_of_service"]
    assert _ids(some.claims) == _ids(full.claims) - {"A4"}
    assert some.lines.num_rows == full.lines.num_rows - 2
    empty = HistoryStore(tmp_path / "none").read(pa.array(PEOPLE), line_columns=["kind"])
    assert empty.lines.schema.names == ["kind"] and empty.lines.num_rows == 0
    with pytest.raises(ValueError, match="claim_columns"):
        store.read(pa.array(PEOPLE), claim_columns=["line_no"])


def test_a_reader_of_an_older_version_survives_commits_and_a_default_vacuum(
    tmp_path: Path,
) -> None:
    from deltalake import DeltaTable

    store = HistoryStore(tmp_path / "h")
    store.commit("A", *simple_batch("A", 8, PEOPLE, START))
    old = DeltaTable(store.path)  # a run that opened version 1 and reads later
    store.commit("A", *simple_batch("A", 3, PEOPLE, START))  # replaces every file of A
    store.vacuum()  # a week's retention: the files of version 1 stay
    rows = old.to_pyarrow_table(columns=["claim_id"], filters=[("row_kind", "=", "claim")])
    assert rows.num_rows == 8
    assert store.read(pa.array(PEOPLE)).claims.num_rows == 3
