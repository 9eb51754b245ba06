"""Real worker processes on PostgreSQL: a job that holds its worker's GIL for three leases keeps
its lease (the heartbeats come from a process of their own); a stopped worker loses its job and
its late writes change nothing; a cancel reaches a running job of every kind between two
heartbeats, at the default settings."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import JobState
from conveyor.settings import Settings
from tests.postgres.factory import session_database
from tests.postgres.workers import PgWorkers, PgWorld, pg_world, wait_for

pytestmark = pytest.mark.slow

SHORT = {"lease": 2.0, "heartbeat": 0.5, "sweep_interval": 0.2}
#: A worker beats at its first claim, then every 10 s (the default): a cancel heard within half
#: of that was heard between beats.
BETWEEN_BEATS = Settings().heartbeat / 2
JOB_CANCELLED = "conveyor.errors.JobCancelled"


@pytest.fixture
def short(tmp_path: Path) -> Iterator[tuple[PgWorld, PgWorkers]]:
    with pg_world(tmp_path, session_database().url, **SHORT) as world:
        workers = PgWorkers(world)
        try:
            yield world, workers
        finally:
            workers.cleanup()


def test_a_job_holding_the_gil_for_three_leases_keeps_its_lease(
    short: tuple[PgWorld, PgWorkers],
) -> None:
    world, workers = short
    a = workers.start("A", concurrency=2)
    job_id = world.app.get_task("pg.hold_gil").enqueue(int(3 * SHORT["lease"])).id
    wait_for(lambda: world.effects("start"), "the job to start in A")
    b = workers.start("B", concurrency=2)  # sweeps every 0.2 s while A's GIL is held

    wait_for(
        lambda: world.app.get_job(job_id).state is JobState.SUCCEEDED,
        "the job to succeed",
        on_timeout=workers.logs,
    )
    job = world.app.get_job(job_id)
    assert (job.attempts, job.lost_runs, job.errors, job.result) == (1, 0, [], a.pid)
    effects = sorted((e.kind, e.worker_pid) for e in world.effects())
    assert effects == [("done", a.pid), ("start", a.pid)]
    assert "rescued" not in b.log() and "lease lost" not in a.log()


def test_a_stopped_worker_loses_its_job_and_its_late_outcome_changes_nothing(
    short: tuple[PgWorld, PgWorkers],
) -> None:
    world, workers = short
    a = workers.start("A", concurrency=2)
    job_id = world.app.get_task("pg.first_run_hangs").enqueue(1.0).id
    wait_for(lambda: world.effects("start"), "the job to start in A")
    a.send(signal.SIGSTOP)
    b = workers.start("B", concurrency=2)
    wait_for(
        lambda: world.app.get_job(job_id).state is JobState.SUCCEEDED,
        "B to run the job once A's lease ran out",
        on_timeout=workers.logs,
    )
    finished = world.app.get_job(job_id)
    assert (finished.attempts, finished.lost_runs, finished.result) == (2, 1, b.pid)

    a.send(signal.SIGCONT)
    wait_for(
        lambda: any(e.worker_pid == a.pid for e in world.effects("done")),
        "A's run to finish its function body",
    )
    a.send(signal.SIGTERM)
    assert a.wait_exit() == 0
    assert world.app.get_job(job_id) == finished, "the stale run changed the job"
    assert "lease lost" in a.log()


@pytest.mark.parametrize(
    ("task", "seen"),
    [("pg.wait_async", None), ("pg.wait_thread", "saw_cancel"), ("pg.spin_process", None)],
)
def test_a_cancel_reaches_a_running_job_between_heartbeats(
    tmp_path: Path, task: str, seen: str | None
) -> None:
    with pg_world(tmp_path, session_database().url) as world:
        workers = PgWorkers(world)
        try:
            a = workers.start("A", concurrency=2)
            job_id = world.app.get_task(task).enqueue().id
            wait_for(lambda: world.effects("start"), "the job to start")

            requested = time.monotonic()
            assert world.app.cancel(job_id).cancel_requested
            wait_for(
                lambda: world.app.get_job(job_id).state is JobState.CANCELLED,
                "the job to be cancelled",
                on_timeout=workers.logs,
            )
            took = time.monotonic() - requested
            print(f"cancel of {task} took {took:.3f}s")
            assert took < BETWEEN_BEATS, f"cancel took {took:.2f}s"
            job = world.app.get_job(job_id)
            assert (job.attempts, job.lost_runs) == (1, 0)
            assert [e.type for e in job.errors] == [JOB_CANCELLED]
            if seen is not None:
                assert [e.kind for e in world.effects(seen)] == [seen]
            assert a.alive()
        finally:
            workers.cleanup()
