"""Knowing when there may be work, without hammering the database.

Three sources wake an idle worker: an enqueue in this process (an in-memory signal), a commit by
another process (the backend's change marker, cheap to poll, or its push: a listener thread
calling ``notify``), and a delayed or retrying job coming due. A slow fallback re-check covers
anything else (a clock jump, a missed signal).

A notification resolves the waiting coroutine's own future in one turn of the event loop: an
``asyncio.Event`` behind ``asyncio.wait_for`` takes three more, which an idle worker's pickup
latency pays on a loaded machine.

An idle fetcher may also ``arm`` the signal with its next claim. When the notification comes
on the backend's own thread for other processes' wake-ups (``Backend.is_wake_thread``), that
thread makes the claim at once and hands the loop the claimed jobs: the pickup saves the hop
to the event loop and from there to a database thread, each a wait for a core on a busy
machine. The claim is still made once, by one thread, for the fetcher that armed it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.backends.base import Backend
from conveyor.errors import ConveyorError


def _settle(waiter: asyncio.Future[bool], notified: bool) -> None:
    if not waiter.done():
        waiter.set_result(notified)


class WorkSignal:
    def __init__(
        self,
        backend: Backend,
        *,
        poll_interval: float,
        fallback_interval: float = 1.0,
        queues: Sequence[str] | None = None,
    ) -> None:
        self._backend = backend
        self._poll_interval = poll_interval
        self._fallback_interval = fallback_interval
        self._queues = None if queues is None else frozenset(queues)
        self._loop = asyncio.get_running_loop()
        #: A notification came while nobody waited: the next wait returns at once.
        self._pending = False
        self._waiter: asyncio.Future[bool] | None = None
        self._arm_lock = threading.Lock()
        #: The claim an armed signal makes on the wake thread (None: not armed, or taken) ...
        self._armed: Callable[[], Any] | None = None
        #: ... and its outcome, resolved on the loop (None: not armed).
        self._early: asyncio.Future[Any] | None = None

    def notify(self, queues: Sequence[str] = ()) -> None:
        """Thread-safe: called by the backend after a local enqueue, on hearing another
        process's, or to stop waiting."""
        if self._queues is not None and queues and self._queues.isdisjoint(queues):
            return
        if self._armed is not None and self._backend.is_wake_thread():
            with self._arm_lock:
                claim, self._armed, early = self._armed, None, self._early
            if claim is not None and early is not None:
                self._claim_here(claim, early)
                return
        self._loop.call_soon_threadsafe(self._notified)

    def arm(self, claim: Callable[[], Any]) -> None:
        """On the loop, before a wait: let the wake thread make ``claim`` when it hears of
        work. ``disarm`` after the wait tells whether it did."""
        with self._arm_lock:
            self._armed = claim
            self._early = self._loop.create_future()

    def disarm(self) -> asyncio.Future[Any] | None:
        """On the loop, after a wait: the outcome of the armed claim if the wake thread made
        it (resolved once that claim returns), else None (and it never will)."""
        with self._arm_lock:
            early, self._early = self._early, None
            taken = self._armed is None
            self._armed = None
        return early if taken else None

    def _claim_here(self, claim: Callable[[], Any], early: asyncio.Future[Any]) -> None:
        try:
            outcome: tuple[Any, Exception | None] = (claim(), None)
        except Exception as exc:  # the fetcher handles a failed claim as its own
            outcome = (None, exc)
        self._loop.call_soon_threadsafe(self._claimed, early, *outcome)

    def _claimed(self, early: asyncio.Future[Any], result: Any, error: Exception | None) -> None:
        if not early.done():
            if error is None:
                early.set_result(result)
            else:
                early.set_exception(error)
        self._notified()

    def _notified(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._pending = True
        else:
            waiter.set_result(True)

    def _marker(self) -> int | None:
        try:
            return self._backend.change_marker()
        except ConveyorError:
            return None

    async def wait(self, next_due: float | None) -> bool:
        """Return when there may be work: True when told so (a notification, or another
        process's commit seen in the change marker), False when a time came (``next_due``,
        or the fallback re-check)."""
        if self._pending:
            self._pending = False
            return True
        marker = self._marker()
        give_up = time.monotonic() + self._fallback_interval
        while True:
            if next_due is not None and self._backend.now() >= next_due:
                return False
            timeout = self._poll_interval
            if next_due is not None:
                timeout = min(timeout, max(next_due - self._backend.now(), 0.0))
            waiter = self._waiter = self._loop.create_future()
            timer = self._loop.call_later(timeout, _settle, waiter, False)
            try:
                if await waiter:
                    return True
            finally:
                timer.cancel()
                self._waiter = None
            if self._marker() != marker:
                return True
            if time.monotonic() >= give_up:
                return False
