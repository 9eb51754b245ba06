"""Contract: caps on the running jobs of a queue, across every worker (set_concurrency_limit)."""

from __future__ import annotations

import multiprocessing
import queue
from typing import Unpack

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import Backend, ClaimedJob, Outcome, OutcomeKind
from conveyor.backends.caps import CAPS_TTL
from conveyor.job import JobState
from tests.contract.helpers import (
    LEASE,
    claim_capped,
    enqueue,
    fail,
    finish,
    kill,
    succeed,
)
from tests.support import FakeClock, JobFields, new_job


def fill(backend: Backend, queue: str, count: int, **fields: Unpack[JobFields]) -> list[int]:
    results = backend.enqueue_many([new_job(queue=queue, **fields) for _ in range(count)])
    return [r.job_id for r in results]


def running(backend: Backend, queue: str) -> int:
    return backend.stats().get(queue, {}).get(JobState.RUNNING, 0)


def queues_of(runs: list[ClaimedJob]) -> list[str]:
    return sorted(run.queue for run in runs)


def test_one_claim_takes_a_capped_queue_up_to_its_cap(backend: Backend) -> None:
    fill(backend, "api", 10)
    backend.set_concurrency_limit("api", 3)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 3
    assert backend.claim("w", ["api"], 10, LEASE) == []
    assert running(backend, "api") == 3


def test_successive_claims_count_the_runs_of_every_worker(backend: Backend) -> None:
    fill(backend, "api", 10)
    backend.set_concurrency_limit("api", 4)
    assert len(backend.claim("worker-a", ["api"], 3, LEASE)) == 3
    assert len(backend.claim("worker-b", ["api"], 3, LEASE)) == 1
    assert backend.claim("worker-c", ["api"], 3, LEASE) == []
    assert backend.claim("worker-a", None, 3, LEASE) == []


def test_a_claim_from_every_queue_respects_the_caps(backend: Backend) -> None:
    fill(backend, "api", 5)
    fill(backend, "mail", 5)
    fill(backend, "default", 5)
    backend.set_concurrency_limit("api", 2)
    backend.set_concurrency_limit("mail", 1)
    runs = backend.claim("w", None, 100, LEASE)
    assert queues_of(runs) == ["api"] * 2 + ["default"] * 5 + ["mail"]
    assert backend.claim("w", None, 100, LEASE) == []


def test_a_claim_from_a_list_of_queues_respects_the_caps(backend: Backend) -> None:
    fill(backend, "api", 5)
    fill(backend, "default", 5)
    backend.set_concurrency_limit("api", 2)
    runs = backend.claim("w", ["default", "api"], 100, LEASE)
    assert queues_of(runs) == ["api"] * 2 + ["default"] * 5


def test_a_full_capped_queue_does_not_hold_back_the_others(backend: Backend) -> None:
    # The capped queue's backlog comes first in the global order (higher priority, older).
    fill(backend, "api", 50, priority=10)
    later = fill(backend, "default", 20)
    backend.set_concurrency_limit("api", 1)
    for _ in range(4):
        runs = backend.claim("w", None, 5, LEASE)
        assert len(runs) == 5
    assert running(backend, "api") == 1
    assert running(backend, "default") == 19
    assert backend.get(later[0]).state is JobState.RUNNING


def test_a_capped_queue_still_serves_its_best_jobs_first(
    backend: Backend, clock: FakeClock
) -> None:
    low = enqueue(backend, queue="api", priority=-5)
    old = enqueue(backend, queue="api", run_at=clock.now - 10)
    high = enqueue(backend, queue="api", priority=50)
    backend.set_concurrency_limit("api", 2)
    assert sorted(run.id for run in backend.claim("w", None, 10, LEASE)) == sorted([high, old])
    assert backend.get(low).state is JobState.QUEUED


def test_finished_runs_free_their_room(backend: Backend, clock: FakeClock) -> None:
    fill(backend, "api", 20, max_attempts=5)
    backend.set_concurrency_limit("api", 5)
    runs = backend.claim("w", ["api"], 10, LEASE)
    assert len(runs) == 5
    succeed(backend, runs[0])
    fail(backend, runs[1], clock, retry_in=3600.0)
    kill(backend, runs[2], clock)
    backend.cancel(runs[3].id)
    finish(backend, Outcome(runs[3].id, runs[3].lease_token, OutcomeKind.CANCELLED))
    finish(backend, Outcome(runs[4].id, runs[4].lease_token, OutcomeKind.RELEASED))
    again = backend.claim("w", ["api"], 10, LEASE)
    assert len(again) == 5
    assert backend.claim("w", ["api"], 10, LEASE) == []


def test_rescued_runs_free_their_room(backend: Backend, clock: FakeClock) -> None:
    fill(backend, "api", 4)
    backend.set_concurrency_limit("api", 2)
    lost = backend.claim("w", ["api"], 10, LEASE)
    assert len(lost) == 2
    clock.advance(LEASE + 1.0)
    # Runs whose lease ran out still count until a sweep rescues them.
    assert backend.claim("w", ["api"], 10, LEASE) == []
    assert sorted(backend.rescue_expired().requeued) == sorted(run.id for run in lost)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 2


