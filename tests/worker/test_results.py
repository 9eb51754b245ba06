"""Waiting for results (``app.result``, ``job.wait`` and their async twins) on every engine,
woken by finishes in this process and in others; and results that are not JSON, which fail
their job at once instead of being retried."""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.synchronize
import pickle
import threading
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    Conveyor,
    JobDead,
    JobFailed,
    JobState,
    JobWasCancelled,
    ResultNotSerializable,
    ResultTimeout,
)
from conveyor import results as waiting
from conveyor.backends import open_backend
from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.errors import ConfigurationError
from conveyor.job import JobError
from conveyor.payload import encode_result
from conveyor.retry import Fixed
from conveyor.settings import Settings
from tests.support import enabled_backends
from tests.worker.test_burst import run_burst

NOT_JSON = "conveyor.errors.ResultNotSerializable"


# --- tasks (top level: the process-isolated ones are imported by name in their child) ---------


def answer() -> dict[str, int]:
    return {"answer": 42}


def returns_set() -> set[int]:
    return {1, 2}


async def returns_set_async() -> set[int]:
    await asyncio.sleep(0)
    return {1, 2}


def returns_set_in_process() -> list[Any]:
    return [1, {"nested": {3, 4}}]


def returns_generator_in_process() -> Any:
    """Not JSON, and not even picklable: it could not cross the pipe either."""
    return (n for n in range(3))


RETRIED: dict[str, Any] = {"max_attempts": 3, "retry": Fixed(0)}


def register(app: Conveyor) -> Conveyor:
    app.task(name="answer")(answer)
    app.task(name="returns_set", **RETRIED)(returns_set)
    app.task(name="returns_set_async", **RETRIED)(returns_set_async)
    app.task(name="returns_set_in_process", isolation="process", **RETRIED)(returns_set_in_process)
    app.task(name="returns_generator_in_process", isolation="process", **RETRIED)(
        returns_generator_in_process
    )
    return app


