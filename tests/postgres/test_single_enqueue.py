"""PostgreSQL: a job enqueued on its own is one round trip that inserts and wakes listeners."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from psycopg import pq

from conveyor.backends.postgres import PostgresBackend, enqueue
from conveyor.backends.postgres.prepared import PreparedStatement
from conveyor.backends.sql import parse_queries
from conveyor.job import JobState
from conveyor.settings import Settings
from tests.postgres.conftest import inspect
from tests.postgres.factory import postgres_backend
from tests.postgres.sessions import one_round_trip
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


@pytest.fixture
def unprepared(pg: PostgresBackend, clock: FakeClock) -> Iterator[PostgresBackend]:
    """A second backend with prepared statements turned off (PgBouncer in transaction mode):
    its single enqueues leave their wake-ups to the notifier."""
    settings = Settings.load(
        env={},
        url=pg.settings.url,
        postgres_schema=pg.settings.postgres_schema,
        postgres_prepare_threshold=-1,
    )
    backend = PostgresBackend(settings, clock=clock)
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


@contextmanager
def _sessions_busy(pg: PostgresBackend) -> Iterator[None]:
    """The backend's one session for single enqueues (sync_enqueue.py) held, as by another
    thread: single enqueues go through the pool meanwhile."""
    singles = pg._sync_singles
    assert singles is not None and singles._max == 1
    held = singles._take()
    assert held is not None
    try:
        yield
    finally:
        singles._give_back(held)


def test_through_the_pool_a_single_enqueue_is_one_round_trip(
    tmp_path: Path, clock: FakeClock
) -> None:
    """No health probe, no search_path, no BEGIN/COMMIT around the insert: what the pool's
    one connection sends for an enqueue goes out before any answer comes back: the prepared
    insert, then the wake-up in a transaction of its own (a Sync apiece)."""
    overrides = {"postgres_pool_min_size": 1, "postgres_pool_max_size": 1}
    with postgres_backend(None, clock, overrides) as pg, ExitStack() as busy:
        pg.enqueue_many([new_job()])  # the session for single enqueues made
        busy.enter_context(_sessions_busy(pg))
        pg.enqueue_many([new_job()])  # connected, and the statements prepared
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
        assert pg.get(result.job_id).state is JobState.QUEUED

    sent = one_round_trip(trace)
    assert sent.count("Sync") == 2 and "Query" not in sent, sent
    assert sent.count("Bind") == 2 and "Parse" not in sent, "prepared statements, bound again"


def test_the_wake_up_is_sent_by_the_inserting_session_in_a_transaction_of_its_own(
    pg: PostgresBackend, other: PostgresBackend
) -> None:
    """Sent behind the INSERT, by the pooled session itself: no notifier session at all."""
    before = _listening(pg)
    [result] = other.enqueue_many([new_job(queue="mail")])

    assert _settled(pg, before) == before + 1
    assert other._notifier._session is None
    assert pg.get(result.job_id).queue == "mail"


def test_a_failed_wake_up_leaves_the_committed_insert_alone(
    pg: PostgresBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """The statement behind is a transaction of its own: its failure rolls nothing back."""
    failing = PreparedStatement("test_failing_wake_up", T["failing_notify"])
    values = enqueue.text_values(new_job(queue="kept"), None)
    with pg._db._pool.connection() as conn:
        result = enqueue.INSERT_JOB.run_then(conn, values, failing, [b"x"])
        assert conn.pgconn.pipeline_status == pq.PipelineStatus.OFF
        assert conn.execute(T["select_one"]).fetchone() == (1,), "the session goes on"
    job_id = int(result.get_value(0, 0) or 0)

    assert pg.get(job_id).queue == "kept"
    assert "payload string too long" in caplog.text


def test_through_the_pool_a_statement_the_server_forgot_is_prepared_again(
    pg: PostgresBackend,
) -> None:
    overrides = {"postgres_pool_min_size": 1, "postgres_pool_max_size": 1}
    with postgres_backend(None, None, overrides) as one:
        one.enqueue_many([new_job()])
        with _sessions_busy(one):
            one.enqueue_many([new_job()])  # prepared on the pool's connection
            with one._db._pool.connection() as conn:
                conn.execute(T["deallocate_all"])
            [result] = one.enqueue_many([new_job(queue="again")])
        assert one.get(result.job_id).queue == "again"


def test_without_prepared_statements_the_notifier_wakes_listeners(
    pg: PostgresBackend, unprepared: PostgresBackend
) -> None:
    before = _listening(pg)
    [result] = unprepared.enqueue_many([new_job(queue="mail")])

    assert _settled(pg, before) == before + 1
    assert unprepared._notifier.idle.wait(5)
    assert unprepared._notifier._session is not None, "sent by the notifier"
    assert pg.get(result.job_id).queue == "mail"


def test_the_wake_up_survives_a_dropped_notifier_session(
    pg: PostgresBackend, unprepared: PostgresBackend
) -> None:
    before = _listening(pg)
    unprepared.enqueue_many([new_job()])
    assert _settled(pg, before) == before + 1
    assert unprepared._notifier.idle.wait(5)
    session = unprepared._notifier._session
    assert session is not None
    with inspect(pg) as admin:  # the server ends the notifier's session
        admin.execute(T["terminate_pid"], {"pid": session.info.backend_pid})

    marker = pg.change_marker()
    unprepared.enqueue_many([new_job()])
    assert _settled(pg, marker) == marker + 1, "sent again on a new session"


def test_close_sends_the_wake_ups_still_pending(pg: PostgresBackend, clock: FakeClock) -> None:
    before = _listening(pg)
    settings = Settings.load(
        env={},
        url=pg.settings.url,
        postgres_schema=pg.settings.postgres_schema,
        postgres_prepare_threshold=-1,
    )
    leaving = PostgresBackend(settings, clock=clock)
    leaving.enqueue_many([new_job()])
    leaving.close()
    assert _settled(pg, before) == before + 1
