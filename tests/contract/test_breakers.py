"""Contract: circuit breakers (conveyor/limits/breakers.py) counted in finish_many and enforced
by the claim, on every engine."""

from __future__ import annotations

import threading
from typing import Any

from conveyor.backends import open_backend
from conveyor.backends.base import Backend, ClaimedJob, Outcome, OutcomeKind
from conveyor.job import JobState
from conveyor.limits.breakers import (
    BREAKERS_TTL,
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    BreakerHit,
    BreakerPolicy,
    BreakerRow,
)
from tests.contract.helpers import LEASE, error, finish
from tests.support import FakeClock, new_job

PARTNER = "tests.call_partner"
OTHER = "tests.other"


def declare(name: str = "partner-api", **policy: Any) -> Breaker:
    policy.setdefault("failures", 3)
    policy.setdefault("window", 60.0)
    policy.setdefault("cooldown", 30.0)
    return Breaker(BreakerPolicy(name, **policy), [PARTNER])


def fill(backend: Backend, count: int, task: str = PARTNER) -> list[int]:
    results = backend.enqueue_many([new_job(task=task, max_attempts=100) for _ in range(count)])
    return [r.job_id for r in results]


def state_of(backend: Backend, name: str = "partner-api") -> BreakerRow | None:
    return {row.name: row for row in backend.breakers()}.get(name)


def fail_run(backend: Backend, run: ClaimedJob, clock: FakeClock, breaker: Breaker) -> None:
    outcome = Outcome(
        run.id,
        run.lease_token,
        OutcomeKind.RETRY,
        error=error(run.attempt, clock.now),
        breaker=BreakerHit(breaker, failed=True),
    )
    assert finish(backend, outcome).applied


def succeed_run(backend: Backend, run: ClaimedJob, breaker: Breaker) -> None:
    outcome = Outcome(
        run.id,
        run.lease_token,
        OutcomeKind.SUCCEEDED,
        result_json="null",
        breaker=BreakerHit(breaker, failed=False),
    )
    assert finish(backend, outcome).applied


def claim(backend: Backend, limit: int = 100, worker: str = "w") -> list[ClaimedJob]:
    return backend.claim(worker, None, limit, LEASE)


def tasks_of(runs: list[ClaimedJob]) -> list[str]:
    return sorted(run.task for run in runs)


def trip(backend: Backend, clock: FakeClock, breaker: Breaker) -> None:
    """Fail as many runs of the breaker's task as it takes to open it."""
    for _ in range(breaker.policy.failures):
        [run] = backend.claim("w", None, 1, LEASE)
        assert run.task == PARTNER
        fail_run(backend, run, clock, breaker)
    found = state_of(backend)
    assert found is not None and found.state == OPEN


def test_opens_after_n_failures_in_the_window(backend: Backend, clock: FakeClock) -> None:
    breaker = declare(failures=3, window=60)
    fill(backend, 10)
    for n in range(3):
        [run] = claim(backend, 1)
        fail_run(backend, run, clock, breaker)
        clock.advance(10)
        found = state_of(backend)
        assert found is not None and found.state == (OPEN if n == 2 else CLOSED)
    assert found is not None and found.opened_at == clock.now - 10
    assert found.probe_at == found.opened_at + 30
    others = fill(backend, 2, task=OTHER)
    # The partner's jobs wait (the failed ones came back as retries), the others run.
    runs = claim(backend)
    assert tasks_of(runs) == [OTHER, OTHER]
    assert sorted(r.id for r in runs) == others
    assert claim(backend) == []


def test_failures_spread_beyond_the_window_do_not_open(backend: Backend, clock: FakeClock) -> None:
    breaker = declare(failures=3, window=60)
    fill(backend, 10)
    for _ in range(6):
        [run] = claim(backend, 1)
        fail_run(backend, run, clock, breaker)
        clock.advance(31)  # two failures in any 60 s, never three
    found = state_of(backend)
    assert found is not None and found.state == CLOSED
    assert len(claim(backend)) == 10


