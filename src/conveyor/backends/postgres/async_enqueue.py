"""The async single enqueue on PostgreSQL: ``await task.enqueue_async(...)`` writes its job
from the event loop itself, on sessions of that loop (loop_session.py), with no thread between.

A call is one round trip, as on the sync path (enqueue.insert_single): the same two prepared
statements, prepared once per session, sent together, each with a Sync of its own: the insert,
which commits on its own, then the wake-up in a transaction of its own, which the server starts
once the insert has committed. A failed wake-up is logged and leaves the committed job alone.
With prepared statements turned off, the insert alone, and the notifier sends the wake-up after
the commit (notifier.py). Each event loop that enqueues
gets sessions of its own, made when first needed, up to ``postgres_pool_max_size`` of them (as
many enqueues at once, the rest wait their turn), each set up as the pool's connections are
(search_path, lock_timeout: Database.connect_async). No health probe per call: a session
the server ends while it is idle is noticed by its loop (loop_session.py) and replaced.

- Several event loops (``asyncio.run`` twice, loops in threads): sessions belong to one loop.
  Those of loops found closed are ended when another loop makes its first session, and the
  rest by ``close()``.
- A forked child inherits the parent's sessions but never touches them, not even to end them
  (that would end the parent's sessions): it makes its own.
- A statement sent whole whose session then broke has an unknown outcome: BackendUnavailable
  says so, and nothing runs again, which could write the job twice. A statement that could not
  be sent runs once more, on a new session.
- Cancelling the awaiting task leaves the statements to end on their own, each the one
  transaction it is: the job is committed or not, and its wake-up follows as for any call.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Awaitable, Callable

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result

from conveyor.backends.base import EnqueueResult, NewJob
from conveyor.backends.postgres.connection import Database
from conveyor.backends.postgres.enqueue import (
    INSERT_JOB,
    WAKE_AFTER_COMMIT,
    enqueued,
    insert_failed,
    text_values,
)
from conveyor.backends.postgres.errors import translate
from conveyor.backends.postgres.loop_session import LoopSession
from conveyor.backends.postgres.prepared import NotSent, error_of, log_failed_after
from conveyor.errors import BackendError, BackendUnavailable
from conveyor.offload import OFFLOAD

_ROWS = pq.ExecStatus.TUPLES_OK
#: The sessions a forked child inherited: kept, never used nor ended (see the module's doc).
_INHERITED: list[LoopSessions] = []


class LoopSessions:
    """The sessions of one event loop: the idle ones, how many there are, and the callers
    waiting for one while all are busy."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_size: int,
        open_session: Callable[[], Awaitable[LoopSession]],
    ) -> None:
        self.loop = loop
        self._idle: list[LoopSession] = []
        self._size = 0
        self._max = max_size
        self._open = open_session
        self._waiters: deque[asyncio.Future[LoopSession | None]] = deque()
        self._closed = False

    def take_idle(self) -> LoopSession | None:
        """An idle session at once, if there is one (take() without a coroutine)."""
        while self._idle:
            session = self._idle.pop()
            if not session.broken:
                return session
            self._size -= 1
        return None

    async def take(self) -> LoopSession:
        while True:
            while self._idle:
                session = self._idle.pop()
                if not session.broken:
                    return session
                self._size -= 1
            if self._size < self._max:
                self._size += 1
                try:
                    return await self._open()
                except BaseException:
                    self._size -= 1
                    self._hand(None)
                    raise
            waiter: asyncio.Future[LoopSession | None] = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed just as we were cancelled
                    self._pass_on(waiter.result())
                raise
            if handed is not None:
                return handed
            # None: a session was dropped, and there is room to make one.

    def give_back(self, session: LoopSession) -> None:
        if self._closed:
            session.close()
        self._pass_on(session)

    def _pass_on(self, session: LoopSession | None) -> None:
        if session is None or session.broken:
            if session is not None:
                self._size -= 1
            self._hand(None)
        elif not self._hand(session):
            self._idle.append(session)

    def _hand(self, session: LoopSession | None) -> bool:
        """Give ``session`` (or, with None, the room to make one) to the first waiter."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(session)
                return True
        return False

    def close(self) -> None:
        """End the idle sessions (the busy ones end when given back)."""
        self._closed = True
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if self.loop.is_running() and self.loop is not current:
            # Running in another thread: its sessions are touched from there only.
            try:
                self.loop.call_soon_threadsafe(self._end_idle)
            except RuntimeError:  # closed meanwhile
                self._end_idle()
        else:
            self._end_idle()

    def _end_idle(self) -> None:
        idle, self._idle = self._idle, []
        for session in idle:
            session.close()


class AsyncSingles:
    """Single jobs written from event loops, on sessions of each loop."""

    def __init__(
        self,
        db: Database,
        *,
        max_sessions: int,
        prepared: bool,
        channel: str,
        committed: Callable[[str, bool], None],
        read_clock: Callable[[], object],
    ) -> None:
        """``committed(queue, woken)`` follows every commit, ``woken`` telling whether the
        wake-up on ``channel`` went with the insert; ``read_clock`` is called once, on a
        thread, before the first session: the first reading of the database's clock is a
        round trip, which must not stall the loop."""
        self._db = db
        self._max = max_sessions
        self._prepared = prepared
        self._channel = channel
        self._committed = committed
        self._read_clock: Callable[[], object] | None = read_clock
        self._statements = (INSERT_JOB, WAKE_AFTER_COMMIT) if prepared else (INSERT_JOB,)
        self._loops: dict[asyncio.AbstractEventLoop, LoopSessions] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False

    async def insert(self, job: NewJob, now: float | None) -> EnqueueResult:
        loop = asyncio.get_running_loop()
        sessions = self._loops.get(loop) if self._pid == os.getpid() else None
        if sessions is None:
            sessions = self._sessions_of(loop)
        queue = job.queue
        woken = self._prepared

        def late(session: LoopSession, results: list[pq.abc.PGresult] | None) -> None:
            # The caller was cancelled; the statements ended since.
            sessions.give_back(session)
            if results is not None and results[0].status == _ROWS:
                self._check_wake_up(session, results)
                self._committed(queue, woken)

        for attempt in (1, 2):
            session = sessions.take_idle() or await sessions.take()
            encoding = session.encoding
            try:
                calls = [(INSERT_JOB, text_values(job, now, encoding))]
                if woken:
                    wake: list[bytes | None] = [
                        self._channel.encode(encoding),
                        queue.encode(encoding),
                    ]
                    calls.append((WAKE_AFTER_COMMIT, wake))
                results = await session.execute(calls, late)
            except asyncio.CancelledError:
                raise  # late() gives the session back once its statements have ended
            except NotSent as exc:
                sessions.give_back(session)
                if attempt == 1:
                    continue
                target = self._db.target
                raise BackendUnavailable(f"cannot reach PostgreSQL {target}: {exc}") from None
            except psycopg.OperationalError as exc:
                sessions.give_back(session)
                raise BackendUnavailable.enqueue_lost(self._db.target, exc) from None
            except BaseException:
                sessions.give_back(session)
                raise
            sessions.give_back(session)
            result = results[0]
            if result.status != _ROWS:
                error = error_from_result(result, encoding=encoding)
                raise insert_failed(error, self._db.target) from None
            self._check_wake_up(session, results)
            self._committed(queue, woken)
            return enqueued(result)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_wake_up(self, session: LoopSession, results: list[pq.abc.PGresult]) -> None:
        """A wake-up that failed, or whose session broke before its answer, is logged: the
        job it was for is committed all the same."""
        if not self._prepared:
            return  # the notifier's
        if len(results) < 2:
            error: psycopg.Error = psycopg.OperationalError("the session broke before its answer")
        elif results[1].status != _ROWS:
            error = error_of(session.pgconn, results[1], session.encoding)
        else:
            return
        log_failed_after(WAKE_AFTER_COMMIT, INSERT_JOB, error)

    def _sessions_of(self, loop: asyncio.AbstractEventLoop) -> LoopSessions:
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            if self._closed:
                raise BackendError(f"{self._db.target}: this backend was closed")
            sessions = self._loops.get(loop)
            if sessions is None:
                for gone in [other for other in self._loops if other.is_closed()]:
                    self._loops.pop(gone).close()
                sessions = self._loops[loop] = LoopSessions(loop, self._max, self._open)
            return sessions

    def _forked(self) -> None:
        """In a forked child: leave the parent's sessions alone (see the module's doc)."""
        _INHERITED.extend(self._loops.values())
        self._loops = {}
        self._lock = threading.Lock()  # perhaps held by another thread at the fork
        self._pid = os.getpid()

    async def _open(self) -> LoopSession:
        if self._closed:  # a caller that waited for a session while the backend closed
            raise BackendError(f"{self._db.target}: this backend was closed")
        read_clock, self._read_clock = self._read_clock, None
        if read_clock is not None:
            await OFFLOAD.run(read_clock)
        name = f"{self._db.application_name[:57]}-async"
        conn = await self._db.connect_async(application_name=name)
        try:
            session = LoopSession(conn, self._statements, prepared=self._prepared)
        except BaseException:
            await conn.close()
            raise
        try:
            await session.prepare()
        except BaseException as exc:
            session.close()
            if isinstance(exc, psycopg.Error):
                raise translate(exc, self._db.target) from None
            raise
        return session

    def close(self) -> None:
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            self._closed = True
            loops, self._loops = self._loops, {}
        for sessions in loops.values():
            sessions.close()
