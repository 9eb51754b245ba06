"""Job timeouts: a coroutine is cancelled; a thread cannot be, so its timeout is recorded at
once while its slot stays taken until the thread returns."""

from __future__ import annotations

from conveyor import JobState
from tests.worker.harness import World
from tests.worker.test_burst import run_burst

JOB_TIMEOUT = "conveyor.errors.JobTimeout"


def test_async_task_past_its_timeout_is_cancelled_then_retried(world: World) -> None:
    slow = world.app.get_task("sample.slow_first_attempt")
    retried = slow.options(timeout=0.3).enqueue(30).id
    exhausted = slow.options(timeout=0.3, max_attempts=1).enqueue(30).id
    run_burst(world.app, concurrency=4)

    job = world.app.get_job(retried)
    assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 2, "ok")
    assert [(e.attempt, e.type) for e in job.errors] == [(1, JOB_TIMEOUT)]
    assert "timeout of 0.3s" in job.errors[0].message

    job = world.app.get_job(exhausted)
    assert (job.state, job.attempts) == (JobState.DEAD, 1)
    assert [(e.attempt, e.type) for e in job.errors] == [(1, JOB_TIMEOUT)]
    assert job.dead_reason is not None and job.dead_reason.startswith("attempts exhausted")

    # The coroutines really were cancelled at their deadline, not left running.
    cancelled = sorted((e.job_id, e.attempt) for e in world.effects("cancelled"))
    assert cancelled == [(retried, 1), (exhausted, 1)]
    assert [(e.job_id, e.attempt) for e in world.effects("done")] == [(retried, 2)]


def test_thread_task_past_its_timeout_keeps_its_slot_until_it_returns(world: World) -> None:
    concurrency = 2
    body = 1.5
    sleepy = world.app.get_task("sample.sleep_sync").options(timeout=0.2, max_attempts=1)
    ids = [sleepy.enqueue(body).id for _ in range(4)]
    run_burst(world.app, concurrency=concurrency)

    starts = {e.job_id: e.at for e in world.effects("start")}
    ends = {e.job_id: e.at for e in world.effects("done")}
    assert sorted(starts) == sorted(ends) == sorted(ids)
    for job in world.jobs(ids):
        assert (job.state, job.attempts) == (JobState.DEAD, 1), job
        assert [e.type for e in job.errors] == [JOB_TIMEOUT]
        assert job.finished_at is not None and job.started_at is not None
        # Recorded at the timeout, while the thread was still running...
        assert job.finished_at < ends[job.id] - 0.5, "the timeout waited for the thread"
        # ...and the job was claimed only when a thread was free to run it at once.
        assert starts[job.id] - job.started_at < body / 2, (
            f"job {job.id} waited {starts[job.id] - job.started_at:.2f}s for a thread: it was "
            "claimed while every slot was still busy with a timed-out thread"
        )
    # Never more threads at once than the worker's concurrency.
    events = sorted([(at, 1) for at in starts.values()] + [(at, -1) for at in ends.values()])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == concurrency
