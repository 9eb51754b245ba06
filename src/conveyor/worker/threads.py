"""A pool of daemon threads for sync tasks.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter exits, so one
task that never returns would keep a worker alive after a graceful shutdown had already put its
job back. These threads are daemons: once the worker has released or recorded every job, the
process exits on time and a stuck thread dies with it.

Threads start as work comes, or all at once ahead of it (``prestart``). A thread start costs
the caller about a tenth of a millisecond of handing the interpreter lock back and forth, so a
burst of short calls starting a hundred threads holds up the event loop that hands them over
for ten milliseconds or more, where a worker waiting for its first claims has that time to
spare.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("conveyor.worker")
_STOP = object()


class DaemonThreadPool:
    def __init__(self, size: int, name: str = "conveyor-task") -> None:
        self._size = size
        self._name = name
        self._work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._put(future, fn)
        return future

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a pool thread with no future to report to: ``fn`` hands on its own
        result, and anything it raises is logged."""
        self._put(None, fn)

    def _put(self, future: Future[Any] | None, fn: Callable[[], Any]) -> None:
        if self._closed:
            raise RuntimeError("the thread pool is shut down")
        self._work.put((future, fn))
        with self._lock:
            # An idle thread takes the work; otherwise start one, up to the pool size; beyond
            # that the work waits in the queue for the next thread to free up.
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._loop, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def prestart(self) -> None:
        """Start every thread of the pool now, from a thread of its own, without waiting:
        each waits for work, as an idle thread does."""
        starter = threading.Thread(target=self._prestart, name=f"{self._name}-start", daemon=True)
        starter.start()

    def _prestart(self) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._threads) >= self._size:
                    return
                thread = threading.Thread(
                    target=self._loop,
                    args=(True,),
                    name=f"{self._name}_{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(thread)
            thread.start()

    def _loop(self, idle: bool = False) -> None:
        """``idle``: started ahead of work (``prestart``), rather than for work put in."""
        if idle:
            with self._lock:
                self._idle += 1
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            future, fn = item
            if future is None:
                try:
                    fn()
                except BaseException:
                    log.exception("a worker thread's call failed")
            elif future.set_running_or_notify_cancel():
                try:
                    result = fn()
                except BaseException as exc:  # the future carries it to the awaiting coroutine
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, fn
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Stop idle threads; busy ones finish their task (or die with the process)."""
        self._closed = True
        for _ in self._threads:
            self._work.put(_STOP)