@pytest.fixture(params=enabled_backends())
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Conveyor]:
    if request.param == "sqlite":
        with register(Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")) as sqlite_app:
            yield sqlite_app
        return
    if request.param == "redis":
        from tests.redis_engine.factory import redis_database

        with redis_database() as (url, prefix), register(Conveyor(url, redis_prefix=prefix)) as a:
            yield a
        return
    from tests.postgres.apps import postgres_app

    with postgres_app() as pg_app:
        yield register(pg_app)


@pytest.fixture
def woken_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiter reads its job again only when told a job may have ended: its fallback read,
    which would find the job ended anyway, comes too late to pass a test."""
    monkeypatch.setattr(waiting, "FALLBACK", 600.0)


# --- another process finishes the job ---------------------------------------------------------


def finish_when_told(
    settings: Settings,
    job_id: int,
    claimed: multiprocessing.synchronize.Event,
    go: multiprocessing.synchronize.Event,
) -> None:
    """Body of a separate process: claim the job, say so, and finish it when told."""
    backend = open_backend(settings)
    try:
        [run] = backend.claim("other-process", None, 1, 60.0)
        assert run.id == job_id
        claimed.set()
        go.wait(60)
        backend.finish_many(
            [Outcome(run.id, run.lease_token, OutcomeKind.SUCCEEDED, result_json='{"a":42}')]
        )
    finally:
        backend.close()


def finished_elsewhere(app: Conveyor, job_id: int) -> tuple[BaseProcess, Any]:
    """Start a process that claims ``job_id``; returns it and the event that makes it finish
    the job (with the result {"a": 42}) once set."""
    ctx = multiprocessing.get_context("spawn")
    claimed, go = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=finish_when_told, args=(app.settings, job_id, claimed, go))
    proc.start()
    assert claimed.wait(60), "the other process did not claim the job"
    assert app.get_job(job_id).state is JobState.RUNNING
    return proc, go


@pytest.mark.usefixtures("woken_only")
def test_wait_is_woken_by_a_finish_in_another_process(app: Conveyor) -> None:
    job = app.get_task("answer").enqueue()
    proc, go = finished_elsewhere(app, job.id)
    try:
        threading.Timer(0.3, go.set).start()  # while the wait below is under way
        started = time.monotonic()
        assert job.wait(timeout=60) == {"a": 42}
        assert time.monotonic() - started < 30
    finally:
        go.set()
        proc.join(30)
    assert proc.exitcode == 0


@pytest.mark.usefixtures("woken_only")
def test_async_wait_is_woken_by_a_finish_in_another_process(app: Conveyor) -> None:
    job = app.get_task("answer").enqueue()
    proc, go = finished_elsewhere(app, job.id)

    async def wait() -> Any:
        asyncio.get_running_loop().call_later(0.3, go.set)
        return await job.wait_async(timeout=60)

    try:
        assert asyncio.run(wait()) == {"a": 42}
        assert asyncio.run(app.result_async(job.id, timeout=0)) == {"a": 42}
    finally:
        go.set()
        proc.join(30)


def test_a_wait_that_runs_out_raises_result_timeout(app: Conveyor) -> None:
    job = app.get_task("answer").options(delay=3600).enqueue()
    started = time.monotonic()
    with pytest.raises(ResultTimeout, match=f"job {job.id} is still scheduled") as caught:
        app.result(job.id, timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert isinstance(caught.value, TimeoutError)
    assert (caught.value.job_id, caught.value.state) == (job.id, "scheduled")
    with pytest.raises(ResultTimeout):
        asyncio.run(job.wait_async(timeout=0.05))
    assert app.get_job(job.id).state is JobState.SCHEDULED, "the job goes on"


@pytest.mark.usefixtures("woken_only")
def test_a_dead_job_raises_job_dead_with_its_last_error(app: Conveyor) -> None:
    job = app.get_task("answer").enqueue()
    [run] = app.backend.claim("w", None, 1, 60.0)
    error = JobError(1, "ValueError", "bad input", "Traceback ...", time.time())
    dead = Outcome(run.id, run.lease_token, OutcomeKind.DEAD, error=error, dead_reason="gave up")
    threading.Timer(0.2, app.backend.finish_many, ([dead],)).start()
    with pytest.raises(JobDead, match="gave up") as caught:
        job.wait(timeout=60)
    failure = caught.value
    assert isinstance(failure, JobFailed)
    assert (failure.job_id, failure.state, failure.dead_reason) == (
        job.id,
        JobState.DEAD,
        "gave up",
    )
    assert failure.last_error is not None
    assert (failure.last_error.type, failure.last_error.message) == ("ValueError", "bad input")
    assert failure.job.attempts == 1
    assert isinstance(pickle.loads(pickle.dumps(failure)), JobDead)


@pytest.mark.usefixtures("woken_only")
def test_a_cancelled_job_raises_job_was_cancelled(app: Conveyor) -> None:
    job = app.get_task("answer").options(delay=3600).enqueue()
    threading.Timer(0.2, app.cancel, (job.id,)).start()
    with pytest.raises(JobWasCancelled, match="cancelled") as caught:
        app.result(job.id, timeout=60)
    assert caught.value.state is JobState.CANCELLED
    assert isinstance(caught.value, JobFailed)


def test_only_jobs_an_app_returned_can_wait(app: Conveyor) -> None:
    job = app.get_task("answer").enqueue()
    assert app.get_job(job.id)._app is app
    assert [j._app for j in app.list_jobs()] == [app]
    copy = pickle.loads(pickle.dumps(job))
    assert copy == job
    with pytest.raises(ConfigurationError, match=r"app\.result"):
        copy.wait(timeout=0)
    with pytest.raises(ConfigurationError, match="timeout"):
        app.result(job.id, timeout=-1)


# --- results that are not JSON ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "offending"),
    [
        ("returns_set", "set"),
        ("returns_set_async", "set"),
        ("returns_set_in_process", "set"),
        ("returns_generator_in_process", "generator"),
    ],
)
def test_a_result_that_is_not_json_fails_the_job_without_retrying(
    app: Conveyor, task: str, offending: str
) -> None:
    job = app.get_task(task).enqueue()
    run_burst(app, concurrency=2)
    ended = app.get_job(job.id)
    assert ended.state is JobState.DEAD
    assert ended.attempts == 1, "not retried: it would fail the same way"
    assert len(ended.errors) == 1
    assert ended.errors[0].type == NOT_JSON
    assert (
        f"task {task} returned a result that is not JSON ({offending})" in ended.errors[0].message
    )
    assert ended.dead_reason is not None and ended.dead_reason.startswith("non-retryable error")
    with pytest.raises(JobDead) as caught:
        job.wait(timeout=0)
    assert caught.value.last_error is not None and caught.value.last_error.type == NOT_JSON


def test_result_not_serializable_names_the_task_and_the_type() -> None:
    with pytest.raises(ResultNotSerializable) as caught:
        encode_result({"ok": [1, 2, b"raw"]}, "shop.receipt")
    assert (caught.value.task, caught.value.type_name) == ("shop.receipt", "bytes")
    assert isinstance(caught.value, TypeError)
    with pytest.raises(ResultNotSerializable, match=r"\(int key\)"):
        encode_result({1: "a"}, "t")
    with pytest.raises(ResultNotSerializable, match="NaN or infinity"):
        encode_result([float("nan")], "t")
    revived = pickle.loads(pickle.dumps(caught.value))
    assert (type(revived), str(revived)) == (ResultNotSerializable, str(caught.value))
    assert encode_result({"a": [1, 2.5, None, True]}, "t") == '{"a":[1,2.5,null,true]}'
