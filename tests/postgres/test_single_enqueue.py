"""PostgreSQL: a job enqueued on its own is one statement that inserts and wakes listeners."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import pq

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.sql import parse_queries
from conveyor.job import JobState
from tests.postgres.conftest import inspect
from tests.postgres.factory import postgres_backend
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
    pg.change_marker()
    assert pg._listener.connected.wait(10)
    time.sleep(0.05)
    return pg.change_marker()


def _settled(pg: PostgresBackend, marker: int, timeout: float = 5.0) -> int:
    """The marker once it has moved past ``marker`` and stayed put for a moment."""
    deadline = time.monotonic() + timeout
    while pg.change_marker() <= marker and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.2)
    return pg.change_marker()


def test_a_single_enqueue_wakes_a_listener_in_another_process(
    pg: PostgresBackend, other: PostgresBackend
) -> None:
    before = _listening(pg)
    [result] = other.enqueue_many([new_job(queue="mail")])

    assert _settled(pg, before) == before + 1, "one NOTIFY, sent by the insert itself"
    assert result.created and result.state is JobState.QUEUED
    assert pg.get(result.job_id).queue == "mail"


def test_a_single_keyed_enqueue_of_a_held_key_wakes_nobody(
    pg: PostgresBackend, other: PostgresBackend
) -> None:
    [first] = other.enqueue_many([new_job(idempotency_key="k")])
    before = _listening(pg)
    [again] = other.enqueue_many([new_job(idempotency_key="k")])

    assert not again.created and again.job_id == first.job_id
    assert _settled(pg, before, timeout=0.3) == before, "nothing new, no wake-up"


def test_a_single_enqueue_is_one_round_trip(tmp_path: Path, clock: FakeClock) -> None:
    """No health probe, no search_path, no BEGIN/COMMIT around the insert: what the pool's
    one connection sends for an enqueue is one statement and one Sync."""
    overrides = {"postgres_pool_min_size": 1, "postgres_pool_max_size": 1}
    with postgres_backend(None, clock, overrides) as pg:
        pg.enqueue_many([new_job()])  # connected, and the statement prepared
        pg.enqueue_many([new_job()])
        trace = tmp_path / "trace.txt"
        with trace.open("w") as out:
            with pg._db._pool.connection() as conn:
                conn.pgconn.trace(out.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            try:
                [result] = pg.enqueue_many([new_job()])
            finally:
                with pg._db._pool.connection() as conn:
                    conn.pgconn.untrace()
        lines = trace.read_text().splitlines()
        assert pg.get(result.job_id).state is JobState.QUEUED

    sent = [line.split("\t")[2] for line in lines if line.startswith("F\t")]
    assert sent.count("Sync") + sent.count("Query") == 1, sent
    assert "Bind" in sent and "Parse" not in sent, "a prepared statement, bound again"


def test_the_wake_up_survives_a_dropped_notifier_session(
    pg: PostgresBackend, other: PostgresBackend
) -> None:
    before = _listening(pg)
    other.enqueue_many([new_job()])
    assert _settled(pg, before) == before + 1
    assert other._notifier.idle.wait(5)
    session = other._notifier._session
    assert session is not None
    with inspect(pg) as admin:  # the server ends the notifier's session
        admin.execute(T["terminate_pid"], {"pid": session.info.backend_pid})

    marker = pg.change_marker()
    other.enqueue_many([new_job()])
    assert _settled(pg, marker) == marker + 1, "sent again on a new session"


def test_close_sends_the_wake_ups_still_pending(pg: PostgresBackend, clock: FakeClock) -> None:
    before = _listening(pg)
    leaving = PostgresBackend(pg.settings, clock=clock)
    leaving.enqueue_many([new_job()])
    leaving.close()
    assert _settled(pg, before) == before + 1
