"""The `claims-engine` command line: adjudicate, check, demo, rules.

Exit codes (contract section 3): 0 done; 1 (`check`) some claim would not be
approved; 2 unusable input, rules or reference data; 3 outputs could not be
written; 130 interrupted.  Errors are one clear message on stderr, never a
traceback (set CLAIMS_ENGINE_DEBUG=1 to see one for an internal error).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from claims_engine import __version__, pipeline
from claims_engine.adjudicate import Result
from claims_engine.console import err, run_app
from claims_engine.errors import ClaimsEngineError, ReferenceDataError
from claims_engine.fixtures.cli import fixtures_app
from claims_engine.history.cli import history_app

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Validate and adjudicate health-insurance claims (Vietnam BHYT, QĐ130).",
)
rules_app = typer.Typer(no_args_is_help=True, help="Work with rule packs.")
app.add_typer(rules_app, name="rules")
app.add_typer(fixtures_app, name="fixtures")
app.add_typer(history_app, name="history")
out = Console()

REFERENCE_ENV = "CLAIMS_ENGINE_REFERENCE"


def _reference(option: Path | None) -> Path:
    if option is not None:
        return option
    env = os.environ.get(REFERENCE_ENV)
    if env:
        return Path(env)
    raise ReferenceDataError(
        f"no reference data: give --reference DIR or set {REFERENCE_ENV} "
        "(there is no default, so a nightly run can never use demo prices)"
    )


@contextmanager
def _stages(enabled: bool) -> Iterator[pipeline.Progress]:
    """A live status line per stage on stderr (quiet when not a terminal)."""
    if not enabled:
        yield lambda _: None
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        current: list[Any] = []

        def step(name: str) -> None:
            if current:
                bar.update(current[0], completed=1, total=1)
            current[:] = [bar.add_task(name, total=None)]

        yield step
        if current:
            bar.update(current[0], completed=1, total=1)


def _summary_table(result: Result) -> Table:
    s = result.summary
    table = Table(title=f"batch {s['batch_id']} · pack {s['pack']['id']} {s['pack']['version']}")
    table.add_column("decision")
    table.add_column("claims", justify="right")
    table.add_column("fund pays (VND)", justify="right")
    for name, d in s["decisions"].items():
        table.add_row(name, f"{d['claims']:,}", d["fund_pays"])
    codes = Table(title="reason codes")
    codes.add_column("code")
    codes.add_column("hits", justify="right")
    for code, n in s["codes"].items():
        codes.add_row(code, f"{n:,}")
    grid = Table.grid(padding=(0, 4))
    grid.add_row(table, codes)
    return grid


@app.command()
def adjudicate(
    batch: Annotated[Path, typer.Argument(help="batch folder (claims + lines files)")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder (replaced atomically)")],
    reference: Annotated[
        Path | None, typer.Option(help=f"reference data folder (or ${REFERENCE_ENV})")
    ] = None,
    rules: Annotated[str, typer.Option(help="rule pack folder or bundled pack name")] = "vn_bhyt",
    history: Annotated[
        Path | None,
        typer.Option(
            help="history store folder (Delta Lake): earlier batches for card-holder rules; "
            "this batch is added after a successful run"
        ),
    ] = None,
    batch_id: Annotated[
        str | None, typer.Option(help="batch id (default: hash of the inputs)")
    ] = None,
    codes: Annotated[
        str | None,
        typer.Option(
            help="only the rules of these reason codes, comma-separated (intake always runs); "
            "for measuring a subset or a change's impact"
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress or summary")] = False,
) -> None:
    """Adjudicate a batch: approved, rejected and flagged claims with reasons and amounts."""
    selected = None
    if codes is not None:
        selected = frozenset(c.strip() for c in codes.split(",") if c.strip())
    with _stages(not quiet and err.is_terminal) as step:
        result = pipeline.adjudicate_batch(
            batch, out_dir, _reference(reference), rules, batch_id, step, history, selected
        )
    if not quiet:
        out.print(_summary_table(result))
        out.print(f"outputs written to {out_dir}")


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="a batch folder to pre-validate")],
    reference: Annotated[
        Path | None, typer.Option(help=f"reference data folder (or ${REFERENCE_ENV})")
    ] = None,
    rules: Annotated[str, typer.Option(help="rule pack folder or bundled pack name")] = "vn_bhyt",
    fmt: Annotated[str, typer.Option("--format", help="text or json")] = "text",
) -> None:
    """Pre-validate a submission: the same verdicts, nothing written.

    Exit 1 if any claim would not be approved.
    """
    if fmt not in ("text", "json"):
        raise ClaimsEngineError(f"--format: expected 'text' or 'json', got '{fmt}'")
    from claims_engine.io.batch import read_batch
    from claims_engine.io.output import content_hash

    inputs = pipeline.prepare(_reference(reference), rules)
    batch = read_batch(file)
    result = pipeline.evaluate(batch, inputs, content_hash(batch.files))
    claims = [
        *result.rejected.to_pylist(),
        *result.flagged.to_pylist(),
        *result.approved.to_pylist(),
    ]
    reasons = result.reasons.to_pylist()
    by_claim: dict[str, list[dict[str, Any]]] = {}
    for r in reasons:
        by_claim.setdefault(r["claim_id"], []).append(r)
    if fmt == "json":
        report = {
            "summary": {
                k: v for k, v in result.summary.items() if k not in ("timings", "rule_seconds")
            },
            "claims": [
                {
                    "claim_id": c["claim_id"],
                    "decision": c["decision"],
                    "reason_codes": c["reason_codes"],
                    "fund_pays": str(c["fund_pays"]),
                    "reasons": [
                        {k: r[k] for k in ("kind", "line_no", "code", "severity", "message")}
                        for r in by_claim.get(c["claim_id"], [])
                    ],
                }
                for c in sorted(claims, key=lambda c: c["claim_id"] or "")
            ],
        }
        sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    else:
        for c in sorted(claims, key=lambda c: c["claim_id"] or ""):
            colour = {"approved": "green", "flagged": "yellow", "rejected": "red"}[c["decision"]]
            out.print(
                f"[{colour}]{c['decision'].upper():9}[/] {c['claim_id']}  fund pays "
                f"{c['fund_pays']}"
            )
            for r in by_claim.get(c["claim_id"], []):
                where = f"{r['kind']} #{r['line_no']}" if r["line_no"] is not None else "claim"
                out.print(
                    f"    {r['severity']:6} {r['code']:24} {where:14} {r['message']}",
                    markup=False,
                    highlight=False,
                )
        out.print(_summary_table(result))
    if any(c["decision"] != "approved" for c in claims):
        raise typer.Exit(1)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("demo-output"),
    claims: Annotated[int, typer.Option(help="claims in the demo batch")] = 5000,
    seed: Annotated[int, typer.Option(help="random seed of the generator")] = 7,
    defect_rate: Annotated[float, typer.Option(help="share of claims given a defect")] = 0.05,
    history: Annotated[Path, typer.Option(help="history store the demo runs add to")] = Path(
        "demo-history"
    ),
) -> None:
    """Generate a demo batch and adjudicate it against the bundled demo reference data."""
    from claims_engine.fixtures.generator import generate_batch, write_batch
    from claims_engine.io.reference import load_reference

    ref_dir = demo_reference_dir()
    tables = load_reference(ref_dir).tables
    batch_dir = Path(tempfile.mkdtemp(prefix="claims-engine-demo-"))
    err.print(f"generating {claims:,} demo claims (seed {seed}) in {batch_dir}")
    write_batch(generate_batch(claims, seed, tables, defect_rate=defect_rate), batch_dir)
    adjudicate(batch_dir, out_dir, ref_dir, "vn_bhyt", history, None, None, False)


def demo_reference_dir() -> Path:
    """The bundled demo reference data, in a checkout or an installed package."""
    from claims_engine.pack.testing import bundled_reference_dir

    return bundled_reference_dir()


@rules_app.command("check")
def rules_check(
    pack: Annotated[str, typer.Argument(help="pack folder or bundled name")] = "vn_bhyt",
) -> None:
    """Load and type-check a pack; exit 2 with file, line and rule on the first problem."""
    from claims_engine.plan.compiler import compile_pack

    plan = compile_pack(pack)
    out.print(
        f"pack {plan.pack_id} {plan.version}: {len(plan.rules)} rules, "
        f"{len(plan.derived)} named values, {len(plan.lookups)} lookups, hash {plan.pack_hash}"
    )


@rules_app.command("functions")
def rules_functions() -> None:
    """List the functions a rule condition may use, with their arguments."""
    from claims_engine.lang.functions import SIGNATURES

    table = Table(title="functions of the rule language")
    table.add_column("call")
    table.add_column("what it gives")
    for sig in SIGNATURES.values():
        table.add_row(sig.usage, sig.doc)
    for usage, doc in (
        ("exists(lookup)", "a reference row was found (e.g. exists(catalogue))"),
        ("count(lines[, condition])", "lines of the claim (where the condition holds)"),
        ("sum(lines, number[, condition])", "sum over the claim's lines"),
        ("min|max(lines, value[, condition])", "smallest / largest over the claim's lines"),
        ("any|all(lines, condition)", "some / every line of the claim"),
        ("window measures", "count(), sum(x), min(x), max(x), first(x), last(x) in window:"),
    ):
        table.add_row(usage, doc)
    out.print(table)


@rules_app.command("show")
def rules_show(
    pack: Annotated[str, typer.Argument(help="pack folder or bundled name")] = "vn_bhyt",
) -> None:
    """Print the compiled plan: every rule's typed condition, stage and message."""
    from claims_engine.plan.compiler import compile_pack

    sys.stdout.write(compile_pack(pack).describe())


