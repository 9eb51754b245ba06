"""Wake-ups sent after their commit, from a session of its own: of every transaction that ends
jobs (to those waiting on results), and of single enqueues where prepared statements are
turned off (to the workers; otherwise a single enqueue sends its own, see enqueue.insert_single).

A NOTIFY makes its transaction take a lock that every notifying transaction of the whole
server shares, from before its commit is flushed to disk until after: transactions that
notify commit one at a time, and concurrent enqueuers, threads or processes, get no more than
one enqueue per disk flush between them (pgbench, 8 clients: a third of the rate of the same
INSERT without the NOTIFY); so would workers finishing their jobs at once. So a finish, cancel
or rescue commits its rows alone, and this thread then sends the notifications, in a
transaction of its own with ``synchronous_commit`` off: nothing is written there that must
survive a crash, so its commit waits for no disk flush and holds the lock only for a moment.
Notifications asked for while a send is under way go together in the next one, each (channel,
payload) once.

The write is durable when its call returns, as before; the wake-up follows it by one round
trip on this session instead of arriving with its commit, and so never before the commit is
visible. Should this session be down, the wake-up is lost, as one is when a LISTEN session
drops: workers also look for work on their own every ``poll_interval``, and those waiting on
results read their job again every second (results.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import psycopg

from conveyor.backends.postgres.connection import Connection, Q
from conveyor.backends.postgres.prepared import PreparedStatement

log = logging.getLogger(__name__)

#: The usual send, one wake-up: prepared (unless prepared statements are turned off), and run
#: without psycopg's cursor (see prepared.py).
_NOTIFY_ONE = PreparedStatement("conveyor_notify_one", Q["notify_one"])
#: Seconds close() waits for the wake-ups still to send.
_FLUSH_TIMEOUT = 2.0


class Notifier:
    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        #: (channel, payload) pairs to send.
        self._pending: set[tuple[str, str]] = set()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._closing = False
        #: Set whenever nothing is pending or being sent (for close() and tests).
        self.idle = threading.Event()
        self.idle.set()
        self._session: Connection | None = None

    def notify(self, notifications: Iterable[tuple[str, str]]) -> None:
        """Send these (channel, payload) notifications soon; returns at once."""
        with self._lock:
            if self._closing:
                return
            self._pending.update(notifications)
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
                pending, self._pending = sorted(self._pending), set()
            self._send(pending)

    def _send(self, pending: list[tuple[str, str]]) -> None:
        # Twice at most: a session the server closed since the last send is replaced once.
        for attempt in (1, 2):
            try:
                session = self._session or self._open()
                if len(pending) == 1 and session.prepare_threshold is not None:
                    channel, payload = pending[0]
                    _NOTIFY_ONE.run(session, [channel.encode(), payload.encode()])
                    return
                params = {
                    "channels": [channel for channel, _ in pending],
                    "payloads": [payload for _, payload in pending],
                }
                session.execute(Q["notify_pending"], params)
                return
            except Exception as exc:  # the wake-up is lost; workers and waiters will poll
                self._drop_session()
                if attempt == 2 or not isinstance(exc, psycopg.OperationalError):
                    log.warning("could not send the notifications %s: %s", pending, exc)
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
