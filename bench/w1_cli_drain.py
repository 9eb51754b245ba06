"""W1's drain the way users run it: N no-op jobs bulk-enqueued, then ``conveyor worker
--concurrency 100`` spawned as a process (claim batch 500), timed from the spawn until the
queue's own state says all N are done, and from the first job done until then. On PostgreSQL,
the server-side ceiling (pg_drain_ceiling.py: the same claim and finish statements through
pgbench) is measured in the same run, alternating with the drains, and the drain reported as a
fraction of it, with the WAL written per job (cluster-wide: other sessions count too).

    python bench/w1_cli_drain.py [--url postgresql://...] [--jobs 10000] [--runs 3]
                                 [--concurrency 100] [--batch-size 500] [--ceiling-clients 2]

The worker processes cache their bytecode, as installed packages run (compiled once, by a
warm-up drain of each package before the timed ones); --no-bytecode-cache compiles every
conveyor module at every start, as a source tree never run without PYTHONDONTWRITEBYTECODE
would (the workers run copies of the packages without their __pycache__ folders; the other
packages' bytecode, compiled when they were installed, is read as usual).

The queue's state is polled every 20 ms with one count (the partial indexes of
ready and running jobs): the first job is done once fewer than N are queued or running. The
worker process's CPU time (user + system, from /proc) is read at both moments: CPU per job is
load-robust where the rates are not (its heartbeat process is not counted).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conveyor
from common import PG_QUERIES, engine, finish, fresh_app, is_postgres, machine, parser, report
from conveyor import Conveyor
from conveyor.backends.sql import parse_queries

HERE = Path(__file__).resolve().parent
LITE_QUERIES = parse_queries((HERE / "sqlite.sql").read_text(encoding="utf-8"))
POLL = 0.02
#: Whether the worker processes may cache bytecode (--no-bytecode-cache: compile every start).
CACHE_BYTECODE = True
#: Jobs of the warm-up drain that compiles each package's bytecode before the timed drains.
WARM_UP_JOBS = 500


class Waiting:
    """Counts the jobs of the app's store that are not finished, on a connection of its own."""

    def __init__(self, app: Conveyor) -> None:
        self.url = str(app.settings.url)
        if is_postgres(self.url):
            import psycopg
            from psycopg import sql

            self.pg = psycopg.connect(self.url, autocommit=True)
            schema = sql.Identifier(app.settings.postgres_schema)
            self.query: Any = sql.SQL(PG_QUERIES["waiting"]).format(schema=schema)
        else:
            self.lite = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            self.query = LITE_QUERIES["waiting"]

    def count(self) -> int:
        conn: Any = self.pg if is_postgres(self.url) else self.lite
        row = conn.execute(self.query).fetchone()
        return int(row[0])

    def wal(self) -> int:
        if not is_postgres(self.url):
            return 0
        row = self.pg.execute(PG_QUERIES["wal_position"]).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        (self.pg if is_postgres(self.url) else self.lite).close()


def spawn(
    app: Conveyor, concurrency: int, batch_size: int, src: str | None
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "conveyor.cli", "worker", "--app", "bench_app:app"]
    argv += ["--concurrency", str(concurrency), "--log-level", "warning"]
    inherited = dict(os.environ)
    if CACHE_BYTECODE:
        inherited.pop("PYTHONDONTWRITEBYTECODE", None)
    env = {
        **inherited,
        "PYTHONPATH": str(HERE) if src is None else f"{src}{os.pathsep}{HERE}",
        "CONVEYOR_BENCH_URL": str(app.settings.url),
        "CONVEYOR_POSTGRES_SCHEMA": app.settings.postgres_schema,
        "CONVEYOR_SQLITE_SYNCHRONOUS": app.settings.sqlite_synchronous,
        "CONVEYOR_BATCH_SIZE": str(batch_size),
    }
    return subprocess.Popen(argv, env=env, cwd=HERE)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far, from /proc (Linux); its
    heartbeat process, a child of its own, is not counted. NaN where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Drain:
    #: Seconds from spawn to all done, and from the first job done to all done.
    total: float
    after_first: float
    #: WAL bytes per job (PostgreSQL, cluster-wide).
    wal: float
    #: The worker's CPU seconds from spawn to all done, and from the first job done on.
    cpu: float
    cpu_after_first: float


def one_drain(
    app: Conveyor, jobs: int, concurrency: int, batch_size: int, src: str | None = None
) -> Drain:
    app.enqueue_many([app.get_task("noop").job() for _ in range(jobs)])
    waiting = Waiting(app)
    wal_before = waiting.wal()
    start = time.perf_counter()
    worker = spawn(app, concurrency, batch_size, src)
    first = None
    first_cpu = math.nan
    try:
        deadline = start + 600
        while True:
            left = waiting.count()
            now = time.perf_counter()
            if first is None and left < jobs:
                first = now
                first_cpu = cpu_seconds(worker.pid)
            if left == 0:
                break
            if now > deadline or worker.poll() is not None:
                raise SystemExit(f"the worker stopped or timed out with {left} jobs left")
            time.sleep(POLL)
        done = time.perf_counter()
        done_cpu = cpu_seconds(worker.pid)
        wal = (waiting.wal() - wal_before) / jobs
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait()
        waiting.close()
    assert first is not None
    return Drain(done - start, done - first, wal, done_cpu, done_cpu - first_cpu)


