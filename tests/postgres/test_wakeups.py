"""Wake-ups across processes: LISTEN/NOTIFY behind change_marker()."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.sql import parse_queries
from tests.postgres.conftest import inspect
from tests.support import FakeClock, new_job

T = parse_queries((Path(__file__).parent / "connection.sql").read_text(encoding="utf-8"))


@pytest.fixture
def other(pg: PostgresBackend, clock: FakeClock) -> Iterator[PostgresBackend]:
    """A second backend on the same store: another process, as far as the server can tell."""
    backend = PostgresBackend(pg.settings, clock=clock)
    try:
        yield backend
    finally:
        backend.close()


def _listening(pg: PostgresBackend) -> int:
    """Start the listener, wait until it listens, and return the settled marker."""
    pg.change_marker()
    assert pg._listener.connected.wait(10)
    time.sleep(0.05)
    return pg.change_marker()


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_the_marker_is_read_without_a_query(pg: PostgresBackend) -> None:
    _listening(pg)
    pg.stats()  # the pool has a connection
    with inspect(pg) as conn:
        before = conn.execute(T["session_activity"]).fetchall()
        for _ in range(10_000):
            pg.change_marker()
        after = conn.execute(T["session_activity"]).fetchall()
    # Not one of the backend's sessions (pool or listener) ran a statement meanwhile.
    assert len(before) >= 2
    assert after == before


def test_one_notification_per_queue_per_transaction(
    pg: PostgresBackend, other: PostgresBackend
) -> None:
    before = _listening(pg)
    other.enqueue_many([new_job(queue=q) for q in ["a", "b"] * 50])
    assert _wait_for(lambda: pg.change_marker() >= before + 2)
    time.sleep(0.2)
    assert pg.change_marker() == before + 2


def test_retries_releases_and_requeues_wake_listeners(
    pg: PostgresBackend, other: PostgresBackend, clock: FakeClock
) -> None:
    other.enqueue_many([new_job(max_attempts=1), new_job()])
    first, second = other.claim("w", None, 2, 30.0)
    marker = _listening(pg)

    other.finish_many([Outcome(second.id, second.lease_token, OutcomeKind.RELEASED)])
    assert _wait_for(lambda: pg.change_marker() > marker)

    marker = pg.change_marker()
    other.finish_many([Outcome(first.id, first.lease_token, OutcomeKind.DEAD, dead_reason="x")])
    time.sleep(0.2)
    assert pg.change_marker() == marker, "a dead job makes no work"
    other.requeue([first.id])
    assert _wait_for(lambda: pg.change_marker() > marker)


def test_expired_leases_rescued_elsewhere_wake_listeners(
    pg: PostgresBackend, other: PostgresBackend, clock: FakeClock
) -> None:
    other.enqueue_many([new_job()])
    other.claim("w", None, 1, 30.0)
    marker = _listening(pg)
    clock.advance(31.0)
    assert other.rescue_expired().requeued
    assert _wait_for(lambda: pg.change_marker() > marker)


def test_local_enqueues_call_local_listeners(pg: PostgresBackend) -> None:
    heard: list[list[str]] = []
    pg.add_listener(lambda queues: heard.append(list(queues)))
    pg.enqueue_many([new_job(queue="b"), new_job(queue="a")])
    assert heard == [["a", "b"]]


def test_notifications_from_other_processes_call_local_listeners_at_once(
    pg: PostgresBackend, other: PostgresBackend
) -> None:
    """An idle worker is woken by the NOTIFY itself, not at its next poll of the marker."""
    heard: list[list[str]] = []
    _listening(pg)
    pg.add_listener(lambda queues: heard.append(list(queues)))
    other.enqueue_many([new_job(queue="b"), new_job(queue="a")])
    # Nobody reads the marker here: the listener thread calls the listeners by itself.
    assert _wait_for(lambda: sorted(q for queues in heard for q in queues) == ["a", "b"])


def test_close_stops_the_listener(pg: PostgresBackend) -> None:
    _listening(pg)
    thread = pg._listener._thread
    assert thread is not None and thread.is_alive()
    started = time.monotonic()
    pg.close()
    assert not thread.is_alive()
    assert time.monotonic() - started < 2.0
