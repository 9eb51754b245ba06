"""The reads of /api/stats, /api/queues and /metrics on a big PostgreSQL table: 1,000,000 queued
and 100,000 finished jobs (bulk enqueue, then claims and finishes through the backend, so the
per-minute aggregates are written as workers write them), then each endpoint timed through the
in-process ASGI client with its cache off (every request reads the database). Beside them, the
exact count of jobs by queue and state that the estimates replace, in the same run.

python bench/stats_big.py --url postgresql://postgres@127.0.0.1:5432/postgres
    [--queued 1000000] [--finished 100000] [--requests 30]
"""

from __future__ import annotations

import statistics
import time
import warnings

import psycopg
from psycopg import sql

from common import PG_QUERIES, engine, finish, fresh_app, is_postgres, machine, parser
from conveyor import Conveyor
from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.job import JobError

warnings.filterwarnings("ignore", message=".*httpx.*")
from starlette.testclient import TestClient  # noqa: E402

CHUNK = 50_000
QUEUES = ("default", "emails", "images")


def fill(app: Conveyor, queued: int, finished: int) -> None:
    @app.task(name="noop")
    def noop() -> None:
        return None

    total = queued + finished
    bound = [noop.options(queue=queue) for queue in QUEUES]
    for start in range(0, total, CHUNK):
        size = min(CHUNK, total - start)
        app.enqueue_many([bound[(start + i) % len(QUEUES)].job() for i in range(size)])
    done = 0
    while done < finished:
        claimed = app.backend.claim("bench", None, min(1000, finished - done), 60.0)
        outcomes = []
        for n, run in enumerate(claimed):
            if n % 100 == 99:  # one in a hundred ends dead, the rest succeed
                failure = JobError(1, "ValueError", "boom", "Traceback\n", time.time())
                outcomes.append(Outcome(run.id, run.lease_token, OutcomeKind.DEAD, error=failure))
            else:
                outcomes.append(Outcome(run.id, run.lease_token, OutcomeKind.SUCCEEDED))
        app.backend.finish_many(outcomes)
        done += len(claimed)
    while app.backend.count_enqueued(settle=0, batch=100_000) > 0:
        pass
    schema = sql.Identifier(app.settings.postgres_schema)
    with psycopg.connect(app.settings.url, autocommit=True) as conn:
        conn.execute(sql.SQL(PG_QUERIES["vacuum_analyze_jobs"]).format(schema=schema))


def timed(call: object, requests: int) -> list[float]:
    assert callable(call)
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return times


def show(name: str, times: list[float]) -> None:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"  {name:<34} median {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms")


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--queued", type=int, default=1_000_000)
    p.add_argument("--finished", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=30)
    args = p.parse_args()
    if not is_postgres(args.url):
        raise SystemExit("stats_big.py measures PostgreSQL: give --url postgresql://...")
    app, _ = fresh_app(args.url, args.synchronous)
    try:
        start = time.perf_counter()
        fill(app, args.queued, args.finished)
        filled = time.perf_counter() - start
        print(
            f"stats on a big table, {machine()}, {engine(app)}: {args.queued:,} queued + "
            f"{args.finished:,} finished jobs in {len(QUEUES)} queues (filled in {filled:.0f} s)"
        )
        schema = sql.Identifier(app.settings.postgres_schema)
        exact = sql.SQL(PG_QUERIES["count_by_queue_and_state"]).format(schema=schema)
        with (
            TestClient(app.asgi(tokens_from_environment=False, stats_max_age=0.0)) as client,
            psycopg.connect(app.settings.url) as conn,
        ):
            for path in ("/api/stats", "/api/queues", "/metrics"):
                assert client.get(path).status_code == 200  # warm: connections, plans
            estimated = client.get("/api/stats").json()["estimated"]
            print(f"  estimated counts: {estimated}")
            for path in ("/api/stats", "/api/queues", "/metrics"):
                show(f"GET {path}", timed(lambda p=path: client.get(p), args.requests))
            show(
                "ceiling: exact count(*) by queue, state",
                timed(lambda: conn.execute(exact).fetchall(), max(3, args.requests // 5)),
            )
    finally:
        finish(app)


if __name__ == "__main__":
    main()
