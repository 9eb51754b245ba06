"""The worker process of w1_drain_timeline.py: ``conveyor worker`` as the CLI runs it, with the
first call of each start-up step marked and every claim and finish of the drain timed (wall
clock, and the CPU time of the thread that made the call). Everything is written as JSON to
$TIMELINE_OUT when the worker exits: nothing is written while it drains. No import before the
first mark: it is where the interpreter handed over.
"""

from __future__ import annotations

import time

#: Each mark: [UNIX seconds, CPU seconds of this process (user + system)].
MARKS: dict[str, list[float]] = {"main": [time.time(), time.process_time()]}

import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import conveyor.cli  # noqa: E402

MARKS["imported"] = [time.time(), time.process_time()]

#: Each claim and finish: [name, start, end (UNIX seconds), thread CPU seconds, jobs].
CALLS: list[list[Any]] = []


def mark(name: str) -> None:
    MARKS.setdefault(name, [time.time(), time.process_time()])


def marked(owner: Any, attribute: str, *, every_call: bool = False) -> None:
    """Mark the start and end of the first call of ``owner.attribute``; with ``every_call``,
    time each call too (the jobs it took or wrote: the length of what it returned)."""
    original: Callable[..., Any] = getattr(owner, attribute)
    name = f"{owner.__name__}.{attribute}"

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(f"{name} start")
        started, cpu = time.time(), time.thread_time()
        result = original(*args, **kwargs)
        mark(f"{name} end")
        if every_call:
            jobs = len(result) if hasattr(result, "__len__") else 0
            CALLS.append([attribute, started, time.time(), time.thread_time() - cpu, jobs])
        return result

    setattr(owner, attribute, wrapper)


def install() -> None:
    from conveyor.backends.postgres.backend import PostgresBackend
    from conveyor.backends.postgres.connection import Database
    from conveyor.backends.postgres.schema import Migrator
    from conveyor.worker.heartbeater import Heartbeater
    from conveyor.worker.worker import Worker

    MARKS["engine_imported"] = [time.time(), time.process_time()]
    marked(Migrator, "ensure")
    marked(Database, "open")
    marked(Heartbeater, "start")
    marked(Worker, "_start")
    for name in ("register_worker", "list_workers", "claim_suspect", "rescue_expired"):
        marked(PostgresBackend, name)
    marked(PostgresBackend, "claim", every_call=True)
    marked(PostgresBackend, "finish_many", every_call=True)


def save() -> None:
    with open(os.environ["TIMELINE_OUT"], "w", encoding="utf-8") as out:
        json.dump({"marks": MARKS, "calls": CALLS}, out)


if __name__ == "__main__":
    install()
    sys.argv = ["conveyor", *sys.argv[1:]]
    try:
        conveyor.cli.main()
    finally:
        save()