def ceiling(app: Conveyor, jobs: int, batch_size: int, clients: int, folder: Path) -> float:
    """pg_drain_ceiling.py's jobs/s on this app's schema (refilled, then left empty)."""
    import psycopg

    from pg_drain_ceiling import fill, run_pgbench, scripts

    schema = app.settings.postgres_schema
    with psycopg.connect(str(app.settings.url), autocommit=True) as conn:
        conn.execute(PG_QUERIES["use_schema_plain"], {"schema": schema})
        fill(conn, jobs)
        transactions = -(-jobs // (batch_size * clients))
        tps = run_pgbench(
            str(app.settings.url), schema, scripts(folder), clients, transactions, batch_size
        )
        conn.execute(PG_QUERIES["ceiling_empty"])
    return jobs / (clients * transactions / tps)


def uncompiled(package: Path, folder: Path) -> str:
    """A copy of the conveyor ``package`` in ``folder`` without bytecode; its folder for
    PYTHONPATH."""
    shutil.copytree(package, folder / "conveyor", ignore=shutil.ignore_patterns("__pycache__"))
    return str(folder)


def fresh_noop_app(args: argparse.Namespace) -> Conveyor:
    app, _folder = fresh_app(args.url, args.synchronous, batch_size=args.batch_size)
    app.task(name="noop")(lambda: None)
    return app


def fmt2(value: float) -> str:
    return f"{value:.2f}"


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--ceiling-clients", type=int, default=2)
    p.add_argument(
        "--baseline",
        metavar="SRC",
        help="a folder with another conveyor package (e.g. git archive of an older commit's "
        "src): its worker drains too, alternating with this one's",
    )
    p.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="the workers compile every module at every start (no __pycache__ written or read)",
    )
    args = p.parse_args()
    global CACHE_BYTECODE
    CACHE_BYTECODE = not args.no_bytecode_cache
    this: list[Drain] = []
    base: list[Drain] = []
    ceilings: list[float] = []
    described = ""
    with tempfile.TemporaryDirectory() as folder:
        this_src: str | None = None
        base_src: str | None = args.baseline
        if CACHE_BYTECODE:
            for src in (None, args.baseline) if args.baseline else (None,):
                app = fresh_noop_app(args)
                try:
                    one_drain(app, WARM_UP_JOBS, args.concurrency, args.batch_size, src)
                finally:
                    finish(app)
        else:
            this_src = uncompiled(Path(conveyor.__file__).parent, Path(folder) / "this")
            if args.baseline:
                base_src = uncompiled(Path(args.baseline) / "conveyor", Path(folder) / "base")
        for run in range(args.runs):
            if is_postgres(args.url):
                app = fresh_noop_app(args)
                try:
                    ceilings.append(
                        ceiling(app, args.jobs, args.batch_size, args.ceiling_clients, Path(folder))
                    )
                finally:
                    finish(app)
            # Each drain on a store of its own, the baseline first every other run: a drain
            # that follows another in the same table finds its finished rows and dead tuples.
            order: list[tuple[list[Drain], str | None]] = [(this, this_src)]
            if args.baseline:
                order.append((base, base_src))
                if run % 2:
                    order.reverse()
            for drains, src in order:
                app = fresh_noop_app(args)
                try:
                    drains.append(one_drain(app, args.jobs, args.concurrency, args.batch_size, src))
                    described = engine(app)
                finally:
                    finish(app)
    jobs = args.jobs
    print(
        f"W1 drain by `conveyor worker --concurrency {args.concurrency}` (claim batch "
        f"{args.batch_size}, {jobs} no-op jobs), {machine()}, {described}, bytecode cache "
        f"{'on' if CACHE_BYTECODE else 'off'}, load {os.getloadavg()[0]:.1f}"
    )
    report_drains("", this, jobs)
    if base:
        report_drains(f"baseline ({args.baseline}): ", base, jobs)
        for name, rate in (("spawn to done", total_rate), ("first done to done", first_rate)):
            ratios = [rate(t, jobs) / rate(b, jobs) for t, b in zip(this, base, strict=True)]
            report(f"  this / baseline, {name}", ratios, "x", fmt2)
        cpu = [t.cpu / b.cpu for t, b in zip(this, base, strict=True)]
        report("  this / baseline, worker CPU spawn to done", cpu, "x", fmt2)
    if ceilings:
        report(f"  ceiling (pgbench, {args.ceiling_clients} clients)", ceilings, "jobs/s")
        pairs = list(zip(this, ceilings, strict=True))
        report("  spawn to done / ceiling", [total_rate(d, jobs) / c * 100 for d, c in pairs], "%")
        report(
            "  first done to done / ceiling", [first_rate(d, jobs) / c * 100 for d, c in pairs], "%"
        )
        report("  WAL per job (cluster-wide)", [d.wal for d in this], "B")


def total_rate(drain: Drain, jobs: int) -> float:
    return jobs / drain.total


def first_rate(drain: Drain, jobs: int) -> float:
    return jobs / drain.after_first


def report_drains(label: str, drains: list[Drain], jobs: int) -> None:
    report(f"  {label}spawn to all done", [total_rate(d, jobs) for d in drains], "jobs/s")
    report(f"  {label}first done to all done", [first_rate(d, jobs) for d in drains], "jobs/s")
    micro = [d.cpu / jobs * 1e6 for d in drains]
    report(f"  {label}worker CPU per job, spawn to done (start included)", micro, "µs")
    micro = [d.cpu_after_first / jobs * 1e6 for d in drains]
    report(f"  {label}worker CPU per job, first done to done", micro, "µs")


if __name__ == "__main__":
    main()
