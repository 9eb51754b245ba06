"""SQLite: a job enqueued on its own is one statement, committed when enqueue returns."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from conveyor import Conveyor
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.job import JobState
from conveyor.settings import Settings
from tests.support import FakeClock, new_job


def _backend(path: Path, **overrides: object) -> SQLiteBackend:
    return SQLiteBackend(
        Settings.load(env={}, url=f"sqlite:///{path}", **overrides), clock=FakeClock()
    )


def test_a_single_enqueue_is_one_statement_that_commits(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "jobs.db")
    try:
        statements: list[str] = []
        backend._writer.raw.set_trace_callback(statements.append)
        [result] = backend.enqueue_many([new_job()])
        backend._writer.raw.set_trace_callback(None)

        assert len(statements) == 1, statements
        assert "INSERT INTO conveyor_jobs" in statements[0]
        assert not backend._writer.raw.in_transaction
        # Committed: another handle on the file sees it.
        other = _backend(tmp_path / "jobs.db")
        try:
            assert other.get(result.job_id).state is JobState.QUEUED
        finally:
            other.close()
    finally:
        backend.close()


def test_keyed_and_limited_single_jobs_still_take_a_transaction(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "jobs.db", queue_limits={"capped": 5})
    try:
        for job in (new_job(idempotency_key="k"), new_job(queue="capped")):
            statements: list[str] = []
            backend._writer.raw.set_trace_callback(statements.append)
            [result] = backend.enqueue_many([job])
            backend._writer.raw.set_trace_callback(None)
            assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT"
            assert result.created
    finally:
        backend.close()


def test_enqueue_one_now_writes_at_once_when_no_write_is_under_way(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "jobs.db")
    try:
        result = backend.enqueue_one_now(new_job())
        assert result is not None and result.created
        assert not backend._writer.raw.in_transaction
        other = _backend(tmp_path / "jobs.db")
        try:
            assert other.get(result.job_id).state is JobState.QUEUED
        finally:
            other.close()
    finally:
        backend.close()


def test_enqueue_one_now_declines_rather_than_wait_for_another_writer(tmp_path: Path) -> None:
    backend = _backend(tmp_path / "jobs.db")
    blocker = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        assert backend.enqueue_one_now(new_job()) is None
        blocker.execute("COMMIT")
        assert backend.list_jobs() == []
        # The connection waits for locks again, as before.
        blocker.execute("BEGIN IMMEDIATE")
        waiting = threading.Thread(target=backend.enqueue_one, args=(new_job(),))
        waiting.start()
        waiting.join(0.2)
        assert waiting.is_alive()  # waiting for the lock, not failed at once
        blocker.execute("COMMIT")
        waiting.join(10)
        assert not waiting.is_alive()
        assert len(backend.list_jobs()) == 1
    finally:
        blocker.close()
        backend.close()


def test_enqueue_async_leaves_the_event_loop_free_while_the_file_is_locked(
    tmp_path: Path,
) -> None:
    app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")

    @app.task(name="noop")
    def noop(n: int) -> None:
        return None

    async def scenario() -> None:
        assert (await noop.enqueue_async(1)).state is JobState.QUEUED  # written on the loop
        blocker = sqlite3.connect(tmp_path / "jobs.db", isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            pending = asyncio.ensure_future(noop.enqueue_async(2))
            for _ in range(5):  # the loop goes on while the enqueue waits on a thread
                await asyncio.sleep(0.01)
            assert not pending.done()
            blocker.execute("COMMIT")
            job = await asyncio.wait_for(pending, 10)
            assert job.args == [2] and job.state is JobState.QUEUED
        finally:
            blocker.close()

    try:
        asyncio.run(scenario())
        assert sorted(job.args[0] for job in app.list_jobs()) == [1, 2]
    finally:
        app.close()
