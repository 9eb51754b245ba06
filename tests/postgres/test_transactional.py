"""Enqueue inside the application's own transaction, on its own psycopg connection: the job
exists if and only if that transaction commits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conveyor import Conveyor, Job, JobNotFound, JobState, QueueFull, Task
from conveyor.backends.postgres.enqueue import STAGE_FROM
from conveyor.backends.sql import parse_queries
from conveyor.errors import BackendError, ConfigurationError
from tests.postgres.apps import postgres_app
from tests.postgres.factory import session_database

T = parse_queries((Path(__file__).parent / "transactional.sql").read_text(encoding="utf-8"))

Connection = psycopg.Connection[Any]


def composed(name: str, **identifiers: str) -> sql.Composed:
    return sql.SQL(T[name]).format(**{k: sql.Identifier(v) for k, v in identifiers.items()})


@pytest.fixture
def app() -> Iterator[Conveyor]:
    with postgres_app(queue_limits={"limited": 2}) as app:

        @app.task(name="send_receipt")
        def send_receipt(order_id: int) -> None:
            return None

        app.backend  # noqa: B018  (the schema exists before the application's transaction)
        yield app


@pytest.fixture
def receipt(app: Conveyor) -> Task[..., Any]:
    return app.get_task("send_receipt")


@pytest.fixture
def conn(app_schema: str) -> Iterator[Connection]:
    """The application's connection: autocommit off, search_path on its own schema only."""
    database = session_database()
    with psycopg.connect(database.url, options=f"-c search_path={app_schema}") as connection:
        yield connection


