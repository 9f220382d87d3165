"""Benchmark data: generated once per size and cached under .bench-data/ (git-ignored)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claims_engine.fixtures.generator import generate_batch, write_batch
from claims_engine.io.reference import load_reference

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "fixtures" / "reference"
CACHE = ROOT / ".bench-data"


def _generator_version() -> str:
    """A digest of the generator's source: a changed generator means a new batch."""
    import hashlib

    import claims_engine.fixtures.generator as generator

    return hashlib.sha256(Path(generator.__file__).read_bytes()).hexdigest()[:8]


def batch_folder(n_claims: int, seed: int = 2026, defect_rate: float = 0.02) -> Path:
    folder = CACHE / f"claims-{n_claims}-seed-{seed}-defects-{defect_rate}-{_generator_version()}"
    if not (folder / "lines.parquet").exists():
        folder.mkdir(parents=True, exist_ok=True)
        tables = load_reference(REFERENCE).tables
        write_batch(generate_batch(n_claims, seed, tables, defect_rate=defect_rate), folder)
    return folder


@pytest.fixture(scope="session")
def big_claims() -> int:
    return int(os.environ.get("BENCH_CLAIMS", "1000000"))


def adjudicate_command(batch: Path, out: Path, *extra: str) -> list[str]:
    """`claims-engine adjudicate` of a batch against the bundled reference data."""
    return [
        sys.executable, "-m", "claims_engine.cli", "adjudicate", str(batch),
        "--out", str(out), "--reference", str(REFERENCE), "--quiet", *extra,
    ]  # fmt: skip


def run_child(args: list[str], log: Path) -> tuple[float, float]:
    """Run a child process; returns (wall seconds, peak RSS in MiB) of that child.

    The peak is the child's own VmHWM, polled: ``ru_maxrss`` of a child counts the
    parent's resident memory at the fork (this process may hold a big batch).
    stdout and stderr go to ``log`` with suffixes .out and .err.
    """
    with log.with_suffix(".out").open("wb") as out, log.with_suffix(".err").open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, cwd=ROOT)
        peak_kib = 0
        while proc.poll() is None:
            try:
                status_text = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                break
            for line in status_text.splitlines():
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
            time.sleep(0.02)
        proc.wait()
        wall = time.perf_counter() - t0
    assert proc.returncode == 0, log.with_suffix(".err").read_text()
    return wall, peak_kib / 1024
