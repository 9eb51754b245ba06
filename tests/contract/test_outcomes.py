"""Contract: the outcomes of a run — success, retry, dead letter, cancel, release — progress and
checkpoints, and retry budgets."""

from __future__ import annotations

import pytest

from conveyor.backends.base import Backend, Outcome, OutcomeKind
from conveyor.job import JobState
from tests.contract.helpers import (
    LEASE,
    claim_one,
    claim_suspect_one,
    enqueue,
    error,
    fail,
    finish,
    kill,
    succeed,
)
from tests.support import FakeClock, new_job


def test_success_stores_the_result(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend)
    run = claim_one(backend)
    clock.advance(3.0)

    result = succeed(backend, run, '{"total":42,"items":["a","b"],"ok":true}')
    assert result.applied is True
    assert result.state is JobState.SUCCEEDED

    job = backend.get(job_id)
    assert job.state is JobState.SUCCEEDED
    assert job.result == {"total": 42, "items": ["a", "b"], "ok": True}
    assert job.finished_at == pytest.approx(clock.now)
    assert job.lease_token is None
    assert job.lease_expires_at is None
    assert job.errors == []
    assert job.attempts == 1
    assert backend.claim("w", None, 10, LEASE) == []


def test_success_without_a_result(backend: Backend) -> None:
    job_id = enqueue(backend)
    assert succeed(backend, claim_one(backend), None).applied is True
    job = backend.get(job_id)
    assert job.state is JobState.SUCCEEDED
    assert job.result is None


def test_each_failed_attempt_leaves_one_error_and_a_backoff(
    backend: Backend, clock: FakeClock
) -> None:
    job_id = enqueue(backend, max_attempts=3)

    first = claim_one(backend)
    result = fail(backend, first, clock, retry_in=10.0, message="first")
    assert result.applied is True
    assert result.state is JobState.RETRYING
    job = backend.get(job_id)
    assert job.state is JobState.RETRYING
    assert job.run_at == pytest.approx(clock.now + 10.0)
    assert job.lease_token is None
    assert job.finished_at is None
    assert job.attempts == 1

    clock.advance(10.0)
    second = claim_one(backend)
    assert second.attempt == 2
    clock.advance(2.0)
    fail(backend, second, clock, retry_in=25.0, message="second")

    job = backend.get(job_id)
    assert job.run_at == pytest.approx(clock.now + 25.0)
    assert [(e.attempt, e.type, e.message) for e in job.errors] == [
        (1, "ValueError", "first"),
        (2, "ValueError", "second"),
    ]
    assert job.errors[0].at == pytest.approx(clock.now - 12.0)
    assert job.errors[1].at == pytest.approx(clock.now)
    assert "ValueError: second" in job.errors[1].traceback
    assert job.last_error == job.errors[1]


def test_dead_letter_with_reason(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend, max_attempts=1)
    run = claim_one(backend)
    result = kill(backend, run, clock, reason="attempts exhausted (1/1): ValueError: boom")
    assert result.applied is True
    assert result.state is JobState.DEAD

    job = backend.get(job_id)
    assert job.state is JobState.DEAD
    assert job.dead_reason == "attempts exhausted (1/1): ValueError: boom"
    assert len(job.errors) == 1
    assert job.finished_at == pytest.approx(clock.now)
    assert job.lease_token is None
    assert backend.claim("w", None, 10, LEASE) == []


def test_cancelled_outcome(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend)
    run = claim_one(backend)
    backend.cancel(job_id)
    clock.advance(1.0)
    result = finish(backend, Outcome(job_id, run.lease_token, OutcomeKind.CANCELLED))
    assert result.applied is True
    assert result.state is JobState.CANCELLED
    job = backend.get(job_id)
    assert job.state is JobState.CANCELLED
    assert job.finished_at == pytest.approx(clock.now)
    assert job.lease_token is None


