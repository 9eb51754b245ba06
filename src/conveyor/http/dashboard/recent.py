"""What the overview shows of the past and of the backlog: jobs finished and attempts failed
per minute over the last hour, and the oldest job waiting to run.

Both are read from the jobs themselves (the newest finished jobs' times, one page of the
queued ones), the reads every engine offers today. They are bounded, and say so when the
bound cut them short: per-minute aggregates kept by the workers (which survive pruning and
cost one small read) replace ``last_hour`` when the backend offers them.

``RecentCache`` reads both at most once a second, whatever the number of open overviews
polling every 2 s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from conveyor.app import Conveyor
from conveyor.job import Job, JobState

MINUTES = 60
#: Finished and retrying jobs read to count the last hour.
HISTORY_SCAN = 2000
#: Queued jobs read to find the oldest one.
WAITING_SCAN = 1000


@dataclass(frozen=True)
class Minute:
    #: UNIX seconds at the start of the minute.
    start: float
    succeeded: int
    failed: int


@dataclass(frozen=True)
class History:
    minutes: list[Minute]
    #: The read stopped at HISTORY_SCAN jobs: minutes further back may be undercounted.
    partial: bool

    @property
    def succeeded(self) -> int:
        return sum(minute.succeeded for minute in self.minutes)

    @property
    def failed(self) -> int:
        return sum(minute.failed for minute in self.minutes)

    @property
    def busiest(self) -> int:
        return max((max(m.succeeded, m.failed) for m in self.minutes), default=0)


def last_hour(app: Conveyor, now: float) -> History:
    """Per minute, oldest first: jobs that succeeded, and attempts that failed (each error
    recorded, whether the job was retried or died)."""
    first = (now // 60 - (MINUTES - 1)) * 60
    succeeded = [0] * MINUTES
    failed = [0] * MINUTES

    def slot(at: float | None) -> int | None:
        if at is None or at < first:
            return None
        index = int((at - first) // 60)
        return index if index < MINUTES else None

    found = app.list_jobs(
        state=[JobState.SUCCEEDED, JobState.DEAD, JobState.RETRYING], limit=HISTORY_SCAN
    )
    for job in found:
        if job.state is JobState.SUCCEEDED and (index := slot(job.finished_at)) is not None:
            succeeded[index] += 1
        for error in job.errors:
            if (index := slot(error.at)) is not None:
                failed[index] += 1
    minutes = [Minute(first + 60 * i, succeeded[i], failed[i]) for i in range(MINUTES)]
    return History(minutes, partial=len(found) == HISTORY_SCAN)


@dataclass(frozen=True)
class Oldest:
    job: Job
    #: Seconds it has been ready to run.
    age: float
    #: More jobs wait than were read: older ones may wait still.
    partial: bool


def oldest_waiting(app: Conveyor, now: float) -> Oldest | None:
    """The oldest queued job among the newest WAITING_SCAN, or None when none waits."""
    found = app.list_jobs(state=JobState.QUEUED, limit=WAITING_SCAN)
    if not found:
        return None
    oldest = min(found, key=lambda job: job.run_at)
    return Oldest(oldest, max(0.0, now - oldest.run_at), partial=len(found) == WAITING_SCAN)


@dataclass(frozen=True)
class Recent:
    history: History
    oldest: Oldest | None


class RecentCache:
    def __init__(
        self,
        app: Conveyor,
        *,
        max_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._recent: Recent | None = None
        self._read_at = 0.0

    def get(self) -> Recent:
        with self._lock:  # one read at a time; the others then find it fresh
            if self._recent is None or self.clock() - self._read_at >= self.max_age:
                now = self.app.backend.now()
                self._recent = Recent(last_hour(self.app, now), oldest_waiting(self.app, now))
                self._read_at = self.clock()
            return self._recent
