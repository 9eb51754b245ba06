"""Moving a queue between engines: `conveyor.copy` of a SQLite queue to PostgreSQL, and the
backup file on the way (backup to a file, restore from it), beside a ceiling measured in the
same run: the same rows read with sqlite3 and COPYed into the same PostgreSQL table by psycopg,
with no Conveyor code around them. With --redis, the same copy to Redis beside its own ceiling
(the same rows written as hashes by redis-py, pipelined, no index), a backup of that Redis
store to a file, and the freeze that starts it (the one script during which the server serves
nobody else).

python bench/engine_copy.py [--jobs 100000] [--runs 3] [--postgres postgresql://...]
    [--redis redis://127.0.0.1:6379/0]

The source holds --jobs jobs: a fifth succeeded with a result, a tenth of those with an error
before, the rest queued. Each measurement runs in a fresh process, which reports its time and
its peak resident memory (ru_maxrss); a process that only opens both databases gives the
baseline. A copy of a quarter of the jobs shows whether memory grows with the number of jobs
(it must not: the snapshot streams).

Not named copy.py: run from bench/, that name would shadow the standard library's copy module
for every import in the process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import PG_QUERIES, finish, fresh_app, machine
from conveyor import Conveyor
from conveyor.backends.base import NewJob, Outcome, OutcomeKind
from conveyor.snapshot.moves import backup, copy_between
from conveyor.snapshot.records import JOB_FIELDS

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 10_000


def build_source(path: Path, jobs: int) -> None:
    """A SQLite queue of ``jobs`` jobs, a fifth of them succeeded (with results)."""
    with Conveyor(f"sqlite:///{path}") as app:
        backend = app.backend
        for start in range(0, jobs, BATCH):
            batch = [
                NewJob("bench.step", "default", json.dumps([n, f"item-{n}"]), '{"flag": true}')
                for n in range(start, min(jobs, start + BATCH))
            ]
            backend.enqueue_many(batch)
        for _ in range(jobs // 5 // 1000):
            runs = backend.claim("bench", None, 1000, 300.0)
            backend.finish_many(
                [
                    Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED, result_json='{"ok": 1}')
                    for r in runs
                ]
            )


# --- the measured operations, each in a process of its own ----------------------------------


def _pg(url: str) -> Conveyor:
    """A fresh, migrated schema of its own."""
    app = Conveyor(url, postgres_schema=f"bench_{secrets.token_hex(6)}")
    app.backend  # noqa: B018  (migrate before any timing)
    return app


def _drop(app: Conveyor) -> None:
    import psycopg
    from psycopg import sql

    app.close()
    query = sql.SQL(PG_QUERIES["drop_schema"]).format(
        schema=sql.Identifier(app.settings.postgres_schema)
    )
    with psycopg.connect(app.settings.url, autocommit=True) as conn:
        conn.execute(query)


def op_baseline(source: str, postgres: str, folder: str) -> int:
    with Conveyor(source) as app:
        app.backend.stats()
    target = _pg(postgres)
    _drop(target)
    return 0


def op_copy(source: str, postgres: str, folder: str) -> int:
    target = _pg(postgres)
    try:
        with Conveyor(source) as app:
            start = time.perf_counter()
            summary = copy_between(app.backend, target.backend)
            _elapsed.append(time.perf_counter() - start)
        return summary.counts["job"]
    finally:
        _drop(target)


def op_backup(source: str, postgres: str, folder: str) -> int:
    with Conveyor(source) as app:
        start = time.perf_counter()
        summary = backup(app.backend, Path(folder) / "backup.jsonl")
        _elapsed.append(time.perf_counter() - start)
    return summary.counts["job"]


def op_restore(source: str, postgres: str, folder: str) -> int:
    target = _pg(postgres)
    try:
        start = time.perf_counter()
        summary = target.restore(Path(folder) / "backup.jsonl")
        _elapsed.append(time.perf_counter() - start)
        return summary.counts["job"]
    finally:
        _drop(target)


def op_ceiling(source: str, postgres: str, folder: str) -> int:
    """The same rows, sqlite3 to COPY, times turned into timestamps: the driver's floor."""
    target = _pg(postgres)
    conn = target.backend._db.connect()  # type: ignore[attr-defined]
    columns = ", ".join(JOB_FIELDS)
    times = [i for i, t in enumerate(JOB_FIELDS.values()) if t.startswith("time")]
    db = sqlite3.connect(source.removeprefix("sqlite:///"))
    count = 0
    try:
        start = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor:
            rows = db.execute(f"SELECT {columns} FROM conveyor_jobs ORDER BY id")
            with cursor.copy(f"COPY conveyor_jobs ({columns}) FROM STDIN") as copy:
                while chunk := rows.fetchmany(2000):
                    for row in chunk:
                        values = list(row)
                        for i in times:
                            if values[i] is not None:
                                values[i] = datetime.fromtimestamp(values[i], UTC)
                        copy.write_row(values)
                        count += 1
        _elapsed.append(time.perf_counter() - start)
        return count
    finally:
        db.close()
        conn.close()
        _drop(target)


