"""Wake-ups across processes: a LISTEN session in a background thread.

Every transaction that makes work ready sends one NOTIFY per queue (see ``notify_queues``);
this thread counts them, and hands the queue names to ``on_notify`` (the backend's in-process
wake-ups, which wake an idle worker at once instead of at its next poll). ``marker`` is a plain
integer read: the worker polls it every few milliseconds without a single query. When the
session drops, the thread reconnects with capped, jittered backoff and bumps the marker (and
calls ``on_notify`` with no queue: "look everywhere") once it listens again, because
notifications sent while it was away are lost and waiters must look for themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import selectors
import threading
from collections.abc import Callable, Sequence

import psycopg

from conveyor.backends.postgres.connection import Connection, composed

log = logging.getLogger(__name__)

_FIRST_DELAY = 0.05
_MAX_DELAY = 5.0


class Listener:
    def __init__(
        self,
        connect: Callable[[], Connection],
        channel: str,
        on_notify: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._on_notify = on_notify
        self._marker = 0
        self._marker_lock = threading.Lock()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: The LISTEN session while it is up.
        self._session: Connection | None = None
        #: Written to by stop() to interrupt the select() the thread sleeps in.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        #: Set while the LISTEN session is up (for tests and diagnostics).
        self.connected = threading.Event()

    @property
    def marker(self) -> int:
        """The number of notifications (and reconnections) so far.

        Notifications already in the socket are counted here and now, without waiting for the
        thread to be scheduled: a non-blocking read, never a query.
        """
        session = self._session
        if session is not None:
            with contextlib.suppress(Exception):  # a broken session is the thread's business
                self._receive(session)
        return self._marker

    def start(self, wait: float = 0.0) -> None:
        """Start listening (once); the first call may wait up to ``wait`` seconds for the
        session, so that what is committed afterwards is sure to be heard."""
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"conveyor-listen-{self._channel}", daemon=True
            )
            self._thread.start()
        if wait > 0:
            self.connected.wait(wait)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            self._stopping.set()
            thread, self._thread = self._thread, None
        with contextlib.suppress(OSError):  # the pipe is full: a wake-up is pending anyway
            os.write(self._wake_w, b"x")
        if thread is not None:
            thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _bump(self, by: int = 1) -> None:
        with self._marker_lock:
            self._marker += by

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(composed("listen", channel=self._channel), prepare=False)
                    failures = 0
                    # Anything sent while we were not listening is lost: make waiters look.
                    self._bump()
                    self._tell(())
                    self._session = conn
                    self.connected.set()
                    self._pump(conn)
            except Exception as exc:  # any failure means: reconnect
                if self._stopping.is_set():
                    break
                failures += 1
                log.warning("LISTEN %s failed (%s); reconnecting", self._channel, exc)
            finally:
                self._session = None
                self.connected.clear()
            delay = min(_MAX_DELAY, _FIRST_DELAY * 2 ** min(failures, 16))
            if self._stopping.wait(random.uniform(delay / 2, delay)):
                break

    def _pump(self, conn: Connection) -> None:
        """Count notifications until stopped; raises when the session breaks."""
        # A selector, not select(): a busy process may hold socket numbers above 1024.
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ, "session")
            selector.register(self._wake_r, selectors.EVENT_READ, "stop")
            while not self._stopping.is_set():
                ready = {key.data for key, _ in selector.select()}
                if "stop" in ready:
                    return
                self._receive(conn)

    def _tell(self, queues: Sequence[str]) -> None:
        if self._on_notify is not None:
            try:
                self._on_notify(queues)
            except Exception:  # a waiter's problem must not end the listening
                log.exception("a wake-up callback failed")

    def _receive(self, conn: Connection) -> None:
        queues = [notify.payload for notify in conn.notifies(timeout=0)]
        if queues:
            self._bump(len(queues))
            self._tell(sorted(set(queues)))
        if conn.closed or conn.broken:
            raise psycopg.OperationalError("the LISTEN session was closed by the server")
