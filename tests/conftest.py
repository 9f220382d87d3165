from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from claims_engine.io.reference import load_reference
from claims_engine.plan.compiler import compile_pack
from claims_engine.plan.plan import Plan

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def reference() -> dict[str, pa.Table]:
    return load_reference(ROOT / "fixtures" / "reference").tables


@pytest.fixture(scope="session")
def plan() -> Plan:
    return compile_pack(ROOT / "rules" / "vn_bhyt")
