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


# --- hypothesis profiles (property tests, tests/test_properties.py) ----------------
# "ci" (the default when the CI variable is set) runs enough examples to find edge
# cases in about a minute; "dev" runs fewer so `make test` stays fast.  Choose one
# explicitly with `pytest --hypothesis-profile=ci`.
import os  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=15,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
