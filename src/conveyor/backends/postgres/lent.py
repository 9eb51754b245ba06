"""A psycopg connection pool of the application's own, lent to Conveyor: ``Conveyor(pool)``.

Its connections are the application's, set up the application's way, and go back to it after
every operation exactly as they came: Conveyor turns autocommit on and reads tuples while it
holds one, and points the session's ``search_path`` and ``lock_timeout`` at its own values
(one round trip), then puts the application's back (another). The LISTEN session and schema
migrations use connections of their own, made from the pool's connection parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from psycopg.rows import RowFactory, tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from conveyor.backends.sql import load_queries
from conveyor.errors import ConfigurationError

Q = load_queries("conveyor.backends.postgres")
Connection = psycopg.Connection[Any]

#: Parameters libpq knows (the pool's ``kwargs`` may also hold psycopg's own, like autocommit).
_LIBPQ_KEYWORDS = frozenset(d.keyword.decode() for d in pq.Conninfo.get_defaults())


def url_of(pool: Any) -> str:
    """The libpq connection string ``pool`` connects with: Conveyor's own sessions (LISTEN,
    migrations) connect the same way."""
    if isinstance(pool, AsyncConnectionPool):
        raise ConfigurationError(
            "Conveyor needs a psycopg_pool.ConnectionPool (sync; async code enqueues through "
            "it with enqueue_async), not an AsyncConnectionPool"
        )
    if not isinstance(pool, ConnectionPool):
        raise ConfigurationError(
            "url must be a database URL or a psycopg_pool.ConnectionPool, got "
            f"{type(pool).__name__}"
        )
    # Since psycopg_pool 3.3 both may be callables, asked again for each new connection.
    conninfo = pool.conninfo() if callable(pool.conninfo) else pool.conninfo
    kwargs = pool.kwargs() if callable(pool.kwargs) else (pool.kwargs or {})
    params = {k: v for k, v in kwargs.items() if k in _LIBPQ_KEYWORDS and v is not None}
    try:
        url = make_conninfo(conninfo, **params)
    except psycopg.Error as exc:
        raise ConfigurationError(f"bad connection parameters in the pool: {exc}") from None
    # No parameter at all: libpq's defaults and PG* variables, as for the pool itself.
    return url or "postgresql://"


@dataclass(frozen=True)
class Loan:
    """What a lent connection was like before Conveyor changed it."""

    autocommit: bool
    row_factory: RowFactory[Any]
    search_path: str
    lock_timeout: str


def borrow(conn: Connection, schema: str, lock_timeout_ms: str) -> Loan:
    """Set a connection of the application's pool up for Conveyor, noting what to put back."""
    autocommit, row_factory = conn.autocommit, conn.row_factory
    conn.autocommit = True  # the pool hands out idle connections: always allowed
    conn.row_factory = tuple_row
    try:
        row = conn.execute(
            Q["borrow_session"], {"schema": schema, "lock_timeout": lock_timeout_ms}
        ).fetchone()
    except BaseException:
        give_back(conn, Loan(autocommit, row_factory, "", ""))
        raise
    assert row is not None
    return Loan(autocommit, row_factory, str(row[0]), str(row[1]))


def give_back(conn: Connection, loan: Loan) -> None:
    """The connection as the application had it; closed (so that its pool replaces it) if
    that cannot be done, rather than handed back pointing at Conveyor's schema."""
    try:
        if loan.search_path and not conn.closed:
            if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                raise psycopg.InterfaceError("left inside a transaction")
            conn.execute(
                Q["configure_session"],
                {"schema": loan.search_path, "lock_timeout": loan.lock_timeout},
            )
        conn.row_factory = loan.row_factory
        conn.autocommit = loan.autocommit
    except psycopg.Error:
        conn.close()
