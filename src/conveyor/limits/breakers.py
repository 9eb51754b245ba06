"""Circuit breakers: the rules. The engines store a breaker's state (a row of
``conveyor_breakers``) and carry these rules out inside their transactions.

A breaker is a named resource that one or several tasks share
(``app.breaker("partner-api", failures=5, window=60, cooldown=30)`` and
``@app.task(breaker="partner-api")``). Its states and transitions, all of them fleet-wide:

    closed ──(failures in the window reach the threshold, or by hand)──▶ open
    open ──(cool-down over: a claim takes one probe job)──▶ half_open
    half_open ──(the probe succeeds)──▶ closed
    half_open ──(the probe fails)──▶ open, its cool-down doubled (up to max_cooldown)
    any ──(by hand)──▶ closed;  any ──(by hand)──▶ open, with no probe until closed by hand

Jobs behind a breaker that is not closed stay queued: claims skip them, so they burn no attempt.
Only the probe runs; a probe that ends without a verdict (lost lease, released at shutdown, an
error that does not count) leaves the breaker half-open and the next claim takes another.

Failures count in the same transaction as the outcome that reports them (``finish_many``); only
runs that were still owned count. What counts: an exception of one of ``counts`` (by default
every ``Exception``: timeouts, connection errors and ordinary errors alike) that is not one of
``ignore``, nor a ``NonRetryable`` or the task's ``dont_retry`` (bad input fails for everybody
alike and says nothing about the resource), nor a result that is not JSON. Cancelled and released
runs, and runs whose lease was lost, do not count.

Count mode (the default) opens after ``failures`` failures within ``window`` seconds: the row
keeps the times of the last ``failures`` failures, so the window slides exactly. Ratio mode
(``ratio=0.5, min_calls=20``) opens when at least ``min_calls`` runs ended in the window and at
least ``ratio`` of them failed; it counts runs in ten buckets per window, so the window slides in
tenths of itself.

A breaker holds the jobs of a rate-limited task (conveyor/limits/buckets.py) like any other: the
claim skips their buckets while it is not closed, and takes its probe among them with a bucket's
token when no ordinary job of its tasks waits. A suspect (poison isolation) is never a probe: it
waits until the breaker is closed. A burst worker waits for a breaker that will let a probe
start by itself (``opens_at``) and leaves the jobs of one opened by hand.

A claim knows which breakers are not closed from a list each process keeps for ``BREAKERS_TTL``
seconds (as it does for caps): with every breaker closed it pays nothing. A breaker that opens
through this process holds this process's claims at once, and other processes' within about a
second. The probe itself is taken inside the claim transaction: exactly one across the fleet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError, UnknownBreaker

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.job import Job

#: Seconds a process keeps the list of breakers that are not closed before reading it again.
BREAKERS_TTL = 1.0
#: The shortest cool-down: a process's list of open breakers must be fresh before a probe.
MIN_COOLDOWN = BREAKERS_TTL
#: Buckets per window in ratio mode.
BUCKETS = 10

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


def check_breaker_name(name: str) -> None:
    if not isinstance(name, str) or not 1 <= len(name) <= 200 or "\x00" in name:
        raise ConfigurationError(f"breaker name must be 1-200 characters, got {name!r}")


def _positive(name: str, value: float, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < minimum or seconds <= 0:
        raise ConfigurationError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    return seconds


def _whole(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 10_000:
        raise ConfigurationError(f"{name} must be a whole number from {minimum} to 10000")
    return value


def _exception_types(name: str, value: Any) -> tuple[type[BaseException], ...]:
    types = (value,) if isinstance(value, type) else tuple(value)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise ConfigurationError(f"{name} must hold exception classes, got {kind!r}")
    return types


@dataclass(frozen=True)
class BreakerPolicy:
    """How a breaker trips and recovers (see the module docstring)."""

    name: str
    failures: int = 5
    window: float = 60.0
    cooldown: float = 30.0
    #: The longest cool-down after repeated failed probes; default 10 minutes (or ``cooldown``).
    max_cooldown: float | None = None
    #: Ratio mode: open when this share of the runs in the window failed ...
    ratio: float | None = None
    #: ... once at least this many ended in it.
    min_calls: int = 20
    counts: tuple[type[BaseException], ...] = (Exception,)
    ignore: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        check_breaker_name(self.name)
        _whole("failures", self.failures)
        set_ = object.__setattr__
        set_(self, "window", _positive("window", self.window))
        set_(self, "cooldown", _positive("cooldown", self.cooldown, MIN_COOLDOWN))
        cap = max(600.0, self.cooldown) if self.max_cooldown is None else self.max_cooldown
        set_(self, "max_cooldown", _positive("max_cooldown", cap, self.cooldown))
        if self.ratio is not None:
            if isinstance(self.ratio, bool) or not (
                isinstance(self.ratio, int | float) and 0 < self.ratio <= 1
            ):
                raise ConfigurationError(f"ratio must be a number in (0, 1], got {self.ratio!r}")
            _whole("min_calls", self.min_calls)
        set_(self, "counts", _exception_types("counts", self.counts))
        set_(self, "ignore", _exception_types("ignore", self.ignore))

    def counts_failure(self, exc: BaseException) -> bool:
        return isinstance(exc, self.counts) and not isinstance(exc, self.ignore)

    @property
    def cap(self) -> float:
        assert self.max_cooldown is not None
        return self.max_cooldown


@dataclass(eq=False)
class Breaker:
    """A declared breaker: its policy and the tasks behind it (registered with
    ``@app.task(breaker=...)``), which the database row repeats for claims to skip."""

    policy: BreakerPolicy
    tasks: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.policy.name


@dataclass(slots=True)
class BreakerHit:
    """What an outcome of a task behind a breaker reports to it."""

    breaker: Breaker
    failed: bool


@dataclass
class BreakerRow:
    """The stored state of one breaker."""

    name: str
    state: str = CLOSED
    tasks: list[str] = field(default_factory=list)
    #: Count mode: times of the last failures; ratio mode: [bucket start, runs, failures].
    recent: list[Any] = field(default_factory=list)
    window: float = 60.0
    opened_at: float | None = None
    #: While open: when a probe may start (None: opened by hand, until closed by hand).
    probe_at: float | None = None
    cooldown: float | None = None
    probe_job: int | None = None
    probe_token: str | None = None


# --- transitions ----------------------------------------------------------------------------


def record(
    row: BreakerRow | None,
    breaker: Breaker,
    events: Sequence[tuple[str, bool]],
    now: float,
) -> BreakerRow | None:
    """The breaker after the runs ``events`` ((lease token, failed), in order) ended, or None
    when there is nothing to write."""
    policy = breaker.policy
    if row is None:
        if policy.ratio is None and not any(failed for _, failed in events):
            return None
        row = BreakerRow(policy.name)
    if row.state == OPEN:
        return None
    if row.state == HALF_OPEN:
        verdict = [failed for token, failed in events if token == row.probe_token]
        if not verdict:
            return None
        if verdict[0]:
            grown = min((row.cooldown or policy.cooldown) * 2, policy.cap)
            return _opened(row, breaker, now, grown)
        return _closed(row, breaker)
    # Closed.
    row.tasks, row.window = list(breaker.tasks), policy.window
    if policy.ratio is None:
        if not any(failed for _, failed in events):
            return None
        times = [t for t in row.recent if isinstance(t, int | float)]
        times += [now for _, failed in events if failed]
        row.recent = [t for t in times if t > now - policy.window][-policy.failures :]
        if len(row.recent) >= policy.failures:
            return _opened(row, breaker, now, policy.cooldown)
        return row
    row.recent = _add_to_buckets(row.recent, policy.window, events, now)
    runs, failures = _bucket_totals(row.recent)
    if runs >= policy.min_calls and failures >= policy.ratio * runs:
        return _opened(row, breaker, now, policy.cooldown)
    return row


def _add_to_buckets(
    recent: list[Any], window: float, events: Sequence[tuple[str, bool]], now: float
) -> list[Any]:
    width = window / BUCKETS
    start = math.floor(now / width) * width
    buckets = [
        b for b in recent if isinstance(b, list) and len(b) == 3 and b[0] > now - window - width
    ]
    # The oldest bucket may straddle the window's edge: it goes once wholly outside.
    buckets = [b for b in buckets if b[0] + width > now - window]
    if not buckets or buckets[-1][0] != start:
        buckets.append([start, 0, 0])
    buckets[-1][1] += len(events)
    buckets[-1][2] += sum(1 for _, failed in events if failed)
    return buckets


def _bucket_totals(buckets: Iterable[Any]) -> tuple[int, int]:
    runs = failures = 0
    for bucket in buckets:
        if isinstance(bucket, list) and len(bucket) == 3:
            runs += int(bucket[1])
            failures += int(bucket[2])
    return runs, failures


def _opened(row: BreakerRow, breaker: Breaker, now: float, cooldown: float) -> BreakerRow:
    row.state, row.opened_at, row.cooldown = OPEN, now, cooldown
    row.probe_at = now + cooldown
    row.probe_job = row.probe_token = None
    row.tasks, row.window = list(breaker.tasks), breaker.policy.window
    return row


def _closed(row: BreakerRow, breaker: Breaker) -> BreakerRow:
    row.state, row.recent = CLOSED, []
    row.opened_at = row.probe_at = row.cooldown = None
    row.probe_job = row.probe_token = None
    row.tasks, row.window = list(breaker.tasks), breaker.policy.window
    return row


def opened_by_hand(row: BreakerRow | None, breaker: Breaker, now: float) -> BreakerRow:
    """Open until closed by hand: no probe runs meanwhile."""
    row = _opened(row or BreakerRow(breaker.name), breaker, now, breaker.policy.cooldown)
    row.probe_at = None
    return row


def closed_by_hand(row: BreakerRow | None, breaker: Breaker) -> BreakerRow:
    return _closed(row or BreakerRow(breaker.name), breaker)


# --- what a claim does ----------------------------------------------------------------------


@dataclass
class Gate:
    """What a claim does about the breakers that are not closed."""

    #: Tasks the claim skips (every task behind such a breaker).
    held: list[str] = field(default_factory=list)
    #: Breakers that may start a probe now, if the engine finds no probe running.
    probing: list[BreakerRow] = field(default_factory=list)
    #: The earliest time a breaker will let a probe start, for idle workers to wake then.
    next_probe_at: float | None = None


def gate(rows: Iterable[BreakerRow], now: float) -> Gate:
    result = Gate()
    held: set[str] = set()
    for row in rows:
        if row.state == CLOSED:
            continue
        held.update(row.tasks)
        if row.state == HALF_OPEN or (row.probe_at is not None and row.probe_at <= now):
            result.probing.append(row)
        elif row.probe_at is not None and (
            result.next_probe_at is None or row.probe_at < result.next_probe_at
        ):
            result.next_probe_at = row.probe_at
    result.held = sorted(held)
    return result


def opens_at(
    rows: Iterable[BreakerRow], now: float, holds_queued: Callable[[Sequence[str]], bool]
) -> float | None:
    """When the breakers of ``rows`` that hold queued jobs (``holds_queued(tasks)``) next
    let one start by themselves: the end of an open breaker's cool-down; ``now`` plus
    ``BREAKERS_TTL`` while a probe runs or is due; ``inf`` for breakers opened by hand
    (they wait for a person); None when none holds a queued job."""
    moments = []
    for row in rows:
        if row.state == CLOSED or not holds_queued(row.tasks):
            continue
        if row.state == OPEN and row.probe_at is None:
            moments.append(math.inf)
        elif row.state == OPEN and row.probe_at is not None and row.probe_at > now:
            moments.append(row.probe_at)
        else:
            moments.append(now + BREAKERS_TTL)
    return min(moments, default=None)


def probe_started(row: BreakerRow, job_id: int, token: str) -> BreakerRow:
    row.state, row.probe_job, row.probe_token = HALF_OPEN, job_id, token
    return row


# --- what people see ------------------------------------------------------------------------


@dataclass(frozen=True)
class BreakerStatus:
    """One breaker as ``conveyor breakers`` and ``app.breakers()`` show it."""

    name: str
    state: str
    #: Failures within the window now.
    failures: int
    opened_at: float | None
    #: While open: when the next probe may start (None: opened by hand, or not open).
    next_probe_at: float | None
    cooldown: float | None
    tasks: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "failures": self.failures,
            "opened_at": self.opened_at,
            "next_probe_at": self.next_probe_at,
            "cooldown": self.cooldown,
            "tasks": list(self.tasks),
        }


def status(row: BreakerRow, now: float) -> BreakerStatus:
    if row.recent and isinstance(row.recent[0], list):
        failures = sum(
            int(b[2]) for b in row.recent if b[0] + row.window / BUCKETS > now - row.window
        )
    else:
        failures = sum(1 for t in row.recent if t > now - row.window)
    return BreakerStatus(
        name=row.name,
        state=row.state,
        failures=failures,
        opened_at=row.opened_at,
        next_probe_at=row.probe_at if row.state == OPEN else None,
        cooldown=row.cooldown,
        tasks=tuple(row.tasks),
    )


def describe(found: BreakerStatus, now: float) -> str | None:
    """Why a waiting job behind this breaker waits, or None if the breaker lets it run."""
    if found.state == CLOSED:
        return None
    if found.state == HALF_OPEN:
        return f"waiting: breaker {found.name} half-open, a probe job is running"
    if found.next_probe_at is None:
        return f"waiting: breaker {found.name} open until closed by hand"
    if found.next_probe_at <= now:
        return f"waiting: breaker {found.name} open, the next claim runs a probe job"
    until = datetime.fromtimestamp(found.next_probe_at, tz=UTC).strftime("%H:%M:%S")
    return f"waiting: breaker {found.name} open until {until} UTC"


def breaker_gate(app: Conveyor, job: Job) -> str | None:
    """One line naming the open breaker that holds ``job``, or None: for ``jobs show`` and
    ``jobs why``. Only a waiting job is held; its task's breaker comes from ``app``."""
    from conveyor.job import JobState

    if job.state is not JobState.QUEUED:
        return None
    task = app.tasks.get(job.task)
    name = None if task is None else task.breaker
    now = app.backend.now()
    for row in app.backend.breakers():
        # A task this process does not know is found through the tasks the row lists.
        if row.name == name or (name is None and job.task in row.tasks):
            return describe(status(row, now), now)
    return None


def breaker_statuses(app: Conveyor) -> list[BreakerStatus]:
    """The stored breakers, and the declared ones without a row (closed), by name."""
    now = app.backend.now()
    found = {row.name: status(row, now) for row in app.backend.breakers()}
    for name, declared in app.declared_breakers.items():
        if name not in found:
            found[name] = status(BreakerRow(name, tasks=list(declared.tasks)), now)
    return [found[name] for name in sorted(found)]


def known_breaker(app: Conveyor, name: str) -> Breaker:
    """The breaker ``app`` declares as ``name``, else the one stored under that name (for the
    CLI without the app: the row names its tasks)."""
    check_breaker_name(name)
    if name in app.declared_breakers:
        return app.declared_breakers[name]
    stored = app.backend.breakers()
    for row in stored:
        if row.name == name:
            return Breaker(BreakerPolicy(name, window=row.window), list(row.tasks))
    raise UnknownBreaker(name, sorted({*app.declared_breakers, *(row.name for row in stored)}))


__all__ = [
    "BREAKERS_TTL",
    "Breaker",
    "BreakerHit",
    "BreakerPolicy",
    "BreakerRow",
    "BreakerStatus",
    "breaker_gate",
    "breaker_statuses",
    "known_breaker",
]
