"""The history store: claims and lines of earlier batches, for the card-holder rules.

Contract section 2: history holds the claims and lines of other batches that were
not MALFORMED, with their decisions; re-running a batch id replaces that batch's
rows; a batch claim with the same claim_id and facility_id as a history claim is a
resubmission and replaces it (with its lines).

Storage: one Delta Lake table in the store folder (see :mod:`.schema` for why one
table, and for the partitions).  What a commit relies on:

* **One transaction.**  A commit writes its data files first (new Parquet files
  only: the rows of the batch, and copies of the files that held rows to remove,
  without those rows), then publishes them with *one* Delta commit that holds every
  ``remove`` and ``add`` action (``DeltaTable.create_write_transaction``).  A Delta
  commit is a single log entry ``_delta_log/<version>.json`` that delta-rs creates
  only if absent (put-if-absent: on a local filesystem a hard link of a temporary
  file), so it lands whole or not at all.  Data files that no log entry references
  are invisible to readers; a run killed before the commit leaves only such files,
  and :meth:`HistoryStore.vacuum` deletes them.
* **No lost or doubled rows under concurrency.**  Writers (commit, vacuum) take an
  exclusive ``flock`` on ``<store>/.claims-engine.lock``, waiting up to
  ``lock_timeout`` seconds; the rows to remove are planned under that lock from
  the latest version.  Independently, the commit is made with
  ``max_commit_retries=0``: if any other commit reached the table after the version
  the plan was made from (a writer that does not take the lock), delta-rs refuses
  ours with ``CommitFailedError`` and nothing is published ->
  :class:`OutputError` (exit 3) "history at <path> was changed by another run;
  nothing was written".  Two runs with different batch ids started together
  therefore both land, one after the other; with ``expected_version`` (the version
  a run's card-holder rules read, ``HistoryRows.version``) the second one fails
  with that error instead of publishing rows that were judged against a history
  that no longer exists.
* Data files are fsynced before the commit.  Readers are never blocked: they read
  the snapshot of one version (claims and lines of the same version).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import math
import os
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, WriterProperties
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction

try:  # committing removes from Python came with delta-rs PR 4713 (tested: deltalake 1.6.6)
    from deltalake.transaction import RemoveAction
except ImportError:  # pragma: no cover - an older deltalake
    RemoveAction = None  # type: ignore[assignment,misc]

from claims_engine.errors import ClaimsEngineError, OutputError
from claims_engine.history.schema import (
    CLAIM_KIND,
    COMMITTED_AT,
    HISTORY_CLAIMS_SCHEMA,
    HISTORY_LINES_SCHEMA,
    LINE_KIND,
    PARTITION_COLUMNS,
    ROW_KIND,
    STATS_COLUMNS,
    STORED_TIMESTAMP,
    TABLE_NAME,
    TABLE_SCHEMA,
    bucket_of,
    card_holder_of,
    from_stored,
    month_of,
    to_stored,
)
from claims_engine.io.output import fsync_dir, fsync_path, os_message, read_pid, write_pid
from claims_engine.schema import CLAIMS_SCHEMA, LINES_SCHEMA

__all__ = [
    "LOCK_NAME",
    "BatchInfo",
    "CommitInfo",
    "HistoryInfo",
    "HistoryRows",
    "HistoryStore",
    "VacuumInfo",
]

LOCK_NAME = ".claims-engine.lock"
DELTA_LOG = "_delta_log"
# Data files: snappy and decimals as INT64 decode about a quarter faster than zstd and
# fixed-length decimals (reading is the hot path); rows sorted by card holder in row
# groups of 64Ki, whose statistics let a read of few holders skip most of a file.
PARQUET_COMPRESSION = "snappy"
ROW_GROUP_ROWS = 1 << 16
# Table properties: statistics only where they serve (finding a batch's files,
# skipping files on read); a checkpoint every 20 commits keeps opening the table fast.
TABLE_CONFIGURATION: dict[str, str | None] = {
    "delta.dataSkippingStatsColumns": ",".join(STATS_COLUMNS),
    "delta.checkpointInterval": "20",
}
METADATA_KEY = "claims_engine"  # commitInfo key holding what a commit did
# Operations of another run that do not change what history holds.
_NO_DATA_CHANGE = frozenset({"CREATE TABLE", "OPTIMIZE", "VACUUM START", "VACUUM END"})
_KEYS = ("claim_id", "facility_id")
_STAT_TIMESTAMP = "%Y-%m-%dT%H:%M:%S.%f"
_KEY_SCAN_ROWS = 4_000_000  # claim keys compared per step when looking for resubmissions
_THREADS = max(2, min(8, os.cpu_count() or 2))  # files written, buckets read, at once
_PUSHDOWN_HOLDERS = 64  # a bucket asked for at most this many holders: filter while scanning
_PARTITIONING = ds.partitioning(
    pa.schema([TABLE_SCHEMA.field(name) for name in PARTITION_COLUMNS]), flavor="hive"
)
_FORMAT = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=True)
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class HistoryRows:
    """History claims and lines (contract types plus the history's columns).

    ``claims`` has :data:`HISTORY_CLAIMS_SCHEMA`, ``lines`` :data:`HISTORY_LINES_SCHEMA`,
    in no particular order.  ``version`` is the table version they were read from
    (-1: no history yet); pass it to :meth:`HistoryStore.commit` as
    ``expected_version`` to refuse publishing if history changed in between.
    """

    claims: pa.Table
    lines: pa.Table
    version: int = -1


@dataclass(frozen=True)
class CommitInfo:
    batch_id: str
    version: int  # the table version this commit created
    claims: int  # claims written
    lines: int  # lines written
    rerun_claims: int  # earlier rows of this batch id replaced (a re-run)
    rerun_lines: int
    resubmitted_claims: int  # claims of other batches replaced by a resubmission
    resubmitted_lines: int
    orphan_lines: int  # lines given whose claim_id is not among the claims: not stored
    files_added: int
    files_removed: int
    seconds: float


@dataclass(frozen=True)
class BatchInfo:
    batch_id: str
    claims: int
    lines: int
    committed_at: datetime | None  # UTC


@dataclass(frozen=True)
class HistoryInfo:
    path: Path
    version: int
    batches: tuple[BatchInfo, ...]  # by commit time
    claims: int
    lines: int
    first_admitted: datetime | None
    last_admitted: datetime | None
    files: int  # data files of the current version
    data_bytes: int  # their size
    disk_bytes: int  # everything in the folder (log, files awaiting vacuum)


@dataclass(frozen=True)
class VacuumInfo:
    version: int
    files_before: int  # data files of the current version, before compaction
    files_after: int
    files_compacted: int  # small files merged by compaction
    files_deleted: int  # unreferenced files deleted from disk
    disk_bytes_before: int
    disk_bytes_after: int
    seconds: float


# --------------------------------------------------------------------------- store


class HistoryStore:
    """A history store in folder ``path`` (created on the first commit)."""

    def __init__(self, path: Path, *, lock_timeout: float = 600.0) -> None:
        self.path = Path(path).expanduser().absolute()
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"HistoryStore({str(self.path)!r})"

    # ------------------------------------------------------------------ read

    def read(
        self,
        card_holders: pa.Array | pa.ChunkedArray,
        since: date | None = None,
        exclude_batch: str | None = None,
        *,
        exclude_claims: pa.Table | None = None,
        claim_columns: Sequence[str] | None = None,
        line_columns: Sequence[str] | None = None,
    ) -> HistoryRows:
        """History claims and lines of ``card_holders`` (10-character holder keys).

        Only claims admitted on or after ``since`` (None: all), without the rows of
        batch ``exclude_batch`` (a re-run must not see its own earlier rows) and,
        when given, without the claims whose (claim_id, facility_id) is in
        ``exclude_claims`` and their lines (the batch's resubmissions).

        ``claim_columns`` / ``line_columns``: only these columns of
        :data:`HISTORY_CLAIMS_SCHEMA` / :data:`HISTORY_LINES_SCHEMA` (in this order);
        None: all.  Decoding is most of the cost of a large read, so asking only for
        what the rules use makes it several times cheaper.

        The files to read are chosen from the Delta log of one version by partition
        (row kind, the holders' buckets, months from ``since`` on); their rows are
        then filtered with ``is_in`` on card_holder (and on admitted_at, batch_id),
        bucket by bucket (see :meth:`_read_kind`).
        """
        targets = (
            _projection(HISTORY_CLAIMS_SCHEMA, claim_columns, "claim_columns"),
            _projection(HISTORY_LINES_SCHEMA, line_columns, "line_columns"),
        )
        table = self._open()
        if table is None:
            return _empty_rows(-1, *targets)
        version = table.version()
        holders = _distinct_strings(card_holders)
        if len(holders) == 0:
            return _empty_rows(version, *targets)
        first_month = since.strftime("%Y-%m") if since is not None else None
        start = (
            None
            if since is None
            else pa.scalar(datetime(since.year, since.month, since.day), STORED_TIMESTAMP)
        )
        keys = (
            exclude_claims.select(list(_KEYS))
            if exclude_claims is not None and exclude_claims.num_rows
            else None
        )
        # the holders of each bucket: a bucket's files are filtered with its holders only
        by_bucket = pa.table({"card_holder": holders, "bucket": bucket_of(holders)})
        order = pc.sort_indices(by_bucket, [("bucket", "ascending")])
        by_bucket = by_bucket.take(order)
        bucket_ids = by_bucket.column("bucket").to_numpy()
        cuts = np.flatnonzero(np.r_[True, bucket_ids[1:] != bucket_ids[:-1], True])
        sorted_holders = by_bucket.column("card_holder").combine_chunks()
        groups = {
            int(bucket_ids[a]): sorted_holders.slice(a, b - a)
            for a, b in zip(cuts[:-1].tolist(), cuts[1:].tolist(), strict=True)
        }
        out: list[pa.Table] = []
        try:
            files = _add_actions(table)
            for kind, target in zip((CLAIM_KIND, LINE_KIND), targets, strict=True):
                parts = self._read_kind(
                    files, kind, groups, first_month, start, exclude_batch, keys, list(target.names)
                )
                rows = pa.concat_tables(parts) if parts else None
                out.append(from_stored(rows, target) if rows is not None else target.empty_table())
        except (OSError, DeltaError, pa.ArrowException) as exc:
            raise ClaimsEngineError(f"cannot read history at {self.path}: {exc}") from None
        return HistoryRows(out[0], out[1], version)

    def _read_kind(
        self,
        files: pa.Table,
        kind: str,
        groups: dict[int, pa.Array],
        first_month: str | None,
        start: pa.Scalar | None,
        exclude_batch: str | None,
        keys: pa.Table | None,
        names: list[str],
    ) -> list[pa.Table]:
        """Rows of ``kind`` of the holders in ``groups`` (bucket -> holders), one bucket at a time.

        A bucket's files are read whole (columns ``names`` and those filtered on) and
        filtered afterwards with one ``is_in`` against that bucket's holders: cheaper
        than a filter pushed into the scan, which re-evaluates per batch and adds
        work per file.  A bucket asked for few holders pushes the filter down
        instead, so the row groups whose card_holder statistics exclude them are
        skipped (rows are sorted by holder in each file).  Buckets are read in
        parallel; memory holds a few buckets' rows at a time.
        """
        filtered = ["card_holder", "admitted_at", "batch_id", *_KEYS]
        wanted = names + [c for c in filtered if c not in names]
        files = (
            files.filter(pc.equal(files.column("partition." + ROW_KIND), kind))
            if files.num_rows
            else files
        )

        def condition(holders: pa.Array) -> pc.Expression:
            expr = pc.is_in(pc.field("card_holder"), value_set=holders)
            if start is not None:
                expr = expr & (pc.field("admitted_at") >= start)
            if exclude_batch is not None:
                expr = expr & (pc.field("batch_id") != pa.scalar(exclude_batch, pa.string()))
            return expr

        def one(bucket: int) -> pa.Table:
            holders = groups[bucket]
            dataset = self._dataset(files, kind, [bucket], first_month)
            if len(holders) <= _PUSHDOWN_HOLDERS:
                rows = dataset.to_table(
                    columns=wanted, filter=condition(holders), use_threads=False
                )
            else:
                rows = dataset.to_table(columns=wanted, use_threads=False)
                mask = pc.is_in(rows.column("card_holder"), value_set=holders)
                if start is not None:
                    mask = pc.and_(mask, pc.greater_equal(rows.column("admitted_at"), start))
                if exclude_batch is not None:
                    mask = pc.and_(mask, pc.not_equal(rows.column("batch_id"), exclude_batch))
                rows = rows.filter(mask)
            if keys is not None and rows.num_rows:
                rows = rows.filter(pa.array(~_key_mask(rows, keys)))
            return rows.select(names)

        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            return [t for t in pool.map(one, sorted(groups)) if t.num_rows]

    def _dataset(
        self,
        files: pa.Table,
        kind: str | None = None,
        buckets: Sequence[int] | None = None,
        first_month: str | None = None,
        paths: Sequence[str] | None = None,
    ) -> ds.FileSystemDataset:
        """The data files of one version (``files``: its add actions) in the given partitions.

        Files are chosen from the log's list of live files (partition values
        compared as columns), never by listing folders; the dataset reads them
        directly (the table has no deletion vectors or column mapping: see
        :func:`_check_schema`).
        """
        if paths is None:
            chosen = files
            if files.num_rows:
                mask = pc.is_valid(files.column("path"))
                if kind is not None:
                    mask = pc.and_(mask, pc.equal(files.column("partition." + ROW_KIND), kind))
                if buckets is not None:
                    column = files.column("partition.bucket")
                    mask = pc.and_(mask, pc.is_in(column, pa.array(buckets, column.type)))
                if first_month is not None:
                    mask = pc.and_(
                        mask, pc.greater_equal(files.column("partition.month"), first_month)
                    )
                chosen = files.filter(mask)
            paths = (
                [unquote(p) for p in chosen.column("path").to_pylist()] if chosen.num_rows else []
            )
        filesystem = pafs.SubTreeFileSystem(str(self.path), pafs.LocalFileSystem())
        dataset: ds.FileSystemDataset = ds.dataset(
            list(paths),
            schema=TABLE_SCHEMA,
            format=_FORMAT,
            filesystem=filesystem,
            partitioning=_PARTITIONING,
        )
        return dataset

    # ------------------------------------------------------------------ commit

    def commit(
        self,
        batch_id: str,
        claims: pa.Table,
        lines: pa.Table,
        *,
        expected_version: int | None = None,
    ) -> CommitInfo:
        """Replace batch ``batch_id``'s rows with ``claims`` and ``lines``, in one transaction.

        ``claims`` and ``lines`` hold the contract's columns (nullable ones may be
        absent) plus ``decision``; pass only claims that are not MALFORMED and
        their lines (lines of other claims are not stored: ``orphan_lines``).
        In one Delta commit: every earlier row of ``batch_id`` is removed, every
        history claim (of any batch) with the claim_id and facility_id of one of
        ``claims`` is removed with its lines, and the new rows are added.

        ``expected_version``: the version the run read (``HistoryRows.version``); if
        another run changed history since, nothing is written (exit 3).

        Raises :class:`OutputError` (exit 3) when history cannot be written (a
        concurrent change, the lock not obtained in time, an OS error), and
        :class:`ClaimsEngineError` (exit 2) when the folder is not a history store.
        """
        if not isinstance(batch_id, str) or not batch_id:
            raise ValueError("batch_id must be a non-empty string")
        if RemoveAction is None:  # pragma: no cover - an older deltalake
            import deltalake

            raise OutputError(
                f"cannot write history at {self.path}: deltalake {deltalake.__version__} "
                "cannot commit file removals from Python; install a newer deltalake "
                "(1.6.6 is known to work)"
            )
        started = time.perf_counter()
        committed_at = datetime.now(UTC)
        new_claims, new_lines, orphans = _history_rows(batch_id, claims, lines, committed_at)
        self._check_usable()
        with self._writer_lock():
            table = self._open()
            if table is None:
                table = self._create()
            if expected_version is not None:
                self._check_unchanged(table, expected_version)
            writer = _Writer(self.path, batch_id)
            try:
                removed = self._remove_old_rows(table, writer, batch_id, new_claims)
                writer.write_parts(CLAIM_KIND, new_claims)
                writer.write_parts(LINE_KIND, new_lines)
                summary = {
                    "batch_id": batch_id,
                    "commit_id": writer.commit_id,
                    "claims": new_claims.num_rows,
                    "lines": new_lines.num_rows,
                    **removed,
                }
                version = self._publish(table, writer, summary)
            except BaseException as exc:
                writer.discard()
                if isinstance(exc, CommitFailedError):
                    raise self._changed_error() from None
                if isinstance(exc, OSError):
                    raise OutputError(
                        f"cannot write history at {self.path}: {os_message(exc)}; "
                        "nothing was written"
                    ) from None
                if isinstance(exc, DeltaError):
                    raise OutputError(
                        f"cannot write history at {self.path}: {exc}; nothing was written"
                    ) from None
                raise
        return CommitInfo(
            batch_id=batch_id,
            version=version,
            claims=new_claims.num_rows,
            lines=new_lines.num_rows,
            rerun_claims=removed["rerun_claims"],
            rerun_lines=removed["rerun_lines"],
            resubmitted_claims=removed["resubmitted_claims"],
            resubmitted_lines=removed["resubmitted_lines"],
            orphan_lines=orphans,
            files_added=len(writer.added),
            files_removed=len(writer.removed),
            seconds=round(time.perf_counter() - started, 3),
        )

    def _changed_error(self) -> OutputError:
        return OutputError(
            f"history at {self.path} was changed by another run; nothing was written"
        )

    def _check_unchanged(self, table: DeltaTable, expected: int) -> None:
        current = table.version()
        if current == expected:
            return
        if current < expected:
            raise OutputError(
                f"history at {self.path} is at version {current}, older than the version "
                f"{expected} this run read; nothing was written"
            )
        seen: set[int] = set()
        for entry in table.history(current - expected):
            version = int(entry.get("version", -1))
            if version <= expected:
                continue
            seen.add(version)
            if entry.get("operation") in _NO_DATA_CHANGE:
                continue
            meta = entry.get(METADATA_KEY)
            batch = meta.get("batch_id") if isinstance(meta, dict) else None
            what = f" (batch {batch})" if batch else ""
            raise OutputError(
                f"history at {self.path} was changed by another run; nothing was written "
                f"(this run read version {expected}; version {version}{what} "
                "was committed since)"
            )
        if len(seen) < current - expected:  # log entries cleaned up since: cannot tell
            raise OutputError(
                f"history at {self.path} was changed by another run; nothing was written "
                f"(this run read version {expected}, now {current})"
            )

    def _remove_old_rows(
        self, table: DeltaTable, writer: _Writer, batch_id: str, new_claims: pa.Table
    ) -> dict[str, int]:
        """Plan and stage the removals: rows of ``batch_id``, resubmitted claims and their lines.

        Files holding such rows are rewritten without them (new files); the old
        files are removed in the commit.
        """
        counts = {
            "rerun_claims": 0,
            "rerun_lines": 0,
            "resubmitted_claims": 0,
            "resubmitted_lines": 0,
        }
        files = _add_actions(table)
        if files.num_rows == 0:
            return counts
        kinds = files.column("partition." + ROW_KIND).to_pylist()
        paths = files.column("path").to_pylist()
        # 1. files that may hold rows of this batch (batch_id statistics; none = maybe)
        candidates: set[int] = set()
        lo: list[Any] = [None] * files.num_rows
        hi: list[Any] = [None] * files.num_rows
        if "min.batch_id" in files.column_names:
            lo = files.column("min.batch_id").to_pylist()
            hi = files.column("max.batch_id").to_pylist()
            for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
                if a is None or b is None or a <= batch_id <= b:
                    candidates.add(i)
        else:
            candidates.update(range(files.num_rows))
        # 2. resubmissions: history claims with the key of one of this batch's claims
        replaced = self._resubmitted(files, batch_id, new_claims)
        if replaced.num_rows:
            by_path = {unquote(p): i for i, p in enumerate(paths)}
            claim_files = {
                by_path[unquote(p)] for p in pc.unique(replaced.column("__filename")).to_pylist()
            }
            candidates |= claim_files
            buckets = files.column("partition.bucket").to_pylist()
            months = files.column("partition.month").to_pylist()
            partitions = {(buckets[i], months[i]) for i in claim_files}
            candidates |= {
                i
                for i in range(files.num_rows)
                if kinds[i] == LINE_KIND and (buckets[i], months[i]) in partitions
            }
        keys = replaced.select(list(_KEYS))
        sizes = files.column("size_bytes").to_pylist()
        records = files.column("num_records").to_pylist()
        nulls = (
            files.column("null_count.batch_id").to_pylist()
            if "null_count.batch_id" in files.column_names
            else [None] * files.num_rows
        )
        jobs = []
        for i in sorted(candidates):
            only = (
                lo[i] == hi[i] == batch_id and nulls[i] == 0 and records[i] is not None
                if "min.batch_id" in files.column_names
                else False
            )
            jobs.append(
                _Rewrite(
                    paths[i],
                    int(sizes[i]),
                    str(kinds[i]),
                    _partition_values(files, i),
                    int(records[i] or 0),
                    bool(only),
                )
            )
        (
            counts["rerun_claims"],
            counts["rerun_lines"],
            counts["resubmitted_claims"],
            counts["resubmitted_lines"],
        ) = writer.rewrite(jobs, batch_id, keys)
        return counts

    def _resubmitted(self, files: pa.Table, batch_id: str, new_claims: pa.Table) -> pa.Table:
        """(claim_id, facility_id, batch_id, __filename) of history claims of other batches
        that claims of this batch resubmit.

        Every claim file is read (a resubmission may change the card and the dates,
        so no partition can be skipped), key columns only, in steps of about
        ``_KEY_SCAN_ROWS`` rows, each compared with the batch's keys at once.
        """
        empty = pa.table(
            {
                "claim_id": pa.array([], pa.string()),
                "facility_id": pa.array([], pa.string()),
                "batch_id": pa.array([], pa.string()),
                "__filename": pa.array([], pa.string()),
            }
        )
        if new_claims.num_rows == 0:
            return empty
        dataset = self._dataset(files, CLAIM_KIND)
        fragments = list(dataset.get_fragments())
        if not fragments:
            return empty
        records = _records_by_path(files)
        batch_keys = pc.unique(new_claims.column("claim_id"))
        wanted = new_claims.select(list(_KEYS))
        found: list[pa.Table] = []
        step: list[ds.Fragment] = []
        rows = 0

        def flush() -> None:
            part = ds.FileSystemDataset(step, dataset.schema, dataset.format, dataset.filesystem)
            keys = part.to_table(
                columns=["claim_id", "facility_id", "batch_id", "__filename"],
                filter=(pc.field("batch_id") != pa.scalar(batch_id, pa.string()))
                & pc.is_in(pc.field("claim_id"), value_set=batch_keys),
            )
            if keys.num_rows:
                found.append(keys.filter(pa.array(_key_mask(keys, wanted))))

        for fragment in fragments:
            step.append(fragment)
            rows += records.get(unquote(fragment.path), 1)
            if rows >= _KEY_SCAN_ROWS:
                flush()
                step, rows = [], 0
        if step:
            flush()
        if not found:
            return empty
        return pa.concat_tables(found).select(empty.column_names).cast(empty.schema)

    def _publish(self, table: DeltaTable, writer: _Writer, summary: dict[str, Any]) -> int:
        """The one Delta commit; returns its version."""
        actions: list[AddAction | RemoveAction] = [*writer.removed, *writer.added]
        if not actions:
            return table.version()
        writer.sync()
        before = table.version()
        try:
            _commit_actions(table, actions, {METADATA_KEY: summary})
        except CommitFailedError:
            raise
        except BaseException:
            # The commit may have landed even if a post-commit step failed: then the
            # files are referenced and must stay.
            landed = self._landed(writer.commit_id, before)
            if landed is None:
                raise
            writer.keep()
            return landed
        writer.keep()
        table.update_incremental()  # under the writer lock: the version just committed
        return table.version()

    def _landed(self, commit_id: str, before: int) -> int | None:
        """The version of commit ``commit_id`` if it is in the log after ``before``."""
        with contextlib.suppress(Exception):
            table = DeltaTable(self.path)
            current = table.version()
            if current <= before:
                return None
            for entry in table.history(current - before):
                meta = entry.get(METADATA_KEY)
                if isinstance(meta, dict) and meta.get("commit_id") == commit_id:
                    return int(entry["version"])
        return None

    # ------------------------------------------------------------------ info, vacuum

    def info(self) -> HistoryInfo:
        """Batches (claims, lines, commit time), totals, admission range, size, version."""
        table = self._require()
        try:
            return self._info(table)
        except (OSError, DeltaError, pa.ArrowException) as exc:
            raise ClaimsEngineError(f"cannot read history at {self.path}: {exc}") from None

    def _info(self, table: DeltaTable) -> HistoryInfo:
        files = _add_actions(table)
        n = files.num_rows
        counts: dict[tuple[str, str], int] = {}
        committed: dict[str, datetime] = {}
        first: datetime | None = None
        last: datetime | None = None
        mixed: list[int] = []
        if n:
            kinds = files.column("partition." + ROW_KIND).to_pylist()
            paths = files.column("path").to_pylist()
            records = files.column("num_records").to_pylist()
            names = files.column_names
            lo = files.column("min.batch_id").to_pylist() if "min.batch_id" in names else [None] * n
            hi = files.column("max.batch_id").to_pylist() if "max.batch_id" in names else [None] * n
            first_file: dict[str, int] = {}
            for i in range(n):
                only = lo[i]
                if isinstance(only, str) and only == hi[i] and records[i] is not None:
                    key = (only, str(kinds[i]))
                    counts[key] = counts.get(key, 0) + int(records[i])
                    first_file.setdefault(only, i)
                else:
                    mixed.append(i)
            if mixed:  # files of several batches (compacted) or without statistics
                self._count_mixed([paths[i] for i in mixed], kinds, paths, counts, committed)
            for batch, i in first_file.items():
                if batch not in committed:
                    at = _first_committed_at(self.path / unquote(paths[i]))
                    if at is not None:
                        committed[batch] = at
            first, last = self._admission_range(files)
        batches = sorted({b for b, _ in counts})
        infos = [
            BatchInfo(
                b, counts.get((b, CLAIM_KIND), 0), counts.get((b, LINE_KIND), 0), committed.get(b)
            )
            for b in batches
        ]
        infos.sort(key=lambda x: (x.committed_at or datetime.min.replace(tzinfo=UTC), x.batch_id))
        sizes = files.column("size_bytes").to_pylist() if n else []
        return HistoryInfo(
            path=self.path,
            version=table.version(),
            batches=tuple(infos),
            claims=sum(b.claims for b in infos),
            lines=sum(b.lines for b in infos),
            first_admitted=first,
            last_admitted=last,
            files=n,
            data_bytes=int(sum(sizes)),
            disk_bytes=_disk_bytes(self.path),
        )

    def _admission_range(self, files: pa.Table) -> tuple[datetime | None, datetime | None]:
        """First and last admission: admitted_at of the claims of the first and last months."""
        claims = files.filter(pc.equal(files.column("partition." + ROW_KIND), CLAIM_KIND))
        if claims.num_rows == 0:
            return None, None
        months = claims.column("partition.month")
        bounds = pc.min_max(months)
        first = self._dataset(files, CLAIM_KIND, first_month=bounds["min"].as_py())
        low = first.filter(pc.field("month") == bounds["min"].as_py()).to_table(
            columns=["admitted_at"]
        )
        last = self._dataset(files, CLAIM_KIND, first_month=bounds["max"].as_py())
        high = last.to_table(columns=["admitted_at"])
        lo = pc.min(low.column("admitted_at")).as_py() if low.num_rows else None
        hi = pc.max(high.column("admitted_at")).as_py() if high.num_rows else None
        return (lo if isinstance(lo, datetime) else None, hi if isinstance(hi, datetime) else None)

    def _count_mixed(
        self,
        mixed_paths: list[str],
        kinds: list[str],
        paths: list[str],
        counts: dict[tuple[str, str], int],
        committed: dict[str, datetime],
    ) -> None:
        kind_of = {unquote(p): k for p, k in zip(paths, kinds, strict=True)}
        dataset = self._dataset(pa.table({}), paths=[unquote(p) for p in mixed_paths])
        for fragment in dataset.get_fragments():
            kind = kind_of[unquote(fragment.path)]
            rows = fragment.to_table(columns=["batch_id", COMMITTED_AT], schema=dataset.schema)
            grouped = rows.group_by("batch_id").aggregate(
                [("batch_id", "count"), (COMMITTED_AT, "max")]
            )
            for batch, count, at in zip(
                grouped.column("batch_id").to_pylist(),
                grouped.column("batch_id_count").to_pylist(),
                grouped.column(COMMITTED_AT + "_max").to_pylist(),
                strict=True,
            ):
                if batch is None:
                    continue
                counts[(batch, kind)] = counts.get((batch, kind), 0) + int(count)
                if at is not None and (batch not in committed or at > committed[batch]):
                    committed[batch] = at

    def vacuum(self, retain_hours: float = 168) -> VacuumInfo:
        """Compact small files, then delete files no version newer than ``retain_hours`` needs.

        Compaction (delta-rs ``optimize.compact``) merges the small files of each
        partition into larger ones in a commit that changes no data.  Vacuum
        (``vacuum(full=True)``) then deletes files that the log no longer references
        and that are older than ``retain_hours``: files replaced by re-runs,
        resubmissions or compaction, and files left by runs killed before their
        commit.  Readers of a version older than ``retain_hours`` may then miss
        files, so keep it above the longest run (the default is a week).
        """
        if not math.isfinite(retain_hours) or retain_hours < 0:
            raise ClaimsEngineError(
                f"--retain-hours: expected a number of hours >= 0, got {retain_hours}"
            )
        started = time.perf_counter()
        self._require()
        with self._writer_lock():
            table = self._require()
            try:
                before_files = len(table.file_uris())
                disk_before = _disk_bytes(self.path)
                on_disk_before = _data_files_on_disk(self.path)
                metrics = table.optimize.compact(
                    writer_properties=WriterProperties(
                        compression="SNAPPY", max_row_group_size=ROW_GROUP_ROWS
                    ),
                    commit_properties=CommitProperties(
                        custom_metadata={METADATA_KEY: {"operation": "compact"}},
                        max_commit_retries=0,
                    ),
                )
                table = DeltaTable(self.path)
                table.vacuum(
                    retention_hours=math.ceil(retain_hours),
                    dry_run=False,
                    enforce_retention_duration=False,
                    full=True,
                )
                table = DeltaTable(self.path)
                with contextlib.suppress(DeltaError):
                    table.create_checkpoint()
                    table.cleanup_metadata()
                after_files = len(table.file_uris())
            except CommitFailedError:
                raise self._changed_error() from None
            except OSError as exc:
                raise OutputError(
                    f"cannot vacuum history at {self.path}: {os_message(exc)}"
                ) from None
            except DeltaError as exc:
                raise OutputError(f"cannot vacuum history at {self.path}: {exc}") from None
            return VacuumInfo(
                version=table.version(),
                files_before=before_files,
                files_after=after_files,
                files_compacted=int(metrics.get("numFilesRemoved", 0)),
                files_deleted=len(on_disk_before - _data_files_on_disk(self.path)),
                disk_bytes_before=disk_before,
                disk_bytes_after=_disk_bytes(self.path),
                seconds=round(time.perf_counter() - started, 3),
            )

    # ------------------------------------------------------------------ folder

    def _state(self) -> str:
        """'missing', 'empty' (no table yet) or 'table'; raises for a folder that is not a store."""
        try:
            entries = os.listdir(self.path)
        except FileNotFoundError:
            return "missing"
        except NotADirectoryError:
            raise ClaimsEngineError(
                f"{self.path} is not a history store: it is a file, not a folder"
            ) from None
        except OSError as exc:
            raise ClaimsEngineError(
                f"cannot read history at {self.path}: {os_message(exc)}"
            ) from None
        if DELTA_LOG in entries:
            return "table"
        foreign = sorted(e for e in entries if e != LOCK_NAME)
        if not foreign:
            return "empty"
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        shown = ", ".join(foreign[:5]) + more
        raise ClaimsEngineError(
            f"{self.path} is not a history store: it holds {shown} and no {DELTA_LOG} folder "
            "(give a new or empty folder for a new history)"
        )

    def _check_usable(self) -> None:
        if self._state() == "table":
            self._open()

    def _open(self) -> DeltaTable | None:
        """The table at its latest version, or None when there is no history yet."""
        if self._state() != "table":
            return None
        try:
            table = DeltaTable(self.path)
        except TableNotFoundError:
            raise ClaimsEngineError(
                f"{self.path} is not a history store: its {DELTA_LOG} holds no Delta table"
            ) from None
        except (OSError, DeltaError) as exc:
            raise ClaimsEngineError(f"cannot read history at {self.path}: {exc}") from None
        _check_schema(self.path, table)
        return table

    def _require(self) -> DeltaTable:
        table = self._open()
        if table is None:
            what = "does not exist" if not self.path.exists() else "holds no history yet"
            raise ClaimsEngineError(f"{self.path} is not a history store: it {what}")
        return table

    def _create(self) -> DeltaTable:
        try:
            return DeltaTable.create(
                self.path,
                TABLE_SCHEMA,
                mode="error",
                partition_by=list(PARTITION_COLUMNS),
                name=TABLE_NAME,
                description="claims-engine history: claims and lines of earlier batches",
                configuration=TABLE_CONFIGURATION,
                commit_properties=CommitProperties(max_commit_retries=0),
            )
        except CommitFailedError:
            raise self._changed_error() from None
        except OSError as exc:
            raise OutputError(f"cannot create history at {self.path}: {os_message(exc)}") from None
        except DeltaError as exc:
            raise OutputError(f"cannot create history at {self.path}: {exc}") from None

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """Exclusive writer lock of the store (flock), waiting up to ``lock_timeout`` seconds."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write history at {self.path}: {os_message(exc)}") from None
        try:
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = read_pid(fd)
                        by = f" (pid {holder})" if holder else ""
                        raise OutputError(
                            f"another run is writing history at {self.path}{by} and did not "
                            f"finish within {self.lock_timeout:g} s; nothing was written"
                        ) from None
                    time.sleep(0.05)
                except OSError as exc:
                    if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
                        raise OutputError(
                            f"cannot lock history at {self.path}: {os_message(exc)}"
                        ) from None
                    raise
            write_pid(fd)
            yield
        finally:
            os.close(fd)  # releases the lock


