"""The database's clock, read without a query per call.

Leases, schedules and retention are all judged by the server's clock (queries use ``now()``);
``Backend.now()`` must agree with it, yet the worker calls it every few milliseconds while it
waits. So the server is asked once, the offset from the local clock is kept (measured from the
middle of the round trip, so off by at most half of it), and re-measured every minute to follow
drift or an NTP step on either machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

_REFRESH = 60.0


class DatabaseClock:
    def __init__(self, server_now: Callable[[], float]) -> None:
        self._server_now = server_now
        self._offset = 0.0
        self._next_refresh = 0.0

    def __call__(self) -> float:
        if time.monotonic() >= self._next_refresh:
            self.refresh()
        return time.time() + self._offset

    def refresh(self) -> None:
        before = time.time()
        server = self._server_now()
        after = time.time()
        self._offset = server - (before + after) / 2
        self._next_refresh = time.monotonic() + _REFRESH
