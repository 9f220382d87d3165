"""Nightly runs with a history store: duplicates across batches, idempotent re-runs,
and a run killed at any moment leaves history and outputs consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from claims_engine.cli import run
from claims_engine.history import HistoryStore
from tests.e2e.test_cli import REFERENCE, write_batch


def adjudicate(batch: Path, out: Path, history: Path, *extra: str) -> int:
    return run(
        [
            "adjudicate",
            str(batch),
            "--out",
            str(out),
            "--reference",
            str(REFERENCE),
            "--history",
            str(history),
            "--quiet",
            *extra,
        ]
    )


def decisions(out: Path) -> dict[str, tuple[str, list[str]]]:
    rows = {}
    for name in ("approved", "rejected", "flagged"):
        for r in pq.read_table(out / f"{name}.parquet").to_pylist():
            rows[r["claim_id"]] = (r["decision"], r["reason_codes"])
    return rows


def counts(history: Path) -> dict[str, tuple[int, int]]:
    info = HistoryStore(history).info()
    return {b.batch_id: (b.claims, b.lines) for b in info.batches}


def test_duplicates_across_batches_and_idempotent_reruns(tmp_path: Path) -> None:
    history = tmp_path / "history"
    night1 = write_batch(tmp_path / "n1", [{"claim_id": "N1-1"}], [{"claim_id": "N1-1"}])
    # the same person, facility and admission, resubmitted under a new claim id the next night
    night2 = write_batch(
        tmp_path / "n2", [{"claim_id": "A-0", "card_no": "HT3010123456789"}], [{"claim_id": "A-0"}]
    )
    assert adjudicate(night1, tmp_path / "o1", history, "--batch-id", "night1") == 0
    assert decisions(tmp_path / "o1")["N1-1"] == ("approved", [])
    assert adjudicate(night2, tmp_path / "o2", history, "--batch-id", "night2") == 0
    decided = decisions(tmp_path / "o2")["A-0"]
    assert decided[0] == "rejected"
    assert "DUPLICATE_CLAIM" in decided[1] and "DUPLICATE_LINE" in decided[1]
    before = counts(history)
    assert before == {"night1": (1, 1), "night2": (1, 1)}
    # a re-run of night 2: same verdicts, no double counting, night 1 still earlier
    assert adjudicate(night2, tmp_path / "o2b", history, "--batch-id", "night2") == 0
    assert decisions(tmp_path / "o2b") == decisions(tmp_path / "o2")
    assert counts(history) == before


def test_a_resubmission_replaces_the_history_claim(tmp_path: Path) -> None:
    history = tmp_path / "history"
    batch = write_batch(tmp_path / "b", [{"claim_id": "R1"}], [{"claim_id": "R1"}])
    assert adjudicate(batch, tmp_path / "o1", history, "--batch-id", "first") == 0
    # the hospital resubmits R1 (same claim_id and facility) in another batch: not a duplicate
    assert adjudicate(batch, tmp_path / "o2", history, "--batch-id", "second") == 0
    assert decisions(tmp_path / "o2")["R1"] == ("approved", [])
    assert counts(history) == {"second": (1, 1)}


def test_a_run_killed_at_any_moment_leaves_everything_consistent(tmp_path: Path) -> None:
    from claims_engine.fixtures.generator import generate_batch
    from claims_engine.fixtures.generator import write_batch as write_gen
    from claims_engine.io.reference import load_reference

    history, out = tmp_path / "history", tmp_path / "out"
    ref = load_reference(REFERENCE).tables
    first, second = tmp_path / "b1", tmp_path / "b2"
    write_gen(generate_batch(3000, 1, ref), first)
    write_gen(generate_batch(3000, 2, ref), second)
    assert adjudicate(first, out, history, "--batch-id", "one") == 0
    before_outputs = {p.name: p.read_bytes() for p in out.iterdir()}
    before_history = counts(history)
    cmd = [
        sys.executable,
        "-m",
        "claims_engine.cli",
        "adjudicate",
        str(second),
        "--out",
        str(out),
        "--reference",
        str(REFERENCE),
        "--history",
        str(history),
        "--batch-id",
        "two",
        "-q",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for delay in (0.5, 1.5, 3.0):  # kill at different stages of the run
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        now = counts(history)
        assert now in (before_history, {**before_history, "two": now.get("two", (0, 0))})
        outputs = {p.name: p.read_bytes() for p in out.iterdir()}
        summary = json.loads(outputs["summary.json"])
        assert summary["batch_id"] in ("one", "two")
        if summary["batch_id"] == "one":
            assert outputs == before_outputs  # untouched, byte for byte
    # a re-run after the kills lands cleanly and counts each batch once
    assert adjudicate(second, out, history, "--batch-id", "two") == 0
    final = counts(history)
    assert set(final) == {"one", "two"} and final["one"] == before_history["one"]
