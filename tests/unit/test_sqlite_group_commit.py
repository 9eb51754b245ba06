"""SQLite: single enqueues of concurrent threads share commits, and each call keeps what it
would get alone (backends/sqlite/group.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from conveyor.backends.base import EnqueueResult, NewJob
from conveyor.backends.sqlite import SQLiteBackend
from conveyor.errors import BackendError
from conveyor.job import JobState
from conveyor.settings import Settings
from tests.support import FakeClock, new_job


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def backend(path: Path) -> Iterator[SQLiteBackend]:
    opened = SQLiteBackend(Settings.load(env={}, url=f"sqlite:///{path}"), clock=FakeClock())
    try:
        yield opened
    finally:
        opened.close()


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def _grouped(
    backend: SQLiteBackend, path: Path, jobs: list[NewJob]
) -> tuple[list[Future[list[EnqueueResult]]], list[str]]:
    """Enqueue ``jobs`` from threads of their own while another connection holds the write
    lock: the first waits for it, the others queue up behind and then share one write.
    Returns the calls' futures and the statements the backend's writer ran for the group."""
    locker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN IMMEDIATE")
    statements: list[str] = []
    pool = ThreadPoolExecutor(len(jobs) + 1)
    try:
        first = pool.submit(backend.enqueue_many, [new_job(args_json='["first"]')])
        _until(lambda: backend._group._writing)
        calls = [pool.submit(backend.enqueue_many, [job]) for job in jobs]
        _until(lambda: len(backend._group._queue) == len(jobs))
        backend._writer.raw.set_trace_callback(statements.append)
        locker.execute("COMMIT")
        first.result(timeout=10)
        for call in calls:
            call.exception(timeout=10)
    finally:
        backend._writer.raw.set_trace_callback(None)
        pool.shutdown()
        locker.close()
    return [first, *calls], statements


def test_callers_that_queue_up_share_one_transaction(backend: SQLiteBackend, path: Path) -> None:
    jobs = [new_job(args_json=f"[{n}]") for n in range(5)]
    calls, statements = _grouped(backend, path, jobs)

    results = [call.result()[0] for call in calls]
    assert len({r.job_id for r in results}) == 6
    # The first job alone, then the five in one transaction: two commits, not six.
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("COMMIT") == 1
    for n, result in enumerate(results[1:]):
        assert result.created and result.state is JobState.QUEUED
        assert backend.get(result.job_id).args == [n]
    assert not backend._writer.raw.in_transaction, "every call returned after its commit"


def test_a_job_that_fails_in_a_group_fails_alone(backend: SQLiteBackend, path: Path) -> None:
    jobs = [new_job(args_json="[0]"), new_job(max_attempts=0), new_job(args_json="[2]")]
    calls, _ = _grouped(backend, path, jobs)

    good, bad, other = calls[1:]
    with pytest.raises(BackendError):
        bad.result()
    for call, n in ((good, 0), (other, 2)):
        [result] = call.result()
        assert backend.get(result.job_id).args == [n]
    assert backend.stats()["default"] == {JobState.QUEUED: 3}, "first, good and other"


def test_many_threads_enqueue_each_job_once(backend: SQLiteBackend) -> None:
    barrier = threading.Barrier(8)

    def enqueue(worker: int) -> list[int]:
        barrier.wait()
        return [
            backend.enqueue_many([new_job(args_json=f"[{worker}, {n}]")])[0].job_id
            for n in range(50)
        ]

    with ThreadPoolExecutor(8) as pool:
        ids = [job_id for batch in pool.map(enqueue, range(8)) for job_id in batch]
    assert len(set(ids)) == 400
    assert backend.stats()["default"] == {JobState.QUEUED: 400}
    assert not backend._group._writing and backend._group._queue == []
