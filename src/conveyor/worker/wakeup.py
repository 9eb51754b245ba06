"""Knowing when there may be work, without hammering the database.

Three sources wake an idle worker: an enqueue in this process (an in-memory signal), a commit by
another process (the backend's change marker, cheap to poll), and a delayed or retrying job
coming due. A slow fallback re-check covers anything else (a clock jump, a missed signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from conveyor.backends.base import Backend
from conveyor.errors import ConveyorError


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
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def notify(self, queues: Sequence[str] = ()) -> None:
        """Thread-safe: called by the backend after a local enqueue, or to stop waiting."""
        if self._queues is not None and queues and self._queues.isdisjoint(queues):
            return
        self._loop.call_soon_threadsafe(self._event.set)

    def _marker(self) -> int | None:
        try:
            return self._backend.change_marker()
        except ConveyorError:
            return None

    async def wait(self, next_due: float | None) -> None:
        """Return when there may be work (or when notified)."""
        marker = self._marker()
        give_up = time.monotonic() + self._fallback_interval
        while True:
            if next_due is not None and self._backend.now() >= next_due:
                return
            timeout = self._poll_interval
            if next_due is not None:
                timeout = min(timeout, max(next_due - self._backend.now(), 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
            if self._event.is_set():
                self._event.clear()
                return
            if self._marker() != marker or time.monotonic() >= give_up:
                return
