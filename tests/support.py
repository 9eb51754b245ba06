"""Shared test helpers: a fake clock and backend factories for every engine.

A backend factory is a context manager taking (tmp_path, clock, settings overrides) and yielding
a fresh, empty Backend that uses ``clock`` as "now" (None: the database's own clock). Engines
register here; the contract suite runs once per registered engine.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypedDict, Unpack

from conveyor.backends.base import Backend, NewJob
from conveyor.boottime import BootTime
from conveyor.limits.rates import RateLimit
from conveyor.settings import Settings


class FakeClock:
    """An injectable clock: time moves only when a test moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeBootClock:
    """An injectable boot clock (conveyor/boottime.py) for SQLite's leases: it moves only when a
    test moves it, and a reboot starts it again under another boot id."""

    def __init__(self, boot: str = "boot-1", start: float = 1000.0) -> None:
        self.boot = boot
        self.now = start

    def __call__(self) -> BootTime:
        return BootTime(self.boot, self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def reboot(self, boot: str) -> None:
        self.boot = boot
        self.now = 5.0


BackendFactory = Callable[
    [Path, Callable[[], float] | None, dict[str, Any]], AbstractContextManager[Backend]
]


_template: Path | None = None
_template_lock = threading.Lock()


def migrated_sqlite_file(path: Path) -> None:
    """Make ``path`` an empty SQLite job database at the latest schema version: a copy of one
    that this test process migrated once (migrating costs ten times as much as copying)."""
    shutil.copyfile(_sqlite_template(), path)


def _sqlite_template() -> Path:
    global _template
    with _template_lock:
        if _template is None:
            from conveyor.backends.sqlite import SQLiteBackend

            folder = Path(tempfile.mkdtemp(prefix="conveyor-test-template-"))
            atexit.register(_remove_template, folder, os.getpid())
            path = folder / "jobs.db"
            SQLiteBackend(Settings.load(env={}, url=f"sqlite:///{path}")).close()
            # Closing the last connection checkpoints the WAL into the file and removes it: the
            # one file is the whole database.
            assert sorted(folder.iterdir()) == [path], sorted(folder.iterdir())
            _template = path
        return _template


def _remove_template(folder: Path, creator: int) -> None:
    if os.getpid() == creator:  # a forked child inherited the atexit hook
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def sqlite_backend(
    tmp_path: Path, clock: Callable[[], float] | None, overrides: dict[str, Any]
) -> Iterator[Backend]:
    """A backend on ``tmp_path``/jobs.db: if there is no such file yet, an empty migrated one
    (unless ``overrides`` say whether to migrate: then the backend itself decides)."""
    from conveyor.backends.sqlite import SQLiteBackend

    path = tmp_path / "jobs.db"
    if "auto_migrate" not in overrides and not path.exists():
        migrated_sqlite_file(path)
    settings = Settings.load(env={}, url=f"sqlite:///{path}", **overrides)
    backend = SQLiteBackend(settings, clock=clock)
    try:
        yield backend
    finally:
        backend.close()


@contextmanager
def postgres_backend(
    tmp_path: Path, clock: Callable[[], float] | None, overrides: dict[str, Any]
) -> Iterator[Backend]:
    """A fresh schema in this session's test database (see tests/postgres/factory.py)."""
    from tests.postgres.factory import postgres_backend as factory

    with factory(tmp_path, clock, overrides) as backend:
        yield backend


@contextmanager
def redis_backend(
    tmp_path: Path, clock: Callable[[], float] | None, overrides: dict[str, Any]
) -> Iterator[Backend]:
    """A fresh key prefix on the test Redis server (see tests/redis_engine/factory.py)."""
    from tests.redis_engine.factory import redis_backend as factory

    with factory(tmp_path, clock, overrides) as backend:
        yield backend


@contextmanager
def redis_cluster_backend(
    tmp_path: Path, clock: Callable[[], float] | None, overrides: dict[str, Any]
) -> Iterator[Backend]:
    """A fresh key prefix on a private 3-master Redis Cluster (tests/redis_engine/cluster.py)."""
    from tests.redis_engine.factory import redis_cluster_backend as factory

    with factory(tmp_path, clock, overrides) as backend:
        yield backend


FACTORIES: dict[str, BackendFactory] = {
    "sqlite": sqlite_backend,
    "postgres": postgres_backend,
    "redis": redis_backend,
}
#: Engines that run only when CONVEYOR_TEST_BACKENDS names them (they start servers of their
#: own): the Redis engine on a Redis Cluster.
OPTIONAL_FACTORIES: dict[str, BackendFactory] = {"redis_cluster": redis_cluster_backend}
_named = {n.strip() for n in os.environ.get("CONVEYOR_TEST_BACKENDS", "").split(",")}
FACTORIES.update({n: f for n, f in OPTIONAL_FACTORIES.items() if n in _named})


def enabled_backends() -> list[str]:
    """CONVEYOR_TEST_BACKENDS (comma separated) picks engines; default: every registered one."""
    wanted = os.environ.get("CONVEYOR_TEST_BACKENDS")
    if not wanted:
        return list(FACTORIES)
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = set(names) - set(FACTORIES)
    if unknown:
        raise RuntimeError(f"CONVEYOR_TEST_BACKENDS names unknown engines: {sorted(unknown)}")
    return names


class JobFields(TypedDict, total=False):
    """The NewJob fields a test may set besides task and queue (mypy checks the names against
    NewJob where new_job builds one)."""

    args_json: str
    kwargs_json: str
    priority: int
    run_at: float | None
    delay: float
    max_attempts: int
    timeout: float | None
    idempotency_key: str | None
    idempotency_scope: str
    rate_key: str | None
    rate_limit: RateLimit | None
    depends_on: tuple[int, ...]
    depends_on_batch: tuple[int, ...]
    on_parent_failure: str | None
    workflow_id: str | None
    trace_context: str | None


def new_job(
    task: str = "tests.noop", queue: str = "default", **fields: Unpack[JobFields]
) -> NewJob:
    """A NewJob with plain JSON arguments, for tests that talk to a backend directly."""
    fields.setdefault("args_json", "[]")
    fields.setdefault("kwargs_json", "{}")
    return NewJob(task=task, queue=queue, **fields)


@contextmanager
def app_options(engine: str, folder: Path) -> Iterator[dict[str, Any]]:
    """``Conveyor(**options)`` for a fresh, empty database of ``engine``: a SQLite file in
    ``folder``, a PostgreSQL schema or a Redis key prefix of its own, dropped afterwards."""
    if engine == "sqlite":
        yield {"url": f"sqlite:///{folder / 'jobs.db'}"}
        return
    if engine == "redis":
        from tests.redis_engine.factory import redis_database

        with redis_database() as (url, prefix):
            yield {"url": url, "redis_prefix": prefix}
        return
    from tests.postgres.factory import new_schema, session_database

    database, schema = session_database(), new_schema()
    try:
        yield {"url": database.url, "postgres_schema": schema}
    finally:
        database.drop_schema(schema)
