"""The sync single enqueue on PostgreSQL: ``task.enqueue(...)``, from any thread, writes its
job on a session kept for single enqueues rather than on a pooled connection.

A call is the same one round trip as through the pool (enqueue.insert_single): the prepared
insert, which commits on its own, and the prepared wake-up behind it, a transaction of its own
that the server starts once the insert has committed, each with a Sync. What the session saves
is the client's time around it: the pool's checkout and return (its locks, its checks of the
connection's state, its reset), the health probe, entering and leaving pipeline mode, a poll
object per call. That was a third of a single enqueue's client CPU, and a tenth of its wall
time, the server's part being the same.

- Sessions are made when first needed, up to ``postgres_pool_max_size``, set up as the pool's
  connections are (Database.connect), named as they are with ``-sync`` behind, and stay in
  libpq's pipeline mode for their life. A thread that finds them all busy goes through the
  pool, as does a call the server asks to run again (a deadlock), which the pool's path
  retries.
- A session the server ended while it was idle (a restart, an idle timeout,
  pg_terminate_backend) is noticed before anything is sent on it (one poll(), no round trip)
  and replaced: nothing was sent, so the call goes on another session. Should none be made
  (the server down or restarting), the call goes through the pool, which waits for a
  connection as long as it always has (``postgres_connect_timeout``), and no session is tried
  for the next few seconds.
- A call sent whole whose session then broke has an unknown outcome: BackendUnavailable says
  so, and nothing runs again, which could write the job twice. A session that broke after the
  insert's answer came returns the job, its wake-up logged as lost.
- A forked child inherits the parent's sessions but never touches them, not even to end them
  (that would end the parent's sessions): it makes its own.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import pq

from conveyor.backends.base import EnqueueResult, NewJob
from conveyor.backends.postgres.connection import Database
from conveyor.backends.postgres.enqueue import (
    INSERT_JOB,
    WAKE_AFTER_COMMIT,
    enqueued,
    insert_failed,
    text_values,
)
from conveyor.backends.postgres.errors import RETRYABLE_SQLSTATES, translate
from conveyor.backends.postgres.prepared import (
    UNKNOWN_STATEMENT,
    NotSent,
    PipelineAnswers,
    error_of,
    log_failed_after,
    round_trip,
)
from conveyor.errors import BackendError, BackendUnavailable

log = logging.getLogger(__name__)

_ROWS = pq.ExecStatus.TUPLES_OK
#: Seconds without new sessions after one could not be made (the pool's path meanwhile).
_REOPEN_PAUSE = 5.0
#: The sessions a forked child inherited: kept, never used nor ended (see the module's doc).
_INHERITED: list[PipelineSession] = []


class PipelineSession:
    """A connection in pipeline mode for the life of the session, used by one thread at a
    time, whose calls are the insert and its wake-up."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn  # owns the PGconn (and its notice handler) for the session's life
        self._pgconn = conn.pgconn
        self.encoding = conn.info.encoding
        #: When it was last given back (time.monotonic()).
        self.idle_since = 0.0
        self._poller = select.poll()
        self._poller.register(self._pgconn.socket, select.POLLIN)
        self.broken = False
        self._pgconn.enter_pipeline_mode()  # psycopg is done with the session

    @property
    def pgconn(self) -> pq.abc.PGconn:
        return self._pgconn

    def insert(
        self, values: Sequence[bytes | None], wake: Sequence[bytes | None]
    ) -> pq.abc.PGresult:
        """The insert's result (its row, or the server's error as a result), the wake-up sent
        behind it (logged if it failed). Raises NotSent if nothing went out whole, psycopg's
        OperationalError if the session broke once the insert was sent."""
        pg = self._pgconn
        try:
            # Said while idle: a notice; or the server's last message, then the end of the
            # stream, which consume_input reports as an error.
            while self._poller.poll(0):
                pg.consume_input()
            if pg.status != pq.ConnStatus.OK:
                raise psycopg.OperationalError("the server ended the session")
            pg.send_query_prepared(INSERT_JOB.name, values)
            pg.pipeline_sync()  # libpq writes what it holds at each Sync (before 17)
        except psycopg.OperationalError as exc:
            self.close()
            raise NotSent(str(exc)) from exc
        answers = PipelineAnswers(2)
        try:
            pg.send_query_prepared(WAKE_AFTER_COMMIT.name, wake)
            pg.pipeline_sync()
            self.round_trip(answers)
        except psycopg.OperationalError as exc:
            self.close()
            if not answers.results:
                raise
            log_failed_after(WAKE_AFTER_COMMIT, INSERT_JOB, exc)
            return answers.results[0]  # the insert answered before the session broke
        result, woken = answers.results
        if result.status == _ROWS and woken.status != _ROWS:
            log_failed_after(WAKE_AFTER_COMMIT, INSERT_JOB, error_of(pg, woken, self.encoding))
        return result

    def round_trip(self, answers: PipelineAnswers) -> None:
        """Send what libpq holds, then read until ``answers`` has them all."""
        round_trip(self._pgconn, self._poller, answers)

    def prepare(self) -> None:
        """Prepare the statements on the session: when it is made, and again should the
        server have forgotten them (``DEALLOCATE ALL``)."""
        pg = self._pgconn
        answers = PipelineAnswers(2)
        try:
            for statement in (INSERT_JOB, WAKE_AFTER_COMMIT):
                pg.send_prepare(statement.name, statement.text)
                pg.pipeline_sync()
            self.round_trip(answers)
        except psycopg.OperationalError:
            self.close()
            raise
        for result in answers.results:
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise error_of(pg, result, self.encoding)

    def close(self) -> None:
        if not self.broken:
            self.broken = True
            self._conn.close()


