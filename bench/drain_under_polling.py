"""W1 drain with and without a dashboard polling /api/stats, /api/queues and /metrics at 20
requests a second (taking turns) from another process, through the in-process ASGI client.

Three modes, alternated within each run so that drift on a shared machine hits them alike:
quiet (nobody polls), polled (the server's default: figures read from the database at most
once a second, whatever the request rate) and polled uncached (every request reads the
database: the worst case, a server with stats_max_age=0). Reports each mode's drain rate and
its slowdown against quiet.

python bench/drain_under_polling.py --url postgresql://postgres@127.0.0.1:5432/postgres
    [--jobs 10000] [--concurrency 100] [--rate 20] [--runs 3]
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
import warnings
from multiprocessing.synchronize import Event
from typing import Any

from common import engine, finish, fresh_app, machine, parser, report
from conveyor import Conveyor
from conveyor.job import JobState

PATHS = ("/api/stats", "/api/queues", "/metrics")
#: mode -> the server's stats_max_age, None: nobody polls.
MODES: dict[str, float | None] = {"quiet": None, "polled": 1.0, "polled uncached": 0.0}


def poll(
    settings: dict[str, Any], rate: float, max_age: float, ready: Event, stop: Event, out: Any
) -> None:
    """The dashboard: GET the paths in turn, ``rate`` a second, until ``stop``."""
    warnings.filterwarnings("ignore", message=".*httpx.*")
    from starlette.testclient import TestClient

    app = Conveyor(settings["url"], postgres_schema=settings["postgres_schema"])
    served, slow = 0, 0.0
    with TestClient(app.asgi(tokens_from_environment=False, stats_max_age=max_age)) as client:
        for path in PATHS:
            client.get(path)
        ready.set()
        next_at = time.monotonic()
        while not stop.is_set():
            start = time.monotonic()
            assert client.get(PATHS[served % len(PATHS)]).status_code == 200
            slow = max(slow, time.monotonic() - start)
            served += 1
            next_at += 1.0 / rate
            stop.wait(max(0.0, next_at - time.monotonic()))
    app.close()
    out.put((served, slow))


def drain(args: Any, max_age: float | None) -> tuple[float, str, float]:
    """Drain rate (jobs/s), the engine, and the poll rate achieved (requests/s)."""
    app, _ = fresh_app(args.url, args.synchronous, batch_size=args.batch_size)

    @app.task(name="noop")
    def noop() -> None:
        return None

    app.enqueue_many([noop.job() for _ in range(args.jobs)])
    context = multiprocessing.get_context("spawn")
    ready, stop, out = context.Event(), context.Event(), context.Queue()
    poller = None
    if max_age is not None:
        settings = {"url": app.settings.url, "postgres_schema": app.settings.postgres_schema}
        poller = context.Process(target=poll, args=(settings, args.rate, max_age, ready, stop, out))
        poller.start()
        if not ready.wait(60):
            raise SystemExit("the poller did not start")
    start = time.perf_counter()
    app.run_worker(concurrency=args.concurrency, burst=True)
    elapsed = time.perf_counter() - start
    polled = 0.0
    if poller is not None:
        stop.set()
        served, _slow = out.get(timeout=60)
        poller.join()
        polled = served / elapsed
    done = sum(c.get(JobState.SUCCEEDED, 0) for c in app.stats().values())
    if done != args.jobs:
        raise SystemExit(f"only {done} of {args.jobs} jobs succeeded")
    described = engine(app)
    finish(app)
    return args.jobs / elapsed, described, polled


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--rate", type=float, default=20.0, help="requests per second")
    args = p.parse_args()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    polls: dict[str, list[float]] = {mode: [] for mode in MODES}
    described = ""
    for run in range(args.runs):
        order = list(MODES) if run % 2 == 0 else list(reversed(MODES))
        for mode in order:
            rate, described, polled = drain(args, MODES[mode])
            rates[mode].append(rate)
            polls[mode].append(polled)
    print(
        f"W1 drain under dashboard polling, {args.jobs} no-op jobs, {machine()}, {described}, "
        f"1 worker process, concurrency {args.concurrency}; poller: {args.rate:g} requests/s "
        f"over {', '.join(PATHS)} from another process"
    )
    quiet = statistics.median(rates["quiet"])
    for mode in MODES:
        report(f"  drain, {mode}", rates[mode], "jobs/s")
        if MODES[mode] is not None:
            slowdown = 1 - statistics.median(rates[mode]) / quiet
            print(
                f"    slowdown against quiet: {slowdown:.1%}; polls served "
                f"{statistics.median(polls[mode]):.1f}/s"
            )


if __name__ == "__main__":
    main()
