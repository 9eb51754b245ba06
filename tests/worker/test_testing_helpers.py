"""conveyor.testing on every engine: eager mode, and ``drain`` running retries and scheduled
jobs by moving the app's clock instead of sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor import ArgumentsMismatch, Conveyor, JobContext, JobDead, JobState
from conveyor.errors import ConfigurationError
from conveyor.retry import Fixed
from conveyor.testing import Clock, DrainSummary, drain
from tests.support import app_options, enabled_backends

START = 1_900_000_000.0


def flaky(ctx: JobContext, n: int) -> int:
    """Fails its first two attempts."""
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt} failed")
    return n * 10


async def double(n: int) -> int:
    await asyncio.sleep(0)
    return 2 * n


def add(x: int, y: int) -> int:
    return x + y


def in_child(n: int) -> list[int]:
    return [n, n]


def chain(n: int) -> int:
    """Enqueues the next link until n reaches 0 (jobs that runs enqueue run too)."""
    if n > 0:
        APP_OF_CHAIN[0].get_task("chain").enqueue(n - 1)
    return n


APP_OF_CHAIN: list[Conveyor] = []


def register(app: Conveyor) -> Conveyor:
    app.task(name="flaky", pass_context=True, max_attempts=3, retry=Fixed(30))(flaky)
    app.task(name="double")(double)
    # typecheck=False: test_drain_applies_the_tasks_retry_rules needs a TypeError at run time.
    app.task(name="add", dont_retry=[TypeError], typecheck=False)(add)
    app.task(name="in_child", isolation="process")(in_child)
    app.task(name="chain")(chain)
    APP_OF_CHAIN[:] = [app]
    return app


@pytest.fixture(params=enabled_backends())
def url_and_schema(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    with app_options(request.param, tmp_path) as options:
        yield options


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def app(url_and_schema: dict[str, Any], clock: Clock) -> Iterator[Conveyor]:
    with register(Conveyor(clock=clock, **url_and_schema)) as conveyor:
        yield conveyor


@pytest.fixture
def eager_app(url_and_schema: dict[str, Any], clock: Clock) -> Iterator[Conveyor]:
    with register(Conveyor(clock=clock, eager=True, **url_and_schema)) as conveyor:
        yield conveyor


# --- drain ------------------------------------------------------------------------------------


def test_drain_runs_retries_and_scheduled_jobs_by_moving_the_clock(
    app: Conveyor, clock: Clock
) -> None:
    retried = app.get_task("flaky").enqueue(4)
    later = app.get_task("add").options(delay=3600).enqueue(1, 2)
    now = app.get_task("double").enqueue(21)
    started = time.monotonic()

    summary = drain(app)

    assert time.monotonic() - started < 20, "no sleeping through backoffs and delays"
    assert summary == DrainSummary(
        runs=5, succeeded=3, retried=2, dead=0, cancelled=0, advanced=3600.0, left=0
    )
    assert clock() == START + 3600.0
    flaky_job = app.get_job(retried.id)
    assert (flaky_job.state, flaky_job.result, flaky_job.attempts) == (JobState.SUCCEEDED, 40, 3)
    assert [e.message for e in flaky_job.errors] == ["attempt 1 failed", "attempt 2 failed"]
    assert [e.at for e in flaky_job.errors] == [START, START + 30.0], "each retry waited 30 s"
    assert app.get_job(later.id).result == 3
    assert now.wait(timeout=0) == 42
    assert drain(app) == DrainSummary(), "nothing left to do"


def test_drain_applies_the_tasks_retry_rules(app: Conveyor) -> None:
    """The worker's own decision: attempts exhausted, and dont_retry, dead-letter the job."""
    exhausted = app.get_task("flaky").options(max_attempts=2).enqueue(1)
    refused = app.get_task("add").enqueue("a", 1)  # str + int: TypeError, listed in dont_retry
    summary = drain(app)
    assert (summary.runs, summary.dead, summary.retried) == (3, 2, 1)
    with pytest.raises(JobDead, match=r"attempts exhausted \(2/2\)"):
        exhausted.wait(timeout=0)
    with pytest.raises(JobDead, match="non-retryable error: TypeError"):
        refused.wait(timeout=0)
    assert app.get_job(refused.id).attempts == 1


