"""A separate process committing one synthetic batch to a history store (for the tests).

    python history_worker.py STORE BATCH_ID PREFIX N START [options]

Options:
  --people N          card holders (default 10; the same people in every process)
  --ready FILE        create FILE when the batch is built (and history read), then
  --go FILE           wait until FILE exists before committing
  --expected          read history first and commit with expected_version
  --no-lock           bypass the store's writer lock (only Delta's own check remains)
  --stall-commit FILE write FILE just before the Delta commit, then sleep (to be killed)
  --stall-write FILE  write FILE after the 3rd data file, then sleep (to be killed)

Exit status: 0 committed (CommitInfo as JSON on stdout), else the error's exit code
with its message on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow as pa
from history_synth import holders, simple_batch

from claims_engine.errors import ClaimsEngineError
from claims_engine.history import store as store_module
from claims_engine.history.store import HistoryStore


def _wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {path}")
        time.sleep(0.005)


def _stall(marker: Path) -> None:
    marker.write_text("stalled\n")
    time.sleep(120)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("batch_id")
    parser.add_argument("prefix")
    parser.add_argument("n", type=int)
    parser.add_argument("start")
    parser.add_argument("--people", type=int, default=10)
    parser.add_argument("--ready")
    parser.add_argument("--go")
    parser.add_argument("--expected", action="store_true")
    parser.add_argument("--no-lock", action="store_true")
    parser.add_argument("--stall-commit")
    parser.add_argument("--stall-write")
    args = parser.parse_args()

    people = holders(args.people)
    claims, lines = simple_batch(args.prefix, args.n, people, datetime.fromisoformat(args.start))
    store = HistoryStore(Path(args.store), lock_timeout=60)
    expected = None
    try:
        if args.expected:
            expected = store.read(pa.array(people), exclude_batch=args.batch_id).version
        if args.no_lock:

            @contextlib.contextmanager
            def no_lock() -> Iterator[None]:
                yield

            store._writer_lock = no_lock  # type: ignore[method-assign]
        if args.stall_commit:
            marker = Path(args.stall_commit)
            real_commit = store_module._commit_actions

            def stalled_commit(*a: Any, **k: Any) -> None:
                _stall(marker)
                real_commit(*a, **k)

            store_module._commit_actions = stalled_commit
        if args.stall_write:
            marker = Path(args.stall_write)
            real_write = store_module._write_file
            count = [0]

            def stalled_write(*a: Any, **k: Any) -> None:
                real_write(*a, **k)
                count[0] += 1
                if count[0] == 3:
                    _stall(marker)

            store_module._write_file = stalled_write
        if args.ready:
            Path(args.ready).write_text("ready\n")
        if args.go:
            _wait_for(Path(args.go))
        info = store.commit(args.batch_id, claims, lines, expected_version=expected)
    except ClaimsEngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(dataclasses.asdict(info)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
