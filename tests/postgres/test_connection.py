"""URLs, typed errors, and surviving connections the server took away."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from conveyor.backends import open_backend
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.connection import TCP_DEFAULTS
from conveyor.backends.postgres.errors import translate
from conveyor.backends.sql import parse_queries
from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    DatabaseBusy,
    StorageFull,
)
from conveyor.settings import Settings
from tests.postgres.conftest import inspect
from tests.support import new_job

T = parse_queries((Path(__file__).parent / "connection.sql").read_text(encoding="utf-8"))


def _as_url(conninfo: str, scheme: str) -> str:
    params = conninfo_to_dict(conninfo)
    user = params.get("user", "")
    password = f":{params['password']}" if params.get("password") else ""
    host = params.get("host", "localhost")
    port = params.get("port", "5432")
    return f"{scheme}://{user}{password}@{host}:{port}/{params['dbname']}"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "keywords"])
def test_every_url_form_opens_the_same_store(pg: PostgresBackend, scheme: str) -> None:
    job_id = pg.enqueue_many([new_job(args_json='["hello"]')])[0].job_id
    url = pg.settings.url if scheme == "keywords" else _as_url(pg.settings.url, scheme)
    other = open_backend(pg.settings.replace(url=url))
    try:
        assert isinstance(other, PostgresBackend)
        assert other.get(job_id).args == ["hello"]
    finally:
        other.close()


def test_an_unreachable_server_is_reported_at_once_without_the_password() -> None:
    settings = Settings.load(
        env={},
        url="postgresql://conveyor:sekret@127.0.0.1:1/jobs",
        postgres_connect_timeout=3.0,
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        PostgresBackend(settings)
    assert time.monotonic() - started < 5.0
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert '"jobs"' in message
    assert "sekret" not in message


def test_a_missing_database_is_named(pg: PostgresBackend) -> None:
    url = _as_url(pg.settings.url, "postgresql").rsplit("/", 1)[0] + "/no_such_db_here"
    with pytest.raises(BackendUnavailable, match="no_such_db_here"):
        PostgresBackend(pg.settings.replace(url=url))


def test_a_bad_connection_string_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        PostgresBackend(Settings.load(env={}, url="host=x nonsense"))


@pytest.mark.parametrize("schema", ["Conveyor", "1abc", "pg_jobs", "a-b", "x" * 58, ""])
def test_the_schema_setting_must_be_a_plain_identifier(schema: str) -> None:
    with pytest.raises(ConfigurationError, match="postgres_schema"):
        Settings.load(env={}, url="postgresql://x/y", postgres_schema=schema)


def test_postgres_settings_have_environment_twins() -> None:
    settings = Settings.load(
        env={
            "CONVEYOR_POSTGRES_SCHEMA": "jobs_a",
            "CONVEYOR_POSTGRES_POOL_MAX_SIZE": "3",
            "CONVEYOR_POSTGRES_CONNECT_TIMEOUT": "2.5",
            "CONVEYOR_POSTGRES_POOL_MAX_IDLE": "60",
            "CONVEYOR_POSTGRES_POOL_MAX_LIFETIME": "900",
        }
    )
    assert settings.postgres_schema == "jobs_a"
    assert settings.postgres_pool_max_size == 3
    assert settings.postgres_connect_timeout == 2.5
    assert (settings.postgres_pool_max_idle, settings.postgres_pool_max_lifetime) == (60, 900)
    for name in ("postgres_pool_max_idle", "postgres_pool_max_lifetime"):
        with pytest.raises(ConfigurationError, match=name):
            Settings.load(env={}, **{name: 0})


def test_a_lock_held_too_long_is_database_busy(pg: PostgresBackend) -> None:
    job_id = pg.enqueue_many([new_job()])[0].job_id
    busy = PostgresBackend(pg.settings.replace(lock_timeout=0.2))
    try:
        with inspect(pg) as conn, conn.transaction():
            conn.execute(T["lock_job"], {"id": job_id})
            with pytest.raises(DatabaseBusy, match="busy"):
                busy.cancel(job_id)
        assert busy.cancel(job_id).state.value == "cancelled"
    finally:
        busy.close()


def test_server_errors_become_typed_errors() -> None:
    target = 'database "jobs" on db:5432 (schema conveyor)'
    full = translate(psycopg.errors.DiskFull("could not extend file"), target)
    assert isinstance(full, StorageFull)
    assert "jobs" in str(full)
    assert isinstance(translate(psycopg.errors.AdminShutdown("bye"), target), BackendUnavailable)
    assert isinstance(translate(psycopg.errors.LockNotAvailable("x"), target), DatabaseBusy)
    assert isinstance(translate(psycopg.errors.CheckViolation("x"), target), BackendError)


def _terminate_others(pg: PostgresBackend, application: str) -> int:
    with inspect(pg) as conn:
        rows = conn.execute(T["terminate"], {"application": application}).fetchall()
    return len(rows)


def test_the_pool_reconnects_after_the_server_killed_its_connections(pg: PostgresBackend) -> None:
    first = pg.enqueue_many([new_job() for _ in range(3)])
    # Make the pool hold several connections, then have the server kill them all.
    barrier = threading.Barrier(4)

    def busy() -> None:
        barrier.wait(10)
        pg.stats()

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert _terminate_others(pg, "conveyor") >= 1

    # Every kind of call goes on working: reads, writes, and the claim.
    assert pg.get(first[0].job_id).state.value == "queued"
    second = pg.enqueue_many([new_job()])
    claimed = pg.claim("w", None, 10, 30.0)
    assert {c.id for c in claimed} == {r.job_id for r in [*first, *second]}
    assert sum(pg.stats()["default"].values()) == 4


def test_the_listener_reconnects_and_wakes_waiters(pg: PostgresBackend) -> None:
    pg.change_marker()
    assert pg._listener.connected.wait(10)
    before = pg.change_marker()
    session = pg._listener._session
    assert session is not None
    with inspect(pg) as conn:
        conn.execute(T["terminate_pid"], {"pid": session.info.backend_pid})
    deadline = time.monotonic() + 10
    # Reconnecting bumps the marker: waiters look for work they may have missed.
    while pg.change_marker() == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pg.change_marker() > before
    assert pg._listener.connected.wait(10)
    # And notifications arrive again.
    settled = pg.change_marker()
    other = PostgresBackend(pg.settings)
    try:
        other.enqueue_many([new_job()])
    finally:
        other.close()
    while pg.change_marker() == settled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pg.change_marker() > settled


def test_close_leaves_no_connection_behind(pg: PostgresBackend) -> None:
    other = PostgresBackend(pg.settings)
    other.enqueue_many([new_job()])
    other.change_marker()
    assert other._listener.connected.wait(10)
    other.close()
    pg.close()
    with inspect(pg) as conn:
        deadline = time.monotonic() + 5
        while conn.execute(T["conveyor_sessions"]).fetchall() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.execute(T["conveyor_sessions"]).fetchall() == []
    assert not other._listener._thread


def test_a_closed_backend_says_so(pg: PostgresBackend) -> None:
    pg.close()
    with pytest.raises(BackendError, match="closed"):
        pg.stats()


# --- connection health ------------------------------------------------------------------------


def test_every_session_has_keepalives_and_a_user_timeout_unless_the_url_sets_them(
    pg: PostgresBackend,
) -> None:
    def tcp_settings(backend: PostgresBackend) -> list[dict[str, str]]:
        with backend._db._connection() as pooled, backend._connect_listener() as listener:
            return [
                {k: conn.info.get_parameters().get(k, "") for k in TCP_DEFAULTS}
                for conn in (pooled, listener)
            ]

    assert tcp_settings(pg) == [TCP_DEFAULTS, TCP_DEFAULTS]
    url = make_conninfo(pg.settings.url, keepalives_idle="7", tcp_user_timeout="0")
    tuned = PostgresBackend(pg.settings.replace(url=url))
    try:
        expected = {**TCP_DEFAULTS, "keepalives_idle": "7", "tcp_user_timeout": "0"}
        assert tcp_settings(tuned) == [expected, expected]
    finally:
        tuned.close()


def test_pool_lifetimes_come_from_the_settings(pg: PostgresBackend) -> None:
    other = PostgresBackend(
        pg.settings.replace(postgres_pool_max_idle=45.0, postgres_pool_max_lifetime=700.0)
    )
    try:
        assert (other._db._pool.max_idle, other._db._pool.max_lifetime) == (45.0, 700.0)
    finally:
        other.close()


def test_connections_the_server_ended_are_replaced_before_use(
    pg: PostgresBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """No operation is sent down a dead pooled connection (and retried): the pool finds the
    dead ones as it hands them out, without a round trip for the live ones."""
    barrier = threading.Barrier(4)

    def busy() -> None:
        barrier.wait(10)
        pg.stats()

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert _terminate_others(pg, "conveyor") >= 1
    with inspect(pg) as conn:  # until the server has closed them all
        deadline = time.monotonic() + 10
        while conn.execute(T["conveyor_sessions"]).fetchall() and time.monotonic() < deadline:
            time.sleep(0.01)

    caplog.set_level(logging.WARNING, logger="conveyor.backends.postgres.connection")
    job_id = pg.enqueue_many([new_job()])[0].job_id
    for _ in range(4):
        assert pg.get(job_id).state.value == "queued"
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "retrying" in m], messages
    assert any("was dead; replacing them all" in m for m in messages), messages
