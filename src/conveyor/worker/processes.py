"""Process isolation: each job of an ``@app.task(isolation="process")`` task runs in a child
process of its own, so a crash (SIGSEGV, ``os._exit``), a memory limit or a hard timeout ends
that child and nothing else.

One fresh process per job rather than a pool of reusable ones, because:

- a child is stopped only by killing it (timeout, cancel, shutdown, lost lease) and a crash
  kills it anyway. With a pool each of those paths would also have to replace the child; with a
  process per job they are one path: the process ends, so does the run.
- ``memory_limit_mb`` is ``RLIMIT_AS`` of the process and ``cpu_limit_s`` its ``RLIMIT_CPU``;
  a fresh child gets exactly its task's limits, and nothing one job leaks or changes (globals,
  heap, threads, CPU time) reaches the next.
- the price is one fork per job. Children come from multiprocessing's fork server -- never a
  plain fork of this threaded worker -- which imports conveyor and the tasks' modules once
  (preload), so a child costs a fork, not a new interpreter and its imports: about 12 ms of
  throughput per job on a 2-CPU machine, against 1 ms on a thread. Noise beside the CPU-bound
  work these tasks are for; short jobs belong on threads or the event loop.

Like every multiprocessing child that is not forked, each one imports the worker's main module
(as ``__mp_main__``): a script that starts a worker must do so under
``if __name__ == "__main__":`` (a worker refuses to start inside a task's process).

The child imports the function by ``fn.__module__`` and ``fn.__qualname__`` (registration
rejects functions without such a name), runs it, and sends its result or exception back through
a pipe. ``ctx.progress()``/``ctx.checkpoint()`` in the child are calls over the same pipe to the
worker, which makes the fenced write. One thread of the executor's pool serves each child.

Stopping a child: SIGUSR1 first (``ctx.cancelled`` turns true), then after a short grace
SIGTERM (its handler raises SystemExit, so ``finally`` blocks run), then SIGKILL. A timeout
skips the grace. The child ignores SIGINT and any SIGTERM the worker did not send (Ctrl-C or a
service manager signals the whole process group; the worker decides when its jobs stop), and
exits by itself if the worker dies, so a killed worker leaves no orphans running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from conveyor.errors import ChildProcessDied, ConfigurationError, CPULimitExceeded, JobTimeout
from conveyor.jsonlog import job_fields
from conveyor.worker.child import (
    ChildSpec,
    child_main,
    cpu_limit_message,
    decode_error,
    encode_error,
)

if TYPE_CHECKING:
    from conveyor.app import Conveyor
    from conveyor.task import Task
    from conveyor.worker.executor import Run
    from conveyor.worker.threads import DaemonThreadPool

log = logging.getLogger("conveyor.worker")

#: After a child is asked to stop (cancel, shutdown, lost lease): time to stop by itself.
STOP_GRACE = 0.5
#: After SIGTERM: time to unwind before SIGKILL.
KILL_GRACE = 1.0
#: After sending its result: time to exit before it is killed.
EXIT_GRACE = 2.0

# Process.start() polls every other child (multiprocessing.process._cleanup), and the exit
# status of a fork-server child is a pipe that only one reader may drain: start, poll and close
# happen under one lock, or two threads could read one status and one would see garbage.
_MP_LOCK = threading.Lock()
_preloaded = False


class ProcessRunner:
    """Runs process-isolated jobs for one worker; ``shutdown`` kills whatever still runs."""

    def __init__(self, app: Conveyor, pool: DaemonThreadPool) -> None:
        self._app = app
        self._pool = pool
        self._children: set[_Child] = set()
        self._lock = threading.Lock()

    async def call(self, run: Run, task: Task[..., Any], timeout: float | None) -> Any:
        _preload(self._app)
        child = _Child(run, task, timeout)
        with self._lock:
            self._children.add(child)
        future = self._pool.submit(child.supervise)
        future.add_done_callback(lambda _: self._forget(child))
        # The slot stays taken until the serving thread returns, i.e. the child is gone.
        run.thread_busy = future
        waiter = asyncio.wrap_future(future)
        try:
            kind, value = await asyncio.shield(waiter)
        except asyncio.CancelledError:
            # Cancel, shutdown past its grace or a lost lease: stop the child and wait until it
            # is gone, so the job's next state never describes a process that still runs.
            child.stop(STOP_GRACE)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + STOP_GRACE + KILL_GRACE + 1.0
            while not waiter.done() and loop.time() < deadline:
                # A later cancel (a lost lease, shutdown) must not cut the wait short.
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([waiter], timeout=deadline - loop.time())
            raise
        if kind == "result":
            return value
        if kind == "timeout":
            raise JobTimeout(
                f"task {task.name} ran longer than its timeout of {timeout:g}s; "
                "its process was killed"
            )
        raise value

    def _forget(self, child: _Child) -> None:
        with self._lock:
            self._children.discard(child)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Kill every child still running (the worker is exiting) and wait until they are."""
        with self._lock:
            children = list(self._children)
        for child in children:
            child.kill()
        deadline = time.monotonic() + timeout
        for child in children:
            child.done.wait(max(0.0, deadline - time.monotonic()))