# --------------------------------------------------------------------------- writing


class _Writer:
    """Data files staged for one commit: written in parallel, fsynced, removed if it fails."""

    def __init__(self, root: Path, batch_id: str) -> None:
        self.root = root
        self.batch_id = batch_id
        self.commit_id = uuid.uuid4().hex
        self.added: list[AddAction] = []
        self.removed: list[RemoveAction] = []
        self._written: list[Path] = []  # appended from worker threads (atomic under the GIL)
        self._dirs: set[Path] = set()
        self._kept = False
        self._serial = itertools.count(1)

    def _write(self, directory: str, values: Mapping[str, str | None], rows: pa.Table) -> AddAction:
        """Write ``rows`` (:data:`PHYSICAL_SCHEMA`) as a new file of partition ``directory``."""
        name = (
            f"part-{self.commit_id[:12]}-{next(self._serial):05d}-"
            f"{uuid.uuid4().hex[:12]}.snappy.parquet"
        )
        full = self.root / directory / name
        full.parent.mkdir(parents=True, exist_ok=True)
        self._written.append(full)
        _write_file(rows, full)
        st = os.stat(full)
        return AddAction(
            f"{directory}/{name}",
            st.st_size,
            dict(values),
            int(st.st_mtime * 1000),
            True,
            _stats_json(rows),
        )

    def write_parts(self, kind: str, rows: pa.Table) -> None:
        """Rows of one kind (history schema, with partition columns): a file per partition."""

        def job(part: tuple[int, str, pa.Table]) -> AddAction:
            bucket, month, table = part
            values = {ROW_KIND: kind, "bucket": str(bucket), "month": month}
            return self._write(
                f"{ROW_KIND}={kind}/bucket={bucket}/month={month}", values, to_stored(table)
            )

        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            for action in pool.map(job, _partitions(rows)):
                self._dirs.add((self.root / action.path).parent)
                self.added.append(action)

    def rewrite(
        self, jobs: Sequence[_Rewrite], batch_id: str, keys: pa.Table
    ) -> tuple[int, int, int, int]:
        """Stage removal of each job's file and a copy without rows of ``batch_id`` or ``keys``.

        Returns the rows dropped: (claims of the batch, its lines, resubmitted
        claims, their lines).  A file the statistics show to hold rows of the batch
        only is removed without being read; one holding no such row is left alone.
        """
        counts = [0, 0, 0, 0]

        def job(item: _Rewrite) -> tuple[_Rewrite, int, int, AddAction | None]:
            if item.only_batch:
                return item, item.records, 0, None
            full = self.root / unquote(item.path)
            key_columns = pq.read_table(full, columns=["batch_id", *_KEYS])
            of_batch = np.asarray(
                pc.equal(key_columns.column("batch_id"), batch_id).to_numpy(zero_copy_only=False),
                dtype=bool,
            )
            resubmitted = _key_mask(key_columns, keys) & ~of_batch
            drop = of_batch | resubmitted
            if not drop.any():
                return item, 0, 0, None
            added = None
            if not drop.all():
                kept = pq.read_table(full).filter(pa.array(~drop))
                directory = item.path.rsplit("/", 1)[0]
                added = self._write(directory, item.values, to_stored(kept))
            return item, int(of_batch.sum()), int(resubmitted.sum()), added

        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            for item, of_batch, resubmitted, added in pool.map(job, jobs):
                if of_batch == 0 and resubmitted == 0:
                    continue
                if added is not None:
                    self._dirs.add((self.root / added.path).parent)
                    self.added.append(added)
                self.removed.append(
                    RemoveAction(
                        item.path, True, int(time.time() * 1000), item.size, dict(item.values)
                    )
                )
                line = 1 if item.kind == LINE_KIND else 0
                counts[line] += of_batch
                counts[2 + line] += resubmitted
        return counts[0], counts[1], counts[2], counts[3]

    def sync(self) -> None:
        """fsync the folders of the new files and their parents (files are fsynced when written)."""
        folders = set()
        for directory in self._dirs:
            while directory != self.root and self.root in directory.parents:
                folders.add(directory)
                directory = directory.parent
        folders.add(self.root)
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            list(pool.map(fsync_dir, sorted(folders)))

    def keep(self) -> None:
        self._kept = True

    def discard(self) -> None:
        """Delete the files written for a commit that did not land."""
        if self._kept:
            return
        for file in self._written:
            with contextlib.suppress(OSError):
                file.unlink()


