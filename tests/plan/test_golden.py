"""Golden files for the compiler: what ``Plan.describe()`` prints for small packs.

Each ``golden/<case>.yaml`` holds a whole pack in one file (``pack:`` is the
content of pack.yaml, ``rules:`` the list of rule-file items); the helper writes
it out as a pack folder and compiles it.  ``golden/<case>.plan`` is the expected
text.  ``golden/vn_bhyt.plan`` is the bundled pack, so any change in what the
pack compiles to shows up in review.

Regenerate after an intended change with::

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/plan/test_golden.py
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from claims_engine.plan.compiler import compile_pack

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.yaml"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def materialize(case: Path, folder: Path) -> Path:
    """Write ``case`` (keys pack: and rules:) as a pack folder: pack.yaml + rules.yaml."""
    doc: dict[str, Any] = yaml.safe_load(case.read_text(encoding="utf-8"))
    assert set(doc) == {"pack", "rules"}, f"{case.name}: expected keys pack and rules"
    folder.mkdir(parents=True, exist_ok=True)
    dump = {"sort_keys": False, "allow_unicode": True, "width": 1000}
    (folder / "pack.yaml").write_text(yaml.safe_dump(doc["pack"], **dump), encoding="utf-8")
    (folder / "rules.yaml").write_text(yaml.safe_dump(doc["rules"], **dump), encoding="utf-8")
    return folder


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / f"{name}.plan"
    if UPDATE:
        path.write_text(actual, encoding="utf-8")
        return
    if not path.is_file():
        pytest.fail(f"{path} is missing; create it with UPDATE_GOLDEN=1")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                f"{name}.plan (expected)",
                f"{name}.plan (compiled now)",
            )
        )
        pytest.fail(f"the compiled plan changed; if intended, rerun with UPDATE_GOLDEN=1\n{diff}")


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 6


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case: str, tmp_path: Path) -> None:
    plan = compile_pack(materialize(GOLDEN / f"{case}.yaml", tmp_path / case))
    check_golden(case, plan.describe())


def test_golden_bundled_pack() -> None:
    check_golden("vn_bhyt", compile_pack("vn_bhyt").describe())


def test_describe_is_deterministic(tmp_path: Path) -> None:
    folder = materialize(GOLDEN / "shared_subexpressions.yaml", tmp_path / "a")
    assert compile_pack(folder).describe() == compile_pack(folder).describe()


def test_every_rule_kind_is_covered() -> None:
    """The golden cases between them exercise each kind of thing a pack can hold."""
    text = "\n".join((GOLDEN / f"{c}.plan").read_text(encoding="utf-8") for c in CASES)
    for needle in (
        "[claim reject",
        "[claim flag",
        "[line reject",
        "[line adjust",
        "[line flag",
        "  set ",
        " prefer ",
        " required",
        "derive ",
        "case when",
        ", after-eligible]",
        ", after-fund]",
        "count(lines",
        "sum(lines",
        "min(lines",
        "max(lines",
        "any(lines",
        "all(lines",
    ):
        assert needle in text, needle
    shared = [line for line in text.splitlines() if line.startswith("shared subexpressions: ")]
    assert any(int(line.rsplit(" ", 1)[1]) > 0 for line in shared)
