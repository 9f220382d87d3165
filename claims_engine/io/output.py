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

Writing is CPU-bound (Parquet encoding, io/parquet_out.py; the fsyncs are a
small part), so the files are encoded on several threads, each as soon as its
table is ready (:class:`OutputStage`): a run writes its biggest file, the lines,
while it is still building the claim tables.
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
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa

from claims_engine.errors import BatchError, ClaimsEngineError, OutputError
from claims_engine.io.parquet_out import plain_schema, plain_table, write_parquet

__all__ = [
    "OUTPUT_FILE_NAMES",
    "OutputStage",
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

_TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HASH_CHUNK = 1 << 20
_MAX_LISTED = 10
WRITERS = min(8, max(2, os.cpu_count() or 2))  # threads encoding Parquet

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


def _write_table(table: pa.Table, target: Path) -> None:
    """One Parquet file, written on this thread, then synced."""
    write_parquet(table, target)
    fsync_path(target)


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


def _check_table_name(name: str) -> None:
    if not _TABLE_NAME.match(name):
        raise ValueError(f"invalid output table name {name!r}")


class OutputStage:
    """An output directory being written: each table is encoded into a staging
    folder on a thread as soon as it is added, and all files appear at once.

        with OutputStage(out_dir) as stage:
            stage.add("lines", lines)    # encoding starts now, meanwhile...
            stage.add("approved", approved)
            stage.publish(summary)       # waits for the files, syncs, publishes

    A block left without ``publish`` (an exception) waits for the files being
    encoded, removes the staging folder and leaves the previous outputs as they
    were.  The writer lock is held from entry to exit.  Raises
    :class:`ClaimsEngineError` (exit 2) for an ``out_dir`` that is a file or holds
    entries that are not engine outputs, :class:`OutputError` (exit 3) for a
    concurrent writer or any OS error.
    """

    def __init__(self, out_dir: Path) -> None:
        self._out_dir = out_dir
        self._exit = contextlib.ExitStack()
        self._files: dict[str, Future[None]] = {}
        self._published = False

    def __enter__(self) -> OutputStage:
        with self._exit as stack:
            path = self._path = stack.enter_context(output_lock(self._out_dir))
            recover(path)
            _remove_stale(path)
            self._existed = _check_out_dir(path)
            self._staging = _side_path(path, "staging")
            # Encoding releases the GIL: files are encoded on several threads
            self._pool = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="write")
            stack.callback(self._pool.shutdown, cancel_futures=True)
            try:
                os.mkdir(self._staging, 0o777)
                stack.callback(self._discard)
                if self._existed:  # keep the permissions of the directory being replaced
                    os.chmod(self._staging, stat.S_IMODE(os.stat(path).st_mode))
            except OSError as exc:
                raise _output_error(path, exc) from None
            self._exit = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    def _discard(self) -> None:
        """Unless published: the staging folder goes, once no thread writes into it."""
        if not self._published:
            self._pool.shutdown(cancel_futures=True)
            _rmtree_quietly(self._staging)

    def add(self, name: str, table: pa.Table) -> None:
        """Start writing ``<name>.parquet`` (on a thread)."""
        _check_table_name(name)
        if name in self._files:
            raise ValueError(f"output table {name!r} added twice")
        target = self._staging / f"{name}.parquet"
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise _output_error(self._path, exc) from None
        self._files[name] = self._pool.submit(_write_table, table, target)

    def publish(self, summary: Mapping[str, object]) -> None:
        """Write ``summary.json``, wait for every file, make all durable, publish."""
        text = json.dumps(summary, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
        try:
            with open(self._staging / SUMMARY_NAME, "x", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self._staging)  # every entry exists now: the directory is final
            for future in self._files.values():
                future.result()
            _publish(self._staging, self._path, self._existed)
        except OSError as exc:
            raise _output_error(self._path, exc) from None
        self._published = True


def write_outputs(
    out_dir: Path, tables: Mapping[str, pa.Table], summary: Mapping[str, object]
) -> None:
    """Write ``<name>.parquet`` per table plus ``summary.json`` into ``out_dir`` atomically.

    All files appear or none change (see :class:`OutputStage`, which this is with
    every table at hand).
    """
    for name in tables:  # every name checked before any work
        _check_table_name(name)
    with OutputStage(out_dir) as stage:
        for name in sorted(tables, key=lambda name: -tables[name].num_rows):  # biggest first
            stage.add(name, tables[name])
        stage.publish(summary)


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
