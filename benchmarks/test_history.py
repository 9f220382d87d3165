"""History read path: a batch's card holders, 90 days back, from a large history.

    make bench                                  # HISTORY_LINES=5000000 by default
    HISTORY_LINES=50000000 .venv/bin/python -m pytest benchmarks/test_history.py \\
        --benchmark-only -p no:cacheprovider -o testpaths=benchmarks -s

The history is synthetic and built once per size under ``.bench-data/history-<N>``
(git-ignored) through ``HistoryStore.commit``, one commit per month of admissions
(12 months, 8 lines per claim).  Its people: 2.5 claims each over the year; the
batch asks for 10% of them (250,000 holders for a 50,000,000-line history, the
proportion of a 1,000,000-claim nightly batch), with ``since`` 90 days before the
end of the history.  The read runs in a child process so its peak RSS is
measured alone (its own VmHWM, taken before the process reads again); it is
timed in a fresh process, then once more; a second child does the same asking
only for the columns the card-holder rules use.  Figures go to
``benchmarks/results/history-<N>.json``.

Environment: HISTORY_LINES (5,000,000), HISTORY_MONTHS (12), HISTORY_BATCH_HOLDERS
(10% of the people).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from claims_engine.history.store import HistoryStore
from claims_engine.schema import CLAIMS_SCHEMA, LINES_SCHEMA, MONEY, QUANTITY, UNIT_PRICE

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench-data"  # as benchmarks/conftest.py (not imported: the child stays lean)
RESULTS = Path(__file__).resolve().parent / "results"
LINES_PER_CLAIM = 8
CLAIMS_PER_PERSON = 2.5
ASKED_SHARE = 0.10
SINCE_DAYS = 90
END = datetime(2026, 1, 1)  # the history ends here; the batch is admitted after
STORE_FORMAT = 2  # bump when the store's files change: the cached history is rebuilt
# What the card-holder rules use (DUPLICATE_*, OVERLAPPING_STAY, FREQUENCY_LIMIT).
RULE_CLAIM_COLUMNS = [
    "claim_id",
    "facility_id",
    "card_holder",
    "visit_type",
    "admitted_at",
    "discharged_at",
    "decision",
    "batch_id",
]
RULE_LINE_COLUMNS = [
    "claim_id",
    "line_no",
    "kind",
    "item_code",
    "card_holder",
    "facility_id",
    "admitted_at",
    "date_of_service",
    "decision",
    "batch_id",
]


def _sizes() -> dict[str, int]:
    lines = int(os.environ.get("HISTORY_LINES", "5000000"))
    months = int(os.environ.get("HISTORY_MONTHS", "12"))
    claims = lines // LINES_PER_CLAIM
    people = max(1000, int(claims / CLAIMS_PER_PERSON))
    asked = int(os.environ.get("HISTORY_BATCH_HOLDERS", str(int(people * ASKED_SHARE))))
    return {
        "lines": lines,
        "months": months,
        "claims": claims,
        "people": people,
        "asked": min(asked, people),
    }


def _strings(prefix: str, values: np.ndarray) -> pa.Array:
    digits = pc.cast(pa.array(values, pa.int64()), pa.string())
    out: pa.Array = pc.binary_join_element_wise(prefix, digits, "")
    return out


def _pick(choices: list[str], idx: np.ndarray) -> pa.Array:
    out: pa.Array = pa.array(choices, pa.string()).take(pa.array(idx))
    return out


def _money(values: np.ndarray, type_: pa.DataType = MONEY) -> pa.Array:
    wide = pa.decimal128(38, type_.scale)
    return pa.array(values, pa.int64()).cast(wide).cast(type_)


def _month_batch(
    rng: np.random.Generator,
    first_claim: int,
    n: int,
    people: pa.Array,
    start: datetime,
    end: datetime,
) -> tuple[pa.Table, pa.Table]:
    """``n`` claims admitted in [start, end) and their lines, with decisions."""
    who = people.take(pa.array(rng.integers(0, len(people), n)))
    span = int((end - start).total_seconds())
    admitted = np.datetime64(start, "s") + rng.integers(0, span, n).astype("timedelta64[s]")
    facility = rng.integers(10000, 10500, n)
    dates = np.datetime64("2020-01-01", "D")
    claims = pa.table(
        {
            "claim_id": _strings("H", np.arange(first_claim, first_claim + n)),
            "facility_id": _strings("", facility),
            "patient_id": _strings("P", rng.integers(0, 10**7, n)),
            "card_no": pc.binary_join_element_wise("DN401", who, ""),
            "registered_facility": _strings("", facility),
            "card_valid_from": pa.array(np.full(n, dates)),
            "card_valid_to": pa.array(np.full(n, np.datetime64("2030-12-31", "D"))),
            "five_years_from": pa.nulls(n, pa.date32()),
            "copay_exempt_from": pa.nulls(n, pa.date32()),
            "birth_date": pa.array(dates - rng.integers(0, 30000, n).astype("timedelta64[D]")),
            "sex": pa.array(rng.integers(1, 3, n).astype(np.int8)),
            "visit_type": pa.array(rng.choice(np.array([1, 1, 1, 3, 9], np.int8), n)),
            "route": _pick(["registered", "referral", "emergency"], rng.integers(0, 3, n)),
            "admitted_at": pa.array(admitted),
            "inpatient_at": pa.nulls(n, pa.timestamp("s")),
            "discharged_at": pa.array(admitted + np.timedelta64(2, "h")),
            "treatment_days": pa.array(np.zeros(n, np.int16)),
            "total_drugs": _money(rng.integers(0, 10**7, n)),
            "total_supplies": pa.nulls(n, MONEY),
            "primary_dx": _pick(["J06.9", "I10", "E11.9", "K29.7"], rng.integers(0, 4, n)),
            "secondary_dx": pa.nulls(n, pa.list_(pa.string())),
            "total_hospital": _money(rng.integers(10**4, 10**8, n)),
            "total_insured": _money(rng.integers(10**4, 10**8, n)),
            "patient_copay": _money(rng.integers(0, 10**6, n)),
            "patient_pays": _money(rng.integers(0, 10**6, n)),
            "fund_pays": _money(rng.integers(0, 10**8, n)),
        }
    ).cast(CLAIMS_SCHEMA)
    claims = claims.append_column(
        "decision",
        _pick(["approved", "approved", "approved", "rejected", "flagged"], rng.integers(0, 5, n)),
    )
    m = n * LINES_PER_CLAIM
    owner = np.repeat(np.arange(n), LINES_PER_CLAIM)
    ordered = admitted[owner] + (np.tile(np.arange(LINES_PER_CLAIM), n) * 600).astype(
        "timedelta64[s]"
    )
    lines = pa.table(
        {
            "claim_id": claims.column("claim_id").take(pa.array(owner)),
            "line_no": pa.array(np.tile(np.arange(1, LINES_PER_CLAIM + 1, dtype=np.int32), n)),
            "kind": _pick(["drug", "drug", "service", "supply"], rng.integers(0, 4, m)),
            "group_code": pa.array(rng.integers(1, 19, m).astype(np.int16)),
            "item_code": _strings("I", rng.integers(0, 5000, m)),
            "quantity": _money(rng.integers(1000, 10000, m), QUANTITY),
            "unit_price": _money(rng.integers(1000, 10**6, m), UNIT_PRICE),
            "hospital_unit_price": pa.nulls(m, UNIT_PRICE),
            "service_rate": pa.array(np.full(m, 100, np.int16)),
            "coverage_rate": pa.array(np.full(m, 100, np.int16)),
            "benefit_rate": pa.array(np.full(m, 80, np.int16)),
            "amount_hospital": _money(rng.integers(1000, 10**7, m)),
            "amount_insured": _money(rng.integers(1000, 10**7, m)),
            "fund_pays": _money(rng.integers(1000, 10**7, m)),
            "patient_copay": _money(rng.integers(0, 10**6, m)),
            "ordered_at": pa.array(ordered),
            "performed_at": pa.nulls(m, pa.timestamp("s")),
            "department": _pick(["K01", "K02", "K03", "K19"], rng.integers(0, 4, m)),
            "practitioner": pa.nulls(m, pa.string()),
        }
    ).cast(LINES_SCHEMA)
    lines = lines.append_column(
        "decision", _pick(["paid", "paid", "adjusted", "rejected"], rng.integers(0, 4, m))
    )
    return claims, lines


def _month_starts(months: int) -> list[datetime]:
    starts = []
    year, month = END.year, END.month
    for _ in range(months + 1):
        starts.append(datetime(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return starts[::-1]


def history_store(sizes: dict[str, int]) -> tuple[Path, Path, dict[str, Any]]:
    """The cached synthetic store, the asked holders' file, and how it was built."""
    folder = CACHE / f"history-{sizes['lines']}"
    meta_file = CACHE / f"history-{sizes['lines']}.json"
    holders_file = CACHE / f"history-{sizes['lines']}-holders.parquet"
    if meta_file.exists() and holders_file.exists() and folder.exists():
        meta: dict[str, Any] = json.loads(meta_file.read_text())
        if meta.get("sizes") == sizes and meta.get("format") == STORE_FORMAT:
            return folder, holders_file, meta
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    people = _strings("", rng.choice(9 * 10**9, sizes["people"], replace=False) + 10**9)
    store = HistoryStore(folder)
    starts = _month_starts(sizes["months"])
    per_month = sizes["claims"] // sizes["months"]
    commits = []
    started = time.perf_counter()
    for i in range(sizes["months"]):
        claims, lines = _month_batch(
            rng, i * per_month, per_month, people, starts[i], starts[i + 1]
        )
        info = store.commit(f"{starts[i]:%Y-%m}", claims, lines)
        commits.append(
            {
                "batch": info.batch_id,
                "claims": info.claims,
                "lines": info.lines,
                "seconds": info.seconds,
                "files": info.files_added,
            }
        )
        print(
            f"  committed {info.batch_id}: {info.lines:,} lines in {info.seconds:.1f} s", flush=True
        )
    asked = people.take(pa.array(rng.choice(len(people), sizes["asked"], replace=False)))
    pq.write_table(pa.table({"card_holder": asked}), holders_file)
    meta = {
        "sizes": sizes,
        "format": STORE_FORMAT,
        "build_seconds": round(time.perf_counter() - started, 1),
        "commits": commits,
    }
    meta_file.write_text(json.dumps(meta, indent=2))
    return folder, holders_file, meta


