"""The rules of the gates (conveyor/limits/): rate limits, quiet hours across daylight saving
time, what a queue's gates allow a claim, and the checks of ``why``."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import pytest

from conveyor.errors import ConfigurationError
from conveyor.job import Job, JobState
from conveyor.limits import QueueGate, QuietHours, RateLimit
from conveyor.limits import why as why_module
from conveyor.limits.rates import parse_rate
from conveyor.limits.times import moment, parse_moment
from conveyor.limits.why import Context, Hold, why
from conveyor.worker_info import WorkerInfo, WorkerState

BERLIN = ZoneInfo("Europe/Berlin")


def at(*fields: int, zone: dt.tzinfo = BERLIN, fold: int = 0) -> float:
    return dt.datetime(*fields, tzinfo=zone, fold=fold).timestamp()  # type: ignore[arg-type,misc]


# --- rate limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "per"),
    [("100/m", 100, 60.0), ("5/s", 5, 1.0), ("1000/h", 1000, 3600.0), ("3/10s", 3, 10.0)],
)
def test_rates_parse(text: str, count: int, per: float) -> None:
    assert parse_rate(text) == RateLimit(count, per=per)
    assert parse_rate(RateLimit(count, per=per)) is not None


@pytest.mark.parametrize("text", ["", "100", "0/s", "5/x", "-1/s", "5/0s", "a/m"])
def test_bad_rates_are_configuration_errors(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_rate(text)


@pytest.mark.parametrize("per", [0, -1, math.inf, math.nan, 86401, True])
def test_a_rate_limit_needs_a_sane_period(per: float) -> None:
    with pytest.raises(ConfigurationError):
        RateLimit(1, per=per)


def test_describe() -> None:
    assert RateLimit(100, per=60).describe() == "100/m"
    assert parse_rate("3/10s").describe() == "3/10s"


def test_starts_spaced_by_the_interval_never_exceed_the_limit_in_any_window() -> None:
    rate = RateLimit(20, per=1.0)
    now, rate_next = 1_800_000_000.123456, None
    starts: list[float] = []
    while len(starts) < 200:
        if RateLimit.allows(rate_next, now):
            starts.append(now)
            rate_next = rate.next_after(rate_next, now, 1)
        now += 0.0007
    for i, start in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < start + 1.0) <= 20
    # And after an idle minute, one start is allowed, not a burst.
    rate_next = rate.next_after(rate_next, now, 0)
    assert RateLimit.allows(rate_next, now + 60)
    assert not RateLimit.allows(rate.next_after(rate_next, now + 60, 1), now + 60)


# --- quiet hours -----------------------------------------------------------------------------


def test_office_hours_on_weekdays_in_berlin() -> None:
    quiet = QuietHours.parse("08:00-18:00", days="mon-fri", timezone="Europe/Berlin")
    assert quiet.is_quiet(at(2026, 12, 1, 8, 0))  # a Tuesday
    assert quiet.is_quiet(at(2026, 12, 1, 17, 59))
    assert not quiet.is_quiet(at(2026, 12, 1, 18, 0))
    assert not quiet.is_quiet(at(2026, 12, 1, 7, 59))
    assert not quiet.is_quiet(at(2026, 12, 5, 12, 0))  # a Saturday
    assert quiet.opens_at(at(2026, 12, 1, 9, 0)) == at(2026, 12, 1, 18, 0)
    assert quiet.describe() == "08:00-18:00 mon-fri Europe/Berlin"


def test_a_window_across_midnight_belongs_to_the_day_it_begins() -> None:
    quiet = QuietHours.parse("22:00-06:00", days="fri", timezone="Europe/Berlin")
    assert quiet.is_quiet(at(2026, 12, 4, 23, 0))  # Friday night
    assert quiet.is_quiet(at(2026, 12, 5, 5, 59))  # Saturday morning
    assert not quiet.is_quiet(at(2026, 12, 4, 5, 0))  # Friday morning: Thursday's, not set
    assert quiet.opens_at(at(2026, 12, 4, 23, 0)) == at(2026, 12, 5, 6, 0)


def test_back_to_back_windows_chain() -> None:
    quiet = QuietHours.parse("18:00-24:00,00:00-08:00", timezone="UTC")
    start = at(2026, 12, 1, 19, 0, zone=dt.UTC)
    assert quiet.opens_at(start) == at(2026, 12, 2, 8, 0, zone=dt.UTC)


def test_quiet_around_the_clock_never_opens() -> None:
    assert QuietHours.parse("00:00-24:00").opens_at(1_800_000_000.0) == math.inf


def test_a_window_in_the_skipped_hour_begins_and_ends_at_the_jump() -> None:
    # 2027-03-28, Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    jump = dt.datetime(2027, 3, 28, 1, 0, tzinfo=dt.UTC).timestamp()
    begins = QuietHours.parse("02:30-04:00", timezone="Europe/Berlin")
    assert not begins.is_quiet(jump - 1)
    assert begins.is_quiet(jump)
    ends = QuietHours.parse("01:00-02:30", timezone="Europe/Berlin")
    assert ends.is_quiet(jump - 1)
    assert not ends.is_quiet(jump)
    assert ends.opens_at(jump - 1800) == jump


def test_the_repeated_hour_counts_twice() -> None:
    # 2026-10-25, Berlin: 03:00 CEST goes back to 02:00 CET; 02:00-03:00 happens twice.
    quiet = QuietHours.parse("02:00-02:30", timezone="Europe/Berlin")
    first = at(2026, 10, 25, 2, 10, fold=0)
    second = at(2026, 10, 25, 2, 10, fold=1)
    assert second - first == 3600
    assert quiet.is_quiet(first) and quiet.is_quiet(second)
    assert not quiet.is_quiet(at(2026, 10, 25, 2, 40, fold=0))
    assert quiet.opens_at(first) == at(2026, 10, 25, 2, 30, fold=0)
    assert quiet.opens_at(second) == at(2026, 10, 25, 2, 30, fold=1)


def test_quiet_hours_round_trip_through_json() -> None:
    quiet = QuietHours.parse("08:00-12:00,13:00-18:00", days="mon-wed,fri", timezone="UTC")
    assert QuietHours.from_json(quiet.to_json()) == quiet
    assert quiet.days == frozenset({0, 1, 2, 4})


@pytest.mark.parametrize(
    ("windows", "days", "timezone"),
    [
        ("8-9", None, "UTC"),
        ("08:00-08:00", None, "UTC"),
        ("25:00-26:00", None, "UTC"),
        ("08:00-09:00", "funday", "UTC"),
        ("08:00-09:00", None, "Mars/Olympus"),
        ("", None, "UTC"),
    ],
)
def test_bad_quiet_hours_are_configuration_errors(
    windows: str, days: str | None, timezone: str
) -> None:
    with pytest.raises(ConfigurationError):
        QuietHours.parse(windows, days=days, timezone=timezone)


# --- moments ---------------------------------------------------------------------------------


def test_moments() -> None:
    assert moment(None) is None
    assert moment(12.5) == 12.5
    assert moment(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) == 1767225600.0
    with pytest.raises(ConfigurationError):
        moment(dt.datetime(2026, 1, 1))  # naive: which zone?
    assert parse_moment("30m", 100.0) == 1900.0
    assert parse_moment("2026-01-01T00:00+00:00", 0.0) == 1767225600.0
    with pytest.raises(ConfigurationError):
        parse_moment("tomorrow", 0.0)


# --- a queue's gates -------------------------------------------------------------------------


def test_the_room_a_queue_leaves_is_its_tightest_gate() -> None:
    now = 1000.0
    assert QueueGate("q").room(now) is None
    assert QueueGate("q", max_running=3, running=1).room(now) == 2
    assert QueueGate("q", max_running=3, running=5).room(now) == 0
    assert QueueGate("q", paused_until=math.inf).room(now) == 0
    assert QueueGate("q", paused_until=now).room(now) is None  # the pause has ended
    assert QueueGate("q", rate=RateLimit(5), rate_next=now + 0.1).room(now) == 0
    assert QueueGate("q", rate=RateLimit(5), rate_next=now).room(now) == 1
    assert QueueGate("q", max_running=3, running=3, rate=RateLimit(5)).room(now) == 0


def test_when_a_gate_opens() -> None:
    now = 1000.0
    assert QueueGate("q", max_running=1, running=1).opens_at(now) is None
    assert QueueGate("q", paused_until=math.inf).opens_at(now) == math.inf
    assert QueueGate("q", paused_until=now + 5).opens_at(now) == now + 5
    rated = QueueGate("q", paused_until=now + 5, rate=RateLimit(1), rate_next=now + 7)
    assert rated.opens_at(now) == now + 7


# --- why -------------------------------------------------------------------------------------


def job(state: JobState = JobState.QUEUED, run_at: float = 0.0, queue: str = "q") -> Job:
    return Job(
        id=1, task="t", queue=queue, state=state, args=[], kwargs={}, priority=0, run_at=run_at,
        attempts=0, max_attempts=3, created_at=0.0,
    )  # fmt: skip


def worker(queues: tuple[str, ...] | None, state: WorkerState = WorkerState.RUNNING) -> WorkerInfo:
    return WorkerInfo(
        id="w", host="h", pid=1, queues=queues, concurrency=1, state=state, stop_requested=False,
        started_at=0.0, last_beat_at=100.0, beat_interval=1.0, dead_after=10.0, observed_at=100.0,
    )  # fmt: skip


def gates_of(context: Context) -> list[str]:
    return [hold.gate for hold in why(context)]


def test_why_names_every_gate_that_holds_a_job() -> None:
    now = 100.0
    alive = [worker(None)]
    assert gates_of(Context(job(), now, None, alive)) == []
    assert gates_of(Context(job(), now, None, [])) == ["no worker"]
    assert gates_of(Context(job(), now, None, [worker(("other",))])) == ["no worker"]
    assert gates_of(Context(job(), now, None, [worker(None, WorkerState.DEAD)])) == ["no worker"]
    late = job(JobState.SCHEDULED, run_at=now + 60)
    assert gates_of(Context(late, now, None, alive)) == ["scheduled"]
    assert gates_of(Context(job(JobState.BLOCKED), now, None, alive)) == ["blocked"]
    everything = QueueGate(
        "q",
        max_running=1,
        running=1,
        paused_until=math.inf,
        quiet=QuietHours.parse("00:00-24:00"),
        rate=RateLimit(1),
        rate_next=now + 1,
    )
    assert gates_of(Context(job(), now, everything, alive)) == [
        "paused",
        "quiet",
        "cap",
        "rate",
    ]
    assert why(Context(job(JobState.RUNNING), now, everything, [])) == []


def test_a_check_registered_under_a_name_replaces_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(why_module, "_CHECKS", dict(why_module._CHECKS))

    def parents(context: Context) -> Hold | None:
        return (
            Hold("blocked", "waiting for job 7") if context.job.state is JobState.BLOCKED else None
        )

    why_module.register("blocked", parents)
    held = why(Context(job(JobState.BLOCKED), 0.0, None, [worker(None)]))
    assert [h.reason for h in held] == ["waiting for job 7"]
