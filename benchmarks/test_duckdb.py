"""The engine against the DuckDB SQL baseline, on the same batch and reference data.

Run with `make bench` (BENCH_CLAIMS=100000 for a quicker run).  Both programs run
in a child process of their own, so each one's wall time and peak RSS are its
own (its peak VmHWM, polled by `conftest.run_child`):

- the engine: `claims-engine adjudicate` (read, evaluate, adjudicate, write);
- DuckDB: `python -m benchmarks.duckdb_baseline` (load the Parquet batch and the
  reference files into tables, run the SQL, write the outcome as Parquet).

Rule evaluation compares the engine's `evaluate` stage (summary timings: rules,
lookups and money, the batch already in memory) with the SQL's query time (the
tables already loaded into DuckDB).  End to end compares the child processes'
wall times (interpreter start and imports included on both sides).

The two outputs are then compared claim by claim (benchmarks/duckdb_baseline.py,
`compare_with_engine`): the codes both compute on every claim, and eligible and
fund_pays where the engine did not reject the claim.  The figures go to
benchmarks/results/duckdb-<N>.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from benchmarks.conftest import REFERENCE, adjudicate_command, batch_folder, run_child
from benchmarks.duckdb_baseline import CODES, compare_with_engine, read_engine_claims
from claims_engine.fixtures.detection import detection_report
from claims_engine.fixtures.generator import DEFECT_CODES, IMPLIED_CODES
from claims_engine.plan.compiler import compile_pack

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("scale", ["big"])
def test_engine_vs_duckdb(benchmark: Any, big_claims: int, tmp_path: Path, scale: str) -> None:
    batch = batch_folder(big_claims)
    lines = pq.ParquetFile(batch / "lines.parquet").metadata.num_rows

    engine_out, duck_out = tmp_path / "engine", tmp_path / "duckdb"
    engine_wall, engine_rss = run_child(adjudicate_command(batch, engine_out), tmp_path / "engine")
    summary = json.loads((engine_out / "summary.json").read_text())
    # like for like: the engine running only the rules the SQL has
    same_out = tmp_path / "engine-same"
    same_wall, same_rss = run_child(
        adjudicate_command(batch, same_out, "--codes", ",".join(CODES)), tmp_path / "engine-same"
    )
    same = json.loads((same_out / "summary.json").read_text())

    duck: dict[str, Any] = {}

    def once() -> None:
        wall, rss = run_child(
            [
                sys.executable,
                "-m",
                "benchmarks.duckdb_baseline",
                str(batch),
                "--reference",
                str(REFERENCE),
                "--out",
                str(duck_out),
            ],
            tmp_path / "duckdb",
        )
        duck.update(json.loads((duck_out / "timings.json").read_text()))
        duck.update({"wall": wall, "peak_rss_mib": rss})

    benchmark.pedantic(once, rounds=1, iterations=1)

    # the same results?
    plan = compile_pack(ROOT / "rules" / "vn_bhyt")
    engine_claims = read_engine_claims(engine_out)
    duck_claims = pq.read_table(duck_out / "outcome.parquet")
    agreement = compare_with_engine(engine_claims, duck_claims, plan)
    truth = pq.read_table(batch / "truth.parquet")
    engine_lines = pq.read_table(engine_out / "lines.parquet", columns=["claim_id", "reason_codes"])
    detection = detection_report(truth, engine_claims, DEFECT_CODES, IMPLIED_CODES, engine_lines)

    t = summary["timings"]
    engine_eval = t["evaluate"]
    duck_query = duck["timings"]["query"]
    figures = {
        "claims": big_claims,
        "lines": lines,
        "machine": {"nproc": os.cpu_count(), "duckdb_threads": duck.get("threads")},
        "engine": {
            "evaluate_seconds": engine_eval,
            "wall_seconds": round(engine_wall, 3),
            "stage_seconds": t,
            "peak_rss_mib": round(engine_rss, 1),
            "rules": len(plan.rules),
            "pack_version": plan.version,
        },
        "duckdb": {
            "query_seconds": duck_query,
            "wall_seconds": round(duck["wall"], 3),
            "stage_seconds": duck["timings"],
            "peak_rss_mib": round(duck["peak_rss_mib"], 1),
            "version": duck.get("duckdb_version"),
        },
        "engine_same_rules": {
            "codes": list(CODES),
            "evaluate_seconds": same["timings"]["evaluate"],
            "wall_seconds": round(same_wall, 3),
            "stage_seconds": same["timings"],
            "peak_rss_mib": round(same_rss, 1),
        },
        "ratio_evaluate": round(engine_eval / duck_query, 3),
        "ratio_evaluate_same_rules": round(same["timings"]["evaluate"] / duck_query, 3),
        "ratio_end_to_end": round(engine_wall / duck["wall"], 3),
        "ratio_end_to_end_same_rules": round(same_wall / duck["wall"], 3),
        "agreement": {name: a.as_dict() for name, a in agreement.items()},
        "engine_detection": detection.as_dict(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"duckdb-{big_claims}.json").write_text(json.dumps(figures, indent=2) + "\n")
    benchmark.extra_info.update(
        {k: figures[k] for k in ("claims", "lines", "ratio_evaluate", "ratio_end_to_end")}
    )

    codes, money = agreement["codes"], agreement["money"]
    print(f"\n{big_claims:,} claims / {lines:,} lines")
    print(
        f"  rule evaluation: engine {engine_eval:.3f} s, DuckDB {duck_query:.3f} s "
        f"-> engine/DuckDB {figures['ratio_evaluate']:.2f}"
    )
    print(
        f"  same {len(CODES)} codes: engine {same['timings']['evaluate']:.3f} s, "
        f"DuckDB {duck_query:.3f} s -> engine/DuckDB "
        f"{figures['ratio_evaluate_same_rules']:.2f} (end to end "
        f"{figures['ratio_end_to_end_same_rules']:.2f})"
    )
    print(
        f"  end to end:      engine {engine_wall:.2f} s, DuckDB {duck['wall']:.2f} s "
        f"-> engine/DuckDB {figures['ratio_end_to_end']:.2f}"
    )
    print(f"  peak RSS:        engine {engine_rss:.0f} MiB, DuckDB {duck['peak_rss_mib']:.0f} MiB")
    print(
        f"  codes agree on {codes.code_agree:,} of {codes.claims:,} claims; money agrees on "
        f"{money.money_agree:,} of {money.money_compared:,}"
    )
    assert codes.perfect, codes.describe()
    assert money.perfect, money.describe()
