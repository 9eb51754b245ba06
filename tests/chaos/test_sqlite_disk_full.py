"""The filesystem that holds the SQLite file fills up: enqueue fails cleanly, nothing is damaged,
and a worker keeps the outcomes it could not write until space frees.

The job database lives on a private 2 MiB tmpfs mounted for the test (skipped where mounting is
not permitted); the effects database and the worker's log stay in ``tmp_path``, on another
filesystem, so the test can still see what the worker did while the small one is full.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import JobState
from conveyor.errors import StorageFull
from tests.chaos.helpers import fill_filesystem, integrity_check, make_world_at, states
from tests.worker.harness import Workers, World, wait_for
from tests.worker.sample_app import EFFECTS_ENV

pytestmark = pytest.mark.slow

#: Longer than the seconds the disk stays full: heartbeats fail meanwhile (nothing can be
#: written), and a run whose lease lapsed would be rescued and run again -- at-least-once, but
#: not the "exactly once" this test checks.
LEASE = 30.0
HELD = 6


@pytest.fixture
def world(tmp_path: Path, small_fs: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The job database on the small filesystem, everything else in ``tmp_path``."""
    w = make_world_at(tmp_path, small_fs / "jobs.db", lease=LEASE, heartbeat=LEASE / 6)
    monkeypatch.setenv(EFFECTS_ENV, str(w.effects_path))
    try:
        yield w
    finally:
        w.app.close()


def test_disk_full_enqueue_fails_cleanly_and_the_worker_keeps_its_outcomes(
    world: World, workers: Workers, small_fs: Path
) -> None:
    release = world.tmp / "release"
    w = workers.start("W", concurrency=HELD)
    hold = world.app.get_task("sample.hold")
    quick = world.app.get_task("sample.quick")
    held_ids = [job.id for job in world.app.enqueue_many([hold.job(str(release))] * HELD)]
    wait_for(
        lambda: len({e.job_id for e in world.effects("start")}) == HELD,
        f"the worker to start {HELD} jobs",
    )
    # Jobs that stay put throughout: scheduled an hour ahead, half of them cancelled.
    later = world.app.enqueue_many([quick.options(delay=3600).job(n) for n in range(100)])
    later_ids = [job.id for job in later]
    for job_id in later_ids[::2]:
        world.app.cancel(job_id)
    before = states(world)
    assert before == {JobState.RUNNING: HELD, JobState.SCHEDULED: 50, JobState.CANCELLED: 50}
    snapshot = {job.id: job for job in world.jobs(later_ids)}

    filler = small_fs / "filler"
    assert fill_filesystem(filler) > 0

    # --- enqueue fails with a clear error and writes nothing --------------------------------
    for attempt in (
        lambda: quick.enqueue(1),
        lambda: world.app.enqueue_many([quick.job(n) for n in range(500)]),
    ):
        with pytest.raises(StorageFull) as caught:
            attempt()
        message = str(caught.value)
        assert "\n" not in message, message
        assert str(world.db_path) in message, message
        assert "full" in message, message
    assert integrity_check(world.db_path) == ["ok"]
    assert states(world) == before
    assert {job.id: job for job in world.jobs(later_ids)} == snapshot

    # --- the held jobs finish while the disk is full: their outcomes wait in the worker -----
    release.touch()
    wait_for(lambda: len(world.effects("done")) == HELD, "the held jobs to finish their work")
    # Two failed writes, so the completer has backed off and retried at least once.
    wait_for(
        lambda: w.log().count("could not write") >= 2,
        "the worker to warn that it could not write the outcomes",
        on_timeout=w.log,
    )
    assert w.alive(), w.log()
    assert world.all_in(held_ids, JobState.RUNNING), world.describe(held_ids)
    assert states(world) == before

    # --- space frees: every kept outcome is written, once ----------------------------------
    filler.unlink()
    wait_for(
        lambda: world.all_in(held_ids, JobState.SUCCEEDED),
        "the kept outcomes to be written once space freed",
        on_timeout=lambda: world.describe(held_ids) + "\n" + w.log(),
    )
    for job in world.jobs(held_ids):
        assert (job.attempts, job.lost_runs, job.errors) == (1, 0, []), job
    dones = world.effects("done")
    assert Counter(e.job_id for e in dones) == dict.fromkeys(held_ids, 1)
    assert {job.id: job for job in world.jobs(later_ids)} == snapshot

    # The test's own connection recovered too, and the worker picks up new work.
    after = [job.id for job in world.app.enqueue_many([quick.job(n) for n in range(20)])]
    wait_for(
        lambda: world.all_in(after, JobState.SUCCEEDED),
        "jobs enqueued after the disk freed to succeed",
        on_timeout=lambda: world.describe(after),
    )
    assert integrity_check(world.db_path) == ["ok"]

    w.send(signal.SIGTERM)
    assert w.wait_exit() == 0, w.log()
    log = w.log()
    assert "Traceback" not in log, log
    assert "could not write" in log and "disk is full" in log, log
