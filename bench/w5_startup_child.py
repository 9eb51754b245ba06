"""The worker process of w5_startup.py: ``conveyor worker`` as the CLI runs it, with the first
call of each start-up step timed (wall clock, UNIX seconds, and the process's CPU seconds), the
marks written as JSON to $W5_MARKS after each. No import before the first mark: it is where the
interpreter handed over.
"""

from __future__ import annotations

import time

#: Each mark: [UNIX seconds, CPU seconds of this process (user + system)].
MARKS: dict[str, list[float]] = {"main": [time.time(), time.process_time()]}

import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import conveyor.cli  # noqa: E402

MARKS["imported"] = [time.time(), time.process_time()]


SAVING = threading.Lock()


def save() -> None:
    # Whole or not at all: the process may be stopped at any moment; marks come from several
    # threads.
    path = os.environ["W5_MARKS"]
    with SAVING:
        with open(path + ".new", "w", encoding="utf-8") as out:
            json.dump(MARKS, out)
        os.replace(path + ".new", path)


def timed(owner: Any, attribute: str, name: str) -> None:
    """Mark the start and end of the first call of ``owner.attribute`` (sync or async)."""
    original: Callable[..., Any] = getattr(owner, attribute)

    def mark(suffix: str) -> None:
        MARKS.setdefault(f"{name}{suffix}", [time.time(), time.process_time()])
        save()

    if getattr(original, "__code__", None) and original.__code__.co_flags & 0x80:

        @functools.wraps(original)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            mark(".start")
            try:
                return await original(*args, **kwargs)
            finally:
                mark(".end")

        setattr(owner, attribute, async_wrapper)
        return

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark(".start")
        try:
            return original(*args, **kwargs)
        finally:
            mark(".end")

    setattr(owner, attribute, wrapper)


def install() -> None:
    import conveyor.app
    from conveyor.worker.heartbeater import Heartbeater
    from conveyor.worker.maintenance import Maintenance
    from conveyor.worker.registry import Registry
    from conveyor.worker.worker import Worker

    timed(conveyor.app, "open_backend", "backend")
    opened = vars(conveyor.app)["open_backend"]

    def open_backend(*args: Any, **kwargs: Any) -> Any:
        # The engine's class is imported by open_backend: its claim is wrapped on the instance.
        backend = opened(*args, **kwargs)
        # Every public call of the backend, wrapped on the instance: which of them run
        # before the first claim, and for how long.
        for attribute in dir(type(backend)):
            if attribute.startswith("_") or not callable(getattr(type(backend), attribute)):
                continue
            timed(backend, attribute, "first_claim" if attribute == "claim" else f"db.{attribute}")
        return backend

    vars(conveyor.app)["open_backend"] = open_backend
    timed(Worker, "run_async", "worker")
    timed(Registry, "start", "register")
    timed(Heartbeater, "start", "heartbeat_spawn")
    timed(Maintenance, "reap_gone", "reap_gone")
    timed(Worker, "_start", "first_start")
    # The engine, imported here rather than inside open_backend, so that its import and the
    # steps of its opening are told apart.
    if os.environ.get("CONVEYOR_BENCH_URL", "").startswith("postgresql"):
        from conveyor.backends.postgres.connection import Database
        from conveyor.backends.postgres.schema import Migrator

        MARKS["engine_imported"] = [time.time(), time.process_time()]
        timed(Migrator, "ensure", "schema_check")
        timed(Database, "open", "pool_open")
    else:
        from conveyor.backends.sqlite import SQLiteBackend

        MARKS["engine_imported"] = [time.time(), time.process_time()]
        timed(SQLiteBackend, "_check_schema", "schema_check")


if __name__ == "__main__":
    install()
    sys.argv = ["conveyor", *sys.argv[1:]]
    conveyor.cli.main()
