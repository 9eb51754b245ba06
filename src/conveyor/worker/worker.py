"""The Worker: claims jobs, runs them, writes their outcomes, keeps their leases alive, and
shuts down without losing any of them.

It owns small services with one life cycle each: the fetch loop (here), the executor, the
completer, the heartbeater and maintenance.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.backends.base import ClaimedJob, FinishResult, LeaseReport, Outcome, OutcomeKind
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.job import JobState
from conveyor.worker.completer import Completer
from conveyor.worker.context import JobContext
from conveyor.worker.executor import Executor, Run
from conveyor.worker.heartbeater import Heartbeater
from conveyor.worker.maintenance import Maintenance
from conveyor.worker.processes import refuse_worker_in_task_process
from conveyor.worker.wakeup import WorkSignal

if TYPE_CHECKING:
    from conveyor.app import Conveyor

log = logging.getLogger("conveyor.worker")
T = TypeVar("T")


@dataclass
class WorkerCounters:
    claimed: int = 0
    succeeded: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    released: int = 0
    lost: int = 0


class Worker:
    def __init__(
        self,
        app: Conveyor,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        burst: bool = False,
        grace: float = 30.0,
        lease: float | None = None,
        heartbeat: float | None = None,
        batch_size: int | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if grace < 0:
            raise ConfigurationError(f"grace must be >= 0, got {grace}")
        if queues is not None and not queues:
            raise ConfigurationError("queues must name at least one queue (or be None for all)")
        refuse_worker_in_task_process()
        settings = app.settings.replace(
            **{
                k: v
                for k, v in {
                    "lease": lease,
                    "heartbeat": heartbeat,
                    "batch_size": batch_size,
                }.items()
                if v is not None
            }
        )
        self.app = app
        self.settings = settings
        self.queues = list(queues) if queues is not None else None
        self.concurrency = concurrency
        self.burst = burst
        self.grace = grace
        self.install_signal_handlers = install_signal_handlers
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.counters = WorkerCounters()
        self.runs: dict[str, Run] = {}
        self.in_flight = 0
        self._held: set[str] = set()
        self._held_lock = threading.Lock()
        self._stopping = False
        self._signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()
        self.stopped = threading.Event()

    def __repr__(self) -> str:
        return f"<Worker {self.id} queues={self.queues or 'all'} concurrency={self.concurrency}>"

    # --- life cycle -----------------------------------------------------------------------

    def run(self) -> None:
        """Run until stopped (SIGINT/SIGTERM, ``stop()``, or no ready job in burst mode)."""
        asyncio.run(self.run_async())

    def stop(self) -> None:
        """Graceful stop; safe to call from any thread or a signal handler."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stopping = True
            return
        loop.call_soon_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        if not self._stopping:
            log.info("worker %s stopping: no new claims, finishing running jobs", self.id)
        self._stopping = True
        self._slot_freed.set()
        self._signal.notify()
        self._stop_event.set()

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "received %s: graceful shutdown (send again to exit at once)",
                signal.Signals(signum).name,
            )
            self._begin_stop()
            return
        log.warning(
            "received %s again: exiting at once; running jobs return after their lease",
            signal.Signals(signum).name,
        )
        os._exit(128 + signum)

    async def run_async(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._slot_freed = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._db_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conveyor-db")
        backend = self.app.backend
        self._signal = WorkSignal(
            backend, poll_interval=self.settings.poll_interval, queues=self.queues
        )
        backend.add_listener(self._signal.notify)
        self.executor = Executor(self.app, threads=self.concurrency)
        self.completer = Completer(backend, self._db, self._on_written)
        self.heartbeater = Heartbeater(
            backend,
            self._held_tokens,
            self._on_lease_report_threadsafe,
            interval=self.settings.heartbeat,
            lease=self.settings.lease,
        )
        self.maintenance = Maintenance(
            backend,
            self._db,
            self._signal.notify,
            worker_id=self.id,
            interval=self.settings.sweep_interval,
            retention=self.settings.retention,
        )
        installed = self._install_signals(loop)
        try:
            self.completer.start()
            self.heartbeater.start()
            self.maintenance.start()
            log.info(
                "worker %s ready: queues=%s concurrency=%d",
                self.id,
                ",".join(self.queues) if self.queues else "all",
                self.concurrency,
            )
            self.started.set()
            if self._stopping:
                self._begin_stop()
            await self._fetch_loop()
            await self._shutdown()
        finally:
            backend.remove_listener(self._signal.notify)
            for signum in installed:
                loop.remove_signal_handler(signum)
            self.heartbeater.stop()
            self.executor.shutdown()
            self._db_pool.shutdown(wait=True)
            self.stopped.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        if not self.install_signal_handlers or threading.current_thread() is not (
            threading.main_thread()
        ):
            return []
        installed: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
            installed.append(signum)
        return installed

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking backend call off the event loop, on the worker's database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_pool, functools.partial(fn, *args))

    # --- fetching -------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        backend = self.app.backend
        backoff = 0.05
        while not self._stopping:
            free = self.concurrency - self.in_flight
            if free <= 0:
                await self._wait_for_slot()
                continue
            try:
                jobs = await self._db(
                    backend.claim,
                    self.id,
                    self.queues,
                    min(free, self.settings.batch_size),
                    self.settings.lease,
                )
            except ConveyorError as exc:
                log.warning("claim failed, retrying in %.2fs: %s", backoff, exc)
                await self._sleep_unless_stopping(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            if self._stopping:
                self._release_unstarted(jobs)
                break
            for job in jobs:
                self._start(job)
            if jobs:
                continue
            if self.burst:
                if self.in_flight == 0:
                    if self.completer.idle:
                        break
                    # Written outcomes may have made a retry ready at once: look again.
                    await self.completer.drain()
                else:
                    await self._wait_for_slot()
                continue
            try:
                next_due = await self._db(backend.next_due)
            except ConveyorError:
                next_due = None
            await self._signal.wait(next_due)

    async def _wait_for_slot(self) -> None:
        self._slot_freed.clear()
        if self.in_flight >= self.concurrency or self.burst:
            await self._slot_freed.wait()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    def _release_unstarted(self, jobs: Sequence[ClaimedJob]) -> None:
        for job in jobs:
            self._hold(job.lease_token)
            self.completer.submit(Outcome(job.id, job.lease_token, OutcomeKind.RELEASED))

    # --- running --------------------------------------------------------------------------

    def _hold(self, token: str) -> None:
        with self._held_lock:
            self._held.add(token)

    def _unhold(self, token: str) -> None:
        with self._held_lock:
            self._held.discard(token)

    def _held_tokens(self) -> list[str]:
        with self._held_lock:
            return list(self._held)

    def _start(self, job: ClaimedJob) -> None:
        run = Run(job, JobContext(job, self.app.backend, self.id))
        self.runs[job.lease_token] = run
        self._hold(job.lease_token)
        self.in_flight += 1
        self.counters.claimed += 1
        run.task = asyncio.get_running_loop().create_task(self._execute(run))

    async def _execute(self, run: Run) -> Outcome | None:
        try:
            outcome = await self.executor.execute(run)
        except asyncio.CancelledError:
            outcome = (
                None if run.context.lost else Outcome(run.job.id, run.token, OutcomeKind.RELEASED)
            )
        except Exception:  # an executor bug must not leak a slot or lose the job
            log.exception("internal error running job %s; it will be retried", run.job.id)
            outcome = None
        finally:
            self.runs.pop(run.token, None)
            busy = run.thread_busy
            if busy is not None and not busy.done():
                # The thread outlived its timeout or a cancel: its slot stays taken until it
                # really returns.
                loop = asyncio.get_running_loop()
                busy.add_done_callback(functools.partial(self._free_slot_threadsafe, loop))
            else:
                self._free_slot()
        if outcome is None:
            self._unhold(run.token)
            self.counters.lost += 1
        else:
            self.completer.submit(outcome)
        return outcome

    def _free_slot(self) -> None:
        self.in_flight -= 1
        self._slot_freed.set()

    def _free_slot_threadsafe(self, loop: asyncio.AbstractEventLoop, _: object) -> None:
        # A thread that outlived a shutdown returns after the loop closed: nothing to free then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._free_slot)

    def _on_written(self, outcomes: Sequence[Outcome], results: Sequence[FinishResult]) -> None:
        for outcome, result in zip(outcomes, results, strict=True):
            self._unhold(outcome.token)
            if not result.applied:
                self.counters.lost += 1
                log.warning(
                    "job %s: lease lost before its outcome was written; another run "
                    "owns it now, outcome dropped",
                    outcome.job_id,
                )
                continue
            state = result.state
            if state is JobState.SUCCEEDED:
                self.counters.succeeded += 1
            elif state is JobState.RETRYING:
                self.counters.retried += 1
            elif state is JobState.DEAD:
                self.counters.dead += 1
            elif state is JobState.CANCELLED:
                self.counters.cancelled += 1
            elif state is JobState.QUEUED:
                self.counters.released += 1

    def _on_lease_report_threadsafe(self, report: LeaseReport) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_lease_report, report)

    def _on_lease_report(self, report: LeaseReport) -> None:
        for token in report.lost:
            self._unhold(token)
            run = self.runs.get(token)
            if run is None:
                continue
            log.warning(
                "job %s: lease lost (another worker may run it); abandoning the run", run.job.id
            )
            run.context._mark_lost()
            if run.task is not None:
                run.task.cancel()
        for token in report.cancel_requested:
            run = self.runs.get(token)
            if run is None:
                continue
            run.context._mark_cancelled()
            # Threads cannot be interrupted: a sync task sees ctx.cancelled instead.
            if run.interruptible and run.task is not None:
                run.task.cancel()

    # --- shutdown -------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        if tasks:
            log.info("waiting up to %gs for %d running job(s)", self.grace, len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=self.grace)
            if pending:
                log.warning(
                    "%d job(s) still running after the grace period: putting them back",
                    len(pending),
                )
                for run in list(self.runs.values()):
                    # A run someone asked to cancel ends cancelled: put back in the queue, its
                    # next claim would clear the request and run it again.
                    run.releasing = not run.context.cancelled
                    run.context._mark_cancelled()
                    if run.task is not None:
                        run.task.cancel()
                await asyncio.wait(pending, timeout=5)
        await self.maintenance.stop()
        if not await self.completer.stop(timeout=max(self.settings.lock_timeout, 5.0)):
            log.error(
                "could not write %d outcome(s) before exiting; those jobs will run again "
                "after their lease expires",
                self.completer.pending,
            )


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (for scripts and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
