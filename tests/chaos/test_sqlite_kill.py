"""SIGKILL in the middle of writes: the SQLite file stays intact and nothing committed is lost.

A true power loss (or OS crash) cannot be simulated from inside a test: the page cache survives
a killed process, so what these tests prove is what the README promises for ``kill -9`` of any
process, in both synchronous modes. Surviving a real power loss additionally needs
``CONVEYOR_SQLITE_SYNCHRONOUS=FULL`` (an fsync per commit); NORMAL may lose the last commits then.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from conveyor import JobState
from tests.chaos.helpers import HelperProcess, Helpers, integrity_check, job_ids
from tests.worker.harness import Workers, World, wait_for

pytestmark = pytest.mark.slow

BATCH = 500
ROUNDS = 3


def logged_batches(log_path: Path) -> list[list[int]]:
    """The batches the enqueuer logged; a line cut short by the kill is not a logged batch."""
    if not log_path.exists():
        return []
    text = log_path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n")[:-1]]


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_sigkill_during_bulk_enqueue_keeps_every_batch_that_returned(
    world: World, helpers: Helpers, synchronous: str
) -> None:
    """A process bulk-enqueues batches of 500 and logs (fsynced) the ids of every batch that
    returned; it is killed with SIGKILL at a random moment, three times over. Each time the file
    passes ``PRAGMA integrity_check``, every logged id is in it, and no batch is there in part
    (one batch is one transaction). Simulates a crash of the process, not a power loss."""
    # Only the enqueuer and the fresh connections of the checks below open the file, so every
    # check after a kill is a real crash recovery of the WAL.
    world.app.close()
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    log_path = world.tmp / "enqueued.log"
    env = {**world.settings_env, "CONVEYOR_SQLITE_SYNCHRONOUS": synchronous}
    unlogged = 0
    for round_ in range(ROUNDS):
        batches_before = len(logged_batches(log_path))
        target = batches_before + rng.randint(1, 8)
        proc = helpers.start(
            f"enqueuer-{round_}", ["-m", "tests.chaos.enqueuer", str(log_path), str(BATCH)], env
        )

        def enough(proc: HelperProcess = proc, target: int = target) -> bool:
            if not proc.alive():
                raise AssertionError(f"the enqueuer exited early:\n{proc.log()}")
            return len(logged_batches(log_path)) >= target

        wait_for(enough, f"{target} logged batches (seed {seed})", interval=0.005)
        # Not a wait for state: a random offset so the kill lands anywhere in a batch.
        time.sleep(rng.uniform(0, 0.03))
        proc.popen.send_signal(signal.SIGKILL)
        assert proc.wait_exit() == -signal.SIGKILL
        assert f"synchronous={synchronous}" in proc.log(), proc.log()

        assert integrity_check(world.db_path) == ["ok"], f"seed {seed}, round {round_}"
        logged = [job_id for batch in logged_batches(log_path) for job_id in batch]
        assert len(logged) == len(set(logged))
        stored = job_ids(world.db_path)
        missing = set(logged) - stored
        assert not missing, (
            f"{len(missing)} enqueued job(s) lost (seed {seed}): {sorted(missing)[:10]}"
        )
        assert len(stored) % BATCH == 0, f"a partial batch was stored: {len(stored)} jobs"
        # At most the batch in flight when this kill came committed without being logged (the
        # batches earlier kills left so stay as they were).
        assert len(stored) - len(logged) - unlogged in (0, BATCH), (
            len(stored),
            len(logged),
            unlogged,
            seed,
        )
        unlogged = len(stored) - len(logged)

    # The file is fully usable afterwards.
    assert world.count(JobState.QUEUED) == len(job_ids(world.db_path))


def test_sigkill_of_a_busy_worker_loses_nothing_and_finishes_nothing_twice(
    world: World, workers: Workers
) -> None:
    """A worker running many short jobs at high concurrency (outcomes written in batches) is
    killed with SIGKILL at a random moment. The file passes ``PRAGMA integrity_check``; a second
    worker finishes everything; every job succeeds; no run is finished twice; exactly the jobs
    that were running at the kill count a lost run; a job ran its code twice only if its first
    run was lost (kill after the effect, before the outcome was committed)."""
    jobs = 3000
    seed = random.randrange(2**32)
    kill_after = random.Random(seed).randint(jobs // 10, jobs // 2)
    quick = world.app.get_task("sample.quick")
    quick_async = world.app.get_task("sample.quick_async")
    ids = [
        job.id
        for job in world.app.enqueue_many(
            [(quick if n % 2 else quick_async).job(n) for n in range(jobs)]
        )
    ]
    world.app.close()  # the check after the kill is then a real crash recovery

    a = workers.start("A", concurrency=64)
    wait_for(
        lambda: len(world.effects("done")) >= kill_after,
        f"worker A to finish {kill_after} jobs (seed {seed})",
        interval=0.005,
    )
    a.send(signal.SIGKILL)
    assert a.wait_exit() == -signal.SIGKILL
    assert integrity_check(world.db_path) == ["ok"], f"seed {seed}"

    at_kill = {job.id: job for job in world.jobs(ids)}
    running = {i for i, job in at_kill.items() if job.state is JobState.RUNNING}
    succeeded = {i for i, job in at_kill.items() if job.state is JobState.SUCCEEDED}
    assert running, f"nothing was running when worker A was killed (seed {seed})"
    assert len(succeeded) < jobs, f"worker A finished everything before the kill (seed {seed})"
    assert {job.state for job in at_kill.values()} <= {
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    }
    done_before = Counter(e.job_id for e in world.effects("done"))

    b = workers.start("B", concurrency=64)
    wait_for(
        lambda: world.count(JobState.SUCCEEDED) == jobs,
        f"worker B to finish all {jobs} jobs (seed {seed})",
        timeout=60,
        interval=0.1,
        on_timeout=lambda: str(world.app.stats()),
    )
    assert dict(world.app.stats()["default"]) == {JobState.SUCCEEDED: jobs}

    final = {job.id: job for job in world.jobs(ids)}
    dones = world.effects("done")
    runs = Counter((e.job_id, e.attempt, e.worker_pid) for e in dones)
    assert max(runs.values()) == 1, "a run recorded its effect twice"
    # Poison isolation: a run lost beside others is given back (no attempt charged); only a
    # job that was the one running job of A would have been charged for it.
    charged = 1 if len(running) == 1 else 0
    for job_id, job in final.items():
        lost = 1 if job_id in running else 0
        assert (job.attempts, job.lost_runs, job.errors) == (1 + lost * charged, lost, []), (
            job,
            seed,
        )
        assert job.result == job.args[0]
        if job_id in succeeded:
            assert job.attempts == 1 and done_before[job_id] == 1, job
        else:
            assert runs[(job_id, job.attempts, b.pid)] == 1, f"job {job_id}'s last run did not run"
    ran_twice = {job_id for job_id, n in Counter(e.job_id for e in dones).items() if n > 1}
    assert ran_twice <= running, "a job whose run was not lost ran twice"
    assert {e.worker_pid for e in dones if e.job_id in running} <= {a.pid, b.pid}

    b.send(signal.SIGTERM)
    assert b.wait_exit() == 0, b.log()
    assert "Traceback" not in b.log(), b.log()
    assert integrity_check(world.db_path) == ["ok"]