def test_release_puts_the_job_back_without_charging_the_attempt(
    backend: Backend, clock: FakeClock
) -> None:
    job_id = enqueue(backend, max_attempts=2)
    fail(backend, claim_one(backend), clock)  # attempt 1 used for real
    run = claim_one(backend)
    assert run.attempt == 2
    assert backend.save_progress(job_id, run.lease_token, None, '{"step":3}') is True

    result = finish(backend, Outcome(job_id, run.lease_token, OutcomeKind.RELEASED))
    assert result.applied is True
    assert result.state is JobState.QUEUED

    job = backend.get(job_id)
    assert job.state is JobState.QUEUED
    assert job.attempts == 1, "a released run gives its attempt back"
    assert job.lease_token is None
    assert job.finished_at is None
    assert len(job.errors) == 1
    assert job.checkpoint == {"step": 3}

    again = claim_one(backend)
    assert again.attempt == 2
    assert again.checkpoint == {"step": 3}


def test_release_can_hand_in_a_checkpoint(backend: Backend) -> None:
    job_id = enqueue(backend)
    run = claim_one(backend)
    finish(backend, Outcome(job_id, run.lease_token, OutcomeKind.RELEASED, checkpoint_json="7"))
    assert claim_one(backend).checkpoint == 7


def test_release_of_a_fresh_claim_leaves_attempts_as_before(backend: Backend) -> None:
    job_id = enqueue(backend)
    before = backend.get(job_id).attempts
    run = claim_one(backend)
    finish(backend, Outcome(job_id, run.lease_token, OutcomeKind.RELEASED))
    assert backend.get(job_id).attempts == before == 0


def test_a_released_run_whose_cancel_was_requested_ends_cancelled(
    backend: Backend, clock: FakeClock
) -> None:
    job_id = enqueue(backend)
    run = claim_one(backend)
    backend.cancel(job_id)
    result = finish(backend, Outcome(job_id, run.lease_token, OutcomeKind.RELEASED))
    assert result.applied is True
    assert result.state is JobState.CANCELLED
    job = backend.get(job_id)
    assert job.state is JobState.CANCELLED
    assert job.finished_at == pytest.approx(clock.now)
    assert job.attempts == 0, "the released attempt is still not charged"
    assert backend.claim("w", None, 10, LEASE) == []


def test_progress_and_checkpoint(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend, max_attempts=3)
    run = claim_one(backend)

    assert backend.save_progress(job_id, run.lease_token, '{"pct":10}', None) is True
    assert backend.get(job_id).progress == {"pct": 10}
    assert backend.get(job_id).checkpoint is None

    assert backend.save_progress(job_id, run.lease_token, None, '{"cursor":"abc"}') is True
    job = backend.get(job_id)
    assert job.progress == {"pct": 10}, "None leaves a field unchanged"
    assert job.checkpoint == {"cursor": "abc"}

    assert backend.save_progress(job_id, run.lease_token, '{"pct":50}', '{"cursor":"def"}')
    fail(backend, run, clock)

    again = claim_one(backend)
    assert again.id == job_id
    assert again.checkpoint == {"cursor": "def"}, "the checkpoint is handed to the next run"


def test_a_retry_outcome_can_carry_a_checkpoint(backend: Backend, clock: FakeClock) -> None:
    job_id = enqueue(backend)
    run = claim_one(backend)
    fail(backend, run, clock, checkpoint_json='{"page":4}')
    assert backend.get(job_id).checkpoint == {"page": 4}
    assert claim_one(backend).checkpoint == {"page": 4}


def test_finish_many_applies_a_batch_in_one_call(backend: Backend, clock: FakeClock) -> None:
    ids = [enqueue(backend) for _ in range(4)]
    runs = {r.id: r for r in backend.claim("w", None, 4, LEASE)}
    results = backend.finish_many(
        [
            Outcome(ids[0], runs[ids[0]].lease_token, OutcomeKind.SUCCEEDED, result_json="0"),
            Outcome(
                ids[1],
                runs[ids[1]].lease_token,
                OutcomeKind.RETRY,
                error=error(1, clock.now),
                retry_in=1.0,
            ),
            Outcome(ids[2], runs[ids[2]].lease_token, OutcomeKind.DEAD, dead_reason="poison"),
            Outcome(ids[3], runs[ids[3]].lease_token, OutcomeKind.RELEASED),
        ]
    )
    assert [(r.job_id, r.applied, r.state) for r in results] == [
        (ids[0], True, JobState.SUCCEEDED),
        (ids[1], True, JobState.RETRYING),
        (ids[2], True, JobState.DEAD),
        (ids[3], True, JobState.QUEUED),
    ]
    assert [backend.get(i).state for i in ids] == [r.state for r in results]
    assert backend.finish_many([]) == []


