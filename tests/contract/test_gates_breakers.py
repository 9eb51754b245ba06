"""Contract: circuit breakers and rate limits of tasks together. The claims that skip the tasks
behind a breaker keep rate-limited jobs out as the ordinary claims do; a breaker holds the jobs
of a rate-limited task too, and its probe is one of them, under its bucket's token."""

from __future__ import annotations

import math

import pytest

from conveyor.backends.base import Backend
from conveyor.job import JobState
from conveyor.limits import RateLimit
from conveyor.limits.breakers import CLOSED, HALF_OPEN, Breaker, BreakerPolicy
from tests.contract.helpers import LEASE
from tests.contract.test_breakers import declare, fail_run, state_of, succeed_run
from tests.support import FakeClock, new_job

LIMITED = "tests.limited"
TWO_A_SECOND = RateLimit(2, per=1.0)


def limited_breaker() -> Breaker:
    return Breaker(BreakerPolicy("partner-api", failures=1, window=60, cooldown=30), [LIMITED])


def limited(backend: Backend, count: int, queue: str = "api", key: str = "") -> list[int]:
    jobs = [new_job(LIMITED, queue, rate_key=key, rate_limit=TWO_A_SECOND) for _ in range(count)]
    return [r.job_id for r in backend.enqueue_many(jobs)]


@pytest.mark.parametrize("queues", [None, ["api"], ["api", "other"]])
def test_a_rate_limit_holds_while_a_breaker_is_open(
    backend: Backend, clock: FakeClock, queues: list[str] | None
) -> None:
    backend.set_breaker(declare(), opened=True)
    backend.enqueue_many(
        [new_job(LIMITED, "api", rate_key="", rate_limit=TWO_A_SECOND) for _ in range(5)]
    )
    assert len(backend.claim("w", queues, 10, LEASE)) == 1
    assert backend.claim("w", queues, 10, LEASE) == []
    clock.advance(0.5)
    assert len(backend.claim("w", queues, 10, LEASE)) == 1


@pytest.mark.parametrize("queues", [None, ["api"], ["api", "other"]])
def test_an_open_breaker_holds_the_jobs_of_a_rate_limited_task(
    backend: Backend, clock: FakeClock, queues: list[str] | None
) -> None:
    breaker = limited_breaker()
    ids = limited(backend, 3, key="tenant-1") + limited(backend, 3, key="tenant-2")
    [first, _] = backend.claim("w", queues, 10, LEASE)
    fail_run(backend, first, clock, breaker)
    # Open: tokens are there (the failure took time), but nothing of the task starts.
    clock.advance(5)
    assert backend.claim("w", queues, 10, LEASE) == []
    for job_id in ids:
        assert backend.get(job_id).state in (JobState.QUEUED, JobState.RUNNING)
    assert backend.breaker_probe_at == pytest.approx(clock.now + 25)


def test_the_probe_of_a_rate_limited_task_takes_a_token(backend: Backend, clock: FakeClock) -> None:
    breaker = limited_breaker()
    limited(backend, 4)
    [first] = backend.claim("w", None, 10, LEASE)
    fail_run(backend, first, clock, breaker)
    clock.advance(30)
    # Exactly one probe, of the rate-limited task, fleet-wide.
    [probe] = backend.claim("w", None, 10, LEASE)
    assert probe.task == LIMITED
    found = state_of(backend)
    assert found is not None and found.state == HALF_OPEN and found.probe_job == probe.id
    assert backend.claim("w2", None, 10, LEASE) == []
    succeed_run(backend, probe, breaker)
    found = state_of(backend)
    assert found is not None and found.state == CLOSED
    # The probe spent its bucket's token: the next start waits for the next one.
    assert backend.claim("w", None, 10, LEASE) == []
    clock.advance(0.5)
    assert len(backend.claim("w", None, 10, LEASE)) == 1


def test_no_probe_of_a_rate_limited_task_without_a_token(
    backend: Backend, clock: FakeClock
) -> None:
    breaker = limited_breaker()
    slow = RateLimit(1, per=3600.0)
    jobs = [new_job(LIMITED, "api", rate_key="", rate_limit=slow) for _ in range(3)]
    backend.enqueue_many(jobs)
    [first] = backend.claim("w", None, 10, LEASE)
    fail_run(backend, first, clock, breaker)
    clock.advance(30)
    # The cool-down is over, but the bucket's next token is an hour away: no probe yet.
    assert backend.claim("w", None, 10, LEASE) == []
    found = state_of(backend)
    assert found is not None and found.state != HALF_OPEN
    clock.advance(3600)
    [probe] = backend.claim("w", None, 10, LEASE)
    assert probe.task == LIMITED


def test_the_probe_of_a_rate_limited_task_respects_its_queue_gates(
    backend: Backend, clock: FakeClock
) -> None:
    breaker = limited_breaker()
    limited(backend, 3)
    [first] = backend.claim("w", None, 10, LEASE)
    fail_run(backend, first, clock, breaker)
    backend.pause_queue("api", None)
    clock.advance(30)
    assert backend.claim("w", None, 10, LEASE) == []
    backend.resume_queue("api")
    [probe] = backend.claim("w", None, 10, LEASE)
    assert probe.task == LIMITED


def test_breakers_open_at_tells_a_burst_when_held_jobs_may_start(
    backend: Backend, clock: FakeClock
) -> None:
    breaker = limited_breaker()
    assert backend.breakers_open_at(None) is None
    limited(backend, 2, queue="api")
    [first] = backend.claim("w", None, 10, LEASE)
    fail_run(backend, first, clock, breaker)
    # Open with a cool-down: its end; for queues without its jobs, nothing.
    assert backend.breakers_open_at(None) == pytest.approx(clock.now + 30)
    assert backend.breakers_open_at(["api"]) == pytest.approx(clock.now + 30)
    assert backend.breakers_open_at(["other"]) is None
    # Half-open, a probe running: its verdict comes by itself, soon.
    clock.advance(30)
    [probe] = backend.claim("w", None, 10, LEASE)
    opens = backend.breakers_open_at(None)
    assert opens is not None and clock.now <= opens <= clock.now + 1
    # Opened by hand: only a person lets the jobs through.
    backend.set_breaker(breaker, opened=True)
    assert backend.breakers_open_at(None) == math.inf
    backend.set_breaker(breaker, opened=False)
    assert backend.breakers_open_at(None) is None
    assert probe.task == LIMITED
