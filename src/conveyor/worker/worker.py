"""The Worker: claims jobs, runs them, writes their outcomes, keeps their leases alive, and
shuts down without losing any of them.

It owns small services with one life cycle each: the fetch loop (here), the executor, the
completer, the heartbeater and maintenance.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
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
    from conveyor.task import Task

log = logging.getLogger("conveyor.worker")
T = TypeVar("T")

#: Runs shorter than this on average (seconds) make an automatic prefetch worth its wait.
SHORT_RUN = 0.02
RUN_TIME_WEIGHT = 0.1


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
        prefetch: int | None = None,
        burst: bool = False,
        grace: float = 30.0,
        lease: float | None = None,
        heartbeat: float | None = None,
        batch_size: int | None = None,
        install_signal_handlers: bool = True,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if prefetch is not None and (
            isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0
        ):
            raise ConfigurationError(f"prefetch must be an integer >= 0, got {prefetch!r}")
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
        #: Most jobs claimed ahead of a free slot, so a slot that frees up starts its next job
        #: without waiting for a round trip to the database.
        self.prefetch = concurrency if prefetch is None else prefetch
        self._auto_prefetch = prefetch is None
        #: Moving average of how long runs take (seconds); None until one has finished.
        self.average_run_time: float | None = None
        self.burst = burst
        self.grace = grace
        self.install_signal_handlers = install_signal_handlers
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.counters = WorkerCounters()
        self.runs: dict[str, Run] = {}
        #: Slots taken: runs, and threads that outlived their run (timeout, lost lease).
        self.in_flight = 0
        #: Claimed jobs waiting for a slot (their leases are held and extended meanwhile).
        self.buffer: collections.deque[ClaimedJob] = collections.deque()
        self._finished_threads: list[tuple[Run, Outcome | None, float]] = []
        self._finished_lock = threading.Lock()
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
        self._room.set()
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
        self._room = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._runs_done = asyncio.Event()
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
                "worker %s ready: queues=%s concurrency=%d prefetch=%s",
                self.id,
                ",".join(self.queues) if self.queues else "all",
                self.concurrency,
                f"auto (up to {self.prefetch})" if self._auto_prefetch else self.prefetch,
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
        # Set while a claim came back full only because of the batch size: claim again at
        # once to fill the room left, instead of waiting for the buffer to run low.
        filling = False
        while not self._stopping:
            prefetch = self._prefetch_now()
            room = self.concurrency + prefetch - self.in_flight - len(self.buffer)
            # Claim again once the buffer runs low, rather than for every slot that frees up.
            if room <= 0 or (len(self.buffer) > prefetch // 2 and not filling):
                filling = False
                await self._wait_for_room()
                continue
            wanted = min(room, self.settings.batch_size)
            try:
                jobs = await self._db(
                    backend.claim, self.id, self.queues, wanted, self.settings.lease
                )
            except ConveyorError as exc:
                log.warning("claim failed, retrying in %.2fs: %s", backoff, exc)
                await self._sleep_unless_stopping(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            filling = len(jobs) == wanted < room
            self._hold_many(job.lease_token for job in jobs)
            self.counters.claimed += len(jobs)
            self.buffer.extend(jobs)
            if self._stopping:
                break
            self._dispatch()
            if jobs:
                continue
            if self.burst:
                if self.in_flight == 0 and not self.buffer:
                    if self.completer.idle:
                        break
                    # Written outcomes may have made a retry ready at once: look again.
                    await self.completer.drain()
                else:
                    await self._wait_for_room()
                continue
            try:
                next_due = await self._db(backend.next_due)
            except ConveyorError:
                next_due = None
            await self._signal.wait(next_due)
        self._release_buffer()

    def _prefetch_now(self) -> int:
        """How many jobs to hold ahead of free slots now.

        A prefetched job waits for a slot while another worker might be idle, which costs
        nothing when jobs take milliseconds and a lot when they take minutes. So by default
        (prefetch=None) a worker prefetches only while its runs are short on average, and
        never before it has seen one finish.
        """
        if not self._auto_prefetch:
            return self.prefetch
        average = self.average_run_time
        return self.prefetch if average is not None and average < SHORT_RUN else 0

    def _observe_run_time(self, seconds: float) -> None:
        average = self.average_run_time
        self.average_run_time = (
            seconds if average is None else average + RUN_TIME_WEIGHT * (seconds - average)
        )

    async def _wait_for_room(self) -> None:
        self._room.clear()
        await self._room.wait()

    async def _sleep_unless_stopping(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    def _release_buffer(self) -> None:
        """Put back every claimed job that has not started, for any worker to claim at once."""
        if self.buffer:
            log.info("putting back %d prefetched job(s)", len(self.buffer))
        self.completer.submit_many(
            [Outcome(job.id, job.lease_token, OutcomeKind.RELEASED) for job in self.buffer]
        )
        self.buffer.clear()

    # --- running --------------------------------------------------------------------------

    def _hold_many(self, tokens: Iterable[str]) -> None:
        with self._held_lock:
            self._held.update(tokens)

    def _unhold(self, token: str) -> None:
        with self._held_lock:
            self._held.discard(token)

    def _held_tokens(self) -> list[str]:
        with self._held_lock:
            return list(self._held)

    def _dispatch(self) -> None:
        """Start buffered jobs while there are free slots."""
        buffer = self.buffer
        while buffer and self.in_flight < self.concurrency and not self._stopping:
            self._start(buffer.popleft())
        if len(buffer) <= self._prefetch_now() // 2:
            self._room.set()

    def _start(self, job: ClaimedJob) -> None:
        run = Run(job, JobContext(job, self.app.backend, self.id))
        task = self.executor.task_for(run)
        if isinstance(task, Outcome):
            self.completer.submit(task)
            return
        self.runs[job.lease_token] = run
        self._runs_done.clear()
        self.in_flight += 1
        if not self.executor.runs_in_thread(task):
            run.task = asyncio.get_running_loop().create_task(self._execute(run, task))
            return
        run.in_thread = True
        if job.timeout is not None:
            run.deadline = asyncio.get_running_loop().call_later(
                job.timeout, self._thread_deadline, run, task
            )
        self.executor.pool.post(functools.partial(self._run_on_thread, run, task))

    def _run_on_thread(self, run: Run, task: Task[..., Any]) -> None:
        started = time.monotonic()
        outcome = self.executor.run_in_thread(run, task)
        elapsed = time.monotonic() - started
        with self._finished_lock:
            self._finished_threads.append((run, outcome, elapsed))
            first = len(self._finished_threads) == 1
        if first:
            # One wake-up of the loop for however many runs finish before it gets to them.
            loop = self._loop
            if loop is not None:
                # A thread that outlived a shutdown returns after the loop closed.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._collect_finished_threads)

    def _collect_finished_threads(self) -> None:
        with self._finished_lock:
            finished, self._finished_threads = self._finished_threads, []
        outcomes: list[Outcome] = []
        for run, outcome, elapsed in finished:
            self._observe_run_time(elapsed)
            self.in_flight -= 1
            if run.deadline is not None:
                run.deadline.cancel()
            if run.abandoned:
                continue  # already settled by the loop: only its slot was still taken
            self._forget(run)
            if outcome is None:
                self._lost(run)
            else:
                outcomes.append(outcome)
        self.completer.submit_many(outcomes)
        self._dispatch()

    def _thread_deadline(self, run: Run, task: Task[..., Any]) -> None:
        """A thread run outlived its timeout: record the timeout now; the thread cannot be
        stopped, so its slot stays taken until it really returns."""
        if run.token not in self.runs or run.abandoned:
            return
        self._abandon(run, self.executor.timed_out(run, task))

    def _abandon(self, run: Run, outcome: Outcome | None) -> None:
        run.abandoned = True
        self._forget(run)
        if outcome is None:
            self._lost(run)
        else:
            self.completer.submit(outcome)

    def _forget(self, run: Run) -> None:
        self.runs.pop(run.token, None)
        if not self.runs:
            self._runs_done.set()

    def _lost(self, run: Run) -> None:
        self._unhold(run.token)
        self.counters.lost += 1

    async def _execute(self, run: Run, task: Task[..., Any]) -> Outcome | None:
        started = time.monotonic()
        try:
            outcome = await self.executor.execute(run, task)
            self._observe_run_time(time.monotonic() - started)
        except asyncio.CancelledError:
            outcome = None if run.context.lost else self.executor.released(run)
        except Exception:  # an executor bug must not leak a slot or lose the job
            log.exception("internal error running job %s; it will be retried", run.job.id)
            outcome = None
        finally:
            self._forget(run)
            busy = run.thread_busy
            if busy is not None and not busy.done():
                # A child process outlived a cancel: its slot stays taken until it is gone.
                loop = asyncio.get_running_loop()
                busy.add_done_callback(functools.partial(self._free_slot_threadsafe, loop))
            else:
                self._free_slot()
        if outcome is None:
            self._lost(run)
        else:
            self.completer.submit(outcome)
        return outcome

    def _free_slot(self) -> None:
        self.in_flight -= 1
        self._dispatch()

    def _free_slot_threadsafe(self, loop: asyncio.AbstractEventLoop, _: object) -> None:
        # A thread that outlived a shutdown returns after the loop closed: nothing to free then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._free_slot)

    def _on_written(self, outcomes: Sequence[Outcome], results: Sequence[FinishResult]) -> None:
        with self._held_lock:
            self._held.difference_update(outcome.token for outcome in outcomes)
        for outcome, result in zip(outcomes, results, strict=True):
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
            if self._drop_buffered(token):
                self.counters.lost += 1
                continue
            run = self.runs.get(token)
            if run is None:
                continue
            log.warning(
                "job %s: lease lost (another worker may run it); abandoning the run", run.job.id
            )
            run.context._mark_lost()
            if run.in_thread:
                self._abandon(run, None)
            elif run.task is not None:
                run.task.cancel()
        for token in report.cancel_requested:
            job = self._drop_buffered(token)
            if job is not None:
                run = Run(job, JobContext(job, self.app.backend, self.id))
                self.completer.submit(self.executor.cancelled(run))
                continue
            run = self.runs.get(token)
            if run is None:
                continue
            run.context._mark_cancelled()
            # Threads cannot be interrupted: a sync task sees ctx.cancelled instead.
            if run.interruptible and run.task is not None:
                run.task.cancel()

    def _drop_buffered(self, token: str) -> ClaimedJob | None:
        for job in self.buffer:
            if job.lease_token == token:
                self.buffer.remove(job)
                return job
        return None

    # --- shutdown -------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        if self.runs:
            log.info("waiting up to %gs for %d running job(s)", self.grace, len(self.runs))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runs_done.wait(), self.grace)
        if self.runs:
            log.warning(
                "%d job(s) still running after the grace period: putting them back",
                len(self.runs),
            )
            tasks = []
            for run in list(self.runs.values()):
                # A run someone asked to cancel ends cancelled: put back in the queue, its
                # next claim would clear the request and run it again.
                cancel_requested = run.context.cancelled
                run.releasing = not cancel_requested
                run.context._mark_cancelled()
                if run.in_thread:
                    # A thread cannot be stopped: settle its job now, the thread dies with us.
                    settle = self.executor.cancelled if cancel_requested else self.executor.released
                    self._abandon(run, settle(run))
                elif run.task is not None:
                    run.task.cancel()
                    tasks.append(run.task)
            if tasks:
                await asyncio.wait(tasks, timeout=5)
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