def _preload(app: Conveyor) -> None:
    """Have the fork server import the tasks' modules once, before its first fork (later calls
    change nothing: the server is already running)."""
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    modules = {task.fn.__module__ for task in app.tasks.values() if task.isolation == "process"}
    modules.discard("__main__")  # the fork server treats it apart; children import it anyway
    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__, *sorted(modules)])


class _Child:
    """One child process running one job, served by one thread (``supervise``)."""

    def __init__(self, run: Run, task: Task[..., Any], timeout: float | None) -> None:
        self.run = run
        self.task = task
        self.timeout = timeout
        self.done = threading.Event()
        self._stop_grace: float | None = None
        self._process: BaseProcess | None = None
        self._started = 0.0
        self._exited = False
        # A socket pair, not os.pipe: writing to a closed socket object fails, while a closed
        # fd number may already belong to another file.
        self._wake_r, self._wake_w = socket.socketpair()

    def stop(self, grace: float) -> None:
        """Ask the child to stop (any thread): SIGUSR1, after ``grace`` SIGTERM, then SIGKILL."""
        if self._stop_grace is None:
            self._stop_grace = grace
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def kill(self) -> None:
        self.stop(0.0)
        self._signal(signal.SIGKILL)

    def supervise(self) -> tuple[str, Any]:
        """Start the child and serve it until it ends; ("result", value), ("error", exc) or
        ("timeout", None)."""
        ctx = multiprocessing.get_context("forkserver")
        conn, child_conn = ctx.Pipe()
        try:
            with _MP_LOCK:
                if self._stop_grace is not None:
                    return "error", ChildProcessDied("stopped before it started")
                process = ctx.Process(
                    target=child_main,
                    args=(child_conn, self._spec()),
                    name=f"conveyor-job-{self.run.job.id}",
                )
                process.start()
                self._process = process
                self._started = time.monotonic()
            child_conn.close()  # else the child's death would not close the pipe
            return self._serve(conn)
        finally:
            child_conn.close()
            conn.close()
            self._reap()
            self._wake_r.close()
            self._wake_w.close()
            self.done.set()

    def _spec(self) -> ChildSpec:
        job, fn = self.run.job, self.task.fn
        context = None
        if self.task.pass_context:
            context = {
                "job_id": job.id,
                "task": job.task,
                "queue": job.queue,
                "attempt": job.attempt,
                "max_attempts": job.max_attempts,
                "worker_id": self.run.context.worker_id,
                "last_checkpoint": job.checkpoint,
            }
        return ChildSpec(
            self.task.name,
            fn.__module__,
            fn.__qualname__,
            list(job.args),
            dict(job.kwargs),
            context,
            self.task.memory_limit_mb,
            # The fork server's environment is the one of its start; a job sees the worker's.
            dict(os.environ),
            cpu_limit_s=self.task.cpu_limit_s,
            rebuild=self.task.types is not None and self.task.types.rebuilds,
        )

    def _serve(self, conn: Connection) -> tuple[str, Any]:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        term_at: float | None = None
        kill_at: float | None = None
        timed_out = False
        while True:
            now = time.monotonic()
            if term_at is None and self._stop_grace is not None:
                self._signal(signal.SIGUSR1)
                term_at = now + self._stop_grace
            if term_at is None and deadline is not None and now >= deadline:
                timed_out = True
                self._signal(signal.SIGUSR1)  # so that the child's SIGTERM handler unwinds
                term_at = now
            if term_at is not None and kill_at is None and now >= term_at:
                self._signal(signal.SIGTERM)
                kill_at = now + KILL_GRACE
            if kill_at is not None and now >= kill_at:
                self._signal(signal.SIGKILL)
            if kill_at is not None:
                # Past kill_at, SIGKILL was sent: look again shortly for the pipe to close.
                due: float | None = max(kill_at, now + 0.1)
            else:
                due = term_at if term_at is not None else deadline
            ready = wait([conn, self._wake_r], None if due is None else due - now)
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(64)
            if conn not in ready:
                continue
            try:
                message = conn.recv()
            except (EOFError, OSError):
                self._exited = True
                if timed_out:
                    return "timeout", None
                return "error", self._died()
            if message[0] == "call":
                conn.send(self._serve_call(message[1], message[2]))
                continue
            if message[0] == "result":
                return "result", message[1]
            return "error", decode_error(*message[1:])

    def _serve_call(self, method: str, value: Any) -> tuple[str, Any]:
        try:
            reply = getattr(self.run.context, method)(value)
        except Exception as exc:
            return "raise", encode_error(exc)
        return "ok", reply

    def _died(self) -> ChildProcessDied | CPULimitExceeded:
        code = self._exitcode(timeout=1.0)
        if self._hit_cpu_limit(code):
            assert self.task.cpu_limit_s is not None and code is not None
            return CPULimitExceeded(
                f"{cpu_limit_message(self.task.name, self.task.cpu_limit_s)}; its process was "
                f"killed ({signal.Signals(-code).name})"
            )
        if code is None:
            detail = "exit code unknown"
        elif code < 0:
            detail = f"exit code {code} ({signal.Signals(-code).name})"
        else:
            detail = f"exit code {code}"
        hint = ""
        if self.task.memory_limit_mb is not None and code is not None and code < 0:
            hint = f"; it may have hit its memory limit of {self.task.memory_limit_mb} MB"
        return ChildProcessDied(
            f"{detail}: the process of task {self.task.name} died without a result{hint}", code
        )

    def _hit_cpu_limit(self, code: int | None) -> bool:
        """Killed by the kernel at its CPU limit: SIGXCPU (the signal's own action), or the
        SIGKILL of the hard limit, unless the worker sent that SIGKILL to stop the run. And a
        process cannot use more CPU time than it has existed (it is the fork server's child,
        not ours: its rusage is out of reach)."""
        limit = self.task.cpu_limit_s
        if limit is None or code not in (-signal.SIGXCPU, -signal.SIGKILL):
            return False
        if self._stop_grace is not None:
            return False
        return code == -signal.SIGXCPU or time.monotonic() - self._started >= limit

    def _exitcode(self, timeout: float) -> int | None:
        process = self._process
        if process is None:
            return None
        wait([process.sentinel], timeout)
        with _MP_LOCK:
            return process.exitcode

    def _signal(self, signum: int) -> None:
        process = self._process
        # Only while its end of the pipe is open: the pid cannot have been reused then.
        if process is None or process.pid is None or self._exited:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signum)

    def _reap(self) -> None:
        process = self._process
        if process is None:
            return
        if self._exitcode(EXIT_GRACE) is None:
            log.warning(
                "job %s: its process did not exit, killing it",
                self.run.job.id,
                extra=job_fields(self.run.job),
            )
            self._signal(signal.SIGKILL)
            if self._exitcode(5.0) is None:
                log.error(
                    "job %s: its process %s survived SIGKILL",
                    self.run.job.id,
                    process.pid,
                    extra=job_fields(self.run.job),
                )
                return
        with _MP_LOCK, contextlib.suppress(ValueError):
            process.close()


def refuse_worker_in_task_process() -> None:
    """Raise if this is a task's child process importing the main module.

    multiprocessing re-imports the worker's main module in each child; a script that starts a
    worker without ``if __name__ == "__main__":`` would start one in every task's process.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise ConfigurationError(
            "a worker cannot start inside a task's process: start it under "
            '`if __name__ == "__main__":` in the main script'
        )
