"""Several worker processes on one SQLite file: every job runs exactly once, none is stuck,
and lock contention never surfaces as an error."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from conveyor import JobState
from tests.worker.harness import Workers, World, wait_for

pytestmark = pytest.mark.slow

PROCESSES = 4
JOBS = PROCESSES * 2000
BATCH = 500


def test_four_processes_share_one_file(world: World, workers: Workers) -> None:
    procs = [workers.start(f"W{n}", concurrency=8) for n in range(PROCESSES)]
    quick = world.app.get_task("sample.quick")
    quick_async = world.app.get_task("sample.quick_async")
    ids: list[int] = []
    # Enqueue while the workers claim, so writers from five processes contend for the file.
    for start in range(0, JOBS, BATCH):
        specs = [(quick if n % 2 else quick_async).job(n) for n in range(start, start + BATCH)]
        ids += [job.id for job in world.app.enqueue_many(specs)]

    wait_for(
        lambda: world.count(JobState.SUCCEEDED) == JOBS,
        f"all {JOBS} jobs to succeed",
        timeout=60,
        interval=0.1,
        on_timeout=lambda: str(world.app.stats()),
    )
    for proc in procs:
        proc.send(signal.SIGTERM)
    for proc in procs:
        assert proc.wait_exit() == 0

    assert dict(world.app.stats()["default"]) == {JobState.SUCCEEDED: JOBS}
    jobs = world.app.list_jobs(limit=JOBS + 1)
    assert len(jobs) == JOBS
    assert {(job.attempts, job.lost_runs) for job in jobs} == {(1, 0)}
    assert all(job.result == job.args[0] for job in jobs)

    dones = world.effects("done")
    assert len(dones) == JOBS, "a job ran twice, or its effect was lost"
    assert Counter(e.job_id for e in dones) == dict.fromkeys(ids, 1)
    assert {e.attempt for e in dones} == {1}
    assert len({e.worker_pid for e in dones}) >= 2, "the work was not shared"
    assert {e.worker_pid for e in dones} <= {p.pid for p in procs}

    for proc in procs:
        log = proc.log()
        for bad in ("locked", "DatabaseBusy", "Traceback", "failed", "could not write"):
            assert bad not in log, f"worker {proc.name} logged {bad!r}:\n{log}"