# --- retry budgets ---------------------------------------------------------------------------


def failing_run(backend: Backend, clock: FakeClock, budget: tuple[str, int, float]) -> Outcome:
    """Enqueue and claim a fresh job; return the RETRY outcome of its failure."""
    job_id = enqueue(backend, task=budget[0], max_attempts=10)
    run = claim_one(backend, queues=["default"])
    assert run.id == job_id
    return Outcome(
        run.id,
        run.lease_token,
        OutcomeKind.RETRY,
        error=error(run.attempt, clock.now),
        retry_in=1000.0,
        retry_budget=budget,
    )


def test_retry_budget_dead_letters_beyond_the_limit_until_the_window_passes(
    backend: Backend, clock: FakeClock
) -> None:
    budget = ("tests.flaky", 2, 60.0)
    first = finish(backend, failing_run(backend, clock, budget))
    clock.advance(10.0)
    second = finish(backend, failing_run(backend, clock, budget))
    assert (first.state, second.state) == (JobState.RETRYING, JobState.RETRYING)

    clock.advance(10.0)
    third_outcome = failing_run(backend, clock, budget)
    third = finish(backend, third_outcome)
    assert third.applied is True
    assert third.state is JobState.DEAD
    job = backend.get(third_outcome.job_id)
    assert job.state is JobState.DEAD
    assert job.dead_reason is not None
    assert job.dead_reason.startswith("retry budget exhausted")
    assert len(job.errors) == 1, "the failure is still recorded"
    assert job.finished_at is not None

    # Other tasks have budgets of their own.
    other = finish(backend, failing_run(backend, clock, ("tests.other", 2, 60.0)))
    assert other.state is JobState.RETRYING

    # Once the window has passed, retries are allowed again.
    clock.advance(61.0)
    fourth = finish(backend, failing_run(backend, clock, budget))
    assert fourth.state is JobState.RETRYING
    fifth = finish(backend, failing_run(backend, clock, budget))
    assert fifth.state is JobState.RETRYING
    sixth = finish(backend, failing_run(backend, clock, budget))
    assert sixth.state is JobState.DEAD


def test_retry_budget_within_one_batch(backend: Backend, clock: FakeClock) -> None:
    budget = ("tests.flaky", 1, 60.0)
    backend.enqueue_many([new_job(task="tests.flaky") for _ in range(3)])
    runs = backend.claim("w", None, 3, LEASE)
    results = backend.finish_many(
        [
            Outcome(
                r.id,
                r.lease_token,
                OutcomeKind.RETRY,
                error=error(1, clock.now),
                retry_budget=budget,
            )
            for r in runs
        ]
    )
    assert [r.state for r in results] == [JobState.RETRYING, JobState.DEAD, JobState.DEAD]


def test_a_stale_retry_does_not_spend_the_budget(backend: Backend, clock: FakeClock) -> None:
    budget = ("tests.flaky", 1, 60.0)
    stale = failing_run(backend, clock, budget)
    clock.advance(LEASE + 1.0)
    backend.rescue_expired()
    assert finish(backend, stale).applied is False

    # The budget's single retry is still there for a real failure.
    job_id = stale.job_id
    run = claim_suspect_one(backend)
    assert run.id == job_id
    outcome = Outcome(
        run.id, run.lease_token, OutcomeKind.RETRY, error=error(2, clock.now), retry_budget=budget
    )
    assert finish(backend, outcome).state is JobState.RETRYING


def test_a_zero_budget_dead_letters_the_first_retry(backend: Backend, clock: FakeClock) -> None:
    result = finish(backend, failing_run(backend, clock, ("tests.never", 0, 60.0)))
    assert result.state is JobState.DEAD
