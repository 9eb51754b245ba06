"""Blocking calls of the async API, run on threads of their own at half the cost of
``asyncio.to_thread``.

``enqueue_async`` writes through the same blocking code as ``enqueue``, on a thread, so that
the event loop never waits for the database. With ``asyncio.to_thread`` the hop there and back
cost about as much client time as the write itself on SQLite (a concurrent.futures Future, a
work item, an asyncio Future chained to it, a lock and a semaphore per call). Here the call
travels on a SimpleQueue to a waiting thread, which hands the result back with one
``call_soon_threadsafe``: the same two thread switches, and nothing else.

Threads start on demand, up to ``max_threads``, and are daemons: an interpreter that exits
while one of them waits for the database does not hang. The context of the caller (its
contextvars) is the one the call runs in, as with ``asyncio.to_thread``. A process forked from
this one starts over with no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[[], Any]
]


class Offload:
    """A few threads that run blocking calls for coroutines."""

    def __init__(self, name: str, max_threads: int) -> None:
        self._name = name
        self._max = max_threads
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self._pid = os.getpid()
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        #: One permit per thread waiting for a call.
        self._idle = threading.Semaphore(0)
        self._threads = 0

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on one of the threads; its result (or exception) here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._pid != os.getpid():
            # A forked child: the threads (and perhaps the lock, held at the fork) stayed
            # with the parent.
            self._lock = threading.Lock()
            self._start()
        self._calls.put((loop, future, contextvars.copy_context(), fn))
        if not self._idle.acquire(blocking=False):
            self._add_thread()
        return await future

    def _add_thread(self) -> None:
        with self._lock:
            if self._threads >= self._max:
                return  # a busy thread takes the call when it is done
            self._threads += 1
            number = self._threads
        thread = threading.Thread(target=self._serve, name=f"{self._name}-{number}", daemon=True)
        thread.start()

    def _serve(self) -> None:
        calls = self._calls
        while True:
            loop, future, context, fn = calls.get()
            try:
                result = context.run(fn)
            except BaseException as exc:  # handed to the caller, whatever it is
                _settle(loop, future, None, exc)
            else:
                _settle(loop, future, result, None)
            del loop, future, context, fn  # not kept alive while this thread waits
            self._idle.release()


def _settle(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if future.done():  # the caller was cancelled meanwhile
            return
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)

    # RuntimeError: the loop was closed meanwhile, and nobody waits for the answer.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)


#: The one Offload of this process (threads are not worth one set per app).
OFFLOAD = Offload("conveyor-offload", max_threads=min(32, (os.cpu_count() or 1) + 4))
