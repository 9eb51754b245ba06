"""Suspects on a fleet that never goes idle (issue 14, point 1's follow-up).

A suspect is claimed only by a worker that holds nothing. Under a backlog that never runs out
(``busy.feed`` enqueues its own replacement) no worker of ``conveyor worker --processes 2``
ever holds nothing by itself: one of them must make room (drain) for the suspects, or they
wait for ever. Both on SQLite and on PostgreSQL, with real processes.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conveyor import Conveyor, JobState
from conveyor.worker_info import WorkerRegistration
from tests.chaos.busy_app import RUNS_ENV, STOP_ENV, register
from tests.chaos.test_poison import _kill, engine_app
from tests.support import enabled_backends
from tests.worker.harness import spawn_logged, wait_for

pytestmark = pytest.mark.slow

SUSPECTS = 20
BACKLOG = 200
PREFETCH = 20
GHOST = "ghost"


def _ghost_holds(app: Conveyor, ids: list[int]) -> None:
    """A worker that claimed ``ids`` and will die holding them all: they become suspects."""
    backend = app.backend
    backend.register_worker(
        WorkerRegistration(
            id=GHOST,
            host="elsewhere",
            pid=1,
            machine=None,
            queues=None,
            concurrency=SUSPECTS,
            beat_interval=1.0,
            dead_after=3600.0,
        )
    )
    claimed = backend.claim(GHOST, None, len(ids), 3600.0)
    assert sorted(job.id for job in claimed) == sorted(ids)


@pytest.mark.parametrize("engine", enabled_backends())
def test_suspects_run_while_a_backlog_keeps_every_worker_busy(engine: str, tmp_path: Path) -> None:
    runs, stop = tmp_path / "runs", tmp_path / "stop"
    with engine_app(engine, tmp_path) as (app, env):
        register(app)
        mark = app.get_task("busy.mark")
        suspects = [job.id for job in app.enqueue_many([mark.job() for _ in range(SUSPECTS)])]
        _ghost_holds(app, suspects)
        feed = app.get_task("busy.feed")
        app.enqueue_many([feed.job() for _ in range(BACKLOG)])

        log = tmp_path / "supervisor.log"
        argv = [sys.executable, "-m", "conveyor.cli", "worker", "--app"]
        argv += ["tests.chaos.busy_app:app", "--processes", "2", "--concurrency", "4"]
        # Prefetched jobs keep a worker from ever holding nothing while the backlog lasts.
        argv += ["--prefetch", str(PREFETCH)]
        supervisor = spawn_logged(argv, {**env, RUNS_ENV: str(runs), STOP_ENV: str(stop)}, log)
        try:

            def fed(count: int) -> bool:
                return app.stats().get("default", {}).get(JobState.SUCCEEDED, 0) >= count

            # Both workers are busy with the backlog before the ghost dies.
            wait_for(lambda: fed(2 * BACKLOG), "the backlog to flow", 60.0, 0.05)
            assert app.backend.reap_dead_workers(known_dead=[GHOST]).workers == [GHOST]
            assert all(job.suspect for job in map(app.get_job, suspects))

            def every_suspect_ran() -> bool:
                return all(app.get_job(i).state is JobState.SUCCEEDED for i in suspects)

            def describe() -> str:
                left = [j for j in map(app.get_job, suspects) if j.state.is_live]
                lines = [f"job {j.id}: {j.state} suspect={j.suspect}" for j in left]
                return "\n".join([*lines, log.read_text(errors="replace")[-3000:]])

            # Within a second or two once a worker drains; without it they wait as long as the
            # backlog lasts (some rare idle moment took 35 s and more in trials).
            wait_for(every_suspect_ran, "every suspect to run", 30.0, 0.05, describe)
            # The backlog never ran out meanwhile: the workers were busy throughout.
            assert app.stats()["default"].get(JobState.QUEUED, 0) > 0
            stop.touch()
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(30)
            except subprocess.TimeoutExpired:
                tail = log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"the workers did not stop within 30 s:\n{tail}") from None
        finally:
            stop.touch()
            _kill(supervisor, log)

        for job in map(app.get_job, suspects):
            assert (job.attempts, job.lost_runs) == (1, 1), job
        assert Counter(int(line) for line in runs.read_text().split()) == Counter(suspects)
