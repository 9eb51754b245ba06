"""Contract: enqueue, single and bulk, queue limits, all-or-nothing writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conveyor.backends.base import Backend
from conveyor.errors import QueueFull
from conveyor.job import JobState
from tests.contract.conftest import MakeBackend
from tests.contract.helpers import claim_one, enqueue, snapshot, total
from tests.support import FakeClock, new_job


def test_enqueue_one_job_stores_everything_it_was_given(backend: Backend, clock: FakeClock) -> None:
    [result] = backend.enqueue_many(
        [
            new_job(
                task="billing.charge",
                queue="payments",
                args_json='[1,"two",{"three":3.5}]',
                kwargs_json='{"currency":"EUR","tags":["a","b"]}',
                priority=7,
                max_attempts=5,
                timeout=12.5,
            )
        ]
    )
    assert result.created is True
    assert result.state is JobState.QUEUED

    job = backend.get(result.job_id)
    assert job.id == result.job_id
    assert job.task == "billing.charge"
    assert job.queue == "payments"
    assert job.state is JobState.QUEUED
    assert job.args == [1, "two", {"three": 3.5}]
    assert job.kwargs == {"currency": "EUR", "tags": ["a", "b"]}
    assert job.priority == 7
    assert job.max_attempts == 5
    assert job.timeout == 12.5
    assert job.attempts == 0
    assert job.lost_runs == 0
    assert job.errors == []
    assert job.result is None
    assert job.dead_reason is None
    assert job.lease_token is None
    assert job.cancel_requested is False
    assert job.created_at == pytest.approx(clock.now)
    assert job.run_at == pytest.approx(clock.now)
    assert job.finished_at is None


def test_unicode_arguments_round_trip(backend: Backend) -> None:
    job_id = enqueue(backend, args_json='["héllo wörld ✓ 日本語 🚀"]', kwargs_json='{"ключ":"値"}')
    job = backend.get(job_id)
    assert job.args == ["héllo wörld ✓ 日本語 🚀"]
    assert job.kwargs == {"ключ": "値"}


def test_bulk_enqueue_returns_ids_in_order_with_their_states(
    backend: Backend, clock: FakeClock
) -> None:
    jobs = [
        new_job(args_json="[0]"),
        new_job(args_json="[1]", delay=60.0),
        new_job(args_json="[2]"),
        new_job(args_json="[3]", run_at=clock.now + 3600.0),
        new_job(args_json="[4]", run_at=clock.now - 10.0),
        new_job(args_json="[5]", delay=0.0),
    ]
    results = backend.enqueue_many(jobs)

    assert len(results) == len(jobs)
    ids = [r.job_id for r in results]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(r.created for r in results)
    assert [r.state for r in results] == [
        JobState.QUEUED,
        JobState.SCHEDULED,
        JobState.QUEUED,
        JobState.SCHEDULED,
        JobState.QUEUED,
        JobState.QUEUED,
    ]
    for index, result in enumerate(results):
        job = backend.get(result.job_id)
        assert job.args == [index], "ids must be returned in the order the jobs were given"
        assert job.state is result.state
    assert backend.get(ids[1]).run_at == pytest.approx(clock.now + 60.0)
    assert backend.get(ids[3]).run_at == pytest.approx(clock.now + 3600.0)
    assert backend.get(ids[4]).run_at == pytest.approx(clock.now - 10.0)


def test_enqueue_of_nothing_writes_nothing(backend: Backend) -> None:
    assert backend.enqueue_many([]) == []
    assert total(backend) == 0


def test_ids_grow_across_calls(backend: Backend) -> None:
    first = enqueue(backend)
    second = backend.enqueue_many([new_job(), new_job()])
    third = enqueue(backend)
    assert first < second[0].job_id < second[1].job_id < third


def test_large_bulk_enqueue_writes_every_job(backend: Backend) -> None:
    results = backend.enqueue_many([new_job(args_json=f"[{i}]") for i in range(1000)])
    assert len({r.job_id for r in results}) == 1000
    assert backend.stats()["default"][JobState.QUEUED] == 1000
    assert backend.get(results[-1].job_id).args == [999]


def test_a_mixed_bulk_batch_stores_each_job_as_given(backend: Backend, clock: FakeClock) -> None:
    # Runs of alike jobs and single odd ones, across several chunks of the bulk paths: whatever
    # a backend shares between rows must never leak into a row that differs.
    held = enqueue(backend, idempotency_key="held")
    jobs = []
    for i in range(1300):
        fields: dict[str, Any] = {"args_json": f"[{i}]"}
        if i % 400 == 7:
            fields.update(task="tests.other", queue="q2", priority=-5, max_attempts=9)
        if i % 250 == 3:
            fields.update(delay=120.0)
        if i % 333 == 5:
            fields.update(run_at=clock.now - 50.0, timeout=4.5, kwargs_json='{"k":"ü"}')
        if i in (600, 601):
            fields.update(idempotency_key="held" if i == 600 else "fresh")
        if i >= 1000:
            fields.update(queue="late", args_json="[]")
        jobs.append(new_job(**fields))
    results = backend.enqueue_many(jobs)

    assert len(results) == len(jobs)
    assert results[600].job_id == held and not results[600].created
    created = [r.job_id for i, r in enumerate(results) if i != 600]
    assert created == sorted(created) and len(set(created)) == len(created)
    for given, result in zip(jobs, results, strict=True):
        if not result.created:
            continue
        stored = backend.get(result.job_id)
        due = given.run_at if given.run_at is not None else clock.now + given.delay
        assert (stored.task, stored.queue, stored.priority) == (
            given.task,
            given.queue,
            given.priority,
        )
        assert (stored.args, stored.kwargs) == (
            json.loads(given.args_json),
            json.loads(given.kwargs_json),
        )
        assert (stored.max_attempts, stored.timeout) == (given.max_attempts, given.timeout)
        assert stored.run_at == pytest.approx(due)
        assert stored.created_at == pytest.approx(clock.now)
        assert stored.idempotency_key == given.idempotency_key
        assert stored.state is result.state
        assert result.state is (JobState.SCHEDULED if due > clock.now else JobState.QUEUED)


# --- queue limits ----------------------------------------------------------------------------


def test_queue_full_names_queue_depth_and_limit_and_writes_nothing(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend(queue_limits={"emails": 3})
    backend.enqueue_many([new_job(queue="emails"), new_job(queue="emails")])
    before = snapshot(backend)

    with pytest.raises(QueueFull) as caught:
        backend.enqueue_many([new_job(queue="emails"), new_job(queue="emails")])

    assert caught.value.queue == "emails"
    assert caught.value.depth == 2
    assert caught.value.limit == 3
    assert "emails" in str(caught.value)
    assert snapshot(backend) == before, "a rejected batch must write nothing"

    # One more still fits; then the queue is at its limit.
    enqueue(backend, queue="emails")
    with pytest.raises(QueueFull) as again:
        enqueue(backend, queue="emails")
    assert again.value.depth == 3
    assert backend.stats()["emails"][JobState.QUEUED] == 3


def test_a_job_an_idempotency_key_resolves_takes_no_room(make_backend: MakeBackend) -> None:
    backend = make_backend(queue_limits={"emails": 1})
    first = enqueue(backend, queue="emails", idempotency_key="welcome-42")
    # The queue is full, but this enqueue resolves to the job already there: no error.
    [again] = backend.enqueue_many([new_job(queue="emails", idempotency_key="welcome-42")])
    assert (again.job_id, again.created) == (first, False)
    with pytest.raises(QueueFull):
        enqueue(backend, queue="emails", idempotency_key="welcome-43")
    assert backend.stats()["emails"][JobState.QUEUED] == 1


def test_queue_limit_counts_waiting_jobs_only(make_backend: MakeBackend, clock: FakeClock) -> None:
    backend = make_backend(queue_limits={"emails": 2})
    enqueue(backend, queue="emails")
    enqueue(backend, queue="emails", delay=60.0)  # scheduled jobs wait too
    with pytest.raises(QueueFull):
        enqueue(backend, queue="emails")

    # A claimed job no longer waits, so it frees a place; other queues are not limited.
    run = claim_one(backend, queues=["emails"])
    enqueue(backend, queue="emails")
    with pytest.raises(QueueFull):
        enqueue(backend, queue="emails")
    backend.enqueue_many([new_job(queue="other") for _ in range(10)])
    assert backend.get(run.id).state is JobState.RUNNING
    assert backend.stats()["other"][JobState.QUEUED] == 10


def test_queue_full_in_one_queue_rejects_the_whole_batch(make_backend: MakeBackend) -> None:
    backend = make_backend(queue_limits={"small": 1})
    with pytest.raises(QueueFull) as caught:
        backend.enqueue_many([new_job(queue="big"), new_job(queue="small"), new_job(queue="small")])
    assert caught.value.queue == "small"
    assert caught.value.depth == 0
    assert caught.value.limit == 1
    assert total(backend) == 0


def test_bulk_enqueue_is_all_or_nothing_on_a_storage_error(backend: Backend) -> None:
    enqueue(backend, args_json='["kept"]')
    before = snapshot(backend)
    # max_attempts=0 is impossible (the caller validates it; the store must refuse it too).
    with pytest.raises(Exception):
        backend.enqueue_many([new_job(), new_job(max_attempts=0), new_job()])
    assert snapshot(backend) == before
    # And the store is still usable afterwards.
    enqueue(backend)
    assert total(backend) == 2
