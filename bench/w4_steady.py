"""W4: steady enqueue and drain for N minutes (shared/BENCH.md): does throughput hold while
finished jobs pile up? A worker process drains no-op jobs while this process keeps about
--backlog jobs waiting for it; each minute prints the jobs finished in it, and at the end the
last minute is compared with the first (it must not fall below half). On Redis each minute also
shows the server's CPU per job (its main thread's, INFO cpu: of every client, so start a private
server for a figure of this benchmark alone), which the load of a shared machine moves far less
than the rate.

    python bench/w4_steady.py --url postgresql://... [--minutes 10] [--backlog 5000]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

from bench_app import noop
from common import (
    PG_QUERIES,
    engine,
    finish,
    fresh_app,
    is_postgres,
    is_redis,
    machine,
    parser,
    spawn_worker,
)
from conveyor import Conveyor
from conveyor.job import JobState


def waiting_counter(app: Conveyor) -> Callable[[], int]:
    """A function returning how many jobs are queued or running."""
    if not is_postgres(app.settings.url):

        def from_stats() -> int:
            return sum(
                c.get(JobState.QUEUED, 0) + c.get(JobState.RUNNING, 0) for c in app.stats().values()
            )

        return from_stats
    import psycopg
    from psycopg import sql

    conn = psycopg.connect(app.settings.url, autocommit=True)
    query = sql.SQL(PG_QUERIES["waiting"]).format(
        schema=sql.Identifier(app.settings.postgres_schema)
    )

    def from_indexes() -> int:
        row = conn.execute(query).fetchone()
        return int(row[0]) if row else 0

    return from_indexes


def server_cpu(app: Conveyor) -> Callable[[], float] | None:
    """On Redis, a function returning the CPU seconds the server's main thread has used (of
    every client's commands: on a private server, this benchmark's alone); None elsewhere."""
    if not is_redis(app.settings.url):
        return None
    import redis

    client = redis.Redis.from_url(app.settings.url)

    def seconds() -> float:
        cpu = cast("dict[str, float]", client.info("cpu"))
        return cpu["used_cpu_user_main_thread"] + cpu["used_cpu_sys_main_thread"]

    return seconds


def autovacuum(app: Conveyor) -> bool:
    import psycopg

    with psycopg.connect(app.settings.url) as conn:
        row = conn.execute(PG_QUERIES["autovacuum"]).fetchone()
    return bool(row and row[0] == "on")


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--backlog", type=int, default=5_000, help="jobs kept waiting")
    p.add_argument("--batch", type=int, default=1_000, help="most jobs per enqueue_many")
    p.add_argument("--concurrency", type=int, default=100)
    args = p.parse_args()
    app, _folder = fresh_app(args.url, args.synchronous)
    task = app.task(name="noop")(noop.fn)
    waiting = waiting_counter(app)
    cpu = server_cpu(app)
    worker = spawn_worker(app, args.concurrency, args.synchronous)
    described = engine(app)
    if is_postgres(app.settings.url) and not autovacuum(app):
        vacuum = "the worker vacuums" if app.settings.postgres_self_vacuum else "nobody vacuums"
        described += f" (autovacuum OFF: {vacuum} the jobs table)"
    print(
        f"W4 steady, {args.minutes:g} min, backlog ~{args.backlog}, {machine()}, {described}, "
        f"1 worker process, concurrency {args.concurrency}",
        flush=True,
    )
    per_minute: list[float] = []
    cpu_per_job: list[float] = []
    try:
        enqueued = 0
        start = time.monotonic()
        end = start + args.minutes * 60
        minute_end = start + 60
        done_before = 0
        cpu_before = cpu() if cpu else 0.0
        while True:
            now = time.monotonic()
            pending = waiting()
            if now >= minute_end or now >= end:
                done = enqueued - pending
                span = now - (minute_end - 60)
                per_minute.append((done - done_before) / span)
                server = ""
                if cpu:
                    cpu_now = cpu()
                    cpu_per_job.append((cpu_now - cpu_before) * 1e6 / max(done - done_before, 1))
                    cpu_before = cpu_now
                    server = f", server CPU {cpu_per_job[-1]:.1f} us/job"
                print(
                    f"  minute {len(per_minute)}: {done - done_before:,} jobs finished, "
                    f"{per_minute[-1]:,.0f} jobs/s, {pending:,} waiting, "
                    f"{done:,} finished in all{server}",
                    flush=True,
                )
                done_before = done
                minute_end += 60
                if now >= end:
                    break
            if pending < args.backlog:
                count = min(args.backlog - pending, args.batch)
                app.enqueue_many([task.job() for _ in range(count)])
                enqueued += count
            else:
                # The backlog is full: look again shortly, not in a tight loop (counting walks
                # index entries of every job that was waiting since the last vacuum).
                time.sleep(0.1)
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited ({worker.returncode})")
    finally:
        worker.terminate()
        worker.wait(30)
        finish(app)
    first, last = per_minute[0], per_minute[-1]
    ratio = last / first if first else 0.0
    verdict = "ok" if ratio >= 0.5 else "FELL BY MORE THAN HALF"
    print(
        f"  last minute / first minute: {ratio:.2f} ({last:,.0f} vs {first:,.0f} jobs/s): {verdict}"
    )
    if cpu_per_job:
        print(
            f"  server CPU per job, last minute / first: "
            f"{cpu_per_job[-1] / cpu_per_job[0]:.2f} "
            f"({cpu_per_job[-1]:.1f} vs {cpu_per_job[0]:.1f} us)"
        )
    if ratio < 0.5:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
