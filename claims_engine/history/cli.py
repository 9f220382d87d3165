"""`claims-engine history`: look into and maintain a history store (``--history DIR``).

    history info DIR                        batches, rows, admission range, size, version
    history vacuum DIR [--retain-hours H]   compact small files, delete unreferenced ones

Errors are :class:`ClaimsEngineError` (a folder that is not a history store: exit 2)
or :class:`OutputError` (the store cannot be written: exit 3); the main command line
prints them.  :func:`run` does the same when this module runs on its own.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from claims_engine.console import run_app
from claims_engine.history.store import HistoryStore

history_app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Look into and maintain a history store (the folder given as --history).",
)
out = Console(soft_wrap=True)

StoreArg = Annotated[Path, typer.Argument(help="the history store folder", show_default=False)]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@history_app.command("info")
def info_command(directory: StoreArg) -> None:
    """Batches (claims, lines, commit time), totals, admission range, size and version."""
    info = HistoryStore(directory).info()
    table = Table(title=f"History {info.path}", title_justify="left")
    table.add_column("batch")
    table.add_column("claims", justify="right")
    table.add_column("lines", justify="right")
    table.add_column("committed (UTC)")
    for batch in info.batches:
        table.add_row(
            batch.batch_id, f"{batch.claims:,}", f"{batch.lines:,}", _when(batch.committed_at)
        )
    table.add_section()
    table.add_row(f"{len(info.batches)} batches", f"{info.claims:,}", f"{info.lines:,}", "")
    out.print(table)
    out.print(f"admissions  {_when(info.first_admitted)} .. {_when(info.last_admitted)}")
    out.print(
        f"size        {_size(info.data_bytes)} in {info.files:,} data files; "
        f"{_size(info.disk_bytes)} on disk"
    )
    out.print(f"version     {info.version}")


@history_app.command("vacuum")
def vacuum_command(
    directory: StoreArg,
    retain_hours: Annotated[
        float,
        typer.Option(
            "--retain-hours",
            min=0,
            help="keep files that versions of the last H hours still need (runs reading "
            "history now are safe when H exceeds the longest run)",
        ),
    ] = 168,
) -> None:
    """Compact small files and delete files no recent version references."""
    result = HistoryStore(directory).vacuum(retain_hours=retain_hours)
    out.print(
        f"compacted   {result.files_compacted:,} small files "
        f"({result.files_before:,} -> {result.files_after:,} data files)"
    )
    out.print(
        f"deleted     {result.files_deleted:,} unreferenced files older than {retain_hours:g} h"
    )
    out.print(f"on disk     {_size(result.disk_bytes_before)} -> {_size(result.disk_bytes_after)}")
    out.print(f"version     {result.version}  ({result.seconds:.1f} s)")


def run(argv: list[str] | None = None) -> int:
    """Run ``history`` on its own; returns the exit code (errors as one line on stderr)."""
    return run_app(history_app, argv)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
