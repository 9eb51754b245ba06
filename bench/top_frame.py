"""What one frame of ``conveyor top`` costs the database, on a table of waiting jobs: each read
of the frame timed on its own beside the whole frame. The reference in the same run is the
count by queue and state (``stats``), which ``conveyor stats``, ``/api/stats`` and ``/metrics``
already make: the frame adds the oldest ready job per queue, the running jobs per worker and the
per-minute aggregates of the last minutes.

    python bench/top_frame.py [--url URL] [--jobs 200000] [--queues 4] [--running 50] [--runs 5]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from common import engine, finish, fresh_app, machine, parser
from conveyor.cli.top import RATE_MINUTES, read_frame

BATCH = 10_000


def timed(read: Callable[[], Any], runs: int) -> list[float]:
    times: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=200_000, help="queued jobs")
    p.add_argument("--queues", type=int, default=4)
    p.add_argument("--running", type=int, default=50, help="jobs claimed (running) by 5 workers")
    args = p.parse_args()
    app, _ = fresh_app(args.url, args.synchronous)
    try:
        tasks = []
        for q in range(args.queues):

            @app.task(name=f"noop{q}", queue=f"q{q}")
            def noop() -> None:
                return None

            tasks.append(noop)
        started = time.perf_counter()
        for first in range(0, args.jobs, BATCH):
            count = min(BATCH, args.jobs - first)
            app.enqueue_many([tasks[(first + i) % len(tasks)].job() for i in range(count)])
        filled = time.perf_counter() - started
        backend = app.backend
        for worker in range(5):
            backend.claim(f"w-{worker}", None, args.running // 5, 600.0)
        print(f"{machine()}; {engine(app)}")
        print(f"{args.jobs:,} queued jobs in {args.queues} queues (written in {filled:.1f} s)")
        reads: dict[str, Callable[[], Any]] = {
            "stats (reference: the count /api/stats makes)": backend.stats,
            "oldest_ready": backend.oldest_ready,
            "running_by_worker": backend.running_by_worker,
            "list_workers": backend.list_workers,
            "minute_stats (finishes per minute)": lambda: backend.minute_stats(
                backend.now() - RATE_MINUTES * 60
            ),
            "whole frame": lambda: read_frame(app),
        }
        for name, read in reads.items():
            read()  # warm the cache and the plan
            values = timed(read, args.runs)
            shown = ", ".join(f"{v:.1f}" for v in values)
            print(f"{name}: {statistics.median(values):.1f} ms (median of {args.runs}: {shown})")
    finally:
        finish(app)


if __name__ == "__main__":
    main()
