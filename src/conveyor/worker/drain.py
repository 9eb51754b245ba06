"""Making room for suspects on a busy worker (poison isolation, see ``solo``).

About once a second, while this worker holds jobs, it asks whether a suspect waits in its
queues. If one does, it tries to take the fleet's ``suspects`` lease; the holder *drains*
(``Solo.draining``): its fetchers claim nothing ordinary and hand back what they prefetched,
its runs finish, and then they claim suspects, alone, one after another. The holder renews the
lease at every look while a suspect waits or runs here, and gives it up as soon as none does.
One worker of the fleet drains at a time, so the others keep their throughput; one that dies
draining leaves the lease to lapse (or to be freed when it is declared dead), and another takes
it over. A worker that holds nothing claims suspects by itself, lease or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from conveyor.backends.base import Backend
from conveyor.errors import ConveyorError
from conveyor.worker.solo import Solo

log = logging.getLogger("conveyor.worker")

#: The name of the lease of the one worker that drains for suspects.
LEADERSHIP = "suspects"
#: Seconds between two looks for waiting suspects (one index read each).
CHECK_EVERY = 1.0
#: The lease outlives this many looks without a renewal (a draining worker that stalls).
LEASE_CHECKS = 5


class Drain:
    def __init__(
        self,
        backend: Backend,
        db_call: Callable[..., Awaitable[Any]],
        solo: Solo,
        *,
        worker_id: str,
        queues: Sequence[str] | None,
        holds_nothing: Callable[[], bool],
        on_drain: Callable[[], None],
        interval: float = CHECK_EVERY,
    ) -> None:
        """``queues``: every queue this worker serves (None: all); ``on_drain``: called when
        draining begins, to wake fetchers that wait for room."""
        self._backend = backend
        self._db = db_call
        self._solo = solo
        self._worker_id = worker_id
        self._queues = None if queues is None else list(queues)
        self._holds_nothing = holds_nothing
        self._on_drain = on_drain
        self._interval = interval
        self._ttl = LEASE_CHECKS * interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="suspects")

    def stop(self) -> None:
        """Stop looking, at once (a look under way is left to finish on its own). The lease,
        if held, is freed when the worker deregisters, or lapses."""
        self._solo.drain(False)
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except ConveyorError as exc:
                log.warning("could not look for suspect jobs to make room for: %s", exc)
            await asyncio.sleep(self._interval)

    async def check(self) -> None:
        """One look: begin draining, go on, or end."""
        solo = self._solo
        if not solo.draining:
            # An idle worker claims suspects by itself.
            if self._holds_nothing() or not await self._waiting():
                return
            if not await self._lead():
                return
            log.info("making room for suspect jobs: no new claims until they have run alone")
            solo.drain(True)
            self._on_drain()
            return
        running = solo.token is not None or solo.claiming_suspect
        if (running or await self._waiting()) and await self._lead():
            # Fetchers that found no suspect last time (an outcome still being written,
            # another worker faster) look again.
            solo.looked()
            return
        log.info("no suspect job waits any more: claiming again")
        solo.drain(False)
        with contextlib.suppress(ConveyorError):
            await self._db(self._backend.release_leadership, LEADERSHIP, self._worker_id)

    async def _waiting(self) -> bool:
        return bool(await self._db(self._backend.suspect_waiting, self._queues))

    async def _lead(self) -> bool:
        return bool(
            await self._db(self._backend.acquire_leadership, LEADERSHIP, self._worker_id, self._ttl)
        )
