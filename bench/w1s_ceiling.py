"""W1s beside its ceiling: N single enqueues (one call, one transaction each, sequential)
through Conveyor's sync and async API, and the same rows written by the bare driver in the
same run, interleaved in blocks, so that the fraction survives a noisy machine.

python bench/w1s_ceiling.py [--jobs 2000] [--runs 3] [--url postgresql://...]

The ceiling: on PostgreSQL one prepared INSERT ... RETURNING id per row through psycopg, in
autocommit (the statement is its own transaction: one round trip); on SQLite one INSERT per
row through sqlite3 in autocommit, WAL, the same synchronous mode. Conveyor's figure also
carries its client CPU per call (process time, every thread) and, with --breakdown, the
microseconds of each phase of a call, wall and client CPU, measured apart: the spec
(task.job), the argument check and encoding (build_one), the backend's write (enqueue_one),
and the Job snapshot; then the async write (enqueue_one_async), with its client CPU on the
loop's thread apart.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import PG_QUERIES, engine, finish, fresh_app, is_postgres, machine, parser, report
from conveyor import Conveyor
from conveyor.backends.base import Backend, NewJob
from conveyor.backends.sqlite.connection import Q as LITE
from conveyor.task import Task, build_one


class Ceiling:
    """The bare driver's connection, writing one row per call."""

    def __init__(self, app: Conveyor) -> None:
        self.url = app.settings.url
        if is_postgres(self.url):
            import psycopg
            from psycopg import sql

            self.pg = psycopg.connect(self.url, autocommit=True)
            schema = sql.Identifier(app.settings.postgres_schema)
            self.pg.execute(sql.SQL(PG_QUERIES["use_schema"]).format(schema=schema))
            self.query = PG_QUERIES["ceiling_insert_job"]
        else:
            self.lite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.lite.execute(LITE["pragma_wal"])
            self.lite.execute(LITE[f"pragma_synchronous_{app.settings.sqlite_synchronous.lower()}"])
            self.query = LITE["insert_jobs_head"] + " (?, ?, ?, ?, '{}', 'queued', 0, ?, 3, NULL)"

    def write(self, n: int) -> None:
        if is_postgres(self.url):
            self.pg.execute(self.query, ("default", "noop", f"[{n}]"), prepare=True).fetchone()
        else:
            now = time.time()
            self.lite.execute(self.query, (now, "default", "noop", f"[{n}]", now))

    def close(self) -> None:
        (self.pg if is_postgres(self.url) else self.lite).close()


class Tally:
    """Wall and CPU time summed over a measure's blocks."""

    def __init__(self) -> None:
        self.calls = 0
        self.wall = 0.0
        self.cpu = 0.0

    def add(self, calls: int, wall: float, cpu: float) -> None:
        self.calls += calls
        self.wall += wall
        self.cpu += cpu

    @property
    def rate(self) -> float:
        return self.calls / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.calls * 1e6


def timed(tally: Tally, write: Callable[[int, int], None], first: int, count: int) -> None:
    cpu, start = time.process_time(), time.perf_counter()
    write(first, count)
    tally.add(count, time.perf_counter() - start, time.process_time() - cpu)


def one_run(app: Conveyor, task: Task[..., Any], jobs: int, block: int) -> dict[str, Tally]:
    """The three measures, interleaved in blocks of ``block`` calls: a slow spell of the
    machine falls on all three alike."""
    ceiling = Ceiling(app)
    loop = asyncio.new_event_loop()
    tallies = {name: Tally() for name in ("ceiling", "sync", "async")}

    async def enqueue_async(first: int, count: int) -> None:
        cpu, start = time.process_time(), time.perf_counter()
        for n in range(first, first + count):
            await task.enqueue_async(n)
        tallies["async"].add(count, time.perf_counter() - start, time.process_time() - cpu)

    def bare(first: int, count: int) -> None:
        for n in range(first, first + count):
            ceiling.write(n)

    def enqueue(first: int, count: int) -> None:
        for n in range(first, first + count):
            task.enqueue(n)

    try:
        ceiling.write(0)
        task.enqueue(0)  # connect and warm up outside the timing
        loop.run_until_complete(task.enqueue_async(0))
        for first in range(0, jobs, block):
            count = min(block, jobs - first)
            timed(tallies["ceiling"], bare, first, count)
            timed(tallies["sync"], enqueue, first, count)
            loop.run_until_complete(enqueue_async(first, count))
    finally:
        loop.close()
        ceiling.close()
    return tallies


