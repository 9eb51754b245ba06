"""Dependencies (conveyor/workflows/rules.py) as every engine carries them out: a child waits
in 'blocked' until its parents end, and is settled in the transaction of the last parent's end."""

from __future__ import annotations

import pytest

from conveyor.backends.base import Backend, Outcome, OutcomeKind
from conveyor.errors import DependencyCycle, UnknownParent
from conveyor.job import JobState
from tests.contract.helpers import (
    LEASE,
    claim_one,
    enqueue,
    kill,
    make_job_in,
    snapshot,
    total,
)
from tests.support import FakeClock, new_job


def child_of(backend: Backend, *parents: int, **fields: object) -> int:
    return enqueue(backend, depends_on=tuple(parents), **fields)


def run_to_success(backend: Backend, job_id: int) -> None:
    runs = backend.claim("w", None, 1000, LEASE)
    ours = [r for r in runs if r.id == job_id]
    assert ours, f"job {job_id} was not ready"
    backend.finish_many(
        [
            Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED, result_json=f'{{"of": {r.id}}}')
            if r.id == job_id
            else Outcome(r.id, r.lease_token, OutcomeKind.RELEASED)
            for r in runs
        ]
    )


def state(backend: Backend, job_id: int) -> JobState:
    return backend.get(job_id).state


def test_a_child_waits_blocked_and_is_queued_by_the_last_parents_success(
    backend: Backend,
) -> None:
    a, b = enqueue(backend), enqueue(backend)
    child = child_of(backend, a, b)
    assert state(backend, child) is JobState.BLOCKED
    assert backend.get(child).pending_parents == 2
    run_to_success(backend, a)
    assert state(backend, child) is JobState.BLOCKED
    assert backend.get(child).pending_parents == 1
    run_to_success(backend, b)
    assert state(backend, child) is JobState.QUEUED
    claimed = backend.claim("w", None, 10, LEASE)
    assert [r.id for r in claimed] == [child]


def test_blocked_jobs_are_never_claimed(backend: Backend) -> None:
    parent = enqueue(backend)
    child_of(backend, parent)
    assert [r.id for r in backend.claim("w", None, 10, LEASE)] == [parent]
    assert backend.claim("w", None, 10, LEASE) == []


def test_a_child_with_a_later_run_at_is_scheduled_when_unblocked(
    backend: Backend, clock: FakeClock
) -> None:
    parent = enqueue(backend)
    child = child_of(backend, parent, run_at=clock.now + 3600)
    run_to_success(backend, parent)
    assert state(backend, child) is JobState.SCHEDULED


def test_depending_on_a_succeeded_parent_queues_at_once(backend: Backend, clock: FakeClock) -> None:
    parent = make_job_in(backend, clock, JobState.SUCCEEDED)
    child = child_of(backend, parent)
    assert state(backend, child) is JobState.QUEUED


def test_unknown_parent_is_refused_and_nothing_is_written(backend: Backend) -> None:
    parent = enqueue(backend)
    before = total(backend)
    with pytest.raises(UnknownParent) as raised:
        backend.enqueue_many([new_job(), new_job(depends_on=(parent, 999_999))])
    assert raised.value.job_ids == [999_999]
    assert total(backend) == before
    assert backend.dependencies(parent).children == []


def test_parents_in_the_same_batch_by_position(backend: Backend) -> None:
    results = backend.enqueue_many(
        [new_job(depends_on_batch=(1,)), new_job(), new_job(depends_on_batch=(0, 1))]
    )
    first, second, third = (r.job_id for r in results)
    assert [r.state for r in results] == [JobState.BLOCKED, JobState.QUEUED, JobState.BLOCKED]
    deps = backend.dependencies(third)
    assert [p[0] for p in deps.parents] == sorted([first, second])
    run_to_success(backend, second)
    assert state(backend, first) is JobState.QUEUED
    assert state(backend, third) is JobState.BLOCKED
    run_to_success(backend, first)
    assert state(backend, third) is JobState.QUEUED


def test_a_cycle_in_a_batch_is_refused_before_any_write(backend: Backend) -> None:
    with pytest.raises(DependencyCycle):
        backend.enqueue_many([new_job(depends_on_batch=(1,)), new_job(depends_on_batch=(0,))])
    assert total(backend) == 0


