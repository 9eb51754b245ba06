"""The worker's row in the registry: written at start, beaten on the heartbeat's schedule, deleted
on a clean exit.

Beats run on a thread of their own, as lease heartbeats do, so a task that blocks the event loop
cannot make a live worker look dead. A worker that stops beating for ``dead_after`` seconds, or
whose process a worker of its machine finds gone, is declared dead by maintenance, which hands
its running jobs to others at once instead of after their lease. Each beat also answers
whether someone asked this worker to stop (``conveyor workers stop``, from any host): the first
such answer begins a graceful stop.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence

from conveyor.backends.base import Backend
from conveyor.errors import ConveyorError
from conveyor.worker.machine import machine_identity
from conveyor.worker_info import WorkerRegistration, WorkerState

log = logging.getLogger("conveyor.worker")

#: Beats a worker may miss before it counts as dead ...
MISSED_BEATS = 3
#: ... but never sooner than this many seconds: a short beat interval must not turn a pause of
#: the process (a GC, a slow disk, a busy database) into a death.
MIN_DEAD_AFTER = 5.0


def dead_after(beat_interval: float) -> float:
    """Seconds without a beat after which a worker beating every ``beat_interval`` is dead."""
    return max(MISSED_BEATS * beat_interval, MIN_DEAD_AFTER)


class Registry:
    def __init__(
        self,
        backend: Backend,
        *,
        worker_id: str,
        queues: Sequence[str] | None,
        concurrency: int,
        interval: float,
        is_stopping: Callable[[], bool],
        on_stop_requested: Callable[[], None],
    ) -> None:
        self._backend = backend
        self.registration = WorkerRegistration(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=None if queues is None else tuple(queues),
            concurrency=concurrency,
            beat_interval=interval,
            dead_after=dead_after(interval),
            machine=machine_identity(),
        )
        self._interval = interval
        self._is_stopping = is_stopping
        self._on_stop_requested = on_stop_requested
        self._registered = False
        self._stop_requested = False
        self._stopped = False
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="conveyor-registry", daemon=True)

    @property
    def _id(self) -> str:
        return self.registration.id

    def start(self) -> None:
        try:
            self._backend.register_worker(self.registration)
            self._registered = True
        except ConveyorError as exc:
            log.warning("could not register worker %s, will retry: %s", self._id, exc)
        self._thread.start()

    def stop(self, *, deregister: bool = True) -> None:
        """Stop beating and, unless ``deregister`` is False (an exit that may leave runs
        behind: maintenance releases them once this worker counts as dead), leave the
        registry. Only the first call does anything."""
        if self._stopped:
            return
        self._stopped = True
        self._halt.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if not deregister:
            return
        try:
            self._backend.deregister_worker(self._id)
        except ConveyorError as exc:
            log.warning(
                "could not deregister worker %s (%s): it will be declared dead in %gs",
                self._id,
                exc,
                self.registration.dead_after,
            )

    def _run(self) -> None:
        while not self._halt.wait(self._interval):
            try:
                stop = self._beat()
            except ConveyorError as exc:
                log.warning("worker beat failed, will retry: %s", exc)
                continue
            except Exception:
                # Never let the thread die: without beats the worker would be declared dead
                # and its running jobs handed to others.
                log.exception("worker beat failed unexpectedly, will retry")
                continue
            if stop and not self._stop_requested:
                self._stop_requested = True
                log.info("worker %s: a stop was requested through the database", self._id)
                self._on_stop_requested()

    def _beat(self) -> bool:
        state = WorkerState.STOPPING if self._is_stopping() else WorkerState.RUNNING
        stop = self._backend.beat_worker(self._id, state)
        if stop is None and not self._halt.is_set():  # once stopping, the row is meant to go
            if self._registered:
                log.warning(
                    "worker %s had been declared dead (no beat for %gs) and its running jobs "
                    "handed to others; registering again",
                    self._id,
                    self.registration.dead_after,
                )
            self._backend.register_worker(self.registration)
            self._registered = True
            stop = self._backend.beat_worker(self._id, state)
        return bool(stop)
