"""Contract: operator actions — cancel, requeue from the dead-letter queue, discard."""

from __future__ import annotations

import pytest

from conveyor.backends.base import Backend, Outcome, OutcomeKind
from conveyor.errors import IdempotencyConflict, InvalidTransition, JobNotFound
from conveyor.job import JobState
from tests.contract.helpers import (
    LEASE,
    claim_one,
    enqueue,
    fail,
    finish,
    kill,
    make_job_in,
    snapshot,
    total,
)
from tests.support import FakeClock

# --- cancel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.SCHEDULED, JobState.RETRYING], ids=str)
def test_cancel_a_waiting_job(backend: Backend, clock: FakeClock, state: JobState) -> None:
    job_id = make_job_in(backend, clock, state)
    clock.advance(1.0)
    job = backend.cancel(job_id)
    assert job.id == job_id
    assert job.state is JobState.CANCELLED
    assert job.finished_at == pytest.approx(clock.now)
    assert backend.get(job_id).state is JobState.CANCELLED

    clock.advance(10_000.0)  # even once its time has come, a cancelled job is never claimed
    assert backend.claim("w", None, 10, LEASE) == []
    assert backend.next_due() is None


def test_cancel_a_running_job_asks_its_worker(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend)
    run = claim_one(backend)

    job = backend.cancel(job_id)
    assert job.state is JobState.RUNNING
    assert job.cancel_requested is True
    assert job.lease_token == run.lease_token

    report = backend.extend_leases([run.lease_token], LEASE)
    assert report.cancel_requested == {run.lease_token}
    assert report.extended == {run.lease_token}

    result = finish(backend, Outcome(job_id, run.lease_token, OutcomeKind.CANCELLED))
    assert result.state is JobState.CANCELLED
    assert backend.get(job_id).state is JobState.CANCELLED


def test_cancel_requests_name_the_running_jobs_of_one_worker(backend: Backend) -> None:
    for _ in range(4):
        enqueue(backend)
    runs = {r.id: r for r in backend.claim("w1", None, 3, LEASE)}
    [theirs] = backend.claim("w2", None, 1, LEASE)
    assert backend.cancel_requests("w1") == frozenset()

    asked, finished, untouched = sorted(runs)
    for job_id in (asked, finished, theirs.id):
        backend.cancel(job_id)
    finish(backend, Outcome(finished, runs[finished].lease_token, OutcomeKind.CANCELLED))

    assert backend.cancel_requests("w1") == {runs[asked].lease_token}
    assert backend.cancel_requests("w2") == {theirs.lease_token}
    assert backend.cancel_requests("w3") == frozenset()
    assert backend.get(untouched).cancel_requested is False


def test_a_cancel_request_does_not_outlive_its_run(backend: Backend, clock: FakeClock) -> None:
    """A run that ignores the request and fails is retried; the next run starts afresh."""
    job_id = enqueue(backend, max_attempts=3)
    run = claim_one(backend)
    backend.cancel(job_id)
    assert backend.cancel_requests("worker-1") == {run.lease_token}
    fail(backend, run, clock)
    assert backend.get(job_id).state is JobState.RETRYING
    again = claim_one(backend)
    assert backend.get(job_id).cancel_requested is False
    assert backend.extend_leases([again.lease_token], LEASE).cancel_requested == frozenset()
    assert backend.cancel_requests("worker-1") == frozenset()


def test_cancel_twice_is_harmless(backend: Backend) -> None:
    job_id = enqueue(backend)
    backend.cancel(job_id)
    before = backend.get(job_id)
    assert backend.cancel(job_id).state is JobState.CANCELLED
    assert backend.get(job_id) == before


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.DEAD], ids=str)
def test_cancel_of_a_finished_job_is_refused(
    backend: Backend, clock: FakeClock, state: JobState
) -> None:
    job_id = make_job_in(backend, clock, state)
    before = backend.get(job_id)
    with pytest.raises(InvalidTransition) as caught:
        backend.cancel(job_id)
    assert caught.value.job_id == job_id
    assert caught.value.state == state
    assert str(job_id) in str(caught.value)
    assert backend.get(job_id) == before


def test_cancel_of_an_unknown_job(backend: Backend) -> None:
    with pytest.raises(JobNotFound) as caught:
        backend.cancel(999_999)
    assert caught.value.job_id == 999_999


# --- requeue -----------------------------------------------------------------------------------


def test_requeue_a_dead_job_grants_one_more_attempt(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend, max_attempts=2)
    fail(backend, claim_one(backend), clock, message="one")
    kill(backend, claim_one(backend), clock, reason="attempts exhausted")
    dead = backend.get(job_id)
    assert dead.attempts == 2
    assert len(dead.errors) == 2

    clock.advance(100.0)
    [job] = backend.requeue([job_id])
    assert job.id == job_id
    assert job.state is JobState.QUEUED
    assert job.attempts == 2, "without reset the attempts are kept"
    assert job.max_attempts >= 3, "one more attempt is granted"
    assert job.dead_reason is None
    assert job.finished_at is None
    assert job.run_at == pytest.approx(clock.now)
    assert [e.message for e in job.errors] == ["one", "boom"], "the history is kept"
    assert backend.get(job_id) == job

    run = claim_one(backend)
    assert run.id == job_id
    assert run.attempt == 3
    assert run.attempt <= run.max_attempts


