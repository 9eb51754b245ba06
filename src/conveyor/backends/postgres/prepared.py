"""Statements prepared on the server under a name of our own and run at libpq's level, for the
hottest one-row calls (the single enqueue): the parameters go as text we encode ourselves, and
the call is one Bind/Execute/Sync, without psycopg's cursor, adaptation and prepared-statement
bookkeeping, which cost a single enqueue more client time than the rest of its call together.

Each connection prepares a statement the first time it runs it (one round trip in the
connection's life). Should the server have forgotten it since (``DEALLOCATE ALL``, a pool's
reset of a lent connection), it is prepared again and the call runs once more: a statement
that does not exist ran nothing.
"""

from __future__ import annotations

import logging
import re
import select
import weakref
from collections.abc import Sequence
from typing import Any, cast

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result

Connection = psycopg.Connection[Any]
log = logging.getLogger(__name__)

#: invalid_sql_statement_name: the server has no prepared statement of that name.
UNKNOWN_STATEMENT = b"26000"


def numbered(text: str) -> tuple[str, tuple[str, ...]]:
    """psycopg's ``%(name)s`` placeholders as the server's ``$1, $2 ...`` (one number per
    name), and the names in the order of their numbers."""
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${names.setdefault(match[1], len(names) + 1)}"

    return re.sub(r"%\(([a-z_]+)\)s", number, text), tuple(names)


class NotSent(Exception):
    """The statement never reached the server whole: nothing of it can have committed, and
    it may run again elsewhere."""


class PreparedStatement:
    """One named statement; ``params`` lists its parameters in the order ``run`` takes them."""

    def __init__(self, name: str, text: str) -> None:
        server_text, self.params = numbered(text)
        self.name = name.encode()
        #: The statement as the server takes it (``$1``, ``$2`` ...).
        self.text = server_text.encode()
        #: The connections that have prepared it (a closed one is forgotten with its object).
        self._prepared: weakref.WeakSet[Connection] = weakref.WeakSet()

    def run(self, conn: Connection, values: Sequence[bytes | None]) -> pq.abc.PGresult:
        """The result of the statement with these text ``values``, on ``conn``, idle, in
        autocommit: the statement is its own transaction. Raises psycopg's errors."""
        if conn not in self._prepared:
            self._prepare(conn)
        pgconn = conn.pgconn
        # psycopg's annotation leaves out the None (NULL) it accepts, as send_query_prepared's
        # has it.
        params = cast("Sequence[bytes]", values)
        # libpq's blocking call: it waits for the answer with the GIL released.
        result = pgconn.exec_prepared(self.name, params)
        if result.status == pq.ExecStatus.TUPLES_OK:
            return result
        if result.error_field(pq.DiagnosticField.SQLSTATE) == UNKNOWN_STATEMENT:
            self._prepare(conn)
            result = pgconn.exec_prepared(self.name, params)
            if result.status == pq.ExecStatus.TUPLES_OK:
                return result
        raise _error(conn, result)

    def run_then(
        self,
        conn: Connection,
        values: Sequence[bytes | None],
        after: PreparedStatement,
        after_values: Sequence[bytes | None],
    ) -> pq.abc.PGresult:
        """``run``, with ``after`` sent behind it in the same round trip (libpq's pipeline
        mode), where it runs as a transaction of its own once this statement has committed.
        Returns this statement's result; should ``after`` fail, that is logged, not raised:
        what this statement did stands."""
        for statement in (self, after):
            if conn not in statement._prepared:
                statement._prepare(conn)
        first, then = _pipeline(conn, ((self.name, values), (after.name, after_values)))
        if first.status != pq.ExecStatus.TUPLES_OK:
            if first.error_field(pq.DiagnosticField.SQLSTATE) != UNKNOWN_STATEMENT:
                raise _error(conn, first)
            self._prepare(conn)
            after._prepare(conn)
            first, then = _pipeline(conn, ((self.name, values), (after.name, after_values)))
            if first.status != pq.ExecStatus.TUPLES_OK:
                raise _error(conn, first)
        if then.status != pq.ExecStatus.TUPLES_OK:
            log_failed_after(after, self, _error(conn, then))
        return first

    def __str__(self) -> str:
        return self.name.decode()

    def _prepare(self, conn: Connection) -> None:
        result = conn.pgconn.prepare(self.name, self.text)
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise _error(conn, result)
        self._prepared.add(conn)


