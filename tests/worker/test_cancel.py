"""Cancellation: a waiting job never runs; a running one is stopped by its worker, which looks
for cancel requests several times a second (between heartbeats, which come every 10 s)."""

from __future__ import annotations

import functools
import signal
import time

import pytest

from conveyor import JobState
from conveyor.settings import Settings
from tests.worker.harness import DEFAULT_LEASE_ENV, Workers, World, wait_for
from tests.worker.test_burst import run_burst

JOB_CANCELLED = "conveyor.errors.JobCancelled"
#: The default heartbeat interval. A worker beats at its first claim, then every interval: a
#: cancel heard within half of one was heard between beats.
BETWEEN_BEATS = Settings().heartbeat / 2


def test_cancelled_waiting_job_never_runs(world: World) -> None:
    add = world.app.get_task("sample.add")
    cancelled = add.enqueue(1, 1).id
    other = add.enqueue(2, 2).id
    job = world.app.cancel(cancelled)
    assert job.state is JobState.CANCELLED
    run_burst(world.app, concurrency=2)

    job = world.app.get_job(cancelled)
    assert (job.state, job.attempts, job.result) == (JobState.CANCELLED, 0, None)
    assert world.app.get_job(other).state is JobState.SUCCEEDED
    assert [e.job_id for e in world.effects()] == [other]


@pytest.mark.slow
def test_running_jobs_are_stopped_on_cancel(world: World, workers: Workers) -> None:
    a = workers.start("A", concurrency=4, env=DEFAULT_LEASE_ENV)
    coroutine = world.app.get_task("sample.wait_forever_async").enqueue().id
    thread = world.app.get_task("sample.spin_until_cancelled").enqueue().id
    wait_for(lambda: len(world.effects("start")) == 2, "both jobs to start")

    for job_id in (coroutine, thread):
        requested = time.monotonic()
        job = world.app.cancel(job_id)
        assert job.state is JobState.RUNNING and job.cancel_requested
        wait_for(
            functools.partial(world.all_in, [job_id], JobState.CANCELLED),
            f"job {job_id} to be cancelled by its worker",
        )
        took = time.monotonic() - requested
        print(f"cancel of job {job_id} took {took:.3f}s")
        assert took < BETWEEN_BEATS, f"cancel took {took:.2f}s"
        job = world.app.get_job(job_id)
        assert (job.attempts, job.lost_runs) == (1, 0)
        assert job.finished_at is not None and job.result is None
        assert [e.type for e in job.errors] == [JOB_CANCELLED]

    # The coroutine got CancelledError; the thread saw ctx.cancelled and raised.
    assert [e.job_id for e in world.effects("cancelled")] == [coroutine]
    assert thread in {e.job_id for e in world.effects("saw_cancel")}
    assert world.effects("done") == []

    # The worker is still healthy and its slots were given back.
    after = world.app.get_task("sample.add").enqueue(20, 22).id
    wait_for(lambda: world.app.get_job(after).state is JobState.SUCCEEDED, "a later job to run")
    assert world.app.get_job(after).result == 42
    assert a.alive()


@pytest.mark.slow
def test_cancel_requested_job_outliving_shutdown_ends_cancelled(
    world: World, workers: Workers
) -> None:
    """Shutdown puts unfinished jobs back in the queue -- but not one that its worker knows was
    asked to cancel: that one would run again."""
    job_id = world.app.get_task("sample.stubborn").enqueue(3.0).id
    a = workers.start("A", concurrency=2, grace=0.5, env=DEFAULT_LEASE_ENV)
    wait_for(lambda: world.effects("start", job_id), "the job to start")
    world.app.cancel(job_id)
    wait_for(lambda: world.effects("saw_cancel", job_id), "A to hear of the cancel request")

    a.send(signal.SIGTERM)
    wait_for(
        lambda: world.app.get_job(job_id).state.is_terminal or not a.alive(),
        "A to settle the job",
    )
    job = world.app.get_job(job_id)
    assert (job.state, job.attempts) == (JobState.CANCELLED, 1), job
    assert [e.type for e in job.errors] == [JOB_CANCELLED]
    assert a.wait_exit() == 0
