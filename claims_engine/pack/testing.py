"""Rule-pack tests as data, run with the real engine.

Two kinds of test live with a pack:

* **Cases**, in ``rules/<pack>/tests/*.yaml``: a list of cases, each one claim::

      - name: card valid to the admission day is not expired
        claim: {card_valid_to: 2025-03-10}           # overrides of the clean default claim
        lines: [{unit_price: 8860.001}]               # overrides of the clean default line,
                                                      # one per line (default: one clean line)
        expect:
          decision: approved                          # approved | rejected | flagged
          codes: []                                   # the claim's reason codes, exactly
          fund_pays: "17720.00"                       # optional, exact (quoted)
          eligible: "17720.00"                        # optional, exact (quoted)
          benefit_rate: 100                           # optional
          lines:                                      # optional, per line
            - {line_no: 1, decision: paid, codes: [], fund_pays: "17720.00"}

  A line expectation names its line by ``line_no`` (and ``kind`` when two lines
  share a number; ``claim_id`` for an orphan line).  An optional ``note:`` is
  printed when the case fails.

* **Inline tests** of a rule (``tests:`` in its rule file): ``given`` overrides the
  claim, ``lines`` is optional as above, and ``expect`` is the list of codes *this*
  rule produces on that claim (``[]`` for a near miss).

Every test is written to a batch folder and goes through the production path:
the batch reader (so a bad value is MALFORMED exactly as in a hospital's file),
``engine.run`` and ``adjudicate.build``, against a reference folder (by default
the bundled demo reference data).

Fields a test leaves out come from a clean default claim (``CLAIM``, ``LINE``):
declared amounts (line amount_hospital, amount_insured, fund_pays, patient_copay;
claim totals, total_drugs, total_supplies) follow the contract's formulas with
Python ``Decimal`` rounded half-up, treatment_days follows QĐ130 (0 for visit
types 1, 7, 9, else discharge day - admission day + 1), a line's claim_id is the
claim's, its ordered_at the admission time, and line numbers count per kind.
A value given as ``null`` stays null.  The declared benefit_rate is 100 unless
given (the default claim is low-cost, so 100 is right for it).

``fill_line``, ``fill_claim``, ``tables`` and ``batch`` are the same defaults for
Python tests (``tests/builders.py`` re-exports them).
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import yaml

from claims_engine import adjudicate, engine, schema
from claims_engine.errors import ClaimsEngineError, ReferenceDataError
from claims_engine.io.batch import Batch, read_batch
from claims_engine.lang.errors import did_you_mean
from claims_engine.pack.loader import PackSource, find_pack, read_pack
from claims_engine.pack.models import CODE_PATTERN, RuleModel
from claims_engine.pack.source import PosDict, PosList, Where, load_yaml
from claims_engine.plan.compiler import compile_source
from claims_engine.plan.plan import Plan

CENT = Decimal("0.01")
TESTS_FOLDER = "tests"

# --- the clean default claim ---------------------------------------------------

CLAIM: dict[str, Any] = {
    "claim_id": "C1",
    "facility_id": "01101",  # district level, Hà Nội
    "patient_id": "P1",
    "card_no": "DN4010123456789",  # group DN, benefit digit 4 (80%), province 01
    "registered_facility": "01101",
    "card_valid_from": date(2025, 1, 1),
    "card_valid_to": date(2025, 12, 31),
    "five_years_from": None,
    "copay_exempt_from": None,
    "birth_date": date(1980, 5, 1),
    "sex": 1,
    "visit_type": 1,
    "route": "registered",
    "admitted_at": datetime(2025, 3, 10, 8, 0),
    "inpatient_at": None,
    "discharged_at": datetime(2025, 3, 10, 11, 0),
    # treatment_days: from the visit type and the dates unless given
    "primary_dx": "J18.9",
    "secondary_dx": None,
}

LINE: dict[str, Any] = {
    "claim_id": "C1",
    "line_no": 1,
    "kind": "drug",
    "group_code": 4,
    "item_code": "40.17",  # all-facility drug, ceiling 8860.000, coverage 100
    "quantity": Decimal("2"),
    "unit_price": Decimal("8860.000"),
    "hospital_unit_price": None,
    "service_rate": 100,
    "coverage_rate": 100,
    "benefit_rate": 100,  # low cost: below 15% of the base salary, so 100%
    "ordered_at": datetime(2025, 3, 10, 9, 0),
    "performed_at": None,
    "department": "K01",
    "practitioner": "BS001",
}

ZERO_DAY_VISITS = (1, 7, 9)  # QĐ130 SO_NGAY_DTRI is 0 for these visit types


def half_up(x: Decimal) -> Decimal:
    return x.quantize(CENT, rounding=ROUND_HALF_UP)


def _num(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None


def _wanted(given: Mapping[str, Any], key: str, keep_nulls: bool) -> bool:
    """Whether ``key`` is to be filled in: not given (or given as null, unless kept)."""
    return key not in given or (given[key] is None and not keep_nulls)


def fill_line(
    line: Mapping[str, Any], claim: Mapping[str, Any] | None = None, *, keep_nulls: bool = False
) -> dict[str, Any]:
    """The default line with ``line``'s overrides and consistent declared amounts.

    With ``claim``, claim_id and ordered_at default to the claim's id and admission
    time.  Amounts left out (or null, unless ``keep_nulls``) are computed from the
    declared quantity, prices and rates; they stay null if those are not numbers.
    """
    out = {**LINE, **line}
    if claim is not None:
        for key, source in (("claim_id", "claim_id"), ("ordered_at", "admitted_at")):
            if key not in line:
                out[key] = claim.get(source)
    q, up = _num(out["quantity"]), _num(out["unit_price"])
    hup = _num(out["hospital_unit_price"]) if out["hospital_unit_price"] is not None else up
    sr, cr, br = _num(out["service_rate"]), _num(out["coverage_rate"]), _num(out["benefit_rate"])
    if _wanted(line, "amount_hospital", keep_nulls):
        out["amount_hospital"] = _product(q, hup, sr)
    if _wanted(line, "amount_insured", keep_nulls):
        out["amount_insured"] = _product(q, up, sr, cr)
    insured = _num(out["amount_insured"])
    if _wanted(line, "fund_pays", keep_nulls):
        out["fund_pays"] = None if insured is None or br is None else half_up(insured * br / 100)
    fund = _num(out["fund_pays"])
    if _wanted(line, "patient_copay", keep_nulls):
        out["patient_copay"] = None if insured is None or fund is None else insured - fund
    return out


def _product(
    quantity: Decimal | None, price: Decimal | None, *rates: Decimal | None
) -> Decimal | None:
    """quantity x price x each percent rate / 100, rounded half-up to cents (None if any
    is None)."""
    if quantity is None or price is None:
        return None
    out = quantity * price
    for rate in rates:
        if rate is None:
            return None
        out = out * rate / 100
    return half_up(out)


def treatment_days(visit_type: Any, admitted_at: Any, discharged_at: Any) -> int | None:
    """QĐ130 SO_NGAY_DTRI: 0 for visit types 1, 7, 9, else discharge day - admission day + 1."""
    if visit_type in ZERO_DAY_VISITS:
        return 0
    if not (isinstance(admitted_at, datetime) and isinstance(discharged_at, datetime)):
        return None
    return (discharged_at.date() - admitted_at.date()).days + 1


def _total(lines: Iterable[Mapping[str, Any]], key: str) -> Decimal | None:
    total = Decimal(0)
    for ln in lines:
        value = _num(ln.get(key))
        if value is None:
            return None
        total += value
    return total


def fill_claim(
    claim: Mapping[str, Any], lines: Sequence[Mapping[str, Any]], *, keep_nulls: bool = False
) -> dict[str, Any]:
    """The default claim with ``claim``'s overrides; totals are the sums of its lines.

    treatment_days left out follows QĐ130 from the visit type and the dates (given
    as null it stays null); totals left out (or null, unless ``keep_nulls``) are
    the sums of the lines' declared amounts.
    """
    out = {**CLAIM, **claim}
    mine = [ln for ln in lines if ln.get("claim_id") == out["claim_id"]]
    hosp, ins = _total(mine, "amount_hospital"), _total(mine, "amount_insured")
    copay = _total(mine, "patient_copay")
    defaults: dict[str, Any] = {
        "total_hospital": hosp,
        "total_insured": ins,
        "patient_copay": copay,
        "patient_pays": None if hosp is None or ins is None else hosp - ins,
        "fund_pays": None if ins is None or copay is None else ins - copay,
        "total_drugs": _total([ln for ln in mine if ln.get("kind") == "drug"], "amount_hospital"),
        "total_supplies": _total(
            [ln for ln in mine if ln.get("kind") == "supply"], "amount_hospital"
        ),
    }
    for key, value in defaults.items():
        if _wanted(claim, key, keep_nulls):
            out[key] = value
    if "treatment_days" not in claim:
        out["treatment_days"] = treatment_days(
            out["visit_type"], out["admitted_at"], out["discharged_at"]
        )
    return out


def _nullable(table: pa.Table) -> pa.Table:
    return table.cast(pa.schema([f.with_nullable(True) for f in table.schema]))


def tables(
    claims: list[dict[str, Any]] | None = None, lines: list[dict[str, Any]] | None = None
) -> tuple[pa.Table, pa.Table]:
    """Claims and lines tables in the contract's types (one clean claim by default)."""
    claims = claims if claims is not None else [{}]
    if lines is None:
        lines = [{"claim_id": c.get("claim_id", CLAIM["claim_id"])} for c in claims]
    full_lines = [fill_line(ln) for ln in lines]
    full_claims = [fill_claim(c, full_lines) for c in claims]
    claims_t = (
        pa.Table.from_pylist(full_claims, schema=schema.CLAIMS_SCHEMA.with_metadata(None))
        if full_claims
        else schema.CLAIMS_SCHEMA.empty_table()
    )
    lines_t = (
        pa.Table.from_pylist(full_lines, schema=schema.LINES_SCHEMA)
        if full_lines
        else schema.LINES_SCHEMA.empty_table()
    )
    return _nullable(claims_t), _nullable(lines_t)


