"""W3: 2,000 I/O-bound jobs that each sleep 10 ms (asyncio.sleep), concurrency 50.

python bench/w3_io.py [--jobs 2000] [--concurrency 50] [--runs 3]
"""

from __future__ import annotations

import time

from common import engine, finish, fresh_app, machine, parser, report
from conveyor.job import JobState


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=2_000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--sleep", type=float, default=0.01)
    args = p.parse_args()
    rates: list[float] = []
    described = ""
    for _ in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)

        @app.task(name="io_sleep")
        async def io_sleep(seconds: float) -> None:
            import asyncio

            await asyncio.sleep(seconds)

        app.enqueue_many([io_sleep.job(args.sleep) for _ in range(args.jobs)])
        start = time.perf_counter()
        app.run_worker(concurrency=args.concurrency, burst=True)
        elapsed = time.perf_counter() - start
        done = sum(c.get(JobState.SUCCEEDED, 0) for c in app.stats().values())
        if done != args.jobs:
            raise SystemExit(f"only {done} of {args.jobs} jobs succeeded")
        rates.append(args.jobs / elapsed)
        described = engine(app)
        finish(app)
    print(
        f"W3 I/O-bound, {args.jobs} jobs sleeping {args.sleep * 1000:g} ms, {machine()}, "
        f"{described}, 1 worker process, concurrency "
        f"{args.concurrency}"
    )
    report("  throughput", rates, "jobs/s")
    ideal = args.concurrency / args.sleep
    print(f"  (ceiling with perfect overlap: {ideal:,.0f} jobs/s)")


if __name__ == "__main__":
    main()
