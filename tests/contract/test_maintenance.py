"""Contract: maintenance — pruning finished jobs, schema migrations and verification."""

from __future__ import annotations

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import Backend
from conveyor.errors import JobNotFound
from conveyor.job import JobState
from tests.contract.helpers import enqueue, make_job_in, snapshot
from tests.support import FakeClock

HOUR = 3600.0


def test_prune_deletes_old_succeeded_and_cancelled_jobs_only(
    backend: Backend, clock: FakeClock
) -> None:
    old_done = [make_job_in(backend, clock, JobState.SUCCEEDED) for _ in range(3)]
    old_cancelled = make_job_in(backend, clock, JobState.CANCELLED)
    old_dead = make_job_in(backend, clock, JobState.DEAD)
    waiting = enqueue(backend)
    scheduled = enqueue(backend, delay=100 * HOUR)
    running = make_job_in(backend, clock, JobState.RUNNING)
    retrying = make_job_in(backend, clock, JobState.RETRYING)
    clock.advance(2 * HOUR)
    recent_done = make_job_in(backend, clock, JobState.SUCCEEDED)
    recent_cancelled = make_job_in(backend, clock, JobState.CANCELLED)
    clock.advance(10.0)

    assert backend.prune(older_than=HOUR) == 4
    for job_id in [*old_done, old_cancelled]:
        with pytest.raises(JobNotFound):
            backend.get(job_id)
    kept = {old_dead, waiting, scheduled, running, retrying, recent_done, recent_cancelled}
    assert set(snapshot(backend)) == kept
    assert backend.get(old_dead).state is JobState.DEAD, "dead letters wait for an operator"
    assert backend.prune(older_than=HOUR) == 0


def test_prune_works_in_batches(backend: Backend, clock: FakeClock) -> None:
    done = [make_job_in(backend, clock, JobState.SUCCEEDED) for _ in range(5)]
    clock.advance(2 * HOUR)
    assert backend.prune(older_than=HOUR, batch=2) == 2
    assert backend.prune(older_than=HOUR, batch=2) == 2
    assert backend.prune(older_than=HOUR, batch=2) == 1
    assert backend.prune(older_than=HOUR, batch=2) == 0
    assert not set(done) & set(snapshot(backend))


def test_prune_respects_the_cutoff(backend: Backend, clock: FakeClock) -> None:
    job_id = make_job_in(backend, clock, JobState.SUCCEEDED)
    clock.advance(HOUR - 5.0)
    assert backend.prune(older_than=HOUR) == 0
    clock.advance(10.0)
    assert backend.prune(older_than=HOUR) == 1
    with pytest.raises(JobNotFound):
        backend.get(job_id)


def test_ids_are_not_reused_after_prune(backend: Backend, clock: FakeClock) -> None:
    last = make_job_in(backend, clock, JobState.SUCCEEDED)
    clock.advance(2 * HOUR)
    assert backend.prune(older_than=HOUR) == 1
    assert enqueue(backend) > last


def test_migrate_twice_is_a_no_op(backend: Backend) -> None:
    enqueue(backend, args_json='["kept"]')
    backend.migrate()
    before = snapshot(backend)
    assert backend.migrate() == []
    assert snapshot(backend) == before
    status = backend.verify_schema()
    assert status.ok, status.problems


def test_verify_schema_on_a_fresh_store(backend: Backend) -> None:
    status = backend.verify_schema()
    assert status.ok, status.problems
    assert status.current == status.latest
    assert status.latest >= 1
    assert status.problems == []


def test_reopening_a_store_keeps_every_job(backend: Backend, clock: FakeClock) -> None:
    ids = [make_job_in(backend, clock, state) for state in JobState if state != JobState.BLOCKED]
    before = snapshot(backend)
    again = open_backend(backend.settings, clock=clock)
    try:
        assert snapshot(again) == before
        assert again.verify_schema().ok
        assert again.migrate() == []
    finally:
        again.close()
    assert set(before) == set(ids)
