"""Contract: leases, their extension, rescue of expired runs, and fencing of stale writes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conveyor.backends.base import Backend, ClaimedJob, Outcome, OutcomeKind
from conveyor.job import JobState
from tests.contract.helpers import (
    LEASE,
    claim_one,
    claim_suspect_one,
    enqueue,
    error,
    fail,
    finish,
    snapshot,
    succeed,
)
from tests.support import FakeClock


def expire_and_rescue(backend: Backend, clock: FakeClock) -> None:
    clock.advance(LEASE + 1.0)
    backend.rescue_expired()


# --- extension ---------------------------------------------------------------------------------


def test_extend_leases_pushes_the_expiry(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend)
    run = claim_one(backend, lease=30.0)
    clock.advance(20.0)

    report = backend.extend_leases([run.lease_token], 30.0)
    assert report.extended == {run.lease_token}
    assert report.lost == frozenset()
    assert report.cancel_requested == frozenset()
    assert backend.get(job_id).lease_expires_at == pytest.approx(clock.now + 30.0)

    clock.advance(20.0)  # 40 s after the claim: past the first lease, within the extended one
    assert backend.rescue_expired().requeued == []
    assert backend.get(job_id).state is JobState.RUNNING

    clock.advance(11.0)
    assert backend.rescue_expired().requeued == [job_id]


def test_extend_leases_handles_many_runs_and_reports_the_lost_ones(
    backend: Backend, clock: FakeClock
) -> None:
    for _ in range(3):
        enqueue(backend)
    runs = backend.claim("w", None, 3, LEASE)
    finished = runs[0]
    succeed(backend, finished)

    tokens = [r.lease_token for r in runs] + ["never-issued"]
    report = backend.extend_leases(tokens, 60.0)
    assert report.extended == {runs[1].lease_token, runs[2].lease_token}
    assert report.lost == {finished.lease_token, "never-issued"}
    assert backend.extend_leases([], 60.0).extended == frozenset()


def test_extend_leases_reports_cancel_requests(backend: Backend) -> None:
    a, b = enqueue(backend), enqueue(backend)
    runs = {r.id: r for r in backend.claim("w", None, 2, LEASE)}
    backend.cancel(a)

    report = backend.extend_leases([runs[a].lease_token, runs[b].lease_token], LEASE)
    assert report.cancel_requested == {runs[a].lease_token}
    assert report.extended == {runs[a].lease_token, runs[b].lease_token}
    assert report.lost == frozenset()


# --- rescue ------------------------------------------------------------------------------------


def test_rescue_leaves_live_leases_alone(backend: Backend, clock: FakeClock) -> None:
    enqueue(backend)
    run = claim_one(backend)
    clock.advance(LEASE - 1.0)
    report = backend.rescue_expired()
    assert (report.requeued, report.dead, report.cancelled) == ([], [], [])
    assert backend.extend_leases([run.lease_token], LEASE).extended == {run.lease_token}


def test_an_expired_lease_is_rescued_as_a_lost_run_not_an_error(
    backend: Backend, clock: FakeClock
) -> None:
    job_id = enqueue(backend, max_attempts=3)
    run = claim_one(backend)
    clock.advance(LEASE + 1.0)

    report = backend.rescue_expired()
    assert report.requeued == [job_id]
    assert report.dead == []
    assert report.cancelled == []

    job = backend.get(job_id)
    assert job.state is JobState.RETRYING
    assert job.lost_runs == 1
    assert job.attempts == 1
    assert job.errors == [], "a lost run is counted apart from ordinary errors"
    assert job.lease_token is None
    assert job.finished_at is None

    # It ran alone, so the lost run cost it its attempt; it is a suspect now, claimable at
    # once by a worker holding nothing else, as a new run with a new token.
    assert job.suspect is True
    assert backend.claim("w", None, 10, LEASE) == [], "a suspect is not claimed beside others"
    again = claim_suspect_one(backend)
    assert again.id == job_id
    assert again.attempt == 2
    assert again.lease_token != run.lease_token
    assert backend.rescue_expired().requeued == []


def test_rescue_reports_each_job_once(backend: Backend, clock: FakeClock) -> None:
    ids = [enqueue(backend) for _ in range(3)]
    backend.claim("w", None, 3, LEASE)
    clock.advance(LEASE + 1.0)
    assert backend.rescue_expired().requeued == ids
    assert backend.rescue_expired().requeued == []


def test_a_job_that_keeps_losing_its_worker_ends_dead(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend, max_attempts=2)
    claim_one(backend)
    expire_and_rescue(backend, clock)
    claim_suspect_one(backend)
    clock.advance(LEASE + 1.0)

    report = backend.rescue_expired()
    assert report.dead == [job_id]
    assert report.requeued == []

    job = backend.get(job_id)
    assert job.state is JobState.DEAD
    assert job.lost_runs == 2
    assert job.attempts == 2
    assert job.errors == []
    assert job.finished_at is not None
    assert job.dead_reason is not None
    assert "lease" in job.dead_reason.lower()
    assert backend.claim("w", None, 10, LEASE) == []


def test_lost_runs_and_errors_share_the_attempt_budget(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend, max_attempts=2)
    fail(backend, claim_one(backend), clock)
    claim_one(backend)
    clock.advance(LEASE + 1.0)
    assert backend.rescue_expired().dead == [job_id]
    job = backend.get(job_id)
    assert job.state is JobState.DEAD
    assert len(job.errors) == 1
    assert job.lost_runs == 1


def test_a_cancel_requested_job_whose_lease_expires_ends_cancelled(
    backend: Backend, clock: FakeClock
) -> None:
    job_id = enqueue(backend, max_attempts=5)
    claim_one(backend)
    assert backend.cancel(job_id).cancel_requested is True
    clock.advance(LEASE + 1.0)

    report = backend.rescue_expired()
    assert report.cancelled == [job_id]
    assert report.requeued == []
    job = backend.get(job_id)
    assert job.state is JobState.CANCELLED
    assert job.lease_token is None
    assert job.finished_at is not None
    assert backend.claim("w", None, 10, LEASE) == []


# --- fencing -----------------------------------------------------------------------------------


def stale_writes_change_nothing(backend: Backend, clock: FakeClock, stale: ClaimedJob) -> None:
    """Every write of ``stale`` (a run that is no longer current) is refused and changes
    nothing at all."""
    before = snapshot(backend)
    token = stale.lease_token
    outcomes = [
        Outcome(stale.id, token, OutcomeKind.SUCCEEDED, result_json='"stale"'),
        Outcome(
            stale.id,
            token,
            OutcomeKind.RETRY,
            error=error(stale.attempt, clock.now, "stale"),
            retry_in=5.0,
            checkpoint_json='"stale"',
        ),
        Outcome(stale.id, token, OutcomeKind.DEAD, dead_reason="stale"),
        Outcome(stale.id, token, OutcomeKind.CANCELLED),
        Outcome(stale.id, token, OutcomeKind.RELEASED, checkpoint_json='"stale"'),
        Outcome(
            stale.id,
            token,
            OutcomeKind.RETRY,
            error=error(stale.attempt, clock.now, "stale"),
            retry_budget=("tests.noop", 0, 60.0),
        ),
    ]
    for outcome in outcomes:
        result = finish(backend, outcome)
        assert result.applied is False, outcome.kind
        assert result.state is None
    # ... also when they come in one batch.
    batch = backend.finish_many(outcomes)
    assert [(r.job_id, r.applied) for r in batch] == [(stale.id, False)] * len(outcomes)
    assert backend.save_progress(stale.id, token, '"stale"', '"stale"') is False
    report = backend.extend_leases([token], 1000.0)
    assert report.lost == {token}
    assert report.extended == frozenset()
    assert snapshot(backend) == before


def test_a_finished_run_cannot_write_again(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend)
    run = claim_one(backend)
    assert succeed(backend, run, '"first"').applied is True
    stale_writes_change_nothing(backend, clock, run)
    assert backend.get(job_id).result == "first"


def forged_writes_change_nothing(backend: Backend, clock: FakeClock, forged: ClaimedJob) -> None:
    """Like stale_writes_change_nothing, for a token that is valid for another job: every
    job-addressed write is refused (extend_leases is keyed by token alone, so it is skipped)."""
    before = snapshot(backend)
    for kind in OutcomeKind:
        outcome = Outcome(
            forged.id,
            forged.lease_token,
            kind,
            result_json="1",
            error=error(1, clock.now),
            dead_reason="forged",
        )
        assert finish(backend, outcome).applied is False
    assert backend.save_progress(forged.id, forged.lease_token, "1", "1") is False
    assert snapshot(backend) == before


def test_a_foreign_token_changes_nothing(backend: Backend, clock: FakeClock) -> None:
    a, b = enqueue(backend), enqueue(backend)
    runs = {r.id: r for r in backend.claim("w", None, 2, LEASE)}
    # b's token used for a: a token names one run of one job.
    forged = replace(runs[a], lease_token=runs[b].lease_token)
    forged_writes_change_nothing(backend, clock, forged)
    assert backend.get(a).state is JobState.RUNNING
    assert backend.get(b).state is JobState.RUNNING
    made_up = replace(runs[a], lease_token="0" * 32)
    stale_writes_change_nothing(backend, clock, made_up)


def test_the_new_run_wins_over_the_old_worker(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend, max_attempts=5)
    old = claim_one(backend, worker="old-worker")
    assert backend.save_progress(job_id, old.lease_token, '{"done":10}', '{"page":1}') is True

    # The old worker stalls; its lease expires, the job is rescued and re-claimed elsewhere.
    expire_and_rescue(backend, clock)
    new = claim_suspect_one(backend, worker="new-worker")
    assert new.id == job_id
    assert new.lease_token != old.lease_token
    assert new.checkpoint == {"page": 1}

    # Everything the old worker does now is refused and changes nothing.
    stale_writes_change_nothing(backend, clock, old)
    job = backend.get(job_id)
    assert job.state is JobState.RUNNING
    assert job.worker_id == "new-worker"
    assert job.lease_token == new.lease_token
    assert job.progress == {"done": 10}
    assert job.checkpoint == {"page": 1}

    # The new run's writes are applied and its outcome wins.
    assert backend.save_progress(job_id, new.lease_token, '{"done":20}', None) is True
    assert backend.extend_leases([new.lease_token], LEASE).extended == {new.lease_token}
    assert succeed(backend, new, '"new"').applied is True
    stale_writes_change_nothing(backend, clock, old)

    job = backend.get(job_id)
    assert job.state is JobState.SUCCEEDED
    assert job.result == "new"
    assert job.progress == {"done": 20}
    assert job.errors == []


def test_an_old_failure_after_rescue_does_not_touch_the_new_run(
    backend: Backend, clock: FakeClock
) -> None:
    job_id = enqueue(backend, max_attempts=5)
    old = claim_one(backend)
    expire_and_rescue(backend, clock)
    new = claim_suspect_one(backend)

    assert fail(backend, old, clock, message="old failure").applied is False
    job = backend.get(job_id)
    assert job.errors == []
    assert job.state is JobState.RUNNING

    assert fail(backend, new, clock, retry_in=5.0, message="new failure").applied is True
    job = backend.get(job_id)
    assert [e.message for e in job.errors] == ["new failure"]
    assert job.state is JobState.RETRYING


def test_a_stale_token_is_refused_while_the_job_waits_for_its_next_run(
    backend: Backend, clock: FakeClock
) -> None:
    enqueue(backend, max_attempts=5)
    old = claim_one(backend)
    expire_and_rescue(backend, clock)  # retrying, no run holds it
    stale_writes_change_nothing(backend, clock, old)


def test_one_batch_of_outcomes_is_fenced_per_outcome(backend: Backend, clock: FakeClock) -> None:
    a, b = enqueue(backend), enqueue(backend)
    runs = {r.id: r for r in backend.claim("w", None, 2, LEASE)}
    results = backend.finish_many(
        [
            Outcome(a, runs[a].lease_token, OutcomeKind.SUCCEEDED, result_json="1"),
            Outcome(b, "not-a-token", OutcomeKind.SUCCEEDED, result_json="2"),
            Outcome(a, runs[a].lease_token, OutcomeKind.SUCCEEDED, result_json="3"),
        ]
    )
    assert [(r.job_id, r.applied, r.state) for r in results] == [
        (a, True, JobState.SUCCEEDED),
        (b, False, None),
        (a, False, None),
    ]
    assert backend.get(a).result == 1
    assert backend.get(b).state is JobState.RUNNING


def test_a_mixed_batch_reports_each_outcome_in_order(backend: Backend, clock: FakeClock) -> None:
    ids = [enqueue(backend, max_attempts=5) for _ in range(6)]
    old = {r.id: r for r in backend.claim("old", None, 6, LEASE)}
    expire_and_rescue(backend, clock)
    # Suspects now, each claimed by a worker of its own.
    again = [claim_suspect_one(backend, worker=f"new-{n}") for n in range(6)]
    assert [r.id for r in again] == ids
    new = {r.id: r for r in again[:3]}
    second = {r.id: r for r in again[3:]}

    def success(run: ClaimedJob, value: int) -> Outcome:
        return Outcome(run.id, run.lease_token, OutcomeKind.SUCCEEDED, result_json=str(value))

    batch = [
        success(old[ids[0]], 100),  # stale: superseded by a newer run
        success(new[ids[1]], 1),
        success(second[ids[3]], 3),
        success(old[ids[4]], 104),  # stale
        success(new[ids[0]], 0),
        Outcome(ids[2], new[ids[2]].lease_token, OutcomeKind.RELEASED),
        success(second[ids[5]], 5),
        success(new[ids[1]], 101),  # the same run twice: only the first counts
    ]
    results = backend.finish_many(batch)
    assert [(r.job_id, r.applied) for r in results] == [
        (ids[0], False),
        (ids[1], True),
        (ids[3], True),
        (ids[4], False),
        (ids[0], True),
        (ids[2], True),
        (ids[5], True),
        (ids[1], False),
    ]
    assert [backend.get(i).result for i in ids] == [0, 1, None, 3, None, 5]
    assert [backend.get(i).state for i in ids] == [
        JobState.SUCCEEDED,
        JobState.SUCCEEDED,
        JobState.RETRYING,  # a released suspect waits as a suspect again
        JobState.SUCCEEDED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]


def test_a_sweeping_worker_does_not_rescue_its_own_runs(backend: Backend, clock: FakeClock) -> None:
    """A worker that outlived a database outage longer than its lease still holds its runs
    (their outcomes wait in its completer): its own sweep leaves them, anyone else's takes them."""
    enqueue(backend)
    run = claim_one(backend, worker="w1")
    clock.advance(LEASE + 1.0)

    assert backend.rescue_expired(exclude_worker="w1").requeued == []
    assert backend.get(run.id).state is JobState.RUNNING
    assert backend.rescue_expired(exclude_worker="w2").requeued == [run.id]
    assert backend.get(run.id).state is JobState.RETRYING