def test_removing_a_cap_lets_the_queue_run_freely(backend: Backend) -> None:
    fill(backend, "api", 10)
    backend.set_concurrency_limit("api", 1)
    assert backend.capped_queues() == {"api"}
    assert len(backend.claim("w", None, 10, LEASE)) == 1
    backend.set_concurrency_limit("api", None)
    assert backend.concurrency_limits() == {}
    assert backend.capped_queues() == frozenset()
    assert len(backend.claim("w", None, 10, LEASE)) == 9


def test_ready_queues_names_every_queue_with_a_queued_job_capped_or_not(
    backend: Backend, clock: FakeClock
) -> None:
    assert backend.ready_queues() == frozenset()
    fill(backend, "api", 3)
    fill(backend, "mail", 1)
    fill(backend, "later", 2, delay=60.0)
    backend.set_concurrency_limit("api", 1)
    assert backend.ready_queues() == {"api", "mail"}
    runs = backend.claim("w", None, 10, LEASE)
    assert queues_of(runs) == ["api", "mail"]
    # Nothing more can be claimed, yet the capped queue's jobs are ready.
    assert backend.claim("w", None, 10, LEASE) == []
    assert backend.ready_queues() == {"api"}
    clock.advance(60.0)
    backend.promote_due()
    assert backend.ready_queues() == {"api", "later"}
    for run in runs:
        succeed(backend, run)
    assert len(backend.claim("w", ["later"], 10, LEASE)) == 2
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1
    assert backend.ready_queues() == {"api"}
    backend.set_concurrency_limit("api", None)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1
    assert backend.ready_queues() == frozenset()


def test_a_lowered_cap_waits_for_running_jobs_to_finish(backend: Backend) -> None:
    fill(backend, "api", 10)
    backend.set_concurrency_limit("api", 3)
    runs = backend.claim("w", ["api"], 10, LEASE)
    backend.set_concurrency_limit("api", 2)
    assert backend.get(runs[2].id).state is JobState.RUNNING, "running jobs are left alone"
    succeed(backend, runs[0])
    assert backend.claim("w", ["api"], 10, LEASE) == [], "still at the new cap"
    succeed(backend, runs[1])
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 1
    backend.set_concurrency_limit("api", 6)
    assert len(backend.claim("w", ["api"], 10, LEASE)) == 4


def test_queue_limits_lists_every_cap(backend: Backend) -> None:
    assert backend.concurrency_limits() == {}
    backend.set_concurrency_limit("mail", 5)
    backend.set_concurrency_limit("api", 1)
    backend.set_concurrency_limit("api", 2)
    backend.set_concurrency_limit("idle", 7)
    backend.set_concurrency_limit("idle", None)
    backend.set_concurrency_limit("never-capped", None)
    backend.set_concurrency_limit("huge", 2**31 - 1)
    assert backend.concurrency_limits() == {"api": 2, "huge": 2**31 - 1, "mail": 5}


def test_a_cap_set_elsewhere_binds_within_the_ttl(backend: Backend, clock: FakeClock) -> None:
    fill(backend, "api", 10)
    assert len(backend.claim("w", ["api"], 2, LEASE)) == 2
    other = open_backend(backend.settings, clock=clock)
    try:
        other.set_concurrency_limit("api", 2)
        clock.advance(CAPS_TTL)
        assert backend.claim("w", ["api"], 2, LEASE) == []
        assert backend.claim("w", None, 2, LEASE) == []
        other.set_concurrency_limit("api", None)
        clock.advance(CAPS_TTL)
        assert len(backend.claim("w", None, 2, LEASE)) == 2
    finally:
        other.close()


@pytest.mark.slow
def test_concurrent_claims_from_many_processes_never_exceed_the_cap(backend: Backend) -> None:
    """Processes claim side by side, some from the capped queue alone, some from every queue,
    and sample the capped queue's running jobs while they hold their runs."""
    processes, cap, jobs = 4, 3, 120
    fill(backend, "api", jobs)
    fill(backend, "default", jobs // 2)
    backend.set_concurrency_limit("api", cap)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results: multiprocessing.Queue[tuple[int, list[int]]] = ctx.Queue()
    claimers = [
        ctx.Process(
            target=claim_capped,
            args=(backend.settings, "api", None if n % 2 else ["api"], barrier, results),
            daemon=True,
        )
        for n in range(processes)
    ]
    for claimer in claimers:
        claimer.start()
    try:
        reports: list[tuple[int, list[int]]] = []
        for _ in claimers:
            try:
                reports.append(results.get(timeout=120))
            except queue.Empty:
                codes = [c.exitcode for c in claimers]
                pytest.fail(f"a process did not report: exit codes {codes}")
        for claimer in claimers:
            claimer.join(timeout=30)
            assert claimer.exitcode == 0
    finally:
        for claimer in claimers:
            if claimer.is_alive():
                claimer.kill()
                claimer.join()

    samples = [sample for _, taken in reports for sample in taken]
    assert sum(done for done, _ in reports) == jobs
    assert len(samples) >= jobs // cap
    assert max(samples) <= cap, f"{max(samples)} jobs of a queue capped at {cap} ran at once"
    assert backend.stats()["api"] == {JobState.SUCCEEDED: jobs}
