"""W1s: enqueue N jobs one call (one transaction) each.

python bench/w1s_single.py [--jobs 2000] [--runs 3]
"""

from __future__ import annotations

import time

from common import engine, finish, fresh_app, machine, parser, report


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=2_000)
    args = p.parse_args()
    rates: list[float] = []
    described = ""
    for _ in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)

        @app.task(name="noop")
        def noop(n: int) -> None:
            return None

        noop.enqueue(0)  # open the database and apply the schema outside the timing
        start = time.perf_counter()
        for n in range(args.jobs):
            noop.enqueue(n)
        rates.append(args.jobs / (time.perf_counter() - start))
        described = engine(app)
        finish(app)
    print(f"W1s single enqueue, {args.jobs} jobs, {machine()}, {described}")
    report("  enqueue (one call each)", rates, "jobs/s")


if __name__ == "__main__":
    main()
