"""adjudicate.build: output tables against a plain-Python oracle, in every path.

The oracle builds each output row from the Outcome in input order with Python
values, then sorts with a stable Arrow sort of the string values: what the
contract asks (claims by claim_id, lines by (claim_id, kind, line_no), nulls last,
ties in input order).  build() must give exactly that, whether the input is
sorted already (no take), nearly sorted, shuffled, dictionary-encoded, or has
lines outside the packed sort key (orphans, unknown kinds).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from claims_engine import adjudicate, engine, schema
from claims_engine.engine import Outcome
from claims_engine.fixtures.generator import generate_batch, write_batch
from claims_engine.io.batch import Batch, read_batch
from claims_engine.io.output import write_outputs
from claims_engine.kernels import values as V
from claims_engine.kernels.columns import take_rows
from claims_engine.plan.plan import Plan

N_CLAIMS = 400
SEED = 11
LINE_KEYS = [("claim_id", "ascending"), ("kind", "ascending"), ("line_no", "ascending")]
MONEY = schema.MONEY


# --------------------------------------------------------------------------- oracle


def _cents(values: Any) -> list[Decimal]:
    return [Decimal(int(v)).scaleb(-2) for v in values]


def _codes_per_row(n: int, hits: list[tuple[np.ndarray, str]]) -> list[list[str]]:
    codes: list[set[str]] = [set() for _ in range(n)]
    for rows, code in hits:
        for r in rows:
            codes[int(r)].add(code)
    return [sorted(c) for c in codes]


def _oracle(out: Outcome) -> dict[str, pa.Table]:
    """The output tables, built row by row in Python, sorted stably by Arrow."""
    claims, lines, intake = out.claims, out.lines, out.intake
    nc, nl = claims.num_rows, lines.num_rows
    row = intake.line_claim_row
    line_hits = [(np.flatnonzero(intake.orphan), schema.ORPHAN_LINE)]
    claim_hits = [(np.flatnonzero(intake.malformed), schema.MALFORMED)]
    for h in out.hits:
        if h.level == "claim":
            claim_hits.append((h.rows, h.code))
        else:
            line_hits.append((h.rows, h.code))
            owners = row[h.rows]
            claim_hits.append((owners[owners >= 0], h.code))
    amount = [
        None if v is None else int(v.scaleb(2)) for v in lines.column("amount_hospital").to_pylist()
    ]
    requested = [0] * nc
    for i, a in enumerate(amount):
        if a is not None and row[i] >= 0:
            requested[row[i]] += a
    line_fund = [int(v) for v in out.line_fund]
    claim_fund = [int(v) for v in out.claim_fund]
    line_decision = [
        "rejected" if r else "adjusted" if a else "paid"
        for r, a in zip(out.line_rejected, out.line_adjusted, strict=True)
    ]
    claim_decision = [
        "rejected" if r else "flagged" if f else "approved"
        for r, f in zip(out.claim_rejected, out.claim_flagged, strict=True)
    ]
    plain = {name: pc.cast(claims.column(name), pa.string()) for name in ("claim_id", "card_no")}
    rate = (
        V.to_arrow(out.claim_benefit_rate, nc)
        if out.claim_benefit_rate is not None
        else pa.nulls(nc, MONEY)
    )
    rate = pc.if_else(pa.array(out.claim_rejected), pa.scalar(None, rate.type), rate)
    claim_table = pa.table(
        {
            "claim_id": plain["claim_id"],
            "card_no": plain["card_no"],
            "facility_id": pc.cast(claims.column("facility_id"), pa.string()),
            "decision": pa.array(claim_decision, pa.string()),
            "reason_codes": pa.array(_codes_per_row(nc, claim_hits), pa.list_(pa.string())),
            "requested": pa.array(_cents(requested), MONEY),
            "eligible": pa.array(_cents(out.claim_eligible), MONEY),
            "fund_pays": pa.array(_cents(claim_fund), MONEY),
            "patient_pays": pa.array(
                _cents(r - f for r, f in zip(requested, claim_fund, strict=True)), MONEY
            ),
            "declared_fund_pays": claims.column("fund_pays").cast(MONEY),
            "benefit_rate": rate,
        }
    )
    claim_table = claim_table.take(pc.sort_indices(claim_table, [("claim_id", "ascending")]))
    tables = {
        name: claim_table.filter(pc.equal(claim_table.column("decision"), name))
        for name in schema.DECISIONS
    }
    line_table = pa.table(
        {
            "claim_id": pc.cast(lines.column("claim_id"), pa.string()),
            "kind": pc.cast(lines.column("kind"), pa.string()),
            "line_no": lines.column("line_no"),
            "decision": pa.array(line_decision, pa.string()),
            "reason_codes": pa.array(_codes_per_row(nl, line_hits), pa.list_(pa.string())),
            "eligible": pa.array(_cents(out.line_eligible), MONEY),
            "fund_pays": pa.array(_cents(line_fund), MONEY),
            "patient_pays": pa.array(
                [
                    None if a is None else Decimal(a - f).scaleb(-2)
                    for a, f in zip(amount, line_fund, strict=True)
                ],
                MONEY,
            ),
        }
    )
    tables["lines"] = line_table.take(pc.sort_indices(line_table, LINE_KEYS))
    return tables


def _assert_matches_oracle(result: adjudicate.Result, out: Outcome) -> None:
    expected = _oracle(out)
    for name, table in expected.items():
        got = getattr(result, name)
        assert got.schema.equals(table.schema), (name, got.schema, table.schema)
        assert got.equals(table), name
    reasons = result.reasons
    assert reasons.schema.equals(schema.REASONS_SCHEMA)
    keys = [*LINE_KEYS, ("rule_id", "ascending")]
    assert pc.sort_indices(reasons, keys).to_pylist() == list(range(reasons.num_rows))
    assert reasons.num_rows == sum(result.summary["codes"].values())


# --------------------------------------------------------------------------- batches


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory, reference: dict[str, pa.Table], plan: Plan
) -> Batch:
    """A generated batch with many defects (orphans, malformed claims, out-of-order
    and repeated line numbers), read through the batch reader."""
    folder = tmp_path_factory.mktemp("adjudicate")
    write_batch(generate_batch(N_CLAIMS, SEED, reference, defect_rate=0.5), folder)
    return read_batch(folder, engine.needed_fields(plan))


def _run(batch: Batch, plan: Plan, reference: dict[str, pa.Table]) -> Outcome:
    return engine.run(plan, batch, reference)


def _build(
    out: Outcome, plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> tuple[adjudicate.Result, adjudicate._LineOrder]:
    """build(), and the line order it chose."""
    orders: list[adjudicate._LineOrder] = []
    real = adjudicate._line_order

    def spy(*args: Any) -> adjudicate._LineOrder:
        orders.append(real(*args))
        return orders[-1]

    monkeypatch.setattr(adjudicate, "_line_order", spy)
    result = adjudicate.build(out, plan, "t")
    assert len(orders) == 1
    return result, orders[0]


def _shares_buffers(got: pa.ChunkedArray, given: pa.ChunkedArray) -> bool:
    def addresses(c: pa.ChunkedArray) -> list[int]:
        return [b.address for chunk in c.chunks for b in chunk.buffers() if b is not None]

    return addresses(got) == addresses(given)


def _shuffled(batch: Batch, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    claims = rng.permutation(batch.claims.num_rows)
    lines = rng.permutation(batch.lines.num_rows)
    return dataclasses.replace(
        batch,
        claims=batch.claims.take(pa.array(claims)),
        lines=batch.lines.take(pa.array(lines)),
        claim_errors=batch.claim_errors.take(pa.array(claims)),
        line_errors=batch.line_errors.take(pa.array(lines)),
        codes={},  # dictionary codes travel beside the rows: rebuilt by the engine
    )


def _without_orphans(batch: Batch) -> Batch:
    known = pc.is_in(batch.lines.column("claim_id"), value_set=batch.claims.column("claim_id"))
    return dataclasses.replace(
        batch,
        lines=batch.lines.filter(known),
        line_errors=batch.line_errors.filter(known),
        codes={},
    )


def _sorted_lines(batch: Batch) -> Batch:
    order = pc.sort_indices(batch.lines, LINE_KEYS)
    return dataclasses.replace(
        batch, lines=batch.lines.take(order), line_errors=batch.line_errors.take(order), codes={}
    )


def _dictionary_encoded(table: pa.Table, split: int) -> pa.Table:
    """String columns as dictionary<int32, string>, in two chunks with their own
    dictionaries (as a Parquet reader gives them, one per row group)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type):
            column = table.column(i).combine_chunks()
            parts = [column.slice(0, split), column.slice(split)]
            encoded = pa.chunked_array(
                [p.dictionary_encode().cast(pa.dictionary(pa.int32(), pa.string())) for p in parts]
            )
            table = table.set_column(i, field.name, encoded)
    return table