def test_requeue_with_reset_starts_the_attempts_over(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend, max_attempts=2)
    fail(backend, claim_one(backend), clock)
    kill(backend, claim_one(backend), clock)

    [job] = backend.requeue([job_id], reset_attempts=True)
    assert job.state is JobState.QUEUED
    assert job.attempts == 0
    assert job.max_attempts == 2
    assert len(job.errors) == 2, "the history is kept"

    run = claim_one(backend)
    assert run.attempt == 1


def test_requeue_a_job_that_lost_its_worker(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend, max_attempts=1)
    claim_one(backend)
    clock.advance(LEASE + 1.0)
    assert backend.rescue_expired().dead == [job_id]
    [job] = backend.requeue([job_id])
    assert job.state is JobState.QUEUED
    assert claim_one(backend).attempt == 2


def test_requeue_a_cancelled_job(backend: Backend, clock: FakeClock) -> None:
    job_id = make_job_in(backend, clock, JobState.CANCELLED)
    [job] = backend.requeue([job_id])
    assert job.state is JobState.QUEUED
    assert job.finished_at is None
    assert claim_one(backend).id == job_id


def test_requeue_many(backend: Backend, clock: FakeClock) -> None:
    ids = [make_job_in(backend, clock, JobState.DEAD) for _ in range(3)]
    jobs = backend.requeue(ids)
    assert [j.id for j in jobs] == ids
    assert all(j.state is JobState.QUEUED for j in jobs)


@pytest.mark.parametrize(
    "state",
    [
        JobState.QUEUED,
        JobState.SCHEDULED,
        JobState.RUNNING,
        JobState.RETRYING,
        JobState.SUCCEEDED,
    ],
    ids=str,
)
def test_requeue_of_other_states_is_refused(
    backend: Backend, clock: FakeClock, state: JobState
) -> None:
    job_id = make_job_in(backend, clock, state)
    before = backend.get(job_id)
    with pytest.raises(InvalidTransition) as caught:
        backend.requeue([job_id])
    assert caught.value.state == state
    assert backend.get(job_id) == before


def test_requeue_is_all_or_nothing(backend: Backend, clock: FakeClock) -> None:
    dead = make_job_in(backend, clock, JobState.DEAD)
    done = make_job_in(backend, clock, JobState.SUCCEEDED)
    before = snapshot(backend)
    with pytest.raises(InvalidTransition):
        backend.requeue([dead, done])
    assert snapshot(backend) == before
    with pytest.raises(JobNotFound):
        backend.requeue([dead, 999_999])
    assert snapshot(backend) == before


def test_requeue_refuses_to_make_a_second_live_job_with_one_key(
    backend: Backend, clock: FakeClock
) -> None:
    dead = make_job_in(backend, clock, JobState.DEAD, idempotency_key="k")
    live = enqueue(backend, idempotency_key="k")
    before = snapshot(backend)
    with pytest.raises(IdempotencyConflict) as caught:
        backend.requeue([dead])
    assert caught.value.job_id == dead
    assert snapshot(backend) == before
    assert backend.get(live).state is JobState.QUEUED


# --- discard -----------------------------------------------------------------------------------


def test_discard_deletes_dead_jobs(backend: Backend, clock: FakeClock) -> None:
    dead = [make_job_in(backend, clock, JobState.DEAD) for _ in range(2)]
    kept = make_job_in(backend, clock, JobState.DEAD)
    assert backend.discard(dead) == 2
    for job_id in dead:
        with pytest.raises(JobNotFound):
            backend.get(job_id)
    assert backend.get(kept).state is JobState.DEAD
    assert total(backend) == 1


@pytest.mark.parametrize(
    "state",
    [
        JobState.QUEUED,
        JobState.SCHEDULED,
        JobState.RUNNING,
        JobState.RETRYING,
        JobState.SUCCEEDED,
        JobState.CANCELLED,
    ],
    ids=str,
)
def test_discard_deletes_nothing_but_dead_jobs(
    backend: Backend, clock: FakeClock, state: JobState
) -> None:
    dead = make_job_in(backend, clock, JobState.DEAD)
    other = make_job_in(backend, clock, state)
    before = snapshot(backend)
    with pytest.raises(InvalidTransition):
        backend.discard([dead, other])
    assert snapshot(backend) == before


def test_discard_of_an_unknown_job(backend: Backend) -> None:
    with pytest.raises(JobNotFound):
        backend.discard([424_242])
