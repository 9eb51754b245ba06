"""A small Conveyor application for the worker tests.

Worker subprocesses import it (``python -m tests.worker.runner``) and so do in-process tests.
The Conveyor URL comes from ``CONVEYOR_URL`` (or the ``url`` argument); every task records what
it does in the *test's own* SQLite file named by ``SAMPLE_EFFECTS_DB`` -- never in Conveyor's
tables -- so the tests can check side effects independently of the queue's bookkeeping.

Every task takes the job context, so each effect row names the job, the attempt and the pid of
the worker process that ran it.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from conveyor import Conveyor, Fixed, JobContext, NonRetryable
from conveyor.errors import CPULimitExceeded

EFFECTS_ENV = "SAMPLE_EFFECTS_DB"

EFFECTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL,
    job_id     INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    worker_pid INTEGER NOT NULL,
    at         REAL    NOT NULL,
    data       TEXT
)
"""


# --- the effects table (the test's own side effects) ------------------------------------------


def create_effects_db(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(EFFECTS_SCHEMA)
    finally:
        db.close()


_local = threading.local()


def _effects_connection() -> sqlite3.Connection:
    path = os.environ[EFFECTS_ENV]
    cached: tuple[str, sqlite3.Connection] | None = getattr(_local, "db", None)
    if cached is None or cached[0] != path:
        db = sqlite3.connect(path, timeout=60, isolation_level=None)
        db.execute("PRAGMA synchronous = NORMAL")
        _local.db = cached = (path, db)
    return cached[1]


def record(kind: str, ctx: JobContext, data: Any = None) -> None:
    """Append one effect row; committed before this returns."""
    _effects_connection().execute(
        "INSERT INTO effects (kind, job_id, attempt, worker_pid, at, data) VALUES (?,?,?,?,?,?)",
        (
            kind,
            ctx.job_id,
            ctx.attempt,
            os.getpid(),
            time.time(),
            None if data is None else json.dumps(data),
        ),
    )


# --- tasks ------------------------------------------------------------------------------------


def hold(ctx: JobContext, release: str) -> int:
    """Record "start", block until the ``release`` file exists, record "done"."""
    record("start", ctx)
    while not os.path.exists(release):
        time.sleep(0.02)
    record("done", ctx)
    return os.getpid()


async def hold_async(ctx: JobContext, release: str) -> int:
    """``hold`` as a coroutine, on the worker's event loop."""
    record("start", ctx)
    while not os.path.exists(release):
        await asyncio.sleep(0.02)
    record("done", ctx)
    return os.getpid()


async def hold_blocking_loop(ctx: JobContext, release: str) -> int:
    """``hold`` as a badly written coroutine that blocks the event loop while it waits.

    Nothing else happens on the worker's loop until it returns -- in particular, a heartbeat
    report that the lease was lost is handled only after its outcome has been submitted.
    """
    record("start", ctx)
    while not os.path.exists(release):
        time.sleep(0.02)
    record("done", ctx)
    return os.getpid()


def sleep_sync(ctx: JobContext, seconds: float) -> int:
    """Sleep in a worker thread (uninterruptible: ignores cancellation and shutdown)."""
    record("start", ctx)
    time.sleep(seconds)
    record("done", ctx)
    return os.getpid()


def hold_gil(ctx: JobContext, seconds: int) -> int:
    """Stuck in a C call that keeps the GIL: libc's sleep() called through ``ctypes.PyDLL``,
    which does not release it. No other thread of the worker process runs meanwhile."""
    record("start", ctx)
    ctypes.PyDLL(None).sleep(seconds)
    record("done", ctx)
    return os.getpid()


def fork_sleeper(ctx: JobContext, seconds: float) -> int:
    """Forks a child that sleeps (holding every file the worker had open, pipes included) and
    returns its pid."""
    pid = os.fork()
    if pid == 0:
        time.sleep(seconds)
        os._exit(0)
    record("forked", ctx, pid)
    return pid


async def block_loop(ctx: JobContext, seconds: float) -> int:
    """A badly written coroutine: blocks the worker's event loop with ``time.sleep``."""
    record("start", ctx)
    time.sleep(seconds)
    record("done", ctx)
    return os.getpid()


def add(ctx: JobContext, a: int, b: int) -> int:
    record("done", ctx, a + b)
    return a + b


async def add_async(ctx: JobContext, a: int, b: int) -> int:
    await asyncio.sleep(0)
    record("done", ctx, a + b)
    return a + b


def flaky(ctx: JobContext, failures: int) -> str:
    """Fail on the first ``failures`` attempts, then succeed."""
    record("start", ctx)
    if ctx.attempt <= failures:
        raise RuntimeError(f"flaky failure on attempt {ctx.attempt}")
    record("done", ctx)
    return "ok"


def downstream(ctx: JobContext, down: str) -> str:
    """Call a downstream service that is down while the file ``down`` exists (behind the
    breaker "sample.downstream")."""
    record("start", ctx)
    if os.path.exists(down):
        raise ConnectionError("downstream is down")
    record("done", ctx)
    return "ok"


def always_fail(ctx: JobContext) -> None:
    record("start", ctx)
    raise ValueError(f"boom on attempt {ctx.attempt}")


def poison(ctx: JobContext) -> None:
    record("start", ctx)
    raise NonRetryable("this input can never work")


async def slow_first_attempt(ctx: JobContext, seconds: float) -> str:
    """Outlives its timeout on attempt 1 (and notes if it was cancelled); quick afterwards."""
    record("start", ctx)
    if ctx.attempt == 1:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            record("cancelled", ctx)
            raise
    record("done", ctx)
    return "ok"


def spin_until_cancelled(ctx: JobContext) -> None:
    """A thread task that cooperates with cancellation through its context."""
    record("start", ctx)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ctx.cancelled:
            record("saw_cancel", ctx)
        ctx.raise_if_cancelled()
        time.sleep(0.02)
    record("done", ctx)


def stubborn(ctx: JobContext, seconds: float) -> None:
    """A thread task that notices a cancel request but carries on regardless."""
    record("start", ctx)
    noticed = False
    for _ in range(int(seconds / 0.02)):
        if ctx.cancelled and not noticed:
            noticed = True
            record("saw_cancel", ctx)
        time.sleep(0.02)
    record("done", ctx)


async def wait_forever_async(ctx: JobContext) -> None:
    record("start", ctx)
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        record("cancelled", ctx)
        raise


async def cooperative_async(ctx: JobContext) -> None:
    """Stops only at safe points, where it asks its context whether to stop."""
    record("start", ctx)
    while True:
        ctx.raise_if_cancelled()
        try:
            await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            record("interrupted", ctx)  # finish the step; the context says what happened


def steps(ctx: JobContext, total: int, pause_after: int, release: str) -> int:
    """Do ``total`` steps, checkpointing after each; resume from the last checkpoint.

    Before step ``pause_after`` it waits for the ``release`` file, so a test can kill the worker
    with some progress saved.
    """
    first = int(ctx.last_checkpoint or 0)
    record("start", ctx, {"resume_from": first})
    done = 0
    for step in range(first, total):
        if step == pause_after:
            while not os.path.exists(release):
                time.sleep(0.02)
        record("step", ctx, step)
        ctx.checkpoint(step + 1)
        done += 1
    record("done", ctx, done)
    return done


def quick(ctx: JobContext, n: int) -> int:
    record("done", ctx, n)
    return n


async def quick_async(ctx: JobContext, n: int) -> int:
    record("done", ctx, n)
    return n


TASKS: list[tuple[Any, dict[str, Any]]] = [
    (hold, {"max_attempts": 5}),
    (hold_async, {"max_attempts": 5}),
    (hold_blocking_loop, {"max_attempts": 5}),
    (sleep_sync, {"max_attempts": 5}),
    (block_loop, {"max_attempts": 5}),
    (hold_gil, {"max_attempts": 5}),
    (fork_sleeper, {"max_attempts": 1}),
    (add, {}),
    (add_async, {}),
    (flaky, {"max_attempts": 5, "retry": Fixed(0)}),
    (always_fail, {"max_attempts": 3, "retry": Fixed(0)}),
    (downstream, {"max_attempts": 100, "retry": Fixed(0), "breaker": "sample.downstream"}),
    (poison, {"max_attempts": 5, "retry": Fixed(0)}),
    (slow_first_attempt, {"max_attempts": 3, "retry": Fixed(0)}),
    (spin_until_cancelled, {"max_attempts": 5}),
    (stubborn, {"max_attempts": 5}),
    (wait_forever_async, {"max_attempts": 5}),
    (cooperative_async, {"max_attempts": 5}),
    (steps, {"max_attempts": 5}),
    (quick, {}),
    (quick_async, {}),
]


def build_app(url: str | None = None, **overrides: Any) -> Conveyor:
    """A Conveyor with every sample task registered as ``sample.<function name>``."""
    app = Conveyor(url, **overrides)
    app.breaker("sample.downstream", failures=3, window=60, cooldown=1, max_cooldown=2)
    for fn, options in TASKS:
        app.task(name=f"sample.{fn.__name__}", pass_context=True, **options)(fn)
    return app


# --- process-isolated tasks (isolation="process": one child process per job) -----------------


def crash_segfault(ctx: JobContext) -> None:
    """Dies of SIGSEGV in its child process."""
    record("start", ctx)
    ctypes.string_at(0)


def crash_exit(ctx: JobContext, code: int) -> None:
    """Leaves its child process with ``os._exit``: no exception, no result."""
    record("start", ctx)
    os._exit(code)


def memory_hog(ctx: JobContext, megabytes: int) -> int:
    """Allocates ``megabytes`` at once (over its memory limit of 200 MB)."""
    record("start", ctx)
    block = bytearray(megabytes * 1024 * 1024)
    record("done", ctx)
    return len(block)


def cpu_hog(ctx: JobContext, deaf: bool) -> None:
    """Busy-loops until its CPU limit of 1 s stops it; ``deaf`` swallows the error, as code
    that never returns to Python would, so that only the kernel's SIGKILL stops it."""
    record("start", ctx)
    while True:
        try:
            while True:
                pass
        except CPULimitExceeded:
            if not deaf:
                raise


def spin(ctx: JobContext) -> None:
    """CPU-bound and deaf to cancellation: only killing its process stops it."""
    record("start", ctx)
    while True:
        pass


def process_add(ctx: JobContext, a: int, b: int) -> dict[str, int]:
    record("done", ctx, a + b)
    return {"sum": a + b, "pid": os.getpid()}


async def process_add_async(ctx: JobContext, a: int, b: int) -> dict[str, int]:
    await asyncio.sleep(0)
    record("done", ctx, a + b)
    return {"sum": a + b, "pid": os.getpid()}


def process_resume(ctx: JobContext) -> Any:
    """Saves progress and a checkpoint from its child process, fails on attempt 1, and returns
    what attempt 2 finds in ``ctx.last_checkpoint``."""
    record("start", ctx, {"cancelled": ctx.cancelled, "last_checkpoint": ctx.last_checkpoint})
    if ctx.attempt == 1:
        ctx.progress(0.5)
        ctx.checkpoint({"step": 1, "pid": os.getpid()})
        raise RuntimeError("failed after a checkpoint")
    return {"attempt": ctx.attempt, "resumed_from": ctx.last_checkpoint}


def process_cooperative(ctx: JobContext) -> None:
    """Stops at a safe point once the worker asks its process to stop (``ctx.cancelled``)."""
    record("start", ctx)
    while not ctx.cancelled:
        time.sleep(0.01)
    record("saw_cancel", ctx)
    ctx.raise_if_cancelled()


class CustomError(Exception):
    """An exception with extra constructor arguments (pickles by its args)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code


def process_raise(ctx: JobContext, kind: str) -> None:
    record("start", ctx)
    if kind == "poison":
        raise NonRetryable("bad input, in a child process")
    if kind == "custom":
        raise CustomError(7, "custom failure")
    raise ValueError(f"plain failure on attempt {ctx.attempt}")


PROCESS = {"isolation": "process", "retry": Fixed(0)}
TASKS += [
    (crash_segfault, {**PROCESS, "max_attempts": 2}),
    (crash_exit, {**PROCESS, "max_attempts": 2}),
    (memory_hog, {**PROCESS, "max_attempts": 1, "memory_limit_mb": 200}),
    (spin, {**PROCESS, "max_attempts": 2}),
    (cpu_hog, {**PROCESS, "max_attempts": 1, "cpu_limit_s": 1}),
    (process_add, PROCESS),
    (process_add_async, PROCESS),
    (process_resume, {**PROCESS, "max_attempts": 2}),
    (process_cooperative, {**PROCESS, "max_attempts": 2}),
    (process_raise, {**PROCESS, "max_attempts": 2}),
]
