"""Property tests: the vectorized engine agrees with a row-at-a-time reference.

* Batches: random small batches built around the builders' clean claim, probing the
  edges the rules care about (card validity and the inpatient grace, ages at the
  ICD-10 limits, price ceilings, stay edges, half-cent amounts, facility-specific
  catalogue rows, frequency-limited items, claims of the same card holder: duplicates,
  overlapping stays, copied lines, ...), adjudicated by ``engine.run`` +
  ``adjudicate.build`` and by ``tests/reference_eval.reference_adjudicate``: decisions,
  codes and money must be identical claim by claim and line by line.
* The pack's benefit rate equals contract section 6 written out by hand.
* Expressions: random typed expressions over a few nullable columns, evaluated by
  ``kernels.evaluate`` over whole columns and by ``ReferenceEvaluator`` row by row.

Examples per test come from the hypothesis profile (tests/conftest.py: "ci" when the
CI variable is set, else "dev").  A failure prints the batch or expression and a
``@reproduce_failure`` blob.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from claims_engine import adjudicate, engine, schema
from claims_engine.io.batch import Batch
from claims_engine.io.reference import load_reference
from claims_engine.kernels import evaluate
from claims_engine.kernels import values as V
from claims_engine.lang import ir
from claims_engine.lang import types as t
from claims_engine.lang.checker import Checker, Scope
from claims_engine.lang.errors import ExprError
from claims_engine.lang.parser import parse
from claims_engine.plan.compiler import compile_pack
from claims_engine.plan.plan import Plan

sys.path.insert(0, str(Path(__file__).resolve().parent))
import builders
from reference_eval import (
    ReferenceEvaluator,
    contract_benefit_rate,
    line_key,
    reference_adjudicate,
    scaled,
)
from reference_eval import Scope as RefScope

ROOT = Path(__file__).resolve().parent.parent
D = Decimal


def examples(factor: float = 1.0) -> int:
    """Examples for a test: the active profile's count, scaled for cheap tests."""
    return max(5, int(settings.default.max_examples * factor))


# =====================================================================================
# Pools drawn from the reference data
# =====================================================================================


@dataclass(frozen=True)
class Pools:
    reference: dict[str, pa.Table]
    facilities: list[str]
    groups: list[str]
    provinces: list[str]
    blocked: list[dict[str, Any]]
    icd_all: list[str]
    icd_o: list[str]
    icd_p: list[str]
    icd_sexed: list[str]
    catalogue: dict[str, list[dict[str, Any]]]  # kind -> rows
    limited: list[str]  # item codes with a frequency limit


KIND_TABLE = {"drug": "drugs", "service": "services", "supply": "supplies"}


@functools.cache
def pools() -> Pools:
    ref = load_reference(ROOT / "fixtures" / "reference").tables
    icd = ref["icd10"].to_pylist()
    return Pools(
        reference=ref,
        facilities=ref["facilities"].column("facility_id").to_pylist(),
        groups=ref["card_groups"].column("group_code").to_pylist(),
        provinces=ref["provinces"].column("province_code").to_pylist(),
        blocked=ref["blocked_cards"].to_pylist(),
        icd_all=[r["code"] for r in icd],
        icd_o=[r["code"] for r in icd if r["code"].startswith("O")],
        icd_p=[r["code"] for r in icd if r["code"].startswith("P")],
        icd_sexed=[r["code"] for r in icd if r["sex"] is not None],
        catalogue={kind: ref[table].to_pylist() for kind, table in KIND_TABLE.items()},
        limited=ref["frequency_limits"].column("item_code").to_pylist(),
    )


# Dates where something changes: base salary, the 2021 self-referral cut-over,
# catalogue prices and listings, blocked cards, the 2025 province merger.
ANCHORS = (
    date(2019, 7, 1),
    date(2020, 12, 31),
    date(2021, 1, 1),
    date(2023, 7, 1),
    date(2024, 6, 1),
    date(2024, 7, 1),
    date(2024, 11, 1),
    date(2024, 12, 31),
    date(2025, 1, 1),
    date(2025, 1, 10),
    date(2025, 1, 15),
    date(2025, 2, 1),
    date(2025, 3, 1),
    date(2025, 3, 10),
    date(2025, 3, 31),
    date(2025, 6, 30),
    date(2025, 7, 1),
    date(2025, 12, 31),
)
# ICD-10 age limits of the demo data: perinatal 365 days, pregnancy 4383..20089 days.
AGE_EDGES = (0, 364, 365, 366, 4382, 4383, 4384, 20088, 20089, 20090, -1)
# 15% of each base salary: the low-cost raise edge (eligible strictly below it).
LOW_COST_EDGES = (D("208500"), D("223500"), D("270000"), D("351000"))
SECOND = timedelta(seconds=1)


def _offset(d: date, days: int) -> date:
    return d + timedelta(days=days)


def half_up(x: Decimal) -> Decimal:
    return x.quantize(D("0.01"), rounding=ROUND_HALF_UP)


def fill_line(line: dict[str, Any]) -> dict[str, Any]:
    """The builders' default line with ``line`` over it and consistent declared amounts."""
    out = {**builders.LINE, **line}
    q, up = out["quantity"], out["unit_price"]
    hup = out["hospital_unit_price"] if out["hospital_unit_price"] is not None else up
    sr, cr, br = out["service_rate"], out["coverage_rate"], out["benefit_rate"]
    out["amount_hospital"] = half_up(q * hup * sr / 100)
    out["amount_insured"] = half_up(q * up * sr / 100 * cr / 100)
    out["fund_pays"] = half_up(out["amount_insured"] * br / 100)
    out["patient_copay"] = out["amount_insured"] - out["fund_pays"]
    return out


