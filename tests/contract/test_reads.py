"""Contract: reads — get, list_jobs with its filters and paging, stats, now, change_marker."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import Backend
from conveyor.errors import JobNotFound
from conveyor.job import JobState
from conveyor.limits import RateLimit
from tests.contract.helpers import claim_one, enqueue, make_job_in
from tests.support import FakeClock, new_job


def test_get_an_unknown_job(backend: Backend) -> None:
    with pytest.raises(JobNotFound) as caught:
        backend.get(123_456)
    assert caught.value.job_id == 123_456
    assert "123456" in str(caught.value)


def test_list_jobs_newest_first_with_paging(backend: Backend) -> None:
    ids = [enqueue(backend) for _ in range(7)]
    assert [j.id for j in backend.list_jobs()] == ids[::-1]

    page1 = backend.list_jobs(limit=3)
    page2 = backend.list_jobs(limit=3, before_id=page1[-1].id)
    page3 = backend.list_jobs(limit=3, before_id=page2[-1].id)
    page4 = backend.list_jobs(limit=3, before_id=page3[-1].id)
    assert [j.id for j in page1 + page2 + page3] == ids[::-1]
    assert len(page3) == 1
    assert page4 == []


def test_list_jobs_filters(backend: Backend, clock: FakeClock) -> None:
    a_queued = enqueue(backend, queue="a", task="t.one")
    a_dead = make_job_in(backend, clock, JobState.DEAD, queue="a", task="t.two")
    b_scheduled = enqueue(backend, queue="b", task="t.one", delay=60.0)
    b_done = make_job_in(backend, clock, JobState.SUCCEEDED, queue="b", task="t.two")

    def ids(**filters: Any) -> list[int]:
        return [j.id for j in backend.list_jobs(**filters)]

    assert ids(queue="a") == [a_dead, a_queued]
    assert ids(queue="b") == [b_done, b_scheduled]
    assert ids(task="t.one") == [b_scheduled, a_queued]
    assert ids(states=[JobState.DEAD]) == [a_dead]
    assert ids(states=[JobState.QUEUED, JobState.SCHEDULED]) == [b_scheduled, a_queued]
    assert ids(states=[JobState.SUCCEEDED, JobState.DEAD], queue="b") == [b_done]
    assert ids(states=[JobState.DEAD], task="t.one") == []
    assert ids(queue="nope") == []
    assert ids(states=[]) == []
    assert ids(queue="a", task="t.two", before_id=a_dead) == []


def test_list_jobs_by_idempotency_key(backend: Backend, clock: FakeClock) -> None:
    old = make_job_in(backend, clock, JobState.SUCCEEDED, idempotency_key="k1", queue="a")
    live = enqueue(backend, idempotency_key="k1", queue="b")
    other = enqueue(backend, idempotency_key="k2", queue="a")
    enqueue(backend, queue="a")

    def ids(**filters: Any) -> list[int]:
        return [j.id for j in backend.list_jobs(**filters)]

    assert ids(idempotency_key="k1") == [live, old]
    assert ids(idempotency_key="k2") == [other]
    assert ids(idempotency_key="nope") == []
    assert ids(idempotency_key="k1", queue="a") == [old]
    assert ids(idempotency_key="k1", states=[JobState.QUEUED]) == [live]
    assert ids(idempotency_key="k1", task="nope") == []
    assert ids(idempotency_key="k1", limit=1) == [live]
    assert ids(idempotency_key="k1", before_id=live) == [old]


def test_list_jobs_returns_full_records(backend: Backend, clock: FakeClock) -> None:
    dead = make_job_in(backend, clock, JobState.DEAD, args_json='["x"]', kwargs_json='{"k":1}')
    [job] = backend.list_jobs(states=[JobState.DEAD])
    assert job == backend.get(dead)
    assert job.args == ["x"]
    assert job.kwargs == {"k": 1}
    assert len(job.errors) == 1


def test_stats_per_queue_and_state(backend: Backend, clock: FakeClock) -> None:
    assert dict(backend.stats()) == {}
    for _ in range(3):
        enqueue(backend, queue="a")
    enqueue(backend, queue="a", delay=30.0)
    make_job_in(backend, clock, JobState.DEAD, queue="a")
    make_job_in(backend, clock, JobState.SUCCEEDED, queue="b")
    make_job_in(backend, clock, JobState.SUCCEEDED, queue="b")
    make_job_in(backend, clock, JobState.RETRYING, queue="b")
    make_job_in(backend, clock, JobState.CANCELLED, queue="c")
    claim_one(backend, queues=["a"])

    stats = {queue: dict(states) for queue, states in backend.stats().items()}
    assert stats == {
        "a": {
            JobState.QUEUED: 2,
            JobState.RUNNING: 1,
            JobState.SCHEDULED: 1,
            JobState.DEAD: 1,
        },
        "b": {JobState.SUCCEEDED: 2, JobState.RETRYING: 1},
        "c": {JobState.CANCELLED: 1},
    }
    assert all(isinstance(state, JobState) for states in stats.values() for state in states)


def test_now_follows_the_injected_clock(backend: Backend, clock: FakeClock) -> None:
    assert backend.now() == pytest.approx(clock.now)
    clock.advance(123.0)
    assert backend.now() == pytest.approx(clock.now)


def test_change_marker_moves_when_another_connection_commits(
    backend: Backend, clock: FakeClock
) -> None:
    first = backend.change_marker()
    assert isinstance(first, int)
    assert backend.change_marker() == first, "stable while nothing happens"
    other = open_backend(backend.settings, clock=clock)
    try:
        other.enqueue_many([new_job(queue="elsewhere")])
    finally:
        other.close()
    # Engines may learn of the commit asynchronously (LISTEN/NOTIFY): poll with a deadline.
    deadline = time.monotonic() + 5.0
    while backend.change_marker() == first and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backend.change_marker() != first
    assert backend.stats()["elsewhere"] == {JobState.QUEUED: 1}


def test_local_listeners_hear_enqueues(backend: Backend) -> None:
    heard: list[list[str]] = []

    def listener(queues: Sequence[str]) -> None:
        heard.append(sorted(queues))

    backend.add_listener(listener)
    enqueue(backend, queue="b")
    backend.enqueue_many([])
    backend.remove_listener(listener)
    enqueue(backend, queue="c")
    assert heard == [["b"]]


def test_oldest_ready_per_queue(backend: Backend, clock: FakeClock) -> None:
    assert backend.oldest_ready() == {}
    # In "a" the oldest ready job has the lowest priority: it is not next in line.
    oldest_low = backend.get(enqueue(backend, queue="a", priority=-10))
    clock.advance(5.0)
    enqueue(backend, queue="a", priority=10)
    enqueue(backend, queue="a", priority=0)
    oldest_b = backend.get(enqueue(backend, queue="b", priority=10))
    clock.advance(5.0)
    enqueue(backend, queue="b", priority=-10)
    enqueue(backend, queue="c", delay=60.0)  # scheduled: not ready, not counted
    make_job_in(backend, clock, JobState.RUNNING, queue="d")
    # A job held by its task's rate limit waits too: the oldest of "e".
    [held] = backend.enqueue_many(
        [new_job("limited", "e", rate_key="tenant-1", rate_limit=RateLimit(1, per=3600.0))]
    )
    clock.advance(5.0)
    enqueue(backend, queue="e", priority=50)

    oldest = backend.oldest_ready()
    assert set(oldest) == {"a", "b", "e"}
    assert oldest["a"] == pytest.approx(oldest_low.run_at, abs=0.001)
    assert oldest["b"] == pytest.approx(oldest_b.run_at, abs=0.001)
    assert oldest["e"] == pytest.approx(backend.get(held.job_id).run_at, abs=0.001)


def test_running_by_worker(backend: Backend) -> None:
    assert backend.running_by_worker() == {}
    for _ in range(3):
        enqueue(backend)
    claim_one(backend, worker="w-1")
    claim_one(backend, worker="w-1")
    claim_one(backend, worker="w-2")
    assert backend.running_by_worker() == {"w-1": 2, "w-2": 1}