@pytest.mark.parametrize("end", [JobState.DEAD, JobState.CANCELLED])
def test_cancel_policy_cancels_the_child_and_its_descendants(
    backend: Backend, clock: FakeClock, end: JobState
) -> None:
    parent = enqueue(backend)
    child = child_of(backend, parent)
    grandchild = child_of(backend, child)
    other = enqueue(backend)
    cousin = child_of(backend, other, child)
    if end is JobState.DEAD:
        kill(backend, claim_one(backend), clock)
    else:
        backend.cancel(parent)
    jobs = snapshot(backend)
    assert jobs[child].state is JobState.CANCELLED
    assert jobs[child].dead_reason == f"parent job {parent} ended {end.value}"
    assert jobs[child].stopped_by == parent
    assert jobs[grandchild].state is JobState.CANCELLED
    assert jobs[grandchild].dead_reason == f"parent job {child} ended cancelled"
    assert jobs[cousin].state is JobState.CANCELLED
    assert jobs[other].state is JobState.QUEUED
    assert all(jobs[j].finished_at is not None for j in (child, grandchild, cousin))


def test_dead_policy_dead_letters_the_child(backend: Backend, clock: FakeClock) -> None:
    parent = enqueue(backend)
    child = child_of(backend, parent, on_parent_failure="dead")
    kill(backend, claim_one(backend), clock)
    job = backend.get(child)
    assert job.state is JobState.DEAD
    assert job.dead_reason == f"parent job {parent} ended dead"
    assert [j.id for j in backend.list_jobs(states=[JobState.DEAD])] == [child, parent]


def test_run_policy_runs_the_child_once_every_parent_ended(
    backend: Backend, clock: FakeClock
) -> None:
    failing, passing = enqueue(backend), enqueue(backend)
    child = child_of(backend, failing, passing, on_parent_failure="run")
    kill(backend, claim_one(backend), clock)
    assert state(backend, child) is JobState.BLOCKED
    run_to_success(backend, passing)
    assert state(backend, child) is JobState.QUEUED
    parents = {p: (s, r) for p, s, r in backend.dependencies(child).parents}
    assert parents == {
        failing: (JobState.DEAD, None),
        passing: (JobState.SUCCEEDED, {"of": passing}),
    }


def test_a_child_of_a_failed_parent_ends_at_enqueue_by_its_policy(
    backend: Backend, clock: FakeClock
) -> None:
    parent = make_job_in(backend, clock, JobState.DEAD)
    cancelled = child_of(backend, parent)
    dead = child_of(backend, parent, on_parent_failure="dead")
    runs = child_of(backend, parent, on_parent_failure="run")
    assert state(backend, cancelled) is JobState.CANCELLED
    assert state(backend, dead) is JobState.DEAD
    assert state(backend, runs) is JobState.QUEUED


def test_rescue_that_dead_letters_a_parent_settles_its_children(
    backend: Backend, clock: FakeClock
) -> None:
    parent = enqueue(backend, max_attempts=1)
    child = child_of(backend, parent)
    claim_one(backend)
    clock.advance(LEASE + 1)
    report = backend.rescue_expired()
    assert report.dead == [parent]
    assert state(backend, child) is JobState.CANCELLED


def test_reaping_a_dead_worker_settles_the_children_of_its_jobs(
    backend: Backend, clock: FakeClock
) -> None:
    from conveyor.worker_info import WorkerRegistration

    parent = enqueue(backend, max_attempts=1)
    child = child_of(backend, parent, on_parent_failure="dead")
    backend.register_worker(
        WorkerRegistration(
            id="w1",
            host="h",
            pid=1,
            queues=None,
            concurrency=1,
            beat_interval=1.0,
            dead_after=5.0,
            machine="m",
        )
    )
    claim_one(backend, worker="w1")
    backend.reap_dead_workers(known_dead=["w1"])
    assert state(backend, parent) is JobState.DEAD
    assert state(backend, child) is JobState.DEAD


def test_requeue_with_revive_children_blocks_them_on_their_parents_again(
    backend: Backend, clock: FakeClock
) -> None:
    parent = enqueue(backend)
    child = child_of(backend, parent)
    grandchild = child_of(backend, child, on_parent_failure="dead")
    kill(backend, claim_one(backend), clock)
    assert state(backend, grandchild) is JobState.DEAD
    backend.requeue([parent], revive_children=True)
    jobs = snapshot(backend)
    assert jobs[parent].state is JobState.QUEUED
    assert (jobs[child].state, jobs[child].pending_parents) == (JobState.BLOCKED, 1)
    assert (jobs[grandchild].state, jobs[grandchild].pending_parents) == (JobState.BLOCKED, 1)
    assert jobs[child].dead_reason is None and jobs[child].finished_at is None
    run_to_success(backend, parent)
    run_to_success(backend, child)
    run_to_success(backend, grandchild)


