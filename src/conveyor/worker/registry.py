"""The worker's row in the registry: written at start, beaten on the heartbeat's schedule, deleted
on a clean exit.

The beats come from the worker's heartbeat process (pulse.py), with the lease heartbeats, so
that no task -- one that blocks the event loop, one that holds the GIL -- can make a live worker
look dead, while a stopped one stops beating. A worker that stops beating for ``dead_after``
seconds, or whose process a worker of its machine finds gone, is declared dead by maintenance,
which hands its running jobs to others at once instead of after their lease. Whether someone
asked this worker to stop (``conveyor workers stop``, from any host) is answered by each beat
and, between beats, by a look at the row about once a second: the first such answer begins a
graceful stop.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

from conveyor.backends.base import Backend
from conveyor.errors import ConveyorError
from conveyor.worker.machine import machine_identity
from conveyor.worker_info import WorkerRegistration

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

    def start(self) -> None:
        """Register; if that fails, the first beat registers."""
        try:
            self._backend.register_worker(self.registration)
        except ConveyorError as exc:
            log.warning("could not register worker %s, will retry: %s", self.registration.id, exc)

    def stop(self) -> None:
        """Leave the registry, once nothing beats for this worker any more."""
        try:
            self._backend.deregister_worker(self.registration.id)
        except ConveyorError as exc:
            log.warning(
                "could not deregister worker %s (%s): it will be declared dead in %gs",
                self.registration.id,
                exc,
                self.registration.dead_after,
            )
