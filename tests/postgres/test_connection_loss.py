"""A real worker process loses its database and carries on: its sessions killed by the server
(on the shared server, only this test's own sessions), and a private cluster stopped
(``pg_ctl stop -m immediate``) under jobs in flight, then started again. Nothing is lost,
nothing is finished twice, and the side effects (counted in the test's own SQLite files) happen
exactly once per job, except where a killed worker's run had to be rescued."""

from __future__ import annotations

import random
import secrets
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from conveyor import JobState
from conveyor.backends.sql import parse_queries
from tests.postgres.factory import session_database
from tests.postgres.workers import PgWorkers, PgWorld, pg_world, private_cluster, wait_for

pytestmark = pytest.mark.slow

C = parse_queries((Path(__file__).parent / "connection.sql").read_text(encoding="utf-8"))


@pytest.fixture
def workers_cleanup() -> Iterator[list[PgWorkers]]:
    managers: list[PgWorkers] = []
    try:
        yield managers
    finally:
        for manager in managers:
            manager.cleanup()


def _terminate(url: str, prefix: str) -> int:
    with psycopg.connect(url, autocommit=True) as admin:
        return len(admin.execute(C["terminate_like"], {"prefix": prefix}).fetchall())


def _succeeded_at_least(world: PgWorld, count: int) -> Callable[[], bool]:
    """A wait_for condition: at least ``count`` jobs of ``world`` have succeeded."""
    return lambda: world.count(JobState.SUCCEEDED) >= count


def _exactly_once(world: PgWorld, ids: list[int]) -> None:
    wanted = set(ids)
    done = Counter(e.job_id for e in world.effects("done") if e.job_id in wanted)
    assert done == dict.fromkeys(ids, 1), "a job ran twice or its effect was lost"


def test_a_worker_survives_the_server_killing_its_sessions(
    tmp_path: Path, workers_cleanup: list[PgWorkers]
) -> None:
    database = session_database()
    name = f"conveyor-w{secrets.token_hex(4)}"
    settings = {"lease": 3.0, "heartbeat": 0.5, "sweep_interval": 0.3}
    with pg_world(tmp_path, database.url, **settings) as world:
        workers = PgWorkers(world)
        workers_cleanup.append(workers)
        # The worker's sessions carry a name of their own: only they are killed.
        worker = workers.start(
            "W",
            concurrency=8,
            env={"CONVEYOR_URL": make_conninfo(database.url, application_name=name)},
        )
        work = world.app.get_task("pg.work")
        rng = random.Random(7)
        total = 600
        ids = [
            j.id for j in world.app.enqueue_many(work.job(rng.uniform(2, 15)) for _ in range(total))
        ]

        killed = 0
        for round_ in range(1, 6):
            done = round_ * total // 7
            wait_for(_succeeded_at_least(world, done), f"{done} jobs done", on_timeout=workers.logs)
            killed += _terminate(database.url, name)
        assert killed >= 5

        wait_for(
            lambda: world.count(JobState.SUCCEEDED) == total,
            "every job to succeed",
            timeout=60,
            on_timeout=lambda: f"{world.counts()}\n{workers.logs()}",
        )
        assert worker.alive(), worker.log()
        _exactly_once(world, ids)
        assert "Traceback" not in worker.log()
        worker.send(signal.SIGTERM)
        assert worker.wait_exit() == 0


def test_a_worker_rides_out_a_server_crash_and_restart(
    tmp_path: Path, workers_cleanup: list[PgWorkers]
) -> None:
    settings = {
        "lease": 12.0,
        "heartbeat": 0.5,
        "sweep_interval": 0.5,
        "postgres_connect_timeout": 2.0,
    }
    with private_cluster() as cluster, pg_world(tmp_path, cluster.url(), **settings) as world:
        workers = PgWorkers(world)
        workers_cleanup.append(workers)
        app = world.app

        # A worker that will be killed while the server is down: its runs must be rescued
        # once their leases expire.
        doomed_worker = workers.start("doomed", concurrency=4, queues=["doomed"])
        hangs = app.get_task("pg.first_run_hangs").options(queue="doomed")
        doomed = [j.id for j in app.enqueue_many(hangs.job(120.0) for _ in range(4))]
        wait_for(
            lambda: len(world.effects("start")) == 4,
            "the doomed runs to start",
            on_timeout=workers.logs,
        )

        # The survivor takes both queues; its jobs take 0.3-2.5 s, so that many finish while
        # the server is down and their outcomes have to wait in its completer.
        survivor = workers.start("survivor", concurrency=8, queues=["default", "doomed"])
        sleepy = app.get_task("pg.sleepy")
        rng = random.Random(11)
        ids = [j.id for j in app.enqueue_many(sleepy.job(rng.uniform(0.3, 2.5)) for _ in range(40))]
        wait_for(
            lambda: world.count(JobState.SUCCEEDED) >= 8,
            "the first jobs to finish",
            on_timeout=workers.logs,
        )

        cluster.stop("immediate")
        down_at = time.time()
        doomed_worker.kill()
        # Let the server stay away for a while (jobs keep finishing meanwhile).
        wait_for(lambda: time.time() - down_at >= 4.0, "the outage to last 4 s", interval=0.1)
        cluster.start()
        up_at = time.time()

        wait_for(
            lambda: world.count(JobState.SUCCEEDED) == 44,
            "every job to succeed after the restart",
            timeout=60,
            interval=0.2,
            on_timeout=lambda: f"{world.counts()}\n{workers.logs()}",
        )
        assert survivor.alive(), survivor.log()

        # Nothing lost, nothing finished twice; the survivor's jobs ran exactly once.
        _exactly_once(world, ids)
        finished_while_down = [
            e for e in world.effects("done") if e.job_id in set(ids) and down_at < e.at < up_at
        ]
        assert finished_while_down, "no outcome had to wait for the server"
        for job in world.app.list_jobs(limit=100):
            if job.id in ids:
                assert (job.state, job.attempts, job.lost_runs) == (JobState.SUCCEEDED, 1, 0)
        # The killed worker's runs were rescued after their lease and done by the survivor;
        # it held four, so none was charged the lost run (poison isolation).
        for job_id in doomed:
            job = app.get_job(job_id)
            assert (job.state, job.attempts, job.lost_runs) == (JobState.SUCCEEDED, 1, 1)
        done = [e for e in world.effects("done") if e.job_id in set(doomed)]
        assert sorted(e.job_id for e in done) == sorted(doomed)
        assert {e.worker_pid for e in done} == {survivor.pid}

        log = survivor.log()
        assert "Traceback" not in log
        assert "could not write" in log  # the completer did have to hold outcomes back
        survivor.send(signal.SIGTERM)
        assert survivor.wait_exit() == 0
