"""Pausing CPython's cyclic garbage collector while a batch builds its records.

Enqueueing 10,000 jobs makes about 50,000 container objects (the encoded job, its result, its
Job snapshot with an argument list and an error list), none of them part of a reference cycle.
The collector starts a pass every 700 such allocations and, every tenth pass, walks everything
younger than the last full one: on a 10,000-job batch that cost a quarter of the enqueue time,
and once in a while a full pass over the whole heap on top. Paused, it does the same work
in one pass over the batch's objects, when the next allocation after the pause finds the
threshold passed. Reference counting frees memory as always; only cycles wait.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
#: Pauses in progress in this process, and whether the collector ran before the first began.
_depth = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the collector for the block; nested and concurrent pauses resume it once, when the
    last one ends, and only if it was running when the first began."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
