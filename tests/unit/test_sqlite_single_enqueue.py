"""SQLite: a job enqueued on its own is one statement, committed when enqueue returns."""

from __future__ import annotations

from pathlib import Path

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
