"""The adjudicate command keeps freed memory for reuse (glibc): a freed 256 MB
column stays in the process for the next one instead of going back to the system
and being page-faulted in again.  Real subprocesses, with and without it."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import sys
import numpy as np
from claims_engine import cli

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

if sys.argv[1] == "keep":
    cli._reuse_freed_memory()
column = np.ones(32 << 20)  # 256 MB, touched
held = rss_mib()
del column
print(round(held - rss_mib()))
"""


def _given_back_mib(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CODE, mode], capture_output=True, text=True, check=True, timeout=120
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc, /proc")
def test_freed_columns_stay_for_reuse() -> None:
    assert _given_back_mib("default") > 200  # glibc unmaps a block this big when freed
    assert _given_back_mib("keep") < 16  # kept in the heap for the next column
