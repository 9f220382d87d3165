"""Kernels preloaded from numba's on-disk cache: a fresh process that preloads finds
a kernel's machine code already there at its first call (real subprocesses, the
project's own cache)."""

from __future__ import annotations

import subprocess
import sys

CALL = (
    "import numpy as np\n"
    "from claims_engine.kernels import gather\n"
    "rows = gather.PARALLEL_ROWS\n"
    "gather.take_or(np.arange(rows, dtype=np.int64), np.zeros(rows, dtype=np.int32), -1)\n"
)


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return done.stdout.strip()


def test_a_fresh_process_finds_cached_kernels_loaded() -> None:
    _run(CALL)  # the (kernel, types) pair is in the on-disk cache from here on
    out = _run(
        "from claims_engine.kernels import gather, preload\n"
        "loaded = preload.preload()\n"
        "before = len(gather._take_or.overloads)\n"
        + CALL
        + "print(loaded, before, len(gather._take_or.overloads), preload.preload())\n"
    )
    loaded, before, after, again = (int(x) for x in out.split())
    assert loaded >= 1 and before >= 1  # loaded ahead of the call
    assert after == before  # the call found it: nothing compiled or loaded then
    assert again == 0  # a second preload has nothing left to do


def test_preload_in_background_is_a_daemon_thread() -> None:
    out = _run(
        "import claims_engine.engine\n"
        "from claims_engine.kernels import preload\n"
        "t = preload.preload_in_background()\n"
        "t.join(120)\n"
        "print(t.daemon, t.is_alive(), len(preload.kernels()) > 10)\n"
    )
    assert out == "True False True"
