"""Storage engines. ``open_backend(url)`` picks one from the URL's scheme."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from conveyor.backends.base import Backend
    from conveyor.settings import Settings


def engine_of(url: str) -> str:
    """The engine ``url`` names, "sqlite", "postgres" or "redis", told from its form alone
    (no connection, no driver import)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres") or (scheme == "" and "=" in url):
        return "postgres"
    if scheme in ("redis", "rediss", "unix"):
        return "redis"
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db, "
        "postgresql://user@host/db or redis://host:6379/0"
    )


def opens_elsewhere(url: str) -> bool:
    """Whether other processes can open the store ``url`` names (``Backend.shared``), told
    from the URL alone: every store but an in-memory SQLite database."""
    if engine_of(url) != "sqlite":
        return True
    from conveyor.backends.sqlite.connection import path_from_url

    return path_from_url(url) != ":memory:"


#: The package of each engine, as ``open_backend`` imports it.
ENGINE_PACKAGES = {
    "sqlite": "conveyor.backends.sqlite",
    "postgres": "conveyor.backends.postgres",
    "redis": "conveyor.backends.redis",
}


def import_engine(engine: str) -> None:
    """Import the modules of ``engine`` (a name ``engine_of`` gives) ahead of ``open_backend``,
    for a process with time to spare before it opens its store; an engine that does not import
    (extra packages missing) is left for ``open_backend`` to report."""
    with contextlib.suppress(ImportError):
        importlib.import_module(ENGINE_PACKAGES[engine])


def open_backend(
    settings: Settings,
    clock: Callable[[], float] | None = None,
    *,
    check_schema: bool = True,
    pool: Any = None,
) -> Backend:
    """Open the store ``settings.url`` names. On open, a backend migrates the schema
    (``settings.auto_migrate``) or refuses an outdated one; ``check_schema=False`` skips both,
    for the commands that inspect or upgrade the schema themselves. ``pool``: the application's
    own psycopg ConnectionPool, whose connection string ``settings.url`` is."""
    engine = engine_of(settings.url)
    if engine == "sqlite":
        from conveyor.backends.sqlite import SQLiteBackend

        return SQLiteBackend(settings, clock=clock, check_schema=check_schema)
    if engine == "redis":
        try:
            from conveyor.backends.redis import RedisBackend
        except ImportError as exc:
            raise ConfigurationError(
                f"the Redis engine needs extra packages: pip install 'conveyor-jobs[redis]' ({exc})"
            ) from None
        return RedisBackend(settings, clock=clock, check_schema=check_schema)
    try:
        from conveyor.backends.postgres import PostgresBackend
    except ImportError as exc:
        raise ConfigurationError(
            "the PostgreSQL engine needs extra packages: "
            f"pip install 'conveyor-jobs[postgres]' ({exc})"
        ) from None
    backend: Backend = PostgresBackend(settings, clock=clock, check_schema=check_schema, pool=pool)
    return backend
