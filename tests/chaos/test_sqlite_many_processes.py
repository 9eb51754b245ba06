"""Four worker processes drain 10,000 short jobs each from one SQLite file, while the test
enqueues: every job runs exactly once, none is stuck, and lock contention never surfaces.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

import pytest

from conveyor import JobState
from tests.chaos.helpers import LOCK_LEAKS, integrity_check
from tests.worker.harness import Workers, World, wait_for

pytestmark = pytest.mark.slow

PROCESSES = 4
JOBS = PROCESSES * 10_000
BATCH = 1000


def test_four_processes_drain_40000_jobs_exactly_once(world: World, workers: Workers) -> None:
    procs = [workers.start(f"W{n}", concurrency=16) for n in range(PROCESSES)]
    quick = world.app.get_task("sample.quick")
    quick_async = world.app.get_task("sample.quick_async")
    started = time.monotonic()
    ids: list[int] = []
    # Enqueue while the workers claim, so writers from five processes contend for the file.
    for start in range(0, JOBS, BATCH):
        specs = [(quick if n % 2 else quick_async).job(n) for n in range(start, start + BATCH)]
        ids += [job.id for job in world.app.enqueue_many(specs)]

    wait_for(
        lambda: world.count(JobState.SUCCEEDED) == JOBS,
        f"all {JOBS} jobs to succeed",
        timeout=180,
        interval=0.2,
        on_timeout=lambda: str(world.app.stats()),
    )
    elapsed = time.monotonic() - started
    for proc in procs:
        proc.send(signal.SIGTERM)
    for proc in procs:
        assert proc.wait_exit() == 0, proc.log()
    print(f"{JOBS} jobs, {PROCESSES} processes: {elapsed:.1f}s ({JOBS / elapsed:.0f} jobs/s)")

    assert dict(world.app.stats()["default"]) == {JobState.SUCCEEDED: JOBS}
    jobs = world.app.list_jobs(limit=JOBS + 1)
    assert len(jobs) == JOBS
    assert {(job.attempts, job.lost_runs) for job in jobs} == {(1, 0)}
    assert all(job.result == job.args[0] for job in jobs)

    dones = world.effects("done")
    assert len(dones) == JOBS, "a job ran twice, or its effect was lost"
    assert Counter(e.job_id for e in dones) == dict.fromkeys(ids, 1)
    assert {e.attempt for e in dones} == {1}
    pids = Counter(e.worker_pid for e in dones)
    assert set(pids) == {p.pid for p in procs}, f"not every process took work: {pids}"

    for proc in procs:
        log = proc.log()
        for bad in (*LOCK_LEAKS, "failed", "could not write"):
            assert bad not in log, f"worker {proc.name} logged {bad!r}:\n{log}"
    assert integrity_check(world.db_path) == ["ok"]
