"""Contract: the schedules of periodic jobs -- one job per tick, enforced by the database, and the
paused state (register_schedules, enqueue_tick, set_schedule_paused, schedule_states)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import Backend, NewJob, ScheduleState
from conveyor.errors import QueueFull
from conveyor.job import JobState
from tests.contract.conftest import MakeBackend
from tests.support import FakeClock, new_job

T0 = 1_800_000_000.0


def state(backend: Backend, name: str) -> ScheduleState:
    [found] = [s for s in backend.schedule_states() if s.name == name]
    return found


def tick_job(name: str, tick: float, queue: str = "default") -> NewJob:
    return new_job(
        task="tests.report",
        queue=queue,
        kwargs_json=f'{{"tick": {tick}}}',
        idempotency_key=f"schedule:{name}@{tick}",
        idempotency_scope="any",
    )


def test_a_schedule_is_recorded_once_as_first_seen(backend: Backend, clock: FakeClock) -> None:
    backend.register_schedules(["hourly", "nightly"])
    clock.advance(100)
    backend.register_schedules(["hourly"])
    states = backend.schedule_states()
    assert [s.name for s in states] == ["hourly", "nightly"]
    assert state(backend, "hourly") == ScheduleState("hourly", False, clock.now - 100)


def test_a_tick_enqueues_its_job_and_becomes_the_last(backend: Backend, clock: FakeClock) -> None:
    backend.register_schedules(["hourly"])
    result = backend.enqueue_tick("hourly", T0, tick_job("hourly", T0))
    assert result is not None and result.created
    assert result.state is JobState.QUEUED
    job = backend.get(result.job_id)
    assert job.task == "tests.report"
    assert job.kwargs == {"tick": T0}
    assert job.idempotency_key == f"schedule:hourly@{T0}"
    recorded = state(backend, "hourly")
    assert recorded.last_tick == T0
    assert recorded.last_job_id == result.job_id
    assert recorded.last_enqueued_at == clock.now


def test_a_tick_taken_already_or_older_writes_nothing(backend: Backend) -> None:
    backend.register_schedules(["hourly"])
    first = backend.enqueue_tick("hourly", T0 + 60, tick_job("hourly", T0 + 60))
    assert first is not None
    assert backend.enqueue_tick("hourly", T0 + 60, tick_job("hourly", T0 + 60)) is None
    assert backend.enqueue_tick("hourly", T0, tick_job("hourly", T0)) is None
    assert len(backend.list_jobs()) == 1
    assert state(backend, "hourly").last_job_id == first.job_id
    later = backend.enqueue_tick("hourly", T0 + 120, tick_job("hourly", T0 + 120))
    assert later is not None
    assert len(backend.list_jobs()) == 2


def test_a_schedule_not_recorded_gets_no_job(backend: Backend) -> None:
    assert backend.enqueue_tick("unknown", T0, tick_job("unknown", T0)) is None
    assert backend.list_jobs() == []


def test_schedules_are_independent(backend: Backend) -> None:
    backend.register_schedules(["a", "b"])
    assert backend.enqueue_tick("a", T0, tick_job("a", T0)) is not None
    assert backend.enqueue_tick("b", T0, tick_job("b", T0)) is not None
    assert len(backend.list_jobs()) == 2


def test_a_paused_schedule_gets_no_job_until_resumed(backend: Backend, clock: FakeClock) -> None:
    backend.register_schedules(["hourly"])
    paused = backend.set_schedule_paused("hourly", True)
    assert paused.paused
    assert backend.enqueue_tick("hourly", T0, tick_job("hourly", T0)) is None
    assert backend.list_jobs() == []
    clock.advance(500)
    resumed = backend.set_schedule_paused("hourly", False)
    # Resuming moves "since" on: the ticks that passed while paused are neither due nor missed.
    assert not resumed.paused and resumed.since == clock.now
    assert backend.enqueue_tick("hourly", T0, tick_job("hourly", T0)) is not None


def test_pausing_records_a_schedule_no_worker_saw_yet(backend: Backend, clock: FakeClock) -> None:
    paused = backend.set_schedule_paused("later", True)
    assert paused == ScheduleState("later", True, clock.now)
    backend.register_schedules(["later"])
    assert state(backend, "later").paused
    # Pausing twice, or resuming an active schedule, changes nothing else.
    assert backend.set_schedule_paused("later", True).since == clock.now
    clock.advance(10)
    backend.set_schedule_paused("later", False)
    clock.advance(10)
    assert backend.set_schedule_paused("later", False).since == clock.now - 10


def test_a_tick_whose_job_is_refused_is_not_taken(make_backend: MakeBackend) -> None:
    backend = make_backend(queue_limits={"tight": 1})
    backend.register_schedules(["hourly"])
    backend.enqueue_many([new_job(queue="tight")])
    with pytest.raises(QueueFull):
        backend.enqueue_tick("hourly", T0, tick_job("hourly", T0, queue="tight"))
    assert state(backend, "hourly").last_tick is None
    assert len(backend.list_jobs()) == 1


def test_schedulers_racing_for_every_tick_enqueue_one_job_each(
    backend: Backend, clock: FakeClock
) -> None:
    """Four schedulers, each with its own connections, try the same 25 ticks at once: each
    tick gets exactly one job."""
    backend.register_schedules(["fast"])
    ticks = [T0 + i for i in range(25)]
    others = [open_backend(backend.settings, clock=clock) for _ in range(4)]
    start = threading.Barrier(len(others))

    def race(other: Backend) -> list[float]:
        start.wait()
        return [t for t in ticks if other.enqueue_tick("fast", t, tick_job("fast", t))]

    try:
        with ThreadPoolExecutor(len(others)) as pool:
            won = [t for taken in pool.map(race, others) for t in taken]
    finally:
        for other in others:
            other.close()
    assert sorted(won) == ticks
    jobs = backend.list_jobs(limit=1000)
    assert sorted(job.kwargs["tick"] for job in jobs) == ticks
    assert state(backend, "fast").last_tick == ticks[-1]
