"""On PostgreSQL: a SIGKILLed worker is declared dead by another one on the same machine, which
finds its process gone: its jobs come back within seconds, long before their lease or a minute
of silence, and maintenance passes on at once. An idle worker asked to stop through the
database hears it long before its next beat."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from conveyor import JobState, WorkerHealth, WorkerState
from tests.postgres.factory import session_database
from tests.postgres.workers import PgWorkers, pg_world, wait_for

pytestmark = pytest.mark.slow

LONG_LEASE = 60.0
#: A worker beating every 20 s counts as dead only after a minute of silence.
LONG_BEAT = 20.0
#: Well under both, generous for a slow machine.
BACK_WITHIN = LONG_LEASE / 4
#: Beats every 10 minutes: a stop heard within a test's deadline was not heard from a beat.
TEN_MINUTE_BEAT = 600.0


def test_a_sigkilled_workers_jobs_come_back_long_before_their_lease(tmp_path: Path) -> None:
    settings = {"lease": LONG_LEASE, "heartbeat": LONG_BEAT, "sweep_interval": 0.2}
    with pg_world(tmp_path, session_database().url, **settings) as world:
        workers = PgWorkers(world)
        try:
            task = world.app.get_task("pg.first_run_hangs")
            ids = [job.id for job in world.app.enqueue_many([task.job(600.0)] * 4)]
            a = workers.start("A", concurrency=4)
            wait_for(lambda: len(world.effects("start")) == 4, "A to start the 4 jobs")
            a.wait_log("now runs maintenance")
            [a_row] = world.app.workers()
            b = workers.start("B", concurrency=4)

            killed_at = time.time()
            a.send(signal.SIGKILL)
            assert a.wait_exit() == -signal.SIGKILL
            wait_for(
                lambda: all(world.app.get_job(i).state is JobState.SUCCEEDED for i in ids),
                "B to run the 4 jobs",
                timeout=BACK_WITHIN,
                on_timeout=workers.logs,
            )
            for job_id in ids:
                job = world.app.get_job(job_id)
                # A held four runs: none is charged for the loss (poison isolation).
                assert (job.attempts, job.lost_runs, job.result) == (1, 1, b.pid), job
            reruns = [e for e in world.effects("start") if e.worker_pid == b.pid]
            assert Counter(e.job_id for e in reruns) == dict.fromkeys(ids, 1)
            for e in reruns:
                assert killed_at < e.at < killed_at + BACK_WITHIN

            assert f"declared worker(s) {a_row.id} dead (process gone)" in b.log()
            assert "rescued expired leases" not in b.log()
            # A's maintenance lease outlives a few sweeps; declared dead, A let go of it.
            b.wait_log("now runs maintenance", timeout=BACK_WITHIN)
            shown = {w.id: w for w in world.app.workers()}
            assert (shown[a_row.id].state, shown[a_row.id].health) == (
                WorkerState.DEAD,
                WorkerHealth.DEAD,
            )
            b.send(signal.SIGTERM)
            assert b.wait_exit() == 0
            assert [w.id for w in world.app.workers()] == [a_row.id], "B deregistered"
        finally:
            workers.cleanup()


def test_an_idle_worker_asked_to_stop_through_the_database_stops_before_its_next_beat(
    tmp_path: Path,
) -> None:
    settings = {"lease": 2 * TEN_MINUTE_BEAT, "heartbeat": TEN_MINUTE_BEAT}
    with pg_world(tmp_path, session_database().url, **settings) as world:
        workers = PgWorkers(world)
        try:
            worker = workers.start("A")
            # It beats once as it starts: asked before that, the beat would answer.
            wait_for(
                lambda: [w.last_beat_at > w.started_at for w in world.app.workers()] == [True],
                "its first beat",
            )
            assert len(world.app.stop_workers(every=True)) == 1
            assert worker.wait_exit() == 0
            assert world.app.workers() == [], "it left the registry"
        finally:
            workers.cleanup()
