"""The scheduler of periodic jobs: enqueues each schedule's ticks (conveyor/limits/schedules.py).

Every worker runs it, as part of maintenance; the database makes sure each tick gets one job
(``Backend.enqueue_tick``). The worker holding maintenance tries a tick as soon as it comes;
the others wake ``standby`` seconds after it, read the schedules' state (one read) and try only
the ticks still without a job: a killed leader delays ticks by about ``standby`` seconds, not
by its lease, and a healthy fleet pays one write per tick plus a read per standby worker.

It sleeps until the next tick (or ``interval`` at most, to follow a change of leadership, a
pause or a resume), on the database's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from conveyor.backends.base import Backend
from conveyor.errors import ConveyorError
from conveyor.limits.schedules import Schedule
from conveyor.worker.threads import DaemonThreadPool

log = logging.getLogger("conveyor.worker")
T = TypeVar("T")

#: Seconds after a tick that workers not holding maintenance try it.
STANDBY = 1.0


class Scheduler:
    """``db_call`` runs a blocking backend call off the event loop; by default on a thread of
    the scheduler's own, so that ticks never wait behind the worker's claims, outcomes or
    sweeps (a sweep blocked on a lock would hold them up)."""

    def __init__(
        self,
        backend: Backend,
        schedules: Sequence[Schedule],
        *,
        leading: Callable[[], bool],
        interval: float,
        standby: float | None = None,
        db_call: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self._backend = backend
        self._thread: DaemonThreadPool | None = None
        self._db_call = db_call or self._on_own_thread
        self._schedules = list(schedules)
        self._leading = leading
        self._interval = interval
        self._standby = STANDBY if standby is None else standby
        self._registered = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Jobs this scheduler enqueued (for tests and logs).
        self.enqueued = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._thread is not None:
            self._thread.shutdown()

    async def _on_own_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            # A daemon: a call stuck on an unreachable database does not hold up the exit.
            self._thread = DaemonThreadPool(1, name="conveyor-scheduler")
        result: T = await asyncio.wrap_future(self._thread.submit(functools.partial(fn, *args)))
        return result

    async def tick(self) -> float:
        """Enqueue what is due now; returns the seconds until there may be more."""
        if not self._registered:
            names = [schedule.name for schedule in self._schedules]
            await self._db_call(self._backend.register_schedules, names)
            self._registered = True
        states = {state.name: state for state in await self._db_call(self._backend.schedule_states)}
        leading = self._leading()
        now = self._backend.now()
        wake = now + self._interval
        for schedule in self._schedules:
            state = states.get(schedule.name)
            if state is None:  # forgotten meanwhile (a restored database): record it again
                self._registered = False
                continue
            lag = 0.0 if leading else self._standby
            if not state.paused:
                for tick in schedule.due(now - lag, state.last_tick, state.since):
                    await self._enqueue(schedule, tick)
            wake = min(wake, schedule.next_after(now - lag) + lag)
        return max(0.0, wake - self._backend.now())

    async def _enqueue(self, schedule: Schedule, tick: float) -> None:
        job = schedule.job(tick)
        result = await self._db_call(self._backend.enqueue_tick, schedule.name, tick, job)
        if result is not None:
            self.enqueued += 1
            label = schedule.label(tick)
            log.debug("schedule %s: enqueued job %d for %s", schedule.name, result.job_id, label)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = await self.tick()
            except ConveyorError as exc:
                log.warning("scheduler pass failed, will retry: %s", exc)
                delay = self._interval
            except Exception:
                # A bug must not end the schedules of this worker, nor its shutdown.
                log.exception("scheduler pass failed unexpectedly, will retry")
                delay = self._interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
