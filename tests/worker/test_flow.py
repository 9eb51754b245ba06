"""Flow control with real worker processes on every engine: a paused queue starts nothing and
starts again once resumed; a rate limit holds across four workers (conveyor/limits/)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState
from tests.support import enabled_backends
from tests.worker.harness import WorkerProcess, spawn_logged, wait_for

APP = "tests.worker.flow_app:app"
RATE = 20


@dataclass
class Fleet:
    tmp: Path
    app: Conveyor
    env: dict[str, str]
    procs: list[WorkerProcess] = field(default_factory=list)

    def start(self, name: str, *args: str) -> WorkerProcess:
        argv = [sys.executable, "-m", "conveyor.cli", "worker", "--app", APP, *args]
        stderr = self.tmp / f"worker-{name}.stderr"
        proc = WorkerProcess(name, spawn_logged(argv, self.env, stderr), stderr, 0.0)
        self.procs.append(proc)
        proc.wait_ready(60)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()}" for p in self.procs)

    def state(self, job_id: int) -> JobState:
        return self.app.get_job(job_id).state


@pytest.fixture(params=enabled_backends())
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    schema_env: dict[str, str] = {}
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
        app = Conveyor(url=url)
    elif request.param == "redis":
        from tests.redis_engine.factory import new_prefix, server_url

        url, prefix = server_url(), new_prefix()
        app = Conveyor(url=url, redis_prefix=prefix)
        schema_env = {"CONVEYOR_REDIS_PREFIX": prefix}
    else:
        from tests.postgres.factory import new_schema, session_database

        url, schema = session_database().url, new_schema()
        app = Conveyor(url=url, postgres_schema=schema)
        schema_env = {"CONVEYOR_POSTGRES_SCHEMA": schema}
    # The test's app registers the same tasks, to enqueue them.
    app.task(name="flow.tick", queue="api")(_tick)
    app.task(name="flow.call", queue="api", rate_limit=f"{RATE}/s")(_tick)
    app.backend  # noqa: B018  (migrated before any worker opens it)
    fleet = Fleet(tmp_path, app, {**env, "CONVEYOR_URL": url, **schema_env})
    try:
        yield fleet
    finally:
        for proc in fleet.procs:
            if proc.alive():
                proc.kill()
        if request.param == "redis":
            from tests.redis_engine.factory import drop_prefix

            drop_prefix(url, schema_env["CONVEYOR_REDIS_PREFIX"])
        if request.param == "postgres":
            from tests.postgres.factory import admin_query

            app.backend._db.run(  # type: ignore[attr-defined]
                lambda cur: cur.execute(
                    admin_query("drop_schema", schema=schema_env["CONVEYOR_POSTGRES_SCHEMA"])
                )
            )
        app.close()


def _tick(n: int) -> int:
    return n


def test_a_paused_queue_starts_nothing_until_resumed(fleet: Fleet) -> None:
    app = fleet.app
    app.pause_queue("api")
    held = app.enqueue("flow.tick", [1]).id
    fleet.start("w1", "--concurrency", "2")
    # A job of another queue is the witness that the worker claims while "api" waits.
    witness = app.enqueue("flow.tick", [2], queue="other").id
    wait_for(
        lambda: fleet.state(witness) is JobState.SUCCEEDED, "the witness", on_timeout=fleet.logs
    )
    assert fleet.state(held) is JobState.QUEUED
    assert [h.gate for h in app.why(held)] == ["paused"]
    app.resume_queue("api")
    wait_for(
        lambda: fleet.state(held) is JobState.SUCCEEDED, "the resumed job", on_timeout=fleet.logs
    )
    assert app.why(held) == []


@pytest.mark.slow
@pytest.mark.parametrize("limited", ["queue", "task"])
def test_four_workers_never_start_more_than_the_rate_in_any_second(
    fleet: Fleet, limited: str
) -> None:
    """Over about 10 s at 20/s -- the queue's limit, or the task's -- the starts the database
    recorded (its own time) never number more than 20 in any window of one second, wherever
    the window begins."""
    app, rate, seconds = fleet.app, RATE, 10
    if limited == "queue":
        app.set_rate_limit("api", f"{rate}/s")
    task = app.get_task("flow.tick" if limited == "queue" else "flow.call")
    ids = [job.id for job in app.enqueue_many([task.job(n) for n in range(rate * seconds + 100)])]
    for n in range(4):
        fleet.start(f"w{n}", "--concurrency", "4")

    def started() -> int:
        return app.stats().get("api", {}).get(JobState.SUCCEEDED, 0)

    wait_for(lambda: started() >= rate * seconds, f"{rate * seconds} starts", 120, 0.2, fleet.logs)
    for proc in fleet.procs:
        proc.kill()
    starts = sorted(
        round(job.started_at * 1e6)
        for job in (app.get_job(i) for i in ids)
        if job.started_at is not None
    )
    assert len(starts) >= rate * seconds
    # No rate + 1 starts within one second (to the microsecond the database keeps times in).
    for first, last in zip(starts, starts[rate:], strict=False):
        assert last - first >= 1_000_000 - 2, f"{rate + 1} starts within {last - first} us"
