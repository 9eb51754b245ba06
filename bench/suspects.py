"""Suspects under a backlog: how long until every suspect has run, and what the others lose.

A worker holding N jobs dies (simulated: a registered worker claims N noop jobs and is declared
dead, which is what a SIGKILLed worker's rescue does) while ``conveyor worker --processes 2``
works through a backlog of short jobs (each sleeps ``--sleep`` seconds, suspects too). The dead
worker's jobs become suspects, which run one at a time, alone, on the one worker that drains for
them while the other keeps working.

- suspects: seconds from the death until every suspect has succeeded.
- throughput meanwhile: the other jobs finished per second over that same time, with suspects
  and, in a run without them, over a window as long at the same point of the backlog.
- throughput overall: the other jobs finished per second from the death until the backlog is
  done, with suspects and, without them, from the same point of the backlog.

    python bench/suspects.py [--suspects 100] [--backlog 10000] [--sleep 0.01] [--runs 3]
                             [--concurrency 10] [--url ...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench_app import io_sleep
from common import engine, finish, fresh_app, machine, parser, report
from conveyor import Conveyor
from conveyor.job import JobState
from conveyor.worker_info import WorkerRegistration

HERE = Path(__file__).resolve().parent
GHOST = "ghost"
#: Finished jobs before the death: both worker processes are up and busy.
WARM = 500


def start_workers(app: Conveyor, concurrency: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "conveyor.cli", "worker", "--app", "bench_app:app"]
    argv += ["--processes", "2", "--concurrency", str(concurrency)]
    argv += ["--log-level", os.environ.get("BENCH_LOG_LEVEL", "warning")]
    env = {
        **os.environ,
        "PYTHONPATH": str(HERE),
        "CONVEYOR_BENCH_URL": str(app.settings.url),
        "CONVEYOR_POSTGRES_SCHEMA": app.settings.postgres_schema,
        "CONVEYOR_REDIS_PREFIX": app.settings.redis_prefix,
    }
    return subprocess.Popen(argv, env=env, cwd=HERE)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise SystemExit("timed out")


def succeeded(app: Conveyor, queue: str = "default") -> int:
    return app.stats().get(queue, {}).get(JobState.SUCCEEDED, 0)


def one_run(
    app: Conveyor,
    suspects: int,
    backlog: int,
    concurrency: int,
    sleep: float,
    window: float | None,
) -> tuple[float, float, float]:
    """(seconds until every suspect ran, or ``window``; others finished per second then;
    others finished per second until the backlog is done)."""
    task = app.task(name="io_sleep")(io_sleep.fn)
    if suspects:
        app.enqueue_many([task.options(queue="suspects").job(sleep) for _ in range(suspects)])
        app.backend.register_worker(
            WorkerRegistration(
                id=GHOST,
                host="elsewhere",
                pid=1,
                machine=None,
                queues=None,
                concurrency=suspects,
                beat_interval=1.0,
                dead_after=3600.0,
            )
        )
        assert len(app.backend.claim(GHOST, None, suspects, 3600.0)) == suspects
    app.enqueue_many([task.job(sleep) for _ in range(backlog)])
    workers = start_workers(app, concurrency)
    try:
        wait_for(lambda: succeeded(app) >= WARM, 120)
        before = succeeded(app)
        started = time.monotonic()
        if suspects:
            app.backend.reap_dead_workers(known_dead=[GHOST])
            # One cheap read a poll, as in the run without suspects: the bench must not slow
            # the workers down by watching them.
            wait_for(lambda: succeeded(app, "suspects") >= suspects, 600)
        else:
            assert window is not None
            time.sleep(window)
        took = time.monotonic() - started
        done = succeeded(app)
        if done >= backlog:
            print("  (the backlog ran out before the suspects had run: make it longer)")
        all_done = wait_for(lambda: succeeded(app) >= backlog, 600) + took
        return took, (done - before) / took, (backlog - before) / all_done
    finally:
        workers.terminate()
        workers.wait(60)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--suspects", type=int, default=100)
    p.add_argument("--backlog", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=10, help="per worker process")
    p.add_argument("--sleep", type=float, default=0.01, help="seconds every job takes")
    args = p.parse_args()
    took: list[float] = []
    with_suspects: list[float] = []
    without: list[float] = []
    overall_with: list[float] = []
    overall_without: list[float] = []
    label = ""
    for _ in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)
        label = label or engine(app)
        try:
            seconds, rate, overall = one_run(
                app, args.suspects, args.backlog, args.concurrency, args.sleep, None
            )
        finally:
            finish(app)
        took.append(seconds)
        with_suspects.append(rate)
        overall_with.append(overall)
        app, _folder = fresh_app(args.url, args.synchronous)
        try:
            _, rate, overall = one_run(app, 0, args.backlog, args.concurrency, args.sleep, seconds)
            without.append(rate)
            overall_without.append(overall)
        finally:
            finish(app)
    print(f"{label}; {machine()}")
    print(
        f"{args.suspects} suspects, backlog {args.backlog:,} jobs of {args.sleep:g} s, "
        f"2 worker processes x {args.concurrency}"
    )
    report("every suspect has run after", took, "s", lambda v: f"{v:.2f}")
    report("others meanwhile, with suspects", with_suspects, "jobs/s")
    report("others, same window, without suspects", without, "jobs/s")
    report("others until the backlog is done, with suspects", overall_with, "jobs/s")
    report("others until the backlog is done, without suspects", overall_without, "jobs/s")


if __name__ == "__main__":
    main()
