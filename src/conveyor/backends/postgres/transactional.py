"""Enqueue inside the application's own transaction, on its own psycopg connection.

The jobs are written by the application's transaction, so they exist if and only if it
commits: a rollback leaves nothing behind (not even a held idempotency key), and the NOTIFY
that wakes workers is part of the same transaction, which PostgreSQL delivers at commit.

Conveyor never commits, rolls back or opens a savepoint on that connection. Its statements run
with the transaction's ``search_path`` pointed at Conveyor's schema (``SET LOCAL``), and the
application's own ``search_path`` is put back before returning, so its next statements resolve
names as before. Times are the database's clock at the statement (not the transaction's start,
which may be long ago).

A database error inside the enqueue aborts the application's transaction, as any failing
statement would: it must roll back. A QueueFull leaves it usable with nothing of the batch in
it, although the per-queue advisory lock taken to count the queue is held until it ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from conveyor.backends.base import EnqueueResult
from conveyor.backends.postgres.connection import Q
from conveyor.backends.postgres.rows import job_from_row
from conveyor.backends.postgres.steps import AsyncCursor, Cursor, Statement, Steps
from conveyor.errors import BackendError, BackendUnavailable, ConfigurationError

T = TypeVar("T")

_HINT = (
    "pass the psycopg 3 connection of your transaction (SQLAlchemy: "
    "conn.connection.driver_connection; Django: django.db.connection.connection)"
)


def sync_cursor(connection: Any, target: str) -> Cursor:
    """A tuple-row cursor on the application's sync connection, once it is fit for use."""
    if isinstance(connection, psycopg.AsyncConnection):
        raise ConfigurationError(
            "this is an async connection (psycopg.AsyncConnection): use the async variant "
            "(enqueue_many_async / enqueue_tx_async)"
        )
    if not isinstance(connection, psycopg.Connection):
        raise ConfigurationError(
            f"transactional enqueue needs a psycopg.Connection, got "
            f"{type(connection).__name__}: {_HINT}"
        )
    _check(connection, target)
    return connection.cursor(row_factory=tuple_row)


def async_cursor(connection: Any, target: str) -> AsyncCursor:
    """A tuple-row cursor on the application's async connection, once it is fit for use."""
    if isinstance(connection, psycopg.Connection):
        raise ConfigurationError(
            "this is a sync connection (psycopg.Connection): use the sync variant "
            "(enqueue_many / enqueue_tx)"
        )
    if not isinstance(connection, psycopg.AsyncConnection):
        raise ConfigurationError(
            f"async transactional enqueue needs a psycopg.AsyncConnection, got "
            f"{type(connection).__name__}: {_HINT}"
        )
    _check(connection, target)
    return connection.cursor(row_factory=tuple_row)


def _check(connection: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], target: str) -> None:
    if connection.closed or connection.broken:
        raise BackendUnavailable(f"the connection given for {target} is closed")
    status = connection.info.transaction_status
    if status is TransactionStatus.INERROR:
        raise BackendError(
            "the transaction of the connection given is aborted (an earlier statement "
            "failed): roll it back first"
        )
    if status is TransactionStatus.ACTIVE:
        raise BackendError("the connection given is busy running another statement")
    if status is TransactionStatus.IDLE and connection.autocommit:
        raise ConfigurationError(
            "the connection given is in autocommit mode and not inside a transaction, so the "
            "job would not be tied to anything: enqueue inside `with conn.transaction():` "
            "(or use a connection with autocommit off)"
        )


def in_transaction(
    schema: str,
    injected_now: float | None,
    body: Callable[[float, list[int]], Steps[list[EnqueueResult]]],
) -> Steps[list[EnqueueResult]]:
    """``body(now, written)`` inside the application's transaction, pointed at ``schema``;
    then the jobs that already held a key are read there too (the pool cannot see them yet).

    ``body`` lists in ``written`` the ids of the rows it inserted. When it raises after
    writing (QueueFull is decided by counting after the insert), those rows are deleted again
    in the same transaction: whatever the application then does, nothing of the batch can be
    committed. (No savepoint: each one that writes takes a subtransaction id, and a transaction
    holding more than 64 of them slows the snapshots of every session on the server.)"""
    rows = yield Statement(Q["enter_schema"], {"schema": schema})
    search_path, clock, _ = rows[0]
    now = float(clock) if injected_now is None else injected_now
    written: list[int] = []
    try:
        results = yield from body(now, written)
        results = yield from _existing(results)
        for result in results:
            result.at = now
    except Exception:
        # Only errors raised here (QueueFull ...), not the server's: after those the
        # transaction is aborted and the caller must roll it back anyway.
        if written:
            yield Statement(Q["undo_enqueue"], {"ids": written})
        yield Statement(Q["leave_schema"], {"search_path": search_path})
        raise
    yield Statement(Q["leave_schema"], {"search_path": search_path})
    return results


def _existing(results: Sequence[EnqueueResult]) -> Steps[list[EnqueueResult]]:
    held = sorted({r.job_id for r in results if not r.created})
    if not held:
        return list(results)
    rows = yield Statement(Q["get_jobs"], {"ids": held}, dicts=True)
    jobs = {job.id: job for job in map(job_from_row, rows)}
    for result in results:
        if not result.created:
            result.existing = jobs.get(result.job_id)
    return list(results)
