"""SQLite-specific behaviour: bad files and paths, schema versions, pragmas, locking."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.backends import open_backend
from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.backends.sqlite.backend import LATEST_VERSION
from conveyor.backends.sqlite.connection import Q
from conveyor.errors import (
    BackendError,
    ConfigurationError,
    DatabaseBusy,
    DatabaseCorrupt,
    SchemaError,
)
from conveyor.job import JobState
from conveyor.settings import Settings
from tests.support import FakeClock, new_job


def settings_for(path: Path | str, **overrides: Any) -> Settings:
    return Settings.load(env={}, url=f"sqlite:///{path}", **overrides)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def make(db_path: Path) -> Iterator[Any]:
    opened: list[SQLiteBackend] = []

    def make(path: Path | str = db_path, **overrides: Any) -> SQLiteBackend:
        backend = SQLiteBackend(settings_for(path, **overrides), clock=FakeClock())
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        backend.close()


def pragma(backend: SQLiteBackend, name: str) -> Any:
    """Read a pragma on every connection the backend holds; they must agree."""
    values = {
        conn.raw.execute(f"PRAGMA {name}").fetchone()[0]
        for conn in (backend._writer, backend._reader, backend._poller)
    }
    assert len(values) == 1, f"connections disagree on {name}: {values}"
    return values.pop()


# --- bad files and paths ----------------------------------------------------------------------


def test_a_file_that_is_not_a_database(db_path: Path, make: Any) -> None:
    db_path.write_bytes(b"this is not SQLite, just some garbage bytes\x00\xff" * 200)
    with pytest.raises(DatabaseCorrupt) as caught:
        make()
    assert str(db_path) in str(caught.value)
    assert "not a usable SQLite database" in str(caught.value)
    assert db_path.read_bytes().startswith(b"this is not SQLite"), "the file is left alone"


def test_a_database_written_by_a_newer_conveyor(db_path: Path, make: Any) -> None:
    make().close()
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute(
            "INSERT INTO conveyor_migrations (version, name, applied_at) VALUES (?, 'future', 0)",
            (LATEST_VERSION + 1,),
        )
    raw.close()

    with pytest.raises(SchemaError) as caught:
        make()
    message = str(caught.value)
    assert "newer Conveyor" in message
    assert str(db_path) in message
    assert str(LATEST_VERSION + 1) in message


def test_a_directory_instead_of_a_file(tmp_path: Path, make: Any) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(BackendError) as caught:
        make(folder)
    assert str(folder) in str(caught.value)
    assert "directory" in str(caught.value)


def test_a_missing_parent_directory(tmp_path: Path, make: Any) -> None:
    path = tmp_path / "no" / "such" / "dir" / "jobs.db"
    with pytest.raises(BackendError) as caught:
        make(path)
    assert str(path) in str(caught.value)
    assert "does not exist" in str(caught.value)
    assert not path.parent.exists(), "nothing is created behind the user's back"


@pytest.mark.parametrize("url", ["sqlite://jobs.db", "sqlite:///", "sqlite:jobs.db"])
def test_bad_sqlite_urls(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_backend(Settings.load(env={}, url=url))
    assert url in str(caught.value)


def test_unsupported_scheme() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_backend(Settings.load(env={}, url="mysql://localhost/db"))
    assert "unsupported database URL" in str(caught.value)


def test_a_fresh_file_is_created_and_migrated(db_path: Path, make: Any) -> None:
    backend = make()
    assert db_path.exists()
    status = backend.verify_schema()
    assert status.ok, status.problems
    assert status.current == LATEST_VERSION
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        raw.close()


def test_without_auto_migrate_an_empty_file_is_refused(db_path: Path) -> None:
    with pytest.raises(SchemaError) as caught:
        SQLiteBackend(settings_for(db_path), auto_migrate=False)
    assert "conveyor schema migrate" in str(caught.value)


def test_verify_schema_notices_a_tampered_schema(db_path: Path, make: Any) -> None:
    make().close()
    raw = sqlite3.connect(db_path)
    raw.execute("DROP INDEX conveyor_jobs_ready")
    raw.execute("CREATE INDEX conveyor_extra ON conveyor_jobs (task)")
    raw.close()
    status = make().verify_schema()
    assert not status.ok
    assert "missing index conveyor_jobs_ready" in status.problems
    assert "unexpected index conveyor_extra" in status.problems


# --- pragmas --------------------------------------------------------------------------------


def test_wal_mode_is_on(make: Any) -> None:
    assert pragma(make(), "journal_mode") == "wal"


@pytest.mark.parametrize(("mode", "value"), [("FULL", 2), ("NORMAL", 1), ("full", 2)])
def test_synchronous_mode_is_applied(make: Any, mode: str, value: int) -> None:
    assert pragma(make(sqlite_synchronous=mode), "synchronous") == value


# --- locking ----------------------------------------------------------------------------------


@pytest.fixture
def locker(db_path: Path, make: Any) -> Iterator[sqlite3.Connection]:
    """A raw connection to an existing store, able to hold its write lock."""
    make().close()
    raw = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    yield raw
    if raw.in_transaction:
        raw.execute("ROLLBACK")
    raw.close()


def test_a_locked_database_makes_enqueue_wait_then_succeed(
    locker: sqlite3.Connection, make: Any
) -> None:
    backend = make(lock_timeout=20.0)
    locker.execute("BEGIN IMMEDIATE")
    locker.execute("UPDATE conveyor_migrations SET name = name")
    released = threading.Event()

    def release() -> None:
        locker.execute("COMMIT")
        released.set()

    timer = threading.Timer(0.3, release)
    started = time.monotonic()
    timer.start()
    try:
        [result] = backend.enqueue_many([new_job()])
    finally:
        timer.cancel()
        timer.join()
    waited = time.monotonic() - started

    assert released.is_set(), "enqueue returned while another connection held the lock"
    assert waited >= 0.25
    assert backend.get(result.job_id).state is JobState.QUEUED


def test_a_database_locked_too_long_raises_database_busy(
    locker: sqlite3.Connection, make: Any, db_path: Path
) -> None:
    backend = make(lock_timeout=0.2)
    locker.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(DatabaseBusy) as caught:
        backend.enqueue_many([new_job()])
    assert time.monotonic() - started < 10.0
    message = str(caught.value)
    assert str(db_path) in message
    assert "locked by another process" in message

    locker.execute("ROLLBACK")
    assert dict(backend.stats()) == {}, "nothing was written"
    backend.enqueue_many([new_job()])
    assert backend.stats()["default"] == {JobState.QUEUED: 1}


def test_reads_are_not_blocked_by_a_writer(locker: sqlite3.Connection, make: Any) -> None:
    backend = make(lock_timeout=0.2)
    [result] = backend.enqueue_many([new_job()])
    locker.execute("BEGIN IMMEDIATE")
    assert backend.get(result.job_id).state is JobState.QUEUED
    assert backend.stats()["default"] == {JobState.QUEUED: 1}


# --- two handles on one file ------------------------------------------------------------------


def test_two_backends_share_one_file(db_path: Path, make: Any) -> None:
    first, second = make(), make()
    [result] = first.enqueue_many([new_job(queue="shared")])
    [claimed] = second.claim("w", None, 10, 30.0)
    assert claimed.id == result.job_id
    assert first.get(result.job_id).state is JobState.RUNNING


def test_a_store_reopened_after_close_keeps_its_jobs(make: Any) -> None:
    backend = make()
    ids = [r.job_id for r in backend.enqueue_many([new_job() for _ in range(3)])]
    backend.close()
    assert [j.id for j in make().list_jobs()] == ids[::-1]


# --- query plans ------------------------------------------------------------------------------


def _plan(backend: SQLiteBackend, query: str, params: dict[str, Any]) -> str:
    rows = backend._reader.raw.execute(f"EXPLAIN QUERY PLAN {Q[query]}", params).fetchall()
    return "\n".join(str(row["detail"]) for row in rows)


def test_cancel_requests_probe_their_own_index(make: Any) -> None:
    """Workers look several times a second: the look must not walk finished or running jobs,
    before statistics exist and after ANALYZE has seen a table of mostly finished jobs."""
    backend = make()
    backend.enqueue_many([new_job() for _ in range(3000)])
    done = backend.claim("w2", None, 2000, 30.0)
    backend.finish_many([Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED) for r in done])
    running = backend.claim("w1", None, 500, 30.0)
    backend.cancel(running[0].id)
    expected = "SEARCH conveyor_jobs USING INDEX conveyor_jobs_cancel_requested (worker_id=?)"

    assert _plan(backend, "cancel_requests", {"worker_id": "w1"}) == expected
    backend._writer.raw.execute("ANALYZE")
    assert _plan(backend, "cancel_requests", {"worker_id": "w1"}) == expected
    assert backend.cancel_requests("w1") == {running[0].lease_token}


def test_a_look_for_a_stop_request_probes_the_workers_primary_key(make: Any) -> None:
    """Every worker looks about once a second, held runs or not."""
    backend = make()
    expected = "SEARCH conveyor_workers USING INDEX sqlite_autoindex_conveyor_workers_1 (id=?)"
    assert _plan(backend, "worker_stop_requested", {"id": "w1"}) == expected


def test_promotion_and_the_suspect_claim_probe_their_own_indexes(make: Any) -> None:
    """Poison isolation must not slow the claim: promotion and next_due still use the index of
    due jobs (which holds no suspect), and an idle worker's look for a suspect probes the small
    index of suspects, whatever else the table holds."""
    backend = make()
    backend.enqueue_many([new_job() for _ in range(3000)])
    done = backend.claim("w2", None, 2000, 30.0)
    backend.finish_many([Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED) for r in done])
    backend.enqueue_many([new_job(delay=60.0) for _ in range(10)])
    for analyzed in (False, True):
        if analyzed:
            backend._writer.raw.execute("ANALYZE")
        promote = _plan(backend, "promote_due", {"now": 0.0})
        assert "USING INDEX conveyor_jobs_due" in promote, promote
        assert "USING INDEX conveyor_jobs_due" in _plan(backend, "next_due", {})
        params = {"now": 0.0, "queues": None, "closed": "[]", "held": "[]"}
        pick = _plan(backend, "pick_suspect", params)
        # A walk of the suspects alone, in claim order (no sort).
        assert pick.startswith("SCAN j USING INDEX conveyor_jobs_suspects"), pick
        assert "TEMP B-TREE" not in pick, pick