def _count(app: Conveyor, name: str = "count_jobs", **params: Any) -> int:
    database = session_database()
    with psycopg.connect(database.url, autocommit=True) as other:
        row = other.execute(
            composed(name, schema=app.settings.postgres_schema), params or None
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_committed_job_is_visible_and_claimable(
    app: Conveyor, receipt: Task[..., Any], conn: Connection
) -> None:
    job = receipt.enqueue_tx(conn, 42)
    assert job.state is JobState.QUEUED and job.args == [42]
    # Not before the commit: other connections cannot see it, no worker can take it.
    with pytest.raises(JobNotFound):
        app.get_job(job.id)
    assert app.backend.claim("w", None, 10, 30.0) == []
    conn.commit()
    assert app.get_job(job.id).args == [42]
    claimed = app.backend.claim("w", None, 10, 30.0)
    assert [c.id for c in claimed] == [job.id]


def test_a_rolled_back_job_never_existed_and_frees_its_key(
    app: Conveyor, receipt: Task[..., Any], conn: Connection
) -> None:
    doomed = receipt.options(idempotency_key="order-7").enqueue_tx(conn, 7)
    conn.rollback()
    with pytest.raises(JobNotFound):
        app.get_job(doomed.id)
    assert _count(app) == 0
    # The key was never held: the next enqueue creates a job.
    again = receipt.options(idempotency_key="order-7").enqueue(7)
    assert again.id != doomed.id
    assert _count(app, "count_jobs_with_key", key="order-7") == 1


def test_the_job_and_the_applications_own_rows_commit_together(
    app: Conveyor, receipt: Task[..., Any], conn: Connection
) -> None:
    # Both or neither: rolled back...
    conn.execute(T["insert_order"], {"id": 1, "item": "book"})
    receipt.enqueue_tx(conn, 1)
    conn.execute(T["insert_order"], {"id": 2, "item": "pen"})  # unqualified: search_path intact
    conn.rollback()
    assert conn.execute(T["count_orders"]).fetchone() == (0,)
    assert _count(app) == 0
    # ... and committed.
    receipt.enqueue_tx(conn, 1)
    conn.execute(T["insert_order"], {"id": 1, "item": "book"})
    conn.commit()
    assert conn.execute(T["count_orders"]).fetchone() == (1,)
    assert _count(app) == 1


def test_a_failing_statement_of_the_application_takes_the_job_with_it(
    app: Conveyor, receipt: Task[..., Any], conn: Connection
) -> None:
    receipt.enqueue_tx(conn, 1)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(T["insert_order"], {"id": 1, "item": ""})
    conn.rollback()
    assert _count(app) == 0


def test_the_applications_search_path_is_left_as_it_was(
    app: Conveyor, receipt: Task[..., Any], conn: Connection, app_schema: str
) -> None:
    assert conn.execute(T["search_path"]).fetchone() == (app_schema,)
    conn.rollback()
    with conn.transaction():
        conn.execute(T["set_local_search_path"], {"path": f"{app_schema}, public"})
        receipt.enqueue_tx(conn, 1)
        assert conn.execute(T["search_path"]).fetchone() == (f"{app_schema}, public",)
    assert conn.execute(T["search_path"]).fetchone() == (app_schema,)
    assert _count(app) == 1


def test_the_wake_up_is_delivered_at_commit(
    app: Conveyor, receipt: Task[..., Any], conn: Connection
) -> None:
    database = session_database()
    channel = f"{app.settings.postgres_schema}_jobs"
    with psycopg.connect(database.url, autocommit=True) as listener:
        listener.execute(composed("listen", channel=channel))
        receipt.enqueue_tx(conn, 1)
        assert list(listener.notifies(timeout=0.3, stop_after=1)) == []
        conn.commit()
        heard = list(listener.notifies(timeout=10, stop_after=1))
    assert [(n.channel, n.payload) for n in heard] == [(channel, "default")]


def test_a_key_enqueued_twice_in_one_transaction_returns_the_first_job(
    app: Conveyor, receipt: Task[..., Any], conn: Connection
) -> None:
    first = receipt.options(idempotency_key="k").enqueue_tx(conn, 1)
    # The holder is not committed yet: it is read inside the same transaction.
    second = receipt.options(idempotency_key="k").enqueue_tx(conn, 2)
    assert second.id == first.id and second.args == [1]
    conn.commit()
    assert _count(app) == 1


def test_large_batches_take_the_copy_paths_inside_the_transaction(
    app: Conveyor, receipt: Task[..., Any], conn: Connection
) -> None:
    plain = [receipt.job(n) for n in range(STAGE_FROM)]
    keyed = [receipt.options(idempotency_key=f"k{n}").job(n) for n in range(STAGE_FROM)]
    app.enqueue_many(plain, connection=conn)
    conn.rollback()
    assert _count(app) == 0
    jobs = app.enqueue_many(plain, connection=conn)
    # Two staged (keyed) batches in one transaction: the staging table does not linger, and
    # the second finds the first's uncommitted jobs.
    first = app.enqueue_many(keyed, connection=conn)
    again = app.enqueue_many(keyed, connection=conn)
    assert [j.id for j in again] == [j.id for j in first]
    assert [j.args for j in again] == [[n] for n in range(STAGE_FROM)]
    conn.commit()
    assert _count(app) == 2 * STAGE_FROM
    assert [j.id for j in jobs] == sorted(j.id for j in jobs)
    assert app.get_job(jobs[-1].id).args == [STAGE_FROM - 1]


def test_queue_full_leaves_the_transaction_usable(
    app: Conveyor, receipt: Task[..., Any], conn: Connection, app_schema: str
) -> None:
    limited = receipt.options(queue="limited")
    with pytest.raises(QueueFull):
        app.enqueue_many([limited.job(n) for n in range(3)], connection=conn)
    assert conn.execute(T["search_path"]).fetchone() == (app_schema,)
    conn.execute(T["insert_order"], {"id": 1, "item": "book"})
    limited.enqueue_tx(conn, 1)
    conn.commit()
    assert _count(app) == 1


def test_async_connections(app: Conveyor, receipt: Task[..., Any], app_schema: str) -> None:
    database = session_database()

    async def scenario() -> tuple[Job, Job]:
        aconn = await psycopg.AsyncConnection.connect(
            database.url, options=f"-c search_path={app_schema}"
        )
        async with aconn:
            kept = await receipt.enqueue_tx_async(aconn, 1)
            await aconn.execute(T["insert_order"], {"id": 1, "item": "book"})
            await aconn.commit()
            dropped = await receipt.options(idempotency_key="a").enqueue_tx_async(aconn, 2)
            await aconn.execute(T["insert_order"], {"id": 2, "item": "pen"})
            await aconn.rollback()
            many = await app.enqueue_many_async(
                [receipt.job(n) for n in range(STAGE_FROM)], connection=aconn
            )
            assert len(many) == STAGE_FROM
            await aconn.rollback()
            with pytest.raises(ConfigurationError, match="async variant"):
                receipt.enqueue_tx(aconn, 3)
        return kept, dropped

    kept, dropped = asyncio.run(scenario())
    assert app.get_job(kept.id).args == [1]
    with pytest.raises(JobNotFound):
        app.get_job(dropped.id)
    assert _count(app) == 1
    with psycopg.connect(database.url, options=f"-c search_path={app_schema}") as check:
        assert check.execute(T["count_orders"]).fetchone() == (1,)


def test_misuse_is_reported_clearly(
    app: Conveyor, receipt: Task[..., Any], conn: Connection, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError, match=r"psycopg\.Connection"):
        receipt.enqueue_tx(sqlite3.connect(":memory:"), 1)
    with pytest.raises(ConfigurationError, match="sync variant"):
        asyncio.run(receipt.enqueue_tx_async(conn, 1))
    conn.autocommit = True
    with pytest.raises(ConfigurationError, match="autocommit"):
        receipt.enqueue_tx(conn, 1)
    with conn.transaction():  # autocommit with a transaction block open: fine
        receipt.enqueue_tx(conn, 1)
    assert _count(app) == 1
    conn.autocommit = False
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute(T["broken_statement"])
    with pytest.raises(BackendError, match="aborted"):
        receipt.enqueue_tx(conn, 1)
    conn.rollback()

    sqlite_app = Conveyor(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        task = sqlite_app.task(name="t")(lambda: None)
        with pytest.raises(ConfigurationError, match="needs PostgreSQL"):
            task.enqueue_tx(conn)
        with pytest.raises(ConfigurationError, match="needs PostgreSQL"):
            asyncio.run(sqlite_app.enqueue_many_async([task.job()], connection=conn))
    finally:
        sqlite_app.close()


# --- one key, many concurrent enqueuers --------------------------------------------------------

ENQUEUERS = 50


def test_concurrent_enqueues_of_one_key_half_rolled_back_make_exactly_one_job(
    app: Conveyor, receipt: Task[..., Any]
) -> None:
    """50 real connections enqueue one key at once: half inside transactions that roll back
    (after holding the key for a moment, so others queue behind them), the others inside
    transactions that commit or through the pool."""
    database = session_database()
    start = threading.Barrier(ENQUEUERS)
    lock = threading.Lock()
    committed: list[int] = []
    errors: list[BaseException] = []
    keyed = receipt.options(idempotency_key="the-key")

    def enqueuer(index: int) -> None:
        try:
            kind = "rollback" if index % 2 == 0 else ("commit", "pool")[index // 2 % 2]
            if kind == "pool":
                start.wait(30)
                job = keyed.enqueue(index)
            else:
                with psycopg.connect(database.url) as conn:
                    start.wait(30)
                    job = keyed.enqueue_tx(conn, index)
                    if kind == "rollback":
                        # Hold the key a moment with the transaction open, so that others
                        # queue behind it on the unique index, then give it up.
                        time.sleep(0.05)
                        conn.rollback()
                        return
                    conn.commit()
            with lock:
                committed.append(job.id)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=enqueuer, args=(i,)) for i in range(ENQUEUERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[0]
    assert _count(app, "count_jobs_with_key", key="the-key") == 1
    assert _count(app) == 1
    assert len(committed) == ENQUEUERS // 2
    survivor = app.list_jobs()[0]
    assert set(committed) == {survivor.id}
    assert survivor.state is JobState.QUEUED
