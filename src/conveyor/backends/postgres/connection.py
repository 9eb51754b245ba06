"""PostgreSQL connections: the pool, how each session is set up, and transactions that survive a
dropped connection or a deadlock by running again.

Pooled connections are in autocommit mode: a single-statement read is one round trip, and
multi-statement operations open an explicit transaction. Each new session gets its
``search_path`` pointed at the Conveyor schema (so queries.sql never names it) and its
``lock_timeout`` set from ``settings.lock_timeout``.

Dead connections are found fast: TCP keepalives and a user timeout on every session (see
TCP_DEFAULTS), and a test of each pooled connection as it is handed out that costs no round
trip unless the connection has something to say (see ``Database._checkout``).
"""

from __future__ import annotations

import logging
import os
import random
import select
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from conveyor.backends.postgres.errors import (
    RETRYABLE_SQLSTATES,
    is_connection_lost,
    translate,
)
from conveyor.backends.postgres.json_loader import use_fast_json
from conveyor.backends.postgres.lent import borrow, give_back
from conveyor.backends.sql import load_queries
from conveyor.errors import (
    BackendError,
    BackendUnavailable,
    ConfigurationError,
    ConveyorError,
)
from conveyor.settings import Settings

T = TypeVar("T")
Q = load_queries("conveyor.backends.postgres")
log = logging.getLogger(__name__)

Cursor = psycopg.Cursor[Any]
Connection = psycopg.Connection[Any]

#: gen_random_uuid() is built in from 13 on; so is autovacuum_vacuum_insert_scale_factor.
MIN_SERVER_VERSION = 130000
#: Attempts of one operation when its connection broke or it lost a deadlock.
_ATTEMPTS = 4

#: TCP settings of every session (libpq keywords), unless the URL names them. Without them a
#: dead peer (a host gone, a network cut, a NAT or firewall that forgot the connection) is
#: noticed only by TCP's own timers: on an idle connection after two hours and more, on one
#: waiting for an acknowledgement after some 15 minutes of retransmissions. With them:
#: - a silent connection (the LISTEN session, an idle pooled one, one waiting for the answer
#:   to a long statement) is probed after 10 s, then every 5 s, and dropped after 3 probes
#:   go unanswered: within 25 s. The server's kernel answers probes, so a busy server passes.
#: - data sent but not acknowledged for 25 s (a statement sent into a cut) ends the
#:   connection; so does a server that stops reading what we send for that long.
#: Both stay under the default 30 s lease: a heartbeat caught on a dead connection fails,
#: and is retried on a fresh one, before its lease runs out.
TCP_DEFAULTS = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "25000",  # milliseconds
}


def composed(name: str, **identifiers: str) -> sql.Composed:
    """A query from queries.sql whose {placeholders} are identifiers (schema, channel)."""
    return sql.SQL(Q[name]).format(**{k: sql.Identifier(v) for k, v in identifiers.items()})