def test_drain_runs_process_isolated_tasks_and_jobs_that_runs_enqueue(app: Conveyor) -> None:
    child = app.get_task("in_child").enqueue(7)
    app.get_task("chain").enqueue(3)
    summary = drain(app)
    assert (summary.runs, summary.succeeded) == (5, 5)
    assert child.wait(timeout=0) == [7, 7]
    assert sorted(j.result for j in app.list_jobs(task="chain")) == [0, 1, 2, 3]


def test_drain_without_a_movable_clock_leaves_later_jobs_waiting(
    url_and_schema: dict[str, Any],
) -> None:
    with register(Conveyor(**url_and_schema)) as app:
        app.get_task("add").options(delay=3600).enqueue(1, 2)
        ready = app.get_task("add").enqueue(2, 2)
        summary = drain(app)
        assert (summary.runs, summary.succeeded, summary.advanced, summary.left) == (1, 1, 0, 1)
        assert ready.wait(timeout=0) == 4


def test_drain_stops_after_max_runs(app: Conveyor) -> None:
    app.get_task("chain").enqueue(10)
    summary = drain(app, max_runs=4)
    assert (summary.runs, summary.left) == (4, 1)
    with pytest.raises(ConfigurationError, match="max_runs"):
        drain(app, max_runs=0)


# --- eager mode -------------------------------------------------------------------------------


def test_eager_enqueue_runs_the_job_at_once_and_records_it(eager_app: Conveyor) -> None:
    job = eager_app.get_task("add").enqueue(1, 2)
    assert (job.state, job.result, job.attempts) == (JobState.SUCCEEDED, 3, 1)
    assert job.wait(timeout=0) == 3
    assert eager_app.get_job(job.id).state is JobState.SUCCEEDED, "recorded in the database"
    [a, b] = eager_app.enqueue_many([eager_app.get_task("double").job(n) for n in (1, 2)])
    assert (a.result, b.result) == (2, 4)


def test_eager_enqueue_validates_as_enqueue_does(eager_app: Conveyor) -> None:
    with pytest.raises(ArgumentsMismatch):
        eager_app.get_task("add").enqueue(1)
    with pytest.raises(ConfigurationError):
        eager_app.get_task("add").options(priority="urgent").enqueue(1, 2)
    assert eager_app.list_jobs() == [], "nothing written"


def test_eager_failures_follow_the_retry_rules_and_drain_runs_the_rest(
    eager_app: Conveyor, clock: Clock
) -> None:
    job = eager_app.get_task("flaky").enqueue(5)
    assert (job.state, job.attempts) == (JobState.RETRYING, 1)
    later = eager_app.get_task("add").options(delay=60).enqueue(2, 3)
    assert later.state is JobState.SCHEDULED, "eager runs what is ready; drain the rest"
    summary = drain(eager_app)
    assert (summary.succeeded, summary.retried) == (2, 1)
    assert job.wait(timeout=0) == 50
    assert later.wait(timeout=0) == 5


def test_eager_enqueue_from_async_code(eager_app: Conveyor) -> None:
    async def main() -> tuple[int, int]:
        job = await eager_app.get_task("double").enqueue_async(5)
        other = eager_app.get_task("double").enqueue(6)  # on the loop's own thread
        return job.result, other.result

    assert asyncio.run(main()) == (10, 12)


def test_eager_mode_is_switched_by_configure(app: Conveyor) -> None:
    assert app.get_task("add").enqueue(1, 1).state is JobState.QUEUED
    app.configure(eager=True)
    assert app.get_task("add").enqueue(2, 2).result == 4
    app.configure(eager=False)
    assert app.get_task("add").enqueue(3, 3).state is JobState.QUEUED
