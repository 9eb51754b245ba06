"""A poison job among 200 innocent ones, under ``conveyor worker --processes 2`` (issue 14).

``poison.kill`` calls ``os._exit(137)`` on every attempt. On a thread it takes its whole worker
process down with every job that process holds: those neighbours get their runs back and run
alone once, and only the deaths of the poison job while it ran alone count against it, so it
ends dead and every other job succeeds without losing an attempt. With ``isolation="process"``
only the job's own child dies: the worker records each death as a failed attempt and never
loses a neighbour. Both on SQLite and on PostgreSQL, with real processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState
from tests.chaos.poison_app import RUNS_ENV, register
from tests.support import enabled_backends
from tests.worker.harness import spawn_logged, wait_for

pytestmark = pytest.mark.slow

NORMAL = 200
#: Short sweeps: a dead worker's pid is found gone within a fraction of a second. The lease is
#: longer, so that a healthy worker slowed by a loaded machine does not lose its runs.
SETTINGS = {"lease": 5.0, "heartbeat": 0.5, "sweep_interval": 0.2}
STARTED = re.compile(r"worker \d+ started, pid (\d+)")


@contextmanager
def engine_app(engine: str, tmp: Path) -> Iterator[tuple[Conveyor, dict[str, str]]]:
    """The test's app on ``engine`` and the CONVEYOR_* variables that point workers at it."""
    env = {f"CONVEYOR_{name.upper()}": str(value) for name, value in SETTINGS.items()}
    if engine == "sqlite":
        url = f"sqlite:///{tmp / 'jobs.db'}"
        app = register(Conveyor(url, **SETTINGS))  # type: ignore[arg-type]
        try:
            app.backend  # noqa: B018  (migrated before any worker opens the file)
            yield app, {**env, "CONVEYOR_URL": url}
        finally:
            app.close()
        return
    if engine == "redis":
        from tests.redis_engine.factory import redis_database

        with redis_database() as (url, prefix):
            app = register(Conveyor(url, redis_prefix=prefix, **SETTINGS))  # type: ignore[arg-type]
            try:
                app.backend  # noqa: B018
                yield app, {**env, "CONVEYOR_URL": url, "CONVEYOR_REDIS_PREFIX": prefix}
            finally:
                app.close()
        return
    from tests.postgres.apps import postgres_app
    from tests.postgres.factory import new_schema, session_database

    schema = new_schema()
    with postgres_app(postgres_schema=schema, **SETTINGS) as app:
        register(app).backend  # noqa: B018
        yield (
            app,
            {
                **env,
                "CONVEYOR_URL": session_database().url,
                "CONVEYOR_POSTGRES_SCHEMA": schema,
            },
        )


@pytest.mark.parametrize("poison_task", ["poison.kill", "poison.kill_alone"])
@pytest.mark.parametrize("engine", enabled_backends())
def test_a_poison_job_dies_alone_and_every_other_job_succeeds_once(
    engine: str, poison_task: str, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    with engine_app(engine, tmp_path) as (app, env):
        jobs = [app.get_task("poison.work").job() for _ in range(NORMAL)]
        jobs.insert(NORMAL // 2, app.get_task(poison_task).job())
        ids = [job.id for job in app.enqueue_many(jobs)]
        poison = ids[NORMAL // 2]
        normal = [job_id for job_id in ids if job_id != poison]

        log = tmp_path / "supervisor.log"
        argv = [sys.executable, "-m", "conveyor.cli", "worker", "--app"]
        argv += ["tests.chaos.poison_app:app", "--processes", "2", "--concurrency", "4"]
        supervisor = spawn_logged(argv, {**env, RUNS_ENV: str(runs)}, log)
        try:

            def finished() -> bool:
                counts: Counter[JobState] = Counter()
                for per_queue in app.stats().values():
                    counts.update(per_queue)
                return counts[JobState.SUCCEEDED] + counts[JobState.DEAD] == len(ids)

            wait_for(finished, "every job to finish", 90.0, 0.1, lambda: _describe(app, ids, log))
            # Its exit status is not this test's business: a worker still starting when the
            # signal comes may exit by it.
            supervisor.send_signal(signal.SIGTERM)
            supervisor.wait(30)
        finally:
            _kill(supervisor, log)

        for job in map(app.get_job, normal):
            assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1), job
        dead = app.get_job(poison)
        assert dead.state is JobState.DEAD, dead
        assert dead.dead_reason is not None
        if poison_task == "poison.kill":
            # Its deaths while alone: three, its attempts; its first, beside others, was free.
            assert "while the job ran alone" in dead.dead_reason, dead.dead_reason
            assert dead.attempts == 3, dead
        else:
            assert dead.dead_reason.startswith(
                "attempts exhausted (3/3): conveyor.errors.ChildProcessDied: exit code 137"
            )
            assert (dead.attempts, dead.lost_runs) == (3, 0), dead
        ran = Counter(int(line) for line in runs.read_text().split())
        assert set(ran) == set(normal)
        if poison_task == "poison.kill_alone":
            assert set(ran.values()) == {1}, "a crash in a child process loses no neighbour"


def _describe(app: Conveyor, ids: list[int], log: Path) -> str:
    left = [job for job in map(app.get_job, ids) if job.state.is_live]
    return "\n".join(
        [f"job {j.id} {j.task}: {j.state} attempts={j.attempts} suspect={j.suspect}" for j in left]
        + [log.read_text(errors="replace")[-5000:]]
    )


def _kill(supervisor: subprocess.Popen[bytes], log: Path) -> None:
    """The supervisor and its workers, which run in process groups of their own."""
    with contextlib.suppress(OSError):
        supervisor.kill()
    supervisor.wait(10)
    for pid in STARTED.findall(log.read_text(errors="replace")):
        with contextlib.suppress(OSError):
            os.kill(int(pid), signal.SIGKILL)
