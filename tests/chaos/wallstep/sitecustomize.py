"""A test hook: a wall clock that the test can step, shared by every process it starts.

Python imports ``sitecustomize`` at start-up from the first directory of its path that holds
one: a process started with this directory first on PYTHONPATH and CONVEYOR_TEST_WALL_STEP
naming a file sees ``time.time()`` as the real wall clock plus the seconds written in that file
-- the worker, its heartbeat process and any helper alike, as all of them see a step of the
machine's clock (NTP, a VM resume). Nothing else is touched: the monotonic and boot clocks keep
running as they do. Used by tests/chaos/test_sqlite_clock_step.py only.
"""

from __future__ import annotations

import os
import time

_PATH = os.environ.get("CONVEYOR_TEST_WALL_STEP")
#: How long a reading of the file is trusted: a step reaches every process within this.
_FRESH = 0.002

if _PATH:
    _path: str = _PATH
    _real = time.time
    _step = [0.0, float("-inf")]  # seconds added, monotonic time of the next look at the file

    def _stepped_time() -> float:
        now = time.monotonic()
        if now >= _step[1]:
            try:
                with open(_path) as file:
                    _step[0] = float(file.read().strip() or 0.0)
            except (OSError, ValueError):
                pass
            _step[1] = now + _FRESH
        return _real() + _step[0]

    time.time = _stepped_time
