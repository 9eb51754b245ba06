"""Bulk-enqueue rate of the PostgreSQL engine (a figure to watch, not a timed test).

PYTHONPATH=. .venv/bin/python tests/postgres/bench_enqueue.py [--jobs 100000] [--runs 3]

Each run enqueues --jobs no-key jobs with one enqueue_many call into a fresh schema of the test
server (CONVEYOR_TEST_POSTGRES_URL), then --jobs more into the same table, and single jobs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from conveyor.backends.base import NewJob
from tests.postgres.factory import postgres_backend


def jobs(n: int) -> list[NewJob]:
    return [
        NewJob(task="bench.noop", queue="default", args_json=f"[{i}]", kwargs_json="{}")
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    first: list[float] = []
    second: list[float] = []
    single: list[float] = []
    for _ in range(args.runs):
        with postgres_backend(None, None, {}) as backend:
            for rates in (first, second):
                batch = jobs(args.jobs)
                started = time.perf_counter()
                backend.enqueue_many(batch)
                rates.append(args.jobs / (time.perf_counter() - started))
            started = time.perf_counter()
            for job in jobs(1000):
                backend.enqueue_many([job])
            single.append((time.perf_counter() - started) / 1000 * 1e6)
    for name, values, unit in (
        (f"enqueue_many({args.jobs:,}) into an empty table", first, "jobs/s"),
        (f"enqueue_many({args.jobs:,}) into a table of {args.jobs:,}", second, "jobs/s"),
        ("enqueue_many([one job])", single, "µs per call"),
    ):
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name}: median {statistics.median(values):,.0f} {unit} (runs: {runs})")


if __name__ == "__main__":
    main()
