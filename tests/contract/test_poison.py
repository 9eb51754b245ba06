"""Contract: poison isolation. A run lost beside other runs of its worker costs no attempt and
makes the job a suspect; a suspect is claimed alone, by a worker holding nothing else; only a run
lost while alone counts toward "this job kills its worker"."""

from __future__ import annotations

from conveyor.backends.base import Backend, Outcome, OutcomeKind
from conveyor.job import JobState
from conveyor.worker_info import WorkerRegistration
from tests.contract.helpers import (
    LEASE,
    claim_one,
    claim_suspect_one,
    enqueue,
    fail,
    finish,
    succeed,
)
from tests.support import FakeClock


def expire_and_rescue(backend: Backend, clock: FakeClock) -> None:
    clock.advance(LEASE + 1.0)
    backend.rescue_expired()


def kill(backend: Backend, worker: str) -> None:
    """``worker``'s process is gone: declared dead at once, its runs rescued."""
    assert backend.reap_dead_workers(known_dead=[worker]).workers == [worker]


def register(backend: Backend, worker: str) -> None:
    backend.register_worker(
        WorkerRegistration(
            id=worker,
            host="host",
            pid=1,
            machine=None,
            queues=None,
            concurrency=10,
            beat_interval=1.0,
            dead_after=5.0,
        )
    )


def test_the_neighbours_of_a_death_keep_their_attempts_and_become_suspects(
    backend: Backend, clock: FakeClock
) -> None:
    ids = [enqueue(backend, max_attempts=1) for _ in range(4)]
    register(backend, "w1")
    assert len(backend.claim("w1", None, 4, LEASE)) == 4
    kill(backend, "w1")
    for job in map(backend.get, ids):
        assert (job.state, job.attempts, job.lost_runs, job.suspect) == (
            JobState.RETRYING,
            0,
            1,
            True,
        ), "not one of them ran out of attempts"


def test_the_same_holds_for_expired_leases(backend: Backend, clock: FakeClock) -> None:
    ids = [enqueue(backend, max_attempts=1) for _ in range(3)]
    backend.claim("w1", None, 3, LEASE)
    expire_and_rescue(backend, clock)
    assert [(j.state, j.attempts, j.suspect) for j in map(backend.get, ids)] == [
        (JobState.RETRYING, 0, True)
    ] * 3


def test_a_suspect_is_claimed_alone_and_only_by_an_empty_worker(
    backend: Backend, clock: FakeClock
) -> None:
    suspects = [enqueue(backend, priority=1) for _ in range(2)]
    backend.claim("w1", None, 2, LEASE)
    expire_and_rescue(backend, clock)
    normal = enqueue(backend)

    # Promotion leaves suspects waiting, the ordinary claim never takes one, and next_due
    # does not point at them (idle workers would spin on a due time in the past).
    assert [c.id for c in backend.claim("w2", None, 10, LEASE)] == [normal]
    assert backend.next_due() is None
    # w2 holds a run: no suspect for it.
    assert backend.claim_suspect("w2", None, LEASE) is None
    # An empty worker takes one suspect, the best one, and only it.
    first = claim_suspect_one(backend, worker="w3")
    assert (first.id, first.attempt) == (suspects[0], 1)
    assert backend.get(first.id).state is JobState.RUNNING
    assert backend.claim_suspect("w3", None, LEASE) is None, "w3 holds a run now"
    second = claim_suspect_one(backend, worker="w4")
    assert second.id == suspects[1]
    assert backend.claim_suspect("w5", None, LEASE) is None, "no suspect left"


def test_a_suspect_is_claimed_from_the_queues_asked_for_within_their_caps(
    backend: Backend, clock: FakeClock
) -> None:
    backend.set_concurrency_limit("capped", 1)
    job = enqueue(backend, queue="capped")
    backend.claim("w1", ["capped"], 1, LEASE)
    expire_and_rescue(backend, clock)
    assert backend.claim_suspect("w2", ["other"], LEASE) is None
    blocker = enqueue(backend, queue="capped")
    backend.claim("w3", ["capped"], 1, LEASE)
    assert backend.get(blocker).state is JobState.RUNNING
    assert backend.claim_suspect("w2", ["capped"], LEASE) is None, "the cap is full"
    assert backend.claim_suspect("w2", None, LEASE) is None, "the cap is full"
    backend.set_concurrency_limit("capped", 2)
    assert claim_suspect_one(backend, worker="w2", queues=["capped"]).id == job