@rules_app.command("test")
def rules_test(
    pack: Annotated[str, typer.Argument(help="pack folder or bundled name")] = "vn_bhyt",
    reference: Annotated[
        Path | None,
        typer.Option(help="reference data folder (default: the bundled demo reference data)"),
    ] = None,
    match: Annotated[
        str | None, typer.Option("--match", "-k", help="only the tests whose name contains this")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="print the failures and the count only")
    ] = False,
) -> None:
    """Run a pack's cases (tests/*.yaml) and its rules' inline tests with the engine.

    Exit 1 if a test fails (or none matches), 2 if the pack or a case file is broken.
    """
    from rich.text import Text

    from claims_engine.io.reference import load_reference
    from claims_engine.pack import testing

    suite = testing.load_suite(pack)
    tables = load_reference(reference or demo_reference_dir()).tables
    result = testing.run_suite(suite, tables, match)
    for r in result.results:
        if r.passed and not quiet:
            out.print(Text.assemble(("PASS", "green"), f" {r.case.id}"), soft_wrap=True)
        elif not r.passed:
            head, _, rest = r.report().partition("\n")
            out.print(Text.assemble(("FAIL", "bold red"), head[4:]), soft_wrap=True)
            out.print(rest, markup=False, highlight=False, soft_wrap=True)
    failed = len(result.failed)
    inline = sum(1 for r in result.results if r.case.rule is not None)
    files = len({r.case.where.file for r in result.results if r.case.rule is None})
    out.print(
        f"{len(result.results) - failed} passed, {failed} failed: "
        f"{len(result.results) - inline} cases in {files} files, {inline} inline rule tests "
        f"(pack {suite.plan.pack_id} {suite.plan.version})",
        highlight=False,
        soft_wrap=True,
    )
    if not result.results:
        err.print(f"no tests{f' match {match!r}' if match else ''} in {suite.folder}")
    if failed or not result.results:
        raise typer.Exit(1)