def _read_in_child(folder: Path, holders_file: Path, since: date, mode: str) -> dict[str, Any]:
    """One child process, one measured read (``mode``: all columns, or the rules' columns)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.test_history",
            str(folder),
            str(holders_file),
            since.isoformat(),
            mode,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_history_read(benchmark: Any) -> None:
    sizes = _sizes()
    folder, holders_file, meta = history_store(sizes)
    since = (END - timedelta(days=SINCE_DAYS)).date()
    result: dict[str, Any] = {}

    def once() -> None:
        result.update(_read_in_child(folder, holders_file, since, "all"))

    benchmark.pedantic(once, rounds=1, iterations=1)
    peak = result["peak_rss_mib"]  # the child's own, after its first read
    few = _read_in_child(folder, holders_file, since, "rule-columns")
    info = HistoryStore(folder).info()
    report = {
        "history_lines": info.lines,
        "history_claims": info.claims,
        "people": sizes["people"],
        "asked_holders": sizes["asked"],
        "since_days": SINCE_DAYS,
        "since": since.isoformat(),
        "read": {
            "seconds": result["seconds"],
            "cpu_seconds": result["cpu_seconds"],
            "seconds_again": result["seconds_again"],
            "peak_rss_mib": peak,
        },
        "read_rule_columns": {
            "seconds": few["seconds"],
            "cpu_seconds": few["cpu_seconds"],
            "seconds_again": few["seconds_again"],
            "peak_rss_mib": few["peak_rss_mib"],
            "claim_columns": RULE_CLAIM_COLUMNS,
            "line_columns": RULE_LINE_COLUMNS,
        },
        "rows": {"claims": result["claims"], "lines": result["lines"]},
        "files": {"total": info.files, "read": result["files_read"]},
        "store": {"data_mib": round(info.data_bytes / 2**20, 1), "version": info.version},
        "build": meta,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"history-{sizes['lines']}.json").write_text(json.dumps(report, indent=2))
    benchmark.extra_info.update({k: v for k, v in report.items() if k != "build"})
    print(
        f"\nhistory {info.lines:,} lines / {info.claims:,} claims; {sizes['asked']:,} holders "
        f"since {since}: {result['claims']:,} claims + {result['lines']:,} lines from "
        f"{result['files_read']:,} of {info.files:,} files\n"
        f"  all columns:   {result['seconds']:.2f} s (cpu {result['cpu_seconds']:.2f} s, "
        f"again {result['seconds_again']:.2f} s), peak RSS {peak:.0f} MiB\n"
        f"  rule columns:  {few['seconds']:.2f} s (cpu {few['cpu_seconds']:.2f} s, "
        f"again {few['seconds_again']:.2f} s), peak RSS {few['peak_rss_mib']:.0f} MiB"
    )
    assert result["claims"] > 0 and result["lines"] > 0
    assert (few["claims"], few["lines"]) == (result["claims"], result["lines"])


def _own_peak_mib() -> float:
    """This process's peak RSS since its exec (VmHWM): ``ru_maxrss`` would also
    count the memory the parent held when it forked this child."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _child(folder: str, holders_file: str, since: str, mode: str) -> None:
    """The measured read, in a child process: timed in a fresh process, then once again."""
    holders = pq.read_table(holders_file).column("card_holder")
    store = HistoryStore(Path(folder))
    files_read: list[int] = []
    real = HistoryStore._dataset

    def counting(self: HistoryStore, *args: Any, **kwargs: Any) -> Any:
        dataset = real(self, *args, **kwargs)
        files_read.append(len(dataset.files))
        return dataset

    HistoryStore._dataset = counting  # type: ignore[method-assign]
    columns: dict[str, Any] = {}
    if mode == "rule-columns":
        columns = {"claim_columns": RULE_CLAIM_COLUMNS, "line_columns": RULE_LINE_COLUMNS}
    day = date.fromisoformat(since)
    started, cpu = time.perf_counter(), time.process_time()
    rows = store.read(holders, since=day, **columns)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    count = sum(files_read)
    peak = _own_peak_mib()
    claims, lines = rows.claims.num_rows, rows.lines.num_rows
    del rows
    started = time.perf_counter()
    store.read(holders, since=day, **columns)
    again = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": round(seconds, 3),
                "seconds_again": round(again, 3),
                "cpu_seconds": round(cpu, 3),
                "peak_rss_mib": round(peak, 1),
                "claims": claims,
                "lines": lines,
                "files_read": count,
            }
        )
    )


if __name__ == "__main__":
    _child(*sys.argv[1:5])
