"""Contract: rate limits of tasks, per key (conveyor/limits/buckets.py), on every engine. A job
held by a rate limit stays queued, burns no attempt, and never holds up other jobs."""

from __future__ import annotations

import pytest

from conveyor.backends.base import Backend
from conveyor.job import JobState
from conveyor.limits import RateLimit
from tests.contract.helpers import LEASE, fail
from tests.support import FakeClock, new_job

TWO_A_SECOND = RateLimit(2, per=1.0)


def limited(
    backend: Backend,
    count: int,
    key: str = "",
    task: str = "tests.call",
    queue: str = "api",
    rate: RateLimit = TWO_A_SECOND,
) -> list[int]:
    jobs = [new_job(task, queue, rate_key=key, rate_limit=rate) for _ in range(count)]
    return [r.job_id for r in backend.enqueue_many(jobs)]


def free(backend: Backend, count: int, queue: str = "api") -> list[int]:
    return [r.job_id for r in backend.enqueue_many([new_job(queue=queue) for _ in range(count)])]


def test_a_task_limit_spaces_its_starts(backend: Backend, clock: FakeClock) -> None:
    first, *_ = limited(backend, 5)
    [run] = backend.claim("w", None, 10, LEASE)
    assert run.id == first
    assert backend.claim("w", ["api"], 10, LEASE) == []
    assert backend.gates_open_at(None) == pytest.approx(clock.now + 0.5)
    clock.advance(0.5)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1
    # Unused time is not saved up.
    clock.advance(60)
    assert len(backend.claim("w", None, 10, LEASE)) == 1
    assert backend.claim("w", None, 10, LEASE) == []


def test_every_key_has_a_limit_of_its_own(backend: Backend, clock: FakeClock) -> None:
    for key in ("tenant-1", "tenant-2", "tenant-3"):
        limited(backend, 3, key)
    runs = backend.claim("w", None, 10, LEASE)
    assert len(runs) == 3
    assert backend.claim("w", None, 10, LEASE) == []
    clock.advance(0.5)
    assert len(backend.claim("w", None, 2, LEASE)) == 2  # the claim's own limit binds
    assert len(backend.claim("w", None, 10, LEASE)) == 1


def test_other_jobs_pass_a_held_backlog(backend: Backend) -> None:
    limited(backend, 50)
    others = free(backend, 5)
    runs = backend.claim("w", None, 10, LEASE)
    assert len(runs) == 6
    assert backend.claim("w", ["api"], 10, LEASE) == []
    assert {r.id for r in runs} >= set(others)


def test_a_held_job_stays_queued_and_burns_no_attempt(backend: Backend) -> None:
    ids = limited(backend, 3)
    backend.claim("w", None, 10, LEASE)
    backend.claim("w", None, 10, LEASE)
    waiting = [backend.get(i) for i in ids[1:]]
    assert [(j.state, j.attempts) for j in waiting] == [(JobState.QUEUED, 0)] * 2


def test_a_retried_job_stays_limited(backend: Backend, clock: FakeClock) -> None:
    limited(backend, 1)
    [run] = backend.claim("w", None, 10, LEASE)
    fail(backend, run, clock, retry_in=0.0)
    assert backend.claim("w", None, 10, LEASE) == []  # promoted, but no token yet
    assert backend.get(run.id).state is JobState.QUEUED
    clock.advance(0.5)
    assert [r.id for r in backend.claim("w", None, 10, LEASE)] == [run.id]


def test_a_claim_takes_limited_jobs_of_its_queues_only(backend: Backend) -> None:
    limited(backend, 2, queue="api")
    assert backend.claim("w", ["other"], 10, LEASE) == []
    assert backend.claim("w", ["other", "more"], 10, LEASE) == []
    assert len(backend.claim("w", ["other", "api"], 10, LEASE)) == 1
    assert backend.next_rate_token(["other"]) is None
    assert backend.next_rate_token(["api"]) is not None


def test_the_bucket_of_a_job_and_its_limit(backend: Backend, clock: FakeClock) -> None:
    [first, second] = limited(backend, 2, "tenant-9")
    backend.claim("w", None, 10, LEASE)
    bucket = backend.rate_bucket_of(second)
    assert bucket is not None
    assert (bucket.task, bucket.key, bucket.rate) == ("tests.call", "tenant-9", TWO_A_SECOND)
    assert bucket.rate_next == pytest.approx(clock.now + 0.5, abs=1e-5)
    assert backend.rate_bucket_of(free(backend, 1)[0]) is None
    # An enqueue under a new limit sets it: the task's code changed.
    limited(backend, 1, "tenant-9", rate=RateLimit(10, per=1.0))
    changed = backend.rate_bucket_of(first)
    assert changed is not None and changed.rate == RateLimit(10, per=1.0)


def test_cancel_of_a_held_job(backend: Backend) -> None:
    ids = limited(backend, 2)
    backend.claim("w", None, 10, LEASE)
    assert backend.cancel(ids[1]).state is JobState.CANCELLED
    assert backend.claim("w", None, 10, LEASE) == []


def test_a_queue_rate_and_a_task_rate_both_hold(backend: Backend, clock: FakeClock) -> None:
    backend.set_rate_limit("api", RateLimit(1, per=10.0))
    limited(backend, 3)
    free(backend, 3)
    # One start of the queue's rate: the task's job, which had a token of its own too.
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1
    clock.advance(1)  # the task's next token, not the queue's
    assert backend.claim("w", ["api"], 10, LEASE) == []
    clock.advance(9)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1


def test_the_gates_of_the_queue_hold_rate_limited_jobs_too(
    backend: Backend, clock: FakeClock
) -> None:
    limited(backend, 1, "tenant-1")
    limited(backend, 1, "tenant-2")
    backend.pause_queue("api", None)
    assert backend.claim("w", None, 10, LEASE) == []
    assert backend.claim("w", ["api"], 10, LEASE) == []
    backend.resume_queue("api")
    backend.set_concurrency_limit("api", 1)
    assert len(backend.claim("w", None, 10, LEASE)) == 1  # the cap lets one of the two start
    assert backend.claim("w", None, 10, LEASE) == []
