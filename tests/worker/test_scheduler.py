"""The scheduler service (conveyor/worker/scheduler.py) on a real backend of each engine, driven
by the fake clock: the holder of maintenance enqueues a tick when it comes, the workers standing
by only once it is STANDBY seconds old and still without a job; pauses hold every worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from conveyor import Conveyor
from conveyor.backends.base import Backend
from conveyor.limits.schedules import Schedule
from conveyor.worker.scheduler import STANDBY, Scheduler
from tests.support import FakeClock

T0 = 1_800_000_000.0  # a multiple of 10: a tick of every=10


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def scheduler(backend: Backend, leading: bool, interval: float = 100.0) -> Scheduler:
    app = Conveyor("sqlite:///:memory:")  # a registry only: its database is never opened

    @app.task(name="tests.report")
    def report(scheduled_at: str) -> None:
        return None

    schedule = Schedule(report, every=10, name="report")
    return Scheduler(backend, [schedule], leading=lambda: leading, interval=interval, db_call=call)


def ticks(backend: Backend) -> list[str]:
    return sorted(job.kwargs["scheduled_at"] for job in backend.list_jobs())


def test_the_holder_enqueues_each_tick_as_it_comes(backend: Backend, clock: FakeClock) -> None:
    clock.now = T0 + 3
    leader = scheduler(backend, leading=True)
    assert asyncio.run(leader.tick()) == pytest.approx(7.0)  # until the next tick
    assert ticks(backend) == []  # the tick before it was first seen is not due
    clock.now = T0 + 10
    asyncio.run(leader.tick())
    assert ticks(backend) == ["2027-01-15T08:00:10+00:00"]
    asyncio.run(leader.tick())
    assert leader.enqueued == 1


def test_standby_workers_enqueue_only_a_tick_left_without_job(
    backend: Backend, clock: FakeClock
) -> None:
    clock.now = T0 + 3
    leader, standby = scheduler(backend, leading=True), scheduler(backend, leading=False)
    asyncio.run(leader.tick())
    assert asyncio.run(standby.tick()) == pytest.approx(7.0 + STANDBY)
    clock.now = T0 + 10
    asyncio.run(standby.tick())
    assert ticks(backend) == []  # the holder may still do it
    clock.now = T0 + 10 + STANDBY
    asyncio.run(standby.tick())
    assert ticks(backend) == ["2027-01-15T08:00:10+00:00"]
    asyncio.run(leader.tick())  # the holder, back, finds it done
    assert len(backend.list_jobs()) == 1
    assert (leader.enqueued, standby.enqueued) == (0, 1)


def test_a_paused_schedule_is_held_on_every_worker(backend: Backend, clock: FakeClock) -> None:
    clock.now = T0 + 3
    leader = scheduler(backend, leading=True)
    asyncio.run(leader.tick())
    backend.set_schedule_paused("report", True)
    clock.now = T0 + 30
    asyncio.run(leader.tick())
    assert ticks(backend) == []
    backend.set_schedule_paused("report", False)
    asyncio.run(leader.tick())
    assert ticks(backend) == []  # the ticks of the pause are dropped
    clock.now = T0 + 40
    asyncio.run(leader.tick())
    assert ticks(backend) == ["2027-01-15T08:00:40+00:00"]


def test_by_default_it_calls_the_database_on_a_thread_of_its_own(
    backend: Backend, clock: FakeClock
) -> None:
    app = Conveyor("sqlite:///:memory:")
    task = app.task(name="tests.beat")(lambda: None)
    own = Scheduler(backend, [Schedule(task, every=10)], leading=lambda: True, interval=1.0)

    async def two_ticks() -> None:
        clock.now = T0 + 3
        await own.tick()
        clock.now = T0 + 10
        await own.tick()
        await own.stop()

    asyncio.run(two_ticks())
    assert [job.task for job in backend.list_jobs()] == ["tests.beat"]
