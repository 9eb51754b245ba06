"""W2: pickup latency with an idle worker: enqueue 200 jobs one at a time, 20 ms apart; each job
returns when it started. Latency = start - enqueue call.

    python bench/w2_latency.py [--worker thread|process] [--jobs 200] [--runs 3]
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable

from bench_app import started_at
from common import engine, finish, fresh_app, machine, parser, percentile, spawn_worker
from conveyor import Conveyor, Task
from conveyor.job import JobState


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise SystemExit("timed out waiting for the worker")


def measure(app: Conveyor, task: Task[..., float], jobs: int, gap: float) -> list[float]:
    enqueued: list[tuple[int, float]] = []
    for _ in range(jobs):
        before = time.time()
        job = task.enqueue()
        enqueued.append((job.id, before))
        time.sleep(gap)

    def all_done() -> bool:
        counts = app.stats().get("default", {})
        return counts.get(JobState.SUCCEEDED, 0) >= jobs + 1

    wait_for(all_done, 60)
    return [(app.get_job(job_id).result - before) * 1000 for job_id, before in enqueued]


def one_run(
    url: str | None, synchronous: str, mode: str, jobs: int, gap: float
) -> tuple[list[float], str]:
    app, _folder = fresh_app(url, synchronous)
    # The same task name as bench_app's, whose worker process runs it.
    task = app.task(name="started_at")(started_at.fn)
    task.enqueue()  # warm-up job: proves the worker is up before measuring
    process = None
    worker = None
    if mode == "process":
        process = spawn_worker(app, 10)
    else:
        worker = app.worker(concurrency=10, install_signal_handlers=False)
        threading.Thread(target=worker.run, daemon=True).start()
    try:
        wait_for(lambda: app.stats().get("default", {}).get(JobState.SUCCEEDED, 0) >= 1, 30)
        return measure(app, task, jobs, gap), engine(app)
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        if worker is not None:
            worker.stop()
            worker.stopped.wait(10)
        finish(app)


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--gap", type=float, default=0.02, help="seconds between enqueues")
    p.add_argument(
        "--worker",
        choices=["thread", "process"],
        default="process",
        help="worker in this process (thread) or in another process",
    )
    args = p.parse_args()
    rows = []
    described = ""
    for _ in range(args.runs):
        latencies, described = one_run(args.url, args.synchronous, args.worker, args.jobs, args.gap)
        rows.append(
            (
                statistics.median(latencies),
                percentile(latencies, 95),
                percentile(latencies, 99),
                max(latencies),
            )
        )
    print(
        f"W2 pickup latency, {args.jobs} jobs {args.gap * 1000:g} ms apart, {machine()}, "
        f"{described}, idle worker in another "
        f"{'process' if args.worker == 'process' else 'thread of this process'}"
    )
    for i, name in enumerate(["p50", "p95", "p99", "max"]):
        values = [row[i] for row in rows]
        print(
            f"  {name}: {statistics.median(values):.2f} ms (runs: "
            f"{', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
