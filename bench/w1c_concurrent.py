"""W1c: many enqueuers at once, the shape of a web server. 8 threads of one process, then 8
processes, each enqueueing single jobs (one call, one transaction each) as fast as it can for
--seconds; beside them the bare driver doing the same in the same run (one connection per
thread or process: psycopg's prepared INSERT on PostgreSQL, sqlite3 on SQLite) and, on
PostgreSQL with pgbench on the PATH, ``pgbench -c 8 -M prepared`` with that INSERT.

python bench/w1c_concurrent.py [--seconds 10] [--workers 8] [--runs 3] [--url postgresql://...]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.synchronize import Barrier
from typing import Any

from common import (
    PG_QUERIES,
    engine,
    finish,
    fresh_app,
    is_postgres,
    machine,
    parser,
    rate_in_processes,
    report,
)
from conveyor import Conveyor
from w1s_ceiling import Ceiling

Writer = Callable[[int], object]


def conveyor_writer(app: Conveyor) -> Writer:
    task = app.tasks.get("noop")
    if task is None:

        @app.task(name="noop")
        def noop(n: int) -> None:
            return None

        task = noop
    return task.enqueue


def in_threads(workers: int, seconds: float, make: Callable[[], Writer]) -> float:
    """Jobs per second of ``workers`` threads, each calling its own writer in a loop."""
    counts = [0] * workers
    ready = threading.Barrier(workers + 1)
    stop = threading.Event()

    def run(index: int) -> None:
        write = make()
        write(0)  # connected and warm before the clock starts
        ready.wait()
        done = 0
        while not stop.is_set():
            write(done)
            done += 1
        counts[index] = done

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


def _child(settings: dict[str, Any], kind: str, seconds: float, ready: Barrier, out: Any) -> None:
    app = Conveyor(**settings)
    write = conveyor_writer(app) if kind == "conveyor" else Ceiling(app).write
    write(0)
    ready.wait()
    deadline = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < deadline:
        write(done)
        done += 1
    out.put(done)
    app.close()


def in_processes(kind: str, app: Conveyor, workers: int, seconds: float) -> float:
    """Jobs per second of ``workers`` processes (spawned: no thread of this one in them)."""
    return rate_in_processes(app, workers, _child, kind, seconds)


def pgbench(app: Conveyor, workers: int, seconds: float) -> float | None:
    """``pgbench -n -M prepared -c N -j N`` with the ceiling's INSERT; None without pgbench."""
    if shutil.which("pgbench") is None:
        return None
    values = "('default', 'noop', '[0]')"
    script = re.sub(r"\(%s, %s, %s::json", values[:-1] + "::json", PG_QUERIES["ceiling_insert_job"])
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
        file.write(script + ";\n")
    env = {**os.environ, "PGOPTIONS": f"-c search_path={app.settings.postgres_schema}"}
    command = ["pgbench", "-n", "-M", "prepared", "-c", str(workers), "-j", str(workers)]
    command += ["-T", str(max(1, round(seconds))), "-f", file.name, app.settings.url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    os.unlink(file.name)
    found = re.search(r"tps = ([0-9.]+)", done.stdout)
    return float(found.group(1)) if found else None


def one_run(app: Conveyor, workers: int, seconds: float, url: str | None) -> dict[str, float]:
    # The pool opens with one connection and grows while callers wait: let it grow first, as
    # it has in a server that has been up for a while.
    in_threads(workers, min(1.0, seconds), lambda: conveyor_writer(app))
    measures: dict[str, Callable[[], float | None]] = {
        "bare driver, threads": lambda: in_threads(workers, seconds, lambda: Ceiling(app).write),
        "enqueue, threads": lambda: in_threads(workers, seconds, lambda: conveyor_writer(app)),
        "bare driver, processes": lambda: in_processes("bare", app, workers, seconds),
        "enqueue, processes": lambda: in_processes("conveyor", app, workers, seconds),
    }
    if is_postgres(url):
        measures["pgbench -c N -M prepared"] = lambda: pgbench(app, workers, seconds)
    figures: dict[str, float] = {}
    for name, measure in measures.items():
        value = measure()
        if value is not None:
            figures[name] = value
    return figures


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=8)
    args = p.parse_args()
    figures: dict[str, list[float]] = {}
    described = ""
    for _ in range(args.runs):
        app, _folder = fresh_app(args.url, args.synchronous)
        for name, value in one_run(app, args.workers, args.seconds, args.url).items():
            figures.setdefault(name, []).append(value)
        described = engine(app)
        finish(app)
    print(
        f"W1c concurrent single enqueue, {args.workers} threads / processes for "
        f"{args.seconds:g} s, {machine()}, {described}"
    )
    for name, values in figures.items():
        report(f"  {name}", values, "jobs/s")
    for kind in ("threads", "processes"):
        ours, bare = figures[f"enqueue, {kind}"], figures[f"bare driver, {kind}"]
        fractions = [a / b for a, b in zip(ours, bare, strict=True)]
        report(f"  enqueue / bare driver, {kind}", fractions, "", lambda v: f"{v:.0%}")


if __name__ == "__main__":
    main()
