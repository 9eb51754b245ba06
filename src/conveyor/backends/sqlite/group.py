"""Commit coalescing for single enqueues on SQLite (group commit): threads of one process that
enqueue at the same moment share one transaction, and each call returns once the commit that
holds its job is done.

SQLite lets one writer at a time into the file, and a commit costs about as much as the insert
itself, so enqueuers that take turns spend most of their time committing. Here a caller that
finds no write under way writes its job alone (one statement, see enqueue.insert_single); the
callers that arrive while it writes queue up, and the first of them, once the write is done,
writes the whole queue in one transaction for all of them.

What a caller gets is what it would get alone:
- durable when the call returns: it returns after the COMMIT of the transaction holding its job;
- its own error, and only its own: a group whose transaction fails is rolled back, and each of
  its jobs is then written alone, so that one bad job cannot fail the others (arguments are
  validated before anything reaches this module);
- only plain jobs come here: jobs with an idempotency key or in a limited queue take the
  backend's ordinary transaction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from conveyor.backends.base import EnqueueResult, NewJob
from conveyor.backends.sqlite.connection import Connection
from conveyor.backends.sqlite.enqueue import insert_single
from conveyor.errors import BackendError

#: Jobs per shared transaction, so that one commit does not keep its callers waiting long.
GROUP_LIMIT = 256


@dataclass(slots=True, eq=False)
class _Call:
    job: NewJob
    now: float
    result: EnqueueResult | None = None
    error: BaseException | None = None
    settled: bool = False
    #: Set when this call is to write the queue (it leads the next group).
    leads: bool = False
    #: Made only by a caller that has to wait.
    wake: threading.Event | None = field(default=None)


class GroupCommit:
    """Single enqueues of one backend, coalesced into shared transactions."""

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._mutex = threading.Lock()
        self._queue: list[_Call] = []
        self._writing = False

    def insert(self, job: NewJob, now: float) -> EnqueueResult:
        with self._mutex:
            alone = not self._writing
            if alone:
                self._writing = True
            else:
                call = _Call(job, now, wake=threading.Event())
                self._queue.append(call)
        if alone:
            try:
                return self._conn.write_one(insert_single, job, now)
            finally:
                self._hand_on()
        assert call.wake is not None
        call.wake.wait()
        if call.leads:
            self._lead(self._take())
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def insert_now(self, job: NewJob, now: float) -> EnqueueResult | None:
        """``insert`` if no write is under way here or elsewhere: None, having written
        nothing, if the job would have to wait for one (see Connection.write_now)."""
        with self._mutex:
            if self._writing:
                return None
            self._writing = True
        try:
            return self._conn.write_now(insert_single, job, now)
        finally:
            self._hand_on()

    def _take(self) -> list[_Call]:
        with self._mutex:
            group, self._queue = self._queue[:GROUP_LIMIT], self._queue[GROUP_LIMIT:]
        return group

    def _lead(self, group: list[_Call]) -> None:
        """Write ``group``, settle its calls, then hand the writing on to the first caller
        that queued meanwhile (or stop writing if none did)."""
        try:
            self._write(group)
        finally:
            for call in group:
                if not call.settled:  # only if _write itself failed to finish
                    call.error = call.error or BackendError(
                        "the write shared with this enqueue was interrupted; enqueue again"
                    )
                    call.settled = True
            for call in group:
                if call.wake is not None:
                    call.wake.set()
            self._hand_on()

    def _hand_on(self) -> None:
        """Hand the writing on to the first caller that queued meanwhile, or stop writing if
        none did."""
        with self._mutex:
            following = self._queue[0] if self._queue else None
            if following is None:
                self._writing = False
            else:
                following.leads = True
        if following is not None and following.wake is not None:
            following.wake.set()

    def _write(self, group: list[_Call]) -> None:
        if len(group) > 1:
            try:
                with self._conn.write():
                    cursor = self._conn.cursor
                    results = [insert_single(cursor, call.job, call.now) for call in group]
            except Exception:  # noqa: S110 - every job is written again alone, just below
                pass
            else:
                for call, result in zip(group, results, strict=True):
                    call.result, call.settled = result, True
                return
        for call in group:
            try:
                call.result = self._conn.write_one(insert_single, call.job, call.now)
            except Exception as exc:
                call.error = exc
            call.settled = True
