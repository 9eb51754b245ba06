"""What the tests of the single enqueue's own sessions share (test_async_enqueue.py,
test_sync_enqueue.py): a Conveyor whose sessions carry names of their own, and ways to look at
them from outside."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from conveyor import Conveyor
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.sql import parse_queries
from conveyor.task import Task

A = parse_queries((Path(__file__).parent / "async_enqueue.sql").read_text(encoding="utf-8"))


class World:
    """A Conveyor whose sessions carry a name of their own, and a connection of the test's into
    its schema."""

    def __init__(self, app: Conveyor, name: str) -> None:
        self.app = app
        #: The application_name of the pool's sessions.
        self.pool_name = name
        #: The application_name of the app's async sessions.
        self.async_name = f"{name}-async"
        #: The application_name of the app's sessions for sync single enqueues.
        self.sync_name = f"{name}-sync"
        self.noop: Task[..., Any] = app.task(name="noop")(noop_task)

    @property
    def backend(self) -> PostgresBackend:
        backend = self.app.backend
        assert isinstance(backend, PostgresBackend)
        return backend

    def admin(self) -> psycopg.Connection[Any]:
        """A connection of the test's own into the app's schema."""
        from tests.postgres.conftest import inspect  # conftest's fixtures make Worlds

        return inspect(self.backend)

    def sessions(self, name: str | None = None) -> list[tuple[Any, ...]]:
        """The sessions named ``name`` (the async ones by default): pid, state, wait."""
        with psycopg.connect(self.app.settings.url, autocommit=True) as conn:
            named = {"name": name or self.async_name}
            return conn.execute(A["sessions_named"], named).fetchall()

    def pids(self, name: str | None = None) -> set[int]:
        return {int(row[0]) for row in self.sessions(name)}

    def jobs(self) -> int:
        with self.admin() as conn:
            row = conn.execute(A["count_jobs"]).fetchone()
        assert row is not None
        return int(row[0])

    def terminate(self, name: str | None = None) -> None:
        """End the sessions named ``name`` (the async ones by default), server-side."""
        with psycopg.connect(self.app.settings.url, autocommit=True) as conn:
            conn.execute(A["terminate"], {"name": name or self.async_name})
        wait_for(lambda: not self.sessions(name))


def noop_task(n: int) -> None:
    return None


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def one_round_trip(trace: Path) -> list[str]:
    """The messages a libpq trace says the client sent (their types), once it is checked that
    every one went out before the first answer came back."""
    lines = trace.read_text().splitlines()
    directions = [line[0] for line in lines if line[:2] in ("F\t", "B\t")]
    assert "F" not in directions[directions.index("B") :], "every message sent before an answer"
    return [line.split("\t")[2] for line in lines if line.startswith("F\t")]
