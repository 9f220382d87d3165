"""One exception family for everything that stops a run.

Rule hits are data (the reasons table), never exceptions.  These are for input the
engine cannot use at all: each carries the exit code of contract section 3 and a
message that says where (file, row or line, field) and what was expected.
"""

from __future__ import annotations


class ClaimsEngineError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BatchError(ClaimsEngineError):
    """A batch file is missing, unreadable, or lacks a required column (exit 2)."""


class ReferenceDataError(ClaimsEngineError):
    """Reference data is missing, unreadable, or does not cover a date (exit 2)."""


class PackError(ClaimsEngineError):
    """A rule pack cannot be loaded, parsed or type-checked (exit 2)."""


class OutputError(ClaimsEngineError):
    """Outputs or history could not be written (exit 3)."""

    exit_code = 3
