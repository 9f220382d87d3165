#!/usr/bin/env python3
"""Benchmark results as a Markdown table for the README.

Reads benchmarks/results/*.json (`adjudicate-<N>.json` from
benchmarks/test_adjudicate.py, `duckdb-<N>.json` from benchmarks/test_duckdb.py,
`card-holder-<N>.json` from benchmarks/test_card_holder.py)
and prints the machine (nproc, RAM, CPU model of the machine running this
script) and one row per batch size: seconds per engine stage, end to end,
lines per second, peak RSS, and the ratios to the DuckDB baseline.

    python scripts/bench_table.py            # print
    python scripts/bench_table.py --write    # replace the README's block between
                                             # <!-- bench:start --> and <!-- bench:end -->
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
STAGES = ("read", "evaluate", "adjudicate", "write")


def machine() -> str:
    """`nproc`, RAM and CPU model, from the OS (Linux /proc when present)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model, ram = "unknown CPU", "unknown RAM"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024**2:.0f} GiB RAM"
                break
    except OSError:
        pass
    return f"{cpus} CPUs (`nproc`), {ram}, {model}"


def load(results: Path) -> dict[int, dict[str, Any]]:
    """Results by batch size: {"adjudicate": {...}, "duckdb": {...}, "card-holder": {...}}."""
    sizes: dict[int, dict[str, Any]] = {}
    for path in sorted(results.glob("*.json")):
        m = re.fullmatch(r"(adjudicate|duckdb|card-holder)-(\d+)\.json", path.name)
        if not m:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"warning: {path}: {exc}", file=sys.stderr)
            continue
        sizes.setdefault(int(m.group(2)), {})[m.group(1)] = data
    return sizes


def _s(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{float(value):,.{digits}f}"


def _row(claims: int, found: dict[str, Any]) -> list[str]:
    adj, duck = found.get("adjudicate"), found.get("duckdb")
    eng = (duck or {}).get("engine", {})
    lines = (adj or duck or {}).get("lines")
    timings = (adj or {}).get("timings") or eng.get("stage_seconds") or {}
    total = (adj or {}).get("seconds") or eng.get("wall_seconds")
    rss = (adj or {}).get("peak_rss_mib") or eng.get("peak_rss_mib")
    per_second = f"{lines / total:,.0f}" if lines and total else "–"
    cells = [f"{claims:,}", f"{lines:,}" if lines else "–"]
    written = (adj or {}).get("write_seconds")  # measured alone (test_write_outputs)
    cells += [_s(timings.get(stage, written if stage == "write" else None)) for stage in STAGES]
    rounds = (adj or {}).get("rounds_seconds") or []
    spread = f" ({_s(min(rounds))}–{_s(max(rounds))})" if len(rounds) > 1 else ""
    over = (adj or {}).get("peak_rss_over_input")
    cells += [_s(total) + spread, per_second, _s(rss, 0), f"{over:.2f}x" if over else "–"]
    if duck:
        d = duck.get("duckdb", {})
        cells += [
            _s(d.get("query_seconds")),
            _s(d.get("wall_seconds")),
            _s(duck.get("ratio_evaluate")),
            _s(duck.get("ratio_evaluate_same_rules")),
            _s(duck.get("ratio_end_to_end")),
            _agreement(duck),
        ]
    else:
        cells += ["–"] * 6
    return cells


def _agreement(duck: dict[str, Any]) -> str:
    agreement = duck.get("agreement", {})
    codes, money = agreement.get("codes", {}), agreement.get("money", {})
    if not codes:
        return "–"
    return (
        f"codes {codes.get('code_agree', 0):,}/{codes.get('claims', 0):,}, "
        f"money {money.get('money_agree', 0):,}/{money.get('money_compared', 0):,}"
    )


def table(sizes: dict[int, dict[str, Any]]) -> str:
    head = [
        "claims", "lines", "read s", "evaluate s", "adjudicate s", "write s",
        "end to end s (range)", "lines/s", "peak RSS MiB", "peak RSS / input tables",
        "DuckDB query s", "DuckDB end to end s",
        "engine/DuckDB evaluate", "engine/DuckDB evaluate, same rules",
        "engine/DuckDB end to end", "agreement (claims)",
    ]  # fmt: skip
    out = [
        f"Machine: {machine()}.",
        "",
        "Engine: `claims-engine adjudicate` in a child process, Parquet in, every output "
        "written; end to end: the median of 3 runs (range in brackets), the stages of the "
        "median run from `summary.json` (`evaluate`: rules, lookups and money, the batch "
        "in memory; write: measured alone, though a run overlaps most of it with building "
        "the outputs; input tables: both files read whole by pyarrow). DuckDB: the core "
        "rules as SQL (benchmarks/duckdb_baseline.py), "
        "query time with the tables already loaded. A ratio above 1 means the engine is "
        'slower; "same rules": the engine run with `--codes` set to the SQL\'s codes.',
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" for _ in head) + "|",
    ]
    for claims in sorted(c for c in sizes if {"adjudicate", "duckdb"} & sizes[c].keys()):
        found = sizes[claims]
        adj, duck = found.get("adjudicate"), found.get("duckdb")
        if adj and duck and adj.get("lines") != duck.get("lines"):
            # Not the same batch (another generator version): one row each, the
            # DuckDB row with the engine figures measured beside it.
            out.append("| " + " | ".join(_row(claims, {"adjudicate": adj})) + " |")
            out.append("| " + " | ".join(_row(claims, {"duckdb": duck})) + " |")
        else:
            out.append("| " + " | ".join(_row(claims, found)) + " |")
    if not sizes:
        out.append("| " + " | ".join(["–"] * len(head)) + " |")
    out += _card_holder_table(sizes)
    return "\n".join(out)


def _card_holder_table(sizes: dict[int, dict[str, Any]]) -> list[str]:
    """The card-holder rules alone (benchmarks/test_card_holder.py), if measured."""
    rows = [
        (n, found["card-holder"]) for n, found in sorted(sizes.items()) if "card-holder" in found
    ]
    if not rows:
        return []
    codes = sorted({code for _, r in rows for code in r.get("rule_seconds", {})})
    head = ["claims", "lines", "card holders", "card-holder rules s (best of 3)", *codes]
    out = [
        "",
        "Card-holder rules alone (in process, keys and sorting included, the fastest "
        "of three rounds; seconds per rule):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" for _ in head) + "|",
    ]
    for claims, r in rows:
        cells = [f"{claims:,}", f"{r.get('lines', 0):,}", f"{r.get('card_holders', 0):,}"]
        cells.append(_s(r.get("window_seconds"), 3))
        cells += [_s(r.get("rule_seconds", {}).get(code), 3) for code in codes]
        out.append("| " + " | ".join(cells) + " |")
    return out


def write_readme(readme: Path, text: str) -> None:
    content = readme.read_text()
    if (
        content.count(START) != 1
        or content.count(END) != 1
        or content.index(START) > content.index(END)
    ):
        raise SystemExit(f"error: {readme} needs exactly one {START} ... {END} block")
    before, rest = content.split(START, 1)
    _, after = rest.split(END, 1)
    readme.write_text(f"{before}{START}\n{text}\n{END}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark results as a Markdown table.")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--write", action="store_true", help="rewrite the README block")
    args = parser.parse_args(argv)
    text = table(load(args.results))
    if args.write:
        write_readme(args.readme, text)
        print(f"{args.readme}: benchmark table rewritten")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