def test_ratio_mode_needs_the_volume_and_the_share(backend: Backend, clock: FakeClock) -> None:
    breaker = declare(ratio=0.5, min_calls=6, window=60)
    fill(backend, 20)
    runs = claim(backend, 5)
    for run in runs[:4]:
        fail_run(backend, run, clock, breaker)  # 4 of 4 failed, but too few runs
    succeed_run(backend, runs[4], breaker)
    found = state_of(backend)
    assert found is not None and found.state == CLOSED
    runs = claim(backend, 1)
    succeed_run(backend, runs[0], breaker)  # 4 of 6 failed: over the share
    found = state_of(backend)
    assert found is not None and found.state == OPEN


def test_ratio_mode_below_the_share_stays_closed(backend: Backend, clock: FakeClock) -> None:
    breaker = declare(ratio=0.5, min_calls=4, window=60)
    fill(backend, 20)
    for run in claim(backend, 12)[:12]:
        if run.id % 3 == 0:
            fail_run(backend, run, clock, breaker)
        else:
            succeed_run(backend, run, breaker)
    found = state_of(backend)
    assert found is not None and found.state == CLOSED


def test_runs_that_do_not_report_do_not_count(backend: Backend, clock: FakeClock) -> None:
    # A NonRetryable error or a dont_retry one ends the run with no report to the breaker
    # (Task.failure_outcome; tests/unit/test_breakers.py): such outcomes never open it.
    declare(failures=1)
    fill(backend, 3)
    for run in claim(backend):
        outcome = Outcome(
            run.id,
            run.lease_token,
            OutcomeKind.DEAD,
            error=error(run.attempt, clock.now),
            dead_reason="non-retryable error: ValueError",
        )
        assert finish(backend, outcome).applied
    assert state_of(backend) is None


