"""A SIGKILLed worker's jobs come back within a sweep when another worker on the same machine
sees its process gone: neither its lease nor its beats are waited out.

Leases and beats here are far longer than any test waits: a job back in time was released
because its worker's process was gone, by whichever worker noticed first.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from conveyor import JobState, WorkerState
from tests.worker.harness import WorkerProcess, Workers, World, wait_for
from tests.worker.test_crash import worker_tag

pytestmark = pytest.mark.slow

LONG_LEASE = 60.0
#: A worker beating every 20 s counts as dead only after a minute of silence.
LONG_BEAT = 20.0
LONG_ENV = {"CONVEYOR_LEASE": str(LONG_LEASE), "CONVEYOR_HEARTBEAT": str(LONG_BEAT)}
#: Well under both the lease and a minute of silence, generous for a slow machine.
BACK_WITHIN = LONG_LEASE / 4


def enqueue_held(world: World, count: int) -> list[int]:
    """``count`` jobs (thread and async ones) that run until the test's release file exists."""
    release = world.tmp / "release"
    hold = world.app.get_task("sample.hold")
    hold_async = world.app.get_task("sample.hold_async")
    specs = [(hold if i % 2 else hold_async).job(str(release)) for i in range(count)]
    return [job.id for job in world.app.enqueue_many(specs)]


def assert_rerun_once_by(world: World, ids: list[int], pid: int, killed_at: float) -> None:
    for job in world.jobs(ids):
        # Each died beside the others: its run given back, run again alone (a suspect).
        assert (job.state, job.attempts, job.lost_runs, job.result) == (
            JobState.SUCCEEDED,
            1,
            1,
            pid,
        ), job
        assert job.worker_id is not None and worker_tag(pid) in job.worker_id
    reruns = [e for e in world.effects("start") if e.worker_pid == pid]
    assert sorted(e.job_id for e in reruns) == sorted(ids)
    for e in reruns:
        assert killed_at < e.at < killed_at + BACK_WITHIN, (
            f"job {e.job_id} rerun {e.at - killed_at:.1f}s after the kill"
        )
    assert Counter(e.job_id for e in world.effects("done")) == dict.fromkeys(ids, 1)


def _release_and_kill(world: World, worker: WorkerProcess) -> float:
    """Let the held jobs finish, and SIGKILL ``worker`` before it can: when it was killed."""
    (world.tmp / "release").touch()
    killed_at = time.time()
    worker.send(signal.SIGKILL)
    assert worker.wait_exit() == -signal.SIGKILL
    return killed_at


def _wait_all_succeeded(world: World, ids: list[int]) -> None:
    wait_for(
        lambda: world.all_in(ids, JobState.SUCCEEDED),
        "B to run A's 10 jobs",
        timeout=BACK_WITHIN,
        on_timeout=lambda: world.describe(ids),
    )


def test_a_running_worker_takes_a_killed_neighbours_jobs_and_maintenance_at_once(
    world: World, workers: Workers
) -> None:
    ids = enqueue_held(world, 10)
    a = workers.start("A", concurrency=10, env=LONG_ENV)
    wait_for(lambda: len({e.job_id for e in world.effects("start")}) == 10, "10 jobs to start")
    a.wait_log("now runs maintenance")
    b = workers.start("B", concurrency=10, env=LONG_ENV)
    [a_id] = [w.id for w in world.app.workers() if w.pid == a.pid]

    killed_at = _release_and_kill(world, a)
    _wait_all_succeeded(world, ids)

    assert_rerun_once_by(world, ids, b.pid, killed_at)
    assert f"declared worker(s) {a_id} dead (process gone)" in b.log()
    assert "rescued expired leases" not in b.log()
    # A held maintenance for another LEASE_SWEEPS sweeps at least; declared dead, it let go.
    b.wait_log("now runs maintenance", timeout=BACK_WITHIN)
    shown = {w.id: w for w in world.app.workers()}
    assert shown[a_id].state is WorkerState.DEAD


def test_a_restarted_worker_releases_its_dead_predecessors_jobs_before_it_claims(
    world: World, workers: Workers
) -> None:
    ids = enqueue_held(world, 10)
    a = workers.start("A", concurrency=10, env=LONG_ENV)
    wait_for(lambda: len({e.job_id for e in world.effects("start")}) == 10, "10 jobs to start")
    [a_id] = [w.id for w in world.app.workers()]

    killed_at = _release_and_kill(world, a)
    b = workers.start("B", concurrency=10, env=LONG_ENV)
    _wait_all_succeeded(world, ids)

    assert_rerun_once_by(world, ids, b.pid, killed_at)
    log = b.log()
    declared = log.index(f"declared worker(s) {a_id} dead (process gone)")
    assert declared < log.index(" ready: "), "at start-up, before claiming"
