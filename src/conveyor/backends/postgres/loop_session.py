"""One PostgreSQL session on an asyncio event loop, running one call at a time on libpq
directly (psycopg's ``pq`` layer), for the async single enqueue (see async_enqueue.py).

Through psycopg's AsyncConnection, a call costs the client about twice the CPU of the same
call on a sync Connection: every wait registers the socket with the event loop's selector and
removes it again (two epoll_ctl system calls and a Future), and the cursor's generators and
adapters run for every execution. Here the socket's reader is registered once, for the
session's life, and a call is: its statements' values as text, each statement sent with a
Sync of its own (libpq's pipeline mode, which the session stays in for its life), all in one
write, and the answers read when the socket says they came (prepared.PipelineAnswers, which
the sync path's pipeline shares). psycopg still makes the connection (hosts, timeouts, TCP
settings) and sets the session up.

The reader also notices a session the server ended while it was idle (a restart, an idle
timeout, pg_terminate_backend): its last message, then the end of the stream, arrive while no
call waits, and the session is marked ``broken`` before anyone sends on it. While the loop was
not running (between two ``run_until_complete``), nobody read them: so each call first asks
the socket, with a poll() that costs no round trip, whether the server said anything, as the
sync pool's checkout does (connection.has_news). A call that is not sent, or whose send
fails, reached the server incompletely, without its first Sync, and cannot have committed:
``NotSent`` says it may run again elsewhere.

A caller that stops waiting (its task cancelled) does not stop the call: its statements run
to their end, each in its own transaction (committed or not, never half), and the answers,
when they come, go to the ``late`` function the caller left, which returns the session to its
pool.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result

from conveyor.backends.postgres.prepared import NotSent, PipelineAnswers, PreparedStatement

#: What a call's caller left for the answers it no longer waits for: one result per
#: statement, or None when the session broke first.
Late = Callable[["LoopSession", "list[pq.abc.PGresult] | None"], None]
#: A call's statements, each with its values as text.
Calls = Sequence[tuple[PreparedStatement, Sequence[bytes | None]]]
_Item = TypeVar("_Item")


def _send_prepare(pg: pq.abc.PGconn, statement: PreparedStatement) -> None:
    pg.send_prepare(statement.name, statement.text)


class LoopSession:
    """A connection of one event loop, running ``statements`` (prepared on it once, when
    ``prepared``; otherwise each parsed anew) with text parameters."""

    def __init__(
        self,
        conn: psycopg.AsyncConnection[Any],
        statements: Sequence[PreparedStatement],
        *,
        prepared: bool,
    ) -> None:
        self._conn = conn  # owns the PGconn (and its notice handler) for the session's life
        self._pgconn = conn.pgconn
        self._fd = conn.pgconn.socket
        self._loop = asyncio.get_running_loop()
        self._statements = statements
        self._prepared = prepared
        #: The codec of the session's client_encoding, for the values and error messages.
        self.encoding = conn.info.encoding
        self._answer: asyncio.Future[list[pq.abc.PGresult]] | None = None
        self._answers: PipelineAnswers | None = None
        self._late: Late | None = None
        self.broken = False
        self._news = select.poll()
        self._news.register(self._fd, select.POLLIN)
        self._pgconn.enter_pipeline_mode()  # psycopg is done with the session
        self._loop.add_reader(self._fd, self._readable)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def pgconn(self) -> pq.abc.PGconn:
        return self._pgconn

    async def prepare(self) -> None:
        """Prepare the statements under their names (a no-op unless ``prepared``)."""
        if not self._prepared:
            return
        for result in await self._send(_send_prepare, self._statements):
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise error_from_result(result, encoding=self.encoding)

    async def execute(self, calls: Calls, late: Late) -> list[pq.abc.PGresult]:
        """The result of each statement of ``calls`` (its rows, or the server's error as a
        result), each run as a transaction of its own, in order, all sent at once. Should the
        session break on the way, the results of those answered by then (the others' outcome
        is unknown), or psycopg's OperationalError if none was; ``NotSent`` if the first could
        not be sent. Should the caller stop waiting, ``late`` gets the answers."""
        answer = self._send(self._send_call, calls)
        try:
            return await answer
        except asyncio.CancelledError:
            if answer.cancelled():  # still under way: its answers go to late()
                self._late = late
            else:  # answered just as the caller was cancelled
                late(self, None if answer.exception() else answer.result())
            raise

    def _send_call(
        self, pg: pq.abc.PGconn, call: tuple[PreparedStatement, Sequence[bytes | None]]
    ) -> None:
        statement, values = call
        if self._prepared:
            pg.send_query_prepared(statement.name, values)
        else:
            pg.send_query_params(statement.text, values)

    def _send(
        self, send: Callable[[pq.abc.PGconn, _Item], None], items: Sequence[_Item]
    ) -> asyncio.Future[list[pq.abc.PGresult]]:
        """Send each of ``items`` (a statement to run or to prepare), each with a Sync
        behind it."""
        # Said while idle: read it first (a last message, then the end of the stream).
        while self._answer is None and not self.broken and self._news.poll(0):
            self._readable()
        if self.broken or self._answer is not None:
            raise NotSent("the session is broken" if self.broken else "the session is busy")
        pg = self._pgconn
        synced = 0
        try:
            for item in items:
                send(pg, item)
                pg.pipeline_sync()  # libpq writes what it holds at each Sync (before 17)
                synced += 1
            if pg.flush():  # the rest when the socket takes it
                self._loop.add_writer(self._fd, self._writable)
        except psycopg.OperationalError as exc:
            self.close()
            if synced:  # the first statement went whole, and may have committed
                raise
            raise NotSent(str(exc)) from exc
        answer: asyncio.Future[list[pq.abc.PGresult]] = self._loop.create_future()
        self._answer = answer
        self._answers = PipelineAnswers(len(items))
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
            answers = self._answers
            if answers is None:
                # Nothing asked: a notice, or the server ending the session (its last message,
                # then the end of the stream, which consume_input reports as an error).
                if pg.status != pq.ConnStatus.OK:
                    self.close()
                return
            if answers.take(pg):  # every statement answered
                self._settle(answers.results, None)
                if pg.status != pq.ConnStatus.OK:  # the answer was the server's last word
                    self.close()
        except psycopg.OperationalError as exc:
            self.close(exc)

    def _settle(self, results: list[pq.abc.PGresult] | None, error: BaseException | None) -> None:
        answer, self._answer = self._answer, None
        self._answers = None
        late, self._late = self._late, None
        if answer is None:
            return
        if not answer.done():
            if error is None:
                assert results is not None
                answer.set_result(results)
            else:
                answer.set_exception(error)
        elif late is not None:
            late(self, results)

    def close(self, error: BaseException | None = None) -> None:
        """End the session (from its loop's thread, or once its loop is closed). A call still
        waiting gets the results of its statements answered by then, fewer than it sent; or,
        if none was, ``error`` (an OperationalError unless given)."""
        if not self.broken:
            self.broken = True
            if not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
                self._loop.remove_writer(self._fd)
            self._pgconn.finish()
        if self._answer is not None:
            answered = self._answers.results if self._answers is not None else []
            if answered:  # committed or failed, each whole: the caller must hear of it
                self._settle(answered, None)
            else:
                self._settle(None, error or psycopg.OperationalError("the session was closed"))
