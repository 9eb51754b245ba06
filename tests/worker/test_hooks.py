"""Hooks (``app.on``): what each event sees, where it runs, and that a hook that raises loses
no job and finishes none twice."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import Conveyor, Fixed, JobContext, JobState, RetryBudget
from conveyor.errors import ConfigurationError, JobTimeout
from conveyor.hooks import RunInfo
from tests.support import enabled_backends
from tests.worker.harness import World
from tests.worker.test_burst import run_burst

#: Set by the before_run hook; the task and after_run must see it.
SPAN: contextvars.ContextVar[str] = contextvars.ContextVar("span", default="none")


def traced(ctx: JobContext) -> str:
    return SPAN.get()


async def traced_async(ctx: JobContext) -> str:
    return SPAN.get()


class Recorder:
    """Every hook call, with the run's state at that moment."""

    def __init__(self, app: Conveyor) -> None:
        self.calls: list[tuple[str, int, str | None, bool, str | None]] = []
        self.infos: dict[tuple[str, int], RunInfo] = {}
        self.after_span: dict[int, str] = {}
        self.lock = threading.Lock()
        for event in ("before_run", "after_run", "failure", "dead"):
            app.on(event, self._recorder(event))

    def _recorder(self, event: str) -> Any:
        def hook(run: RunInfo) -> None:
            with self.lock:
                self.calls.append((event, run.job_id, run.outcome, run.will_retry, run.dead_reason))
                self.infos[(event, run.job_id)] = run
                if event == "before_run":
                    SPAN.set(f"span-{run.job_id}")
                if event == "after_run":
                    self.after_span[run.job_id] = SPAN.get()

        return hook

    def events(self, job_id: int) -> list[str]:
        return [event for event, jid, *_ in self.calls if jid == job_id]


def test_run_hooks_see_every_kind_of_run_and_share_the_tasks_context(world: World) -> None:
    app = world.app
    app.task(name="hooks.traced", pass_context=True)(traced)
    app.task(name="hooks.traced_async", pass_context=True)(traced_async)
    recorder = Recorder(app)
    thread_id = app.get_task("hooks.traced").enqueue().id
    async_id = app.get_task("hooks.traced_async").enqueue().id
    process_id = app.get_task("sample.process_add").enqueue(2, 3).id
    flaky_id = app.get_task("sample.flaky").enqueue(1).id
    failing_id = app.get_task("sample.always_fail").enqueue().id
    process_fail_id = app.get_task("sample.process_raise").enqueue("plain").id
    run_burst(app, concurrency=4)

    # A context variable set in before_run is the task's and after_run's (thread and async).
    assert app.get_job(thread_id).result == f"span-{thread_id}"
    assert app.get_job(async_id).result == f"span-{async_id}"
    assert recorder.after_span[thread_id] == f"span-{thread_id}"
    assert recorder.after_span[async_id] == f"span-{async_id}"
    for job_id in (thread_id, async_id, process_id):
        assert recorder.events(job_id) == ["before_run", "after_run"]
        info = recorder.infos[("after_run", job_id)]
        assert info.outcome == "succeeded" and info.exception is None
        assert info.duration is not None and info.duration >= 0
    assert recorder.infos[("after_run", process_id)].result["sum"] == 5

    # A failure that is retried, then succeeds.
    assert recorder.events(flaky_id) == [
        *("before_run", "failure", "after_run"),
        *("before_run", "after_run"),
    ]
    first = [c for c in recorder.calls if c[1] == flaky_id and c[0] == "failure"]
    assert first == [("failure", flaky_id, "retrying", True, None)]

    # Attempts exhausted: a failure per attempt, the last one not retried, then dead once
    # written -- in a thread task and in a process-isolated one (hooks run in the worker).
    for job_id, attempts, kind in ((failing_id, 3, ValueError), (process_fail_id, 2, ValueError)):
        job = app.get_job(job_id)
        assert job.state is JobState.DEAD
        events = recorder.events(job_id)
        assert events == ["before_run", "failure", "after_run"] * attempts + ["dead"], events
        failures = [c for c in recorder.calls if c[1] == job_id and c[0] == "failure"]
        assert [c[3] for c in failures] == [True] * (attempts - 1) + [False]
        dead = recorder.infos[("dead", job_id)]
        assert dead.outcome == "dead" and dead.dead_reason == job.dead_reason
        assert isinstance(dead.exception, kind)
        assert dead.attempt == attempts and dead.task == job.task