def op_redis_copy(source: str, redis_url: str, folder: str) -> int:
    target, _ = fresh_app(redis_url, "normal")
    try:
        with Conveyor(source) as app:
            start = time.perf_counter()
            summary = copy_between(app.backend, target.backend)
            _elapsed.append(time.perf_counter() - start)
        return summary.counts["job"]
    finally:
        finish(target)


def op_redis_ceiling(source: str, redis_url: str, folder: str) -> int:
    """The same rows, sqlite3 to pipelined HSETs (and the id index), no Conveyor code."""
    target, _ = fresh_app(redis_url, "normal")
    client = target.backend._db.client  # type: ignore[attr-defined]
    prefix = target.backend.prefix  # type: ignore[attr-defined]
    columns = list(JOB_FIELDS)
    db = sqlite3.connect(source.removeprefix("sqlite:///"))
    count = 0
    try:
        start = time.perf_counter()
        rows = db.execute(f"SELECT {', '.join(columns)} FROM conveyor_jobs ORDER BY id")
        while chunk := rows.fetchmany(1000):
            with client.pipeline(transaction=False) as pipe:
                for row in chunk:
                    fields = {c: v for c, v in zip(columns, row, strict=True) if v is not None}
                    pipe.hset(f"{prefix}:job:{row[0]}", mapping=fields)
                    pipe.zadd(f"{prefix}:jobs", {row[0]: row[0]})
                    count += 1
                pipe.execute()
        _elapsed.append(time.perf_counter() - start)
        return count
    finally:
        db.close()
        finish(target)


def _redis_filled(source: str, redis_url: str) -> Conveyor:
    target, _ = fresh_app(redis_url, "normal")
    with Conveyor(source) as app:
        copy_between(app.backend, target.backend)
    return target


def op_redis_backup(source: str, redis_url: str, folder: str) -> int:
    target = _redis_filled(source, redis_url)
    try:
        start = time.perf_counter()
        summary = backup(target.backend, Path(folder) / "redis.jsonl")
        _elapsed.append(time.perf_counter() - start)
        return summary.counts["job"]
    finally:
        finish(target)


def op_redis_freeze(source: str, redis_url: str, folder: str) -> int:
    """The first step of a Redis export alone: the script that copies every job."""
    from conveyor.backends.redis.snapshot import _drop

    target = _redis_filled(source, redis_url)
    backend: Any = target.backend
    try:
        start = time.perf_counter()
        reply = backend._run("snapshot_freeze", "bench", 86400)
        _elapsed.append(time.perf_counter() - start)
        _drop(backend._run, "bench")
        return int(reply[3])
    finally:
        finish(target)


#: The freeze's floor: the same walk of the id index, two lookups a job that copy nothing.
_WALK = """
local n = 0
for start = 0, redis.call('ZCARD', KEYS[1] .. ':jobs') - 1, 10000 do
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1] .. ':jobs', start, start + 9999)) do
    redis.call('EXISTS', KEYS[1] .. ':job:' .. id)
    redis.call('EXISTS', KEYS[1] .. ':children:' .. id)
    n = n + 1
  end
end
return n
"""


def op_redis_walk(source: str, redis_url: str, folder: str) -> int:
    target = _redis_filled(source, redis_url)
    backend: Any = target.backend
    try:
        walk = backend._db.client.register_script(_WALK)
        start = time.perf_counter()
        jobs = int(walk(keys=[backend.prefix]))
        _elapsed.append(time.perf_counter() - start)
        return jobs
    finally:
        finish(target)


_elapsed: list[float] = []
OPS: dict[str, Callable[[str, str, str], int]] = {
    "baseline": op_baseline,
    "copy": op_copy,
    "backup": op_backup,
    "restore": op_restore,
    "ceiling": op_ceiling,
    "redis_copy": op_redis_copy,
    "redis_ceiling": op_redis_ceiling,
    "redis_backup": op_redis_backup,
    "redis_freeze": op_redis_freeze,
    "redis_walk": op_redis_walk,
}


def _child(name: str, args: tuple[str, str, str], out: Any) -> None:
    jobs = OPS[name](*args)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put((jobs, _elapsed[0] if _elapsed else 0.0, peak_kb / 1024))