def fill_claim(claim: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The builders' default claim with ``claim`` over it; totals are its lines' sums."""
    out = {**builders.CLAIM, **claim}
    mine = [ln for ln in lines if ln["claim_id"] == out["claim_id"]]

    def total(col: str, kind: str | None = None) -> Decimal:
        return sum((ln[col] for ln in mine if kind in (None, ln["kind"])), D(0))

    hosp, ins, copay = total("amount_hospital"), total("amount_insured"), total("patient_copay")
    out.update(
        total_hospital=hosp,
        total_insured=ins,
        patient_copay=copay,
        patient_pays=hosp - ins,
        fund_pays=ins - copay,
        total_drugs=total("amount_hospital", "drug"),
        total_supplies=total("amount_hospital", "supply"),
    )
    if "treatment_days" not in claim:  # QĐ130 SO_NGAY_DTRI, as builders do
        out["treatment_days"] = builders.treatment_days(
            out["visit_type"], out["admitted_at"], out["discharged_at"]
        )
    return out


# =====================================================================================
# Batch strategies
# =====================================================================================
# Each claim is drawn "careful" (two in three) or "wild".  A careful claim keeps every
# claim-level reject condition away (known facility, valid card in force, ordered dates,
# known diagnosis) but still walks the edges that only flag or adjust: ages at the ICD-10
# limits, the inpatient grace edge, prices at the ceiling, coverage mismatches, half
# cents, the low-cost threshold, exemptions, routes and facility levels.  So money,
# benefit rates and HIGH_COST are exercised on payable claims.  A wild claim draws
# from every edge, rejections included.


def mostly(clean: st.SearchStrategy[Any], *edges: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``clean`` three times in four, else one of ``edges``.

    (Not ``one_of([clean] * 3 + ...)``: hypothesis merges repeated branches.)
    """
    n = len(edges)
    return st.integers(0, 4 * n - 1).flatmap(lambda k: clean if k < 3 * n else edges[k - 3 * n])


@st.composite
def card_numbers(draw: st.DrawFn, p: Pools, careful: bool) -> str:
    kind = (
        "valid"
        if careful
        else draw(
            st.sampled_from(
                ["valid"] * 4 + ["unknown_group", "unknown_province", "malformed", "blocked"]
            )
        )
    )
    digits10 = draw(st.integers(0, 10**10 - 1)).__format__("010d")
    benefit = str(draw(st.integers(1, 5)))
    group = draw(st.sampled_from(p.groups))
    province = draw(st.sampled_from(p.provinces))
    if kind == "unknown_group":
        group = draw(st.sampled_from(["ZZ", "AA", "QQ", "XX"]))
    elif kind == "unknown_province":
        province = draw(st.sampled_from(["00", "03", "05", "99", "13"]))
    elif kind == "blocked":
        return str(draw(st.sampled_from(p.blocked))["card_no"])
    elif kind == "malformed":
        good = group + benefit + province + digits10
        return draw(
            st.sampled_from(
                [
                    group.lower() + benefit + province + digits10,
                    group + "0" + province + digits10,
                    group + "6" + province + digits10,
                    good[:-1],
                    good + "1",
                    " " + good[1:],
                    good[:8] + "A" + good[9:],
                    "",
                    "1" + good[1:],
                ]
            )
        )
    return group + benefit + province + digits10


@st.composite
def stays(draw: st.DrawFn, p: Pools, careful: bool) -> dict[str, Any]:
    """Admission, discharge, inpatient start and card validity around their edges."""
    day = _offset(draw(st.sampled_from(ANCHORS)), draw(st.integers(-2, 2)))
    at_secs = draw(st.sampled_from([0, 1, 8 * 3600, 86399]) | st.integers(0, 86399))
    admitted = datetime.combine(day, time()) + timedelta(seconds=at_secs)
    lengths = [0, 60, 239 * 60, 240 * 60, 3 * 3600, 86400, 14 * 86400, 16 * 86400]
    stay_secs = draw(
        st.sampled_from(lengths + ([] if careful else [-86400, -1])) | st.integers(0, 20 * 86400)
    )
    discharged = admitted + timedelta(seconds=stay_secs)
    middle = (admitted + (discharged - admitted) / 2).replace(microsecond=0)
    inside = [admitted, middle, discharged]
    inpatient = draw(
        st.none()
        | st.sampled_from(inside if careful else [admitted - SECOND, *inside, discharged + SECOND])
    )
    valid_from = _offset(
        day, draw(st.sampled_from([-3650, -365, -1, 0] + ([] if careful else [1, 2])))
    )
    out = discharged.date()
    if careful:  # in force on admission; the inpatient grace edge (15 days) may still bite
        valid_to = draw(
            mostly(
                st.just(_offset(day, 365)),
                st.sampled_from([max(day, _offset(out, -k)) for k in (0, 14, 15, 16)]),
            )
        )
    else:
        valid_to = draw(
            st.sampled_from(
                [_offset(day, k) for k in (-2, -1, 0, 1, 365)]
                + [_offset(out, -k) for k in (0, 14, 15, 16, 17)]
            )
        )
    return {
        "admitted_at": admitted,
        "discharged_at": discharged,
        "inpatient_at": inpatient,
        "card_valid_from": valid_from,
        "card_valid_to": valid_to,
    }


@st.composite
def catalogue_choice(
    draw: st.DrawFn, p: Pools, kind: str, facility: str, careful: bool
) -> tuple[str, dict[str, Any] | None]:
    """An item code for a line of ``kind`` and the catalogue row it was taken from."""
    rows = p.catalogue[kind]
    choices = ["general"] * 4 + ["own"] + (["limited"] if kind == "service" else [])
    if not careful:
        choices += ["other_facility", "unknown", "wrong_kind"]
    how = draw(st.sampled_from(choices))
    if how == "limited":  # a frequency-limited service (FREQUENCY_LIMIT)
        code = draw(st.sampled_from(p.limited))
        return code, next(r for r in rows if r["item_code"] == code)
    if how == "own":
        own = [r for r in rows if r["facility_id"] == facility]
        if own:
            row = draw(st.sampled_from(own))
            return row["item_code"], row
        how = "general"
    if how == "other_facility":
        row = draw(st.sampled_from([r for r in rows if r["facility_id"] is not None]))
        return row["item_code"], row
    if how == "unknown":
        return draw(st.sampled_from(["40.99999", "XX.0000.0000", "N99.99.999", ""])), None
    if how == "wrong_kind":
        other = draw(st.sampled_from([k for k in KIND_TABLE if k != kind]))
        row = draw(st.sampled_from(p.catalogue[other]))
        return row["item_code"], None
    row = draw(st.sampled_from([r for r in rows if r["facility_id"] is None]))
    return row["item_code"], row


def _decimals(lo: int | str, hi: int | str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(D(lo), D(hi), places=places, allow_nan=False, allow_infinity=False)


@st.composite
def prices(draw: st.DrawFn, ceiling: Decimal | None) -> Decimal:
    others: list[st.SearchStrategy[Decimal]] = [
        _decimals(0, 500_000, 3),
        _decimals(1_000_000, 20_000_000, 3),  # with a few units: above HIGH_COST
        st.sampled_from(LOW_COST_EDGES),
        # half a cent: q=1 and rates 100 give x.xx5, which rounds up
        st.integers(0, 10**7).map(lambda c: D(c) / 100 + D("0.005")),
    ]
    if ceiling is None:
        return draw(st.one_of(others))
    at_or_below = [ceiling] + (
        [ceiling - D("0.001"), (ceiling / 2).quantize(D("0.001"))] if ceiling > 0 else []
    )
    return draw(mostly(st.sampled_from(at_or_below), st.just(ceiling + D("0.001")), *others))


@st.composite
def stay_instants(draw: st.DrawFn, stay: dict[str, Any], careful: bool) -> datetime | None:
    admitted, discharged = stay["admitted_at"], stay["discharged_at"]
    midnight = datetime.combine(admitted.date(), time())
    span = max(int((discharged - admitted).total_seconds()), 0)
    inside = st.sampled_from([midnight, admitted, discharged]) | st.integers(0, span).map(
        lambda s: admitted + timedelta(seconds=s)
    )
    if careful:
        return draw(st.none() | inside)
    return draw(
        st.none()
        | inside
        | st.sampled_from([midnight - SECOND, discharged + SECOND])
        | st.integers(-3 * 86400, 3 * 86400).map(lambda s: discharged + timedelta(seconds=s))
    )


@st.composite
def line_rows(
    draw: st.DrawFn,
    p: Pools,
    claim_id: str,
    line_no: int,
    facility: str,
    stay: dict[str, Any],
    careful: bool,
    sloppy: bool,
    likely_rates: list[int],
) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(KIND_TABLE)))
    item, row = draw(catalogue_choice(p, kind, facility, careful))
    ceiling = row["max_unit_price"] if row else None
    high = draw(st.integers(0, 9)) == 0
    quantity = draw(
        st.sampled_from([D(1), D(2), D("0.5"), D("0.001"), D(0)])
        | _decimals(0, 10 if high else 1000, 3)
        | st.sampled_from([D("1000000"), D("12345.678")])
    )
    unit_price = draw(prices(ceiling))
    ordered = draw(stay_instants(stay, careful))
    catalogue_rate = row["coverage_rate"] if row else 100
    line: dict[str, Any] = {
        "claim_id": claim_id,
        "line_no": line_no,
        "kind": kind,
        "group_code": draw(
            st.none()
            | st.just(int(row["group_code"]) if row and row.get("group_code") else None)
            | st.sampled_from([1, 4, 8, 10, 13, 14, 15, 16, 18])
        ),
        "item_code": item,
        "quantity": quantity,
        "unit_price": unit_price,
        "hospital_unit_price": draw(st.none() | st.just(unit_price) | _decimals(0, 1_000_000, 3)),
        "service_rate": draw(
            mostly(st.just(100), st.sampled_from([50, 80, 30, 0]), st.integers(0, 100))
        ),
        "coverage_rate": draw(
            mostly(
                st.just(catalogue_rate), st.sampled_from([100, 80, 70, 50, 0]), st.integers(0, 100)
            )
        ),
        "benefit_rate": draw(
            mostly(
                st.sampled_from(likely_rates),
                st.sampled_from([100, 95, 80, 40, 38, 60, 0, 76, 57]),
                st.integers(0, 100),
            )
        ),
        "ordered_at": ordered,
        "performed_at": draw(st.none() | st.just(ordered)),
        "department": draw(st.none() | st.just("K01")),
        "practitioner": draw(st.none() | st.just("BS001")),
    }
    line = fill_line(line)
    for col in ("amount_hospital", "amount_insured"):  # a wrong declared amount, sometimes
        delta = draw(st.sampled_from([D(0)] * 4 + [D("0.01"), D("-0.01"), D(1)])) if sloppy else 0
        if line[col] + delta >= 0:
            line[col] += delta
    return line


