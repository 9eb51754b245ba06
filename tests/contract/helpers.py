"""Small helpers of the contract suite. They talk to a backend through the Backend interface only
(never SQL, never engine internals), so the suite runs unchanged on every engine."""

from __future__ import annotations

import multiprocessing.synchronize
import os
from multiprocessing.queues import Queue
from typing import Any

from conveyor.backends import open_backend
from conveyor.backends.base import Backend, ClaimedJob, FinishResult, Outcome, OutcomeKind
from conveyor.job import Job, JobError, JobState
from conveyor.settings import Settings
from tests.support import FakeClock, new_job

LEASE = 30.0


def enqueue(backend: Backend, **fields: Any) -> int:
    """Enqueue one job (see tests.support.new_job for the fields) and return its id."""
    [result] = backend.enqueue_many([new_job(**fields)])
    return result.job_id


def claim_one(
    backend: Backend,
    worker: str = "worker-1",
    queues: list[str] | None = None,
    lease: float = LEASE,
) -> ClaimedJob:
    claimed = backend.claim(worker, queues, 1, lease)
    assert len(claimed) == 1, f"expected one claimable job, got {claimed}"
    return claimed[0]


def claim_suspect_one(
    backend: Backend,
    worker: str = "worker-1",
    queues: list[str] | None = None,
    lease: float = LEASE,
) -> ClaimedJob:
    """Claim a rescued job: it waits as a suspect, for a worker that holds nothing else."""
    claimed = backend.claim_suspect(worker, queues, lease)
    assert claimed is not None, "expected a claimable suspect"
    return claimed


def error(attempt: int, at: float, message: str = "boom") -> JobError:
    return JobError(
        attempt=attempt,
        type="ValueError",
        message=message,
        traceback=f"Traceback (most recent call last):\nValueError: {message}\n",
        at=at,
    )


def finish(backend: Backend, outcome: Outcome) -> FinishResult:
    [result] = backend.finish_many([outcome])
    assert result.job_id == outcome.job_id
    return result


def succeed(backend: Backend, run: ClaimedJob, result_json: str | None = "null") -> FinishResult:
    return finish(
        backend, Outcome(run.id, run.lease_token, OutcomeKind.SUCCEEDED, result_json=result_json)
    )


def fail(
    backend: Backend,
    run: ClaimedJob,
    clock: FakeClock,
    retry_in: float = 0.0,
    message: str = "boom",
    **fields: Any,
) -> FinishResult:
    """A failed run that asks for a retry in ``retry_in`` seconds."""
    return finish(
        backend,
        Outcome(
            run.id,
            run.lease_token,
            OutcomeKind.RETRY,
            error=error(run.attempt, clock.now, message),
            retry_in=retry_in,
            **fields,
        ),
    )


def kill(
    backend: Backend, run: ClaimedJob, clock: FakeClock, reason: str = "gave up"
) -> FinishResult:
    """A failed run that dead-letters the job."""
    return finish(
        backend,
        Outcome(
            run.id,
            run.lease_token,
            OutcomeKind.DEAD,
            error=error(run.attempt, clock.now),
            dead_reason=reason,
        ),
    )


def make_job_in(backend: Backend, clock: FakeClock, state: JobState, **fields: Any) -> int:
    """A job brought into ``state`` through the interface alone."""
    if state is JobState.SCHEDULED:
        return enqueue(backend, delay=3600.0, **fields)
    job_id = enqueue(backend, **fields)
    if state is JobState.QUEUED:
        return job_id
    if state is JobState.CANCELLED:
        backend.cancel(job_id)
        return job_id
    claimed = backend.claim("setup-worker", None, 1000, LEASE)
    runs = {c.id: c for c in claimed}
    # Put back everything else that happened to be ready.
    backend.finish_many(
        [Outcome(c.id, c.lease_token, OutcomeKind.RELEASED) for c in claimed if c.id != job_id]
    )
    run = runs[job_id]
    if state is JobState.RUNNING:
        return job_id
    if state is JobState.SUCCEEDED:
        succeed(backend, run)
    elif state is JobState.RETRYING:
        fail(backend, run, clock, retry_in=3600.0)
    elif state is JobState.DEAD:
        kill(backend, run, clock)
    else:  # pragma: no cover - a test asked for a state this helper does not make
        raise AssertionError(f"cannot make a job in state {state}")
    assert backend.get(job_id).state is state
    return job_id


def snapshot(backend: Backend) -> dict[int, Job]:
    """Every job in the store, by id."""
    return {job.id: job for job in backend.list_jobs(limit=1_000_000)}


def total(backend: Backend) -> int:
    return sum(sum(states.values()) for states in backend.stats().values())


def enqueue_same_key(
    settings: Settings,
    key: str,
    times: int,
    barrier: multiprocessing.synchronize.Barrier,
    results: Queue[list[int]],
) -> None:
    """Body of a separate process: open the store from its settings alone and enqueue the same
    idempotency key ``times`` times, starting together with the other processes."""
    backend = open_backend(settings)
    try:
        barrier.wait(timeout=60)
        ids = []
        for _ in range(times):
            [result] = backend.enqueue_many([new_job(task="tests.once", idempotency_key=key)])
            ids.append(result.job_id)
        results.put(ids)
    finally:
        backend.close()


def claim_capped(
    settings: Settings,
    capped: str,
    queues: list[str] | None,
    barrier: multiprocessing.synchronize.Barrier,
    results: Queue[tuple[int, list[int]]],
) -> None:
    """Body of a separate process: claim a few jobs at a time from ``queues`` until the queue
    ``capped`` has no job waiting, counting its running jobs (every worker's) each time this
    process holds some of them, then finish them. Reports (jobs of ``capped`` finished here,
    the counts)."""
    backend = open_backend(settings)
    try:
        barrier.wait(timeout=60)
        worker, done, samples = f"claimer-{os.getpid()}", 0, []
        while True:
            runs = backend.claim(worker, queues, 3, LEASE)
            mine = sum(run.queue == capped for run in runs)
            if mine:
                samples.append(backend.stats()[capped].get(JobState.RUNNING, 0))
            elif not backend.stats()[capped].get(JobState.QUEUED, 0) and not runs:
                break
            backend.finish_many(
                [
                    Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED, result_json="null")
                    for r in runs
                ]
            )
            done += mine
        results.put((done, samples))
    finally:
        backend.close()