def log_failed_after(
    after: PreparedStatement, first: PreparedStatement, error: BaseException
) -> None:
    """``after``, sent behind ``first`` as a transaction of its own, failed: what ``first``
    did stands, and the caller is not told."""
    log.warning("%s failed after %s: %s", after, first, error)


def error_of(pgconn: pq.abc.PGconn, result: pq.abc.PGresult, encoding: str) -> psycopg.Error:
    """psycopg's exception for a failed result; a connection that broke is an
    OperationalError without a SQLSTATE, as psycopg raises it (see errors.is_connection_lost)."""
    if pgconn.status != pq.ConnStatus.OK:
        message = result.error_message or pgconn.error_message
        return psycopg.OperationalError(message.decode("utf-8", "replace").strip())
    return error_from_result(result, encoding)


def _error(conn: Connection, result: pq.abc.PGresult) -> psycopg.Error:
    return error_of(conn.pgconn, result, conn.info.encoding)


class PipelineAnswers:
    """The answers to statements sent in pipeline mode, each with a Sync of its own, sorted
    out of what libpq hands over: one result per statement (its first), in the order sent."""

    __slots__ = ("_ended", "_expected", "_first", "results")

    def __init__(self, expected: int) -> None:
        self._expected = expected
        self._first: pq.abc.PGresult | None = None
        self._ended = False
        self.results: list[pq.abc.PGresult] = []

    def take(self, pgconn: pq.abc.PGconn) -> bool:
        """Take the results libpq has read so far; True once every statement is answered.
        Raises psycopg's OperationalError if the connection broke before that."""
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:  # the end of one statement's results
                if self._ended:
                    # Twice running, not busy: nothing more will come (the connection broke),
                    # and libpq would go on answering None.
                    message = pgconn.error_message.decode("utf-8", "replace").strip()
                    raise psycopg.OperationalError(message or "the connection was lost")
                self._ended = True
                continue
            self._ended = False
            if result.status == pq.ExecStatus.PIPELINE_SYNC:
                if self._first is None:
                    raise psycopg.OperationalError("a statement returned no result")
                self.results.append(self._first)
                self._first = None
                if len(self.results) == self._expected:
                    return True
            elif self._first is None:
                self._first = result
        return False


def round_trip(pgconn: pq.abc.PGconn, poller: select.poll, answers: PipelineAnswers) -> None:
    """Send what libpq holds for ``pgconn`` (in pipeline mode), then read until ``answers``
    has them all. ``poller`` watches the connection's socket for POLLIN, and is left so; each
    wait on it releases the GIL."""
    if pgconn.flush():  # what the socket did not take at once
        poller.modify(pgconn.socket, select.POLLOUT)
        while pgconn.flush():
            poller.poll()
        poller.modify(pgconn.socket, select.POLLIN)
    while not answers.take(pgconn):
        poller.poll()
        pgconn.consume_input()


def _pipeline(
    conn: Connection, calls: Sequence[tuple[bytes, Sequence[bytes | None]]]
) -> list[pq.abc.PGresult]:
    """The first result of each prepared statement of ``calls``, each sent with a Sync of its
    own (a transaction apiece), all in one round trip. A connection left in pipeline mode by
    an error or an interrupt is closed, so that its pool replaces it."""
    pgconn = conn.pgconn
    pgconn.enter_pipeline_mode()
    try:
        for name, values in calls:
            pgconn.send_query_prepared(name, values)
            pgconn.pipeline_sync()
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        answers = PipelineAnswers(len(calls))
        round_trip(pgconn, poller, answers)
        pgconn.exit_pipeline_mode()
    except BaseException:
        if pgconn.pipeline_status != pq.PipelineStatus.OFF:
            conn.close()
        raise
    return answers.results
