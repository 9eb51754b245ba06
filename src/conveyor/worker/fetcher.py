"""The fetcher of one pool: claims batches of jobs into a local buffer and starts them as slots
free up.

It claims when its buffer runs low rather than for every slot that frees up, wakes on a work
signal (a local enqueue, another process's commit, a job coming due) and polls as a fallback.
A pool whose concurrency is a range grows one slot at a time while claimed jobs wait for a slot,
and shrinks back once its slots have stood idle for ``scale_down_after`` seconds.

Poison isolation (see ``solo``): while the worker holds nothing, a fetcher first asks for a
suspect, which then runs alone: every fetcher of the worker waits until its run is settled.
While the worker drains for suspects (``conveyor.worker.drain``) a fetcher claims nothing
ordinary and hands back its prefetched jobs; once the worker holds nothing it claims suspects.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from conveyor.backends.base import Backend, ClaimedJob
from conveyor.errors import ConveyorError
from conveyor.settings import Settings
from conveyor.worker.completer import Completer
from conveyor.worker.pools import Pool
from conveyor.worker.solo import Solo
from conveyor.worker.wakeup import WorkSignal

log = logging.getLogger("conveyor.worker")
T = TypeVar("T")

#: Runs shorter than this on average (seconds) make an automatic prefetch worth its wait ...
SHORT_RUN = 0.02
#: ... of at most about this long (seconds) for the last job of the buffer ...
BUFFER_WAIT = 0.02
#: ... and never more than this many jobs.
MAX_AUTO_PREFETCH = 1000
RUN_TIME_WEIGHT = 0.1
#: Seconds between two reads of which queues are capped.
CAPS_READ_EVERY = 1.0
#: Before looking for a suspect: at most this long (seconds) for outcomes still being written.
OUTCOMES_WAIT = 1.0


class Fetcher:
    def __init__(
        self,
        pool: Pool,
        *,
        worker_id: str,
        backend: Backend,
        settings: Settings,
        db_call: Callable[..., Awaitable[Any]],
        start: Callable[[ClaimedJob, Fetcher], None],
        hold: Callable[[Iterable[str]], None],
        release: Callable[[list[ClaimedJob]], None],
        completer: Completer,
        burst: bool,
        scale_down_after: float,
        solo: Solo | None = None,
        holds_nothing: Callable[[], bool] | None = None,
        claims_on_wake: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.queues = list(pool.queues) if pool.queues is not None else None
        #: Slots this pool may fill now: its concurrency, or where it stands in its range.
        self.limit = pool.minimum
        self.scales = pool.minimum != pool.maximum
        #: Slots taken: runs, and threads that outlived their run (timeout, lost lease).
        self.in_flight = 0
        #: Claimed jobs waiting for a slot (their leases are held and extended meanwhile).
        self.buffer: collections.deque[ClaimedJob] = collections.deque()
        #: Moving average of how long runs take (seconds); None until one has finished.
        self.average_run_time: float | None = None
        self.stopping = False
        self._worker_id = worker_id
        self._backend = backend
        self._settings = settings
        self._db = db_call
        self._start = start
        self._hold = hold
        self._release = release
        self._completer = completer
        self._burst = burst
        self._scale_down_after = scale_down_after
        self._solo = Solo() if solo is None else solo
        #: Whether the whole worker holds no job (every pool's slots and buffers are empty).
        self._holds_nothing = holds_nothing or (lambda: self.in_flight == 0 and not self.buffer)
        #: Whether an idle wait lets the backend's wake thread claim for this pool (see
        #: ``conveyor.worker.wakeup``): only the one pool of a worker, for no other fetcher may
        #: claim beside a suspect's claim (see ``conveyor.worker.solo``).
        self._claims_on_wake = claims_on_wake
        self._clock = clock
        self._idle_since: float | None = None
        #: Whether a queue this pool serves has gates -- a cap on its running jobs, a pause,
        #: quiet hours, a rate limit -- or tasks have rate limits (read every second).
        self._capped = False
        self._capped_read_at: float | None = None
        self._room = asyncio.Event()
        self._stopped = asyncio.Event()
        self._signal: WorkSignal | None = None
        #: The last ordinary claim found nothing (or none was made yet): suspects first.
        self._nothing_ready = True
        #: Set once the first ordinary claim is over (whatever it found, or if it failed), a
        #: suspect was claimed, or the fetcher stopped: the worker's maintenance waits for it,
        #: so that its first sweep does not hold up the first jobs.
        self.claimed_once = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Fetcher {self.pool.describe()} limit={self.limit} in_flight={self.in_flight}>"

    # --- prefetch and scaling -------------------------------------------------------------

    def prefetch_now(self) -> int:
        """How many jobs to hold ahead of free slots now.

        A prefetched job waits for a slot while another worker might be idle, which costs
        nothing when jobs take milliseconds and a lot when they take minutes. So by default
        (prefetch=None) a pool prefetches only while its runs are short on average (never
        before it has seen one finish): at least its concurrency, and up to what its slots
        get through in BUFFER_WAIT. A pool that scales claims one
        job beyond its slots instead, and grows a slot for it while below its maximum.

        Nothing is prefetched from a capped queue: a prefetched job counts against the cap
        while it waits, so it would hold back workers that have a free slot.
        """
        if self._capped:
            return 0
        if self.scales:
            return 1 if self.limit < self.pool.maximum else 0
        if self.pool.prefetch is not None:
            return self.pool.prefetch
        average = self.average_run_time
        if average is None or average >= SHORT_RUN:
            return 0
        # Enough to keep every slot busy between claims, and no more than the slots get
        # through in BUFFER_WAIT: bigger claim batches cost less per job.
        through = self.limit * BUFFER_WAIT / max(average, 1e-6)
        return min(MAX_AUTO_PREFETCH, max(self.limit, int(through)))

    def observe_run_time(self, seconds: float) -> None:
        average = self.average_run_time
        self.average_run_time = (
            seconds if average is None else average + RUN_TIME_WEIGHT * (seconds - average)
        )

    def _scale_down_if_idle(self) -> None:
        idle_since = self._idle_since
        if (
            self.scales
            and idle_since is not None
            and self._clock() - idle_since >= self._scale_down_after
        ):
            smaller = max(self.pool.minimum, self.in_flight)
            if smaller < self.limit:
                log.info("pool %s: scaling down to %d", self.pool.describe(), smaller)
                self.limit = smaller
            self._idle_since = self._clock()

    # --- slots ----------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Start buffered jobs while there are free slots (growing a scaling pool)."""
        buffer = self.buffer
        if self._solo.draining and self._solo.token is None:
            # Prefetched jobs go back (see _loop); a run that ends may leave the worker empty.
            self._solo.wake()
            return
        while buffer and not self.stopping:
            if self.in_flight >= self.limit:
                if not self.scales or self.limit >= self.pool.maximum:
                    break
                self.limit += 1
            self.in_flight += 1
            self._start(buffer.popleft(), self)
        if len(buffer) <= self.prefetch_now() // 2:
            self._room.set()

    def slot_freed(self) -> None:
        self.in_flight -= 1
        self.dispatch()

    def drop_buffered(self, token: str) -> ClaimedJob | None:
        for job in self.buffer:
            if job.lease_token == token:
                self.buffer.remove(job)
                return job
        return None

    # --- the loop -------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for work now (jobs were rescued, a cap changed, the worker is stopping)."""
        if self._signal is not None:
            self._signal.notify()

    def make_room(self) -> None:
        """The worker began draining for suspects: stop waiting for room."""
        self._room.set()
        self.wake()

    def stop(self) -> None:
        self.stopping = True
        self._room.set()
        self._stopped.set()
        self._solo.wake()
        self.wake()

    async def run(self) -> None:
        signal = WorkSignal(
            self._backend, poll_interval=self._settings.poll_interval, queues=self.queues
        )
        self._signal = signal
        self._backend.add_listener(signal.notify)
        try:
            await self._loop(signal)
        finally:
            self.claimed_once.set()
            self._backend.remove_listener(signal.notify)
            early = signal.disarm()
            if early is not None:
                # The wake thread is claiming for this fetcher: what it takes goes back.
                early.add_done_callback(self._release_early)
                with contextlib.suppress(Exception):
                    await asyncio.shield(early)
            self._release(list(self.buffer))
            self.buffer.clear()

    def _release_early(self, early: asyncio.Future[list[ClaimedJob]]) -> None:
        """Jobs the wake thread claimed for a fetcher that stopped meanwhile go back."""
        if not early.cancelled() and early.exception() is None:
            self._release(early.result())

    def _took(self, jobs: list[ClaimedJob], wanted: int) -> None:
        self._nothing_ready = not jobs
        if len(jobs) == wanted:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = self._clock()
        self._hold(job.lease_token for job in jobs)
        self.buffer.extend(jobs)

    async def _loop(self, signal: WorkSignal) -> None:
        backoff = 0.05
        # Set while a claim came back full only because of the batch size: claim again at
        # once to fill the room left, instead of waiting for the buffer to run low.
        filling = False
        # A suspect ran since the last ordinary claim.
        after_suspect = False
        # No suspect waited just before the last wait, and a notification ended it: the claim
        # it asks for goes first (a pickup's latency), and suspects are looked for again
        # before the next wait. After a wait that a time ended, suspects come first again.
        looked = False
        while not self.stopping:
            self._scale_down_if_idle()
            await self._check_caps()
            if self._solo.blocks_claims:
                # A suspect is being claimed or runs: it must stay alone in this process.
                await self._solo.changed()
                continue
            if self._solo.draining:
                await self._make_room()
                continue
            prefetch = self.prefetch_now()
            room = self.limit + prefetch - self.in_flight - len(self.buffer)
            # Claim again once the buffer runs low, rather than for every slot that frees up.
            if room <= 0 or (len(self.buffer) > prefetch // 2 and not filling):
                filling = False
                await self._wait_for_room()
                continue
            # Whether this turn looked for a suspect (and found none) before its claim.
            checked = False
            if self._nothing_ready and not looked and self._may_claim_suspect():
                checked = True
                if await self._claim_suspect():
                    # Back to ordinary claims before the next one: a suspect waits for a
                    # worker with nothing else to do, or for the one draining for suspects.
                    self._nothing_ready = False
                    after_suspect = True
                    continue
                if self.stopping:
                    return
            looked = False
            wanted = min(room, self._settings.batch_size)
            self._solo.claim_started()
            try:
                jobs: list[ClaimedJob] = await self._db(
                    self._backend.claim,
                    self._worker_id,
                    self.queues,
                    wanted,
                    self._settings.lease,
                )
            except ConveyorError as exc:
                log.warning("claim failed, retrying in %.2fs: %s", backoff, exc)
                await self._sleep_unless_stopping(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            finally:
                self._solo.claim_ended()
                self.claimed_once.set()
            backoff = 0.05
            followed_suspect, after_suspect = after_suspect, False
            filling = len(jobs) == wanted < room
            self._took(jobs, wanted)
            if self.stopping:
                return
            self.dispatch()
            if jobs or followed_suspect:
                # Nothing ready after a suspect: the next suspect, if any, before waiting.
                continue
            if self._burst:
                if self.in_flight == 0 and not self.buffer:
                    if not self._completer.idle:
                        # Written outcomes may have made a retry ready at once: look again.
                        await self._completer.drain()
                    elif not await self._burst_waits(signal):
                        return
                else:
                    await self._wait_for_room()
                continue
            try:
                next_due = await self._db(self._backend.next_due)
            except ConveyorError:
                next_due = None
            opens = await self._gates_open_at()
            if opens is not None and not math.isinf(opens):
                next_due = opens if next_due is None else min(next_due, opens)
            # Jobs held by an open breaker are not due before its next probe may start.
            probe_at = self._backend.breaker_probe_at
            if probe_at is not None and (next_due is None or probe_at < next_due):
                next_due = probe_at
            # A worker going idle looks for a suspect now rather than after its next wake-up,
            # which then claims at once.
            if not checked and self._may_claim_suspect():
                if await self._claim_suspect():
                    self._nothing_ready = False
                    after_suspect = True
                    continue
                if self.stopping:
                    return
                checked = True
            looked = await self._wait(signal, next_due, wanted, checked)

    async def _wait(
        self, signal: WorkSignal, next_due: float | None, wanted: int, checked: bool
    ) -> bool:
        """Wait for work after a claim that found none; True if suspects need not be looked
        for before the next claim (``checked``: none waited just before, and a notification
        ended the wait).

        Armed (see ``conveyor.worker.wakeup``), the wait lets the backend's wake thread claim
        at once, unless a suspect waits (``claim_unless_suspects``: a worker that may go idle
        runs a waiting suspect before any new job). While such claims find some jobs but not a
        full batch, nothing else was ready: the fetcher starts them and waits again, armed,
        rather than claim again at once, which would hold up the start of the job just
        claimed on a busy machine; new work sends a notification of its own."""
        while True:
            armed = self._claims_on_wake and not self._solo.draining
            if armed:
                signal.arm(
                    functools.partial(
                        self._backend.claim_unless_suspects,
                        self._worker_id,
                        self.queues,
                        wanted,
                        self._settings.lease,
                    )
                )
            notified = await signal.wait(next_due)
            early = signal.disarm() if armed else None
            if early is None:
                return checked and notified
            try:
                jobs: list[ClaimedJob] = await asyncio.shield(early)
            except asyncio.CancelledError:
                early.add_done_callback(self._release_early)
                raise
            except ConveyorError as exc:
                log.warning("claim failed: %s", exc)
                return False
            self._took(jobs, wanted)
            if self.stopping:
                return False
            self.dispatch()
            checked = False
            if not jobs or len(jobs) == wanted:
                # A suspect waits, or another worker was faster; or more may be ready.
                return False
            self._scale_down_if_idle()
            await self._check_caps()
            room = self.limit + self.prefetch_now() - self.in_flight - len(self.buffer)
            if room <= 0 or self.stopping:
                return False
            wanted = min(room, self._settings.batch_size)

    async def _burst_waits(self, signal: WorkSignal) -> bool:
        """A burst worker whose claim found nothing, holding nothing: wait for the jobs that
        gates hold only until they open by themselves -- a rate limit's next token, a pause
        with an end, quiet hours, a breaker's cool-down or its probe's verdict, a cap that
        runs elsewhere hold -- and say False (exit) when the jobs left wait for a person (a
        pause until resumed, a breaker opened by hand) or for their run_at."""
        # Jobs of rate-limited tasks wait for their next token, not in a queue.
        gates = await self._gates_open_at()
        try:
            breakers = await self._db(self._backend.breakers_open_at, self.queues)
        except ConveyorError:
            breakers = None
        moments = [m for m in (gates, breakers) if m is not None and not math.isinf(m)]
        if moments:
            await signal.wait(min(moments))
            return True
        if gates is None and breakers is None and await self._held_back_by_caps():
            # Runs elsewhere hold a cap: their ends let the jobs through.
            await signal.wait(None)
            return True
        return False

    async def _gates_open_at(self) -> float | None:
        """When a gate shut by time (a rate limit's next start, quiet hours, a timed pause)
        next lets a job of this pool's queues through, so that the pool sleeps until then
        rather than polling. Asked only while one of its queues has gates."""
        if not self._capped:
            return None
        try:
            opens: float | None = await self._db(self._backend.gates_open_at, self.queues)
        except ConveyorError:
            return None
        return opens

    async def _make_room(self) -> None:
        """Draining for suspects: hand back the prefetched jobs, and once the worker holds
        nothing, claim the next suspect; else wait for a change (a run ending, a look)."""
        if self.buffer:
            self._release(list(self.buffer))
            self.buffer.clear()
        solo = self._solo
        if not self._may_claim_suspect():
            if not self.stopping and solo.draining:
                await solo.changed()
            return
        looks = solo.looks
        if await self._claim_suspect():
            return
        # None for this pool now: wait for the next look rather than ask again at once.
        while not self.stopping and solo.draining and solo.looks == looks:
            await solo.changed()

    def _may_claim_suspect(self) -> bool:
        solo = self._solo
        return solo.claims == 0 and not solo.blocks_claims and self._holds_nothing()

    async def _claim_suspect(self) -> bool:
        """Claim a suspect for this worker, which holds nothing; True if one was claimed."""
        solo = self._solo
        solo.suspect_claim_started()
        job: ClaimedJob | None = None
        try:
            if not self._completer.idle:
                # Runs whose outcome is not written yet still count as held by this worker.
                await self._completer.drain(OUTCOMES_WAIT)
            job = await self._db(
                self._backend.claim_suspect, self._worker_id, self.queues, self._settings.lease
            )
        except ConveyorError as exc:
            log.warning("could not look for suspect jobs: %s", exc)
        finally:
            solo.suspect_claim_ended(None if job is None else job.lease_token)
        if job is None:
            return False
        # It runs alone, maybe for long, before any ordinary claim: maintenance must not wait.
        self.claimed_once.set()
        log.info("job %s runs alone (a suspect: a worker died while it ran)", job.id)
        self._idle_since = None
        self._hold([job.lease_token])
        self.buffer.append(job)
        if not self.stopping:
            self.dispatch()
        return True

    async def _check_caps(self) -> None:
        read_at = self._capped_read_at
        now = self._clock()
        if read_at is not None and read_at <= now < read_at + CAPS_READ_EVERY:
            return
        self._capped_read_at = now
        try:
            # The claims' own cache: a read only when none of them refreshed it lately.
            capped = await self._db(self._backend.capped_queues)
        except ConveyorError:
            return
        queues = self.queues
        self._capped = bool(capped) if queues is None else any(q in capped for q in queues)
        if not self._capped:
            try:
                self._capped = await self._db(self._backend.rate_limited)
            except ConveyorError:
                return

    async def _held_back_by_caps(self) -> bool:
        """Whether ready jobs wait in this pool's queues after a claim that took none: runs
        elsewhere hold a cap, and a burst waits for them rather than leave the jobs behind.
        Only asked while a queue of the pool is capped; jobs of an uncapped queue found here
        were enqueued since the claim (or another claim held their rows), so claiming again
        is right for them too."""
        if not self._capped:
            return False
        try:
            ready = await self._db(self._backend.ready_queues)
        except ConveyorError as exc:
            log.warning("could not read which queues hold ready jobs, claiming again: %s", exc)
            return True
        queues = self.queues
        return bool(ready) if queues is None else not ready.isdisjoint(queues)

    async def _wait_for_room(self) -> None:
        self._room.clear()
        await self._room.wait()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)
