"""An escalated failure: the original ends dead naming its replacement, which is enqueued with
its arguments in the same transaction."""

from __future__ import annotations

from conveyor.backends.base import Backend, Escalate, Outcome, OutcomeKind
from conveyor.job import JobState
from tests.contract.helpers import LEASE, claim_one, enqueue, error, finish, snapshot
from tests.support import FakeClock

TO_CODEX = Escalate("codex", "gpu", 7, 4, 60.0, "failure")


def die_escalating(backend: Backend, clock: FakeClock, target: Escalate = TO_CODEX) -> None:
    run = claim_one(backend)
    finish(
        backend,
        Outcome(
            run.id,
            run.lease_token,
            OutcomeKind.DEAD,
            error=error(run.attempt, clock.now),
            dead_reason="attempts exhausted (1/1): ValueError: boom",
            escalate=target,
        ),
    )


def test_the_escalated_job_takes_the_arguments_and_links_both_ways(
    backend: Backend, clock: FakeClock
) -> None:
    original = enqueue(backend, task="aider", args_json='[1, "x"]', kwargs_json='{"k": 2}')
    die_escalating(backend, clock)
    jobs = snapshot(backend)
    [new] = [j for j in jobs.values() if j.id != original]
    assert (new.task, new.queue, new.priority, new.max_attempts, new.timeout) == (
        "codex",
        "gpu",
        7,
        4,
        60.0,
    )
    assert (new.args, new.kwargs, new.state) == ([1, "x"], {"k": 2}, JobState.QUEUED)
    assert new.escalated_from == original
    old = jobs[original]
    assert old.state is JobState.DEAD and old.escalated_to == new.id
    assert old.dead_reason == (
        f"escalated to job {new.id} (codex, on failure): attempts exhausted (1/1): ValueError: boom"
    )
    assert [r.id for r in backend.claim("w", ["gpu"], 10, LEASE)] == [new.id]


def test_a_stale_run_escalates_nothing(backend: Backend, clock: FakeClock) -> None:
    enqueue(backend, task="aider", max_attempts=2)
    stale = claim_one(backend)
    clock.advance(LEASE + 1)
    backend.rescue_expired()
    result = finish(
        backend,
        Outcome(stale.id, stale.lease_token, OutcomeKind.DEAD, escalate=TO_CODEX),
    )
    assert not result.applied
    assert len(snapshot(backend)) == 1


def test_a_task_escalates_to_itself_once(backend: Backend, clock: FakeClock) -> None:
    same = Escalate("tests.noop", "slow", 0, 3, None, "failure")
    first = enqueue(backend)
    die_escalating(backend, clock, same)
    copy = backend.get(first).escalated_to
    assert copy is not None and backend.get(copy).queue == "slow"
    die_escalating(backend, clock, same)
    job = backend.get(copy)
    assert job.state is JobState.DEAD and job.escalated_to is None
    assert len(snapshot(backend)) == 2
