"""Row rules evaluated per claim range (parts.py) give exactly the whole-batch result."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from claims_engine import adjudicate, engine
from claims_engine.fixtures.generator import generate_batch, write_batch
from claims_engine.io.batch import read_batch
from claims_engine.parts import split
from claims_engine.plan.plan import Plan


def _check_cover(row: np.ndarray, n_claims: int, max_lines: int) -> None:
    got = split(row, n_claims, max_lines)
    assert got is not None
    assert got[0].claims[0] == 0 and got[0].lines[0] == 0
    assert got[-1].claims[1] == n_claims and got[-1].lines[1] == len(row)
    for a, b in itertools.pairwise(got):
        assert a.claims[1] == b.claims[0] and a.lines[1] == b.lines[0]
    for p in got:
        own = row[p.lines[0] : p.lines[1]]
        own = own[own >= 0]
        assert np.all((own >= p.claims[0]) & (own < p.claims[1]))  # a claim's lines stay in
        assert p.claims[0] < p.claims[1]


def test_split_keeps_each_claims_lines_together() -> None:
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 40, 300)
    row = np.repeat(np.arange(300), sizes)
    row[rng.integers(0, len(row), 20)] = -1  # orphan lines sit anywhere
    for max_lines in (1, 7, 100, 1000):
        _check_cover(row, 300 + 5, max_lines)  # 5 claims without lines at the end


def test_split_refuses_lines_out_of_claim_order() -> None:
    assert split(np.array([0, 0, 1, 0, 2, 2]), 3, 2) is None
    assert split(np.array([0, 1, 2]), 3, 10) is None  # small enough to run whole


@pytest.fixture(scope="module")
def parquet_batch(tmp_path_factory: pytest.TempPathFactory, reference: dict[str, pa.Table]) -> Path:
    folder = tmp_path_factory.mktemp("parts")
    write_batch(generate_batch(600, seed=11, reference=reference, defect_rate=0.3), folder)
    return folder


def test_parts_give_the_whole_batch_result(
    parquet_batch: Path, plan: Plan, reference: dict[str, pa.Table]
) -> None:
    batch = read_batch(parquet_batch, engine.needed_fields(plan))
    assert batch.codes["line"]  # the reader kept dictionary codes: the parts slice them
    whole = adjudicate.build(engine.run(plan, batch, reference), plan, "t")
    parted_outcome = engine.run(plan, batch, reference, part_lines=97)
    parted = adjudicate.build(parted_outcome, plan, "t")
    for name, table in whole.tables().items():
        assert parted.tables()[name].equals(table), name
    assert whole.summary["codes"] == parted.summary["codes"]
    assert sum(whole.summary["codes"].values()) > 50  # the defects did fire


def test_messages_from_hit_rows_equal_whole_columns(
    parquet_batch: Path, plan: Plan, reference: dict[str, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Message values computed on the hit rows only are those of the whole columns."""
    from claims_engine.kernels import evaluate

    batch = read_batch(parquet_batch, engine.needed_fields(plan))
    monkeypatch.setattr(evaluate, "SUBSET_SHARE", 1)  # hit rows alone whenever fewer
    subset = adjudicate.build(engine.run(plan, batch, reference), plan, "t").reasons
    monkeypatch.setattr(evaluate, "SUBSET_SHARE", 10**12)  # always the whole column
    whole = adjudicate.build(engine.run(plan, batch, reference), plan, "t").reasons
    assert subset.num_rows > 100
    assert subset.equals(whole)


def test_card_holder_codes_from_card_no_words(
    parquet_batch: Path, plan: Plan, reference: dict[str, pa.Table]
) -> None:
    """right(card_no, 10) encoded from card_no's distinct words: the same values."""
    from claims_engine.kernels import evaluate
    from claims_engine.lang import ir

    batch = read_batch(parquet_batch, engine.needed_fields(plan))
    ctx = evaluate.Context(plan.derived, plan.lookups, reference, plan.cacheable)
    holder = ir.Derived("card_holder", plan.derived["card_holder"][1].type)
    coded = evaluate.Evaluator("claim", batch.claims, ctx)
    coded.codes = batch.codes["claim"]
    plain = evaluate.Evaluator("claim", batch.claims, ctx)

    def values(ev: evaluate.Evaluator) -> list[str | None]:
        indices, words = ev.dictionary(holder)
        table = words.to_pylist()
        return [None if i < 0 else table[i] for i in indices]

    got = values(coded)
    assert got == values(plain)
    assert got == [None if c is None else c[-10:] for c in batch.claims["card_no"].to_pylist()]
    assert coded._sliced_codes(holder) is not None  # from the words: the path under test
    assert plain._sliced_codes(holder) is None  # no codes: every claim encoded