@dataclass(frozen=True)
class _Rewrite:
    """A data file that may hold rows a commit removes."""

    path: str  # as in the log
    size: int
    kind: str
    values: Mapping[str, str | None]  # partition values
    records: int
    only_batch: bool  # statistics: every row is of the batch being committed


def _commit_actions(
    table: DeltaTable, actions: list[AddAction | RemoveAction], metadata: dict[str, Any]
) -> None:
    """Publish ``actions`` as one Delta commit on top of ``table``'s version (no retry)."""
    table.create_write_transaction(
        actions,
        mode="append",
        schema=table.schema(),
        partition_by=list(PARTITION_COLUMNS),
        commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=0),
    )


def _write_file(rows: pa.Table, path: Path) -> None:
    pq.write_table(
        rows,
        path,
        compression=PARQUET_COMPRESSION,
        row_group_size=ROW_GROUP_ROWS,
        store_decimal_as_integer=True,
    )
    fsync_path(path)


def _stats_json(rows: pa.Table) -> str:
    """Delta file statistics (numRecords, min/max/null counts of the statistics columns)."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name in STATS_COLUMNS:
        column = rows.column(name)
        nulls[name] = column.null_count
        if column.null_count == len(column):
            continue
        bounds = pc.min_max(column)
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        if isinstance(lo, datetime) and isinstance(hi, datetime):
            lo, hi = lo.strftime(_STAT_TIMESTAMP), hi.strftime(_STAT_TIMESTAMP)
        mins[name], maxs[name] = lo, hi
    return json.dumps(
        {"numRecords": rows.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _partitions(rows: pa.Table) -> Iterator[tuple[int, str, pa.Table]]:
    """(bucket, month, rows) per partition, rows sorted by card holder within each."""
    if rows.num_rows == 0:
        return
    bucket = np.asarray(rows.column("bucket").to_numpy(), dtype=np.int64)
    month_codes = pc.dictionary_encode(rows.column("month").combine_chunks())
    month = np.asarray(month_codes.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    months = month_codes.dictionary.to_pylist()
    holders = pc.dictionary_encode(rows.column("card_holder").combine_chunks())
    holder_rank = np.asarray(pc.rank(holders.dictionary, "ascending").to_numpy(), dtype=np.int64)
    holder = holder_rank[np.asarray(holders.indices.to_numpy(zero_copy_only=False), dtype=np.int64)]
    order = np.lexsort((holder, month, bucket))
    key = bucket[order] * (len(months) + 1) + month[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(order)]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        idx = order[start:end]
        yield int(bucket[idx[0]]), str(months[month[idx[0]]]), rows.take(pa.array(idx))


# --------------------------------------------------------------------------- rows


def _contract_columns(table: pa.Table, schema: pa.Schema, what: str) -> list[pa.ChunkedArray]:
    columns = []
    for field in schema:
        if field.name in table.column_names:
            try:
                columns.append(table.column(field.name).cast(field.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValueError(f"history {what}: column {field.name}: {exc}") from None
        elif field.nullable:
            columns.append(pa.chunked_array([pa.nulls(table.num_rows, field.type)]))
        else:
            raise ValueError(f"history {what}: missing column {field.name}")
    return columns


def _required(table: pa.Table, names: Sequence[str], what: str) -> None:
    for name in names:
        if table.column(name).null_count:
            raise ValueError(
                f"history {what}: null {name} (pass only claims that are not "
                "MALFORMED, and their lines)"
            )


def _history_rows(
    batch_id: str, claims: pa.Table, lines: pa.Table, committed_at: datetime
) -> tuple[pa.Table, pa.Table, int]:
    """The batch's claims and lines as history rows (with partition columns); orphan count."""
    schema_c = pa.schema([*CLAIMS_SCHEMA, pa.field("decision", pa.string(), nullable=False)])
    c = pa.Table.from_arrays(_contract_columns(claims, schema_c, "claims"), schema=schema_c)
    _required(c, ["claim_id", "facility_id", "card_no", "admitted_at", "decision"], "claims")
    if pc.count_distinct(c.column("claim_id")).as_py() != c.num_rows:
        raise ValueError(
            "history claims: claim_id is not unique (MALFORMED claims are not stored in history)"
        )
    holder = card_holder_of(c.column("card_no"))
    n = c.num_rows
    at = pa.scalar(committed_at, pa.timestamp("us", tz="UTC"))
    batch = pa.scalar(batch_id, pa.string())
    c = (
        c.append_column("card_holder", holder)
        .append_column("batch_id", pa.chunked_array([pa.repeat(batch, n)]))
        .append_column("bucket", pa.chunked_array([bucket_of(holder)]))
        .append_column("month", month_of(c.column("admitted_at")))
        .append_column(COMMITTED_AT, pa.chunked_array([pa.repeat(at, n)]))
    )

    schema_l = pa.schema([*LINES_SCHEMA, pa.field("decision", pa.string(), nullable=False)])
    ln = pa.Table.from_arrays(_contract_columns(lines, schema_l, "lines"), schema=schema_l)
    _required(ln, ["claim_id", "decision"], "lines")
    index = pc.index_in(ln.column("claim_id"), value_set=c.column("claim_id").combine_chunks())
    known = pc.is_valid(index)
    orphans = ln.num_rows - pc.sum(known).as_py() if ln.num_rows else 0
    if orphans:
        ln = ln.filter(known)
        index = index.filter(known)
    m = ln.num_rows
    admitted = c.column("admitted_at").take(index)
    ordered_day = pc.cast(ln.column("ordered_at"), pa.date32())
    ln = (
        ln.append_column("card_holder", c.column("card_holder").take(index))
        .append_column("facility_id", c.column("facility_id").take(index))
        .append_column("admitted_at", admitted)
        .append_column("date_of_service", pc.coalesce(ordered_day, pc.cast(admitted, pa.date32())))
        .append_column("batch_id", pa.chunked_array([pa.repeat(batch, m)]))
        .append_column("bucket", c.column("bucket").take(index))
        .append_column("month", c.column("month").take(index))
        .append_column(COMMITTED_AT, pa.chunked_array([pa.repeat(at, m)]))
    )
    return c, ln, int(orphans)