def measure(name: str, source: str, postgres: str, folder: str) -> tuple[int, float, float]:
    """(jobs, seconds, peak MiB) of one operation in a fresh process."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    child = context.Process(target=_child, args=(name, (source, postgres, folder), out))
    child.start()
    result: tuple[int, float, float] = out.get()
    child.join()
    if child.exitcode:
        raise SystemExit(f"{name} failed (exit code {child.exitcode})")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--postgres", default=os.environ.get("CONVEYOR_BENCH_POSTGRES", DEFAULT_POSTGRES)
    )
    p.add_argument("--redis", default=os.environ.get("CONVEYOR_BENCH_REDIS"))
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="conveyor-bench-copy-"))
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, folder: Path) -> None:
    full, quarter = folder / "full.db", folder / "quarter.db"
    build_source(full, args.jobs)
    build_source(quarter, args.jobs // 4)
    url, small = f"sqlite:///{full}", f"sqlite:///{quarter}"
    print(f"machine: {machine()}; load: {os.getloadavg()[0]:.2f}")
    print(f"source: SQLite, {args.jobs:,} jobs (a fifth succeeded); target: PostgreSQL")
    base = measure("baseline", url, args.postgres, str(folder))[2]
    print(f"baseline process (both databases open): {base:.0f} MiB peak")
    rates: dict[str, list[float]] = {name: [] for name in ("copy", "ceiling", "backup", "restore")}
    peaks: dict[str, list[float]] = {name: [] for name in rates}
    # Alternated, so that a change of load hits each alike.
    for _ in range(args.runs):
        for name in ("copy", "ceiling", "backup", "restore"):
            jobs, seconds, peak = measure(name, url, args.postgres, str(folder))
            assert jobs == args.jobs, (name, jobs)
            rates[name].append(jobs / seconds)
            peaks[name].append(peak)
    small_peak = measure("copy", small, args.postgres, str(folder))[2]
    size = (folder / "backup.jsonl").stat().st_size
    for name, label in (
        ("copy", "copy SQLite -> PostgreSQL"),
        ("ceiling", "ceiling: sqlite3 rows -> psycopg COPY"),
        ("backup", "backup SQLite -> file"),
        ("restore", "restore file -> PostgreSQL"),
    ):
        values = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(
            f"{label}: {statistics.median(rates[name]):,.0f} jobs/s (runs: {values}); "
            f"peak {statistics.median(peaks[name]):.0f} MiB"
        )
    ratio = statistics.median(rates["copy"]) / statistics.median(rates["ceiling"])
    print(f"copy / ceiling: {ratio:.2f}")
    print(f"backup file: {size / 2**20:.1f} MiB ({size / args.jobs:.0f} bytes a job)")
    print(
        f"memory: copy of {args.jobs:,} jobs {statistics.median(peaks['copy']):.0f} MiB peak, "
        f"of {args.jobs // 4:,} jobs {small_peak:.0f} MiB, baseline {base:.0f} MiB"
    )
    if args.redis:
        run_redis(args, url, folder)


def run_redis(args: argparse.Namespace, url: str, folder: Path) -> None:
    print(f"target: Redis at {args.redis}")
    names = ("redis_copy", "redis_ceiling", "redis_backup", "redis_freeze", "redis_walk")
    rates: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.runs):
        for name in names:
            jobs, seconds, peak = measure(name, url, args.redis, str(folder))
            assert jobs == args.jobs, (name, jobs)
            rates[name].append(jobs / seconds)
            peaks[name].append(peak)
    for name, label in (
        ("redis_copy", "copy SQLite -> Redis"),
        ("redis_ceiling", "ceiling: sqlite3 rows -> redis-py pipelined HSET"),
        ("redis_backup", "backup Redis -> file"),
        ("redis_freeze", "freeze (one script, the server busy)"),
        ("redis_walk", "ceiling of the freeze: a script walking the ids, copying nothing"),
    ):
        values = ", ".join(f"{v:,.0f}" for v in rates[name])
        print(
            f"{label}: {statistics.median(rates[name]):,.0f} jobs/s (runs: {values}); "
            f"peak {statistics.median(peaks[name]):.0f} MiB"
        )
    ratio = statistics.median(rates["redis_copy"]) / statistics.median(rates["redis_ceiling"])
    print(f"Redis copy / ceiling: {ratio:.2f}")
    per_job = 1e6 / statistics.median(rates["redis_freeze"])
    walk = 1e6 / statistics.median(rates["redis_walk"])
    print(
        f"freeze: {per_job:.2f} µs a job ({per_job:.1f} s the million jobs), the walk alone "
        f"{walk:.2f} µs"
    )


if __name__ == "__main__":
    main()