def breakdown(app: Conveyor, task: Task[..., Any], jobs: int) -> dict[str, tuple[float, float]]:
    """Microseconds per call of each phase of task.enqueue (the path of app.enqueue_one),
    each timed on its own: (wall, client CPU of the whole process)."""
    phases: dict[str, tuple[float, float]] = {}
    clocks = _clocks()
    specs = [task.job(n) for n in range(jobs)]
    phases["spec (task.job)"] = _per_call(clocks, jobs)
    clocks = _clocks()
    built = [build_one(spec) for spec in specs]
    phases["check and encode (build_one)"] = _per_call(clocks, jobs)
    new_jobs = [job for job in built if job is not None]
    assert len(new_jobs) == jobs
    backend = app.backend
    clocks = _clocks()
    results = [backend.enqueue_one(job) for job in new_jobs]
    phases["write (backend.enqueue_one)"] = _per_call(clocks, jobs)
    clocks = _clocks()
    for new_job, result, spec in zip(new_jobs, results, specs, strict=True):
        app._enqueued_one(new_job, result, spec)
    phases["snapshot (Job)"] = _per_call(clocks, jobs)
    phases.update(_async_write(backend, new_jobs))
    return phases


def _async_write(backend: Backend, new_jobs: list[NewJob]) -> dict[str, tuple[float, float]]:
    """The backend's write of enqueue_async (backend.enqueue_one_async) on its own: its wall
    time and client CPU in all, then its CPU on the loop's thread (the wake-ups are sent from
    the notifier's thread on PostgreSQL)."""
    loop = asyncio.new_event_loop()

    async def write() -> None:
        for job in new_jobs:
            await backend.enqueue_one_async(job)

    try:
        loop.run_until_complete(backend.enqueue_one_async(new_jobs[0]))  # the loop's session
        thread, clocks = time.thread_time(), _clocks()
        loop.run_until_complete(write())
        written = _per_call(clocks, len(new_jobs))
        thread_us = (time.thread_time() - thread) / len(new_jobs) * 1e6
    finally:
        loop.close()
    return {
        "async write (backend.enqueue_one_async)": written,
        "  its client CPU on the loop's thread": (thread_us, thread_us),
    }


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _per_call(clocks: tuple[float, float], jobs: int) -> tuple[float, float]:
    wall, cpu = clocks
    return (
        (time.perf_counter() - wall) / jobs * 1e6,
        (time.process_time() - cpu) / jobs * 1e6,
    )


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=2_000)
    p.add_argument("--block", type=int, default=100, help="calls per interleaved block")
    p.add_argument("--breakdown", action="store_true", help="also time each phase of a call")
    args = p.parse_args()
    runs: list[dict[str, Tally]] = []
    phases: list[dict[str, tuple[float, float]]] = []
    described = ""
    for _ in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)

        @app.task(name="noop")
        def noop(n: int) -> None:
            return None

        runs.append(one_run(app, noop, args.jobs, args.block))
        if args.breakdown:
            phases.append(breakdown(app, noop, args.jobs))
        described = engine(app)
        finish(app)
    print(
        f"W1s single enqueue beside its ceiling, {args.jobs} jobs per measure, interleaved "
        f"in blocks of {args.block}, {machine()}, {described}"
    )
    labels = {"ceiling": "bare driver", "sync": "enqueue", "async": "enqueue_async"}
    for name, label in labels.items():
        report(f"  {label}", [run[name].rate for run in runs], "jobs/s")
        report("    client CPU", [run[name].cpu_us for run in runs], "µs/call")
        if name != "ceiling":
            fractions = [run[name].rate / run["ceiling"].rate for run in runs]
            report("    of the ceiling", fractions, "", lambda v: f"{v:.0%}")
    if phases:
        print("  breakdown of enqueue (µs per call, each phase timed apart, medians):")
        for phase in phases[0]:
            wall = statistics.median(p[phase][0] for p in phases)
            cpu = statistics.median(p[phase][1] for p in phases)
            print(f"    {phase}: {wall:.0f} wall, {cpu:.0f} client CPU")


if __name__ == "__main__":
    main()
