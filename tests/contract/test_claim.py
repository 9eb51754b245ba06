"""Contract: claiming, ordering, queues, limits, scheduled and retrying jobs, next_due."""

from __future__ import annotations

import pytest

from conveyor.backends.base import Backend
from conveyor.job import JobState
from tests.contract.helpers import LEASE, claim_one, enqueue, fail
from tests.support import FakeClock, new_job


def test_claim_starts_a_run(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(
        backend,
        task="tests.work",
        queue="q",
        args_json="[1,2]",
        kwargs_json='{"x":true}',
        priority=3,
        max_attempts=4,
        timeout=9.0,
    )
    [run] = backend.claim("worker-a", None, 10, 45.0)

    assert run.id == job_id
    assert run.task == "tests.work"
    assert run.queue == "q"
    assert run.args == [1, 2]
    assert run.kwargs == {"x": True}
    assert run.priority == 3
    assert run.attempt == 1
    assert run.max_attempts == 4
    assert run.timeout == 9.0
    assert run.checkpoint is None
    assert isinstance(run.lease_token, str)
    assert run.lease_token

    job = backend.get(job_id)
    assert job.state is JobState.RUNNING
    assert job.attempts == 1
    assert job.worker_id == "worker-a"
    assert job.lease_token == run.lease_token
    assert job.lease_expires_at == pytest.approx(clock.now + 45.0)
    assert job.started_at == pytest.approx(clock.now)

    assert backend.claim("worker-b", None, 10, 45.0) == [], "a running job is not claimed again"


def test_every_run_gets_a_fresh_token(backend: Backend, clock: FakeClock) -> None:
    enqueue(backend, max_attempts=10)
    tokens = set()
    for attempt in range(1, 6):
        run = claim_one(backend)
        assert run.attempt == attempt
        tokens.add(run.lease_token)
        fail(backend, run, clock)
    assert len(tokens) == 5
    enqueue(backend)
    assert claim_one(backend).lease_token not in tokens


def test_higher_priority_first_then_earlier_run_at_then_id(
    backend: Backend, clock: FakeClock
) -> None:
    # Enqueued out of order on purpose; run_at in the past makes them all ready now.
    low_old = enqueue(backend, priority=-5, run_at=clock.now - 100)
    normal_late = enqueue(backend, priority=0, run_at=clock.now - 10)
    normal_early = enqueue(backend, priority=0, run_at=clock.now - 20)
    high = enqueue(backend, priority=50)
    normal_same_a = enqueue(backend, priority=0, run_at=clock.now - 15)
    normal_same_b = enqueue(backend, priority=0, run_at=clock.now - 15)
    critical = enqueue(backend, priority=100, run_at=clock.now)

    claimed = backend.claim("w", None, 100, LEASE)
    assert [c.id for c in claimed] == [
        critical,
        high,
        normal_early,
        normal_same_a,
        normal_same_b,
        normal_late,
        low_old,
    ]


def test_claims_in_small_batches_follow_the_same_order(backend: Backend, clock: FakeClock) -> None:
    ids = [enqueue(backend, priority=p) for p in (0, 10, 0, 10, 5)]
    order = []
    for _ in range(5):
        order.append(claim_one(backend).id)
    assert order == [ids[1], ids[3], ids[4], ids[0], ids[2]]


def test_limit_is_respected(backend: Backend) -> None:
    backend.enqueue_many([new_job() for _ in range(7)])
    assert len(backend.claim("w", None, 3, LEASE)) == 3
    assert len(backend.claim("w", None, 3, LEASE)) == 3
    assert len(backend.claim("w", None, 3, LEASE)) == 1
    assert backend.claim("w", None, 3, LEASE) == []
    assert backend.stats()["default"] == {JobState.RUNNING: 7}


def test_a_limit_of_zero_claims_nothing(backend: Backend) -> None:
    enqueue(backend)
    assert backend.claim("w", None, 0, LEASE) == []
    assert backend.list_jobs()[0].state is JobState.QUEUED


def test_claims_per_queue(backend: Backend) -> None:
    emails = [enqueue(backend, queue="emails") for _ in range(3)]
    reports = [enqueue(backend, queue="reports") for _ in range(2)]
    other = enqueue(backend, queue="other", priority=100)

    assert backend.claim("w", ["nothing-here"], 10, LEASE) == []
    got_reports = backend.claim("w", ["reports"], 10, LEASE)
    assert sorted(c.id for c in got_reports) == reports
    assert {c.queue for c in got_reports} == {"reports"}

    got_emails = backend.claim("w", ["emails", "reports"], 10, LEASE)
    assert sorted(c.id for c in got_emails) == emails

    assert backend.get(other).state is JobState.QUEUED
    assert [c.id for c in backend.claim("w", None, 10, LEASE)] == [other]


def test_claim_over_several_queues_respects_the_limit(backend: Backend) -> None:
    for queue in ("a", "b", "c"):
        backend.enqueue_many([new_job(queue=queue) for _ in range(3)])
    claimed = backend.claim("w", ["a", "b", "c"], 4, LEASE)
    assert len(claimed) == 4
    assert {c.queue for c in claimed} <= {"a", "b", "c"}
    rest = backend.claim("w", ["a", "b", "c"], 100, LEASE)
    assert len(rest) == 5
    assert not {c.id for c in claimed} & {c.id for c in rest}


def test_queues_none_claims_from_every_queue(backend: Backend) -> None:
    ids = {enqueue(backend, queue=q) for q in ("a", "b", "c")}
    assert {c.id for c in backend.claim("w", None, 10, LEASE)} == ids


def test_scheduled_jobs_wait_for_their_time(backend: Backend, clock: FakeClock) -> None:
    later = enqueue(backend, delay=60.0)
    at = enqueue(backend, run_at=clock.now + 30.0)
    assert backend.get(later).state is JobState.SCHEDULED
    assert backend.claim("w", None, 10, LEASE) == []

    clock.advance(29.0)
    assert backend.claim("w", None, 10, LEASE) == []
    assert backend.get(at).state is JobState.SCHEDULED

    clock.advance(1.5)
    assert [c.id for c in backend.claim("w", None, 10, LEASE)] == [at]
    assert backend.get(later).state is JobState.SCHEDULED

    clock.advance(30.0)
    assert [c.id for c in backend.claim("w", None, 10, LEASE)] == [later]


def test_promote_due_moves_scheduled_and_retrying_jobs_to_queued(
    backend: Backend, clock: FakeClock
) -> None:
    scheduled = enqueue(backend, delay=10.0)
    retrying = enqueue(backend)
    fail(backend, claim_one(backend), clock, retry_in=20.0)
    not_yet = enqueue(backend, delay=1000.0)

    assert backend.promote_due() == 0
    clock.advance(25.0)
    assert backend.promote_due() == 2
    assert backend.get(scheduled).state is JobState.QUEUED
    assert backend.get(retrying).state is JobState.QUEUED
    assert backend.get(not_yet).state is JobState.SCHEDULED
    assert backend.promote_due() == 0


def test_retrying_jobs_wait_for_their_backoff(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend)
    fail(backend, claim_one(backend), clock, retry_in=10.0)
    assert backend.get(job_id).state is JobState.RETRYING

    clock.advance(9.5)
    assert backend.claim("w", None, 10, LEASE) == []
    clock.advance(1.0)
    run = claim_one(backend)
    assert run.id == job_id
    assert run.attempt == 2


def test_a_promoted_job_keeps_its_place_by_run_at(backend: Backend, clock: FakeClock) -> None:
    scheduled = enqueue(backend, delay=5.0)
    clock.advance(10.0)
    fresh = enqueue(backend)
    # The scheduled job has been due for 5 s: it is older than the fresh one.
    assert [c.id for c in backend.claim("w", None, 10, LEASE)] == [scheduled, fresh]


def test_next_due(backend: Backend, clock: FakeClock) -> None:
    assert backend.next_due() is None
    enqueue(backend)  # queued jobs are not "due later"
    assert backend.next_due() is None

    enqueue(backend, delay=100.0)
    enqueue(backend, delay=40.0)
    assert backend.next_due() == pytest.approx(clock.now + 40.0)

    retrying = enqueue(backend, priority=10)
    fail(backend, claim_one(backend), clock, retry_in=15.0)
    assert backend.get(retrying).state is JobState.RETRYING
    assert backend.next_due() == pytest.approx(clock.now + 15.0)

    clock.advance(200.0)
    backend.promote_due()
    assert backend.next_due() is None
