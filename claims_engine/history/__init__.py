"""History of earlier batches for the card-holder rules (contract section 2)."""

from __future__ import annotations

from claims_engine.history.schema import HISTORY_CLAIMS_SCHEMA, HISTORY_LINES_SCHEMA, bucket_of
from claims_engine.history.store import (
    BatchInfo,
    CommitInfo,
    HistoryInfo,
    HistoryRows,
    HistoryStore,
    VacuumInfo,
)

__all__ = [
    "HISTORY_CLAIMS_SCHEMA",
    "HISTORY_LINES_SCHEMA",
    "BatchInfo",
    "CommitInfo",
    "HistoryInfo",
    "HistoryRows",
    "HistoryStore",
    "VacuumInfo",
    "bucket_of",
]
