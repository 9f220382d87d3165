"""The core `vn_bhyt` rules as DuckDB SQL: a speed baseline and a second opinion.

The same Parquet batch and the same reference files as the engine, the same
contract (shared/spec/CONTRACT.md sections 2, 5 and 6), written the way a data
engineer would write it in SQL, independently of the engine's code:

- MALFORMED (the structural part: a null in a required column, a value outside
  its enumeration, a negative quantity, price, rate or amount, a claim without
  lines, a claim_id on several rows; Parquet types make casting errors impossible);
- the card: CARD_FORMAT, CARD_GROUP_UNKNOWN, CARD_PROVINCE_UNKNOWN,
  CARD_NOT_YET_VALID, CARD_EXPIRED (15 days of grace for inpatient stays),
  CARD_BLOCKED;
- DX_UNKNOWN, DATES_ORDER, LINE_DATE_OUTSIDE_STAY;
- the catalogue: ITEM_NOT_IN_CATALOGUE (rows valid on the date of service,
  facility-specific rows winning over all-facility rows, then the latest
  valid_from), PRICE_ABOVE_CEILING, COVERAGE_RATE_MISMATCH;
- money (section 6): eligible per line at the ceiling and the catalogue's
  coverage rate, the benefit rate (card digit; commune, low-cost and exemption
  raises; self-referred multipliers with the 2021-01-01 cut-over), fund_pays per
  line and claim, BENEFIT_RATE_MISMATCH and HIGH_COST on claims not rejected;
- the card holder (the last 10 characters of card_no; contract section 5), over
  the claims and lines that are not MALFORMED, "earlier" by (admitted_at,
  claim_id), window functions over this batch (no history): DUPLICATE_CLAIM (same
  holder, facility and admitted_at as an earlier claim), DUPLICATE_LINE (same
  holder, item, date of service and facility as a line of an earlier claim; a
  rejected line, which rejects its claim only when every line is rejected) and
  OVERLAPPING_STAY (an inpatient stay admitted before the latest discharge of the
  holder's earlier inpatient stays; a flag).  The duplicate windows (rank() > 1)
  only see the keys that more than one row shares (a GROUP BY ... HAVING count(*)
  > 1 first): ranking every claim and line costs about twice as much.

Money is DECIMAL all the way (DuckDB would turn a decimal division into DOUBLE,
so there is none: "/ 100" is "* 0.01"); ROUND on a DECIMAL rounds half away from
zero, which is half up for the non-negative amounts here.

FREQUENCY_LIMIT (a card-holder rule over a sliding window of days and the optional
`frequency_limits` table) is not here, nor the pack's other rules (amounts, stay,
diagnosis conflicts).

`run(batch, reference)` loads the tables (timed as "load"), evaluates (timed as
"query": the data already in DuckDB tables) and returns one row per claim:
claim_id, reason_codes (sorted distinct, the claim's and its lines'), rejected,
eligible, fund_pays, benefit_rate.  As a command (what the benchmark times in a
child process):

    python -m benchmarks.duckdb_baseline BATCH --reference DIR --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from claims_engine.fixtures.detection import Agreement, claim_code_pairs, compare_outcomes

# The codes this SQL computes.
CODES = (
    "MALFORMED",
    "CARD_FORMAT",
    "CARD_GROUP_UNKNOWN",
    "CARD_PROVINCE_UNKNOWN",
    "CARD_NOT_YET_VALID",
    "CARD_EXPIRED",
    "CARD_BLOCKED",
    "DX_UNKNOWN",
    "DATES_ORDER",
    "LINE_DATE_OUTSIDE_STAY",
    "ITEM_NOT_IN_CATALOGUE",
    "PRICE_ABOVE_CEILING",
    "COVERAGE_RATE_MISMATCH",
    "DUPLICATE_CLAIM",
    "DUPLICATE_LINE",
    "OVERLAPPING_STAY",
    "BENEFIT_RATE_MISMATCH",
    "HIGH_COST",
)
# Evaluated on claims that are not rejected only: they depend on the decision.
DECISION_DEPENDENT = ("BENEFIT_RATE_MISMATCH", "HIGH_COST")

GRACE_DAYS = 15
LOW_COST_SHARE = "0.15"
HIGH_COST_THRESHOLD = 50_000_000
CUTOVER = "2021-01-01"
ROUTES = ("registered", "referral", "emergency", "open_access", "self_referred")
KINDS = ("drug", "service", "supply")

CLAIM_COLUMNS = (
    "claim_id", "facility_id", "card_no", "card_valid_from", "card_valid_to",
    "copay_exempt_from", "birth_date", "sex", "visit_type", "route", "admitted_at",
    "inpatient_at", "discharged_at", "treatment_days", "total_drugs", "total_supplies",
    "primary_dx", "total_hospital", "total_insured", "patient_copay", "patient_pays",
    "fund_pays",
)  # fmt: skip
LINE_COLUMNS = (
    "claim_id", "line_no", "kind", "item_code", "quantity", "unit_price",
    "hospital_unit_price", "service_rate", "coverage_rate", "benefit_rate",
    "amount_hospital", "amount_insured", "fund_pays", "patient_copay", "ordered_at",
)  # fmt: skip

# Reference tables: name -> (column, SQL type) pairs used here.
REFERENCE = {
    "facilities": (("facility_id", "VARCHAR"), ("level", "VARCHAR")),
    "drugs": (
        ("facility_id", "VARCHAR"), ("item_code", "VARCHAR"),
        ("max_unit_price", "DECIMAL(18,3)"), ("coverage_rate", "SMALLINT"),
    ),
    "icd10": (("code", "VARCHAR"),),
    "card_groups": (("group_code", "VARCHAR"),),
    "provinces": (("province_code", "VARCHAR"),),
    "base_salary": (("amount", "DECIMAL(18,2)"),),
    "blocked_cards": (("card_no", "VARCHAR"),),
}  # fmt: skip
REFERENCE["services"] = REFERENCE["supplies"] = REFERENCE["drugs"]


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET preserve_insertion_order = false")
    return con


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _find(folder: Path, name: str) -> Path:
    for suffix in (".parquet", ".csv"):
        if (folder / f"{name}{suffix}").exists():
            return folder / f"{name}{suffix}"
    raise FileNotFoundError(f"{folder}: no {name}.parquet or {name}.csv")


def _source(path: Path) -> str:
    if path.suffix == ".parquet":
        return f"read_parquet({_quote(path)})"
    # Every column as text (codes keep their zeros), an empty field is null.
    return f"read_csv({_quote(path)}, header = true, all_varchar = true)"


def _reference_select(con: duckdb.DuckDBPyConnection, path: Path, name: str) -> str:
    """SELECT of a reference file: the columns used, cast, and the validity columns
    (null when the file has none)."""
    source = _source(path)
    present = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    columns = [*REFERENCE[name], ("valid_from", "DATE"), ("valid_to", "DATE")]
    parts = []
    for col, sql_type in columns:
        if col in present:
            value = f"NULLIF(CAST({col} AS VARCHAR), '')" if path.suffix == ".csv" else col
            parts.append(f"CAST({value} AS {sql_type}) AS {col}")
        else:
            parts.append(f"CAST(NULL AS {sql_type}) AS {col}")
    return f"SELECT {', '.join(parts)} FROM {source}"


def load(con: duckdb.DuckDBPyConnection, batch: Path, reference: Path) -> None:
    """Batch and reference data into DuckDB tables."""
    con.execute(
        f"CREATE OR REPLACE TABLE claims AS SELECT {', '.join(CLAIM_COLUMNS)} "
        f"FROM read_parquet({_quote(batch / 'claims.parquet')})"
    )
    con.execute(
        f"CREATE OR REPLACE TABLE lines AS SELECT {', '.join(LINE_COLUMNS)} "
        f"FROM read_parquet({_quote(batch / 'lines.parquet')})"
    )
    for name in ("facilities", "icd10", "card_groups", "provinces", "base_salary", "blocked_cards"):
        select = _reference_select(con, _find(reference, name), name)
        con.execute(f"CREATE OR REPLACE TABLE ref_{name} AS {select}")
    parts = [
        f"SELECT '{kind}' AS kind, * FROM ({_reference_select(con, _find(reference, name), name)})"
        for kind, name in (("drug", "drugs"), ("service", "services"), ("supply", "supplies"))
    ]
    # One catalogue; prio orders the rows valid on a day: facility-specific first,
    # then the latest valid_from (an open start is the earliest).
    con.execute(
        "CREATE OR REPLACE TABLE ref_catalogue AS "
        "SELECT row_number() OVER () AS rid, *, "
        "(CASE WHEN facility_id IS NULL THEN 0 ELSE 1000000 END) "
        "+ COALESCE(date_diff('day', DATE '1800-01-01', valid_from), 0) AS prio "
        f"FROM ({' UNION ALL '.join(parts)})"
    )


def _valid(alias: str, day: str) -> str:
    return (
        f"({alias}.valid_from IS NULL OR {alias}.valid_from <= {day}) "
        f"AND ({alias}.valid_to IS NULL OR {day} <= {alias}.valid_to)"
    )


def _quoted(values: Collection[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


QUERIES = [
    # --- MALFORMED: the structural checks of contract section 1 ---------------------
    f"""
    CREATE OR REPLACE TEMP TABLE bad_claims AS
    SELECT DISTINCT claim_id FROM (
        SELECT claim_id FROM claims
        WHERE facility_id IS NULL OR card_no IS NULL OR card_valid_from IS NULL
           OR card_valid_to IS NULL OR birth_date IS NULL OR sex IS NULL
           OR visit_type IS NULL OR route IS NULL OR admitted_at IS NULL
           OR discharged_at IS NULL OR primary_dx IS NULL OR total_hospital IS NULL
           OR total_insured IS NULL OR patient_copay IS NULL OR patient_pays IS NULL
           OR fund_pays IS NULL
           OR sex NOT IN (1, 2, 3) OR visit_type NOT BETWEEN 1 AND 9
           OR route NOT IN ({_quoted(ROUTES)})
           OR treatment_days < 0 OR total_drugs < 0 OR total_supplies < 0
           OR total_hospital < 0 OR total_insured < 0 OR patient_copay < 0
           OR patient_pays < 0 OR fund_pays < 0
        UNION ALL
        SELECT claim_id FROM claims GROUP BY claim_id HAVING count(*) > 1
        UNION ALL
        SELECT claim_id FROM claims ANTI JOIN lines USING (claim_id)
        UNION ALL
        SELECT claim_id FROM lines
        WHERE line_no IS NULL OR kind IS NULL OR item_code IS NULL OR quantity IS NULL
           OR unit_price IS NULL OR service_rate IS NULL OR coverage_rate IS NULL
           OR benefit_rate IS NULL OR amount_hospital IS NULL OR amount_insured IS NULL
           OR fund_pays IS NULL OR patient_copay IS NULL
           OR kind NOT IN ({_quoted(KINDS)})
           OR quantity < 0 OR unit_price < 0 OR hospital_unit_price < 0
           OR service_rate < 0 OR coverage_rate < 0 OR benefit_rate < 0
           OR amount_hospital < 0 OR amount_insured < 0 OR fund_pays < 0
           OR patient_copay < 0
    ) WHERE claim_id IS NOT NULL
    """,
    # --- the claims every other rule sees, with their claim-level lookups -----------
    f"""
    CREATE OR REPLACE TEMP TABLE c AS
    WITH base AS (
        SELECT cl.claim_id, cl.facility_id, cl.card_no, cl.route, cl.primary_dx,
               cl.card_valid_from, cl.card_valid_to, cl.copay_exempt_from,
               cl.admitted_at, cl.inpatient_at, cl.discharged_at,
               cl.visit_type IN (3, 4) AS inpatient,
               right(cl.card_no, 10) AS holder,
               CAST(cl.admitted_at AS DATE) AS adm_day,
               regexp_full_match(cl.card_no, '[A-Z]{{2}}[1-5][0-9]{{2}}[0-9]{{10}}') AS card_ok
        FROM claims cl ANTI JOIN bad_claims USING (claim_id)
    ), days AS (  -- the base salary in force, per admission day
        SELECT d.adm_day,
               (SELECT arg_max(s.amount, s.valid_from) FROM ref_base_salary s
                 WHERE {_valid("s", "d.adm_day")}) AS salary
        FROM (SELECT DISTINCT adm_day FROM base) d
    ), levels AS (  -- the facility's level on the admission day
        SELECT b.facility_id, b.adm_day,
               arg_max(f.level, COALESCE(f.valid_from, DATE '1800-01-01')) AS level
        FROM (SELECT DISTINCT facility_id, adm_day FROM base) b
        JOIN ref_facilities f ON f.facility_id = b.facility_id AND {_valid("f", "b.adm_day")}
        GROUP BY b.facility_id, b.adm_day
    ), shared AS (  -- (holder, facility, admission time) of several claims
        SELECT holder, facility_id, admitted_at FROM base
        WHERE holder IS NOT NULL AND facility_id IS NOT NULL AND admitted_at IS NOT NULL
        GROUP BY ALL HAVING count(*) > 1
    ), duplicates AS (  -- DUPLICATE_CLAIM: such a claim is earlier (by claim_id here)
        SELECT claim_id FROM (
            SELECT claim_id, rank() OVER (PARTITION BY holder, facility_id, admitted_at
                                         ORDER BY claim_id) AS earlier
            FROM base SEMI JOIN shared USING (holder, facility_id, admitted_at))
        WHERE earlier > 1
    ), stays AS (  -- OVERLAPPING_STAY: admitted before the latest discharge of the
        -- holder's earlier inpatient stays.  (admitted_at, claim_id) is unique (a
        -- claim_id on several rows is MALFORMED): the rows before are the earlier ones.
        SELECT claim_id,
               admitted_at < max(discharged_at) OVER (
                   PARTITION BY holder ORDER BY admitted_at, claim_id
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS overlapping
        FROM base WHERE inpatient AND holder IS NOT NULL
    )
    SELECT base.*, days.salary, levels.level,
           d.claim_id IS NOT NULL AS duplicate,
           COALESCE(stays.overlapping, false) AS overlapping
    FROM base LEFT JOIN days USING (adm_day) LEFT JOIN levels USING (facility_id, adm_day)
    LEFT JOIN stays USING (claim_id) LEFT JOIN duplicates d USING (claim_id)
    """,
    # --- lines: date of service, catalogue row, what the line rules see -------------
    f"""
    CREATE OR REPLACE TEMP TABLE lv AS
    WITH l AS (
        SELECT li.rowid AS lid, li.claim_id, li.kind, li.item_code, li.quantity,
               li.unit_price, li.service_rate, li.coverage_rate, li.benefit_rate,
               li.ordered_at, c.facility_id, c.adm_day, c.discharged_at,
               c.holder, c.admitted_at,
               COALESCE(CAST(li.ordered_at AS DATE), c.adm_day) AS dos
        FROM lines li JOIN c USING (claim_id)
    ), best AS (  -- the catalogue row that applies: facility first, latest valid_from
        SELECT l.lid, arg_max(k.rid, k.prio) AS rid
        FROM l JOIN ref_catalogue k
          ON k.kind = l.kind AND k.item_code = l.item_code
         AND (k.facility_id IS NULL OR k.facility_id = l.facility_id)
         AND {_valid("k", "l.dos")}
        GROUP BY l.lid
    ), shared AS (  -- (holder, item, day of service, facility) of several lines
        SELECT holder, item_code, dos, facility_id FROM l
        WHERE holder IS NOT NULL AND item_code IS NOT NULL AND dos IS NOT NULL
          AND facility_id IS NOT NULL
        GROUP BY ALL HAVING count(*) > 1
    ), duplicates AS (  -- DUPLICATE_LINE: such a line of an earlier claim exists (the
        -- lines of one claim tie: the same rank; only the earliest claim's rank is 1)
        SELECT lid FROM (
            SELECT lid, rank() OVER (PARTITION BY holder, item_code, dos, facility_id
                                     ORDER BY admitted_at, claim_id) AS earlier
            FROM l SEMI JOIN shared USING (holder, item_code, dos, facility_id))
        WHERE earlier > 1
    )
    SELECT l.lid, l.claim_id, l.quantity, l.service_rate, l.benefit_rate,
           k.rid IS NULL AS not_listed,
           COALESCE(CAST(l.ordered_at AS DATE) < l.adm_day
                    OR l.ordered_at > l.discharged_at, false) AS outside,
           COALESCE(l.unit_price > k.max_unit_price, false) AS above,
           COALESCE(l.coverage_rate <> k.coverage_rate, false) AS coverage_differs,
           LEAST(l.unit_price, COALESCE(k.max_unit_price, l.unit_price)) AS price,
           k.coverage_rate AS catalogue_coverage,
           d.lid IS NOT NULL AS duplicate
    FROM l LEFT JOIN best b USING (lid) LEFT JOIN ref_catalogue k ON k.rid = b.rid
    LEFT JOIN duplicates d USING (lid)
    """,
    # --- claim hits, decisions, money, and the outcome: one row per claim -----------
    f"""
    CREATE OR REPLACE TABLE outcome AS
    WITH claim_hits AS (
        SELECT claim_id, 'CARD_FORMAT' AS code FROM c WHERE NOT card_ok
        UNION ALL
        SELECT claim_id, 'CARD_GROUP_UNKNOWN' FROM c
        WHERE card_ok AND NOT EXISTS (
            SELECT 1 FROM ref_card_groups g
            WHERE g.group_code = substr(c.card_no, 1, 2) AND {_valid("g", "c.adm_day")})
        UNION ALL
        SELECT claim_id, 'CARD_PROVINCE_UNKNOWN' FROM c
        WHERE card_ok AND NOT EXISTS (
            SELECT 1 FROM ref_provinces p
            WHERE p.province_code = substr(c.card_no, 4, 2) AND {_valid("p", "c.adm_day")})
        UNION ALL
        SELECT claim_id, 'CARD_NOT_YET_VALID' FROM c WHERE adm_day < card_valid_from
        UNION ALL
        SELECT claim_id, 'CARD_EXPIRED' FROM c
        WHERE adm_day > card_valid_to
           OR (inpatient
               AND date_diff('day', card_valid_to, CAST(discharged_at AS DATE)) > {GRACE_DAYS})
        UNION ALL
        SELECT claim_id, 'CARD_BLOCKED' FROM c
        WHERE EXISTS (
            SELECT 1 FROM ref_blocked_cards b
            WHERE b.card_no = c.card_no AND {_valid("b", "c.adm_day")})
        UNION ALL
        SELECT claim_id, 'DX_UNKNOWN' FROM c
        WHERE NOT EXISTS (
            SELECT 1 FROM ref_icd10 i
            WHERE i.code = c.primary_dx AND {_valid("i", "c.adm_day")})
        UNION ALL
        SELECT claim_id, 'DATES_ORDER' FROM c
        WHERE discharged_at < admitted_at OR inpatient_at < admitted_at
           OR inpatient_at > discharged_at
        UNION ALL
        SELECT claim_id, 'DUPLICATE_CLAIM' FROM c WHERE duplicate
    ), claim_flags AS (  -- flags: no effect on the decision
        SELECT claim_id, 'OVERLAPPING_STAY' AS code FROM c WHERE overlapping
    ), line_hits AS (
        SELECT claim_id, 'ITEM_NOT_IN_CATALOGUE' AS code FROM lv WHERE not_listed
        UNION ALL SELECT claim_id, 'LINE_DATE_OUTSIDE_STAY' FROM lv WHERE outside
        UNION ALL SELECT claim_id, 'PRICE_ABOVE_CEILING' FROM lv WHERE above
        UNION ALL SELECT claim_id, 'COVERAGE_RATE_MISMATCH' FROM lv WHERE coverage_differs
        UNION ALL SELECT claim_id, 'DUPLICATE_LINE' FROM lv WHERE duplicate
    ), paid_claims AS (  -- not rejected: no claim-level reject, some line not rejected
        SELECT claim_id FROM lv WHERE NOT (not_listed OR outside OR duplicate)
        EXCEPT SELECT claim_id FROM claim_hits
    ), line_money AS (  -- eligible per line (section 6), lines not rejected
        SELECT lv.claim_id, lv.benefit_rate,
               CAST(ROUND(CAST(lv.quantity * lv.price AS DECIMAL(38,6))
                          * (lv.service_rate * lv.catalogue_coverage) * 0.0001, 2)
                    AS DECIMAL(18,2)) AS eligible
        FROM lv SEMI JOIN paid_claims USING (claim_id)
        WHERE NOT (lv.not_listed OR lv.outside OR lv.duplicate)
    ), rated AS (  -- the benefit rate of each claim not rejected
        SELECT c.claim_id, m.eligible,
               CASE substr(c.card_no, 3, 1) WHEN '1' THEN 100 WHEN '2' THEN 100
                    WHEN '3' THEN 95 WHEN '4' THEN 80 WHEN '5' THEN 100 ELSE 0
               END AS card_rate,
               CASE WHEN c.inpatient THEN
                        CASE c.level WHEN 'central' THEN 40
                             WHEN 'provincial' THEN
                                  CASE WHEN c.adm_day < DATE '{CUTOVER}' THEN 60 ELSE 100 END
                             ELSE 100 END
                    ELSE CASE WHEN c.level IN ('central', 'provincial') THEN 0 ELSE 100 END
               END AS multiplier,
               c.route, c.level, c.salary, c.copay_exempt_from, c.adm_day
        FROM c JOIN (SELECT claim_id, sum(eligible) AS eligible FROM line_money
                     GROUP BY claim_id) m USING (claim_id)
    ), claim_rate AS (
        SELECT claim_id, eligible,
               CAST(CASE
                   WHEN route = 'self_referred' THEN
                        (CASE WHEN level = 'commune' THEN 100 ELSE card_rate END)
                        * multiplier * 0.01
                   WHEN level = 'commune' OR eligible < salary * {LOW_COST_SHARE}
                        OR copay_exempt_from <= adm_day THEN 100
                   ELSE card_rate
               END AS DECIMAL(5,2)) AS rate
        FROM rated
    ), line_fund AS (
        SELECT m.claim_id, m.benefit_rate, r.rate,
               ROUND(m.eligible * r.rate * 0.01, 2) AS fund
        FROM line_money m JOIN claim_rate r USING (claim_id)
    ), claim_money AS (
        SELECT r.claim_id, r.eligible, r.rate, f.fund AS fund_pays
        FROM claim_rate r
        JOIN (SELECT claim_id, sum(fund) AS fund FROM line_fund GROUP BY claim_id) f
        USING (claim_id)
    ), hits AS (
        SELECT claim_id, 'MALFORMED' AS code FROM bad_claims
        UNION ALL SELECT claim_id, code FROM claim_hits
        UNION ALL SELECT claim_id, code FROM claim_flags
        UNION ALL SELECT claim_id, code FROM line_hits
        UNION ALL SELECT DISTINCT claim_id, 'BENEFIT_RATE_MISMATCH' FROM line_fund
                  WHERE benefit_rate <> rate
        UNION ALL SELECT claim_id, 'HIGH_COST' FROM claim_money
                  WHERE fund_pays > {HIGH_COST_THRESHOLD}
    ), codes AS (
        SELECT claim_id, list_sort(list_distinct(list(code))) AS reason_codes
        FROM hits GROUP BY claim_id
    )
    SELECT cl.claim_id,
           COALESCE(codes.reason_codes, []::VARCHAR[]) AS reason_codes,
           m.claim_id IS NULL AS rejected,
           CAST(COALESCE(m.eligible, 0) AS DECIMAL(18,2)) AS eligible,
           CAST(COALESCE(m.fund_pays, 0) AS DECIMAL(18,2)) AS fund_pays,
           m.rate AS benefit_rate
    FROM claims cl
    LEFT JOIN codes USING (claim_id)
    LEFT JOIN claim_money m USING (claim_id)
    """,
]


def evaluate(con: duckdb.DuckDBPyConnection) -> None:
    """Every rule, over the loaded tables, into the table `outcome`."""
    for sql in QUERIES:
        con.execute(sql)


def outcome_table(con: duckdb.DuckDBPyConnection) -> pa.Table:
    table: pa.Table = con.sql("SELECT * FROM outcome ORDER BY claim_id").to_arrow_table()
    return table


def run(
    batch: Path, reference: Path, threads: int | None = None
) -> tuple[pa.Table, dict[str, float]]:
    """Load, evaluate and fetch; returns the outcome and the seconds per stage."""
    con = connect(threads)
    t0 = time.perf_counter()
    load(con, batch, reference)
    t1 = time.perf_counter()
    evaluate(con)
    t2 = time.perf_counter()
    table = outcome_table(con)
    t3 = time.perf_counter()
    con.close()
    return table, {"load": t1 - t0, "query": t2 - t1, "fetch": t3 - t2}


# --- agreement with the engine ----------------------------------------------------------


def engine_codes(plan: Any) -> dict[str, set[str]]:
    """The engine pack's codes by severity (MALFORMED and ORPHAN_LINE are intake's)."""
    by: dict[str, set[str]] = {
        "reject": {"MALFORMED", "ORPHAN_LINE"},
        "adjust": set(),
        "flag": set(),
    }
    for rule in plan.rules:
        by[rule.severity].add(rule.code)
    return by


def compare_with_engine(engine_claims: pa.Table, duck: pa.Table, plan: Any) -> dict[str, Agreement]:
    """Claim by claim, the engine's claim outputs (approved, rejected and flagged
    together) against the SQL's outcome:

    - "codes": on every claim, the set of codes both compute, except the two that
      depend on the decision (BENEFIT_RATE_MISMATCH, HIGH_COST);
    - "money": on the claims the engine did not reject, and whose engine codes are
      shared or flags (an engine rule the SQL lacks may reject a line or adjust a
      price, changing the amounts), those two codes too, eligible and fund_pays;
    - "decisions": on the claims no engine reject rule the SQL lacks hit (on the claim
      or a line), whether the claim is rejected, as the pseudo-code REJECTED (a
      claim-level reject, or every line rejected: MALFORMED, the card, the dates,
      DUPLICATE_CLAIM, or lines all unlisted, outside the stay or duplicates).
    """
    by_severity = engine_codes(plan)
    everything = set().union(*by_severity.values())
    shared = set(CODES) & everything
    independent = shared - set(DECISION_DEPENDENT)
    nothing = pa.array([False] * engine_claims.num_rows, pa.bool_())
    codes_all = compare_outcomes(engine_claims, duck, independent, money_mask=nothing)

    neutral = shared | (by_severity["flag"] - by_severity["reject"] - by_severity["adjust"])
    pairs = claim_code_pairs(engine_claims)
    foreign = pairs.filter(
        pc.invert(pc.is_in(pairs.column("code"), value_set=pa.array(sorted(neutral), pa.string())))
    )
    mask = pc.and_(
        pc.not_equal(engine_claims.column("decision"), "rejected"),
        pc.invert(
            pc.is_in(
                engine_claims.column("claim_id"),
                value_set=foreign.column("claim_id").combine_chunks(),
            )
        ),
    )
    chosen = engine_claims.filter(mask)
    duck_chosen = duck.filter(
        pc.is_in(duck.column("claim_id"), value_set=chosen.column("claim_id").combine_chunks())
    )
    money = compare_outcomes(chosen, duck_chosen, shared)

    lacking = pa.array(sorted(by_severity["reject"] - shared), pa.string())
    vetoed = pairs.filter(pc.is_in(pairs.column("code"), value_set=lacking))
    decided = engine_claims.filter(
        pc.invert(
            pc.is_in(
                engine_claims.column("claim_id"),
                value_set=vetoed.column("claim_id").combine_chunks(),
            )
        )
    )
    duck_decided = duck.filter(
        pc.is_in(duck.column("claim_id"), value_set=decided.column("claim_id").combine_chunks())
    )
    decisions = compare_outcomes(
        _as_decision(decided, pc.equal(decided.column("decision"), "rejected")),
        _as_decision(duck_decided, duck_decided.column("rejected")),
        [REJECTED],
        money_mask=pa.array([False] * decided.num_rows, pa.bool_()),
    )
    return {"codes": codes_all, "money": money, "decisions": decisions}


REJECTED = "REJECTED"  # the decision as a pseudo-code, for compare_outcomes


def _as_decision(claims: pa.Table, rejected: pa.Array | pa.ChunkedArray) -> pa.Table:
    """claim_id, eligible and fund_pays of ``claims``, reason_codes [REJECTED] where
    ``rejected`` holds, else []."""
    if isinstance(rejected, pa.ChunkedArray):
        rejected = rejected.combine_chunks()
    flags = np.asarray(pc.fill_null(rejected, False).to_numpy(zero_copy_only=False), dtype=bool)
    offsets = np.concatenate(([0], np.cumsum(flags))).astype(np.int32)
    values = pa.array([REJECTED] * int(flags.sum()), pa.string())
    return pa.table(
        {
            "claim_id": claims.column("claim_id"),
            "reason_codes": pa.ListArray.from_arrays(pa.array(offsets), values),
            "eligible": claims.column("eligible"),
            "fund_pays": claims.column("fund_pays"),
        }
    )


def read_engine_claims(out_dir: Path) -> pa.Table:
    """approved + rejected + flagged of an `adjudicate` output folder, by claim_id."""
    import pyarrow.parquet as pq

    cols = ["claim_id", "decision", "reason_codes", "eligible", "fund_pays"]
    parts = [
        pq.read_table(out_dir / f"{n}.parquet", columns=cols)
        for n in ("approved", "rejected", "flagged")
    ]
    return pa.concat_tables(parts).sort_by("claim_id")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("batch", type=Path)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    con = connect(args.threads)
    load(con, args.batch, args.reference)
    t1 = time.perf_counter()
    evaluate(con)
    t2 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"COPY (SELECT * FROM outcome ORDER BY claim_id) TO {_quote(args.out / 'outcome.parquet')} "
        "(FORMAT parquet)"
    )
    t3 = time.perf_counter()
    threads = con.execute("SELECT current_setting('threads')").fetchone()
    con.close()
    timings = {
        "load": round(t1 - t0, 4),
        "query": round(t2 - t1, 4),
        "write": round(t3 - t2, 4),
        "total": round(t3 - t0, 4),
    }
    (args.out / "timings.json").write_text(
        json.dumps(
            {
                "timings": timings,
                "threads": threads[0] if threads else None,
                "duckdb_version": duckdb.__version__,
                "pid": os.getpid(),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
