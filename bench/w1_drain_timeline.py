"""Where the time of one W1 drain goes on PostgreSQL: N no-op jobs, ``conveyor worker
--concurrency 100`` spawned as w1_cli_drain.py spawns it (claim batch 500), its start-up steps
and every claim and finish timed (w1_drain_timeline_child.py), beside the moments the queue's
own state says the first and the last job are done.

    python bench/w1_drain_timeline.py --url postgresql://... [--jobs 10000]

Prints the marks in order (seconds after the spawn, and the worker's CPU seconds by then), then
each claim and finish: when it ran, how long, the CPU of the thread that made it, its jobs; and
per job, the calls' wall and thread CPU. Wall figures grow with the machine's load; CPU less.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import finish, fresh_app, is_postgres, parser
from w1_cli_drain import POLL, Waiting

HERE = Path(__file__).resolve().parent


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--batch-size", type=int, default=500)
    args = p.parse_args()
    if not is_postgres(args.url):
        raise SystemExit("--url postgresql://... is required")
    app, _folder = fresh_app(args.url, args.synchronous, batch_size=args.batch_size)
    app.task(name="noop")(lambda: None)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "timeline.json"
        try:
            app.enqueue_many([app.get_task("noop").job() for _ in range(args.jobs)])
            waiting = Waiting(app)
            # Bytecode cached, as installed packages run (see w1_cli_drain.py).
            inherited = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env = {
                **inherited,
                "PYTHONPATH": str(HERE),
                "CONVEYOR_BENCH_URL": str(app.settings.url),
                "CONVEYOR_POSTGRES_SCHEMA": app.settings.postgres_schema,
                "CONVEYOR_BATCH_SIZE": str(args.batch_size),
                "TIMELINE_OUT": str(out),
            }
            argv = [sys.executable, str(HERE / "w1_drain_timeline_child.py"), "worker"]
            argv += ["--app", "bench_app:app", "--concurrency", "100", "--log-level", "warning"]
            spawned = time.time()
            worker = subprocess.Popen(argv, env=env, cwd=HERE)
            first = None
            while (left := waiting.count()) > 0:
                if first is None and left < args.jobs:
                    first = time.time()
                if worker.poll() is not None:
                    raise SystemExit(f"the worker stopped with {left} jobs left")
                time.sleep(POLL / 4)
            done = time.time()
            worker.send_signal(signal.SIGTERM)
            worker.wait()
            waiting.close()
            timeline: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        finally:
            finish(app)
    report(timeline, spawned, first or done, done, args.jobs)


def report(timeline: dict[str, Any], spawned: float, first: float, done: float, jobs: int) -> None:
    print(
        f"W1 drain timeline ({jobs} no-op jobs), load {os.getloadavg()[0]:.1f}: spawn to done "
        f"{done - spawned:.3f} s ({jobs / (done - spawned):,.0f} jobs/s), after the first job "
        f"done {jobs / (done - first):,.0f} jobs/s"
    )
    marks = dict(timeline["marks"])
    marks["first job done (queue state)"] = [first, float("nan")]
    marks["all done (queue state)"] = [done, float("nan")]
    for name, (at, cpu) in sorted(marks.items(), key=lambda item: item[1][0]):
        print(f"  {at - spawned:7.3f} s  CPU {cpu:6.3f} s  {name}")
    totals: dict[str, list[float]] = {}
    for name, start, end, cpu, count in timeline["calls"]:
        print(
            f"  {name:12s} {start - spawned:7.3f} -> {end - spawned:7.3f} s "
            f"({(end - start) * 1e3:6.1f} ms, thread CPU {cpu * 1e3:5.1f} ms) {count} jobs"
        )
        total = totals.setdefault(name, [0, 0.0, 0.0])
        total[0] += count
        total[1] += end - start
        total[2] += cpu
    for name, (count, wall, cpu) in totals.items():
        per = max(count, 1)
        print(
            f"  {name}: {int(count)} jobs, wall {wall / per * 1e6:.1f} µs/job, "
            f"thread CPU {cpu / per * 1e6:.1f} µs/job"
        )


if __name__ == "__main__":
    main()
