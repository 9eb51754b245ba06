"""The Worker: claims jobs, runs them, writes their outcomes, keeps their leases alive, and
shuts down without losing any of them.

It owns small services with one life cycle each: the fetch loop (here), the executor, the
completer, the heartbeater, the registry (its row in the database) and maintenance.

A stop is bounded: running jobs get ``grace`` seconds from the signal; then every write-back
(the release of what still runs, the outcomes, the maintenance hand-off, the deregistration)
shares one deadline, ``SHUTDOWN_WRITE_BACK`` seconds later. What a gone database cannot take
by then is left to the lease and to dead-worker detection, which rescue it anyway. Database
calls run on daemon threads, so one stuck on an unreachable server does not hold up the exit.
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
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor import bounds
from conveyor.backends import opens_elsewhere
from conveyor.backends.base import ClaimedJob, FinishResult, LeaseReport, Outcome, OutcomeKind
from conveyor.errors import ConfigurationError, ConveyorError
from conveyor.job import JobState
from conveyor.jsonlog import job_fields
from conveyor.worker.completer import Completer
from conveyor.worker.context import JobContext
from conveyor.worker.drain import Drain
from conveyor.worker.executor import Executor, Run
from conveyor.worker.fetcher import Fetcher
from conveyor.worker.heartbeater import Heartbeater, Launched, launch
from conveyor.worker.maintenance import Maintenance
from conveyor.worker.pools import Concurrency, Pool, build_pools
from conveyor.worker.registry import Registry
from conveyor.worker.solo import Solo
from conveyor.worker.threads import DaemonThreadPool

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.task import Task

log = logging.getLogger("conveyor.worker")
T = TypeVar("T")

#: Seconds after the grace period for every write-back of a stop together (see above).
SHUTDOWN_WRITE_BACK = 5.0


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
        queues: Sequence[str] | Mapping[str, Concurrency] | None = None,
        concurrency: Concurrency = 10,
        prefetch: int | None = None,
        pools: Sequence[Pool] | None = None,
        burst: bool = False,
        grace: float = 30.0,
        lease: float | None = None,
        heartbeat: float | None = None,
        batch_size: int | None = None,
        scale_down_after: float = 30.0,
        install_signal_handlers: bool = True,
    ) -> None:
        """``queues``: names served together with ``concurrency`` (an integer, or a (minimum,
        maximum) range to scale within), None for every queue, or a mapping of queue name to
        its own concurrency (one pool per queue). ``pools`` gives the pools explicitly."""
        self.pools = build_pools(queues, concurrency, prefetch, pools)
        bounds.seconds("grace", grace, bounds.MAX_TIMEOUT)
        if scale_down_after < 0:
            raise ConfigurationError(f"scale_down_after must be >= 0, got {scale_down_after}")
        if "multiprocessing" in sys.modules:
            # Only then can this be a task's child process (which imports it before the main
            # module); a worker that never needs it does not pay for importing it.
            from conveyor.worker.processes import refuse_worker_in_task_process

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
        served = [pool.queues for pool in self.pools]
        #: Every queue this worker serves, or None for all.
        self.queues = None if None in served else [q for names in served for q in names or ()]
        #: Most jobs this worker runs at once (the sum of its pools' maximums).
        self.concurrency = sum(pool.maximum for pool in self.pools)
        self.burst = burst
        self.grace = grace
        self.scale_down_after = scale_down_after
        self.install_signal_handlers = install_signal_handlers
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.counters = WorkerCounters()
        self.runs: dict[str, Run] = {}
        self.fetchers: list[Fetcher] = []
        #: Makes room for suspects while this worker is busy (see conveyor/worker/drain.py).
        self.drain: Drain | None = None
        self._finished_threads: list[tuple[Run, Outcome | None, float]] = []
        self._finished_lock = threading.Lock()
        self._stopping = False
        #: Loop time of the stop request (the grace period counts from there).
        self._stop_at: float | None = None
        self._signals = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()
        self.stopped = threading.Event()

    def __repr__(self) -> str:
        pools = "; ".join(pool.describe() for pool in self.pools)
        return f"<Worker {self.id} pools={pools}>"

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
        if self._stop_at is None:
            self._stop_at = asyncio.get_running_loop().time()
            self._stop_requested.set()
        self.heartbeater.stopping()
        if self.drain is not None:
            self.drain.stop()
        for fetcher in self.fetchers:
            fetcher.stop()

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
        self._runs_done = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._db_pool = DaemonThreadPool(2, name="conveyor-db")
        # Before the store opens: the heartbeat process imports meanwhile, on another core.
        launched = self._launch_heartbeat()
        try:
            backend = self.app.backend
            self.executor = Executor(self.app, threads=self.concurrency)
            self.completer = Completer(backend, self._db, self._on_written)
            self.solo = Solo()
            self.fetchers = [
                Fetcher(
                    pool,
                    worker_id=self.id,
                    backend=backend,
                    settings=self.settings,
                    db_call=self._db,
                    start=self._start,
                    hold=self._hold_many,
                    release=self._release,
                    completer=self.completer,
                    burst=self.burst,
                    scale_down_after=self.scale_down_after,
                    solo=self.solo,
                    holds_nothing=self._holds_nothing,
                    claims_on_wake=len(self.pools) == 1,
                )
                for pool in self.pools
            ]
            self.registry = Registry(
                backend,
                worker_id=self.id,
                queues=self.queues,
                concurrency=self.concurrency,
                interval=self.settings.heartbeat,
            )
            self.heartbeater = Heartbeater(
                backend,
                self.registry.registration,
                self._on_lease_report_threadsafe,
                self.stop,
                lease=self.settings.lease,
                launched=launched,
            )
            self.maintenance = Maintenance(
                backend,
                self._db,
                self._wake_fetchers,
                worker_id=self.id,
                machine=self.registry.registration.machine,
                interval=self.settings.sweep_interval,
                retention=self.settings.retention,
                stats_retention=self.settings.stats_retention,
                schedules=list(self.app.schedules.values()),
            )
            self.drain = Drain(
                backend,
                self._db,
                self.solo,
                worker_id=self.id,
                queues=self.queues,
                holds_nothing=self._holds_nothing,
                on_drain=self._make_room,
            )
        except BaseException:
            if launched is not None:
                launched.discard()
            raise
        installed = self._install_signals(loop)
        try:
            self.completer.start()
            # Meanwhile, this worker waits for the database for a while.
            self.executor.prestart()
            self.registry.start()
            self.heartbeater.start()
            await self._reap_gone_neighbours()
            self.maintenance.start(after=[fetcher.claimed_once for fetcher in self.fetchers])
            self.drain.start()
            log.info(
                "worker %s ready: %s",
                self.id,
                "; ".join(
                    f"queues {pool.describe()}"
                    + ("" if pool.prefetch is None else f", prefetch {pool.prefetch}")
                    for pool in self.pools
                ),
            )
            self.started.set()
            if self._stopping:
                self._begin_stop()
            fetching: asyncio.Future[Any] = asyncio.ensure_future(
                asyncio.gather(*(fetcher.run() for fetcher in self.fetchers))
            )
            stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop_requested.wait())
            await asyncio.wait({fetching, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            await self._shutdown(fetching)
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            self.drain.stop()
            # Left without deregistering only on a failure: maintenance releases whatever
            # this worker still held once it counts as dead.
            self.heartbeater.stop()
            self.executor.shutdown()
            self._db_pool.shutdown()
            self.stopped.set()

    def _launch_heartbeat(self) -> Launched | None:
        """The heartbeat process, started before this worker opens its store (see
        heartbeater.py); None where the store gets a heartbeat thread instead, or the start
        failed (the heartbeater tries again, and says why)."""
        url = self.app.settings.url
        if not opens_elsewhere(url):
            return None
        try:
            return launch(url)
        except OSError:
            return None

    async def _reap_gone_neighbours(self) -> None:
        """Before the first claim: a worker restarted after a crash gives back the jobs its
        predecessor on this machine left running, instead of leaving them to a later sweep."""
        try:
            await self.maintenance.reap_gone()
        except ConveyorError as exc:
            log.warning("could not look for dead workers on this machine, will retry: %s", exc)

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
        return await asyncio.wrap_future(self._db_pool.submit(functools.partial(fn, *args)))

    @property
    def in_flight(self) -> int:
        """Slots taken across every pool (threads that outlived their run included)."""
        return sum(fetcher.in_flight for fetcher in self.fetchers)

    def _holds_nothing(self) -> bool:
        """No run, no thread that outlived one, no prefetched job, in any pool."""
        return not self.runs and all(
            fetcher.in_flight == 0 and not fetcher.buffer for fetcher in self.fetchers
        )

    def _wake_fetchers(self) -> None:
        for fetcher in self.fetchers:
            fetcher.wake()

    def _make_room(self) -> None:
        for fetcher in self.fetchers:
            fetcher.make_room()

    def _release(self, jobs: list[ClaimedJob]) -> None:
        """Put back claimed jobs that have not started, for any worker to claim at once."""
        if jobs:
            log.info("putting back %d prefetched job(s)", len(jobs))
        self.completer.submit_many(
            [Outcome(job.id, job.lease_token, OutcomeKind.RELEASED) for job in jobs]
        )

    # --- running --------------------------------------------------------------------------

    def _hold_many(self, tokens: Iterable[str]) -> None:
        claimed = list(tokens)
        self.counters.claimed += len(claimed)
        self.heartbeater.hold(claimed)

    def _unhold(self, token: str) -> None:
        self.heartbeater.release([token])
        self.solo.settled(token)

    def _start(self, job: ClaimedJob, fetcher: Fetcher) -> None:
        """Run a job in a slot ``fetcher`` has just taken for it."""
        run = Run(job, JobContext(job, self.app.backend, self.id), fetcher=fetcher)
        task = self.executor.task_for(run)
        if isinstance(task, Outcome):
            fetcher.in_flight -= 1
            self.completer.submit(task)
            return
        if self.app.hooks.runs:
            run.hooks = self.executor.hook_info(run)
        self.runs[job.lease_token] = run
        self._runs_done.clear()
        loop = self._loop
        assert loop is not None
        if not self.executor.runs_in_thread(task):
            run.task = loop.create_task(self._execute(run, task))
            return
        run.in_thread = True
        if job.timeout is not None:
            run.deadline = loop.call_later(job.timeout, self._thread_deadline, run, task)
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
        fetchers: set[Fetcher] = set()
        for run, outcome, elapsed in finished:
            fetcher = run.fetcher
            fetcher.observe_run_time(elapsed)
            fetcher.in_flight -= 1
            fetchers.add(fetcher)
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
        for fetcher in fetchers:
            fetcher.dispatch()

    def _thread_deadline(self, run: Run, task: Task[..., Any]) -> None:
        """A thread run outlived its timeout: record the timeout now; the thread cannot be
        stopped, so its slot stays taken until it really returns."""
        if run.token not in self.runs or run.abandoned:
            return
        self._abandon(run, self.executor.timed_out(run, task))

    def _abandon(self, run: Run, outcome: Outcome | None) -> None:
        run.abandoned = True
        if run.hooks is not None:
            self.executor.ended(run, outcome)
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
        if run.hooks is not None:
            # Here, not in the executor: this asyncio task's context is the run's, and the
            # end below sees every way out of the run, a cancel included.
            self.executor.before(run)
        started = time.monotonic()
        try:
            outcome = await self.executor.execute(run, task)
            run.fetcher.observe_run_time(time.monotonic() - started)
        except asyncio.CancelledError:
            outcome = None if run.context.lost else self.executor.released(run)
        except Exception:  # an executor bug must not leak a slot or lose the job
            log.exception(
                "internal error running job %s; it will be retried",
                run.job.id,
                extra=job_fields(run.job),
            )
            outcome = None
        finally:
            self._forget(run)
            busy = run.thread_busy
            if busy is not None and not busy.done():
                # A child process outlived a cancel: its slot stays taken until it is gone.
                loop = asyncio.get_running_loop()
                busy.add_done_callback(
                    functools.partial(self._free_slot_threadsafe, loop, run.fetcher)
                )
            else:
                run.fetcher.slot_freed()
        if run.hooks is not None:
            self.executor.ended(run, outcome, time.monotonic() - started)
        if outcome is None:
            self._lost(run)
        else:
            self.completer.submit(outcome)
        return outcome

    @staticmethod
    def _free_slot_threadsafe(loop: asyncio.AbstractEventLoop, fetcher: Fetcher, _: object) -> None:
        # A thread that outlived a shutdown returns after the loop closed: nothing to free then.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fetcher.slot_freed)

    def _on_written(self, outcomes: Sequence[Outcome], results: Sequence[FinishResult]) -> None:
        self.heartbeater.release(outcome.token for outcome in outcomes)
        if self.executor.dead_watch:
            for outcome, result in zip(outcomes, results, strict=True):
                self.executor.written(outcome, result)
        retried = False
        for outcome, result in zip(outcomes, results, strict=True):
            self.solo.settled(outcome.token)
            if not result.applied:
                self.counters.lost += 1
                log.warning(
                    "job %s: lease lost before its outcome was written; another run "
                    "owns it now, outcome dropped",
                    outcome.job_id,
                    extra={"job_id": outcome.job_id},
                )
                continue
            state = result.state
            if state is JobState.SUCCEEDED:
                self.counters.succeeded += 1
            elif state is JobState.RETRYING:
                self.counters.retried += 1
                retried = True
            elif state is JobState.DEAD:
                self.counters.dead += 1
            elif state is JobState.CANCELLED:
                self.counters.cancelled += 1
            elif state is JobState.QUEUED:
                self.counters.released += 1
        if retried:
            # A retry is due soon, maybe before whatever idle fetchers wait for: they look.
            self._wake_fetchers()

    def _on_lease_report_threadsafe(self, report: LeaseReport) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_lease_report, report)

    def _on_lease_report(self, report: LeaseReport) -> None:
        for token in report.lost:
            self._unhold(token)
            if self._drop_buffered(token) is not None:
                self.counters.lost += 1
                continue
            run = self.runs.get(token)
            if run is None:
                continue
            log.warning(
                "job %s: lease lost (another worker may run it); abandoning the run",
                run.job.id,
                extra=job_fields(run.job),
            )
            run.context._mark_lost()
            if run.in_thread:
                self._abandon(run, None)
            elif run.task is not None:
                run.task.cancel()
        for token in report.cancel_requested:
            dropped = self._drop_buffered(token)
            if dropped is not None:
                job, fetcher = dropped
                run = Run(job, JobContext(job, self.app.backend, self.id), fetcher)
                self.completer.submit(self.executor.cancelled(run))
                continue
            run = self.runs.get(token)
            if run is None:
                continue
            run.context._mark_cancelled()
            # Threads cannot be interrupted: a sync task sees ctx.cancelled instead.
            if run.interruptible and run.task is not None:
                run.task.cancel()

    def _drop_buffered(self, token: str) -> tuple[ClaimedJob, Fetcher] | None:
        for fetcher in self.fetchers:
            job = fetcher.drop_buffered(token)
            if job is not None:
                return job, fetcher
        return None

    # --- shutdown -------------------------------------------------------------------------

    async def _shutdown(self, fetching: asyncio.Future[Any]) -> None:
        loop = asyncio.get_running_loop()
        grace_end = (loop.time() if self._stop_at is None else self._stop_at) + self.grace
        # A fetcher returns once its claim under way does (it then puts back what it holds):
        # at once, unless the database is away.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(fetching), max(0.0, grace_end - loop.time()))
        if self.runs:
            log.info(
                "waiting up to %gs for %d running job(s)",
                max(0.0, grace_end - loop.time()),
                len(self.runs),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runs_done.wait(), max(0.0, grace_end - loop.time()))
        deadline = loop.time() + SHUTDOWN_WRITE_BACK

        def left() -> float:
            return max(0.0, deadline - loop.time())

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
                await asyncio.wait(tasks, timeout=left())
        if not await self._before(deadline, self.maintenance.stop()):
            log.warning("could not hand on maintenance in time: it passes on once its lease ends")
        if await self.completer.stop(timeout=left()):
            # No beat may register the worker again once it has left.
            self.heartbeater.stop()
            if not await self._before(deadline, self._db(self.registry.stop)):
                log.warning(
                    "could not deregister worker %s in time: it will be declared dead in %gs",
                    self.id,
                    self.registry.registration.dead_after,
                )
        else:
            log.error(
                "could not write %d outcome(s) before exiting; those jobs will run again "
                "once this worker counts as dead or their lease expires",
                self.completer.pending,
            )
        if not fetching.done():
            log.warning("a claim was still waiting for the database: its jobs return by lease")

    @staticmethod
    async def _before(deadline: float, step: Awaitable[Any]) -> bool:
        """Run ``step`` until ``deadline`` (loop time); False if it had to be left running."""
        try:
            await asyncio.wait_for(
                asyncio.shield(step), max(0.0, deadline - asyncio.get_running_loop().time())
            )
        except TimeoutError:
            return False
        return True


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (for scripts and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
