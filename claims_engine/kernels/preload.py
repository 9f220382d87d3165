"""Numba kernels loaded from their on-disk cache ahead of use, on a thread.

Numba (``cache=True``) loads a kernel's machine code the first time it is called
with given argument types: a few milliseconds each, about half a second for the
80-odd (kernel, types) pairs a batch uses, paid in the middle of the first batch's
stages (the card-holder rules of a 1M-claim batch took 0.2 s longer in a fresh
process).  ``preload_in_background`` loads every pair already in the cache while
the batch is being read; the HTTP service can call ``preload`` at start-up.

Best effort: the cache index is numba's internal structure, so anything
unexpected skips that kernel (it then loads on first call, as without preloading),
and only entries compiled for this very CPU are loaded: a pair that would need
compiling is left alone.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from numba.core.compiler_lock import global_compiler_lock
from numba.core.dispatcher import Dispatcher


def kernels() -> list[Dispatcher]:
    """The numba kernels of the claims_engine modules imported so far."""
    found: dict[int, Dispatcher] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith("claims_engine.") and module is not None:
            for value in list(vars(module).values()):
                if isinstance(value, Dispatcher):
                    found[id(value)] = value
    return list(found.values())


def _cached_signatures(kernel: Dispatcher) -> list[Any]:
    internals: Any = kernel  # numba's private cache attributes are not typed
    try:
        index = internals._cache._cache_file._load_index()
        here = internals.targetctx.codegen().magic_tuple()
    except Exception:  # no cache, or numba's internals changed: load on first call
        return []
    return [key[0] for key in index if len(key) > 1 and key[1] == here]


def _load(kernel: Dispatcher, signature: Any) -> bool:
    """What ``Dispatcher.compile`` does on a cache hit, and nothing on a miss (a
    compile would hold numba's compiler lock for seconds)."""
    internals: Any = kernel  # numba's private cache attributes are not typed
    with global_compiler_lock:
        if tuple(signature) in kernel.overloads:
            return False
        result = internals._cache.load_overload(signature, internals.targetctx)
        if result is None:
            return False
        context = internals.targetctx
        context.insert_user_function(result.entry_point, result.fndesc, [result.library])
        internals.add_overload(result)
        return True


def preload() -> int:
    """Load every cached (kernel, types) pair; returns how many were loaded."""
    loaded = 0
    for kernel in kernels():
        for signature in _cached_signatures(kernel):
            try:
                loaded += _load(kernel, signature)
            except Exception:  # numba's internals changed: load on first call
                continue
    return loaded


def preload_in_background() -> threading.Thread:
    """``preload`` on a daemon thread (never delays the process's exit)."""
    thread = threading.Thread(target=preload, name="kernel-preload", daemon=True)
    thread.start()
    return thread
