"""The database's clock, read without a query per call (PostgreSQL, Redis).

Leases, schedules and retention are all judged by the server's clock (queries use ``now()``,
scripts ``TIME``);
``Backend.now()`` must agree with it, yet the worker calls it every few milliseconds while it
waits, on its event loop. So the server is asked once, the offset from the local clock is kept
(measured from the middle of the round trip, so off by at most half of it), and re-measured
every minute to follow drift or an NTP step on either machine.

Only the first measurement happens in the caller's thread. Later ones run in a background
thread while callers go on with the last offset: with the server away, a re-measurement can
wait for the connect timeout, and the clock must neither fail nor stall a worker meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from conveyor.errors import ConveyorError

log = logging.getLogger(__name__)

_REFRESH = 60.0
#: After a failed measurement (the server is away), the last offset stands; try again soon.
_RETRY = 2.0


class DatabaseClock:
    def __init__(self, server_now: Callable[[], float]) -> None:
        self._server_now = server_now
        self._offset = 0.0
        self._next_refresh = 0.0
        self._measured = False
        self._lock = threading.Lock()
        self._refreshing = False

    def __call__(self) -> float:
        if time.monotonic() >= self._next_refresh:
            if self._measured:
                self._refresh_in_background()
            else:
                self._try_refresh()
        return time.time() + self._offset

    def refresh(self) -> None:
        before = time.time()
        server = self._server_now()
        after = time.time()
        self._offset = server - (before + after) / 2
        self._measured = True
        self._next_refresh = time.monotonic() + _REFRESH

    def _try_refresh(self) -> None:
        try:
            self.refresh()
        except ConveyorError as exc:
            log.debug("could not read the database clock (%s); using the last offset", exc)
            self._next_refresh = time.monotonic() + _RETRY

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
            # Until it is done, callers do not come back here.
            self._next_refresh = time.monotonic() + _RETRY

        def run() -> None:
            try:
                self._try_refresh()
            finally:
                with self._lock:
                    self._refreshing = False

        threading.Thread(target=run, name="conveyor-clock", daemon=True).start()
