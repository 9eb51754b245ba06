"""Running jobs in the calling process, for tests: eager mode and ``drain``.

The runs go through the worker's own executor (``conveyor.worker.executor``): the same call
of the task, the same encoding of its result, the same retry decision (``Task.failure_outcome``)
and the same fenced writes (``claim``, ``finish_many``) as a worker's, one job at a time, so a
job ends in the state a real worker would have left it in. What a worker adds around them —
heartbeats, leases renewed, a thread task's timeout — is not there: a sync task runs to its end
on the calling thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import socket
import threading
import weakref
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from conveyor.backends.base import ClaimedJob, FinishResult, Outcome

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.worker.executor import Executor
    from conveyor.worker.fetcher import Fetcher

T = TypeVar("T")


class InlineRunner:
    """Claims ready jobs one at a time and runs each to its end in this process."""

    def __init__(self, app: Conveyor) -> None:
        self.app = app
        self.worker_id = f"inline-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._executor: Executor | None = None
        self._lock = threading.Lock()

    @property
    def executor(self) -> Executor:
        with self._lock:
            if self._executor is None:
                from conveyor.worker.executor import Executor

                self._executor = Executor(self.app, threads=4)
            return self._executor

    def run_ready(
        self, queues: Sequence[str] | None = None, max_runs: int | None = None
    ) -> list[FinishResult]:
        """Run every job ready now (and those the runs make ready, such as retries due at
        once) until none is, or ``max_runs`` runs; what each run ended in."""
        backend = self.app.backend
        finished: list[FinishResult] = []
        while max_runs is None or len(finished) < max_runs:
            claimed = backend.claim(self.worker_id, queues, 1, self.app.settings.lease)
            if not claimed:
                break
            outcome = self.run(claimed[0])
            if outcome is not None:
                finished.extend(backend.finish_many([outcome]))
        return finished

    def run(self, job: ClaimedJob) -> Outcome | None:
        """One claimed job, as the worker runs it; None if the run was lost."""
        from conveyor.worker.context import JobContext
        from conveyor.worker.executor import Run

        executor = self.executor
        # The executor never looks at the fetcher, which only a worker has.
        run = Run(job, JobContext(job, self.app.backend, self.worker_id), cast("Fetcher", None))
        task = executor.task_for(run)
        if isinstance(task, Outcome):
            return task
        if executor.runs_in_thread(task):
            return executor.run_in_thread(run, task)
        return _run_coroutine(executor.execute(run, task))

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None


def _run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end from sync code, even when this thread runs an event loop
    (an async test enqueueing in eager mode): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="conveyor-inline") as pool:
        return pool.submit(asyncio.run, coroutine).result()


_runners: weakref.WeakKeyDictionary[Conveyor, InlineRunner] = weakref.WeakKeyDictionary()
_runners_lock = threading.Lock()


def runner_for(app: Conveyor) -> InlineRunner:
    with _runners_lock:
        runner = _runners.get(app)
        if runner is None:
            runner = _runners[app] = InlineRunner(app)
        return runner