def test_a_hook_that_raises_loses_no_job_and_finishes_none_twice(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    app = world.app
    calls: Counter[str] = Counter()

    def broken(event: str) -> Any:
        def hook(run: RunInfo) -> None:
            calls[event] += 1
            raise RuntimeError(f"{event} hook is broken")

        return hook

    for event in ("before_run", "after_run", "failure", "dead"):
        app.on(event, broken(event))
    # A second hook of each event still runs after the broken one.
    after: list[int] = []
    app.on("after_run", lambda run: after.append(run.job_id))

    quick = app.get_task("sample.quick")
    ok_ids = [job.id for job in app.enqueue_many([quick.job(n) for n in range(20)])]
    async_id = app.get_task("sample.quick_async").enqueue(1).id
    dead_id = app.get_task("sample.poison").enqueue().id
    with caplog.at_level(logging.ERROR, logger="conveyor.hooks"):
        worker = run_burst(app, concurrency=4)

    for job in world.jobs([*ok_ids, async_id]):
        assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)
    assert [e.job_id for e in world.effects("done")].count(async_id) == 1
    assert app.get_job(dead_id).state is JobState.DEAD
    assert (worker.counters.succeeded, worker.counters.dead) == (21, 1)
    assert sorted(after) == sorted([*ok_ids, async_id, dead_id])
    assert calls == {"before_run": 22, "after_run": 22, "failure": 1, "dead": 1}
    assert "before_run hook" in caplog.text and "is broken" in caplog.text
    assert f"for job {dead_id}; carrying on" in caplog.text


def failing(ctx: JobContext) -> None:
    raise ValueError("fails")


@pytest.fixture(params=enabled_backends())
def engine_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Conveyor]:
    """A bare app on each engine: the dead hook follows what the database wrote."""
    if request.param == "postgres":
        from tests.postgres.apps import postgres_app

        with postgres_app() as app:
            yield app
    elif request.param == "redis":
        from tests.redis_engine.factory import redis_database

        with redis_database() as (url, prefix), Conveyor(url, redis_prefix=prefix) as app:
            yield app
    else:
        with Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}") as app:
            yield app


def test_a_retry_the_budget_refuses_calls_the_dead_hook(engine_app: Conveyor) -> None:
    app = engine_app
    task = app.task(
        name="hooks.budgeted",
        pass_context=True,
        retry=Fixed(0),
        max_attempts=5,
        retry_budget=RetryBudget(limit=0, window=60),
    )(failing)
    exhausted = app.task(name="hooks.exhausted", pass_context=True, max_attempts=1)(failing)
    dead: list[RunInfo] = []
    failures: list[bool] = []
    app.on("dead", dead.append)
    app.on("failure", lambda run: failures.append(run.will_retry))
    budgeted_id = task.enqueue().id
    run_burst(app, concurrency=1)
    exhausted_id = exhausted.enqueue().id
    run_burst(app, concurrency=1)

    job = app.get_job(budgeted_id)
    assert (job.state, job.attempts) == (JobState.DEAD, 1)
    assert job.dead_reason is not None and job.dead_reason.startswith("retry budget exhausted")
    # The task's policy would retry; the budget, applied as the outcome is written, did not.
    assert failures == [True, False]
    assert [(run.job_id, run.outcome, run.dead_reason) for run in dead] == [
        (budgeted_id, "dead", "retry budget exhausted"),
        (exhausted_id, "dead", app.get_job(exhausted_id).dead_reason),
    ]


def test_a_thread_run_past_its_timeout_ends_once_for_the_hooks(world: World) -> None:
    app = world.app
    ended: list[tuple[str | None, type[BaseException] | None]] = []
    app.on("after_run", lambda run: ended.append((run.outcome, type(run.exception))))
    failures: list[RunInfo] = []
    app.on("failure", failures.append)
    job = app.get_task("sample.sleep_sync").options(timeout=0.2, max_attempts=1).enqueue(1.0)
    worker = run_burst(app, concurrency=1)
    # The thread returns after the worker settled the run: wait for it, then count.
    for thread in worker.executor.pool._threads:
        thread.join(10)
    assert [e.job_id for e in world.effects("done")] == [job.id]
    assert ended == [("dead", JobTimeout)]
    assert len(failures) == 1 and not failures[0].will_retry
    assert app.get_job(job.id).attempts == 1


def test_enqueue_hook_gets_the_jobs_written(world: World) -> None:
    app = world.app
    seen: list[list[int]] = []
    app.on("enqueue", lambda jobs: seen.append([job.id for job in jobs]))
    quick = app.get_task("sample.quick")
    one = quick.enqueue(1)
    many = app.enqueue_many([quick.job(n) for n in range(3)])
    assert seen == [[one.id], [job.id for job in many]]


def test_a_removed_hook_is_no_longer_called(world: World) -> None:
    app = world.app
    seen: list[int] = []

    def hook(run: RunInfo) -> None:
        seen.append(run.job_id)

    app.on("after_run", hook)
    assert app.hooks.runs
    app.hooks.remove("after_run", hook)
    assert not app.hooks.runs
    app.get_task("sample.quick").enqueue(1)
    run_burst(app, concurrency=1)
    assert seen == []


def test_unknown_events_and_non_callables_are_refused(world: World) -> None:
    with pytest.raises(ConfigurationError, match="unknown hook event 'before'"):
        world.app.on("before", lambda run: None)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="must be callable"):
        world.app.on("dead", 5)  # type: ignore[call-overload]
