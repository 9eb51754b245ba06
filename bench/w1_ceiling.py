"""W1's ceiling: the same no-op jobs written by the engine's own bulk statement, with no
Conveyor code around it (no validation, no records, no snapshots): the most enqueue_many
could reach on this machine.

python bench/w1_ceiling.py [--jobs 10000] [--runs 3] [--url postgresql://...]

SQLite: one transaction of multi-row INSERTs of 500 rows with every value bound once.
PostgreSQL: the ids reserved, then one text COPY, as Conveyor's bulk path does (times left to
their default, the transaction's clock).
"""

from __future__ import annotations

import sqlite3
import time

from common import PG_QUERIES, engine, finish, fresh_app, is_postgres, machine, parser, report
from conveyor import Conveyor
from conveyor.backends.postgres.connection import Q as PG
from conveyor.backends.sqlite.connection import Q as LITE

ROWS = 500


def sqlite_rate(app: Conveyor, jobs: int) -> float:
    db = sqlite3.connect(app.settings.url.removeprefix("sqlite:///"), isolation_level=None)
    db.execute(LITE["pragma_wal"])
    db.execute(LITE[f"pragma_synchronous_{app.settings.sqlite_synchronous.lower()}"])
    now = time.time()
    # created_at first as ?10, then queue ... timeout as ?1 ... ?9: insert_jobs_head's order.
    row = "(?10, " + ", ".join(f"?{n}" for n in range(1, 10)) + ")"
    values = ["default", "noop", "[]", "{}", "queued", 0, now, 3, None, now]
    start = time.perf_counter()
    db.execute(LITE["begin_immediate"])
    for done in range(0, jobs, ROWS):
        rows = min(ROWS, jobs - done)
        db.execute(LITE["insert_jobs_head"] + ",".join([row] * rows), values)
    db.execute(LITE["commit"])
    elapsed = time.perf_counter() - start
    db.close()
    return jobs / elapsed


def postgres_rate(app: Conveyor, jobs: int) -> float:
    import psycopg
    from psycopg import sql

    schema = sql.Identifier(app.settings.postgres_schema)
    with psycopg.connect(app.settings.url) as conn:
        conn.execute(sql.SQL(PG_QUERIES["use_schema"]).format(schema=schema))
        conn.commit()
        start = time.perf_counter()
        params = {"now": None, "count": jobs, "channel": "w1_ceiling", "queues": ["default"]}
        reserved = conn.execute(PG["reserve_jobs"], params).fetchone()
        assert reserved is not None and reserved[2] - reserved[1] + 1 == jobs
        tail = "\tdefault\tnoop\t[]\t{}\tqueued\t0\t3\t\\N\n"
        with conn.cursor().copy(PG["copy_jobs_due_now"]) as copy:
            copy.write("".join(f"{job_id}{tail}" for job_id in range(reserved[1], reserved[2] + 1)))
        conn.commit()
        return jobs / (time.perf_counter() - start)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=10_000)
    args = p.parse_args()
    rates: list[float] = []
    described = ""
    for _ in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)
        write = postgres_rate if is_postgres(args.url) else sqlite_rate
        rates.append(write(app, args.jobs))
        described = engine(app)
        finish(app)
    print(f"W1 ceiling, {args.jobs} no-op rows without Conveyor code, {machine()}, {described}")
    report("  raw bulk insert", rates, "rows/s")


if __name__ == "__main__":
    main()