STAY_KEYS = ("admitted_at", "discharged_at", "inpatient_at", "card_valid_from", "card_valid_to")
# How a claim relates to an earlier one of the batch, for the card-holder rules.
RELATIONS = ("none",) * 4 + ("same_holder", "duplicate", "overlap", "copied_lines")
UNKNOWN_FACILITIES = ("99999", "01101 ", "0110")
UNKNOWN_DX = ("ZZZ", "J18.99", "j18.9", "J18.")


@st.composite
def claim_rows(
    draw: st.DrawFn,
    p: Pools,
    claim_id: str,
    earlier: list[tuple[dict[str, Any], list[dict[str, Any]]]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    careful = draw(st.sampled_from([True, True, False]))
    stay = draw(stays(p, careful))
    facilities = st.sampled_from(p.facilities)
    facility = draw(
        facilities if careful else mostly(facilities, st.sampled_from(UNKNOWN_FACILITIES))
    )
    card = draw(card_numbers(p, careful))
    visit_type = draw(st.integers(1, 9))
    relation = draw(st.sampled_from(RELATIONS)) if earlier else "none"
    other: dict[str, Any] = {}
    other_lines: list[dict[str, Any]] = []
    if relation != "none":
        # the same card holder (last 10 characters), maybe under other group letters
        other, other_lines = draw(st.sampled_from(earlier))
        card = draw(st.sampled_from([other["card_no"], card[:-10] + other["card_no"][-10:]]))
        if relation in ("duplicate", "copied_lines"):
            facility = other["facility_id"]
            stay = {k: other[k] for k in STAY_KEYS}
        if relation == "copied_lines":  # another admission time: not a duplicate claim
            shift = timedelta(minutes=draw(st.sampled_from([-60, 1, 30])))
            stay["admitted_at"] += shift
            stay["discharged_at"] += shift
        if relation == "overlap":
            stay = {k: other[k] for k in STAY_KEYS}
            span = max(int((other["discharged_at"] - other["admitted_at"]).total_seconds()), 0)
            admitted = other["admitted_at"] + timedelta(
                seconds=draw(st.sampled_from([0, span, span + 1]) | st.integers(0, span))
            )
            stay["admitted_at"] = admitted
            stay["discharged_at"] = admitted + timedelta(days=draw(st.integers(0, 5)))
            stay["inpatient_at"] = None
            stay["card_valid_to"] = max(stay["card_valid_to"], stay["discharged_at"].date())
            visit_type = draw(st.sampled_from([3, 4]))
    admitted_day = stay["admitted_at"].date()
    known_dx = mostly(
        st.sampled_from(p.icd_all),
        st.sampled_from(p.icd_o),
        st.sampled_from(p.icd_p),
        st.sampled_from(p.icd_sexed),
    )
    claim: dict[str, Any] = {
        **stay,
        "claim_id": claim_id,
        "facility_id": facility,
        "patient_id": draw(st.none() | st.just("P" + claim_id)),
        "card_no": card,
        "registered_facility": draw(st.none() | st.just(facility) | st.sampled_from(p.facilities)),
        "five_years_from": draw(st.none() | st.just(_offset(admitted_day, -2000))),
        "copay_exempt_from": draw(
            mostly(st.none(), st.sampled_from([_offset(admitted_day, k) for k in (-1, 0, 1)]))
        ),
        "birth_date": _offset(
            admitted_day, -draw(mostly(st.integers(0, 36500), st.sampled_from(AGE_EDGES)))
        ),
        "sex": draw(st.integers(1, 3)),
        "visit_type": visit_type,
        "route": draw(st.sampled_from(schema.ROUTES)),
        "primary_dx": draw(known_dx if careful else mostly(known_dx, st.sampled_from(UNKNOWN_DX))),
        "secondary_dx": draw(st.none() | st.just(["J30", "I10"])),
    }
    if draw(st.booleans()):  # else QĐ130's value, from the visit type and the dates
        claim["treatment_days"] = draw(st.none() | st.integers(0, 30))
    n = draw(st.integers(1, 5))
    sloppy = draw(st.integers(0, 2)) == 0  # declared amounts that do not add up
    digit_rate = {"1": 100, "2": 100, "3": 95, "4": 80, "5": 100}.get(card[2:3], 0)
    rates = [100, digit_rate]  # what the benefit rate usually comes to
    lines = [
        draw(line_rows(p, claim_id, i + 1, facility, stay, careful, sloppy, rates))
        for i in range(n)
    ]
    if relation == "copied_lines":  # same items on the same days as the earlier claim
        for ln in draw(st.lists(st.sampled_from(other_lines), min_size=1, max_size=3)):
            copy = {
                k: ln[k]
                for k in ("kind", "item_code", "ordered_at", "quantity", "unit_price", "group_code")
            }
            lines.append(fill_line({**lines[0], **copy, "line_no": len(lines) + 1}))
    claim = fill_claim(claim, lines)
    for col in ("total_hospital", "total_insured"):
        if sloppy and draw(st.booleans()):
            claim[col] += D("0.01")
    for col in ("total_drugs", "total_supplies"):
        if draw(st.integers(0, 3)) == 0:
            claim[col] = draw(
                st.sampled_from([None, claim[col] + D("0.01")]) if sloppy else st.none()
            )
    return claim, lines


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    p = pools()
    made: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for i in range(draw(st.integers(1, 6))):
        made.append(draw(claim_rows(p, f"C{i + 1}", made)))
    return [c for c, _ in made], [ln for _, ls in made for ln in ls]


def make_batch(claims: list[dict[str, Any]], lines: list[dict[str, Any]]) -> Batch:
    def table(rows: list[dict[str, Any]], sch: pa.Schema) -> pa.Table:
        tbl = pa.Table.from_pylist(rows, schema=sch.with_metadata(None))
        return tbl.cast(pa.schema([f.with_nullable(True) for f in tbl.schema]))

    c, ln = table(claims, schema.CLAIMS_SCHEMA), table(lines, schema.LINES_SCHEMA)
    return Batch(c, ln, pa.nulls(c.num_rows, pa.string()), pa.nulls(ln.num_rows, pa.string()), ())


# =====================================================================================
# Engine vs reference
# =====================================================================================


def engine_results(plan: Plan, batch: Batch, reference: dict[str, pa.Table]) -> dict[str, Any]:
    out = engine.run(plan, batch, reference)
    res = adjudicate.build(out, plan, "property")
    # row rules run per claim range on big batches: a few lines per part, same result
    parted = adjudicate.build(engine.run(plan, batch, reference, part_lines=3), plan, "property")
    for name, table in res.tables().items():
        assert parted.tables()[name].equals(table), f"{name} differs when run in parts"
    claims = {}
    for tbl in (res.approved, res.rejected, res.flagged):
        for r in tbl.to_pylist():
            claims[r["claim_id"]] = {
                "decision": r["decision"],
                "reason_codes": list(r["reason_codes"]),
                "eligible": r["eligible"],
                "fund_pays": r["fund_pays"],
                "benefit_rate": r["benefit_rate"],
            }
    lines = {
        line_key(r): {k: r[k] for k in ("decision", "reason_codes", "eligible", "fund_pays")}
        for r in res.lines.to_pylist()
    }
    return {"claims": claims, "lines": lines}


def differences(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """Every field where the engine (got) and the reference (want) disagree."""
    out: list[str] = []
    for level in ("claims", "lines"):
        if set(got[level]) != set(want[level]):
            out.append(
                f"{level}: engine rows {sorted(got[level])}, reference {sorted(want[level])}"
            )
            continue
        for key, w in want[level].items():
            g = got[level][key]
            for field in ("decision", "reason_codes", "eligible", "fund_pays", "benefit_rate"):
                if field not in w:
                    continue
                gv, wv = g[field], w[field]
                same = (
                    gv == wv
                    if field not in ("eligible", "fund_pays", "benefit_rate")
                    else ((gv is None) == (wv is None) and (gv is None or D(gv) == D(wv)))
                )
                if field == "reason_codes":
                    same = list(gv) == sorted(set(gv)) and list(gv) == list(wv)
                if not same:
                    out.append(f"{level[:-1]} {key} {field}: engine {gv!r}, reference {wv!r}")
    return out


def _describe(claims: list[dict[str, Any]], lines: list[dict[str, Any]]) -> str:
    return "\n".join([*(repr(c) for c in claims), *(repr(ln) for ln in lines)])


@functools.cache
def compiled() -> tuple[Plan, dict[str, pa.Table], ReferenceEvaluator]:
    """The pack, the reference tables and a reference evaluator, once per session.

    Hypothesis tests take these from here, not from fixtures: a failing example's
    report would otherwise print the whole reference data.
    """
    plan = compile_pack(ROOT / "rules" / "vn_bhyt")
    reference = pools().reference
    return plan, reference, ReferenceEvaluator(reference, plan.lookups, plan.derived)


@pytest.fixture(scope="module")
def ref_eval() -> ReferenceEvaluator:
    return compiled()[2]


@settings(max_examples=examples(), deadline=None)
@given(data=batches())
def test_engine_matches_reference(data: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> None:
    plan, reference, ref_eval = compiled()
    claims, lines = data
    batch = make_batch(claims, lines)
    got = engine_results(plan, batch, reference)
    want = reference_adjudicate(
        plan, batch.claims.to_pylist(), batch.lines.to_pylist(), reference, ref_eval
    )
    diff = differences(got, want)
    assert not diff, "\n".join(diff) + "\n--- batch:\n" + _describe(claims, lines)


def clean_batch(claims: list[dict[str, Any]], lines: list[dict[str, Any]]) -> Batch:
    full_lines = [fill_line(ln) for ln in lines]
    return make_batch([fill_claim(c, full_lines) for c in claims], full_lines)


def both(
    plan: Plan, batch: Batch, reference: dict[str, pa.Table], ev: ReferenceEvaluator
) -> tuple[dict[str, Any], dict[str, Any]]:
    got = engine_results(plan, batch, reference)
    want = reference_adjudicate(
        plan, batch.claims.to_pylist(), batch.lines.to_pylist(), reference, ev
    )
    return got, want


def test_comparison_detects_a_wrong_result(
    plan: Plan, reference: dict[str, pa.Table], ref_eval: ReferenceEvaluator
) -> None:
    """The comparison can fail: a result off by one cent or one code is reported."""
    above = builders.LINE["unit_price"] + D("0.001")  # 40.17's ceiling is the default price
    batch = clean_batch(
        [{}, {"claim_id": "C2", "card_no": "DN4010123456780", "route": "self_referred"}],
        [{"claim_id": "C1"}, {"claim_id": "C2", "unit_price": above}],
    )
    got, want = both(plan, batch, reference, ref_eval)
    assert differences(got, want) == []
    line = want["lines"][("C2", "drug", 1)]
    assert line["reason_codes"] == ["BENEFIT_RATE_MISMATCH", "PRICE_ABOVE_CEILING"]
    line["fund_pays"] += D("0.01")
    want["claims"]["C1"]["reason_codes"].append("HIGH_COST")
    diff = differences(got, want)
    assert len(diff) == 2
    assert "fund_pays" in diff[0] + diff[1] and "reason_codes" in diff[0] + diff[1]


def test_reference_rounds_half_up_where_half_even_would_not(
    plan: Plan, reference: dict[str, pa.Table], ref_eval: ReferenceEvaluator
) -> None:
    """A half-cent line: the reference agrees with the engine, a half-even one does not."""
    batch = clean_batch([{}], [{"unit_price": D("100.005"), "quantity": D(1)}])
    got, want = both(plan, batch, reference, ref_eval)
    assert got["lines"][("C1", "drug", 1)]["eligible"] == D("100.01")
    assert differences(got, want) == []
    wrong = want["lines"][("C1", "drug", 1)]
    wrong["eligible"] = D("100.005").quantize(D("0.01"), rounding=ROUND_HALF_EVEN)
    assert differences(got, want) == [
        "line ('C1', 'drug', 1) eligible: engine Decimal('100.01'), reference Decimal('100.00')"
    ]


def test_reference_sees_card_holders_across_claims(
    plan: Plan, reference: dict[str, pa.Table], ref_eval: ReferenceEvaluator
) -> None:
    """The same person (other group letters), facility and admission: C2 is a duplicate."""
    batch = clean_batch(
        [{}, {"claim_id": "C2", "card_no": "HT3" + builders.CLAIM["card_no"][3:]}],
        [{"claim_id": "C1"}, {"claim_id": "C2"}],
    )
    got, want = both(plan, batch, reference, ref_eval)
    assert differences(got, want) == []
    assert want["claims"]["C1"]["decision"] == "approved"
    assert want["claims"]["C2"]["decision"] == "rejected"
    assert {"DUPLICATE_CLAIM", "DUPLICATE_LINE"} <= set(want["claims"]["C2"]["reason_codes"])


# --- the pack's benefit rate vs contract section 6 written by hand -------------------


def _pack_and_contract_rates(
    plan: Plan, reference: dict[str, pa.Table], ev: ReferenceEvaluator, batch: Batch
) -> list[tuple[dict[str, Any], Decimal | None, Decimal]]:
    """(claim, pack rate, contract rate) for every claim that is not rejected."""
    claim_rows_, line_rows_ = batch.claims.to_pylist(), batch.lines.to_pylist()
    want = reference_adjudicate(plan, claim_rows_, line_rows_, reference, ev)
    out = []
    for c in claim_rows_:
        w = want["claims"][c["claim_id"]]
        if w["decision"] == "rejected":
            continue
        scope = RefScope(c, [ln for ln in line_rows_ if ln["claim_id"] == c["claim_id"]])
        facility = ev.lookup_row("facility", scope)
        salary = ev.lookup_row("base_salary", scope)
        rate = contract_benefit_rate(
            c,
            facility["level"] if facility else None,
            w["eligible"],
            salary["amount"] if salary else None,
        )
        out.append((c, w["benefit_rate"], rate))
    return out


@settings(max_examples=examples(0.5), deadline=None)
@given(data=batches())
def test_pack_benefit_rate_follows_contract(
    data: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    """The pack's benefit.rate is contract section 6 (written out by hand in reference_eval)."""
    plan, reference, ref_eval = compiled()
    for claim, pack_rate, contract_rate in _pack_and_contract_rates(
        plan, reference, ref_eval, make_batch(*data)
    ):
        assert pack_rate == contract_rate, (claim, pack_rate, contract_rate)


def test_self_referred_at_commune(
    plan: Plan, reference: dict[str, pa.Table], ref_eval: ReferenceEvaluator
) -> None:
    """Commune-level care is paid at 100% on every route (section 6): a case the pack missed."""
    batch = clean_batch(
        [{"facility_id": "01201", "route": "self_referred"}],  # commune; card digit 4: 80%
        [{"quantity": D(100)}],  # not low-cost
    )
    ((_, pack_rate, contract_rate),) = _pack_and_contract_rates(plan, reference, ref_eval, batch)
    assert pack_rate == contract_rate == D(100)


# =====================================================================================
# Expression level: kernels.evaluate vs ReferenceEvaluator
# =====================================================================================

CLAIM_COLUMNS: dict[str, pa.DataType] = {
    "a": pa.decimal128(18, 2),
    "b": pa.decimal128(13, 3),
    "i": pa.int16(),
    "d": pa.date32(),
    "d2": pa.date32(),
    "ts": pa.timestamp("s"),
    "ts2": pa.timestamp("s"),
    "s": pa.string(),
    "s2": pa.string(),
    "f": pa.bool_(),
}
LINE_COLUMNS: dict[str, pa.DataType] = {
    "q": pa.decimal128(13, 3),
    "n": pa.int16(),
    "lts": pa.timestamp("s"),
    "code": pa.string(),
}
NUM_FIELDS = {"claim": ["a", "b", "i"], "line": ["q", "n"]}
STR_FIELDS = {"claim": ["s", "s2"], "line": ["code"]}
TS_FIELDS = {"claim": ["ts", "ts2"], "line": ["lts"]}


def _scope(level: str) -> Scope:
    return Scope(
        level,
        {k: t.from_arrow(v) for k, v in CLAIM_COLUMNS.items()},
        {k: t.from_arrow(v) for k, v in LINE_COLUMNS.items()},
    )


def _fields(table: dict[str, list[str]], level: str) -> list[str]:
    return table["claim"] + (table["line"] if level == "line" else [])


NUM_LITERALS = ["0", "1", "2", "3", "7", "10", "100", "1000", "2.5", "0.005", "0.5", "-3", "-0.01"]
STR_LITERALS = ["''", "'a'", "'A'", "'01001'", "'Đà'", "'x y'"]
DATE_LITERALS = ["2024-12-31", "2025-01-01", "2025-01-02", "1969-12-31"]


@functools.cache
def num_expr(level: str, depth: int) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(_fields(NUM_FIELDS, level)) | st.sampled_from(NUM_LITERALS)
    if depth <= 0:
        return leaves
    sub = num_expr(level, depth - 1)
    cond = bool_expr(level, depth - 1)
    parts: list[st.SearchStrategy[str]] = [
        leaves,
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/"]), sub).map(
            lambda x: f"({x[0]} {x[1]} {x[2]})"
        ),
        st.tuples(sub, st.sampled_from(["10", "100", "1000"])).map(lambda x: f"({x[0]} / {x[1]})"),
        sub.map(lambda x: f"-({x})"),
        st.tuples(sub, st.integers(0, 3)).map(lambda x: f"round({x[0]}, {x[1]})"),
        sub.map(lambda x: f"abs({x})"),
        st.tuples(st.sampled_from(["coalesce", "least", "greatest"]), sub, sub).map(
            lambda x: f"{x[0]}({x[1]}, {x[2]})"
        ),
        st.tuples(cond, sub, sub).map(lambda x: f"if({x[0]}, {x[1]}, {x[2]})"),
        str_expr(level, 0).map(lambda x: f"length({x})"),
        st.tuples(date_expr(level, 0), date_expr(level, 0)).map(
            lambda x: f"days_between({x[0]}, {x[1]})"
        ),
        st.tuples(ts_expr(level, 0), ts_expr(level, 0)).map(
            lambda x: f"minutes_between({x[0]}, {x[1]})"
        ),
        st.just("null"),
    ]
    if level == "claim":
        inner = num_expr("line", depth - 1)
        where = bool_expr("line", depth - 1)
        parts += [
            st.tuples(st.sampled_from(["sum", "min", "max"]), inner).map(
                lambda x: f"{x[0]}(lines, {x[1]})"
            ),
            st.tuples(st.sampled_from(["sum", "min", "max"]), inner, where).map(
                lambda x: f"{x[0]}(lines, {x[1]}, {x[2]})"
            ),
            st.just("count(lines)"),
            where.map(lambda x: f"count(lines, {x})"),
        ]
    return st.one_of(parts)


@functools.cache
def bool_expr(level: str, depth: int) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["f", "true", "false", "null"])
    if depth <= 0:
        return leaves
    sub = bool_expr(level, depth - 1)
    num = num_expr(level, depth - 1)
    cmp = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    parts: list[st.SearchStrategy[str]] = [
        leaves,
        st.tuples(num, cmp, num).map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
        st.tuples(date_expr(level, depth - 1), cmp, date_expr(level, depth - 1)).map(
            lambda x: f"({x[0]} {x[1]} {x[2]})"
        ),
        st.tuples(ts_expr(level, depth - 1), cmp, ts_expr(level, depth - 1)).map(
            lambda x: f"({x[0]} {x[1]} {x[2]})"
        ),
        st.tuples(str_expr(level, depth - 1), cmp, str_expr(level, depth - 1)).map(
            lambda x: f"({x[0]} {x[1]} {x[2]})"
        ),
        st.tuples(sub, st.sampled_from(["and", "or"]), sub).map(
            lambda x: f"({x[0]} {x[1]} {x[2]})"
        ),
        st.tuples(sub, sub, sub).map(lambda x: f"({x[0]} and {x[1]} or not {x[2]})"),
        sub.map(lambda x: f"not ({x})"),
        st.tuples(num, st.lists(st.sampled_from(NUM_LITERALS), min_size=1, max_size=3)).map(
            lambda x: f"({x[0]} in [{', '.join(x[1])}])"
        ),
        st.tuples(
            st.sampled_from(_fields(STR_FIELDS, level)),
            st.lists(st.sampled_from(STR_LITERALS), min_size=1, max_size=3),
            st.booleans(),
        ).map(lambda x: f"({x[0]} {'not ' if x[2] else ''}in [{', '.join(x[1])}])"),
        st.tuples(
            st.sampled_from([*_fields(NUM_FIELDS, level), "d", "ts", "s", "f"]), st.booleans()
        ).map(lambda x: f"({x[0]} is {'not ' if x[1] else ''}null)"),
        st.tuples(num, num, num).map(lambda x: f"({x[0]} between {x[1]} and {x[2]})"),
        st.tuples(
            st.sampled_from(["starts_with", "ends_with", "contains"]),
            st.sampled_from(_fields(STR_FIELDS, level)),
            st.sampled_from(["a", "A", "0", "Đ", ""]),
        ).map(lambda x: f"{x[0]}({x[1]}, '{x[2]}')"),
        st.tuples(
            st.sampled_from(_fields(STR_FIELDS, level)),
            st.sampled_from(["[0-9]+", "[a-z]*", ".", "x y|a"]),
        ).map(lambda x: f"matches({x[0]}, '{x[1]}')"),
    ]
    if level == "claim":
        where = bool_expr("line", depth - 1)
        parts.append(
            st.tuples(st.sampled_from(["any", "all"]), where).map(
                lambda x: f"{x[0]}(lines, {x[1]})"
            )
        )
    return st.one_of(parts)


@functools.cache
def date_expr(level: str, depth: int) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["d", "d2", *DATE_LITERALS]) | st.sampled_from(
        _fields(TS_FIELDS, level)
    ).map(lambda x: f"date_of({x})")
    if depth <= 0:
        return leaves
    sub = date_expr(level, depth - 1)
    return st.one_of(
        leaves,
        st.tuples(st.sampled_from(["coalesce", "least", "greatest"]), sub, sub).map(
            lambda x: f"{x[0]}({x[1]}, {x[2]})"
        ),
        st.tuples(bool_expr(level, depth - 1), sub, sub).map(
            lambda x: f"if({x[0]}, {x[1]}, {x[2]})"
        ),
    )


@functools.cache
def ts_expr(level: str, depth: int) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(_fields(TS_FIELDS, level))
    if depth <= 0:
        return leaves
    sub = ts_expr(level, depth - 1)
    parts = [
        leaves,
        st.tuples(st.sampled_from(["coalesce", "least", "greatest"]), sub, sub).map(
            lambda x: f"{x[0]}({x[1]}, {x[2]})"
        ),
        st.tuples(bool_expr(level, depth - 1), sub, sub).map(
            lambda x: f"if({x[0]}, {x[1]}, {x[2]})"
        ),
    ]
    if level == "claim":
        parts.append(st.sampled_from(["min(lines, lts)", "max(lines, lts)"]))
    return st.one_of(parts)


@functools.cache
def str_expr(level: str, depth: int) -> st.SearchStrategy[str]:
    leaves = st.sampled_from(_fields(STR_FIELDS, level)) | st.sampled_from(STR_LITERALS)
    if depth <= 0:
        return leaves
    sub = str_expr(level, depth - 1)
    return st.one_of(
        leaves,
        st.tuples(st.sampled_from(["upper", "lower"]), sub).map(lambda x: f"{x[0]}({x[1]})"),
        st.tuples(sub, st.integers(0, 2), st.integers(0, 3)).map(
            lambda x: f"substring({x[0]}, {x[1]}, {x[2]})"
        ),
        st.tuples(sub, st.integers(0, 3)).map(lambda x: f"right({x[0]}, {x[1]})"),
        st.tuples(sub, sub).map(lambda x: f"coalesce({x[0]}, {x[1]})"),
        st.tuples(bool_expr(level, depth - 1), sub, sub).map(
            lambda x: f"if({x[0]}, {x[1]}, {x[2]})"
        ),
    )


@st.composite
def expressions(draw: st.DrawFn) -> tuple[str, str]:
    level = draw(st.sampled_from(["claim", "line"]))
    depth = draw(st.integers(1, 3))
    maker: Callable[[str, int], st.SearchStrategy[str]] = draw(
        st.sampled_from([num_expr, num_expr, bool_expr, bool_expr, date_expr, ts_expr, str_expr])
    )
    return level, draw(maker(level, depth))


EPOCH_DT = datetime(1970, 1, 1)
TS_EDGES = [
    datetime(2024, 12, 31, 23, 59, 59),
    datetime(2025, 1, 1, 0, 0, 0),
    datetime(2025, 1, 1, 0, 0, 59),
    datetime(2025, 1, 1, 0, 1, 0),
    datetime(1969, 12, 31, 23, 59, 30),
]
NUM_EDGES = [D(0), D("0.005"), D("-0.005"), D("0.5"), D("-0.5"), D("1e9"), D("-1e12"), D("1e12")]


@functools.cache
def _cell(col: str, ty: pa.DataType) -> st.SearchStrategy[Any]:
    if pa.types.is_decimal(ty):
        places = ty.scale
        fits = [
            x
            for x in NUM_EDGES
            if abs(x) < 10 ** (ty.precision - places) and x == x.quantize(D(1).scaleb(-places))
        ]
        val = st.sampled_from(fits) | (
            st.decimals(D(-1000), D(1000), places=places, allow_nan=False, allow_infinity=False)
        )
    elif pa.types.is_integer(ty):
        val = st.integers(-100, 100)
    elif pa.types.is_date(ty):
        val = st.dates(date(2024, 12, 29), date(2025, 1, 4)) | st.just(date(1969, 12, 31))
    elif pa.types.is_timestamp(ty):
        val = st.sampled_from(TS_EDGES) | st.integers(-3 * 86400, 3 * 86400).map(
            lambda s: datetime(2025, 1, 1) + timedelta(seconds=s)
        )
    elif pa.types.is_boolean(ty):
        val = st.booleans()
    else:
        val = st.sampled_from(["", "a", "A", "ab", "Đà", "01001", "x y", "aZ0"])
    return st.none() | val


@st.composite
def row_tables(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    n_claims = draw(st.integers(1, 4))
    claims = [{c: draw(_cell(c, ty)) for c, ty in CLAIM_COLUMNS.items()} for _ in range(n_claims)]
    n_lines = draw(st.integers(0, 7))
    lines = [{c: draw(_cell(c, ty)) for c, ty in LINE_COLUMNS.items()} for _ in range(n_lines)]
    owners = [draw(st.integers(0, n_claims - 1)) for _ in range(n_lines)]
    return claims, lines, owners


def engine_values(v: V.Vec, ty: t.Type, n: int) -> list[Any]:
    """An evaluated Vec as Python values (Decimal, date, datetime, str, bool, None)."""
    if v.is_arrow:
        return list(V.to_arrow(v, n).to_pylist())
    data, valid = V.full(v, n), V.valid_mask(v, n)
    out: list[Any] = []
    for x, ok in zip(data, valid, strict=True):
        if not ok or ty.kind == "null":
            out.append(None)
        elif ty.kind == "num":
            out.append(scaled(int(x), ty.scale))
        elif ty.kind == "bool":
            out.append(bool(x))
        elif ty.kind == "date":
            out.append(evaluate.EPOCH + timedelta(days=int(x)))
        else:
            out.append(EPOCH_DT + timedelta(seconds=int(x)))
    return out


def evaluate_both(
    text: str,
    level: str,
    claims: list[dict[str, Any]],
    lines: list[dict[str, Any]],
    owners: list[int],
    reference: ReferenceEvaluator | None = None,
) -> tuple[ir.Expr, list[Any], list[Any]]:
    """The expression's values per row of ``level``: engine, then reference."""
    e = Checker(_scope(level)).check(parse(text))
    ct = pa.Table.from_pylist(claims, schema=pa.schema(CLAIM_COLUMNS))
    lt = pa.Table.from_pylist(lines, schema=pa.schema(LINE_COLUMNS))
    ctx = evaluate.Context({}, {}, {})
    cev, lev = evaluate.Evaluator.pair(ct, lt, np.asarray(owners, dtype=np.int64), ctx)
    ev = cev if level == "claim" else lev
    got = engine_values(ev.eval(e), e.type, ev.n)
    ref = reference or ReferenceEvaluator()
    lines_of = [
        [ln for ln, o in zip(lines, owners, strict=True) if o == k] for k in range(len(claims))
    ]
    if level == "claim":
        want = [ref.eval(e, RefScope(c, lines_of[k])) for k, c in enumerate(claims)]
    else:
        want = [
            ref.eval(e, RefScope(claims[o], lines_of[o], ln))
            for ln, o in zip(lines, owners, strict=True)
        ]
    return e, got, want


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


@settings(max_examples=examples(8), deadline=None)
@given(expr=expressions(), rows=row_tables())
def test_expression_matches_reference(
    expr: tuple[str, str],
    rows: tuple[list[dict[str, Any]], list[dict[str, Any]], list[int]],
) -> None:
    level, text = expr
    claims, lines, owners = rows
    try:
        e, got, want = evaluate_both(text, level, claims, lines, owners)
    except ExprError:
        assume(False)  # e.g. more than 18 decimals: the checker refuses it
        raise
    bad = [(k, g, w) for k, (g, w) in enumerate(zip(got, want, strict=True)) if not _same(g, w)]
    assert not bad, f"{text} (type {e.type}) at {level} level: (row, engine, reference) {bad}"


def test_expression_comparison_detects_a_wrong_evaluator() -> None:
    """A reference that truncates divisions disagrees with the engine on 2 / 3."""

    class Truncating(ReferenceEvaluator):
        def _arith(self, e: ir.Arith, scope: RefScope) -> Decimal | None:
            if e.op == "/":
                a, b = self.eval(e.left, scope), self.eval(e.right, scope)
                if a is None or b is None or b == 0:
                    return None
                return (a / b).quantize(D(1).scaleb(-e.type.scale), rounding="ROUND_DOWN")
            return super()._arith(e, scope)

    claims = [{c: None for c in CLAIM_COLUMNS} | {"i": 2}]
    _, got, want = evaluate_both("i / 3", "claim", claims, [], [])
    assert got == want == [D("0.6667")]
    _, got, wrong = evaluate_both("i / 3", "claim", claims, [], [], Truncating())
    assert got != wrong and wrong == [D("0.6666")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-(i) / 3", D("-0.6667")),  # half-up away from zero, also for negatives
        ("round(-(a), 1)", D("-1.3")),  # a = 1.25
        ("a / 0", None),
        ("null and false", False),
        ("null or true", True),
        ("least(null, i)", D(2)),
        ("sum(lines, q)", D(0)),
        ("min(lines, q)", None),
        ("all(lines, q > 0)", True),
        ("i in [2.0, 5]", True),
    ],
)
def test_documented_semantics(text: str, expected: Any) -> None:
    claims = [{c: None for c in CLAIM_COLUMNS} | {"i": 2, "a": D("1.25")}]
    _, got, want = evaluate_both(text, "claim", claims, [], [])
    assert _same(got[0], expected) and _same(want[0], expected), (got, want)
