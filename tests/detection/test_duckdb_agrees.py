"""The DuckDB SQL baseline (benchmarks/duckdb_baseline.py) and the engine agree.

Not a benchmark: a correctness check that `make test` runs, so the figures of
`make bench` compare two programs that compute the same thing.  A generated batch
is scrambled at random first (card dates around the admission and the 15-day
grace, card letters, digits and provinces, routes, visit types, facilities,
exemption dates, prices around the ceilings, coverage and benefit rates, line
dates, items, quantities), so that every rule the SQL writes fires often, on both
sides of its boundaries.  Then, claim by claim:

- on every claim, the set of reason codes both compute (those the SQL has and the
  pack has, except the decision-dependent BENEFIT_RATE_MISMATCH and HIGH_COST);
- on the claims the engine did not reject (and where no engine rule the SQL lacks
  could change the money), those two codes too, eligible and fund_pays;
- whether the claim is rejected, where no engine reject rule the SQL lacks hit it.

The card-holder rules (DUPLICATE_CLAIM, DUPLICATE_LINE, OVERLAPPING_STAY) get a
batch of their own besides: card holders shared at random between claims, at the
same or another facility, the same admission time or day or around the stay, items
billed again, MALFORMED earlier claims (which never count), claim ids whose string
order is not their number's.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("duckdb")

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # benchmarks/ is a package at the top of the repository
    sys.path.insert(0, str(ROOT))

from benchmarks.duckdb_baseline import CODES, compare_with_engine, run  # noqa: E402
from claims_engine import engine, pipeline  # noqa: E402
from claims_engine.cli import demo_reference_dir  # noqa: E402
from claims_engine.fixtures.detection import Agreement  # noqa: E402
from claims_engine.fixtures.generator import (  # noqa: E402
    GeneratedBatch,
    generate_batch,
    write_batch,
)
from claims_engine.io.batch import read_batch  # noqa: E402

DAY = 86_400


@pytest.fixture(scope="module")
def inputs() -> pipeline.Inputs:
    return pipeline.prepare(demo_reference_dir())


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(i), values.cast(table.schema.field(i).type))


def _ints(table: pa.Table, name: str) -> np.ndarray:
    """A column as integers: dates in days, timestamps in seconds, decimals scaled
    to integers (thousandths for quantities and prices)."""
    col = table.column(name).combine_chunks()
    if pa.types.is_decimal(col.type):
        scale = col.type.scale
        return np.array([int(v.scaleb(scale)) for v in col.to_pylist()], dtype=np.int64)
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        col = col.cast(pa.int64() if pa.types.is_timestamp(col.type) else pa.int32())
    return np.array(col.to_numpy(zero_copy_only=False))


def _scramble(gb: GeneratedBatch, reference: dict[str, pa.Table], seed: int) -> GeneratedBatch:
    rng = np.random.default_rng(seed)
    claims, lines = gb.claims, gb.lines
    n, m = claims.num_rows, lines.num_rows

    def pick(share: float, size: int = n) -> np.ndarray:
        return rng.random(size) < share

    visit = _ints(claims, "visit_type").astype(np.int64)
    s = pick(0.1)
    visit[s] = rng.integers(1, 10, size=int(s.sum()))
    claims = _replace(claims, "visit_type", pa.array(visit.astype(np.int8)))
    adm = _ints(claims, "admitted_at")
    dis = _ints(claims, "discharged_at")
    s = pick(0.1)  # some long stays
    dis[s] += rng.integers(0, 25, size=int(s.sum())) * DAY
    # long inpatient stays ending 13..18 days after the card: both sides of the grace
    grace = pick(0.3) & np.isin(visit, (3, 4))
    dis[grace] = np.maximum(dis[grace], adm[grace] + 20 * DAY)
    claims = _replace(claims, "discharged_at", pa.array(dis, pa.timestamp("s")))
    adm_day, dis_day = adm // DAY, dis // DAY
    valid_to = _ints(claims, "card_valid_to").astype(np.int64)
    s = pick(0.25)
    valid_to[s] = dis_day[s] - rng.integers(0, 25, size=int(s.sum()))
    valid_to[grace] = dis_day[grace] - rng.integers(13, 19, size=int(grace.sum()))
    valid_from = _ints(claims, "card_valid_from").astype(np.int64)
    s = pick(0.05)
    valid_from[s] = adm_day[s] + rng.integers(-1, 2, size=int(s.sum()))
    claims = _replace(claims, "card_valid_to", pa.array(valid_to.astype(np.int32), pa.date32()))
    claims = _replace(claims, "card_valid_from", pa.array(valid_from.astype(np.int32), pa.date32()))

    cards = claims.column("card_no").to_pylist()
    groups = [str(g) for g in reference["card_groups"].column("group_code").to_pylist()]
    for i in np.flatnonzero(pick(0.08)):
        card = cards[i]
        what = int(rng.integers(0, 4))
        if what == 0:  # another group, known or not
            card = (
                groups[int(rng.integers(0, len(groups)))]
                if rng.random() < 0.5
                else "Z" + "QXYZ"[int(rng.integers(0, 4))]
            ) + card[2:]
        elif what == 1:  # any benefit digit
            card = card[:2] + str(int(rng.integers(0, 10))) + card[3:]
        elif what == 2:  # any province
            card = card[:3] + f"{int(rng.integers(0, 100)):02d}" + card[5:]
        else:  # not a card number at all
            card = card[:14]
        cards[i] = card
    claims = _replace(claims, "card_no", pa.array(cards, pa.string()))

    routes = ["registered", "referral", "emergency", "open_access", "self_referred"]
    route = claims.column("route").to_pylist()
    for i in np.flatnonzero(pick(0.2)):
        route[i] = "self_referred" if rng.random() < 0.6 else routes[int(rng.integers(0, 5))]
    for i in np.flatnonzero(pick(0.4) & np.isin(visit, (3, 4))):
        route[i] = "self_referred"  # the inpatient multipliers and their cut-over
    claims = _replace(claims, "route", pa.array(route, pa.string()))

    facilities = [str(f) for f in reference["facilities"].column("facility_id").to_pylist()]
    fac = claims.column("facility_id").to_pylist()
    for i in np.flatnonzero(pick(0.1)):
        fac[i] = facilities[int(rng.integers(0, len(facilities)))]
    levels = reference["facilities"].column("level").to_pylist()
    provincial = [f for f, lv in zip(facilities, levels, strict=True) if lv == "provincial"]
    for i in np.flatnonzero(pick(0.5) & np.isin(visit, (3, 4))):
        if route[i] == "self_referred":  # 60% then 100% from 2021-01-01
            fac[i] = provincial[int(rng.integers(0, len(provincial)))]
    claims = _replace(claims, "facility_id", pa.array(fac, pa.string()))

    exempt = claims.column("copay_exempt_from").to_pylist()
    for i in np.flatnonzero(pick(0.1)):
        exempt[i] = date.fromordinal(
            date(1970, 1, 1).toordinal() + int(adm_day[i]) + int(rng.integers(-2, 3))
        )
    claims = _replace(claims, "copay_exempt_from", pa.array(exempt, pa.date32()))

    inp = claims.column("inpatient_at").combine_chunks()
    inp_s = np.array(inp.cast(pa.int64()).fill_null(0).to_numpy())
    has = np.asarray(inp.is_valid().to_numpy(zero_copy_only=False))
    s = pick(0.03) & has
    inp_s[s] += rng.integers(-3600, 3600, size=int(s.sum()))
    claims = _replace(claims, "inpatient_at", pa.array(inp_s, pa.timestamp("s"), mask=~has))

    dx = claims.column("primary_dx").to_pylist()
    for i in np.flatnonzero(pick(0.02)):
        dx[i] = "U99.9"
    claims = _replace(claims, "primary_dx", pa.array(dx, pa.string()))

    # lines: prices about the ceilings, rates, dates, items, quantities
    price = _ints(lines, "unit_price").astype(np.int64)  # thousandths (decimal 18,3)
    s = pick(0.15, m)
    price[s] = (price[s] * rng.uniform(0.8, 1.6, size=int(s.sum()))).astype(np.int64)
    lines = _replace(lines, "unit_price", _thousandths(price))
    cover = _ints(lines, "coverage_rate").astype(np.int64)
    s = pick(0.04, m)
    cover[s] = rng.choice([30, 50, 80, 100], size=int(s.sum()))
    lines = _replace(lines, "coverage_rate", pa.array(cover.astype(np.int16)))
    benefit = _ints(lines, "benefit_rate").astype(np.int64)
    s = pick(0.08, m)
    benefit[s] = rng.choice([0, 32, 40, 57, 80, 95, 100], size=int(s.sum()))
    lines = _replace(lines, "benefit_rate", pa.array(benefit.astype(np.int16)))
    qty = _ints(lines, "quantity").astype(np.int64)
    s = pick(0.05, m)
    qty[s] = rng.integers(1, 40_000, size=int(s.sum()))
    s = pick(0.003, m)
    qty[s] *= 2000  # now and then a huge line: HIGH_COST
    lines = _replace(lines, "quantity", _thousandths(qty))

    ordered = lines.column("ordered_at").combine_chunks()
    o = np.array(ordered.cast(pa.int64()).fill_null(0).to_numpy())
    has = np.asarray(ordered.is_valid().to_numpy(zero_copy_only=False))
    s = pick(0.04, m) & has
    o[s] += rng.integers(-2, 2, size=int(s.sum())) * DAY + rng.integers(
        -3600, 3600, size=int(s.sum())
    )
    lines = _replace(lines, "ordered_at", pa.array(o, pa.timestamp("s"), mask=~has))

    items = lines.column("item_code").to_pylist()
    kinds = lines.column("kind").to_pylist()
    catalogue = {
        kind: [str(x) for x in reference[name].column("item_code").to_pylist()]
        for kind, name in (("drug", "drugs"), ("service", "services"), ("supply", "supplies"))
    }
    for i in np.flatnonzero(pick(0.03, m)):
        pool = catalogue[kinds[i]]
        items[i] = pool[int(rng.integers(0, len(pool)))]
    lines = _replace(lines, "item_code", pa.array(items, pa.string()))
    return GeneratedBatch(claims, lines, gb.truth)


def _thousandths(values: np.ndarray) -> pa.Array:
    """Integers in thousandths as decimal128(38, 3), exactly."""
    from decimal import Decimal

    return pa.array([Decimal(int(v)).scaleb(-3) for v in values], pa.decimal128(38, 3))


HOLDER_CODES = ("DUPLICATE_CLAIM", "DUPLICATE_LINE", "OVERLAPPING_STAY")


def _share_holders(gb: GeneratedBatch, seed: int) -> GeneratedBatch:
    """Card holders shared between claims, about the edges of the card-holder rules.

    A claim in eight takes the card holder (the last 10 characters of the card) of
    another claim, the leader, keeping its own group letters, and moves (its lines
    with it) to the leader's facility and admission time (one of the two is a
    DUPLICATE_CLAIM, the later by claim_id), or the leader's facility and day at
    another hour (DUPLICATE_LINE when an item comes again), or around the leader's
    stay, mostly at another facility, often both as inpatient stays
    (OVERLAPPING_STAY, or not: a stay starting when the other ends, a day apart),
    sometimes at the very same admission time.  It often bills one of the leader's
    items on the leader's day of service (not always its own admission day).  Then
    a leader in five is made MALFORMED (it must not count), some claims bill one
    item twice (lines of one claim are never earlier than each other), and a claim
    id in three loses its zeros ("S0041-123" sorts after "S0041-00000456": earlier
    is by the string).
    """
    rng = np.random.default_rng(seed)
    claims, lines = gb.claims, gb.lines
    n = claims.num_rows
    ids = [str(x) for x in claims.column("claim_id").to_pylist()]
    cards = [str(x) for x in claims.column("card_no").to_pylist()]
    fac = claims.column("facility_id").to_pylist()
    adm = _ints(claims, "admitted_at").astype(np.int64)
    dis = _ints(claims, "discharged_at").astype(np.int64)
    visit = _ints(claims, "visit_type").astype(np.int64)
    sex = _ints(claims, "sex").astype(np.int64)
    valid_from = _ints(claims, "card_valid_from").astype(np.int64)
    valid_to = _ints(claims, "card_valid_to").astype(np.int64)
    inp = claims.column("inpatient_at").combine_chunks()
    inp_s = np.array(inp.cast(pa.int64()).fill_null(0).to_numpy())
    inp_has = np.asarray(inp.is_valid().to_numpy(zero_copy_only=False))

    line_claim = [str(x) for x in lines.column("claim_id").to_pylist()]
    kinds = lines.column("kind").to_pylist()
    items = lines.column("item_code").to_pylist()
    ordered = lines.column("ordered_at").combine_chunks()
    o = np.array(ordered.cast(pa.int64()).fill_null(0).to_numpy())
    o_has = np.array(ordered.is_valid().to_numpy(zero_copy_only=False))
    row_of = {cid: i for i, cid in enumerate(ids)}
    lines_of: dict[int, list[int]] = {}
    for j, cid in enumerate(line_claim):
        if cid in row_of:  # orphan lines belong to no claim
            lines_of.setdefault(row_of[cid], []).append(j)

    def shift(i: int, delta: int) -> None:
        adm[i] += delta
        dis[i] += delta
        inp_s[i] += delta
        for j in lines_of.get(i, []):
            o[j] += delta

    leaders = []
    for f in map(int, np.flatnonzero(rng.random(n) < 0.125)):
        lead = int(rng.integers(0, n))
        if lead == f:
            continue
        leaders.append(lead)
        cards[f] = cards[f][:-10] + cards[lead][-10:]
        valid_from[f], valid_to[f] = valid_from[lead], valid_to[lead]
        what = rng.random()
        if what < 0.3:  # same facility, same admission time
            fac[f] = fac[lead]
            shift(f, int(adm[lead] - adm[f]))
        elif what < 0.55:  # same facility and (mostly) day, another hour
            fac[f] = fac[lead]
            shift(f, int(adm[lead] - adm[f]) + int(rng.integers(-3, 4)) * 3600)
        else:  # around the leader's stay, at another facility or its facility
            if rng.random() < 0.4:  # the day of service, not the admission day, matters
                fac[f] = fac[lead]
            if rng.random() < 0.7:
                visit[f] = visit[lead] = 3
            where = rng.random()
            if where < 0.2:  # the same admission time
                delta = int(adm[lead] - adm[f])
            elif where < 0.4:  # admitted when the leader's stay ends
                delta = int(dis[lead] - adm[f])
            else:
                delta = int(adm[lead] - adm[f]) + int(rng.integers(-2 * DAY, 2 * DAY))
            shift(f, delta)
        own, theirs = lines_of.get(f, []), lines_of.get(lead, [])
        if own and theirs and rng.random() < 0.7:  # an item of the leader, on its day
            j = theirs[int(rng.integers(0, len(theirs)))]
            same = [k for k in own if kinds[k] == kinds[j]]
            if same:
                k = same[int(rng.integers(0, len(same)))]
                items[k] = items[j]
                o[k] = o[j] if o_has[j] else adm[lead]
                o_has[k] = True
    for lead in set(leaders):
        if rng.random() < 0.2:
            sex[lead] = 0  # MALFORMED: not a value of the enumeration
    for i in np.flatnonzero(rng.random(n) < 0.05):  # an item twice in one claim
        own = lines_of.get(int(i), [])
        pairs = [(a, b) for a in own for b in own if a < b and kinds[a] == kinds[b]]
        if pairs:
            a, b = pairs[int(rng.integers(0, len(pairs)))]
            items[b], o[b], o_has[b] = items[a], o[a], o_has[a]
    renamed = {}
    for i in np.flatnonzero(rng.random(n) < 0.33):
        head, _, number = ids[i].rpartition("-")
        renamed[ids[i]] = f"{head}-{int(number)}" if number.isdigit() else ids[i]
    ids = [renamed.get(x, x) for x in ids]
    line_claim = [renamed.get(x, x) for x in line_claim]

    claims = _replace(claims, "claim_id", pa.array(ids, pa.string()))
    claims = _replace(claims, "card_no", pa.array(cards, pa.string()))
    claims = _replace(claims, "facility_id", pa.array(fac, pa.string()))
    claims = _replace(claims, "admitted_at", pa.array(adm, pa.timestamp("s")))
    claims = _replace(claims, "discharged_at", pa.array(dis, pa.timestamp("s")))
    claims = _replace(claims, "inpatient_at", pa.array(inp_s, pa.timestamp("s"), mask=~inp_has))
    claims = _replace(claims, "visit_type", pa.array(visit.astype(np.int8)))
    claims = _replace(claims, "sex", pa.array(sex.astype(np.int8)))
    claims = _replace(claims, "card_valid_from", pa.array(valid_from.astype(np.int32), pa.date32()))
    claims = _replace(claims, "card_valid_to", pa.array(valid_to.astype(np.int32), pa.date32()))
    lines = _replace(lines, "claim_id", pa.array(line_claim, pa.string()))
    lines = _replace(lines, "item_code", pa.array(items, pa.string()))
    lines = _replace(lines, "ordered_at", pa.array(o, pa.timestamp("s"), mask=~o_has))
    return GeneratedBatch(claims, lines, gb.truth)


def _agree(inputs: pipeline.Inputs, folder: Path) -> dict[str, Agreement]:
    """The engine and the SQL on the batch in ``folder``, claim by claim."""
    batch = read_batch(folder, engine.needed_fields(inputs.plan))
    result = pipeline.evaluate(batch, inputs, "agree")
    engine_claims = pa.concat_tables([result.approved, result.rejected, result.flagged])
    duck, _ = run(folder, demo_reference_dir(), threads=2)
    return compare_with_engine(engine_claims.sort_by("claim_id"), duck, inputs.plan)


def _agree_fully(inputs: pipeline.Inputs, folder: Path, n: int) -> dict[str, Agreement]:
    """``_agree`` on a batch of ``n`` claims, requiring every claim on both sides
    and perfect agreement on codes, money and reject decisions."""
    agreement = _agree(inputs, folder)
    codes, money = agreement["codes"], agreement["money"]
    assert codes.claims == n and codes.only_in_a == 0 and codes.only_in_b == 0
    assert codes.perfect, codes.describe()
    assert money.perfect, money.describe()
    decisions = agreement["decisions"]
    assert decisions.perfect and decisions.claims > n // 2, decisions.describe()
    return agreement


def _holder_codes_agree(agreement: dict[str, Agreement], least: int) -> None:
    """The card-holder codes fired on both sides, at least ``least`` claims each, and
    never on one side only; DUPLICATE_LINE also on claims paid for their other lines."""
    codes, money = agreement["codes"], agreement["money"]
    for code in HOLDER_CODES:
        counts = codes.per_code[code]
        assert counts["only_a"] == counts["only_b"] == 0, (code, counts, codes.describe())
        assert counts["both"] >= least, (code, counts)
        assert money.per_code[code]["only_a"] == money.per_code[code]["only_b"] == 0
    assert money.per_code["DUPLICATE_LINE"]["both"] > 0, money.per_code["DUPLICATE_LINE"]


@pytest.mark.parametrize(
    ("n", "seed", "start", "days"),
    [
        (2000, 41, date(2025, 6, 20), 28),  # the 2025-07-01 price change and merger
        (800, 42, date(2020, 12, 29), 6),  # the 2021-01-01 self-referral cut-over
    ],
)
def test_sql_and_engine_agree(
    inputs: pipeline.Inputs, tmp_path: Path, n: int, seed: int, start: date, days: int
) -> None:
    gb = generate_batch(n, seed, inputs.reference, defect_rate=0.2, start=start, days=days)
    # the generator injected every card-holder defect the SQL computes
    injected = set(gb.truth.column("code").to_pylist())
    assert set(HOLDER_CODES) <= injected, sorted(set(HOLDER_CODES) - injected)
    write_batch(_scramble(gb, inputs.reference, seed), tmp_path)

    agreement = _agree_fully(inputs, tmp_path, n)
    codes, money = agreement["codes"], agreement["money"]
    # The scrambling exercised every shared code, and money on most claims.
    fired = {c for c, k in codes.per_code.items() if k["both"]}
    fired |= {c for c, k in money.per_code.items() if k["both"]}
    assert fired >= set(CODES) - {"CARD_BLOCKED"}, sorted(set(CODES) - fired)
    assert money.money_compared > n // 3
    _holder_codes_agree(agreement, 3)


@pytest.mark.parametrize(("n", "seed"), [(2000, 43), (1500, 44)])
def test_sql_and_engine_agree_on_card_holders(
    inputs: pipeline.Inputs, tmp_path: Path, n: int, seed: int
) -> None:
    gb = generate_batch(n, seed, inputs.reference, defect_rate=0.1, days=10)
    write_batch(_share_holders(gb, seed), tmp_path)

    agreement = _agree_fully(inputs, tmp_path, n)
    codes, money, decisions = (agreement[k] for k in ("codes", "money", "decisions"))
    assert decisions.per_code["REJECTED"]["both"] > n // 20
    _holder_codes_agree(agreement, 10)
    assert codes.per_code["MALFORMED"]["both"] > 0
    assert money.money_compared > n // 2


def test_agreement_reports_differences() -> None:
    """The comparison itself, on hand-made outcomes."""
    from claims_engine.fixtures.detection import compare_outcomes

    money = pa.decimal128(18, 2)
    a = pa.table(
        {
            "claim_id": ["1", "2", "3"],
            "reason_codes": pa.array([["A"], ["A", "X"], []], pa.list_(pa.string())),
            "eligible": pa.array([1, 2, 3], money),
            "fund_pays": pa.array([1, 2, 3], money),
        }
    )
    b = pa.table(
        {
            "claim_id": ["1", "2", "4"],
            "reason_codes": pa.array([["A", "B"], ["A"], []], pa.list_(pa.string())),
            "eligible": pa.array([1, 5, 0], money),
            "fund_pays": pa.array([1, 2, 0], money),
        }
    )
    got = compare_outcomes(a, b, ["A", "B"])
    assert (got.claims, got.only_in_a, got.only_in_b) == (2, 1, 1)
    assert got.code_disagreements.to_pylist() == [
        {"claim_id": "1", "codes_a": ["A"], "codes_b": ["A", "B"]}
    ]
    assert got.per_code == {
        "A": {"both": 2, "only_a": 0, "only_b": 0},
        "B": {"both": 0, "only_a": 0, "only_b": 1},
    }
    assert got.money_disagreements.column("claim_id").to_pylist() == ["2"]
    assert not got.perfect


def test_sql_never_uses_double(tmp_path: Path, inputs: pipeline.Inputs) -> None:
    """Money stays DECIMAL: DuckDB turns a decimal division into DOUBLE, so the SQL
    has no division and no float type, and no table it builds has a float column."""
    import re

    from benchmarks.duckdb_baseline import QUERIES, connect, load

    for sql in QUERIES:
        code = re.sub(r"--[^\n]*|'[^']*'", "", sql)  # comments and string literals
        assert "/" not in code, sql[:200]
        assert not re.search(r"\b(DOUBLE|FLOAT|REAL)\b|\d[eE][-+]?\d", code, re.I), sql[:200]
    write_batch(generate_batch(50, 1, inputs.reference, defect_rate=0.2), tmp_path)
    con = connect(1)
    load(con, tmp_path, demo_reference_dir())
    for sql in QUERIES:
        con.execute(sql)
    columns = con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
    ).fetchall()
    assert {"outcome", "lv", "c"} <= {table for table, _, _ in columns}
    floats = [c for c in columns if c[2] in ("DOUBLE", "FLOAT", "REAL")]
    assert floats == []
    con.close()
