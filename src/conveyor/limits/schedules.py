"""Schedules of periodic jobs: which ticks are due, and what a tick enqueues.

A schedule is a cron expression in a time zone (parsed by croniter: ``pip install
'conveyor-jobs[cron]'``) or a fixed interval (``every``), anchored at the UNIX epoch so that
every worker computes the same ticks (``every=60`` ticks on whole UTC minutes).

The rules, all decided here from times and the stored state (backends/base.py ScheduleState):

- **One job per tick.** The scheduler of every worker may try a tick; the backend's
  ``enqueue_tick`` writes its job only if the schedule's ``last_tick`` is earlier, and advances
  it in the same transaction. The worker holding maintenance tries each tick when it comes; the
  others try it ``standby`` seconds later (after reading that nobody did), so that a killed
  leader delays a tick by about that much instead of a lease.
- **On time.** A tick whose job is enqueued at most ``grace`` seconds (60 by default) after it
  is on time; every on-time tick gets its job, in order, even when a scheduler runs late.
- **Missed.** Ticks older than ``grace`` that got no job (no worker ran) are missed:
  ``missed="skip"`` (the default) drops them; ``missed="once"`` enqueues one job for all of them
  (the latest missed tick) when a worker comes back. Nothing before a schedule was first seen
  (or last resumed: ticks that pass while it is paused are dropped) counts as missed. At most
  ``MAX_TICKS`` jobs are enqueued per schedule in one pass.
- **Daylight saving time** (cron schedules run on the wall clock of their time zone): each
  wall-clock time runs once. A tick whose time falls in the hour skipped when clocks go forward
  runs once, at the end of the gap (several ticks in the gap make that one job); in the hour
  repeated when clocks go back, ticks run in its first pass only, so ``30 2 * * *`` runs once
  and ``*/15 * * * *`` pauses during the second pass. For ticks evenly spaced in real time, use
  ``every=`` or ``timezone="UTC"``.
"""

from __future__ import annotations

import inspect
import math
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from conveyor import bounds
from conveyor.bounds import MAX_DELAY, MAX_TIMEOUT
from conveyor.errors import ConfigurationError
from conveyor.task import JobOptions

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from conveyor.backends.base import NewJob, ScheduleState
    from conveyor.task import Task

MISSED_POLICIES = ("skip", "once")
#: Seconds after its time a tick still counts as on time (by default).
DEFAULT_GRACE = 60.0
#: Most jobs one schedule enqueues in one pass of the scheduler.
MAX_TICKS = 100
#: The shortest interval: the scheduler is not a sub-second timer.
MIN_EVERY = 1.0
#: The keyword a task function names to receive its tick (an ISO 8601 string, in the
#: schedule's time zone).
SCHEDULED_AT = "scheduled_at"
MAX_NAME = 100


