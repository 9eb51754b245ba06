"""W5: worker start-up and crash recovery, with default lease, heartbeat and sweep settings.

- ready: from starting ``conveyor worker`` to its first job running (a job enqueued before).
- recovery: a worker runs N long jobs and is SIGKILLed; a new worker starts at once. Measured
  from the restart until every orphaned job is back (running again or queued).

    python bench/w5_recovery.py [--jobs 100] [--runs 3] [--url ...]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_app import io_sleep, started_at
from common import engine, finish, fresh_app, machine, parser, report
from conveyor import Conveyor
from conveyor.job import JobState

HERE = Path(__file__).resolve().parent


def start_worker(app: Conveyor, concurrency: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "conveyor.cli", "worker", "--app", "bench_app:app"]
    argv += ["--concurrency", str(concurrency), "--log-level", "warning"]
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "CONVEYOR_BENCH_URL": str(app.settings.url),
        "CONVEYOR_POSTGRES_SCHEMA": app.settings.postgres_schema,
        "CONVEYOR_REDIS_PREFIX": app.settings.redis_prefix,
    }
    return subprocess.Popen(argv, env=env, cwd=HERE)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.005) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise SystemExit("timed out")


def one_run(app: Conveyor, jobs: int) -> tuple[float, float]:
    first = app.get_task("started_at").enqueue()
    started = time.time()
    worker = start_worker(app, jobs)
    try:
        wait_for(lambda: app.get_job(first.id).state is JobState.SUCCEEDED, 30)
        # The job records when it started running, in this machine's clock.
        ready = float(app.get_job(first.id).result) - started
        sleepers = [app.get_task("io_sleep").job(3600.0) for _ in range(jobs)]
        ids = [job.id for job in app.enqueue_many(sleepers)]
        wait_for(lambda: app.stats()["default"].get(JobState.RUNNING, 0) == jobs, 60)
        orphaned = {job_id: app.get_job(job_id).lease_token for job_id in ids}
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker = start_worker(app, jobs)

        def all_back() -> bool:
            return all(app.get_job(i).lease_token != orphaned[i] for i in ids)

        recovery = wait_for(all_back, 120, interval=0.1)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    return ready, recovery


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=100)
    args = p.parse_args()
    ready: list[float] = []
    recovery: list[float] = []
    described = ""
    for _ in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)
        # The same task names as bench_app's, whose worker processes run them.
        app.task(name="started_at")(started_at.fn)
        app.task(name="io_sleep")(io_sleep.fn)
        r, c = one_run(app, args.jobs)
        ready.append(r)
        recovery.append(c)
        described = engine(app)
        finish(app)
    print(f"W5 start-up and recovery, {machine()}, {described}, default lease/heartbeat/sweep")
    report("  ready: start to first job running", ready, "s", lambda v: f"{v:.2f}")
    report(
        f"  recovery: restart to {args.jobs} orphaned jobs back",
        recovery,
        "s",
        lambda v: f"{v:.1f}",
    )


if __name__ == "__main__":
    main()
