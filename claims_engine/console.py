"""Running a typer app as a command: exit codes and one-line errors, never a traceback.

Shared by the main command line and the sub-apps that can also run on their own
(``python -m claims_engine.history.cli``).
"""

from __future__ import annotations

import os

import typer
from rich.console import Console

from claims_engine.errors import ClaimsEngineError

EXIT_INTERNAL = 70  # a bug, not bad input
err = Console(stderr=True, soft_wrap=True)  # paths in messages stay unbroken


def run_app(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run ``app``; returns the exit code of contract section 3 instead of exiting."""
    try:
        code = app(args=argv, standalone_mode=False)  # click returns typer.Exit codes here
        return code if isinstance(code, int) else 0
    except ClaimsEngineError as exc:
        err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:
        show = getattr(exc, "show", None)
        if callable(show) and hasattr(exc, "exit_code"):  # click's usage errors (typer vendors it)
            show()
            return 2
        if type(exc).__name__ in ("Exit", "Abort"):  # click's own, under another module name
            return int(getattr(exc, "exit_code", 130))
        # anything else is a bug: say so plainly; the traceback only on request
        if os.environ.get("CLAIMS_ENGINE_DEBUG"):
            raise
        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc} "
            "(set CLAIMS_ENGINE_DEBUG=1 for a traceback, and please report it)"
        )
        return EXIT_INTERNAL
