"""The worker registry with real workers: registration and a clean exit, a stop asked through
the database, a frozen worker whose jobs come back long before their lease once its silence
tells it is dead, and the maintenance lease passing from one worker to another. (A killed
worker's jobs come back sooner still: tests/worker/test_recovery.py.)"""

from __future__ import annotations

import signal
import threading
from collections import Counter

import pytest

from conveyor import JobState, WorkerHealth, WorkerNotFound, WorkerState
from conveyor.errors import ConfigurationError
from tests.worker.harness import Workers, World, wait_for
from tests.worker.test_crash import worker_tag

#: Far longer than any test here waits: a job back within it was not rescued by lease expiry.
LONG_LEASE = 60.0
#: Beats every half second: dead 5 s (the minimum) after the last one.
SHORT_BEAT = 0.5
LONG_LEASE_ENV = {"CONVEYOR_LEASE": str(LONG_LEASE), "CONVEYOR_HEARTBEAT": str(SHORT_BEAT)}
#: Beats every 10 minutes: a stop heard within a test's deadline was not heard from a beat.
LONG_BEAT = 600.0
LONG_BEAT_ENV = {"CONVEYOR_LEASE": str(2 * LONG_BEAT), "CONVEYOR_HEARTBEAT": str(LONG_BEAT)}


def test_a_worker_registers_beats_and_leaves_on_a_stop_asked_through_the_database(
    world: World,
) -> None:
    app = world.app
    worker = app.worker(queues=["default", "emails"], concurrency=3, install_signal_handlers=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert worker.started.wait(30)
        [shown] = app.workers()
        assert shown.id == worker.id
        assert (shown.queues, shown.concurrency) == (("default", "emails"), 3)
        assert shown.health is WorkerHealth.ALIVE
        first_beat = shown.last_beat_at
        wait_for(lambda: app.workers()[0].last_beat_at > first_beat, "a beat")

        job_id = app.get_task("sample.add").enqueue(2, 3).id
        wait_for(lambda: app.get_job(job_id).state is JobState.SUCCEEDED, "the job to run")
        assert app.stop_workers([worker.id]) == [worker.id]
        assert worker.stopped.wait(30), "the worker did not stop"
    finally:
        worker.stop()
        thread.join(30)
    assert app.workers() == [], "a clean exit deregisters"


@pytest.mark.slow
def test_a_stop_asked_through_the_database_is_heard_long_before_the_next_beat(
    world: World, workers: Workers
) -> None:
    """A busy worker finishes its running job first; an idle one, which holds no run to look
    for cancel requests about, exits at once."""
    release = world.tmp / "release"
    job_id = world.app.get_task("sample.hold").enqueue(str(release)).id
    busy = workers.start("busy", env=LONG_BEAT_ENV)
    wait_for(lambda: world.effects("start"), "the job to start")
    idle = workers.start("idle", env=LONG_BEAT_ENV)
    # Each beats once as it starts: asked before that, the beat would answer.
    wait_for(
        lambda: sum(w.last_beat_at > w.started_at for w in world.app.workers()) == 2,
        "the first beat of both workers",
    )

    assert len(world.app.stop_workers(every=True)) == 2
    assert idle.wait_exit() == 0
    busy.wait_log("a stop was requested through the database")
    assert busy.alive(), "it waits for its running job"
    release.touch()
    assert busy.wait_exit() == 0
    job = world.app.get_job(job_id)
    assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 1, busy.pid)
    assert world.app.workers() == [], "both left the registry"


def test_stop_workers_takes_named_workers_or_every_one(world: World) -> None:
    app = world.app
    with pytest.raises(ConfigurationError, match="name the workers"):
        app.stop_workers()
    with pytest.raises(ConfigurationError, match="not both"):
        app.stop_workers(["a"], every=True)
    with pytest.raises(WorkerNotFound, match="'ghost'"):
        app.stop_workers("ghost")
    assert app.stop_workers(every=True) == []


@pytest.mark.slow
def test_a_frozen_workers_jobs_come_back_long_before_their_lease(
    world: World, workers: Workers
) -> None:
    """SIGSTOP: the process still exists, so only its silence tells that it is gone."""
    release = world.tmp / "release"
    hold = world.app.get_task("sample.hold")
    hold_async = world.app.get_task("sample.hold_async")
    specs = [(hold if i % 2 else hold_async).job(str(release)) for i in range(10)]
    ids = [job.id for job in world.app.enqueue_many(specs)]
    a = workers.start("A", concurrency=10, env=LONG_LEASE_ENV)
    wait_for(lambda: len({e.job_id for e in world.effects("start")}) == 10, "10 jobs to start")
    [a_row] = world.app.workers()

    a.freeze()
    held = {job.id: job for job in world.jobs(ids)}
    release.touch()
    b = workers.start("B", concurrency=10, env=LONG_LEASE_ENV)
    wait_for(
        lambda: world.all_in(ids, JobState.SUCCEEDED),
        "all 10 jobs to succeed in worker B",
        on_timeout=lambda: world.describe(ids),
    )

    for job in world.jobs(ids):
        # Each died beside the others: its run given back, run again alone (a suspect).
        assert (job.attempts, job.lost_runs, job.result) == (1, 1, b.pid), job
        assert job.worker_id is not None and worker_tag(b.pid) in job.worker_id
    reruns = [e for e in world.effects("start") if e.worker_pid == b.pid]
    assert sorted(e.job_id for e in reruns) == sorted(ids)
    for e in reruns:
        expires = held[e.job_id].lease_expires_at
        assert expires is not None
        assert e.at < expires - LONG_LEASE / 2, "rerun only once the lease ran out"
    assert Counter(e.job_id for e in world.effects("done")) == dict.fromkeys(ids, 1)

    assert f"declared worker(s) {a_row.id} dead (no heartbeat)" in b.log()
    assert "rescued expired leases" not in b.log()
    assert "now runs maintenance" in b.log(), "B took maintenance over from the dead A"
    shown = {w.id: w for w in world.app.workers()}
    assert (shown[a_row.id].state, shown[a_row.id].health) == (
        WorkerState.DEAD,
        WorkerHealth.DEAD,
    )
    assert {w.pid for w in shown.values() if w.health is WorkerHealth.ALIVE} == {b.pid}


@pytest.mark.slow
def test_maintenance_passes_on_when_its_worker_stops(world: World, workers: Workers) -> None:
    a = workers.start("A")
    a.wait_log("now runs maintenance")
    b = workers.start("B")
    assert sorted(w.pid for w in world.app.workers()) == sorted([a.pid, b.pid])
    assert "now runs maintenance" not in b.log(), "one worker at a time"

    a.send(signal.SIGTERM)
    assert a.wait_exit() == 0
    b.wait_log("now runs maintenance")
    assert [w.pid for w in world.app.workers()] == [b.pid], "A left the registry"
