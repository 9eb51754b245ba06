"""A burst worker and the gates (conveyor/limits/): it waits for jobs held by gates that open
by themselves -- a circuit breaker's cool-down and its probe, a rate limit's next token -- and
exits leaving the jobs that wait for a person: a breaker opened by hand, a pause until resumed."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Conveyor, JobState
from conveyor.limits.breakers import CLOSED, MIN_COOLDOWN
from tests.worker.test_burst import run_burst


@pytest.fixture
def app(tmp_path: Path) -> Conveyor:
    return Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")


def test_a_burst_waits_for_a_breaker_to_cool_down_and_close(app: Conveyor) -> None:
    app.breaker("partner-api", failures=1, window=60, cooldown=MIN_COOLDOWN)
    calls: list[int] = []

    @app.task(breaker="partner-api", retry="immediate", max_attempts=5)
    def sync(n: int) -> None:
        calls.append(n)
        if len(calls) == 1:
            raise ConnectionError("partner API unreachable")

    ids = [sync.enqueue(n).id for n in range(4)]
    run_burst(app, concurrency=1, prefetch=0)
    # The first failure opened the breaker; the burst waited for the probe, which closed it.
    assert [app.get_job(i).state for i in ids] == [JobState.SUCCEEDED] * 4
    [breaker] = app.breakers()
    assert breaker.state == CLOSED
    assert len(calls) == 5


def test_a_burst_exits_leaving_the_jobs_of_a_breaker_opened_by_hand(app: Conveyor) -> None:
    app.breaker("partner-api", failures=1, window=60, cooldown=MIN_COOLDOWN)

    @app.task(breaker="partner-api")
    def sync(n: int) -> int:
        return n

    @app.task()
    def other(n: int) -> int:
        return n

    app.open_breaker("partner-api")
    held = sync.enqueue(1).id
    free = other.enqueue(2).id
    run_burst(app, concurrency=2)
    assert app.get_job(free).state is JobState.SUCCEEDED
    assert app.get_job(held).state is JobState.QUEUED
    assert "breaker" in [h.gate for h in app.why(held)]


def test_a_burst_waits_for_the_tokens_of_a_rate_limited_task_behind_a_breaker(
    app: Conveyor,
) -> None:
    app.breaker("partner-api", failures=3, window=60, cooldown=MIN_COOLDOWN)

    @app.task(breaker="partner-api", rate_limit="20/s")
    def sync(n: int) -> int:
        return n

    ids = [sync.options(rate_key=f"tenant-{n % 2}").enqueue(n).id for n in range(6)]
    run_burst(app, concurrency=2)
    assert [app.get_job(i).state for i in ids] == [JobState.SUCCEEDED] * 6


def test_a_burst_exits_leaving_a_queue_paused_until_resumed(app: Conveyor) -> None:
    @app.task(queue="reports")
    def report(n: int) -> int:
        return n

    app.pause_queue("reports")
    held = report.enqueue(1).id
    run_burst(app)
    assert app.get_job(held).state is JobState.QUEUED