def test_only_deaths_while_alone_count_and_they_end_the_job_dead(
    backend: Backend, clock: FakeClock
) -> None:
    """The issue's scenario, one crash at a time: a poison job claimed with neighbours."""
    poison = enqueue(backend, max_attempts=3)
    neighbours = [enqueue(backend, max_attempts=3) for _ in range(4)]
    register(backend, "w0")
    backend.claim("w0", None, 5, LEASE)
    kill(backend, "w0")
    for crash in range(1, 4):
        worker = f"w{crash}"
        register(backend, worker)
        run = claim_suspect_one(backend, worker=worker)
        assert (run.id, run.attempt) == (poison, crash)
        kill(backend, worker)
    # Each neighbour alone, once, without a lost attempt.
    for n, job_id in enumerate(neighbours):
        run = claim_suspect_one(backend, worker=f"n{n}")
        assert (run.id, run.attempt) == (job_id, 1)
        assert succeed(backend, run).applied
    job = backend.get(poison)
    assert (job.state, job.attempts, job.lost_runs) == (JobState.DEAD, 3, 4)
    assert job.dead_reason is not None
    assert "alone" in job.dead_reason and "worker died during run 3" in job.dead_reason
    for job_id in neighbours:
        done = backend.get(job_id)
        assert (done.state, done.attempts, done.lost_runs) == (JobState.SUCCEEDED, 1, 1)


def test_a_job_alone_in_its_worker_is_charged_at_its_first_death(
    backend: Backend, clock: FakeClock
) -> None:
    job_id = enqueue(backend, max_attempts=1)
    register(backend, "w1")
    claim_one(backend, worker="w1")
    kill(backend, "w1")
    job = backend.get(job_id)
    assert (job.state, job.attempts, job.suspect) == (JobState.DEAD, 1, False)


def test_a_suspect_that_returns_an_error_is_no_longer_one(
    backend: Backend, clock: FakeClock
) -> None:
    job_id = enqueue(backend, max_attempts=5)
    backend.claim("w1", None, 1, LEASE)
    enqueue(backend)
    backend.claim("w1", None, 1, LEASE)
    expire_and_rescue(backend, clock)
    run = claim_suspect_one(backend, worker="w2")
    assert run.id == job_id
    assert fail(backend, run, clock).state is JobState.RETRYING
    job = backend.get(job_id)
    assert (job.attempts, job.suspect) == (1, False)
    # An ordinary retry now: promoted and claimed beside others.
    assert job_id in [c.id for c in backend.claim("w3", None, 10, LEASE)]


def test_a_released_suspect_waits_as_a_suspect_again(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend)
    backend.claim("w1", None, 1, LEASE)
    expire_and_rescue(backend, clock)
    run = claim_suspect_one(backend, worker="w2")
    released = finish(backend, Outcome(run.id, run.lease_token, OutcomeKind.RELEASED))
    assert released.state is JobState.RETRYING
    job = backend.get(job_id)
    assert (job.state, job.suspect, job.attempts) == (JobState.RETRYING, True, 1)
    assert backend.claim("w3", None, 10, LEASE) == []
    assert claim_suspect_one(backend, worker="w3").id == job_id


def test_a_suspect_can_be_cancelled_while_it_waits(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend)
    backend.claim("w1", None, 1, LEASE)
    expire_and_rescue(backend, clock)
    assert backend.cancel(job_id).state is JobState.CANCELLED
    assert backend.claim_suspect("w2", None, LEASE) is None


def test_suspect_waiting_tells_a_busy_worker_whether_claim_suspect_would_find_one(
    backend: Backend, clock: FakeClock
) -> None:
    """A busy worker asks it about once a second, to decide whether to make room (drain)."""
    assert not backend.suspect_waiting(None)
    backend.set_concurrency_limit("capped", 1)
    job = enqueue(backend, queue="capped")
    backend.claim("w1", ["capped"], 1, LEASE)
    assert not backend.suspect_waiting(None), "a running job is no suspect"
    expire_and_rescue(backend, clock)
    assert backend.suspect_waiting(None)
    assert backend.suspect_waiting(["other", "capped"])
    assert not backend.suspect_waiting(["other"])
    # It asks on behalf of a worker that holds runs: those do not hide the suspect.
    enqueue(backend, queue="other")
    backend.claim("w2", ["other"], 1, LEASE)
    assert backend.suspect_waiting(["capped"])
    blocker = enqueue(backend, queue="capped")
    backend.claim("w3", ["capped"], 1, LEASE)
    assert backend.get(blocker).state is JobState.RUNNING
    assert not backend.suspect_waiting(["capped"]), "the cap is full: nothing to make room for"
    backend.set_concurrency_limit("capped", 2)
    assert backend.suspect_waiting(["capped"])
    assert claim_suspect_one(backend, worker="w4", queues=["capped"]).id == job
    assert not backend.suspect_waiting(None), "the suspect runs now"
