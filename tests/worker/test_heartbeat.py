"""Heartbeats keep a job that runs longer than its lease, even when a task blocks the loop or
holds the GIL: they come from a heartbeat process of the worker's own."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections import Counter

import pytest

from conveyor import JobState, WorkerState
from conveyor.worker.liveness import ProcessState, proc_state
from tests.worker.harness import LEASE, WorkerProcess, Workers, World, wait_for

pytestmark = pytest.mark.slow


def test_long_jobs_keep_their_lease_while_another_worker_sweeps(
    world: World, workers: Workers
) -> None:
    a = workers.start("A", concurrency=2)
    in_thread = world.app.get_task("sample.sleep_sync").enqueue(2 * LEASE).id
    # An ``async def`` task that calls time.sleep: A's event loop stands still for 1.5 leases.
    blocks_loop = world.app.get_task("sample.block_loop").enqueue(1.5 * LEASE).id
    ids = [in_thread, blocks_loop]
    wait_for(lambda: len(world.effects("start")) == 2, "both jobs to start in A")
    # B sweeps for expired leases every 0.2 s and would take the jobs if A's leases lapsed.
    b = workers.start("B", concurrency=2)

    wait_for(
        lambda: world.all_in(ids, JobState.SUCCEEDED),
        "both long jobs to succeed",
        on_timeout=lambda: world.describe(ids),
    )
    for job in world.jobs(ids):
        assert (job.attempts, job.lost_runs, job.errors, job.result) == (1, 0, [], a.pid), job
    for kind in ("start", "done"):
        effects = world.effects(kind)
        assert Counter(e.job_id for e in effects) == dict.fromkeys(ids, 1), kind
        assert {e.worker_pid for e in effects} == {a.pid}
    assert "rescued" not in b.log() and "lease lost" not in a.log()


def test_a_job_holding_the_gil_for_three_leases_keeps_its_lease(
    world: World, workers: Workers
) -> None:
    """No thread of A runs while the job sleeps in C with the GIL held; A's heartbeat process
    still beats, so B, sweeping for expired leases every 0.2 s meanwhile, never takes the job."""
    a = workers.start("A", concurrency=2)
    job_id = world.app.get_task("sample.hold_gil").enqueue(int(3 * LEASE)).id
    wait_for(lambda: world.effects("start", job_id), "the job to start in A")
    b = workers.start("B", concurrency=2)

    wait_for(
        lambda: world.app.get_job(job_id).state is JobState.SUCCEEDED,
        "the job to succeed",
        on_timeout=lambda: world.describe([job_id]),
    )
    job = world.app.get_job(job_id)
    assert (job.attempts, job.lost_runs, job.errors, job.result) == (1, 0, [], a.pid)
    effects = [(e.kind, e.worker_pid, e.attempt) for e in world.effects(job_id=job_id)]
    assert effects == [("start", a.pid, 1), ("done", a.pid, 1)]
    assert "rescued" not in b.log() and "lease lost" not in a.log()


def heartbeat_pids(worker: WorkerProcess) -> list[int]:
    """The heartbeat processes the worker started, in order (from its log)."""
    return [
        int(pid) for pid in re.findall(r"heartbeat process started \(pid (\d+)\)", worker.log())
    ]


def test_a_killed_heartbeat_process_is_replaced_before_the_lease_runs_out(
    world: World, workers: Workers
) -> None:
    # A longer lease than the other tests': room for a new interpreter to start on a busy CI
    # machine before the lease runs out.
    a = workers.start("A", concurrency=2, env={"CONVEYOR_LEASE": "6", "CONVEYOR_HEARTBEAT": "1"})
    release = world.tmp / "release"
    job_id = world.app.get_task("sample.hold").enqueue(str(release)).id
    wait_for(lambda: world.effects("start", job_id), "the job to start in A")
    b = workers.start("B", concurrency=2)
    wait_for(lambda: heartbeat_pids(a), "A's heartbeat process to start")
    [first] = heartbeat_pids(a)

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: len(heartbeat_pids(a)) == 2, "A to start another heartbeat process")
    expires = world.app.get_job(job_id).lease_expires_at
    assert expires is not None
    wait_for(
        lambda: (world.app.get_job(job_id).lease_expires_at or 0) > expires,
        "the new heartbeat process to extend the lease",
    )
    release.touch()
    wait_for(lambda: world.app.get_job(job_id).state is JobState.SUCCEEDED, "the job to succeed")
    job = world.app.get_job(job_id)
    assert (job.attempts, job.lost_runs, job.result) == (1, 0, a.pid)
    assert f"heartbeat process {first} exited" in a.log()
    assert "rescued" not in b.log() and "lease lost" not in a.log()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("fork", [False, True], ids=["plain", "a-forked-child-holds-the-pipe"])
def test_the_heartbeat_process_ends_with_its_worker(
    world: World, workers: Workers, fork: bool
) -> None:
    """The heartbeat process must not outlive its worker -- not even when a process the worker
    forked keeps the worker's end of their pipe open."""
    a = workers.start("A", concurrency=2)
    # Started beside the first claims, not before them: it may come after "ready".
    wait_for(lambda: heartbeat_pids(a), "the heartbeat process to start")
    [pulse] = heartbeat_pids(a)
    forked: list[int] = []
    if fork:
        job_id = world.app.get_task("sample.fork_sleeper").enqueue(60).id
        wait_for(lambda: world.app.get_job(job_id).state is JobState.SUCCEEDED, "the fork")
        forked = [e.data for e in world.effects("forked")]
    try:
        a.send(signal.SIGKILL)
        a.wait_exit()
        wait_for(lambda: proc_state(pulse) is ProcessState.GONE, "the heartbeat process to end")
        assert all(proc_state(pid) is ProcessState.RUNNING for pid in forked)
    finally:
        for pid in forked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_stopped_worker_is_declared_dead_and_registers_again_once_resumed(
    world: World, workers: Workers
) -> None:
    a = workers.start("A", concurrency=2)
    workers.start("B", concurrency=2)  # sweeps: declares dead the workers that stop beating

    def a_state() -> WorkerState:
        return next(w.state for w in world.app.workers() if w.pid == a.pid)

    a.send(signal.SIGSTOP)
    wait_for(lambda: a_state() is WorkerState.DEAD, "A to be declared dead")
    a.send(signal.SIGCONT)
    wait_for(lambda: a_state() is WorkerState.RUNNING, "A to register again")
    # Said by the heartbeat process, whose log lines reach A's stderr through A: perhaps after
    # the registration is visible.
    wait_for(lambda: "registering again" in a.log(), "A to say it registered again")