def _key_mask(rows: pa.Table, keys: pa.Table) -> np.ndarray:
    """Which of ``rows`` have a (claim_id, facility_id) in ``keys``."""
    n = rows.num_rows
    mask = np.zeros(n, dtype=bool)
    if n == 0 or keys.num_rows == 0:
        return mask
    left = pa.table(
        {
            "claim_id": rows.column("claim_id"),
            "facility_id": rows.column("facility_id"),
            "__row": pa.array(np.arange(n, dtype=np.int64)),
        }
    )
    right = keys.select(list(_KEYS)).group_by(list(_KEYS)).aggregate([])
    hit = left.join(right, keys=list(_KEYS), join_type="left semi", use_threads=True)
    mask[hit.column("__row").to_numpy()] = True
    return mask


def _distinct_strings(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(pa.string())
    unique: pa.Array = pc.unique(values.drop_null())
    return unique


def _empty_rows(
    version: int, claims: pa.Schema = HISTORY_CLAIMS_SCHEMA, lines: pa.Schema = HISTORY_LINES_SCHEMA
) -> HistoryRows:
    return HistoryRows(claims.empty_table(), lines.empty_table(), version)


def _projection(schema: pa.Schema, columns: Sequence[str] | None, what: str) -> pa.Schema:
    if columns is None:
        return schema
    unknown = [c for c in columns if c not in schema.names]
    if unknown or len(set(columns)) != len(columns):
        raise ValueError(
            f"{what}: unknown or repeated columns {unknown or list(columns)}; "
            f"expected some of {', '.join(schema.names)}"
        )
    return pa.schema([schema.field(c) for c in columns])


# --------------------------------------------------------------------------- log, disk


def _add_actions(table: DeltaTable) -> pa.Table:
    actions: pa.Table = pa.table(table.get_add_actions(flatten=True))
    return actions


def _records_by_path(files: pa.Table) -> dict[str, int]:
    if files.num_rows == 0:
        return {}
    return {
        unquote(p): int(r or 0)
        for p, r in zip(
            files.column("path").to_pylist(), files.column("num_records").to_pylist(), strict=True
        )
    }


def _partition_values(files: pa.Table, i: int) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for name in PARTITION_COLUMNS:
        value = files.column("partition." + name)[i].as_py()
        values[name] = None if value is None else str(value)
    return values


def _first_committed_at(path: Path) -> datetime | None:
    with contextlib.suppress(OSError, pa.ArrowException):
        column = pq.ParquetFile(path).read_row_group(0, columns=[COMMITTED_AT]).column(0)
        value = pc.max(column).as_py()
        return value if isinstance(value, datetime) else None
    return None


def _data_files_on_disk(path: Path) -> set[str]:
    """Data files in the store folder (referenced or not), relative to it."""
    found: set[str] = set()
    for directory, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if d != DELTA_LOG]
        found.update(
            os.path.relpath(os.path.join(directory, n), path)
            for n in names
            if n.endswith(".parquet")
        )
    return found


def _disk_bytes(path: Path) -> int:
    total = 0
    for directory, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_size
    return total


#: Reader features whose files can be read as plain Parquet (no deletion vectors,
#: no column mapping): the store reads data files directly.
_READER_FEATURES = frozenset({"timestampNtz"})


def _check_schema(path: Path, table: DeltaTable) -> None:
    protocol = table.protocol()
    unknown = sorted(set(protocol.reader_features or ()) - _READER_FEATURES)
    if protocol.min_reader_version > 3 or unknown:
        raise ClaimsEngineError(
            f"cannot read history at {path}: the table needs reader features "
            f"{', '.join(unknown) or protocol.min_reader_version} this engine does not use"
        )
    fields = {f.name: f.type for f in pa.schema(table.schema().to_arrow())}
    missing = [f.name for f in TABLE_SCHEMA if f.name not in fields]
    partitions = list(table.metadata().partition_columns)
    if missing or partitions != list(PARTITION_COLUMNS):
        what = (
            f"missing columns {', '.join(missing[:8])}"
            if missing
            else f"partitioned by {partitions}, not {list(PARTITION_COLUMNS)}"
        )
        raise ClaimsEngineError(
            f"{path} is a Delta table but not a claims-engine history store ({what})"
        )
