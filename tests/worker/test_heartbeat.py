"""Heartbeats keep a job that runs longer than its lease, even when a task blocks the loop."""

from __future__ import annotations

from collections import Counter

import pytest

from conveyor import JobState
from tests.worker.harness import LEASE, Workers, World, wait_for

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