def batch(
    claims: list[dict[str, Any]] | None = None, lines: list[dict[str, Any]] | None = None
) -> Batch:
    """An in-memory batch of ``tables(claims, lines)`` (no reader, no bad values)."""
    c, ln = tables(claims, lines)
    return Batch(c, ln, pa.nulls(c.num_rows, pa.string()), pa.nulls(ln.num_rows, pa.string()), ())


# --- test cases ------------------------------------------------------------------


class CaseError(ClaimsEngineError):
    """A test case file (or a rule's inline test) cannot be used (exit 2)."""


CLAIM_DECISIONS = schema.DECISIONS
LINE_DECISIONS = schema.LINE_DECISIONS
CASE_KEYS = ("name", "claim", "lines", "expect", "note")
EXPECT_KEYS = ("decision", "codes", "fund_pays", "eligible", "benefit_rate", "lines")
LINE_EXPECT_KEYS = ("line_no", "kind", "claim_id", "decision", "codes", "fund_pays", "eligible")


@dataclass(frozen=True)
class LineExpect:
    claim_id: str
    kind: str | None
    line_no: int
    decision: str | None = None
    codes: tuple[str, ...] | None = None
    fund_pays: Decimal | None = None
    eligible: Decimal | None = None

    @property
    def label(self) -> str:
        kind = f"{self.kind} " if self.kind else ""
        return f"line {kind}#{self.line_no}" + (f" of {self.claim_id}" if self.claim_id else "")


