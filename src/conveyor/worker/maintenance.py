"""Maintenance duties: rescue runs whose lease expired, release the runs of workers that stopped
beating, prune finished jobs past their retention, and keep the per-minute aggregates
(count the jobs enqueued since the last sweep, fold closed minutes into the totals, prune
minutes past ``stats_retention``: conveyor/backends/tally.py). (Claims promote scheduled and
retrying jobs whose time has come themselves.) With periodic jobs declared, it also runs the
scheduler (conveyor.worker.scheduler), on every worker: first the holder of the lease below,
the others standing by.

One duty falls on every worker, on every sweep and once at start-up before it claims: declaring
dead the workers of its own machine whose process is gone (``conveyor.worker.machine``). It
costs a read of the small registry, and it brings a crashed worker's jobs back within a sweep
of whichever worker of that machine looks first, a restarted one included, instead of after a
lease or a silence of ``dead_after``.

One worker at a time runs them: the one holding the ``maintenance`` lease in the database, which
it renews on every sweep. When it dies the lease lapses and another worker takes it over; when it
stops cleanly it gives the lease up at once. The lease saves work, it does not guard
correctness: every duty is idempotent and fenced, so a holder that lost the lease without
noticing yet and sweeps once more does no harm.

Taking or renewing the lease is a write on every sweep, whoever wins it: it also tells when this
worker last reached the database. After a break in its own sweeps (an outage, a lock held by
another process, a stalled event loop) it cannot tell whether the other workers could beat
meanwhile, so their silence counts only from the end of the break.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from conveyor.backends.base import Backend, RescueReport
from conveyor.errors import ConveyorError
from conveyor.limits.schedules import Schedule
from conveyor.worker.machine import gone_workers
from conveyor.worker.scheduler import Scheduler

log = logging.getLogger("conveyor.worker")

PRUNE_EVERY = 60.0
#: Seconds between two counts of enqueued jobs (and folds of closed minutes): throughput
#: figures lag enqueues by up to this plus tally.ENQUEUE_SETTLE.
TALLY_EVERY = 10.0
#: Seconds between two calls of the engine's storage upkeep (a VACUUM where autovacuum is off).
UPKEEP_EVERY = 60.0
#: The name of the maintenance lease.
LEADERSHIP = "maintenance"
#: The lease outlives this many sweeps without a renewal ...
LEASE_SWEEPS = 3
#: ... and never less than this many seconds, so a slow sweep does not hand it around.
MIN_LEADER_TTL = 5.0
#: A gap between two writes of the sweep longer than this many intervals (plus a second) is a
#: break in reaching the database.
BREAK_INTERVALS = 2


def leader_ttl(interval: float) -> float:
    """Seconds the maintenance lease lasts when renewed every ``interval`` seconds."""
    return max(LEASE_SWEEPS * interval, MIN_LEADER_TTL)


class Maintenance:
    def __init__(
        self,
        backend: Backend,
        db_call: Callable[..., Awaitable[Any]],
        on_rescued: Callable[[], None],
        *,
        worker_id: str,
        machine: str | None,
        interval: float,
        retention: float,
        stats_retention: float = 0.0,
        schedules: Sequence[Schedule] = (),
    ) -> None:
        self._backend = backend
        self._db_call = db_call
        self._on_rescued = on_rescued
        self._worker_id = worker_id
        self._machine = machine
        self._interval = interval
        self._ttl = leader_ttl(interval)
        self._break = BREAK_INTERVALS * interval + 1.0
        self._retention = retention
        self._stats_retention = stats_retention
        self._last_tally = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = 0.0
        self._last_upkeep = time.monotonic()
        self._upkeep_thread: threading.Thread | None = None
        self._last_reached: float | None = None
        #: Database time since which every sweep reached the database.
        self.reachable_since: float | None = None
        #: Whether this worker held the maintenance lease at its last attempt.
        self.leading = False
        #: Enqueues the ticks of periodic jobs, when there are any.
        self.scheduler: Scheduler | None = None
        if schedules:
            self.scheduler = Scheduler(
                backend, schedules, leading=lambda: self.leading, interval=interval
            )

    def start(self, after: Sequence[asyncio.Event] = ()) -> None:
        """Begin sweeping once every event of ``after`` is set (the worker passes its
        fetchers' first claims: a starting worker's first jobs do not wait behind a sweep
        for the database threads and connections)."""
        self._task = asyncio.get_running_loop().create_task(self._run(after), name="maintenance")
        if self.scheduler is not None:
            self.scheduler.start()

    async def stop(self) -> None:
        self._stop.set()
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self._task is not None:
            await self._task
        if self.leading:
            self.leading = False
            try:
                await self._db_call(self._backend.release_leadership, LEADERSHIP, self._worker_id)
            except ConveyorError as exc:
                log.warning(
                    "could not hand on maintenance (%s): it passes on in %gs", exc, self._ttl
                )

    async def lead(self) -> bool:
        """Take or renew the maintenance lease; True while this worker holds it."""
        held = bool(
            await self._db_call(
                self._backend.acquire_leadership, LEADERSHIP, self._worker_id, self._ttl
            )
        )
        now = self._backend.now()
        if self._last_reached is None or now - self._last_reached > self._break:
            self.reachable_since = now
        self._last_reached = now
        if held != self.leading:
            log.info(
                "worker %s %s maintenance",
                self._worker_id,
                "now runs" if held else "no longer runs",
            )
        self.leading = held
        return held

    async def reap_gone(self) -> None:
        """Declare dead the workers of this machine whose process is gone, and release their
        jobs and leases."""
        gone = await self._gone()
        if gone:
            await self._reap(gone)

    async def sweep(self, gone: Sequence[str] = ()) -> None:
        """The leader's duties; ``gone``: workers of this machine whose process is gone."""
        report = await self._db_call(self._backend.rescue_expired, self._worker_id)
        if any(_counts(report)):
            log.warning(
                "rescued expired leases: %d back in the queue, %d dead, %d cancelled",
                *_counts(report),
            )
            self._on_rescued()
        await self._reap(gone)
        if self._retention and time.monotonic() - self._last_prune >= PRUNE_EVERY:
            self._last_prune = time.monotonic()
            while await self._db_call(self._backend.prune, self._retention) > 0:
                if self._stop.is_set():
                    break
        if time.monotonic() - self._last_tally >= TALLY_EVERY:
            self._last_tally = time.monotonic()
            await self._tally()
        upkeep = self._upkeep_thread
        busy = upkeep is not None and upkeep.is_alive()
        if not busy and time.monotonic() - self._last_upkeep >= UPKEEP_EVERY:
            self._last_upkeep = time.monotonic()
            # A daemon thread of its own: a vacuum of a big table takes a while, and neither
            # the worker's database threads nor its shutdown wait for it.
            upkeep = threading.Thread(target=self._upkeep, name="conveyor-upkeep", daemon=True)
            self._upkeep_thread = upkeep
            upkeep.start()

    async def _tally(self) -> None:
        """The aggregates' upkeep: enqueued jobs counted, closed minutes folded, old ones
        pruned."""
        while await self._db_call(self._backend.count_enqueued) > 0:
            if self._stop.is_set():
                return
        await self._db_call(self._backend.fold_stats)
        if self._stats_retention:
            await self._db_call(self._backend.prune_stats, self._stats_retention)

    def _upkeep(self) -> None:
        try:
            if self._backend.upkeep():
                log.info("vacuumed the jobs table (autovacuum does not look after it)")
        except ConveyorError as exc:
            log.warning("storage upkeep failed, will retry: %s", exc)
        except Exception:
            log.exception("storage upkeep failed unexpectedly, will retry")

    async def _gone(self) -> list[str]:
        if self._machine is None:
            return []
        listed = await self._db_call(self._backend.list_workers)
        return gone_workers(listed, self._machine, self._worker_id)

    async def _reap(self, gone: Sequence[str]) -> None:
        # Before its first lead() (at start-up) this worker cannot tell since when it reaches
        # the database: the others' silence counts from now, as after a break.
        since = self.reachable_since
        if since is None:
            since = self._backend.now()
        reap = functools.partial(
            self._backend.reap_dead_workers, self._worker_id, since, known_dead=gone
        )
        reaped = await self._db_call(reap)
        if reaped.workers:
            log.warning(
                "declared worker(s) %s dead (%s); their jobs: %d back in the queue, %d dead, "
                "%d cancelled",
                ", ".join(reaped.workers),
                _why(reaped.workers, gone),
                *_counts(reaped),
            )
            self._on_rescued()

    async def _run(self, after: Sequence[asyncio.Event]) -> None:
        if after:
            begun = asyncio.ensure_future(_all_set(after))
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait([begun, stop], return_when=asyncio.FIRST_COMPLETED)
            begun.cancel()
            stop.cancel()
        while not self._stop.is_set():
            try:
                leading = await self.lead()
                gone = await self._gone()
                if leading:
                    await self.sweep(gone)
                elif gone:
                    await self._reap(gone)
            except ConveyorError as exc:
                log.warning("maintenance sweep failed, will retry: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)


async def _all_set(events: Sequence[asyncio.Event]) -> None:
    for event in events:
        await event.wait()


def _counts(report: RescueReport) -> tuple[int, int, int]:
    return len(report.requeued), len(report.dead), len(report.cancelled)


def _why(workers: Sequence[str], gone: Sequence[str]) -> str:
    by_pid = [w for w in workers if w in gone]
    if not by_pid:
        return "no heartbeat"
    if len(by_pid) == len(workers):
        return "process gone"
    return f"process gone: {', '.join(by_pid)}; the others: no heartbeat"
