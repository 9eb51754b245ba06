"""A worker whose database went away still stops within its grace period and a few seconds
(issue 14): the steps after the grace period share one deadline, and what cannot be written
back (a release, the deregistration) is left to the lease and to dead-worker detection.

The server is a private cluster, stopped under an idle and under a busy worker; the default
connect timeout (10 s) is kept, since a wait on it per step is what made a stop last 46 s.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from conveyor import JobState
from conveyor.worker.worker import SHUTDOWN_WRITE_BACK
from tests.postgres.workers import PgWorkers, pg_world, private_cluster, wait_for

pytestmark = pytest.mark.slow

GRACE = 2.0
#: Process start-up and teardown on a loaded 2-CPU machine, beyond the documented bound.
SLACK = 3.0


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_a_worker_stops_on_time_while_its_database_is_down(tmp_path: Path, busy: bool) -> None:
    settings = {"lease": 30.0, "heartbeat": 0.5, "sweep_interval": 0.5}
    with private_cluster() as cluster, pg_world(tmp_path, cluster.url(), **settings) as world:
        workers = PgWorkers(world)
        try:
            # The URL's connect_timeout=3 would shorten every wait: the worker uses the default.
            url = f"postgresql://postgres@127.0.0.1:{cluster.port}/postgres"
            worker = workers.start("W", concurrency=4, grace=GRACE, env={"CONVEYOR_URL": url})
            if busy:
                # Two coroutines and two threads that run until they are cancelled.
                app = world.app
                specs = [app.get_task("pg.wait_async").job() for _ in range(2)]
                specs += [app.get_task("pg.wait_thread").job() for _ in range(2)]
                ids = [job.id for job in app.enqueue_many(specs)]
                wait_for(lambda: len(world.effects("start")) == 4, "4 runs to start")
                assert world.count(JobState.RUNNING) == 4
            else:
                ids = []
            cluster.stop("immediate")
            time.sleep(1.0)  # let the worker notice: a claim or a beat fails meanwhile
            started = time.monotonic()
            worker.send(signal.SIGTERM)
            code = worker.wait_exit(60)
            took = time.monotonic() - started
            assert took <= GRACE + SHUTDOWN_WRITE_BACK + SLACK, (took, worker.log())
            assert code == 0, worker.log()
        finally:
            workers.cleanup()
        if busy:
            # Nothing was lost: the runs are still leased to the gone worker, for rescue.
            cluster.start()
            for job in map(world.app.get_job, ids):
                assert job.state is JobState.RUNNING, job
