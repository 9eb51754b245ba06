"""The wake-up of single enqueues, sent after their commit from a session of its own.

A NOTIFY makes its transaction take a lock that every notifying transaction of the whole
server shares, from before its commit is flushed to disk until after: enqueues that notify in
their own transaction commit one at a time, and concurrent enqueuers, threads or processes,
get no more than one enqueue per disk flush between them (pgbench, 8 clients: a third of the
rate of the same INSERT without the NOTIFY). So a single enqueue commits its row alone, and
this thread then sends the NOTIFY of its queue, in a transaction of its own with
``synchronous_commit`` off: nothing is written there that must survive a crash, so its commit
waits for no disk flush and holds the lock only for a moment. Queues named while a NOTIFY is
under way are sent together in the next one.

The enqueue is durable when it returns, as before; the wake-up follows it by one round trip
on this session instead of arriving with its commit. Should this session be down, the
wake-up is lost, as one is when the LISTEN session drops: workers also look for work on
their own every ``poll_interval``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg

from conveyor.backends.postgres.connection import Connection, Q

log = logging.getLogger(__name__)

#: Seconds close() waits for the wake-ups still to send.
_FLUSH_TIMEOUT = 2.0


class Notifier:
    def __init__(self, connect: Callable[[], Connection], channel: str) -> None:
        self._connect = connect
        self._channel = channel
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closing = False
        #: Set whenever nothing is pending or being sent (for close() and tests).
        self.idle = threading.Event()
        self.idle.set()
        self._session: Connection | None = None

    def notify(self, queues: Iterable[str]) -> None:
        """Wake the listeners of ``queues`` soon; returns at once."""
        with self._lock:
            if self._closing:
                return
            self._pending.update(queues)
            self.idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="conveyor-notifier", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        """Send what is pending (waiting at most a moment), then stop."""
        self.idle.wait(_FLUSH_TIMEOUT)
        with self._lock:
            self._closing = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(_FLUSH_TIMEOUT)
            if thread.is_alive():
                return  # stuck on a dead server: the daemon thread ends with the process
        self._drop_session()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closing:
                    self.idle.set()
                    self._wake.wait()
                if self._closing and not self._pending:
                    self.idle.set()
                    return
                queues, self._pending = sorted(self._pending), set()
            self._send(queues)

    def _send(self, queues: list[str]) -> None:
        # Twice at most: a session the server closed since the last send is replaced once.
        for attempt in (1, 2):
            try:
                session = self._session or self._open()
                session.execute(Q["notify_queues"], {"channel": self._channel, "queues": queues})
                return
            except Exception as exc:  # the wake-up is lost; workers will poll
                self._drop_session()
                if attempt == 2 or not isinstance(exc, psycopg.OperationalError):
                    log.warning("could not wake the workers of %s: %s", queues, exc)
                    return

    def _open(self) -> Connection:
        session = self._connect()
        session.execute(Q["notifier_session"])
        self._session = session
        return session

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()
