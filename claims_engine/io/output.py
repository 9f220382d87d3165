"""Atomic output writing (contract section 4): all files appear, or none change.

Everything is staged in a sibling directory ``.<name>.staging-<hex>`` next to the
output directory (same filesystem), fsynced, then published in one step:

* the output directory does not exist: ``rename(staging, out_dir)``;
* it exists: ``renameat2(staging, out_dir, RENAME_EXCHANGE)`` swaps the two
  directories atomically and the old contents (now at the staging path) are
  removed.  Where that call is unavailable (not Linux, old glibc, a filesystem
  answering EINVAL/ENOSYS) the fallback is ``rename(out_dir, .<name>.old-<hex>)``
  then ``rename(staging, out_dir)``; a crash between the two leaves the output
  directory missing, and :func:`recover` (run at the start of every write) puts
  the old directory back.

The output directory is owned by the engine: an existing one holding anything
but engine output files is refused (so ``--out ~`` cannot swallow a home
folder).  Writers of the same directory are serialised with ``flock`` on
``.<name>.lock`` next to it; :func:`output_lock` lets the CLI take that lock at
the start of a run, and :func:`write_outputs` reuses it when this process
already holds it.

Writing is CPU-bound (Parquet encoding; the fsyncs are a small part), so: the
files are encoded on several threads, the biggest first; decimals of up to 18
digits are stored as delta-encoded INT64 (read back as the same decimal type);
statistics only for claim_id.  Dictionary columns are written as their plain
values, so every reader sees the contract's string type.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from claims_engine.errors import BatchError, ClaimsEngineError, OutputError

__all__ = [
    "OUTPUT_FILE_NAMES",
    "content_hash",
    "fsync_dir",
    "fsync_path",
    "output_lock",
    "plain_schema",
    "plain_table",
    "recover",
    "write_outputs",
]

#: Names (besides ``*.parquet``) the engine may leave in an output directory.
OUTPUT_FILE_NAMES = frozenset({"summary.json", "report.txt", "report.json"})
SUMMARY_NAME = "summary.json"
PARQUET_COMPRESSION = "snappy"  # fastest to write here (zstd is ~30% smaller, ~50% slower)

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HASH_CHUNK = 1 << 20
_MAX_LISTED = 10

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# Errors meaning "renameat2/RENAME_EXCHANGE is not available here": use the fallback.
_EXCHANGE_UNSUPPORTED = frozenset(
    {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM}
)

# Output directories whose lock this process holds: key -> owning thread id.
_held: dict[str, int] = {}
_held_guard = threading.Lock()


# --------------------------------------------------------------------------- paths


def _normalise(out_dir: Path | str) -> Path:
    """Absolute path with ``~`` and symlinks resolved (we swap the real directory)."""
    path = Path(out_dir).expanduser().resolve()
    if not path.name:
        raise ClaimsEngineError(f"{path}: not usable as an output directory")
    return path


def _lock_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.lock"


def _side_pattern(out_dir: Path, kind: str) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(out_dir.name)}\.{kind}-[0-9a-f]{{16}}$")


def _side_path(out_dir: Path, kind: str) -> Path:
    return out_dir.parent / f".{out_dir.name}.{kind}-{secrets.token_hex(8)}"


def os_message(exc: OSError) -> str:
    message = exc.strerror or str(exc)
    if exc.filename is not None:
        message = f"{message}: {os.fsdecode(exc.filename)}"
    return message


def _output_error(out_dir: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write outputs to {out_dir}: {os_message(exc)}")


def _is_output_entry(entry: os.DirEntry[str]) -> bool:
    if entry.is_dir(follow_symlinks=False):
        return False
    if not (entry.is_file(follow_symlinks=False) or entry.is_symlink()):
        return False
    return entry.name.endswith(".parquet") or entry.name in OUTPUT_FILE_NAMES


def _foreign_entries(directory: Path) -> list[str]:
    """Names in ``directory`` that are not engine output files (sorted)."""
    with os.scandir(directory) as entries:
        return sorted(e.name for e in entries if not _is_output_entry(e))


def _check_out_dir(out_dir: Path) -> bool:
    """Refuse an out_dir the engine does not own; return whether it exists."""
    try:
        st = os.stat(out_dir)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _output_error(out_dir, exc) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ClaimsEngineError(
            f"{out_dir}: exists and is not a directory; refusing to write outputs"
        )
    try:
        foreign = _foreign_entries(out_dir)
    except OSError as exc:
        raise _output_error(out_dir, exc) from None
    if foreign:
        shown = ", ".join(foreign[:_MAX_LISTED])
        more = f" and {len(foreign) - _MAX_LISTED} more" if len(foreign) > _MAX_LISTED else ""
        raise ClaimsEngineError(
            f"{out_dir}: refusing to write outputs into a directory holding entries that are "
            f"not engine outputs (*.parquet, {', '.join(sorted(OUTPUT_FILE_NAMES))}): "
            f"{shown}{more}; choose an empty or new directory"
        )
    return True


def _mkdir_parent(out_dir: Path) -> None:
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _output_error(out_dir, exc) from None


# --------------------------------------------------------------------------- lock


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the exclusive writer lock of ``out_dir``; yields the normalised path.

    Re-entrant within a thread of this process (a nested call is a no-op), so the
    CLI can take it before the long work and :func:`write_outputs` reuses it.  If
    another process (or another thread) holds it: :class:`OutputError` (exit 3).
    The directory is also checked to be usable by the engine (see
    :func:`write_outputs`) so a bad ``--out`` fails before any work is done.
    """
    path = _normalise(out_dir)
    key = str(path)
    me = threading.get_ident()
    with _held_guard:
        owner = _held.get(key)
        if owner is None:
            _held[key] = me
    if owner == me:
        yield path
        return
    if owner is not None:
        raise OutputError(f"another run is writing {path} (in this process)")
    fd = -1
    try:
        try:
            _mkdir_parent(path)
            lock_file = _lock_path(path)
            try:
                fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                raise _output_error(path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = read_pid(fd)
                by = f" (pid {holder})" if holder else ""
                raise OutputError(f"another run is writing {path}{by}") from None
            except OSError as exc:
                raise _output_error(path, exc) from None
            write_pid(fd)
            _check_out_dir(path)
        except BaseException:
            with _held_guard:
                _held.pop(key, None)
            raise
        try:
            yield path
        finally:
            with _held_guard:
                _held.pop(key, None)
    finally:
        if fd >= 0:
            os.close(fd)  # releases the flock


def read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""


def write_pid(fd: int) -> None:
    """Diagnostics only: the pid of the holder, shown to a refused writer."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)


# --------------------------------------------------------------------------- publish


def _rename_exchange(src: Path, dst: Path) -> None:
    """Atomically swap ``src`` and ``dst`` (Linux ``renameat2`` RENAME_EXCHANGE).

    Raises ``OSError(ENOSYS)`` where the call does not exist.
    """
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, "renameat2 is Linux-only", os.fspath(src))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.renameat2
    except (OSError, AttributeError):
        raise OSError(errno.ENOSYS, "renameat2 not available in libc", os.fspath(src)) from None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), os.fspath(src), None, os.fspath(dst))


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    # Some filesystems refuse fsync on a directory; durability there is best effort.
    with contextlib.suppress(OSError):
        fsync_path(path)


def _rmtree_quietly(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def recover(out_dir: Path) -> Path | None:
    """Put back a leftover ``.<name>.old-*`` directory if ``out_dir`` is missing.

    That state is a crash between the two renames of the fallback publish.
    Returns the directory restored from, or None.  Takes the writer lock.
    """
    with output_lock(out_dir) as path:
        if os.path.lexists(path):
            return None
        pattern = _side_pattern(path, "old")
        try:
            with os.scandir(path.parent) as entries:
                candidates = [
                    Path(e.path)
                    for e in entries
                    if pattern.match(e.name) and e.is_dir(follow_symlinks=False)
                ]
        except OSError as exc:
            raise _output_error(path, exc) from None
        if not candidates:
            return None
        newest = max(candidates, key=lambda p: p.stat().st_mtime_ns)
        try:
            os.rename(newest, path)
        except OSError as exc:
            raise _output_error(path, exc) from None
        fsync_dir(path.parent)
        return newest


def _remove_stale(out_dir: Path) -> None:
    """Best effort: remove staging/old directories left by a killed run.

    Called under the writer lock, so none of them belongs to a live run.  A
    directory holding anything but engine outputs is left alone.
    """
    patterns = (_side_pattern(out_dir, "staging"), _side_pattern(out_dir, "old"))
    try:
        with os.scandir(out_dir.parent) as entries:
            stale = [
                Path(e.path)
                for e in entries
                if any(p.match(e.name) for p in patterns) and e.is_dir(follow_symlinks=False)
            ]
        for directory in stale:
            if not _foreign_entries(directory):
                _rmtree_quietly(directory)
    except OSError:
        pass


def _strip_pandas(table: pa.Table) -> pa.Table:
    metadata = table.schema.metadata
    if not metadata or b"pandas" not in metadata:
        return table
    kept = {k: v for k, v in metadata.items() if k != b"pandas"}
    return table.replace_schema_metadata(kept or None)


# Columns with few distinct values: dictionary-encoded (elsewhere it only costs time).
LOW_CARDINALITY = frozenset({"kind", "decision", "severity", "code", "rule_id", "facility_id"})
# Row-group min/max narrow a search only on the column the files are sorted by; in
# every other column each row group spans nearly the whole range (and computing
# them costs more than encoding some of those columns).
STATISTICS = frozenset({"claim_id"})
ROW_GROUP_ROWS = 1 << 20
WRITE_BUFFER = 1 << 20
WRITERS = min(8, max(2, os.cpu_count() or 2))  # threads encoding Parquet


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with each dictionary column typed as its values (what readers see)."""
    fields = [
        f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema
    ]
    return pa.schema(fields, metadata=schema.metadata)


def plain_table(table: pa.Table) -> pa.Table:
    """``table`` with dictionary columns cast to their value type."""
    plain = plain_schema(table.schema)
    return table if plain.equals(table.schema) else table.cast(plain)


def _parquet_options(table: pa.Table) -> dict[str, Any]:
    dictionary = [
        f.name for f in table.schema if f.name in LOW_CARDINALITY or pa.types.is_dictionary(f.type)
    ]
    # Integers, and decimals of up to 18 digits stored as INT64 (the same Arrow type
    # when read), delta-encoded: smaller and faster to write than plain values (for
    # decimals, 8-byte big-endian FIXED_LEN_BYTE_ARRAY, which costs a byte swap).
    delta = {
        f.name: "DELTA_BINARY_PACKED"
        for f in table.schema
        if f.name not in dictionary
        and (
            (pa.types.is_decimal(f.type) and f.type.precision <= 18) or pa.types.is_integer(f.type)
        )
    }
    return {
        "compression": PARQUET_COMPRESSION,
        "use_dictionary": dictionary,
        "write_statistics": [n for n in table.column_names if n in STATISTICS],
        "store_decimal_as_integer": True,
        "column_encoding": delta or None,
    }


def _same_without_schema(f: pa.Field) -> bool:
    """Whether a field reads back with the same type from the Parquet types alone."""
    ty = f.type
    if pa.types.is_dictionary(ty):
        ty = ty.value_type
    if pa.types.is_list(ty):
        ty = ty.value_type
    simple = (
        pa.types.is_string(ty)
        or pa.types.is_integer(ty)
        or pa.types.is_decimal(ty)
        or pa.types.is_boolean(ty)
        or pa.types.is_date32(ty)
    )
    return simple and not f.metadata


def _writable(table: pa.Table) -> tuple[pa.Table, bool]:
    """The table to write, and whether to store its Arrow schema in the file.

    Dictionary columns (kind, decision) are written as they are: their words become
    the column's dictionary page, where a cast to plain strings would have the
    writer hash 8 million strings back into that same dictionary.  The Arrow schema
    is then not stored, so readers see the Parquet types (plain strings, as the
    contract says, not dictionaries); that needs types that read back the same
    without it.  Otherwise, or with a null among a dictionary's words (the writer
    cannot write those), the plain table is written as usual.
    """
    dictionaries = [f for f in table.schema if pa.types.is_dictionary(f.type)]
    if not dictionaries:
        return table, True
    if not all(_same_without_schema(f) for f in table.schema) or any(
        c.dictionary.null_count for f in dictionaries for c in table.column(f.name).chunks
    ):
        return plain_table(table), True
    return table, False


def _write_table(table: pa.Table, target: Path) -> None:
    """One Parquet file, written on this thread, then synced."""
    table, store_schema = _writable(_strip_pandas(table))
    # An OSFile behind a buffer: the Parquet writer's many small writes (page
    # headers, pages) become few; a path would cost ~25% more CPU here.
    with (
        pa.OSFile(os.fspath(target), "wb") as raw,
        pa.BufferedOutputStream(raw, buffer_size=WRITE_BUFFER) as sink,
        pq.ParquetWriter(
            sink, table.schema, store_schema=store_schema, **_parquet_options(table)
        ) as writer,
    ):
        if table.schema.metadata and not store_schema:  # kept as the file's metadata
            writer.add_key_value_metadata(table.schema.metadata)
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
    fsync_path(target)


def _stage(
    staging: Path, tables: Mapping[str, pa.Table], summary_text: str, mode: int | None
) -> None:
    """Write every file into ``staging`` and make it durable (files and entries)."""
    os.mkdir(staging, 0o777)
    target = staging / SUMMARY_NAME
    with open(target, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(summary_text)
        handle.flush()
        os.fsync(handle.fileno())
    targets = {name: staging / f"{name}.parquet" for name in tables}
    for path in targets.values():  # every entry exists now: the directory is final
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    if mode is not None:  # keep the permissions of the directory being replaced
        os.chmod(staging, mode)
    # Encoding releases the GIL: the files are encoded on several threads, the
    # biggest table first; this thread syncs the directory meanwhile.
    names = sorted(tables, key=lambda name: -tables[name].num_rows)
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        try:
            futures = [pool.submit(_write_table, tables[n], targets[n]) for n in names]
            fsync_dir(staging)
            for future in futures:
                future.result()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _publish(staging: Path, out_dir: Path, existed: bool) -> None:
    """Make ``staging`` the output directory; the previous one is removed."""
    if not existed:
        os.rename(staging, out_dir)
        fsync_dir(out_dir.parent)
        return
    try:
        _rename_exchange(staging, out_dir)
    except OSError as exc:
        if exc.errno not in _EXCHANGE_UNSUPPORTED:
            raise
    else:
        fsync_dir(out_dir.parent)
        _rmtree_quietly(staging)  # now the old contents
        return
    old = _side_path(out_dir, "old")
    os.rename(out_dir, old)
    try:
        os.rename(staging, out_dir)
    except BaseException:
        with contextlib.suppress(OSError):
            os.rename(old, out_dir)  # else recover() puts it back on the next run
        raise
    fsync_dir(out_dir.parent)
    _rmtree_quietly(old)


def write_outputs(
    out_dir: Path, tables: Mapping[str, pa.Table], summary: Mapping[str, object]
) -> None:
    """Write ``<name>.parquet`` per table plus ``summary.json`` into ``out_dir`` atomically.

    All files appear or none change; a failure leaves the previous outputs as they
    were and no staging directory.  Raises :class:`ClaimsEngineError` (exit 2) for
    an ``out_dir`` that is a file or holds entries that are not engine outputs,
    :class:`OutputError` (exit 3) for a concurrent writer or any OS error.
    """
    for name in tables:
        if not _TABLE_NAME.match(name) or f"{name}.parquet" == SUMMARY_NAME:
            raise ValueError(f"invalid output table name {name!r}")
    summary_text = json.dumps(summary, indent=2, sort_keys=False, ensure_ascii=False) + "\n"

    with output_lock(out_dir) as path:
        recover(path)
        _remove_stale(path)
        existed = _check_out_dir(path)
        mode = stat.S_IMODE(os.stat(path).st_mode) if existed else None
        staging = _side_path(path, "staging")
        try:
            _stage(staging, tables, summary_text, mode)
            _publish(staging, path, existed)
        except BaseException as exc:
            _rmtree_quietly(staging)
            if isinstance(exc, OSError):
                raise _output_error(path, exc) from None
            raise


# --------------------------------------------------------------------------- hash


def content_hash(paths: Iterable[Path]) -> str:
    """First 16 hex chars of sha256 over (relative name, size, bytes) of each file.

    Files are taken in order of their name relative to the deepest directory
    containing all of them, so the hash does not depend on where the batch lives
    nor on the order given.  Raises :class:`BatchError` for an unreadable file.
    """
    files = [Path(p).expanduser().absolute() for p in paths]
    digest = hashlib.sha256()
    if not files:
        return digest.hexdigest()[:16]
    base = Path(os.path.commonpath([str(f.parent) for f in files]))
    named = sorted((f.relative_to(base).as_posix(), f) for f in files)
    for rel, file in named:
        try:
            with open(file, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                digest.update(rel.encode("utf-8") + b"\0" + str(size).encode("ascii") + b"\0")
                read = 0
                while chunk := handle.read(_HASH_CHUNK):
                    digest.update(chunk)
                    read += len(chunk)
        except OSError as exc:
            raise BatchError(f"cannot read {file}: {os_message(exc)}") from None
        if read != size:
            raise BatchError(f"{file} changed while being hashed")
    return digest.hexdigest()[:16]
