"""A worker SIGKILLed with jobs in flight on Redis: each job comes back once, within the lease and
one sweep, as on the other engines (tests/worker/test_crash.py runs the same on SQLite only).

A frozen worker's jobs, rescued by lease expiry alone, are in test_durability.py (across a
Redis restart, too).
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import JobState
from tests.redis_engine.factory import drop_prefix, new_prefix, server_url
from tests.redis_engine.restartable import make_redis_world
from tests.worker.harness import LEASE, SWEEP, Workers, World, wait_for

pytestmark = pytest.mark.slow

IN_FLIGHT = 40


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    url, prefix = server_url(), new_prefix()
    found = make_redis_world(tmp_path, url, prefix)
    try:
        yield found
    finally:
        found.app.close()
        drop_prefix(url, prefix)


@pytest.fixture
def workers(world: World) -> Iterator[Workers]:
    manager = Workers(world)
    try:
        yield manager
    finally:
        manager.cleanup()


def test_sigkill_with_jobs_in_flight_each_rerun_once_by_the_next_worker(
    world: World, workers: Workers
) -> None:
    release = world.tmp / "release"
    hold = world.app.get_task("sample.hold")
    hold_async = world.app.get_task("sample.hold_async")
    specs = [(hold if i % 2 else hold_async).job(str(release)) for i in range(IN_FLIGHT)]
    ids = [job.id for job in world.app.enqueue_many(specs)]

    a = workers.start("A", concurrency=IN_FLIGHT)
    wait_for(
        lambda: len({e.job_id for e in world.effects("start")}) == IN_FLIGHT,
        "every job to start in worker A",
    )
    assert world.count(JobState.RUNNING) == IN_FLIGHT
    killed_at = time.time()
    a.send(signal.SIGKILL)
    assert a.wait_exit() == -signal.SIGKILL
    assert world.all_in(ids, JobState.RUNNING)

    release.touch()
    b = workers.start("B", concurrency=IN_FLIGHT)
    wait_for(
        lambda: world.all_in(ids, JobState.SUCCEEDED),
        "every job to succeed in worker B",
        on_timeout=lambda: world.describe(ids),
    )
    for job in world.jobs(ids):
        # A held them all when it died: none is blamed, each gets its run back.
        assert (job.attempts, job.lost_runs, job.result) == (1, 1, b.pid), job

    starts = world.effects("start")
    dones = world.effects("done")
    assert Counter(e.job_id for e in starts) == dict.fromkeys(ids, 2)
    assert sorted(e.job_id for e in dones) == sorted(ids), "each job completed exactly once"
    assert {e.worker_pid for e in dones} == {b.pid}
    for e in starts:
        if e.worker_pid == b.pid:
            assert killed_at < e.at <= killed_at + LEASE + SWEEP + 10, "later than lease + sweep"
    # B, on the same machine, saw A's process gone and gave the jobs back before claiming.
    log = b.log()
    assert log.index("dead (process gone)") < log.index(" ready: ")
