"""Benchmark data: generated once per size and cached under .bench-data/ (git-ignored)."""

from __future__ import annotations

import os
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