@dataclass(frozen=True)
class Expect:
    decision: str | None = None
    codes: tuple[str, ...] | None = None
    fund_pays: Decimal | None = None
    eligible: Decimal | None = None
    benefit_rate: Decimal | None = None
    lines: tuple[LineExpect, ...] = ()
    rule_codes: tuple[str, ...] | None = None  # inline tests: the codes of ``Case.rule``


@dataclass(frozen=True)
class Case:
    """One test: a claim and its lines (defaults filled in), and what must come out."""

    name: str
    where: Where
    claim: dict[str, Any]
    lines: tuple[dict[str, Any], ...]
    expect: Expect
    rule: str | None = None  # inline test of this rule id
    note: str = ""

    @property
    def id(self) -> str:
        """A stable name: ``<file stem>::<case name>`` (or ``<rule id> #n`` for inline tests)."""
        return f"{self.where.file.stem}::{self.name}" if self.rule is None else self.name


@dataclass(frozen=True)
class Outcome:
    """What the engine made of a case's claim."""

    decision: str | None
    codes: tuple[str, ...]
    fund_pays: Decimal | None
    eligible: Decimal | None
    benefit_rate: Decimal | None
    lines: tuple[dict[str, Any], ...]
    reasons: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CaseResult:
    case: Case
    problems: tuple[str, ...]
    outcome: Outcome

    @property
    def passed(self) -> bool:
        return not self.problems

    def report(self) -> str:
        """The differences (expected vs got) and the claim's reasons, for a failed case."""
        head = f"{self.case.id} ({self.case.where})"
        if self.passed:
            return f"PASS {head}"
        out = [f"FAIL {head}"]
        if self.case.note:
            out.append(f"  note: {self.case.note}")
        out += [f"  {p}" for p in self.problems]
        if self.outcome.reasons:
            out.append("  reasons:")
            for r in self.outcome.reasons:
                at = f"{r['kind']} #{r['line_no']}" if r["line_no"] is not None else "claim"
                out.append(
                    f"    {r['code']} ({r['severity']}, {r['rule_id']}, {at}): {r['message']}"
                )
        return "\n".join(out)