class SyncSingles:
    """Single jobs written from threads, on sessions of their own."""

    def __init__(
        self,
        db: Database,
        *,
        max_sessions: int,
        max_idle: float,
        channel: str,
        committed: Callable[[str, bool], None],
    ) -> None:
        """``committed(queue, woken)`` follows every commit (``woken`` is always True: the
        wake-up went behind the insert). Sessions beyond the one most used are ended once
        unused for ``max_idle`` seconds, as the pool ends its connections beyond its minimum."""
        self._db = db
        self._max = max_sessions
        self._max_idle = max_idle
        self._channel = channel
        self._committed = committed
        self._idle: list[PipelineSession] = []
        self._size = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        #: No session is made before this time (time.monotonic()), after one failed.
        self._open_after = 0.0

    def insert(self, job: NewJob, now: float | None) -> EnqueueResult | None:
        """The job written, or None for the pool's path: no session free (all busy, none
        could be made, the backend closed), or the server asked for the call to run again (a
        deadlock)."""
        for attempt in (1, 2):
            session = self._take()
            if session is None:
                return None
            encoding = session.encoding
            wake = (self._channel.encode(encoding), job.queue.encode(encoding))
            try:
                result = session.insert(text_values(job, now, encoding), wake)
                if result.error_field(pq.DiagnosticField.SQLSTATE) == UNKNOWN_STATEMENT:
                    session.prepare()  # the insert ran nothing: it can run again
                    result = session.insert(text_values(job, now, encoding), wake)
            except NotSent:
                if attempt == 1:
                    continue
                return None  # the pool's path, which waits for a connection as it does
            except psycopg.OperationalError as exc:
                raise BackendUnavailable.enqueue_lost(self._db.target, exc) from None
            except psycopg.Error as exc:
                raise translate(exc, self._db.target) from None
            finally:
                self._give_back(session)
            if result.status != _ROWS:
                error = error_of(session.pgconn, result, encoding)
                if error.sqlstate in RETRYABLE_SQLSTATES:
                    return None
                raise insert_failed(error, self._db.target) from None
            self._committed(job.queue, True)
            return enqueued(result)
        raise AssertionError("unreachable")  # pragma: no cover

    def _take(self) -> PipelineSession | None:
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            if self._closed:
                return None
            while self._idle:
                session = self._idle.pop()
                if not session.broken:
                    return session
                self._size -= 1
            if self._size >= self._max or time.monotonic() < self._open_after:
                return None
            self._size += 1
        try:
            return self._open()
        except BackendError as exc:
            # The server down, or refusing more sessions: the pool's path, which waits for
            # a connection for as long as the pool does; no other attempt for a while.
            log.info("no session for single enqueues (%s): using the pool's for now", exc)
            with self._lock:
                self._size -= 1
                self._open_after = time.monotonic() + _REOPEN_PAUSE
            return None
        except BaseException:
            with self._lock:
                self._size -= 1
            raise

    def _open(self) -> PipelineSession:
        name = f"{self._db.application_name[:58]}-sync"
        session = PipelineSession(self._db.connect(application_name=name))
        try:
            session.prepare()
        except BaseException as exc:
            session.close()
            if isinstance(exc, psycopg.Error):
                raise translate(exc, self._db.target) from None
            raise
        return session

    def _give_back(self, session: PipelineSession) -> None:
        now = time.monotonic()
        with self._lock:
            if session.broken:
                self._size -= 1
                return
            if self._closed or self._pid != os.getpid():
                unused = session
            else:
                session.idle_since = now
                self._idle.append(session)
                # The least recently used, at the bottom of the stack: ended once idle long.
                if len(self._idle) == 1 or now - self._idle[0].idle_since < self._max_idle:
                    return
                unused = self._idle.pop(0)
                self._size -= 1
        unused.close()

    def _forked(self) -> None:
        """In a forked child: leave the parent's sessions alone (see the module's doc)."""
        _INHERITED.extend(self._idle)
        self._idle = []
        self._size = 0
        self._lock = threading.Lock()  # perhaps held by another thread at the fork
        self._pid = os.getpid()

    def close(self) -> None:
        """End the idle sessions (the busy ones end when given back)."""
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for session in idle:
            session.close()
