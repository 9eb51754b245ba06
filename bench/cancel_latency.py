"""Cancel latency: a running job of each kind -- a coroutine, a thread that watches
``ctx.cancelled``, a process-isolated function deaf to cancellation -- is cancelled at a random
moment of its run. Latency = from the ``app.cancel()`` call until the job's state reads
cancelled (looked at every 5 ms). One worker in another process, default lease and heartbeat.

    python bench/cancel_latency.py [--jobs 20] [--runs 1] [--url postgresql://...]
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import engine, finish, fresh_app, machine, parser, percentile
from conveyor import Conveyor
from conveyor.job import JobState

HERE = Path(__file__).resolve().parent
KINDS = {"async": "wait_async", "thread": "wait_thread", "process": "spin_process"}


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the worker")
        time.sleep(interval)


def state(app: Conveyor, job_id: int) -> JobState:
    return app.get_job(job_id).state


def measure(app: Conveyor, task: str, jobs: int) -> list[float]:
    latencies = []
    for _ in range(jobs):
        job_id = app.enqueue(task).id
        wait_for(lambda: state(app, job_id) is JobState.RUNNING, 30)  # noqa: B023
        time.sleep(random.uniform(0.5, 1.5))  # a random phase against the worker's looks
        requested = time.perf_counter()
        app.cancel(job_id)
        wait_for(lambda: state(app, job_id) is JobState.CANCELLED, 30)  # noqa: B023
        latencies.append((time.perf_counter() - requested) * 1000)
    return latencies


def one_run(url: str | None, synchronous: str, jobs: int) -> tuple[dict[str, list[float]], str]:
    app, _folder = fresh_app(url, synchronous)
    for name in [*KINDS.values(), "noop"]:
        app.task(name=name)(lambda: None)  # names only: the worker process has the real ones
    env = {
        **os.environ,
        "CONVEYOR_BENCH_URL": app.settings.url,
        "CONVEYOR_POSTGRES_SCHEMA": app.settings.postgres_schema,
        "CONVEYOR_REDIS_PREFIX": app.settings.redis_prefix,
        "PYTHONPATH": str(HERE),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from bench_app import app\n"
            "if __name__ == '__main__':\n"
            "    app.run_worker(concurrency=4)",
        ],
        env=env,
        cwd=HERE,
        stderr=subprocess.DEVNULL,
    )
    try:
        warm_up = app.enqueue("noop").id
        wait_for(lambda: state(app, warm_up) is JobState.SUCCEEDED, 30)
        return {kind: measure(app, task, jobs) for kind, task in KINDS.items()}, engine(app)
    finally:
        worker.terminate()
        worker.wait(30)
        finish(app)


def main() -> None:
    p = parser(__doc__ or "")
    p.set_defaults(runs=1)
    p.add_argument("--jobs", type=int, default=20, help="cancels of each kind per run")
    args = p.parse_args()
    results: dict[str, list[float]] = {kind: [] for kind in KINDS}
    described = ""
    for _ in range(args.runs):
        latencies, described = one_run(args.url, args.synchronous, args.jobs)
        for kind, values in latencies.items():
            results[kind] += values
    print(
        f"Cancel latency, {args.jobs * args.runs} cancels of each kind, {machine()}, {described}, "
        "worker in another process, default lease (30 s) and heartbeat (10 s)"
    )
    for kind, values in results.items():
        print(
            f"  {kind:8} p50 {statistics.median(values):.0f} ms, p95 {percentile(values, 95):.0f} "
            f"ms, max {max(values):.0f} ms"
        )


if __name__ == "__main__":
    main()