@dataclass(frozen=True)
class Suite:
    """A compiled pack and every test that goes with it."""

    folder: Path
    plan: Plan
    cases: tuple[Case, ...]

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(sorted({c.where.file for c in self.cases if c.rule is None}))


# --- reading values --------------------------------------------------------------

_TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


class _Bad(Exception):
    """A value that does not fit its field (turned into a CaseError with a location)."""


def _kind_of(value: Any) -> str:
    return {
        bool: "true/false",
        int: "number",
        float: "number",
        str: "text",
        date: "date",
        datetime: "timestamp",
        list: "list",
    }.get(type(value), type(value).__name__)


def _value(column: schema.Column, value: Any) -> Any:
    """A YAML value as the Python value of ``column``'s type (None stays None)."""
    if value is None:
        return None
    ty = column.type
    if pa.types.is_string(ty):
        if not isinstance(value, str):
            raise _Bad(
                f"YAML read {value!r} as a {_kind_of(value)}; codes are text: quote the code "
                "as written (unquoted, 01101 is read as the octal number 577 and 40.10 as 40.1)"
            )
        return value
    if pa.types.is_integer(ty):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"expected a whole number, got {value!r}")
        return value
    if pa.types.is_decimal(ty):
        if isinstance(value, bool | date) or not isinstance(value, int | float | str | Decimal):
            raise _Bad(f"expected a number, got {value!r}")
        number = _num(value.strip() if isinstance(value, str) else value)
        if number is None or not number.is_finite():
            raise _Bad(f"expected a number, got {value!r}")
        return number
    if pa.types.is_timestamp(ty):
        if isinstance(value, datetime):
            return value  # a zoned one is converted to Vietnam time by the reader
        if isinstance(value, str):
            for fmt in _TIMESTAMP_FORMATS:
                try:
                    return datetime.strptime(value.strip(), fmt)
                except ValueError:
                    continue
            if value.strip()[10:11] in ("T", " "):  # with a zone, e.g. +07:00
                try:
                    return datetime.fromisoformat(value.strip())
                except ValueError:
                    pass
        raise _Bad(f"expected a timestamp such as '2025-03-10 08:00', got {value!r}")
    if pa.types.is_date(ty):
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise _Bad(f"expected a date such as 2025-03-10, got {value!r}")
    if pa.types.is_list(ty):
        if isinstance(value, str):
            return [v.strip() for v in value.split(";") if v.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise _Bad(f"expected a list of codes such as [J30, I10], got {value!r}")
    raise _Bad(f"unsupported column type {ty}")  # pragma: no cover


def _fields(raw: Any, level: str, where: Where, label: str) -> dict[str, Any]:
    """A mapping of claim or line fields, checked against the contract's columns."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise CaseError(f"{where}: {label}: expected a mapping of {level} fields, got {raw!r}")
    columns = schema.CLAIM_COLUMN_BY_NAME if level == "claim" else schema.LINE_COLUMN_BY_NAME
    other = schema.LINE_COLUMN_BY_NAME if level == "claim" else schema.CLAIM_COLUMN_BY_NAME
    out: dict[str, Any] = {}
    for key, value in raw.items():
        at = raw.where.get(key, where) if isinstance(raw, PosDict) else where
        name = str(key)
        if name not in columns:
            if name in other:
                place = "under lines:" if level == "claim" else "under claim: (or given:)"
                other_level = "line" if level == "claim" else "claim"
                hint = f" '{name}' is a {other_level} field: give it {place}"
            else:
                hint = did_you_mean(name, columns)
            raise CaseError(f"{at}: {label}: unknown {level} field '{name}'.{hint}")
        try:
            out[name] = _value(columns[name], value)
        except _Bad as exc:
            raise CaseError(f"{at}: {label}: {level}.{name}: {exc}") from None
    return out


def _money(value: Any, at: Where, label: str, key: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise CaseError(
            f"{at}: {label}: {key}: write the amount as quoted text, e.g. "
            f"'{Decimal(repr(value)):.2f}' (a YAML number may lose digits)"
        )
    number = _num(value) if isinstance(value, int | str) and not isinstance(value, bool) else None
    if number is None or not number.is_finite():
        raise CaseError(
            f"{at}: {label}: {key}: expected an amount such as '1234.50', got {value!r}"
        )
    return number


def _codes(value: Any, at: Where, label: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise CaseError(
            f"{at}: {label}: {key}: expected a list of reason codes such as "
            f"[CARD_EXPIRED] (or [] for none), got {value!r}"
        )
    for c in value:
        if not re.match(CODE_PATTERN, c):
            raise CaseError(
                f"{at}: {label}: {key}: '{c}' is not a reason code (CAPITALS_AND_UNDERSCORES)"
            )
    repeated = [c for c, n in Counter(value).items() if n > 1]
    if repeated:
        raise CaseError(f"{at}: {label}: {key}: {repeated[0]} is listed twice")
    return tuple(sorted(value))


def _keys(raw: PosDict, allowed: Sequence[str], at: Where, label: str, what: str) -> None:
    for key in raw:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed)
            raise CaseError(
                f"{raw.where.get(key, at)}: {label}: unknown key '{key}' in "
                f"{what}.{hint} (allowed: {', '.join(allowed)})"
            )


def _choice(value: Any, allowed: Sequence[str], at: Where, label: str, key: str) -> str:
    if value not in allowed:
        raise CaseError(
            f"{at}: {label}: {key}: expected one of {', '.join(allowed)}, got {value!r}"
        )
    return str(value)


# --- building a case ---------------------------------------------------------------


def _build(
    claim_over: dict[str, Any], line_overs: list[dict[str, Any]] | None
) -> tuple[dict[str, Any], tuple[dict[str, Any], ...]]:
    """The full claim and lines of a test: overrides on the clean defaults."""
    claim_base = {**CLAIM, **claim_over}
    overs = line_overs if line_overs is not None else [{}]
    numbers: Counter[str] = Counter()
    lines = []
    for over in overs:
        kind = over.get("kind", LINE["kind"])
        numbers[str(kind)] += 1
        own = dict(over)
        own.setdefault("line_no", numbers[str(kind)])
        lines.append(fill_line(own, claim_base, keep_nulls=True))
    full_claim = fill_claim(claim_over, lines, keep_nulls=True)
    return full_claim, tuple(lines)


def _line_expectations(
    raw: Any, at: Where, label: str, claim: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]
) -> tuple[LineExpect, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise CaseError(
            f"{at}: {label}: expect.lines: expected a list of "
            "{line_no, decision, codes, fund_pays}"
        )
    out = []
    wheres = raw.where if isinstance(raw, PosList) else [at] * len(raw)
    for item, w in zip(raw, wheres, strict=True):
        if not isinstance(item, PosDict):
            raise CaseError(
                f"{w}: {label}: expect.lines: expected a mapping such as "
                f"{{line_no: 1, decision: paid}}, got {item!r}"
            )
        _keys(item, LINE_EXPECT_KEYS, w, label, "a line expectation")
        line_no = item.get("line_no")
        if isinstance(line_no, bool) or not isinstance(line_no, int):
            raise CaseError(f"{w}: {label}: expect.lines: line_no (a whole number) is required")
        kind = item.get("kind")
        if kind is not None:
            kind = _choice(kind, schema.LINE_KINDS, w, label, "expect.lines.kind")
        claim_id = item.get("claim_id", claim["claim_id"])
        if not isinstance(claim_id, str):
            raise CaseError(f"{w}: {label}: expect.lines.claim_id: expected text, got {claim_id!r}")
        matches = [
            ln
            for ln in lines
            if ln.get("claim_id") == claim_id
            and ln.get("line_no") == line_no
            and (kind is None or ln.get("kind") == kind)
        ]
        if len(matches) != 1:
            what = "no line" if not matches else f"{len(matches)} lines (give kind:)"
            raise CaseError(
                f"{w}: {label}: expect.lines: line_no {line_no}"
                f"{f' kind {kind}' if kind else ''} of claim {claim_id} matches "
                f"{what}"
            )
        decision = item.get("decision")
        out.append(
            LineExpect(
                claim_id=claim_id,
                kind=kind,
                line_no=line_no,
                decision=None
                if decision is None
                else _choice(decision, LINE_DECISIONS, w, label, "expect.lines.decision"),
                codes=None
                if "codes" not in item
                else _codes(item["codes"], w, label, "expect.lines.codes"),
                fund_pays=_money(item.get("fund_pays"), w, label, "expect.lines.fund_pays"),
                eligible=_money(item.get("eligible"), w, label, "expect.lines.eligible"),
            )
        )
    return tuple(out)


def _line_overrides(raw: Any, at: Where, label: str, key: str) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise CaseError(
            f"{at}: {label}: {key}: expected a list of line overrides, e.g. "
            "[{unit_price: 9000}] ([] for a claim with no lines)"
        )
    wheres = raw.where if isinstance(raw, PosList) else [at] * len(raw)
    return [
        _fields(item if item is not None else {}, "line", w, f"{label}, {key}[{i}]")
        for i, (item, w) in enumerate(zip(raw, wheres, strict=True))
    ]


def _case(raw: Any, where: Where, names: dict[str, Where]) -> Case:
    if not isinstance(raw, PosDict):
        raise CaseError(
            f"{where}: expected a case (a mapping with name, claim, lines, expect), got {raw!r}"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise CaseError(f"{where}: a case needs a name: (text)")
    label = f"case '{name}'"
    if name in names:
        raise CaseError(f"{where}: {label} is defined twice in this file (first at {names[name]})")
    names[name] = where
    _keys(raw, CASE_KEYS, where, label, "a case")
    claim_over = _fields(raw.get("claim"), "claim", raw.where.get("claim", where), label)
    line_overs = _line_overrides(raw.get("lines"), raw.where.get("lines", where), label, "lines")
    claim, lines = _build(claim_over, line_overs)
    exp = raw.get("expect")
    at = raw.where.get("expect", where)
    if not isinstance(exp, PosDict):
        raise CaseError(f"{at}: {label}: expect: is required: {{decision: ..., codes: [...]}}")
    _keys(exp, EXPECT_KEYS, at, label, "expect")
    for key in ("decision", "codes"):
        if key not in exp:
            raise CaseError(f"{at}: {label}: expect.{key} is required")
    rate = exp.get("benefit_rate")
    if rate is not None and (isinstance(rate, bool | float) or _num(rate) is None):
        raise CaseError(
            f"{at}: {label}: expect.benefit_rate: expected a whole or quoted number, got {rate!r}"
        )
    expect = Expect(
        decision=_choice(exp["decision"], CLAIM_DECISIONS, at, label, "expect.decision"),
        codes=_codes(exp["codes"], at, label, "expect.codes"),
        fund_pays=_money(exp.get("fund_pays"), at, label, "expect.fund_pays"),
        eligible=_money(exp.get("eligible"), at, label, "expect.eligible"),
        benefit_rate=None if rate is None else _num(rate),
        lines=_line_expectations(exp.get("lines"), at, label, claim, lines),
    )
    note = raw.get("note", "")
    return Case(name, where, claim, lines, expect, None, str(note or ""))


def load_case_file(path: Path) -> list[Case]:
    """The cases of one file (a YAML list of cases); CaseError on the first problem."""
    from claims_engine.errors import PackError

    try:
        doc = load_yaml(path)
    except PackError as exc:
        raise CaseError(exc.message) from None
    except ValueError as exc:  # a scalar YAML cannot build, such as the date 2025-02-30
        raise CaseError(f"{_bad_scalar(path) or path}: not a valid value: {exc}") from None
    if doc is None:
        return []
    if not isinstance(doc, PosList):
        raise CaseError(f"{path}: expected a list of cases (- name: ..., claim: ..., expect: ...)")
    names: dict[str, Where] = {}
    return [_case(item, w, names) for item, w in zip(doc, doc.where, strict=True)]


def _bad_scalar(path: Path) -> str | None:
    """``file:line:column: case 'name'`` of the first scalar YAML cannot build."""
    loader = yaml.SafeLoader("")
    root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    tops = root.value if isinstance(root, yaml.SequenceNode) else [root]
    for top in tops:
        name = ""
        if isinstance(top, yaml.MappingNode):
            name = next(
                (
                    v.value
                    for k, v in top.value
                    if k.value == "name" and isinstance(v, yaml.ScalarNode)
                ),
                "",
            )
        nodes = [top]
        while nodes:
            node = nodes.pop(0)
            if isinstance(node, yaml.ScalarNode):
                try:
                    loader.construct_object(node)
                except ValueError:
                    at = f"{path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
                    return f"{at}: case '{name}'" if name else at
            elif isinstance(node, yaml.MappingNode):
                nodes += [n for pair in node.value for n in pair]
            elif isinstance(node, yaml.SequenceNode):
                nodes += list(node.value)
    return None


def case_files(folder: Path) -> list[Path]:
    tests = folder / TESTS_FOLDER
    return sorted(tests.glob("*.yaml")) if tests.is_dir() else []


def inline_cases(source: PackSource) -> list[Case]:
    """Each rule's ``tests:`` as cases that check only that rule's codes."""
    out: list[Case] = []
    for item in source.items:
        rule = item.model
        if not isinstance(rule, RuleModel) or not rule.tests:
            continue
        raw_tests = item.raw.get("tests")
        wheres = (
            raw_tests.where
            if isinstance(raw_tests, PosList)
            else [item.where("tests")] * len(rule.tests)
        )
        raws = list(raw_tests) if isinstance(raw_tests, PosList) else [None] * len(rule.tests)
        for i, (test, w, raw) in enumerate(zip(rule.tests, wheres, raws, strict=True)):
            label = f"rule {rule.id}, test {i + 1}"
            given_raw = raw.get("given") if isinstance(raw, PosDict) else test.given
            given_at = raw.where.get("given", w) if isinstance(raw, PosDict) else w
            claim_over = _fields(given_raw, "claim", given_at, label)
            lines_raw = raw.get("lines") if isinstance(raw, PosDict) else test.lines
            lines_at = raw.where.get("lines", w) if isinstance(raw, PosDict) else w
            line_overs = _line_overrides(lines_raw, lines_at, label, "lines")
            codes = _codes(list(test.expect), w, label, "expect")
            wrong = [c for c in codes if c != rule.code]
            if wrong:
                raise CaseError(
                    f"{w}: {label}: expect: rule {rule.id} only produces "
                    f"{rule.code}, not {wrong[0]} ([{rule.code}] for a hit, [] "
                    "for a near miss)"
                )
            claim, lines = _build(claim_over, line_overs)
            out.append(
                Case(f"{rule.id} #{i + 1}", w, claim, lines, Expect(rule_codes=codes), rule.id)
            )
    return out


def load_suite(pack: str | Path = "vn_bhyt") -> Suite:
    """Compile ``pack`` and read its case files and inline rule tests."""
    source = read_pack(find_pack(pack))
    plan = compile_source(source)
    cases: list[Case] = inline_cases(source)
    for path in case_files(source.folder):
        cases += load_case_file(path)
    return Suite(source.folder, plan, tuple(cases))


# --- running ------------------------------------------------------------------------


def bundled_reference_dir() -> Path:
    """The bundled demo reference data (as ``claims-engine demo`` finds it)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (
        here / "_bundled" / "fixtures" / "reference",
        here.parent / "fixtures" / "reference",
    ):
        if candidate.is_dir():
            return candidate
    raise ReferenceDataError("the bundled demo reference data is missing from this installation")


def _text(value: Any) -> Any:
    """A value as the text a hospital's file would hold (lists stay lists)."""
    if value is None or isinstance(value, str | list):
        return value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ") if value.tzinfo else value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _batch_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[schema.Column]) -> pa.Table:
    """Rows as a table for the batch reader: each column in its contract type, or as
    text when a value does not fit that type (too many decimals, a whole number out
    of range, a zoned time), so the reader judges it as it would a hospital's file."""
    arrays = {}
    for col in columns:
        values = [r.get(col.name) for r in rows]
        try:
            if any(isinstance(v, datetime) and v.tzinfo for v in values):
                raise pa.ArrowInvalid("zoned")
            arrays[col.name] = pa.array(values, type=col.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            ty = pa.list_(pa.string()) if pa.types.is_list(col.type) else pa.string()
            arrays[col.name] = pa.array([_text(v) for v in values], type=ty)
    return pa.table(arrays)


def write_case_batch(case: Case, folder: Path) -> Path:
    """The case as a batch folder: claims.arrow and lines.arrow (Arrow IPC files)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in (
        ("claims", _batch_table([case.claim], schema.CLAIM_COLUMNS)),
        ("lines", _batch_table(case.lines, schema.LINE_COLUMNS)),
    ):
        with ipc.new_file(str(folder / f"{name}.arrow"), table.schema) as writer:
            writer.write_table(table)
    return folder


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def adjudicate_case(
    case: Case, plan: Plan, reference: dict[str, pa.Table], folder: Path | None = None
) -> Outcome:
    """Run the case's claim through the reader, the engine and the adjudicator."""
    with tempfile.TemporaryDirectory(prefix="claims-engine-case-") as tmp:
        batch_dir = write_case_batch(case, folder or Path(tmp))
        try:
            result = adjudicate.build(
                engine.run(plan, read_batch(batch_dir), reference), plan, "rules-test"
            )
        except ClaimsEngineError as exc:  # e.g. reference data not covering the case's dates
            what = f"rule {case.rule}, test {case.name}" if case.rule else f"case '{case.name}'"
            raise CaseError(f"{case.where}: {what}: {exc.message}") from None
    cid = case.claim.get("claim_id")
    row: dict[str, Any] | None = None
    for table in (result.approved, result.rejected, result.flagged):
        for r in table.to_pylist():
            if r["claim_id"] == cid:
                row = r
    lines = tuple(result.lines.to_pylist())
    reasons = tuple(result.reasons.to_pylist())  # the batch is this one case
    if row is None:
        return Outcome(None, (), None, None, None, lines, reasons)
    return Outcome(
        row["decision"],
        tuple(row["reason_codes"] or ()),
        _dec(row["fund_pays"]),
        _dec(row["eligible"]),
        _dec(row.get("benefit_rate")),
        lines,
        reasons,
    )


def _show(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _differ(problems: list[str], what: str, expected: Any, got: Any) -> None:
    if expected is not None and expected != got:
        problems.append(f"{what}: expected {_show(expected)}, got {_show(got)}")


def check_case(case: Case, outcome: Outcome) -> list[str]:
    """The differences between what the case expects and what came out."""
    problems: list[str] = []
    exp = case.expect
    if case.rule is not None:
        got = tuple(sorted({r["code"] for r in outcome.reasons if r["rule_id"] == case.rule}))
        _differ(problems, f"codes of rule {case.rule}", exp.rule_codes, got)
        return problems
    if outcome.decision is None:
        return [f"claim {case.claim.get('claim_id')} is missing from the outputs"]
    _differ(problems, "decision", exp.decision, outcome.decision)
    _differ(problems, "codes", exp.codes, outcome.codes)
    _differ(problems, "fund_pays", exp.fund_pays, outcome.fund_pays)
    _differ(problems, "eligible", exp.eligible, outcome.eligible)
    _differ(problems, "benefit_rate", exp.benefit_rate, outcome.benefit_rate)
    for le in exp.lines:
        found = [
            ln
            for ln in outcome.lines
            if ln["claim_id"] == le.claim_id
            and ln["line_no"] == le.line_no
            and (le.kind is None or ln["kind"] == le.kind)
        ]
        if len(found) != 1:
            problems.append(f"{le.label}: {len(found)} such lines in the outputs")
            continue
        ln = found[0]
        _differ(problems, f"{le.label} decision", le.decision, ln["decision"])
        _differ(problems, f"{le.label} codes", le.codes, tuple(ln["reason_codes"] or ()))
        _differ(problems, f"{le.label} fund_pays", le.fund_pays, _dec(ln["fund_pays"]))
        _differ(problems, f"{le.label} eligible", le.eligible, _dec(ln["eligible"]))
    return problems


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the engine's parallel kernels on one thread while testing.

    A test batch holds one claim: starting a pool of threads for each kernel costs
    far more than the work (tens of milliseconds per lookup on a busy machine).
    """
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def run_case(case: Case, plan: Plan, reference: dict[str, pa.Table]) -> CaseResult:
    """Run one case and compare what came out with what it expects."""
    with single_threaded():
        outcome = adjudicate_case(case, plan, reference)
    return CaseResult(case, tuple(check_case(case, outcome)), outcome)


@dataclass
class SuiteRun:
    suite: Suite
    results: list[CaseResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


def run_suite(suite: Suite, reference: dict[str, pa.Table], match: str | None = None) -> SuiteRun:
    run = SuiteRun(suite)
    with single_threaded():
        for case in suite.cases:
            if match is None or match.lower() in case.id.lower():
                run.results.append(run_case(case, suite.plan, reference))
    return run


__all__ = [
    "CLAIM",
    "LINE",
    "Case",
    "CaseError",
    "CaseResult",
    "Expect",
    "LineExpect",
    "Outcome",
    "Suite",
    "SuiteRun",
    "batch",
    "bundled_reference_dir",
    "case_files",
    "fill_claim",
    "fill_line",
    "half_up",
    "inline_cases",
    "load_case_file",
    "load_suite",
    "run_case",
    "run_suite",
    "tables",
    "treatment_days",
    "write_case_batch",
]