def test_half_open_lets_exactly_one_probe_run(backend: Backend, clock: FakeClock) -> None:
    breaker = declare(cooldown=30)
    fill(backend, 20)
    trip(backend, clock, breaker)
    clock.advance(29)
    assert claim(backend) == []
    clock.advance(1)
    other = open_backend(backend.settings, clock=clock)
    try:
        claimed: list[list[ClaimedJob]] = []
        start = threading.Barrier(2)

        def claimer(engine: Backend, name: str) -> None:
            start.wait(timeout=10)
            claimed.append(engine.claim(name, None, 10, LEASE))

        threads = [
            threading.Thread(target=claimer, args=(backend, "a")),
            threading.Thread(target=claimer, args=(other, "b")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        probes = [run for runs in claimed for run in runs]
        assert len(probes) == 1
        found = state_of(backend)
        assert found is not None and found.state == HALF_OPEN
        assert found.probe_job == probes[0].id
        # Later claims, from either process, take no second probe while it runs.
        clock.advance(BREAKERS_TTL)
        assert claim(backend) == []
        assert other.claim("b", None, 10, LEASE) == []
    finally:
        other.close()


def test_a_successful_probe_closes_the_breaker(backend: Backend, clock: FakeClock) -> None:
    breaker = declare(cooldown=30)
    fill(backend, 10)
    trip(backend, clock, breaker)
    clock.advance(30)
    [probe] = claim(backend)
    succeed_run(backend, probe, breaker)
    found = state_of(backend)
    assert found is not None and found.state == CLOSED and found.opened_at is None
    assert len(claim(backend)) == 9


def test_a_failed_probe_reopens_with_the_cooldown_doubled_and_capped(
    backend: Backend, clock: FakeClock
) -> None:
    breaker = declare(cooldown=10, max_cooldown=25)
    fill(backend, 10)
    trip(backend, clock, breaker)
    for expected in (20.0, 25.0, 25.0):
        found = state_of(backend)
        assert found is not None and found.probe_at is not None
        clock.now = found.probe_at - 0.5
        assert claim(backend) == []
        clock.now = found.probe_at
        [probe] = claim(backend)
        fail_run(backend, probe, clock, breaker)
        found = state_of(backend)
        assert found is not None and found.state == OPEN
        assert found.cooldown == expected
        assert found.probe_at == clock.now + expected


def test_a_probe_that_ends_without_a_verdict_makes_room_for_another(
    backend: Backend, clock: FakeClock
) -> None:
    breaker = declare(cooldown=30)
    fill(backend, 10)
    trip(backend, clock, breaker)
    clock.advance(30)
    [probe] = claim(backend)
    # Released at shutdown: back in the queue, no verdict; the next claim probes again.
    assert finish(backend, Outcome(probe.id, probe.lease_token, OutcomeKind.RELEASED)).applied
    [again] = claim(backend)
    assert again.task == PARTNER
    assert claim(backend) == []


def test_open_and_close_by_hand(backend: Backend, clock: FakeClock) -> None:
    breaker = declare()
    fill(backend, 3)
    row = backend.set_breaker(breaker, opened=True)
    assert row.state == OPEN and row.probe_at is None
    clock.advance(3600)
    assert claim(backend) == []  # no probe: open until closed by hand
    row = backend.set_breaker(breaker, opened=False)
    assert row.state == CLOSED
    assert len(claim(backend)) == 3


def test_a_breaker_opened_elsewhere_binds_within_the_ttl(
    backend: Backend, clock: FakeClock
) -> None:
    breaker = declare()
    fill(backend, 4)
    assert len(claim(backend, 1)) == 1
    other = open_backend(backend.settings, clock=clock)
    try:
        other.set_breaker(breaker, opened=True)
        clock.advance(BREAKERS_TTL)
        assert claim(backend) == []
        other.set_breaker(breaker, opened=False)
        clock.advance(BREAKERS_TTL)
        assert len(claim(backend)) == 3
    finally:
        other.close()


def test_jobs_held_by_an_open_breaker_burn_no_attempt(backend: Backend, clock: FakeClock) -> None:
    breaker = declare(failures=1)
    [first, *rest] = fill(backend, 5)
    [run] = claim(backend, 1)
    fail_run(backend, run, clock, breaker)
    for _ in range(5):
        clock.advance(5)
        assert claim(backend) == []
    for job_id in rest:
        job = backend.get(job_id)
        assert job.state is JobState.QUEUED and job.attempts == 0
    assert backend.get(first).attempts == 1
    backend.set_breaker(breaker, opened=False)
    runs = claim(backend)
    assert sorted(r.id for r in runs) == [first, *rest]
    assert {r.id: r.attempt for r in runs} == {first: 2, **dict.fromkeys(rest, 1)}


def test_a_claim_from_a_list_of_queues_skips_held_tasks(backend: Backend, clock: FakeClock) -> None:
    breaker = declare(failures=1)
    backend.enqueue_many([new_job(task=PARTNER, queue="api") for _ in range(3)])
    backend.enqueue_many([new_job(task=OTHER, queue="api") for _ in range(2)])
    backend.enqueue_many([new_job(task=OTHER, queue="mail") for _ in range(2)])
    [run] = backend.claim("w", ["api"], 1, LEASE)
    fail_run(backend, run, clock, breaker)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 2
    assert len(backend.claim("w", ["api", "mail"], 10, LEASE)) == 2
    backend.set_concurrency_limit("mail", 5)
    clock.advance(30)
    # With a capped queue in play the probe still comes from the breaker's tasks.
    [probe] = backend.claim("w", ["api", "mail"], 10, LEASE)
    assert probe.task == PARTNER


def test_counted_failures_and_next_probe_are_visible(backend: Backend, clock: FakeClock) -> None:
    breaker = declare(failures=5, window=60)
    fill(backend, 3)
    for run in claim(backend):
        fail_run(backend, run, clock, breaker)
        clock.advance(1)
    found = state_of(backend)
    assert found is not None and found.state == CLOSED
    assert found.tasks == [PARTNER]
    assert len(found.recent) == 3
