"""Workers that die or freeze mid-run: their jobs come back exactly once -- a killed worker's as
soon as another worker of the machine finds its process gone, a frozen one's after its lease.

Every test here runs real worker processes and kills or stops them with real signals.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from conveyor import JobState
from tests.worker.harness import LEASE, SWEEP, Workers, World, wait_for

pytestmark = pytest.mark.slow


def worker_tag(pid: int) -> str:
    """Worker ids are ``host:pid:random``."""
    return f":{pid}:"


def test_sigkill_with_100_jobs_in_flight_each_rerun_once_by_the_next_worker(
    world: World, workers: Workers
) -> None:
    release = world.tmp / "release"
    hold = world.app.get_task("sample.hold")
    hold_async = world.app.get_task("sample.hold_async")
    specs = [(hold if i % 2 else hold_async).job(str(release)) for i in range(100)]
    ids = [job.id for job in world.app.enqueue_many(specs)]

    a = workers.start("A", concurrency=100)
    wait_for(
        lambda: len({e.job_id for e in world.effects("start")}) == 100,
        "all 100 jobs to start in worker A",
    )
    assert world.count(JobState.RUNNING) == 100
    [a_id] = [w.id for w in world.app.workers()]

    killed_at = time.time()
    a.send(signal.SIGKILL)
    assert a.wait_exit() == -signal.SIGKILL
    for job in world.jobs(ids):
        assert job.state is JobState.RUNNING, job
        assert job.attempts == 1
        assert job.worker_id is not None and worker_tag(a.pid) in job.worker_id
        assert job.lease_expires_at is not None

    # B starts at once, on the same machine: A's process is gone, so B declares A dead and
    # takes its jobs back before it claims, whatever A's leases say.
    release.touch()
    b = workers.start("B", concurrency=100)
    wait_for(
        lambda: world.all_in(ids, JobState.SUCCEEDED),
        "all 100 jobs to succeed in worker B",
        on_timeout=lambda: world.describe(ids),
    )

    stats = world.app.stats()
    assert dict(stats["default"]) == {JobState.SUCCEEDED: 100}
    for job in world.jobs(ids):
        # A held 100 jobs when it died: none can be blamed, each gets its run back and runs
        # alone once as a suspect (poison isolation).
        assert job.attempts == 1, job
        assert job.lost_runs == 1, job
        assert job.result == b.pid
        assert job.worker_id is not None and worker_tag(b.pid) in job.worker_id

    starts = world.effects("start")
    dones = world.effects("done")
    assert Counter(e.job_id for e in starts) == dict.fromkeys(ids, 2)
    assert sorted(e.job_id for e in dones) == sorted(ids), "each job completed exactly once"
    assert {(e.worker_pid, e.attempt) for e in dones} == {(b.pid, 1)}
    assert {(e.worker_pid, e.attempt) for e in starts} == {(a.pid, 1), (b.pid, 1)}
    for e in starts:
        if e.worker_pid != b.pid:
            continue
        assert e.at > killed_at
        # Never later than the lease and one sweep promise (the slack absorbs a slow machine).
        assert e.at <= killed_at + LEASE + SWEEP + 10, f"job {e.job_id} waited past lease + sweep"
    log = b.log()
    declared = log.index(f"declared worker(s) {a_id} dead (process gone)")
    assert declared < log.index(" ready: "), "B gave the jobs back before claiming"
    assert "rescued expired leases" not in log


def test_second_signal_exits_at_once_and_the_job_is_rescued(world: World, workers: Workers) -> None:
    release = world.tmp / "release"
    job_id = world.app.get_task("sample.hold").enqueue(str(release)).id
    a = workers.start("A", concurrency=2, grace=30)
    wait_for(lambda: world.effects("start", job_id), "the job to start in A")

    a.send(signal.SIGTERM)
    a.wait_log("graceful shutdown")
    started = time.monotonic()
    a.send(signal.SIGTERM)
    assert a.wait_exit() == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5, "the second signal must not wait for the job"
    assert "exiting at once" in a.log()
    job = world.app.get_job(job_id)
    assert job.state is JobState.RUNNING, "nobody finished or released the job"
    assert job.attempts == 1

    release.touch()
    b = workers.start("B", concurrency=2)
    wait_for(lambda: world.app.get_job(job_id).state is JobState.SUCCEEDED, "B to finish it")
    job = world.app.get_job(job_id)
    assert (job.attempts, job.lost_runs, job.result) == (2, 1, b.pid)
    assert [(e.worker_pid, e.attempt) for e in world.effects("done")] == [(b.pid, 2)]


@pytest.mark.parametrize(
    "task",
    [
        # The run's thread finishes after SIGCONT, racing A's heartbeater, which may learn of the
        # lost lease first (the run is abandoned) or second (the outcome is fenced off).
        "sample.hold",
        # The loop is blocked until the body returns: the outcome is always submitted before A
        # can act on a heartbeat, so the token fence in finish_many is what must stop it.
        "sample.hold_blocking_loop",
    ],
)
def test_stopped_worker_resumed_after_rescue_changes_nothing(
    world: World, workers: Workers, task: str
) -> None:
    release = world.tmp / "release"
    job_id = world.app.get_task(task).enqueue(str(release)).id
    a = workers.start("A", concurrency=2)
    wait_for(lambda: world.effects("start", job_id), "the job to start in A")

    a.freeze()
    release.touch()  # A's run would complete at once, if only it were running
    b = workers.start("B", concurrency=2)
    wait_for(lambda: world.app.get_job(job_id).state is JobState.SUCCEEDED, "B to finish it")
    finished = world.app.get_job(job_id)
    assert (finished.attempts, finished.lost_runs, finished.result) == (2, 1, b.pid)

    a.send(signal.SIGCONT)
    # A's thread completes the function body; its outcome must be fenced off.
    wait_for(
        lambda: any(e.worker_pid == a.pid for e in world.effects("done")),
        "A's run to finish its function body after SIGCONT",
    )
    a.send(signal.SIGTERM)  # a graceful exit writes (tries to write) every pending outcome
    assert a.wait_exit() == 0

    assert world.app.get_job(job_id) == finished, "the stale run changed the job"
    assert "lease lost" in a.log(), "A did not notice that it had lost the run"
    if task == "sample.hold_blocking_loop":
        assert "lease lost before its outcome was written" in a.log()
    assert finished.worker_id is not None and worker_tag(b.pid) in finished.worker_id
    dones = {(e.worker_pid, e.attempt) for e in world.effects("done")}
    assert dones == {(a.pid, 1), (b.pid, 2)}
    assert b.alive()


def test_checkpointed_job_resumes_from_its_last_checkpoint_after_sigkill(
    world: World, workers: Workers
) -> None:
    release = world.tmp / "release"
    job_id = world.app.get_task("sample.steps").enqueue(10, 4, str(release)).id
    a = workers.start("A", concurrency=2)
    wait_for(lambda: world.app.get_job(job_id).checkpoint == 4, "A to checkpoint 4 steps")

    a.send(signal.SIGKILL)
    a.wait_exit()
    release.touch()
    b = workers.start("B", concurrency=2)
    wait_for(lambda: world.app.get_job(job_id).state is JobState.SUCCEEDED, "B to finish it")

    job = world.app.get_job(job_id)
    assert (job.attempts, job.lost_runs, job.checkpoint) == (2, 1, 10)
    assert job.result == 6, "B did only the 6 steps A had not checkpointed"
    starts = [(e.worker_pid, e.data) for e in world.effects("start")]
    assert starts == [(a.pid, {"resume_from": 0}), (b.pid, {"resume_from": 4})]
    steps = [(e.worker_pid, e.data) for e in world.effects("step")]
    assert steps == [(a.pid, i) for i in range(4)] + [(b.pid, i) for i in range(4, 10)]