@app.command()
def version() -> None:
    """Print the engine version."""
    out.print(__version__)


def _reuse_freed_memory() -> None:
    """A batch run allocates and frees gigabytes of columns, stage after stage.

    Called once per process by ``main``: the command line is one run, then exit.

    glibc hands any block over 32 MB back to the system when freed, and the next
    8-million-row column page-faults its memory in again (about 1 ms per MB on
    this VM).  A one-shot batch process keeps freed memory for reuse instead: at
    a million claims rule evaluation took ~0.5 s less and the peak RSS rose 5%
    (3.35 to 3.53 GB; the blocks are reused, not added).  Other C libraries:
    nothing to do.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4  # glibc's malloc.h
    mallopt(m_mmap_max, 0)  # every block from the heap, which keeps what is freed
    mallopt(m_trim_threshold, 2**31 - 1)
    mallopt(m_top_pad, 256 << 20)


def run(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code instead of exiting (testable)."""
    return run_app(app, argv)


def main() -> None:
    _reuse_freed_memory()  # a process of its own (cli.run, used in tests, is not)
    code = run()
    # Every output is written and synced by now: exit without the interpreter's
    # teardown, which after a million-claim run spends ~0.3 s unloading numba's
    # compiled kernels and freeing caches nobody will read.  Streams first.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
