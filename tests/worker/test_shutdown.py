"""Graceful shutdown with real signals: finish what runs, claim nothing new, put back what
outlives the grace period without charging an attempt."""

from __future__ import annotations

import signal

import pytest

from conveyor import JobState
from tests.worker.harness import Workers, World, wait_for

pytestmark = pytest.mark.slow


def test_sigterm_finishes_running_jobs_and_claims_nothing_new(
    world: World, workers: Workers
) -> None:
    release = world.tmp / "release"
    hold = world.app.get_task("sample.hold")
    ids = [job.id for job in world.app.enqueue_many([hold.job(str(release)) for _ in range(10)])]
    a = workers.start("A", concurrency=4, prefetch=4, grace=30)
    wait_for(lambda: len(world.effects("start")) == 4, "4 jobs to start")
    wait_for(lambda: world.count(JobState.RUNNING) == 8, "4 more jobs to be prefetched")
    running = {e.job_id for e in world.effects("start")}

    a.send(signal.SIGTERM)
    a.wait_log("putting back 4 prefetched job(s)")
    # The running jobs finish only now, after the signal: their freed slots must stay empty.
    release.touch()
    assert a.wait_exit() == 0
    assert "worker process exiting normally" in a.log()

    for job in world.jobs(ids):
        if job.id in running:
            assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 1, a.pid)
        else:
            # Prefetched and put back, or never claimed: either way not charged an attempt.
            assert (job.state, job.attempts) == (JobState.QUEUED, 0), job
    assert {e.job_id for e in world.effects("start")} == running
    assert sorted(e.job_id for e in world.effects("done")) == sorted(running)


def test_sigterm_with_20_running_and_200_prefetched(world: World, workers: Workers) -> None:
    release = world.tmp / "release"
    hold = world.app.get_task("sample.hold")
    ids = [job.id for job in world.app.enqueue_many([hold.job(str(release)) for _ in range(300)])]
    a = workers.start("A", concurrency=20, prefetch=200, grace=30)
    wait_for(lambda: len(world.effects("start")) == 20, "20 jobs to start")
    wait_for(lambda: world.count(JobState.RUNNING) == 220, "200 more jobs to be prefetched")

    a.send(signal.SIGTERM)
    # Prefetched jobs go back at once, while the 20 running ones still hold their slots.
    wait_for(lambda: world.count(JobState.QUEUED) == 280, "the prefetched jobs to be put back")
    assert world.count(JobState.RUNNING) == 20
    assert len(world.effects("start")) == 20
    release.touch()
    assert a.wait_exit() == 0

    running = {e.job_id for e in world.effects("start")}
    assert len(running) == 20
    assert sorted(e.job_id for e in world.effects("done")) == sorted(running)
    for job in world.jobs(ids):
        expected = (JobState.SUCCEEDED, 1) if job.id in running else (JobState.QUEUED, 0)
        assert (job.state, job.attempts) == expected, job


def test_job_outliving_the_grace_period_is_put_back_uncharged(
    world: World, workers: Workers
) -> None:
    job_id = world.app.get_task("sample.sleep_sync").enqueue(1.5).id
    a = workers.start("A", concurrency=2, grace=0.5)
    wait_for(lambda: world.effects("start", job_id), "the job to start in A")

    a.send(signal.SIGTERM)
    wait_for(lambda: world.app.get_job(job_id).state is JobState.QUEUED, "A to put the job back")
    job = world.app.get_job(job_id)
    assert (job.attempts, job.lost_runs, job.errors) == (0, 0, [])
    assert "still running after the grace period" in a.log()
    # A thread cannot be killed, but it is a daemon: once its job is back in the queue the
    # process exits within the grace period instead of waiting for the body to return.
    assert a.wait_exit() == 0
    assert world.effects("done") == []
    assert "Traceback" not in a.log(), "the late thread broke the clean exit"

    b = workers.start("B", concurrency=2)
    wait_for(lambda: world.app.get_job(job_id).state is JobState.SUCCEEDED, "B to finish it")
    job = world.app.get_job(job_id)
    assert (job.attempts, job.lost_runs, job.result) == (1, 0, b.pid)
    assert [(e.worker_pid, e.attempt) for e in world.effects("start")] == [(a.pid, 1), (b.pid, 1)]


def test_cooperative_job_stopped_by_shutdown_is_put_back_not_cancelled(
    world: World, workers: Workers
) -> None:
    """Shutdown sets ctx.cancelled so tasks can stop at a safe point; a task that then raises
    JobCancelled was not cancelled by anyone: it goes back to the queue, uncharged."""
    job_id = world.app.get_task("sample.cooperative_async").enqueue().id
    a = workers.start("A", concurrency=2, grace=0.5)
    wait_for(lambda: world.effects("start", job_id), "the job to start in A")

    a.send(signal.SIGTERM)
    assert a.wait_exit() == 0
    assert world.effects("interrupted", job_id), "the task was not interrupted at shutdown"
    job = world.app.get_job(job_id)
    assert (job.state, job.attempts, job.errors) == (JobState.QUEUED, 0, []), job
