"""Another process holds the SQLite file's write lock for seconds: Conveyor waits for it.

The lock is taken by a separate process with raw ``sqlite3`` and ``BEGIN EXCLUSIVE`` (in WAL
mode the same as IMMEDIATE: readers go on, every writer waits). Enqueue waits and succeeds once
the lock is released; a running worker keeps going without logging an error; only a
``lock_timeout`` shorter than the hold turns into ``DatabaseBusy`` -- naming the file, in one
line, with nothing written.
"""

from __future__ import annotations

import signal
import time

import pytest

from conveyor import JobState
from conveyor.errors import DatabaseBusy
from tests.chaos.helpers import LOCK_LEAKS, Helpers, hold_write_lock, integrity_check, states
from tests.worker.harness import Workers, World, wait_for
from tests.worker.sample_app import build_app

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "hold",
    [
        pytest.param(3.0, id="3s"),
        # Longer than SQLite's own busy timeout (5 s): Connection's retry loop takes over.
        pytest.param(6.5, id="6.5s-past-busy-timeout"),
    ],
)
def test_enqueue_waits_for_the_lock_and_succeeds(
    world: World, helpers: Helpers, hold: float
) -> None:
    quick = world.app.get_task("sample.quick")
    before = quick.enqueue(0)

    with hold_write_lock(helpers, world.db_path, hold) as lock:
        started = time.monotonic()
        single = quick.enqueue(1)
        bulk = world.app.enqueue_many([quick.job(n) for n in range(2, 102)])
        waited = time.monotonic() - started
        # Committing needs the write lock: neither enqueue can return before the holder let go.
        assert lock.released, f"enqueue returned after {waited:.2f}s while the lock was held"

    ids = [before.id, single.id, *(job.id for job in bulk)]
    assert len(set(ids)) == 102
    assert world.all_in(ids, JobState.QUEUED)
    assert states(world) == {JobState.QUEUED: 102}
    assert integrity_check(world.db_path) == ["ok"]


def test_short_lock_timeout_raises_database_busy_and_writes_nothing(
    world: World, helpers: Helpers
) -> None:
    impatient = build_app(world.url, lock_timeout=0.5)
    try:
        quick = impatient.get_task("sample.quick")
        quick.enqueue(0)
        hold = 3.0
        with hold_write_lock(helpers, world.db_path, hold) as lock:
            for attempt in (
                lambda: quick.enqueue(1),
                lambda: impatient.enqueue_many([quick.job(n) for n in range(100)]),
            ):
                started = time.monotonic()
                with pytest.raises(DatabaseBusy) as caught:
                    attempt()
                gave_up_after = time.monotonic() - started
                assert not lock.released, "DatabaseBusy only after the holder let go"
                assert gave_up_after < hold - 0.5, f"gave up after {gave_up_after:.2f}s"
                message = str(caught.value)
                assert "\n" not in message, message
                assert str(world.db_path) in message, message
                assert "locked" in message, message
                # Reads are not blocked by a writer in WAL mode.
                assert states(world) == {JobState.QUEUED: 1}

        assert states(world) == {JobState.QUEUED: 1}, "a failed enqueue wrote something"
        # The same connection works again once the lock is free.
        after = quick.enqueue(2)
        assert world.app.get_job(after.id).state is JobState.QUEUED
        assert states(world) == {JobState.QUEUED: 2}
        assert integrity_check(world.db_path) == ["ok"]
    finally:
        impatient.close()


def test_a_claim_that_waited_for_the_lock_gets_a_whole_lease(
    world: World, helpers: Helpers
) -> None:
    """A lease starts when the claim gets the write lock, not when it began to wait for it.

    Otherwise a worker that waited longer than the lease would be handed runs that are already
    expired, and the next sweep (its own, or another worker's) would take them away again."""
    quick = world.app.get_task("sample.quick")
    ids = [job.id for job in world.app.enqueue_many([quick.job(n) for n in range(5)])]
    backend = world.app.backend
    lease = 2.0
    with hold_write_lock(helpers, world.db_path, 3.0) as lock:
        claimed = backend.claim("chaos-test-worker", None, 10, lease)
        assert lock.released
        claimed_by = time.time()  # SQLite's database clock is this machine's clock

    assert sorted(job.id for job in claimed) == ids
    for job in world.jobs(ids):
        assert job.state is JobState.RUNNING
        assert job.lease_expires_at is not None
        left = job.lease_expires_at - claimed_by
        assert left > lease / 2, f"job {job.id} was claimed with {left:.2f}s of a {lease}s lease"
    rescued = backend.rescue_expired()
    assert rescued.requeued == [], "runs claimed a moment ago were rescued as expired"


def test_running_worker_rides_out_a_lock_held_by_another_process(
    world: World, workers: Workers, helpers: Helpers
) -> None:
    """Jobs finish while the file is locked: their outcomes wait for the lock, the queued jobs
    are claimed after it, and the worker never logs an error.

    The lease is longer than the hold: a lock held past the lease is a database outage like any
    other, and the runs it outlasted are rescued and run again (at-least-once)."""
    running = 4
    release = world.tmp / "release"
    w = workers.start(
        "W",
        concurrency=running,
        env={"CONVEYOR_LEASE": "20", "CONVEYOR_HEARTBEAT": "1"},
    )
    hold = world.app.get_task("sample.hold")
    held_ids = [job.id for job in world.app.enqueue_many([hold.job(str(release))] * running)]
    wait_for(
        lambda: len({e.job_id for e in world.effects("start")}) == running,
        f"the worker to start {running} jobs",
    )
    # The worker is full: these wait in the queue until a slot frees.
    quick = world.app.get_task("sample.quick")
    queued_ids = [job.id for job in world.app.enqueue_many([quick.job(n) for n in range(20)])]

    with hold_write_lock(helpers, world.db_path, 3.0, until_let_go=True) as lock:
        release.touch()
        wait_for(
            lambda: len(world.effects("done")) == running, "the held jobs to finish their work"
        )
        # Their outcomes cannot be written yet: the jobs are still running in the database.
        assert not lock.released
        assert world.all_in(held_ids, JobState.RUNNING), world.describe(held_ids)
        assert world.all_in(queued_ids, JobState.QUEUED), world.describe(queued_ids)
        lock.release()

    all_ids = held_ids + queued_ids
    wait_for(
        lambda: world.all_in(all_ids, JobState.SUCCEEDED),
        "every job to succeed after the lock was released",
        on_timeout=lambda: world.describe(all_ids),
    )
    assert w.alive(), w.log()
    for job in world.jobs(all_ids):
        assert (job.attempts, job.lost_runs, job.errors) == (1, 0, []), job
    dones = world.effects("done")
    assert sorted(e.job_id for e in dones) == sorted(all_ids), "a job ran twice or not at all"

    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0, w.log()
    log = w.log()
    for bad in (*LOCK_LEAKS, "could not write", "failed"):
        assert bad not in log, f"the worker logged {bad!r}:\n{log}"
    assert integrity_check(world.db_path) == ["ok"]
