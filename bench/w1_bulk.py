"""W1: bulk-enqueue N no-op jobs, then drain them with one worker process.

python bench/w1_bulk.py [--jobs 10000] [--runs 3] [--concurrency 100]
"""

from __future__ import annotations

import time

from common import engine, finish, fresh_app, machine, parser, report
from conveyor.job import JobState


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--prefetch", type=int, default=None)
    args = p.parse_args()
    enqueue_rates: list[float] = []
    drain_rates: list[float] = []
    described = ""
    for _ in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous, batch_size=args.batch_size)

        @app.task(name="noop")
        def noop() -> None:
            return None

        specs = [noop.job() for _ in range(args.jobs)]
        start = time.perf_counter()
        app.enqueue_many(specs)
        enqueue_rates.append(args.jobs / (time.perf_counter() - start))

        start = time.perf_counter()
        app.run_worker(concurrency=args.concurrency, prefetch=args.prefetch, burst=True)
        elapsed = time.perf_counter() - start
        done = sum(c.get(JobState.SUCCEEDED, 0) for c in app.stats().values())
        if done != args.jobs:
            raise SystemExit(f"only {done} of {args.jobs} jobs succeeded")
        drain_rates.append(args.jobs / elapsed)
        described = engine(app)
        finish(app)
    print(
        f"W1 bulk, {args.jobs} no-op jobs, {machine()}, {described}, "
        f"1 worker process, concurrency {args.concurrency}, claim batch {args.batch_size}"
    )
    report("  enqueue (enqueue_many)", enqueue_rates, "jobs/s")
    report("  drain", drain_rates, "jobs/s")


if __name__ == "__main__":
    main()
