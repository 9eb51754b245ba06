"""``Conveyor(pool)``: an application's own psycopg ConnectionPool, used by Conveyor and given
back exactly as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conveyor import Conveyor, JobState
from conveyor.backends.postgres.backend import PostgresBackend
from conveyor.backends.sql import parse_queries
from conveyor.errors import BackendError, ConfigurationError, DatabaseBusy
from tests.postgres.factory import new_schema, session_database

T = {
    **parse_queries((Path(__file__).parent / "transactional.sql").read_text(encoding="utf-8")),
    **parse_queries((Path(__file__).parent / "lent_pool.sql").read_text(encoding="utf-8")),
}


@pytest.fixture
def pool(app_schema: str) -> Iterator[ConnectionPool[Any]]:
    """The application's pool, set up its own way: one connection (so every use is the same
    session), not autocommit, dict rows, its own search_path and lock_timeout, and connection
    parameters given as keywords only."""

    def configure(conn: psycopg.Connection[Any]) -> None:
        conn.execute(T["set_session_search_path"], {"path": app_schema})
        conn.execute(T["set_session_lock_timeout"], {"timeout": "7s"})
        conn.commit()

    params = conninfo_to_dict(session_database().url)
    with ConnectionPool(
        "",
        kwargs={**params, "autocommit": False, "row_factory": dict_row},
        min_size=1,
        max_size=1,
        # A second checkout while Conveyor holds the only session can never succeed: fail
        # fast rather than after psycopg_pool's 30 s.
        timeout=3.0,
        configure=configure,
    ) as application_pool:
        yield application_pool


@pytest.fixture
def app(pool: ConnectionPool[Any]) -> Iterator[Conveyor]:
    schema = new_schema()
    application = Conveyor(pool, postgres_schema=schema, lease=10.0, heartbeat=1.0)

    @application.task(name="double")
    def double(x: int) -> int:
        return 2 * x

    try:
        yield application
    finally:
        application.close()
        session_database().drop_schema(schema)


def _session_of(pool: ConnectionPool[Any]) -> dict[str, Any]:
    with pool.connection() as conn:
        row = conn.execute(T["session_settings"]).fetchone()
        assert row is not None
        return {**row, "autocommit": conn.autocommit, "row_factory": conn.row_factory}


def test_jobs_run_on_the_applications_pool_which_gets_its_sessions_back_unchanged(
    app: Conveyor, pool: ConnectionPool[Any], app_schema: str
) -> None:
    before = _session_of(pool)
    assert before["search_path"] == app_schema
    requests = pool.get_stats()["requests_num"]

    jobs = app.enqueue_many([app.get_task("double").job(n) for n in range(20)])
    app.run_worker(burst=True, concurrency=4)

    assert [app.get_job(job.id).result for job in jobs] == [2 * n for n in range(20)]
    assert app.stats()["default"][JobState.SUCCEEDED] == 20
    assert pool.get_stats()["requests_num"] > requests + 20
    assert _session_of(pool) == before
    # And the application's own unqualified names still resolve in its own schema.
    with pool.connection() as conn:
        conn.execute(T["insert_order"], {"id": 1, "item": "book"})
        assert conn.execute(T["count_orders"]).fetchone() == {"count": 1}


def test_suspect_lookups_with_stale_caches_need_one_session_only(app: Conveyor) -> None:
    # The caches of gated queues and open breakers are refreshed through the pool: done
    # inside the suspect's transaction, the refresh would wait for a second session.
    app.get_task("double").enqueue(1)
    backend = cast(PostgresBackend, app.backend)
    backend._capped.forget()
    backend._unsettled.forget()
    assert backend.suspect_waiting(None) is False
    backend._capped.forget()
    backend._unsettled.forget()
    assert backend.claim_suspect("w", None, 10.0) is None


def test_an_operation_that_fails_gives_the_session_back_too(
    app: Conveyor, pool: ConnectionPool[Any]
) -> None:
    job = app.get_task("double").enqueue(1)
    before = _session_of(pool)
    impatient = Conveyor(pool, postgres_schema=app.settings.postgres_schema, lock_timeout=0.2)
    try:
        with psycopg.connect(session_database().url) as other, other.transaction():
            schema = sql.Identifier(app.settings.postgres_schema)
            other.execute(sql.SQL(T["lock_job"]).format(schema=schema), {"id": job.id})
            # Conveyor's lock_timeout, not the application's 7 s, while it holds the session.
            with pytest.raises(DatabaseBusy):
                impatient.cancel(job.id)
    finally:
        impatient.close()
    assert _session_of(pool) == before
    assert app.cancel(job.id).state is JobState.CANCELLED


def test_closing_the_app_leaves_the_pool_to_the_application(
    app: Conveyor, pool: ConnectionPool[Any]
) -> None:
    app.get_task("double").enqueue(1)
    app.close()
    assert not pool.closed
    assert app.stats()["default"][JobState.QUEUED] == 1  # a new backend on the same pool
    pool.close()
    with pytest.raises(BackendError, match="pool given to Conveyor is not open"):
        app.stats()


def test_only_a_sync_connection_pool_is_accepted() -> None:
    # Cast to Any: mypy refuses both already; the runtime check is for callers it does not check.
    async_pool = AsyncConnectionPool(session_database().url, open=False)
    with pytest.raises(ConfigurationError, match="AsyncConnectionPool"):
        Conveyor(cast(Any, async_pool))
    with pytest.raises(ConfigurationError, match=r"psycopg_pool\.ConnectionPool, got int"):
        Conveyor(cast(Any, 42))