def test_requeue_without_revive_leaves_the_children_ended(
    backend: Backend, clock: FakeClock
) -> None:
    parent = enqueue(backend)
    child = child_of(backend, parent)
    kill(backend, claim_one(backend), clock)
    backend.requeue([parent])
    assert state(backend, child) is JobState.CANCELLED


def test_a_requeued_parent_is_waited_for_again_by_run_policy_children(
    backend: Backend, clock: FakeClock
) -> None:
    parent, other = enqueue(backend), enqueue(backend)
    child = child_of(backend, parent, other, on_parent_failure="run")
    kill(backend, claim_one(backend), clock)
    assert backend.get(child).pending_parents == 1
    backend.requeue([parent])
    assert backend.get(child).pending_parents == 2
    run_to_success(backend, parent)
    run_to_success(backend, other)
    assert state(backend, child) is JobState.QUEUED


def test_prune_keeps_a_succeeded_parent_while_a_child_is_live(
    backend: Backend, clock: FakeClock
) -> None:
    parent, other = enqueue(backend), enqueue(backend)
    child = child_of(backend, parent, other)
    run_to_success(backend, parent)
    clock.advance(10_000)
    backend.prune(older_than=1.0)
    assert state(backend, parent) is JobState.SUCCEEDED
    run_to_success(backend, other)
    run_to_success(backend, child)
    clock.advance(10_000)
    while backend.prune(older_than=1.0):
        pass
    assert total(backend) == 0


def test_dependencies_lists_parents_and_children(backend: Backend) -> None:
    parent = enqueue(backend)
    first, second = child_of(backend, parent), child_of(backend, parent)
    deps = backend.dependencies(parent)
    assert deps.parents == []
    assert deps.children == [(first, JobState.BLOCKED), (second, JobState.BLOCKED)]
    assert backend.dependencies(first).parents == [(parent, JobState.QUEUED, None)]


def test_workflow_jobs_lists_the_jobs_of_one_workflow(backend: Backend) -> None:
    results = backend.enqueue_many(
        [new_job(workflow_id="w-1"), new_job(workflow_id="w-1", depends_on_batch=(0,)), new_job()]
    )
    ids = [r.job_id for r in results]
    assert [j.id for j in backend.workflow_jobs("w-1")] == ids[:2]
    assert all(j.workflow_id == "w-1" for j in backend.workflow_jobs("w-1"))
    assert backend.workflow_jobs("nope") == []


def test_a_mixed_batch_settles_successes_and_failures_together(
    backend: Backend, clock: FakeClock
) -> None:
    a, b = enqueue(backend), enqueue(backend)
    after_a, after_b = child_of(backend, a), child_of(backend, b)
    runs = {r.id: r for r in backend.claim("w", None, 10, LEASE)}
    backend.finish_many(
        [
            Outcome(a, runs[a].lease_token, OutcomeKind.SUCCEEDED, result_json="1"),
            Outcome(b, runs[b].lease_token, OutcomeKind.DEAD, dead_reason="no"),
        ]
    )
    assert state(backend, after_a) is JobState.QUEUED
    assert state(backend, after_b) is JobState.CANCELLED


def test_a_failure_callback_runs_only_after_a_failure(backend: Backend, clock: FakeClock) -> None:
    good, bad = enqueue(backend), enqueue(backend)
    after_good = child_of(backend, good, on_parent_failure="run_only")
    after_bad = child_of(backend, bad, good, on_parent_failure="run_only")
    run_to_success(backend, good)
    job = backend.get(after_good)
    assert (job.state, job.dead_reason) == (
        JobState.CANCELLED,
        "not needed: every parent succeeded",
    )
    assert job.finished_at is not None
    assert state(backend, after_bad) is JobState.BLOCKED
    kill(backend, claim_one(backend), clock)
    assert state(backend, after_bad) is JobState.QUEUED
    assert backend.get(after_bad).stopped_by == bad


def test_a_failure_callback_enqueued_after_its_parents_ended(
    backend: Backend, clock: FakeClock
) -> None:
    succeeded = make_job_in(backend, clock, JobState.SUCCEEDED)
    dead = make_job_in(backend, clock, JobState.DEAD)
    assert state(backend, child_of(backend, succeeded, on_parent_failure="run_only")) is (
        JobState.CANCELLED
    )
    assert state(backend, child_of(backend, dead, on_parent_failure="run_only")) is (
        JobState.QUEUED
    )
