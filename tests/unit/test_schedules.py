"""The rules of periodic jobs (conveyor/limits/schedules.py): ticks of cron and interval schedules,
daylight saving time, what is due on time, and the missed-tick policies. Times are given, never
read from a clock."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conveyor import Conveyor
from conveyor.errors import ArgumentsMismatch, ConfigurationError
from conveyor.limits.schedules import MAX_TICKS, Schedule, schedules_info
from conveyor.task import Task

PARIS = ZoneInfo("Europe/Paris")


@pytest.fixture
def app() -> Conveyor:
    return Conveyor("sqlite:///:memory:")


@pytest.fixture
def task(app: Conveyor) -> Task[..., None]:
    @app.task(name="tests.report")
    def report() -> None:
        return None

    return report


def at(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    tz: ZoneInfo | None = None,
) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=tz or UTC).timestamp()


def paris(ticks: list[float]) -> list[str]:
    return [datetime.fromtimestamp(t, PARIS).isoformat() for t in ticks]


# --- intervals ----------------------------------------------------------------------------


def test_an_interval_ticks_on_multiples_of_its_period(task: Task[..., None]) -> None:
    schedule = Schedule(task, every=30)
    base = at(2027, 1, 1, 12, 0, 0)
    assert schedule.ticks_between(base - 1, base + 61) == [base, base + 30, base + 60]
    assert schedule.ticks_between(base, base + 30) == [base + 30]
    assert schedule.next_after(base) == base + 30
    assert schedule.next_after(base + 29.5) == base + 30
    assert schedule.latest_at_or_before(base + 29.5) == base
    assert Schedule(task, every=timedelta(minutes=1), name="m").every == 60.0


def test_a_window_holds_at_most_the_latest_max_ticks(task: Task[..., None]) -> None:
    schedule = Schedule(task, every=1)
    ticks = schedule.ticks_between(0, 10_000)
    assert len(ticks) == MAX_TICKS
    assert ticks[-1] == 10_000


# --- cron ---------------------------------------------------------------------------------


def test_a_cron_schedule_ticks_in_its_time_zone(task: Task[..., None]) -> None:
    schedule = Schedule(task, cron="0 9 * * 1-5", timezone="Europe/Paris")
    friday = at(2027, 1, 8, 0, 0)
    # 09:00 in Paris is 08:00 UTC in winter; the weekend has no tick.
    assert schedule.ticks_between(friday, friday + 4 * 86400) == [
        at(2027, 1, 8, 8, 0),
        at(2027, 1, 11, 8, 0),
    ]
    summer = at(2027, 7, 1, 0, 0)
    assert schedule.next_after(summer) == at(2027, 7, 1, 7, 0)
    assert schedule.latest_at_or_before(at(2027, 7, 1, 7, 0)) == at(2027, 7, 1, 7, 0)
    assert schedule.latest_at_or_before(at(2027, 7, 1, 6, 59)) == at(2027, 6, 30, 7, 0)


def test_cron_with_seconds(task: Task[..., None]) -> None:
    schedule = Schedule(task, cron="* * * * * */2")
    base = at(2027, 1, 1, 0, 0, 0)
    assert schedule.ticks_between(base, base + 6) == [base + 2, base + 4, base + 6]


def test_a_tick_in_the_skipped_hour_runs_once_at_its_end(task: Task[..., None]) -> None:
    # 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST.
    daily = Schedule(task, cron="30 2 * * *", timezone="Europe/Paris", name="daily")
    ticks = daily.ticks_between(at(2026, 3, 27, 12, tz=PARIS), at(2026, 3, 30, 12, tz=PARIS))
    assert paris(ticks) == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]
    often = Schedule(task, cron="*/20 * * * *", timezone="Europe/Paris", name="often")
    ticks = often.ticks_between(at(2026, 3, 29, 1, 30, tz=PARIS), at(2026, 3, 29, 3, 30, tz=PARIS))
    # 02:00, 02:20 and 02:40 do not exist: one tick for them, when the clocks jump.
    assert paris(ticks) == [
        "2026-03-29T01:40:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:20:00+02:00",
    ]


def test_a_tick_in_the_repeated_hour_runs_once(task: Task[..., None]) -> None:
    # 2026-10-25 in Paris: 03:00 CEST goes back to 02:00 CET; 02:00-03:00 happens twice.
    daily = Schedule(task, cron="30 2 * * *", timezone="Europe/Paris", name="daily")
    ticks = daily.ticks_between(at(2026, 10, 24, 12, tz=PARIS), at(2026, 10, 26, 12, tz=PARIS))
    assert paris(ticks) == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    often = Schedule(task, cron="*/20 * * * *", timezone="Europe/Paris", name="often")
    start = at(2026, 10, 25, 1, 30, tz=PARIS)
    ticks = often.ticks_between(start, start + 3 * 3600)
    assert paris(ticks)[:6] == [
        "2026-10-25T01:40:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:20:00+02:00",
        "2026-10-25T02:40:00+02:00",
        # the second pass of 02:xx (+01:00) has no tick: each wall-clock time runs once
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:20:00+01:00",
    ]
    # Asked from inside the second pass, too.
    inside = datetime(2026, 10, 25, 1, 10, tzinfo=UTC).timestamp()  # 02:10 CET
    assert paris([often.next_after(inside)]) == ["2026-10-25T03:00:00+01:00"]
    assert paris([often.latest_at_or_before(inside) or 0]) == ["2026-10-25T02:40:00+02:00"]
    assert paris([daily.latest_at_or_before(inside) or 0]) == ["2026-10-25T02:30:00+02:00"]


# --- what is due --------------------------------------------------------------------------


def test_due_ticks_on_time_come_in_order_even_late(task: Task[..., None]) -> None:
    schedule = Schedule(task, every=10, grace=60)
    since = 1000.0
    assert schedule.due(1005.0, None, since) == []
    assert schedule.due(1010.0, None, since) == [1010.0]
    assert schedule.due(1010.0, 1010.0, since) == []
    # A scheduler 25 s late still enqueues every tick it passed, within the grace.
    assert schedule.due(1045.0, 1010.0, since) == [1020.0, 1030.0, 1040.0]


def test_missed_ticks_are_skipped_by_default(task: Task[..., None]) -> None:
    schedule = Schedule(task, every=60, grace=90)
    # No worker ran for an hour after 10:00: only the ticks of the last 90 s are on time.
    last = 36_000.0
    assert schedule.due(last + 3600 + 5, last, 0.0) == [last + 3540, last + 3600]


def test_missed_ticks_run_once_on_request(task: Task[..., None]) -> None:
    schedule = Schedule(task, every=60, grace=30, missed="once")
    last = 36_000.0
    # One job for the 59 missed ticks (the latest of them), then the tick on time.
    assert schedule.due(last + 3600 + 5, last, 0.0) == [last + 3540, last + 3600]
    # Nothing missed: nothing extra.
    assert schedule.due(last + 65, last, 0.0) == [last + 60]
    # A missed tick is only one after the last run, or since the schedule was first seen.
    assert schedule.due(last + 3600 + 5, None, last + 3550) == [last + 3600]
    daily = Schedule(task, cron="0 3 * * *", missed="once", name="daily")
    now = at(2027, 1, 10, 12, 0)
    assert daily.due(now, at(2027, 1, 5, 3, 0), 0.0) == [at(2027, 1, 10, 3, 0)]


def test_a_catch_up_is_bounded(task: Task[..., None]) -> None:
    schedule = Schedule(task, every=1, grace=3600, missed="once")
    due = schedule.due(100_000.0, 0.0, 0.0)
    assert len(due) == MAX_TICKS
    assert due[0] == 100_000.0 - 3600  # the missed one
    assert due[-1] == 100_000.0


def test_resuming_drops_the_ticks_of_the_pause(task: Task[..., None]) -> None:
    schedule = Schedule(task, every=10, missed="once")
    # Paused after the tick at 1000, resumed at 1500 (since moves there): nothing is due.
    assert schedule.due(1505.0, 1000.0, 1500.0) == []
    assert schedule.due(1510.0, 1000.0, 1500.0) == [1510.0]


# --- jobs ---------------------------------------------------------------------------------


def test_a_tick_job_carries_its_arguments_and_key(app: Conveyor) -> None:
    @app.task(name="tests.sum", queue="reports")
    def total(day: str, scale: int = 1, *, scheduled_at: str) -> None:
        return None

    schedule = Schedule(
        total,
        cron="0 6 * * *",
        timezone="Europe/Paris",
        name="morning",
        args=["mon"],
        kwargs={"scale": 2},
    )
    job = schedule.job(at(2027, 1, 4, 5, 0))
    assert job.task == "tests.sum" and job.queue == "reports"
    assert json.loads(job.args_json) == ["mon"]
    assert json.loads(job.kwargs_json) == {"scale": 2, "scheduled_at": "2027-01-04T06:00:00+01:00"}
    assert job.idempotency_key == "schedule:morning@2027-01-04T05:00:00+00:00"
    assert job.idempotency_scope == "any"


def test_app_periodic_registers_the_task_and_the_schedule(app: Conveyor) -> None:
    @app.periodic(every=30)
    def beat() -> None:
        return None

    @app.periodic(cron="0 * * * *", name="hourly-report")
    @app.periodic(every=60, name="minutely-report")
    @app.task(queue="reports")
    def report(scheduled_at: str) -> None:
        return None

    assert isinstance(beat, Task) and beat.name in app.tasks
    assert set(app.schedules) == {beat.name, "hourly-report", "minutely-report"}
    assert app.schedules["hourly-report"].task is report
    with pytest.raises(ConfigurationError, match="exists already"):
        app.periodic(every=5, name="hourly-report")(report)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "either cron= or every="),
        ({"cron": "* * * * *", "every": 5}, "either cron= or every="),
        ({"cron": "every minute"}, "not a cron expression"),
        ({"cron": "0 0 30 2 *"}, "never fires"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 0.5}, "at least 1s"),
        ({"every": -1}, "> 0"),
        ({"every": "30"}, "must be seconds"),
        ({"every": 5, "missed": "all"}, "'skip' or 'once'"),
        ({"every": 5, "grace": 0}, "> 0"),
        ({"every": 5, "name": ""}, "1-100 characters"),
        ({"every": 5, "name": "a\x00b"}, "NUL"),
        ({"every": 5, "grace": 10**9}, "at most 2.592e\\+06 seconds"),
        ({"every": float("inf")}, "> 0 and at most"),
    ],
)
def test_bad_schedules_are_refused(
    task: Task[..., None], options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Schedule(task, **options)  # type: ignore[arg-type]


def test_arguments_are_checked_at_declaration(app: Conveyor) -> None:
    @app.task(name="tests.pair")
    def pair(a: int, b: int, scheduled_at: str = "") -> None:
        return None

    with pytest.raises(ArgumentsMismatch):
        Schedule(pair, every=5, args=[1])
    with pytest.raises(ConfigurationError, match="given by the scheduler"):
        Schedule(pair, every=5, args=[1, 2], kwargs={"scheduled_at": "x"})


def test_cron_without_croniter_says_what_to_install(
    task: Task[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(ConfigurationError, match=r"conveyor-jobs\[cron\]"):
        Schedule(task, cron="* * * * *")
    assert Schedule(task, every=5).every == 5.0  # intervals need nothing


def test_schedules_info_merges_declared_and_recorded(task: Task[..., None]) -> None:
    from conveyor.backends.base import ScheduleState

    declared = {"a": Schedule(task, every=10, name="a"), "b": Schedule(task, every=10, name="b")}
    states = [
        ScheduleState("a", False, 0.0, 990.0, 7, 990.5),
        ScheduleState("b", True, 0.0),
        ScheduleState("gone", False, 0.0, 500.0, 3, 500.0),
    ]
    infos = {info.name: info for info in schedules_info(declared, states, 995.0)}
    a = infos["a"]
    assert (a.last_tick, a.last_job_id, a.next_tick) == (990.0, 7, 1000.0)
    assert infos["b"].paused and infos["b"].next_tick is None
    assert infos["gone"].task is None and infos["gone"].spec is None
    assert infos["a"].to_dict()["spec"] == "every 10s"


def test_both_engines_name_the_same_schedule_queries() -> None:
    from conveyor.backends.sql import load_queries

    sqlite = load_queries("conveyor.backends.sqlite", "schedules.sql")
    postgres = load_queries("conveyor.backends.postgres", "schedules.sql")
    assert sorted(sqlite) == sorted(postgres)
    assert set(sqlite) >= {"register_schedule", "schedule_states", "take_tick"}
