"""W5 start-up, where the time goes: from spawning ``conveyor worker`` to its first job running
(a job enqueued before the spawn records when it started), and the same start with each step
timed (w5_startup_child.py: the CLI with the first call of each step wrapped), alternating in
the same run. Also the bare interpreter's start (``python -c pass``) and, once, the imports of
the worker process by top-level package (``python -X importtime``, self times summed).

    python bench/w5_startup.py [--url postgresql://...] [--runs 3]

Targets (issue 15): 0.25 s on PostgreSQL, 0.15 s on SQLite. The figures are wall-clock times
on a shared machine: compare the steps with each other and with the bare interpreter.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from common import engine, finish, fresh_app, machine, parser, report
from conveyor import Conveyor
from conveyor.job import JobState

HERE = Path(__file__).resolve().parent
#: Whether the worker processes may cache bytecode (--no-bytecode-cache: compile every start).
CACHE_BYTECODE = True


def environment(app: Conveyor, src: str | None = None, **extra: str) -> dict[str, str]:
    """The worker's environment; ``src``: a folder holding another copy of the conveyor
    package (--baseline), found before the installed one."""
    inherited = dict(os.environ)
    if CACHE_BYTECODE:
        # As installed packages run: compiled once (the warm-up start), then read from the cache.
        inherited.pop("PYTHONDONTWRITEBYTECODE", None)
    return {
        **inherited,
        "PYTHONPATH": str(HERE) if src is None else f"{src}{os.pathsep}{HERE}",
        "CONVEYOR_BENCH_URL": str(app.settings.url),
        "CONVEYOR_POSTGRES_SCHEMA": app.settings.postgres_schema,
        "CONVEYOR_SQLITE_SYNCHRONOUS": app.settings.sqlite_synchronous,
        **extra,
    }


WORKER_ARGS = ["worker", "--app", "bench_app:app", "--concurrency", "10", "--log-level", "warning"]


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.005)


def one_start(app: Conveyor, argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds from the spawn to the first job running, and the worker process's CPU seconds
    by then."""
    job = app.get_task("started_cpu").enqueue()
    spawned = time.time()
    worker = subprocess.Popen(argv, env=env, cwd=HERE)
    try:
        wait_for(lambda: app.get_job(job.id).state is JobState.SUCCEEDED, 60)
    finally:
        # A clean exit: the next start finds no dead predecessor to reap.
        worker.send_signal(signal.SIGTERM)
        worker.wait()
    started, cpu = app.get_job(job.id).result
    return float(started) - spawned, float(cpu)


