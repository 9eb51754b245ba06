"""The executor runs one claimed job and turns what happened into an Outcome.

``async def`` tasks run on the event loop, and process-isolated ones in a child process, each
as an asyncio task of the worker. Plain functions run on a pool thread, with no asyncio task or
future of their own: the thread itself turns the call into an Outcome (``run_in_thread``) and
hands it to the worker, which collects finished runs in batches. At ten thousand short jobs a
second the per-job futures and loop round trips cost more than the jobs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor import payload
from conveyor.backends.base import ClaimedJob, FinishResult, Outcome, OutcomeKind
from conveyor.errors import ArgumentsMismatch, JobCancelled, JobTimeout, LeaseLost, UnknownTask
from conveyor.hooks import RunInfo
from conveyor.job import JobState
from conveyor.task import NonRetryable, describe_error
from conveyor.worker.context import JobContext
from conveyor.worker.threads import DaemonThreadPool

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.task import Task
    from conveyor.typecheck import ArgumentTypes
    from conveyor.worker.fetcher import Fetcher
    from conveyor.worker.processes import ProcessRunner


@dataclass(slots=True)
class Run:
    """One run of one job inside this worker."""

    job: ClaimedJob
    context: JobContext
    #: The pool's fetcher whose slot the run takes.
    fetcher: Fetcher
    task: asyncio.Task[Outcome | None] | None = None
    is_async: bool = False
    #: Set when the worker is shutting down and puts the job back.
    releasing: bool = False
    thread_busy: concurrent.futures.Future[Any] | None = field(default=None, repr=False)
    #: Runs in a child process (isolation="process"), which the worker can stop at any time.
    in_process: bool = False
    #: Runs on a pool thread without an asyncio task (see ``Executor.run_in_thread``).
    in_thread: bool = False
    #: The worker has settled this run (timeout, lost lease, shutdown) while its thread still
    #: runs: whatever the thread returns later is dropped.
    abandoned: bool = False
    deadline: asyncio.TimerHandle | None = field(default=None, repr=False)
    #: What the app's hooks see of this run; None when the app has no run hooks.
    hooks: RunInfo | None = field(default=None, repr=False)

    @property
    def token(self) -> str:
        return self.job.lease_token

    @property
    def interruptible(self) -> bool:
        """Whether cancelling its asyncio task stops the run (a thread cannot be stopped)."""
        return self.is_async or self.in_process


class Executor:
    def __init__(self, app: Conveyor, threads: int) -> None:
        self.app = app
        self.pool = DaemonThreadPool(threads)
        #: Started by the first run of a process-isolated task: a worker without one never
        #: imports the multiprocessing machinery (a start-up cost, see bench/w5_startup.py).
        self._processes: ProcessRunner | None = None
        self._context = contextvars.copy_context()
        self.hooks = app.hooks
        #: Runs whose outcome may write the job dead, by token, while ``dead`` hooks listen:
        #: the worker calls them once the database says so (see ``written``).
        self.dead_watch: dict[str, RunInfo] = {}

    @property
    def processes(self) -> ProcessRunner:
        if self._processes is None:
            from conveyor.worker.processes import ProcessRunner

            self._processes = ProcessRunner(self.app, self.pool)
        return self._processes

    def prestart(self) -> None:
        """Start the threads now, while the worker waits for its first claims, if any task of
        the app runs on one (see threads.py)."""
        if any(self.runs_in_thread(task) for task in self.app.tasks.values()):
            self.pool.prestart()

    def shutdown(self) -> None:
        if self._processes is not None:
            self._processes.shutdown()
        self.pool.shutdown()

    def task_for(self, run: Run) -> Task[..., Any] | Outcome:
        """The task to run, or (for a task this worker does not know) the outcome at once."""
        try:
            return self.app.get_task(run.job.task)
        except UnknownTask as exc:
            return self._failure(run, None, exc)

    @staticmethod
    def runs_in_thread(task: Task[..., Any]) -> bool:
        return not task.is_async and task.isolation != "process"

    def run_in_thread(self, run: Run, task: Task[..., Any]) -> Outcome | None:
        """Call a plain function on this (pool) thread; None means the run was lost."""
        if run.hooks is not None:
            return self._context.copy().run(self._run_in_thread_with_hooks, run, task)
        try:
            args, kwargs = thread_arguments(run, task)
            # A copy of the worker's context per job: context variables a task sets do not
            # leak into the next job on this thread.
            result = self._context.copy().run(task.fn, *args, **kwargs)
            return self._succeeded(run, task, result)
        except BaseException as exc:  # a task's SystemExit is its failure too
            return self._settle(run, task, exc)

    def _run_in_thread_with_hooks(self, run: Run, task: Task[..., Any]) -> Outcome | None:
        """``run_in_thread`` between the hooks, all in one copy of the worker's context: what
        ``before_run`` sets there (a current span) the task and ``after_run`` see."""
        self.before(run)
        assert run.hooks is not None
        started = time.monotonic()
        outcome: Outcome | None
        try:
            args, kwargs = thread_arguments(run, task)
            result = task.fn(*args, **kwargs)
            outcome = self._succeeded(run, task, result)
            if run.hooks.outcome is None:  # not yet settled by the worker (a timeout)
                run.hooks.result = result
        except BaseException as exc:
            outcome = self._settle(run, task, exc)
        self.ended(run, outcome, time.monotonic() - started)
        return outcome

    async def execute(self, run: Run, task: Task[..., Any]) -> Outcome | None:
        """Run an async or process-isolated job; None means the run was lost."""
        try:
            args, kwargs = run.job.args, run.job.kwargs
            # A process-isolated task rebuilds its arguments in its own process.
            if task.types is not None and task.types.rebuilds and task.isolation != "process":
                args, kwargs = rebuilt_arguments(task.types, args, kwargs)
            args = [run.context, *args] if task.pass_context else list(args)
            result = await self._call(run, task, args, kwargs, run.job.timeout)
            outcome = self._succeeded(run, task, result)
            if run.hooks is not None:
                run.hooks.result = result
            return outcome
        except asyncio.CancelledError:
            if run.context.lost:
                return None
            if run.releasing:
                return self.released(run)
            if run.context.cancelled:
                return self.cancelled(run)
            raise
        except Exception as exc:
            return self._settle(run, task, exc)

    # --- hooks (only for runs with ``hooks``: see conveyor.hooks) ---------------------------

    def hook_info(self, run: Run) -> RunInfo:
        job = run.job
        return RunInfo(
            job.id,
            job.task,
            job.queue,
            job.attempt,
            job.max_attempts,
            run.context.worker_id,
            job.args,
            job.kwargs,
        )

    def before(self, run: Run) -> None:
        assert run.hooks is not None
        if self.hooks["before_run"]:
            self.hooks.fire("before_run", run.hooks)

    def ended(self, run: Run, outcome: Outcome | None, duration: float | None = None) -> None:
        """Call the hooks of a run's end, once, whoever gets there first (the thread that ran
        it, or the worker that settled it earlier on a timeout, a lost lease or shutdown)."""
        info = run.hooks
        if info is None:
            return
        kind = "lost" if outcome is None else _OUTCOMES[outcome.kind]
        if not self.hooks.end(info, kind):
            return
        info.duration = duration
        if outcome is not None and outcome.kind in (OutcomeKind.RETRY, OutcomeKind.DEAD):
            if outcome.kind is OutcomeKind.RETRY:
                info.retry_in = outcome.retry_in
            else:
                info.dead_reason = outcome.dead_reason
            if self.hooks["dead"] and (
                outcome.kind is OutcomeKind.DEAD or outcome.retry_budget is not None
            ):
                self.dead_watch[outcome.token] = info
            if info.exception is not None and self.hooks["failure"]:
                self.hooks.fire("failure", info)
        if self.hooks["after_run"]:
            self.hooks.fire("after_run", info)

    def written(self, outcome: Outcome, result: FinishResult) -> None:
        """An outcome of a watched run was written: call ``dead`` if the job is dead now."""
        info = self.dead_watch.pop(outcome.token, None)
        if info is None or not result.applied or result.state is not JobState.DEAD:
            return
        info.outcome = "dead"
        info.retry_in = None
        # A retry that the retry budget refused is written dead by the database.
        info.dead_reason = outcome.dead_reason or "retry budget exhausted"
        self.hooks.fire("dead", info)

    # --- outcomes ---------------------------------------------------------------------------

    @staticmethod
    def _succeeded(run: Run, task: Task[..., Any], result: Any) -> Outcome:
        return Outcome(
            run.job.id,
            run.job.lease_token,
            OutcomeKind.SUCCEEDED,
            # Most tasks return nothing: no encoder for that.
            result_json="null" if result is None else payload.encode_result(result, task.name),
            breaker=task.success_hit,
        )

    def _settle(self, run: Run, task: Task[..., Any], exc: BaseException) -> Outcome | None:
        if run.hooks is not None and run.hooks.outcome is None:
            run.hooks.exception = exc
        if isinstance(exc, JobCancelled):
            # Shutdown sets ctx.cancelled too, so tasks stop at a safe point: that job goes back
            # to the queue; only a cancel request ends it cancelled.
            return self.released(run) if run.releasing else self.cancelled(run)
        if isinstance(exc, LeaseLost) or run.context.lost:
            return None
        if run.releasing and run.context.cancelled:
            return self.released(run)
        return self._failure(run, task, exc)

    def timed_out(self, run: Run, task: Task[..., Any]) -> Outcome:
        """The outcome of a thread run still running at its deadline."""
        exc = self._timeout(task, run.job.timeout)
        if run.hooks is not None:
            run.hooks.exception = exc
        return self._failure(run, task, exc)

    async def _call(
        self,
        run: Run,
        task: Task[..., Any],
        args: list[Any],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        if task.isolation == "process":
            run.in_process = True
            return await self.processes.call(run, task, timeout)
        if task.is_async:
            run.is_async = True
            if timeout is None:
                # No deadline to arm: an asyncio.timeout block per job is a measurable cost
                # at ten thousand short jobs a second.
                return await task.fn(*args, **kwargs)
            # The deadline cancels the coroutine, and asyncio.timeout turns that cancellation
            # into TimeoutError only on leaving the block: catch it outside.
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    return await task.fn(*args, **kwargs)
            except TimeoutError:
                if deadline.expired():
                    raise self._timeout(task, timeout) from None
                raise
        raise AssertionError(f"task {task.name} runs on a thread, not through execute()")

    @staticmethod
    def _timeout(task: Task[..., Any], timeout: float | None) -> JobTimeout:
        return JobTimeout(f"task {task.name} ran longer than its timeout of {timeout:g}s")

    def _failure(self, run: Run, task: Task[..., Any] | None, exc: BaseException) -> Outcome:
        job = run.job
        now = self.app.backend.now()
        if task is None:
            error = describe_error(exc, job.attempt, now)
            # A worker without the task: retry, since another (newer) worker may have it.
            if job.attempt >= job.max_attempts:
                return Outcome(
                    job.id,
                    job.lease_token,
                    OutcomeKind.DEAD,
                    error=error,
                    dead_reason=f"attempts exhausted: {exc}",
                )
            return Outcome(
                job.id,
                job.lease_token,
                OutcomeKind.RETRY,
                error=error,
                retry_in=min(2.0**job.attempt, 300.0),
            )
        return task.failure_outcome(
            job.id,
            job.lease_token,
            job.attempt,
            job.max_attempts,
            exc,
            now,
            checkpoint_json=run.context.saved_checkpoint_json,
        )

    def cancelled(self, run: Run) -> Outcome:
        job = run.job
        error = describe_error(
            JobCancelled(f"job {job.id} was cancelled"), job.attempt, self.app.backend.now()
        )
        return Outcome(
            job.id,
            job.lease_token,
            OutcomeKind.CANCELLED,
            error=error,
            checkpoint_json=run.context.saved_checkpoint_json,
        )

    @staticmethod
    def released(run: Run) -> Outcome:
        return Outcome(
            run.job.id,
            run.job.lease_token,
            OutcomeKind.RELEASED,
            checkpoint_json=run.context.saved_checkpoint_json,
        )


_OUTCOMES = {
    OutcomeKind.SUCCEEDED: "succeeded",
    OutcomeKind.RETRY: "retrying",
    OutcomeKind.DEAD: "dead",
    OutcomeKind.CANCELLED: "cancelled",
    OutcomeKind.RELEASED: "released",
}


def thread_arguments(run: Run, task: Task[..., Any]) -> tuple[list[Any], dict[str, Any]]:
    """What a plain function is called with: the job's arguments, rebuilt as declared, after
    its context when it asks for one."""
    args, kwargs = run.job.args, run.job.kwargs
    if task.types is not None and task.types.rebuilds:
        args, kwargs = rebuilt_arguments(task.types, args, kwargs)
    return ([run.context, *args] if task.pass_context else list(args)), kwargs


def rebuilt_arguments(
    types: ArgumentTypes, args: list[Any], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """The stored arguments as the function declared them (dataclasses, models ...). Ones that
    do not fit (written without the check: ``enqueue_raw``, older code) never will: the job
    goes to the dead-letter queue at once."""
    try:
        return types.decode(args, kwargs)
    except ArgumentsMismatch as exc:
        raise NonRetryable(str(exc)) from None


__all__ = ["Executor", "Run", "rebuilt_arguments"]
