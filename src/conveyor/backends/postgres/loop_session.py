"""One PostgreSQL session on an asyncio event loop, running one statement at a time on libpq
directly (psycopg's ``pq`` layer), for the async single enqueue (see async_enqueue.py).

Through psycopg's AsyncConnection, a call costs the client about twice the CPU of the same
call on a sync Connection: every wait registers the socket with the event loop's selector and
removes it again (two epoll_ctl system calls and a Future), and the cursor's generators and
adapters run for every execution. Here the socket's reader is registered once, for the
session's life, and a call is: the statement's values as text, one ``send_query_prepared``
(Bind, Execute, Sync in one write), and the answer read when the socket says it came. psycopg
still makes the connection (hosts, timeouts, TCP settings) and sets the session up.

The reader also notices a session the server ended while it was idle (a restart, an idle
timeout, pg_terminate_backend): its last message, then the end of the stream, arrive while no
call waits, and the session is marked ``broken`` before anyone sends on it. While the loop was
not running (between two ``run_until_complete``), nobody read them: so each call first asks
the socket, with a poll() that costs no round trip, whether the server said anything, as the
sync pool's checkout does (connection.has_news). A statement that is not sent, or whose send
fails, reached the server incompletely, without its Sync, and cannot have committed:
``NotSent`` says it may run again elsewhere.

A caller that stops waiting (its task cancelled) does not stop the statement: it runs to its
end in its own transaction (committed or not, never half), and its answer, when it comes, goes
to the ``late`` function the caller left, which returns the session to its pool.
"""

from __future__ import annotations

import asyncio
import re
import select
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result

#: What a call's caller left for the answer it no longer waits for: the statement's result,
#: or None when it failed or the session broke.
Late = Callable[["LoopSession", "pq.abc.PGresult | None"], None]

_NAMED = re.compile(r"%\((\w+)\)s|%%")


class NotSent(Exception):
    """The statement never reached the server whole: nothing of it can have committed."""


class Positional:
    """A query of queries.sql with ``%(name)s`` parameters, as libpq takes it: ``$1``, ``$2``
    ... in the order of first use, and the parameter names in that order."""

    def __init__(self, query: str, name: bytes) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(0) == "%%":
                return "%"
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        self.text = _NAMED.sub(number, query).encode()
        self.names = tuple(names)
        self.name = name


class LoopSession:
    """A connection of one event loop, running ``statement`` with text parameters."""

    def __init__(
        self, conn: psycopg.AsyncConnection[Any], statement: Positional, *, prepared: bool
    ) -> None:
        self._conn = conn  # owns the PGconn (and its notice handler) for the session's life
        self._pgconn = conn.pgconn
        self._fd = conn.pgconn.socket
        self._loop = asyncio.get_running_loop()
        self._statement = statement
        self._prepared = prepared
        #: The codec of the session's client_encoding, for the values and error messages.
        self.encoding = conn.info.encoding
        self._answer: asyncio.Future[pq.abc.PGresult] | None = None
        self._last: pq.abc.PGresult | None = None
        self._late: Late | None = None
        self.broken = False
        self._news = select.poll()
        self._news.register(self._fd, select.POLLIN)
        self._loop.add_reader(self._fd, self._readable)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    async def prepare(self) -> None:
        """Prepare the statement under its name (a no-op unless ``prepared``)."""
        if not self._prepared:
            return
        statement = self._statement
        result = await self._send(lambda pg: pg.send_prepare(statement.name, statement.text))
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise error_from_result(result, encoding=self.encoding)

    async def execute(self, values: Sequence[bytes | None], late: Late) -> pq.abc.PGresult:
        """The statement's result (its rows, or the server's error as a result); psycopg's
        OperationalError if the session broke while waiting for it; ``NotSent`` if it could
        not be sent. Should the caller stop waiting, ``late`` gets the answer."""
        statement = self._statement
        answer = self._send(
            (lambda pg: pg.send_query_prepared(statement.name, values))
            if self._prepared
            else (lambda pg: pg.send_query_params(statement.text, values))
        )
        try:
            return await answer
        except asyncio.CancelledError:
            if answer.cancelled():  # still under way: its answer goes to late()
                self._late = late
            else:  # answered just as the caller was cancelled
                late(self, None if answer.exception() else answer.result())
            raise

    def _send(self, send: Callable[[pq.abc.PGconn], None]) -> asyncio.Future[pq.abc.PGresult]:
        # Said while idle: read it first (a last message, then the end of the stream).
        while self._answer is None and not self.broken and self._news.poll(0):
            self._readable()
        if self.broken or self._answer is not None:
            raise NotSent("the session is broken" if self.broken else "the session is busy")
        pg = self._pgconn
        try:
            send(pg)
            if pg.flush():  # the rest when the socket takes it
                self._loop.add_writer(self._fd, self._writable)
        except psycopg.OperationalError as exc:
            self.close()
            raise NotSent(str(exc)) from exc
        answer: asyncio.Future[pq.abc.PGresult] = self._loop.create_future()
        self._answer = answer
        return answer

    def _writable(self) -> None:
        try:
            if self._pgconn.flush() == 0:
                self._loop.remove_writer(self._fd)
        except psycopg.OperationalError as exc:
            self.close(exc)

    def _readable(self) -> None:
        pg = self._pgconn
        try:
            pg.consume_input()
            if self._answer is None:
                # Nothing asked: a notice, or the server ending the session (its last message,
                # then the end of the stream, which consume_input reports as an error).
                if pg.status != pq.ConnStatus.OK:
                    self.close()
                return
            while not pg.is_busy():
                result = pg.get_result()
                if result is None:  # the statement's answer is complete
                    last, self._last = self._last, None
                    if last is None:
                        raise psycopg.OperationalError("the statement returned no result")
                    self._settle(last, None)
                    if pg.status != pq.ConnStatus.OK:  # the answer was the server's last word
                        self.close()
                    return
                self._last = result
        except psycopg.OperationalError as exc:
            self.close(exc)

    def _settle(self, result: pq.abc.PGresult | None, error: BaseException | None) -> None:
        answer, self._answer = self._answer, None
        late, self._late = self._late, None
        if answer is None:
            return
        if not answer.done():
            if error is None:
                assert result is not None
                answer.set_result(result)
            else:
                answer.set_exception(error)
        elif late is not None:
            late(self, result)

    def close(self, error: BaseException | None = None) -> None:
        """End the session (from its loop's thread, or once its loop is closed). A call still
        waiting gets ``error``, or an OperationalError."""
        if not self.broken:
            self.broken = True
            if not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
                self._loop.remove_writer(self._fd)
            self._pgconn.finish()
        if self._answer is not None:
            self._settle(None, error or psycopg.OperationalError("the session was closed"))
