"""`history info` and `history vacuum`, run as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from history_synth import holders, simple_batch

from claims_engine.history.store import HistoryStore

PEOPLE = holders(6)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "claims_engine.history.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_info_and_vacuum_commands(tmp_path: Path) -> None:
    path = tmp_path / "history"
    store = HistoryStore(path)
    store.commit("2025-01", *simple_batch("J", 9, PEOPLE, datetime(2025, 1, 3, 7)))
    store.commit("2025-02", *simple_batch("F", 4, PEOPLE, datetime(2025, 2, 3, 7)))
    store.commit("2025-02", *simple_batch("F", 5, PEOPLE, datetime(2025, 2, 3, 7)))  # re-run

    info = _cli("info", str(path))
    assert info.returncode == 0, info.stderr
    text = info.stdout
    assert str(path) in text
    assert "2025-01" in text and "2025-02" in text
    rows = [line for line in text.splitlines() if "2025-0" in line and "│" in line]
    cells = [[c.strip() for c in r.split("│")[1:4]] for r in rows]
    assert cells == [["2025-01", "9", "18"], ["2025-02", "5", "10"]]
    assert "2 batches" in text
    assert "admissions  2025-01-03 07:00:00 .. 2025-02-15 11:00:00" in text
    assert "data files" in text and "on disk" in text
    assert "version     3" in text

    vacuum = _cli("vacuum", str(path), "--retain-hours", "0")
    assert vacuum.returncode == 0, vacuum.stderr
    assert "deleted     " in vacuum.stdout and "unreferenced files older than 0 h" in vacuum.stdout
    deleted = int(vacuum.stdout.split("deleted")[1].split()[0])
    assert deleted > 0  # the files the re-run replaced
    assert [(b.batch_id, b.claims) for b in store.info().batches] == [
        ("2025-01", 9),
        ("2025-02", 5),
    ]


def test_a_folder_that_is_not_a_history_store_exits_2_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "reports"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    result = _cli("vacuum", str(folder))  # `info` and a missing folder: test_history_store
    assert result.returncode == 2, result.stderr
    assert "not a history store" in result.stderr
    assert str(folder) in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert os.listdir(folder) == ["summary.json"]
    bad = _cli("vacuum", str(folder), "--retain-hours", "-1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