def describe(url: str, schema: str) -> str:
    """'database "jobs" on db1:5432 (schema conveyor)': for messages; never the password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise ConfigurationError(f"bad PostgreSQL URL or connection string: {exc}") from None
    host = str(params.get("host") or os.environ.get("PGHOST") or "the local socket")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or params.get("user") or "?"
    where = host if host.startswith("/") or host == "the local socket" else f"{host}:{port}"
    return f'database "{dbname}" on {where} (schema {schema})'


def has_news(conn: Connection) -> bool:
    """Whether an idle session has something to read, which it should not: the server ended
    it (its last message, then the end of the stream: a restart, pg_terminate_backend, an idle
    timeout) or the kernel gave up on the peer (keepalives). One poll(), no round trip."""
    if conn.closed or conn.broken:
        return True
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


class Database:
    """The pool of one backend, and the way every operation runs on it."""

    def __init__(
        self,
        settings: Settings,
        *,
        application_name: str = "conveyor",
        pool: ConnectionPool[Any] | None = None,
    ) -> None:
        self.url = settings.url
        self.schema = settings.postgres_schema
        self.target = describe(settings.url, settings.postgres_schema)
        self._lock_timeout_ms = str(max(1, round(settings.lock_timeout * 1000)))
        self._connect_timeout = settings.postgres_connect_timeout
        given = conninfo_to_dict(settings.url)
        threshold = settings.postgres_prepare_threshold
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            # Hot-path statements run thousands of times per connection: prepare them on their
            # second execution. A negative setting disables it (PgBouncer in transaction mode
            # before 1.21 cannot route prepared statements).
            "prepare_threshold": None if threshold < 0 else threshold,
        }
        if "application_name" not in given:
            self._kwargs["application_name"] = application_name
        #: How this backend's sessions appear in pg_stat_activity (the URL's, if it names one).
        self.application_name = str(given.get("application_name") or application_name)
        if "connect_timeout" not in given:
            self._kwargs["connect_timeout"] = max(2, round(self._connect_timeout))
        self._kwargs.update({k: v for k, v in TCP_DEFAULTS.items() if k not in given})
        #: The application's own pool (see lent.py), or None for one of ours.
        self._lent = pool
        self._closed = False
        self._pool: ConnectionPool[Any] = pool or ConnectionPool(
            settings.url,
            kwargs=self._kwargs,
            min_size=settings.postgres_pool_min_size,
            max_size=settings.postgres_pool_max_size,
            timeout=self._connect_timeout,
            max_idle=settings.postgres_pool_max_idle,
            max_lifetime=settings.postgres_pool_max_lifetime,
            configure=self.configure,
            name=f"conveyor:{self.schema}",
            open=False,
        )

    # --- connections ----------------------------------------------------------------------

    def configure(self, conn: Connection) -> None:
        """Session setup of every new connection (the pool's ``configure`` callback)."""
        self._check_version(conn)
        use_fast_json(conn)
        conn.execute(
            Q["configure_session"],
            {"schema": self.schema, "lock_timeout": self._lock_timeout_ms},
            prepare=False,
        )

    def connect(self, **overrides: Any) -> Connection:
        """A connection outside the pool (schema changes, the LISTEN session), set up like a
        pooled one. Fails fast with the server's own reason when it cannot connect."""
        try:
            conn: Connection = psycopg.connect(self.url, **{**self._kwargs, **overrides})
        except psycopg.Error as exc:
            raise translate(exc, self.target) from None
        try:
            self.configure(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, psycopg.Error):
                raise translate(exc, self.target) from None
            raise
        return conn

    async def connect_async(self, **overrides: Any) -> psycopg.AsyncConnection[Any]:
        """``connect`` for an event loop: an AsyncConnection, its session set up as a pooled
        one's (search_path, lock_timeout)."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, **{**self._kwargs, **overrides})
        except psycopg.Error as exc:
            raise translate(exc, self.target) from None
        try:
            self._check_version(conn)
            await conn.execute(
                Q["configure_session"],
                {"schema": self.schema, "lock_timeout": self._lock_timeout_ms},
                prepare=False,
            )
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, psycopg.Error):
                raise translate(exc, self.target) from None
            raise
        return conn

    def _check_version(self, conn: psycopg.BaseConnection[Any]) -> None:
        if conn.info.server_version < MIN_SERVER_VERSION:
            raise BackendError(
                f"{self.target} runs PostgreSQL {conn.info.server_version // 10000}: "
                "Conveyor needs 13 or newer"
            )

    def open(self) -> None:
        """Start our pool; its connections are made in the background. A lent pool is the
        application's to open and close."""
        if self._lent is None:
            self._pool.open(wait=False)

    def close(self) -> None:
        self._closed = True
        if self._lent is None:
            self._pool.close(timeout=5.0)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._closed:
            raise BackendError(f"{self.target}: this backend was closed")
        try:
            conn = self._checkout()
        except PoolTimeout as exc:
            raise self._diagnose(exc) from None
        except PoolClosed:
            if self._lent is None:
                raise BackendError(f"{self.target}: this backend was closed") from None
            raise BackendError(
                f"{self.target}: the connection pool given to Conveyor is not open: open it "
                "(pool.open(), or with pool:) before use, and close it after the app"
            ) from None
        try:
            if self._lent is None:
                yield conn
                return
            loan = borrow(conn, self.schema, self._lock_timeout_ms)
            try:
                yield conn
            finally:
                give_back(conn, loan)
        finally:
            self._pool.putconn(conn)

    def _checkout(self) -> Connection:
        """A pooled connection that is not known to be dead."""
        conn: Connection = self._pool.getconn()
        if not has_news(conn):
            return conn
        try:
            ConnectionPool.check_connection(conn)  # a notice, perhaps: one round trip tells
            return conn
        except psycopg.Error:
            conn.close()  # the pool replaces a connection returned closed
            self._pool.putconn(conn)
        log.warning("a pooled connection to %s was dead; replacing them all", self.target)
        self._replace_all()
        fresh: Connection = self._pool.getconn()
        return fresh

    def _replace_all(self) -> None:
        """One connection died: the server restarted or ended sessions, or the network
        dropped them, and the others most likely went the same way. Replace them all: idle
        ones now, busy ones when they come back. Testing each instead would cost a round trip
        apiece, and during a network cut each test would hang until TCP_DEFAULTS end it."""
        self._pool.drain()

    @contextmanager
    def translated(self) -> Iterator[None]:
        """Turn psycopg errors raised inside into Conveyor's typed errors."""
        try:
            yield
        except psycopg.Error as exc:
            raise translate(exc, self.target) from None

    def _diagnose(self, exc: PoolTimeout) -> ConveyorError:
        """The pool gave up: find out whether the server is unreachable (and why) or merely
        every connection stayed busy."""
        try:
            probe = psycopg.connect(self.url, **{**self._kwargs, "connect_timeout": 2})
        except psycopg.Error as reason:
            return BackendUnavailable(
                f"cannot reach PostgreSQL {self.target}: {str(reason).strip().splitlines()[0]}"
            )
        probe.close()
        return translate(exc, self.target)

    # --- running operations ---------------------------------------------------------------

    def run(
        self, body: Callable[[Cursor], T], *, transaction: bool = True, idempotent: bool = False
    ) -> T:
        """Run ``body`` on a pooled connection, in one transaction unless ``transaction`` is
        False (for single statements, which autocommit on their own).

        A deadlock victim, or an operation whose connection broke before it committed, was
        rolled back entirely and runs again. A connection that breaks while committing leaves
        the outcome unknown: that is reported, except for ``idempotent`` bodies (reads), which
        run again. Single statements (``transaction=False``) always run again: callers use them
        only where a repeat is harmless (a lease extended twice) or where what a lost answer
        leaves behind is recovered anyway (runs claimed but never heard of expire and are
        rescued).
        """
        return self._run(lambda conn: body(conn.cursor()), transaction, idempotent)

    def run_single(self, body: Callable[[Connection], T]) -> T:
        """One statement that commits on its own (a prepared.py statement, which takes the
        pooled connection itself rather than a cursor), whose repeat is not harmless: a
        connection lost once it was handed the connection leaves the outcome unknown, which is
        reported (``BackendUnavailable``) rather than run again — a single enqueue repeated
        after its commit would write the job twice."""
        return self._run(body, False, False, unsure_once_sent=True)

    def _run(
        self,
        body: Callable[[Connection], T],
        transaction: bool,
        idempotent: bool,
        unsure_once_sent: bool = False,
    ) -> T:
        for attempt in range(1, _ATTEMPTS + 1):
            committing = False
            try:
                with self._connection() as conn:
                    if not transaction:
                        committing = unsure_once_sent
                        return body(conn)
                    with conn.transaction():
                        result = body(conn)
                        committing = True
                    return result
            except psycopg.Error as exc:
                if attempt == _ATTEMPTS or not self._may_retry(exc, committing, idempotent):
                    if committing and is_connection_lost(exc) and not idempotent:
                        raise BackendUnavailable(
                            f"lost the connection to {self.target} while committing: the "
                            f"change may or may not have been applied ({exc})"
                        ) from None
                    raise translate(exc, self.target) from None
                self._before_retry(exc, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _may_retry(self, exc: psycopg.Error, committing: bool, idempotent: bool) -> bool:
        if exc.sqlstate in RETRYABLE_SQLSTATES:
            return True
        return is_connection_lost(exc) and (idempotent or not committing)

    def _before_retry(self, exc: psycopg.Error, attempt: int) -> None:
        if is_connection_lost(exc):
            log.warning("connection to %s lost (%s); retrying", self.target, exc)
            self._replace_all()
        else:
            time.sleep(random.uniform(0, 0.01 * 2**attempt))  # deadlock: back off, jittered
