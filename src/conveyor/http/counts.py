"""What ``/api/stats``, ``/api/queues`` and ``/metrics`` read from the database, read at most
once per ``max_age`` seconds and shared by them: job counts by queue and state, the oldest ready
job of each queue, the per-minute aggregates of the last hour and the totals since ever (the
caps and workers, small tables, are read fresh each time).

A dashboard polling at 20 requests a second, and Prometheus besides, must cost the database one
read a second, not twenty. Concurrent requests that find the figures stale wait for the one
read in flight instead of starting their own. Every response says when it counted
(``counted_at``).

Counting is cheap on a big table because the engine may estimate: on PostgreSQL each (queue,
state) is counted up to ``exact_below`` jobs and estimated from the planner's statistics above
(about 0.3 s for counting 1.1 million rows, a few milliseconds this way); those are named in
``estimated``. Figures over time come from the per-minute aggregates
(conveyor/backends/tally.py), which every worker writes as it finishes jobs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.app import Conveyor
from conveyor.backends.tally import Tally
from conveyor.job import JobState

#: Seconds a count is served before it is read again.
MAX_AGE = 1.0
#: Jobs of one queue in one state counted exactly; more are estimated (where the engine can).
EXACT_BELOW = 10_000
#: The span of the history read: the last hour of minutes.
HISTORY = 3600.0


@dataclass(frozen=True)
class Counts:
    jobs: Mapping[str, Mapping[JobState, int]]
    #: The database's clock when it counted (UNIX seconds).
    counted_at: float
    #: (queue, state) pairs whose count is an estimate.
    estimated: frozenset[tuple[str, JobState]] = frozenset()
    #: Queue -> run_at of its oldest ready job.
    oldest_ready: Mapping[str, float] = field(default_factory=dict)
    #: The minutes of the last hour (per minute x queue x task).
    minutes: Sequence[Tally] = ()
    #: Everything ever tallied, per queue x task.
    totals: Sequence[Tally] = ()


class CountsCache:
    def __init__(
        self,
        app: Conveyor,
        *,
        max_age: float = MAX_AGE,
        exact_below: int = EXACT_BELOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.max_age = max_age
        self.exact_below = exact_below
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: Counts | None = None
        self._read_at = 0.0

    def get(self) -> Counts:
        with self._lock:  # one read at a time; the others then find it fresh
            if self._counts is None or self.clock() - self._read_at >= self.max_age:
                self._counts = self._read()
                self._read_at = self.clock()
            return self._counts

    def _read(self) -> Counts:
        backend = self.app.backend
        counted_at = backend.now()
        counted = backend.job_counts(self.exact_below)
        return Counts(
            counted.jobs,
            counted_at,
            counted.estimated,
            backend.oldest_ready(),
            backend.minute_stats(counted_at - HISTORY),
            backend.stats_totals(),
        )
