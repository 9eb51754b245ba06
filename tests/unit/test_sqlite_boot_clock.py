"""SQLite leases, beats and leaderships on the machine's boot clock (conveyor/boottime.py).

Every process on one SQLite file runs on one machine, so a step of the wall clock (NTP, a VM
resume) is seen by all of them at once: a step forward must neither expire a healthy lease, nor
declare a beating worker dead, nor hand a held leadership to another; a step back must not keep
an expired lease alive. run_at stays wall time: a step forward makes scheduled jobs due early.
A lease written under another boot is void, and one written without a boot id (before the
migration, or by a process that has no boot clock) is judged on the wall clock as before.

PostgreSQL measures leases on the server's clock, one clock for every worker: these rules are
the SQLite engine's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.backend import MIGRATIONS, split_statements
from conveyor.boottime import boot_clock
from conveyor.job import JobState
from conveyor.settings import Settings
from conveyor.worker_info import WorkerHealth, WorkerRegistration, WorkerState
from tests.support import FakeBootClock, FakeClock, new_job

LEASE = 30.0
STEP = 300.0


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock()


@pytest.fixture
def boot() -> FakeBootClock:
    return FakeBootClock()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


@pytest.fixture
def backend(url: str, wall: FakeClock, boot: FakeBootClock) -> Iterator[SQLiteBackend]:
    store = SQLiteBackend(Settings.load(env={}, url=url), clock=wall, boot=boot)
    yield store
    store.close()


def registration(worker_id: str) -> WorkerRegistration:
    return WorkerRegistration(
        id=worker_id,
        host="h",
        pid=1,
        queues=None,
        concurrency=1,
        beat_interval=5.0,
        dead_after=15.0,
    )


def running(backend: SQLiteBackend, worker_id: str = "w", count: int = 2) -> list[int]:
    backend.enqueue_many([new_job(max_attempts=5) for _ in range(count)])
    return sorted(c.id for c in backend.claim(worker_id, None, count, LEASE))


def test_a_wall_clock_step_forward_rescues_nothing(
    backend: SQLiteBackend, wall: FakeClock, boot: FakeBootClock
) -> None:
    backend.register_worker(registration("w"))
    assert backend.acquire_leadership("maintenance", "w", 15.0)
    jobs = running(backend)
    boot.advance(1.0)
    wall.advance(STEP)
    assert backend.rescue_expired().requeued == []
    assert backend.reap_dead_workers("sweeper").workers == []
    assert not backend.acquire_leadership("maintenance", "other", 15.0)
    assert {backend.get(i).state for i in jobs} == {JobState.RUNNING}


def test_a_lease_runs_out_on_the_boot_clock_whatever_the_wall_clock_says(
    backend: SQLiteBackend, wall: FakeClock, boot: FakeBootClock
) -> None:
    jobs = running(backend)
    wall.advance(-3600.0)  # a step back must not keep an expired lease alive
    boot.advance(LEASE - 1.0)
    assert backend.rescue_expired().requeued == []
    boot.advance(2.0)
    assert backend.rescue_expired().requeued == jobs
    job = backend.get(jobs[0])
    assert (job.state, job.lost_runs) == (JobState.RETRYING, 1)
    assert job.run_at == pytest.approx(wall.now), "run_at stays wall time"


def test_a_heartbeat_extends_the_lease_on_the_boot_clock(
    backend: SQLiteBackend, wall: FakeClock, boot: FakeBootClock
) -> None:
    backend.enqueue_many([new_job()])
    [run] = backend.claim("w", None, 1, LEASE)
    boot.advance(LEASE - 1.0)
    wall.advance(STEP)
    assert backend.extend_leases([run.lease_token], LEASE).extended == {run.lease_token}
    boot.advance(LEASE - 1.0)
    assert backend.rescue_expired().requeued == []
    boot.advance(2.0)
    assert backend.rescue_expired().requeued == [run.id]


def test_silence_is_counted_on_the_boot_clock(
    backend: SQLiteBackend, wall: FakeClock, boot: FakeBootClock
) -> None:
    backend.register_worker(registration("quiet"))
    backend.register_worker(registration("beating"))
    wall.advance(STEP)
    boot.advance(14.0)
    backend.beat_worker("beating", WorkerState.RUNNING)
    assert backend.reap_dead_workers("sweeper").workers == []
    boot.advance(2.0)
    assert backend.reap_dead_workers("sweeper").workers == ["quiet"]


def test_a_sweepers_outage_is_not_counted_as_silence_on_the_boot_clock(
    backend: SQLiteBackend, wall: FakeClock, boot: FakeBootClock
) -> None:
    backend.register_worker(registration("w"))
    boot.advance(60.0)
    wall.advance(60.0)
    # The sweeper reaches the database again since 10 s ago: 10 s of silence, not 60.
    assert backend.reap_dead_workers("sweeper", reachable_since=wall.now - 10.0).workers == []
    boot.advance(6.0)
    wall.advance(6.0)
    report = backend.reap_dead_workers("sweeper", reachable_since=wall.now - 16.0)
    assert report.workers == ["w"]


def test_after_a_reboot_every_lease_beat_and_leadership_of_the_last_boot_is_void(
    backend: SQLiteBackend, boot: FakeBootClock
) -> None:
    backend.register_worker(registration("w"))
    assert backend.acquire_leadership("maintenance", "w", 15.0)
    jobs = running(backend, "w")
    boot.reboot("boot-2")  # the boot clock starts again from a few seconds
    assert backend.rescue_expired().requeued == jobs
    assert backend.reap_dead_workers("sweeper").workers == ["w"]
    assert backend.acquire_leadership("maintenance", "other", 15.0)


def test_leases_without_a_boot_id_are_judged_on_the_wall_clock(
    url: str, backend: SQLiteBackend, wall: FakeClock, boot: FakeBootClock
) -> None:
    """A process with no boot clock (not Linux) writes wall-clock leases, as before; every
    process judges them on the wall clock. Its own judgement is the wall clock's too."""
    settings = Settings.load(env={}, url=url)
    plain = SQLiteBackend(settings, clock=wall, boot=lambda: None)
    try:
        plain.register_worker(registration("plain"))
        jobs = running(plain, "plain")
        theirs = running(backend, "w")
        boot.advance(LEASE + 1.0)
        assert backend.rescue_expired().requeued == theirs
        wall.advance(14.0)
        assert backend.reap_dead_workers("sweeper").workers == []
        wall.advance(2.0)
        assert backend.reap_dead_workers("sweeper").workers == ["plain"]
        assert backend.get(jobs[0]).state is JobState.RETRYING, "released with its worker"
    finally:
        plain.close()


