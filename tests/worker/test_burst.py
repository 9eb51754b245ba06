"""Burst mode in this process: run what is ready, retries included, then return."""

from __future__ import annotations

import _thread
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from conveyor import Conveyor, JobState, Worker
from tests.worker.harness import DEADLINE, World


@contextmanager
def watchdog(on_fire: Callable[[], None], seconds: float = DEADLINE) -> Iterator[None]:
    """Fail (instead of hanging) if the body runs longer than ``seconds``."""
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        on_fire()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
    assert not fired.is_set(), f"the burst did not return within {seconds:g}s"


def run_burst(app: Conveyor, **options: Any) -> Worker:
    worker = app.worker(burst=True, **options)
    with watchdog(worker.stop):
        worker.run()
    return worker


def test_burst_runs_sync_and_async_tasks_and_returns(world: World) -> None:
    app = world.app
    sync_ids = [app.get_task("sample.add").enqueue(i, 1).id for i in range(5)]
    async_ids = [app.get_task("sample.add_async").enqueue(i, 2).id for i in range(5)]
    with watchdog(_thread.interrupt_main):
        app.run_worker(burst=True, concurrency=4)

    for i, job in enumerate(world.jobs(sync_ids)):
        assert (job.state, job.result, job.attempts) == (JobState.SUCCEEDED, i + 1, 1)
    for i, job in enumerate(world.jobs(async_ids)):
        assert (job.state, job.result, job.attempts) == (JobState.SUCCEEDED, i + 2, 1)
    assert Counter(e.job_id for e in world.effects("done")) == dict.fromkeys(
        sync_ids + async_ids, 1
    )


def test_burst_retries_dead_letters_and_records_every_error(world: World) -> None:
    app = world.app
    flaky = app.get_task("sample.flaky").enqueue(2).id
    doomed = app.get_task("sample.always_fail").enqueue().id
    poison = app.get_task("sample.poison").enqueue().id
    fine = app.get_task("sample.add").enqueue(1, 1).id
    worker = run_burst(app, concurrency=4)

    # Fixed(0) retries are ready at once: they run within the same burst.
    job = app.get_job(flaky)
    assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 3, "ok")
    assert [(e.attempt, e.type) for e in job.errors] == [(1, "RuntimeError"), (2, "RuntimeError")]
    assert "flaky failure on attempt 1" in job.errors[0].message

    job = app.get_job(doomed)
    assert (job.state, job.attempts) == (JobState.DEAD, 3)
    assert job.dead_reason is not None and job.dead_reason.startswith("attempts exhausted")
    assert [(e.attempt, e.type, e.message) for e in job.errors] == [
        (n, "ValueError", f"boom on attempt {n}") for n in (1, 2, 3)
    ]
    assert all("Traceback" in e.traceback for e in job.errors)

    job = app.get_job(poison)
    assert (job.state, job.attempts) == (JobState.DEAD, 1), "non-retryable: no second attempt"
    assert job.dead_reason is not None and job.dead_reason.startswith("non-retryable error")
    assert [e.type for e in job.errors] == ["conveyor.task.NonRetryable"]

    assert app.get_job(fine).state is JobState.SUCCEEDED
    starts = Counter(e.job_id for e in world.effects("start"))
    assert starts == {flaky: 3, doomed: 3, poison: 1}
    assert sorted(j.id for j in app.dead_letters()) == sorted([poison, doomed])
    c = worker.counters
    assert (c.succeeded, c.retried, c.dead) == (2, 4, 2)
