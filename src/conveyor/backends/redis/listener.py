"""Wake-ups across processes: a pub/sub subscription in a background thread.

The scripts that make work ready PUBLISH the queue's name on P:wake, those that end jobs an
empty message on P:finished, in the script itself (so a wake-up is never sent for a write that
did not happen). This thread counts the messages of one channel, and hands the queue names to
``on_message``. ``marker`` is a plain integer read: the worker polls it every few milliseconds
without a command. When the connection drops, the thread reconnects with capped, jittered
backoff, subscribes again and bumps the marker (calling ``on_message`` with no queue: "look
everywhere"), because messages published while it was away are lost; waiters also poll.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

_FIRST_DELAY = 0.05
_MAX_DELAY = 5.0
#: Seconds one wait for a message lasts before the thread looks whether it must stop.
_TICK = 0.5


class Listener:
    def __init__(
        self,
        connect: Callable[[], Any],
        channel: str,
        on_message: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self._connect = connect
        self._channel = channel
        self._on_message = on_message
        self._marker = 0
        self._marker_lock = threading.Lock()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: Set while subscribed (for tests and diagnostics).
        self.connected = threading.Event()
        #: Times the thread subscribed (the first time included).
        self.subscriptions = 0

    @property
    def marker(self) -> int:
        return self._marker

    def is_current(self) -> bool:
        """Whether the caller is this listener's thread (calling ``on_message``)."""
        return threading.current_thread() is self._thread

    def start(self, wait: float = 0.0) -> None:
        """Start listening (once); the first call may wait up to ``wait`` seconds for the
        subscription, so that what is published afterwards is sure to be heard."""
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name=f"conveyor-subscribe-{self._channel}", daemon=True
            )
            self._thread.start()
        if wait > 0:
            self.connected.wait(wait)

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping.set()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _bump(self, by: int = 1) -> None:
        with self._marker_lock:
            self._marker += by

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            client = None
            try:
                client = self._connect()
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    pubsub.subscribe(self._channel)
                    failures = 0
                    self.subscriptions += 1
                    self.connected.set()
                    # Anything published while we were not subscribed is lost: make waiters look.
                    self._bump()
                    self._tell(())
                    self._pump(pubsub)
                finally:
                    with contextlib.suppress(Exception):
                        pubsub.close()
            except Exception as exc:  # any failure means: reconnect
                if self._stopping.is_set():
                    break
                failures += 1
                log.warning("SUBSCRIBE %s failed (%s); reconnecting", self._channel, exc)
            finally:
                self.connected.clear()
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.close()
            delay = min(_MAX_DELAY, _FIRST_DELAY * 2 ** min(failures, 16))
            if self._stopping.wait(random.uniform(delay / 2, delay)):
                break

    def _pump(self, pubsub: Any) -> None:
        """Count messages until stopped; raises when the connection breaks."""
        while not self._stopping.is_set():
            message = pubsub.get_message(timeout=_TICK)
            queues: list[str] = []
            while message is not None:
                if message.get("type") == "message":
                    queues.append(str(message["data"]))
                message = pubsub.get_message(timeout=0)
            if queues:
                self._bump(len(queues))
                self._tell(sorted({q for q in queues if q}))

    def _tell(self, queues: Sequence[str]) -> None:
        if self._on_message is not None:
            try:
                self._on_message(queues)
            except Exception:  # a waiter's problem must not end the listening
                log.exception("a wake-up callback failed")