def test_running_jobs_of_the_previous_schema_run_out_on_the_wall_clock(
    tmp_path: Path, wall: FakeClock, boot: FakeBootClock
) -> None:
    """Leases written before the migration carry no boot id: they expire when their wall-clock
    deadline passes, not at once, and a heartbeat after the upgrade moves them onto the boot
    clock."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute(
        "CREATE TABLE conveyor_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
        "applied_at REAL NOT NULL)"
    )
    for version, name, script in MIGRATIONS:
        if name == "boot_clock":
            break
        for statement in split_statements(script):
            old.execute(statement)
        old.execute("INSERT INTO conveyor_migrations VALUES (?, ?, 0)", (version, name))
    for token in ("old-a", "old-b"):
        old.execute(
            "INSERT INTO conveyor_jobs (queue, task, args, kwargs, state, run_at, max_attempts,"
            " created_at, attempts, lease_token, lease_expires_at, worker_id, started_at)"
            " VALUES ('default', 't', '[]', '{}', 'running', ?, 3, ?, 1, ?, ?, 'old', ?)",
            (wall.now, wall.now, token, wall.now + LEASE, wall.now),
        )
    old.close()

    upgraded = SQLiteBackend(Settings.load(env={}, url=f"sqlite:///{path}"), clock=wall, boot=boot)
    try:
        assert upgraded.verify_schema().problems == []
        boot.advance(LEASE + 1.0)
        assert upgraded.rescue_expired().requeued == [], "not expired on the wall clock yet"
        assert upgraded.extend_leases(["old-b"], LEASE).extended == {"old-b"}
        wall.advance(LEASE + 1.0)
        assert upgraded.rescue_expired().requeued == [1]
        boot.advance(LEASE - 1.0)
        assert upgraded.rescue_expired().requeued == [], "old-b is on the boot clock now"
        boot.advance(2.0)
        assert upgraded.rescue_expired().requeued == [2]
    finally:
        upgraded.close()


def test_a_wall_clock_step_makes_scheduled_jobs_due_early(
    backend: SQLiteBackend, wall: FakeClock
) -> None:
    """run_at is a time of the calendar: the documented price of a step forward."""
    [scheduled] = backend.enqueue_many([new_job(delay=3600.0)])
    assert backend.promote_due() == 0
    wall.advance(3600.0)
    assert backend.promote_due() == 1
    [run] = backend.claim("w", None, 1, LEASE)
    assert run.id == scheduled.job_id
    backend.finish_many([Outcome(run.id, run.lease_token, OutcomeKind.SUCCEEDED)])


def test_the_default_clock_is_the_machines_boot_clock(url: str) -> None:
    reading = boot_clock()
    if reading is None:
        pytest.skip("this machine has no boot clock (not Linux)")
    store = SQLiteBackend(Settings.load(env={}, url=url))
    try:
        running(store)
        row = store._reader.raw.execute(
            "SELECT lease_boot, lease_expires_uptime FROM conveyor_jobs"
        ).fetchone()
        assert row[0] == reading.boot
        assert reading.seconds + LEASE <= row[1] <= reading.seconds + LEASE + 60.0
    finally:
        store.close()


def test_the_age_of_a_beat_is_read_on_the_boot_clock(
    backend: SQLiteBackend, wall: FakeClock, boot: FakeBootClock
) -> None:
    backend.register_worker(registration("w"))
    wall.advance(STEP)
    boot.advance(2.0)
    [worker] = backend.list_workers()
    assert worker.last_beat_age == pytest.approx(2.0)
    assert worker.health is WorkerHealth.ALIVE