# --------------------------------------------------------------------------- build


def test_generated_batch_matches_oracle(
    generated: Batch, plan: Plan, reference: dict[str, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _run(generated, plan, reference)
    assert out.intake.orphan.any() and out.intake.malformed.any()  # the value sort path
    result, order = _build(out, plan, monkeypatch)
    assert order.take is not None and not order.same_claims
    _assert_matches_oracle(result, out)


def test_shuffled_batch_matches_oracle(
    generated: Batch, plan: Plan, reference: dict[str, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _shuffled(_without_orphans(generated), seed=3)  # the packed sort key, claims unsorted
    out = _run(batch, plan, reference)
    assert not out.intake.orphan.any()
    assert (
        adjudicate._claim_order(pc.cast(batch.claims.column("claim_id"), pa.string())) is not None
    )
    result, order = _build(out, plan, monkeypatch)
    assert order.take is not None and not order.same_claims
    _assert_matches_oracle(result, out)


def test_nearly_sorted_batch_matches_oracle(
    generated: Batch, plan: Plan, reference: dict[str, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generator puts a few lines out of (kind, line_no) order within a claim."""
    out = _run(_without_orphans(generated), plan, reference)
    result, order = _build(out, plan, monkeypatch)
    assert order.take is not None and order.same_claims
    _assert_matches_oracle(result, out)


def test_sorted_input_is_not_reordered(
    generated: Batch, plan: Plan, reference: dict[str, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _sorted_lines(_without_orphans(generated))
    out = _run(batch, plan, reference)
    result, order = _build(out, plan, monkeypatch)
    assert order.take is None
    # the claim_id column is the input's, not a copy
    assert _shares_buffers(result.outputs["lines"].column("claim_id"), out.lines.column("claim_id"))
    _assert_matches_oracle(result, out)


def test_lines_shuffled_within_claims(
    generated: Batch, plan: Plan, reference: dict[str, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines shuffled within their claims only: the claim_id column is kept as it is."""
    batch = _without_orphans(generated)
    lines = batch.lines
    rng = np.random.default_rng(5)
    ids = pc.cast(lines.column("claim_id"), pa.string()).to_pylist()
    order = sorted(range(len(ids)), key=lambda i: (ids[i], rng.random()))
    batch = dataclasses.replace(
        batch,
        lines=lines.take(pa.array(order)),
        line_errors=batch.line_errors.take(pa.array(order)),
        codes={},
    )
    out = _run(batch, plan, reference)
    result, order = _build(out, plan, monkeypatch)
    assert order.take is not None and order.same_claims
    assert _shares_buffers(result.outputs["lines"].column("claim_id"), out.lines.column("claim_id"))
    _assert_matches_oracle(result, out)


def test_unknown_kind_uses_the_value_sort(
    generated: Batch, plan: Plan, reference: dict[str, pa.Table], monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = _without_orphans(generated)
    out = _run(batch, plan, reference)
    kinds = pc.cast(out.lines.column("kind"), pa.string()).to_pylist()
    kinds[::7] = ["aaa" if i % 2 else "zzz" for i in range(len(kinds[::7]))]
    kinds[3] = None
    out = dataclasses.replace(
        out, lines=out.lines.set_column(2, "kind", pa.array(kinds, pa.string()))
    )
    assert out.lines.schema.field(2).name == "kind"
    assert adjudicate._small_codes(out.lines.column("kind"), adjudicate._KINDS) is None
    result, order = _build(out, plan, monkeypatch)
    assert order.take is not None and not order.same_claims
    assert result.lines.column("kind").null_count == 1
    _assert_matches_oracle(result, out)


@pytest.mark.parametrize("orphans", [True, False])
def test_dictionary_columns_give_the_same_outputs(
    generated: Batch,
    plan: Plan,
    reference: dict[str, pa.Table],
    orphans: bool,
    tmp_path: Path,
) -> None:
    batch = generated if orphans else _shuffled(_without_orphans(generated), seed=9)
    out = _run(batch, plan, reference)
    plain = adjudicate.build(out, plan, "t")
    encoded = dataclasses.replace(
        out,
        claims=_dictionary_encoded(out.claims, out.claims.num_rows // 3),
        lines=_dictionary_encoded(out.lines, out.lines.num_rows // 2),
    )
    assert pa.types.is_dictionary(encoded.lines.schema.field("kind").type)
    result = adjudicate.build(encoded, plan, "t")
    for name in ("approved", "rejected", "flagged", "lines", "reasons"):
        assert getattr(result, name).equals(getattr(plain, name)), name
    assert result.summary == plain.summary
    # the files hold plain strings
    write_outputs(tmp_path / "out", result.tables(), result.summary)
    for name in ("approved", "rejected", "flagged", "lines", "reasons"):
        back = pq.read_table(tmp_path / "out" / f"{name}.parquet")
        assert not any(pa.types.is_dictionary(t) for t in back.schema.types), name
        assert back.equals(getattr(plain, name)), name


def test_result_properties_are_contract_typed(
    generated: Batch, plan: Plan, reference: dict[str, pa.Table]
) -> None:
    out = _run(generated, plan, reference)
    result = adjudicate.build(out, plan, "t")
    assert pa.types.is_dictionary(result.tables()["lines"].schema.field("kind").type)
    assert result.tables()["lines"].schema.field("fund_pays").type == schema.MONEY64
    for name in ("approved", "rejected", "flagged", "lines", "reasons"):
        table = getattr(result, name)
        assert not any(pa.types.is_dictionary(t) for t in table.schema.types)
        assert not any(t == schema.MONEY64 for t in table.schema.types)
        assert table.equals(result.tables()[name].cast(table.schema))


def test_tables_are_emitted_as_built_lines_first(
    generated: Batch, plan: Plan, reference: dict[str, pa.Table]
) -> None:
    """The pipeline writes each table as ``build`` emits it (io/output.OutputStage):
    the lines, the biggest, first; every table once, the same as the result's."""
    out = _run(generated, plan, reference)
    emitted: list[tuple[str, pa.Table]] = []
    result = adjudicate.build(out, plan, "t", emit=lambda n, t: emitted.append((n, t)))
    assert emitted[0][0] == "lines"
    assert sorted(name for name, _ in emitted) == sorted(result.tables())
    for name, table in emitted:
        assert table is result.tables()[name]
    assert result.claim_decisions.type == pa.string()
    assert result.line_decisions.type == pa.string()
    assert len(result.claim_decisions) == out.claims.num_rows
    assert len(result.line_decisions) == out.lines.num_rows
    expected = [
        "rejected" if r else "adjusted" if a else "paid"
        for r, a in zip(out.line_rejected, out.line_adjusted, strict=True)
    ]
    assert result.line_decisions.to_pylist() == expected


# --------------------------------------------------------------------------- money


def test_money_extremes_and_negatives() -> None:
    values = np.array(
        [0, 1, -1, 12345, -12345, adjudicate.MONEY_LIMIT, -adjudicate.MONEY_LIMIT, -(2**40)],
        dtype=np.int64,
    )
    got = adjudicate._money(values)
    assert got.type == schema.MONEY64  # the cents themselves, as written (io/output.py)
    assert got.to_pylist() == _cents(values)
    take = np.array([7, 5, 0, 6], dtype=np.int64)
    assert adjudicate._money(values, take).to_pylist() == _cents(values[take])
    valid = np.array([True, False, True, True, True, True, False, True])
    masked = adjudicate._money(values, take, valid)
    assert masked.to_pylist() == [_cents([values[7]])[0], _cents([values[5]])[0], Decimal(0), None]
    assert masked.null_count == 1
    # the same through Arrow's own conversion from Python decimals
    assert got.cast(MONEY).equals(pa.array(_cents(values), MONEY))
    assert adjudicate._money(np.zeros(0, dtype=np.int64)).cast(MONEY).equals(pa.array([], MONEY))


@pytest.mark.parametrize(
    "value", [adjudicate.MONEY_LIMIT + 1, -adjudicate.MONEY_LIMIT - 1, 2**63 - 1]
)
def test_money_beyond_18_digits_is_refused(value: int) -> None:
    with pytest.raises(pa.ArrowInvalid):
        adjudicate._money(np.array([5, value], dtype=np.int64))


def test_money_from_python_integers() -> None:
    """Exact (object) cents, as the engine gives beyond int64 products."""
    values = np.array([10**17, -(10**17), 7], dtype=object)
    assert adjudicate._money(values, np.array([2, 0])).to_pylist() == _cents([7, 10**17])
    with pytest.raises(pa.ArrowInvalid):
        adjudicate._money(np.array([10**20], dtype=object))


def test_money_written_exactly(tmp_path: Path) -> None:
    values = np.array([adjudicate.MONEY_LIMIT, -adjudicate.MONEY_LIMIT, -1, 0], dtype=np.int64)
    valid = np.array([True, True, True, False])
    table = pa.table(
        {"claim_id": ["a", "b", "c", "d"], "m": adjudicate._money(values, None, valid)}
    )
    write_outputs(tmp_path / "out", {"t": table}, {})
    back = pq.read_table(tmp_path / "out" / "t.parquet")
    assert back.schema.field("m").type == MONEY  # decimal64 in memory, decimal128 when read
    assert back.equals(table.cast(pa.schema([("claim_id", pa.string()), ("m", MONEY)])))
    assert back.column("m").to_pylist() == [*_cents(values[:3]), None]


# --------------------------------------------------------------------------- pieces


def test_code_lists_gather_and_sort() -> None:
    vocabulary = ["A", "B", "C"]
    bits = adjudicate._code_bits(
        4,
        [np.array([0, 2]), np.array([2]), np.array([], dtype=np.int64)],
        ["C", "A", "B"],
        vocabulary,
    )
    assert adjudicate._code_lists(bits, vocabulary).to_pylist() == [["C"], [], ["A", "C"], []]
    take = np.array([2, 3, 0], dtype=np.int64)
    assert adjudicate._code_lists(bits, vocabulary, take).to_pylist() == [["A", "C"], [], ["C"]]
    assert adjudicate._code_lists(np.zeros(2, dtype=np.int64), []).to_pylist() == [[], []]
    with pytest.raises(ValueError, match="63"):
        adjudicate._vocabulary([f"C{i:02d}" for i in range(64)])


def test_small_codes_of_every_string_layout() -> None:
    words = adjudicate._KINDS
    values = ["supply", None, "drug", "service", "drug", "", "drugs"]
    known = values[:5]
    expected = [2, -1, 0, 1, 0]
    assert adjudicate._small_codes(pa.array(known), words).tolist() == expected
    assert adjudicate._small_codes(pa.array(known, pa.large_string()), words).tolist() == expected
    sliced = pa.array(["x", *known]).slice(1)
    assert adjudicate._small_codes(sliced, words).tolist() == expected
    chunked = pa.chunked_array(
        [pa.array(known[:2]).dictionary_encode(), pa.array(known[2:]).dictionary_encode()]
    )
    assert adjudicate._small_codes(chunked, words).tolist() == expected
    assert adjudicate._small_codes(pa.array(values), words) is None
    assert adjudicate._small_codes(pa.array(values).dictionary_encode(), words) is None
    # an unknown dictionary word that no row uses is fine
    unused = pa.DictionaryArray.from_arrays(pa.array([1, 0, None]), pa.array(["drug", "zzz"]))
    assert adjudicate._small_codes(unused, words) is None
    used = pa.DictionaryArray.from_arrays(pa.array([0, 0, None]), pa.array(["drug", "zzz"]))
    assert adjudicate._small_codes(used, words).tolist() == [0, 0, -1]
    assert adjudicate._small_codes(pa.array([], pa.string()), words).tolist() == []


def test_sort_key_paths() -> None:
    assert adjudicate._sort_key(np.arange(10, dtype=np.int64)) is None
    rng = np.random.default_rng(1)
    nearly = np.arange(10_000, dtype=np.int64)
    nearly[[10, 11]] = nearly[[11, 10]]
    nearly[500] = nearly[501]  # a tie: input order kept
    shuffled = rng.integers(0, 50, 10_000).astype(np.int64)
    huge = rng.integers(-(2**62), 2**62, 1000).astype(np.int64)
    for key in (nearly, shuffled, huge):
        order = adjudicate._sort_key(key)
        assert order is not None
        assert order.tolist() == np.argsort(key, kind="stable").tolist()


@pytest.mark.parametrize("dictionary", [False, True])
def test_take_from_chunks(dictionary: bool) -> None:
    values = [f"v{i % 13}" if i % 11 else None for i in range(400)]
    chunks = [
        pa.array(values[a:b], pa.string())
        for a, b in ((0, 100), (100, 100), (100, 250), (250, 400))
    ]
    if dictionary:
        chunks = [c.dictionary_encode() for c in chunks]
    column = pa.chunked_array(chunks)
    rng = np.random.default_rng(2)
    for rows in (
        np.array([399, 0, 150, 150, 99, 100, 250]),  # a few rows: chunk by chunk
        rng.permutation(400),  # a permutation: combined once
        np.zeros(0, dtype=np.int64),
    ):
        got = take_rows(column, rows)
        assert got.type == pa.string()
        assert got.to_pylist() == [values[i] for i in rows]
    single = take_rows(pa.array(values), np.array([3, 1]))
    assert single.to_pylist() == [values[3], values[1]]
