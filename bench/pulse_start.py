"""Heartbeat process start-up: the CPU time (user + system) a heartbeat process spends from its
start until its first beat is in the database -- interpreter, imports, opening the store, the
beat -- as every worker pays it when it starts (and again whenever its heartbeat process dies).

    python bench/pulse_start.py [--runs 10] [--url postgresql://...]

Python compiles modules whose bytecode is not cached (PYTHONDONTWRITEBYTECODE, a read-only
install) at every start, which costs more: the header says which case was measured.
"""

from __future__ import annotations

import os
import resource
import time

from common import engine, finish, fresh_app, machine, parser, report
from conveyor import Conveyor
from conveyor.worker.heartbeater import Heartbeater
from conveyor.worker.registry import Registry

WORKER = "bench-pulse"


def last_beat(app: Conveyor) -> float:
    return next(w.last_beat_at for w in app.backend.list_workers() if w.id == WORKER)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_start(app: Conveyor) -> tuple[float, float]:
    """CPU and wall-clock milliseconds of one heartbeat process until its first beat."""
    # A long interval: the first beat comes at once, the next not before it is killed.
    registry = Registry(app.backend, worker_id=WORKER, queues=None, concurrency=1, interval=60)
    registry.start()
    registered = last_beat(app)
    time.sleep(0.01)  # the beat's database time must differ from the registration's
    heartbeater = Heartbeater(
        app.backend, registry.registration, lambda _report: None, lambda: None, lease=30
    )
    cpu, started = children_cpu(), time.perf_counter()
    heartbeater.start()
    while last_beat(app) == registered:
        time.sleep(0.002)
    wall = time.perf_counter() - started
    heartbeater.stop()  # killed and reaped: its CPU time is counted from here on
    registry.stop()
    return (children_cpu() - cpu) * 1000, wall * 1000


def main() -> None:
    p = parser(__doc__ or "")
    p.set_defaults(runs=10)
    args = p.parse_args()
    app, _folder = fresh_app(args.url, args.synchronous)
    try:
        one_start(app)  # warm-up: caches bytecode where it can be cached
        starts = [one_start(app) for _ in range(args.runs)]
        described = engine(app)
    finally:
        finish(app)
    # What the heartbeat processes inherited.
    cached = "off" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "on"
    print(f"Heartbeat process start, {machine()}, {described}, bytecode cache {cached}")
    report("  CPU until the first beat", [cpu for cpu, _ in starts], "ms")
    report("  wall clock until the first beat", [wall for _, wall in starts], "ms")


if __name__ == "__main__":
    main()
