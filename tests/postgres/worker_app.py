"""The application that worker processes of the PostgreSQL fault and scale tests run.

``python -m tests.postgres.worker_app --concurrency 8 [--queue q ...]`` runs one worker; the
database comes from CONVEYOR_URL and CONVEYOR_POSTGRES_SCHEMA (and the other CONVEYOR_*
settings). Every task records what it did in the *test's own* SQLite files, one per worker
process (``effects-<pid>.db`` in the folder named by PG_EFFECTS_DIR), never in Conveyor's
tables: the tests count side effects independently of the queue's bookkeeping, and processes
never contend for one file.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor import Conveyor, Fixed, JobContext

EFFECTS_DIR_ENV = "PG_EFFECTS_DIR"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS effects (
    kind       TEXT    NOT NULL,
    job_id     INTEGER NOT NULL,
    attempt    INTEGER NOT NULL,
    worker_pid INTEGER NOT NULL,
    at         REAL    NOT NULL
)
"""
_INSERT = "INSERT INTO effects (kind, job_id, attempt, worker_pid, at) VALUES (?, ?, ?, ?, ?)"
_SELECT = "SELECT kind, job_id, attempt, worker_pid, at FROM effects"

_lock = threading.Lock()
_db: tuple[str, sqlite3.Connection] | None = None


@dataclass(frozen=True)
class Effect:
    kind: str
    job_id: int
    attempt: int
    worker_pid: int
    at: float


def record(kind: str, ctx: JobContext) -> None:
    """Append one effect row to this process's file; committed before this returns."""
    global _db
    folder = os.environ[EFFECTS_DIR_ENV]
    with _lock:
        if _db is None or _db[0] != folder:
            db = sqlite3.connect(
                Path(folder) / f"effects-{os.getpid()}.db",
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(_SCHEMA)
            _db = (folder, db)
        _db[1].execute(_INSERT, (kind, ctx.job_id, ctx.attempt, os.getpid(), time.time()))


def read_effects(folder: Path, kind: str | None = None) -> list[Effect]:
    """Every effect recorded in ``folder`` by any process (readable while they run)."""
    found: list[Effect] = []
    for path in sorted(folder.glob("effects-*.db")):
        db = sqlite3.connect(path, timeout=30)
        try:
            rows = db.execute(_SELECT).fetchall()
        except sqlite3.OperationalError:  # created, schema not written yet
            rows = []
        finally:
            db.close()
        found += [Effect(*row) for row in rows if kind is None or row[0] == kind]
    return found


# --- tasks ------------------------------------------------------------------------------------


def work(ctx: JobContext, ms: float) -> None:
    """A short job: sleeps ``ms`` milliseconds in its thread."""
    if ms > 0:
        time.sleep(ms / 1000)
    record("done", ctx)


def sleepy(ctx: JobContext, seconds: float) -> None:
    record("start", ctx)
    time.sleep(seconds)
    record("done", ctx)


def first_run_hangs(ctx: JobContext, seconds: float) -> int:
    """Sleeps ``seconds`` on its first run (long enough to be killed or cut off there); quick
    after. A run lost beside others gives its attempt back (poison isolation), so the attempt
    number does not tell a first run: the effects recorded so far do. Returns the pid of the
    worker that ran it."""
    first = not any(
        e.job_id == ctx.job_id for e in read_effects(Path(os.environ[EFFECTS_DIR_ENV]), "start")
    )
    record("start", ctx)
    if first:
        time.sleep(seconds)
    record("done", ctx)
    return os.getpid()


def hold_gil(ctx: JobContext, seconds: int) -> int:
    """Stuck in a C call that keeps the GIL (libc's sleep through ``ctypes.PyDLL``): no other
    thread of the worker process runs meanwhile. Returns the worker's pid."""
    record("start", ctx)
    ctypes.PyDLL(None).sleep(seconds)
    record("done", ctx)
    return os.getpid()


async def wait_async(ctx: JobContext) -> None:
    record("start", ctx)
    await asyncio.sleep(3600)


def wait_thread(ctx: JobContext) -> None:
    """A thread task: stops once it sees ``ctx.cancelled``."""
    record("start", ctx)
    while not ctx.cancelled:
        time.sleep(0.01)
    record("saw_cancel", ctx)
    ctx.raise_if_cancelled()


def spin_process(ctx: JobContext) -> None:
    """Deaf to cancellation, in a process of its own: only stopping the process ends it."""
    record("start", ctx)
    while True:
        pass


TASKS: list[tuple[Any, dict[str, Any]]] = [
    (work, {"max_attempts": 5, "retry": Fixed(0)}),
    (sleepy, {"max_attempts": 5, "retry": Fixed(0)}),
    (first_run_hangs, {"max_attempts": 5, "retry": Fixed(0)}),
    (hold_gil, {"max_attempts": 5}),
    (wait_async, {"max_attempts": 5}),
    (wait_thread, {"max_attempts": 5}),
    (spin_process, {"max_attempts": 5, "isolation": "process"}),
]


def build_app(url: str | None = None, **overrides: Any) -> Conveyor:
    """A Conveyor with every task above registered as ``pg.<function name>``."""
    app = Conveyor(url, **overrides)
    for fn, options in TASKS:
        app.task(name=f"pg.{fn.__name__}", pass_context=True, **options)(fn)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--queue", action="append", dest="queues")
    parser.add_argument("--grace", type=float, default=30.0)
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s pid={os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    app = build_app()
    try:
        app.worker(
            queues=options.queues, concurrency=options.concurrency, grace=options.grace
        ).run()
    finally:
        app.close()
    logging.getLogger("conveyor.worker").info("worker process exiting normally")


if __name__ == "__main__":
    main()
