"""Job counts by queue and state, read at most once per ``max_age`` seconds and shared by
``/api/stats``, ``/api/queues`` and ``/metrics`` (the caps and workers, small tables, are read
fresh each time).

Counting is a scan of the jobs table (about 0.3 s for 1.1 million rows on PostgreSQL): a
dashboard polling at 20 requests a second, and Prometheus besides, must cost the database one
count a second, not twenty. Concurrent requests that find the figures stale wait for the one
read in flight instead of starting their own. Every response says when it counted
(``counted_at``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from conveyor.app import Conveyor
from conveyor.job import JobState

#: Seconds a count is served before it is read again.
MAX_AGE = 1.0


@dataclass(frozen=True)
class Counts:
    jobs: Mapping[str, Mapping[JobState, int]]
    #: The database's clock when it counted (UNIX seconds).
    counted_at: float


class CountsCache:
    def __init__(
        self,
        app: Conveyor,
        *,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: Counts | None = None
        self._read_at = 0.0

    def get(self) -> Counts:
        with self._lock:  # one read at a time; the others then find it fresh
            if self._counts is None or self.clock() - self._read_at >= self.max_age:
                counted_at = self.app.backend.now()
                self._counts = Counts(self.app.stats(), counted_at)
                self._read_at = self.clock()
            return self._counts