class Schedule:
    """One schedule of periodic jobs of ``task``. Build it with ``app.periodic``."""

    def __init__(
        self,
        task: Task[..., Any],
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        timezone: str = "UTC",
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        missed: str = "skip",
        grace: float | timedelta = DEFAULT_GRACE,
    ) -> None:
        self.task = task
        self.name = bounds.text("schedule name", task.name if name is None else name, MAX_NAME)
        if (cron is None) == (every is None):
            raise ConfigurationError(f"schedule {self.name}: give either cron= or every=")
        self.cron = cron
        self.every = None if every is None else _seconds(self.name, "every", every, MAX_DELAY)
        if self.every is not None and self.every < MIN_EVERY:
            raise ConfigurationError(
                f"schedule {self.name}: every must be at least {MIN_EVERY:g}s, got {self.every:g}"
            )
        self.timezone = timezone
        self.tz = _zone(self.name, timezone)
        if cron is not None:
            _check_cron(self.name, cron)
        if missed not in MISSED_POLICIES:
            raise ConfigurationError(
                f"schedule {self.name}: missed must be 'skip' or 'once', got {missed!r}"
            )
        self.missed = missed
        self.grace = _seconds(self.name, "grace", grace, MAX_TIMEOUT)
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.wants_scheduled_at = SCHEDULED_AT in inspect.signature(task.fn).parameters
        if self.wants_scheduled_at and SCHEDULED_AT in self.kwargs:
            raise ConfigurationError(
                f"schedule {self.name}: {SCHEDULED_AT} is given by the scheduler, not kwargs="
            )
        # The arguments bind and encode now, at declaration, rather than at the first tick.
        self.job(0.0)
        if cron is not None:
            try:
                self.next_after(time.time())
            except Exception:  # croniter's search gives up on a date that never comes
                raise ConfigurationError(
                    f"schedule {self.name}: {cron!r} never fires (a date that does not exist?)"
                ) from None

    def __repr__(self) -> str:
        return f"<Schedule {self.name} {self.describe()} task={self.task.name}>"

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        assert self.every is not None
        return f"every {self.every:g}s"

    # --- ticks ----------------------------------------------------------------------------

    def ticks_between(self, after: float, until: float, limit: int = MAX_TICKS) -> list[float]:
        """The ticks in (``after``, ``until``], oldest first; the latest ``limit`` of them."""
        if until <= after:
            return []
        if self.every is not None:
            first = math.floor(after / self.every) + 1
            last = math.floor(until / self.every)
            return [k * self.every for k in range(max(first, last - limit + 1), last + 1)]
        latest: deque[float] = deque(maxlen=limit)
        for tick in self._cron_after(after):
            if tick > until:
                break
            latest.append(tick)
        return list(latest)

    def next_after(self, moment: float) -> float:
        """The first tick after ``moment``."""
        if self.every is not None:
            return (math.floor(moment / self.every) + 1) * self.every
        return next(self._cron_after(moment))

    def latest_at_or_before(self, moment: float) -> float | None:
        """The last tick at or before ``moment``."""
        if self.every is not None:
            return math.floor(moment / self.every) * self.every
        croniter = _croniter()
        # Cron ticks fall on whole seconds: "strictly before the next second" is "at or before".
        start = datetime.fromtimestamp(math.floor(moment) + 1, self.tz)
        ticks = croniter(self.cron, start)
        for _ in range(_SEARCH):
            when = ticks.get_prev(datetime)
            if not self._second_pass(when):
                return float(when.timestamp())
        return None

    def _cron_after(self, moment: float) -> Iterator[float]:
        croniter = _croniter()
        ticks = croniter(self.cron, datetime.fromtimestamp(moment, self.tz))
        previous = moment
        for _ in range(_SEARCH):
            when = ticks.get_next(datetime)
            stamp = float(when.timestamp())
            # Ticks of the gap when clocks go forward come out at its end, once.
            if stamp <= previous or self._second_pass(when):
                continue
            previous = stamp
            yield stamp

    def _second_pass(self, when: datetime) -> bool:
        """Whether ``when`` is the second pass of a wall-clock time (the repeated hour)."""
        wall = when.replace(tzinfo=None)
        return wall.replace(tzinfo=self.tz, fold=0).timestamp() != when.timestamp()

    def due(self, now: float, last_tick: float | None, since: float) -> list[float]:
        """The ticks to enqueue at ``now``, oldest first, for a schedule whose last enqueued
        tick is ``last_tick`` and that was first seen or last resumed at ``since`` (see the
        module's rules)."""
        floor = since if last_tick is None else max(last_tick, since)
        on_time_from = max(floor, now - self.grace)
        ticks = self.ticks_between(on_time_from, now)
        if self.missed == "once" and on_time_from > floor:
            late = self.latest_at_or_before(on_time_from)
            if late is not None and late > floor:
                ticks = [late, *ticks[-(MAX_TICKS - 1) :]]
        return ticks

    # --- jobs -----------------------------------------------------------------------------

    def label(self, tick: float) -> str:
        """The tick as an ISO 8601 time in the schedule's time zone."""
        return datetime.fromtimestamp(tick, self.tz).isoformat()

    def key(self, tick: float) -> str:
        """The idempotency key of the tick's job: the schedule and the tick, in UTC."""
        return f"schedule:{self.name}@{datetime.fromtimestamp(tick, UTC).isoformat()}"

    def job(self, tick: float) -> NewJob:
        """The job of ``tick``: the fixed arguments, plus the tick as ``scheduled_at`` when the
        function takes it; keyed by schedule and tick."""
        kwargs = dict(self.kwargs)
        if self.wants_scheduled_at:
            kwargs[SCHEDULED_AT] = self.label(tick)
        job = self.task.build(self.args, kwargs, JobOptions(idempotency_key=self.key(tick)))
        job.idempotency_scope = "any"
        return job


#: Steps a cron search takes before giving up (an expression that never fires, like Feb 30).
_SEARCH = 100_000


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise ConfigurationError(
            "cron schedules need croniter: pip install 'conveyor-jobs[cron]' (or use every=)"
        ) from None
    return croniter


def _check_cron(name: str, cron: str) -> None:
    croniter = _croniter()
    if not isinstance(cron, str) or not croniter.is_valid(cron):
        raise ConfigurationError(f"schedule {name}: not a cron expression: {cron!r}")


def _zone(name: str, timezone: str) -> ZoneInfo:
    # Imported by the first schedule with a time zone: an app without any skips its cost.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigurationError(
            f"schedule {name}: unknown time zone {timezone!r} (an IANA name like Europe/Paris)"
        ) from None


def _seconds(name: str, what: str, value: float | timedelta, most: float) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigurationError(f"schedule {name}: {what} must be seconds, got {value!r}")
    if not 0 < seconds <= most:
        raise ConfigurationError(
            f"schedule {name}: {what} must be > 0 and at most {most:g} seconds, got {value!r}"
        )
    return float(seconds)


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as operators see it (``app.schedules_info()``, ``conveyor schedules``)."""

    name: str
    #: The task and the timing, or None for a schedule the database knows but this app does not
    #: declare (its code is gone, or lives in another app).
    task: str | None
    spec: str | None
    paused: bool
    last_tick: float | None
    last_job_id: int | None
    #: The next tick to come (None while paused or undeclared).
    next_tick: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedules_info(
    declared: Mapping[str, Schedule], states: Sequence[ScheduleState], now: float
) -> list[ScheduleInfo]:
    """The declared schedules and the recorded ones, by name."""
    stored = {state.name: state for state in states}
    infos = []
    for name in sorted(set(declared) | set(stored)):
        schedule, state = declared.get(name), stored.get(name)
        paused = state is not None and state.paused
        infos.append(
            ScheduleInfo(
                name=name,
                task=None if schedule is None else schedule.task.name,
                spec=None if schedule is None else schedule.describe(),
                paused=paused,
                last_tick=None if state is None else state.last_tick,
                last_job_id=None if state is None else state.last_job_id,
                next_tick=None if schedule is None or paused else schedule.next_after(now),
            )
        )
    return infos
