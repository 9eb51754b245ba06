"""The executor runs one claimed job and turns what happened into an Outcome.

``async def`` tasks run on the event loop; plain functions run in a thread pool. A thread that
outlives its timeout cannot be killed: its job records the timeout at once, and its slot stays
taken until the thread really returns, so the worker never runs more threads than it promised.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor import payload
from conveyor.backends.base import ClaimedJob, Outcome, OutcomeKind
from conveyor.errors import JobCancelled, JobTimeout, LeaseLost, UnknownTask
from conveyor.task import describe_error
from conveyor.worker.context import JobContext
from conveyor.worker.processes import ProcessRunner
from conveyor.worker.threads import DaemonThreadPool

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.task import Task


@dataclass
class Run:
    """One run of one job inside this worker."""

    job: ClaimedJob
    context: JobContext
    task: asyncio.Task[Outcome | None] | None = None
    is_async: bool = False
    #: Set when the worker is shutting down and puts the job back.
    releasing: bool = False
    thread_busy: concurrent.futures.Future[Any] | None = field(default=None, repr=False)
    #: Runs in a child process (isolation="process"), which the worker can stop at any time.
    in_process: bool = False

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
        self.processes = ProcessRunner(app, self.pool)

    def shutdown(self) -> None:
        self.processes.shutdown()
        self.pool.shutdown()

    async def execute(self, run: Run) -> Outcome | None:
        """Run the job; None means the run was lost and nothing must be written."""
        job = run.job
        try:
            task = self.app.get_task(job.task)
        except UnknownTask as exc:
            return self._failure(run, None, exc)
        args: list[Any] = [run.context, *job.args] if task.pass_context else list(job.args)
        try:
            result = await self._call(run, task, args, job.kwargs, job.timeout)
            return Outcome(
                job.id,
                job.lease_token,
                OutcomeKind.SUCCEEDED,
                result_json=payload.dumps(result, f"result of {task.name}"),
            )
        except asyncio.CancelledError:
            if run.context.lost:
                return None
            if run.releasing:
                return self._released(run)
            if run.context.cancelled:
                return self._cancelled(run)
            raise
        except JobCancelled:
            # Shutdown sets ctx.cancelled too, so tasks stop at a safe point: that job goes back
            # to the queue; only a cancel request ends it cancelled.
            return self._released(run) if run.releasing else self._cancelled(run)
        except LeaseLost:
            return None
        except Exception as exc:
            if run.context.lost:
                return None
            if run.releasing and run.context.cancelled:
                return self._released(run)
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
        call = functools.partial(contextvars.copy_context().run, task.fn, *args, **kwargs)
        thread_future = self.pool.submit(call)
        run.thread_busy = thread_future
        # Awaiting the wrapper can be cancelled or time out; the thread itself runs on, and
        # thread_busy tells the worker when its slot is really free.
        future = asyncio.wrap_future(thread_future)
        if timeout is None:
            return await future
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            if thread_future.done() and not thread_future.cancelled():
                return thread_future.result()
            raise self._timeout(task, timeout) from None

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

    def _cancelled(self, run: Run) -> Outcome:
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
    def _released(run: Run) -> Outcome:
        return Outcome(
            run.job.id,
            run.job.lease_token,
            OutcomeKind.RELEASED,
            checkpoint_json=run.context.saved_checkpoint_json,
        )


__all__ = ["Executor", "Run"]