def bare_interpreter() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def imports_by_package(app: Conveyor) -> list[tuple[str, float]]:
    """Self import times (seconds) of a timed worker start, summed by top-level package."""
    argv = [sys.executable, "-X", "importtime", str(HERE / "w5_startup_child.py"), *WORKER_ARGS]
    with tempfile.TemporaryDirectory() as folder:
        env = environment(app, W5_MARKS=str(Path(folder) / "marks.json"))
        job = app.get_task("started_cpu").enqueue()
        worker = subprocess.Popen(argv, env=env, cwd=HERE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: app.get_job(job.id).state is JobState.SUCCEEDED, 60)
        finally:
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate()
    totals: dict[str, float] = defaultdict(float)
    for line in err.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|(\s*)(\S+)", line)
        if match:
            totals[match[3].lstrip().split(".")[0]] += int(match[1]) / 1e6
    return sorted(totals.items(), key=lambda kv: -kv[1])


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile every module at every start, as PYTHONDONTWRITEBYTECODE or a read-only "
        "install without .pyc files do",
    )
    p.add_argument(
        "--baseline",
        metavar="SRC",
        help="a folder with another conveyor package (e.g. git archive of an older commit's "
        "src): its `conveyor worker` start is measured too, alternating with this one's",
    )
    args = p.parse_args()
    global CACHE_BYTECODE
    CACHE_BYTECODE = not args.no_bytecode_cache
    plain: list[float] = []
    plain_cpu: list[float] = []
    baseline: list[float] = []
    baseline_cpu: list[float] = []
    timed: list[float] = []
    bare: list[float] = []
    marks: dict[str, list[float]] = defaultdict(list)
    marks_cpu: dict[str, list[float]] = defaultdict(list)
    app, _folder = fresh_app(args.url, args.synchronous)
    app.task(name="started_cpu")(lambda: [0.0, 0.0])  # run by the workers (bench_app)
    try:
        with tempfile.TemporaryDirectory() as folder:
            marks_file = Path(folder) / "marks.json"
            plain_argv = [sys.executable, "-m", "conveyor.cli", *WORKER_ARGS]
            one_start(app, plain_argv, environment(app))  # warm-up: bytecode cached, if allowed
            if args.baseline:
                one_start(app, plain_argv, environment(app, args.baseline))
            for _ in range(args.runs):
                bare.append(bare_interpreter())
                wall, cpu = one_start(app, plain_argv, environment(app))
                plain.append(wall)
                plain_cpu.append(cpu)
                if args.baseline:
                    wall, cpu = one_start(app, plain_argv, environment(app, args.baseline))
                    baseline.append(wall)
                    baseline_cpu.append(cpu)
                child = [sys.executable, str(HERE / "w5_startup_child.py"), *WORKER_ARGS]
                spawned = time.time()
                ready, cpu = one_start(app, child, environment(app, W5_MARKS=str(marks_file)))
                timed.append(ready)
                for name, (at, used) in json.loads(marks_file.read_text(encoding="utf-8")).items():
                    marks[name].append(at - spawned)
                    marks_cpu[name].append(used)
                marks["first job running"].append(ready)
                marks_cpu["first job running"].append(cpu)
        packages = imports_by_package(app)
        described = engine(app)
    finally:
        finish(app)
    cache = "on" if CACHE_BYTECODE else "off"
    print(
        f"W5 start-up, {machine()}, {described}, bytecode cache {cache}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    report("  bare interpreter (python -c pass)", bare, "s", lambda v: f"{v:.3f}")
    report("  spawn to first job running (conveyor worker)", plain, "s", lambda v: f"{v:.3f}")
    report("    its CPU time by then (user + system)", plain_cpu, "s", lambda v: f"{v:.3f}")
    if baseline:
        report(f"  the same from {args.baseline} (baseline)", baseline, "s", lambda v: f"{v:.3f}")
        report("    its CPU time by then", baseline_cpu, "s", lambda v: f"{v:.3f}")
        ratios = [b / p for b, p in zip(baseline, plain, strict=True)]
        report("  baseline / this, wall, run by run", ratios, "x", lambda v: f"{v:.2f}")
        ratios = [b / p for b, p in zip(baseline_cpu, plain_cpu, strict=True)]
        report("  baseline / this, CPU, run by run", ratios, "x", lambda v: f"{v:.2f}")
    report("  the same, steps timed (w5_startup_child.py)", timed, "s", lambda v: f"{v:.3f}")
    print(
        "  steps, median seconds after the spawn (and since the mark before); the worker's "
        "CPU seconds by then (and since), which the machine's load inflates less:"
    )
    previous = previous_cpu = 0.0
    for name, at in sorted(marks.items(), key=lambda kv: statistics.median(kv[1])):
        median = statistics.median(at)
        used = statistics.median(marks_cpu[name])
        print(
            f"    {median:6.3f}  (+{median - previous:.3f})   CPU {used:6.3f}  "
            f"(+{used - previous_cpu:.3f})  {name}"
        )
        previous, previous_cpu = median, used
    total = sum(seconds for _, seconds in packages)
    print(f"  imports of a worker process (self times, one run): {total:.3f} s in all")
    for name, seconds in packages[:12]:
        print(f"    {seconds:6.3f}  {name}")


if __name__ == "__main__":
    main()
