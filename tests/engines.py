"""A database on each enabled engine, named the way users name one: a URL, plus the
environment the CLI needs to find it (the PostgreSQL schema of the test)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conveyor import Conveyor
from tests.support import migrated_sqlite_file


@dataclass(frozen=True)
class Engine:
    name: str
    url: str
    #: CONVEYOR_* variables that point the CLI at this database.
    env: dict[str, str] = field(default_factory=dict)

    def app(self) -> Conveyor:
        schema = self.env.get("CONVEYOR_POSTGRES_SCHEMA")
        prefix = self.env.get("CONVEYOR_REDIS_PREFIX")
        if schema is not None:
            return Conveyor(self.url, postgres_schema=schema)
        if prefix is not None:
            return Conveyor(self.url, redis_prefix=prefix)
        return Conveyor(self.url)


@contextmanager
def engine(name: str, folder: Path) -> Iterator[Engine]:
    """A fresh, empty, migrated database of engine ``name``."""
    if name == "sqlite":
        path = folder / "jobs.db"
        if not path.exists():
            migrated_sqlite_file(path)
        yield Engine(name, f"sqlite:///{path}")
        return
    if name == "redis":
        from tests.redis_engine.factory import drop_prefix, new_prefix, server_url

        url, prefix = server_url(), new_prefix()
        found = Engine(name, url, {"CONVEYOR_REDIS_PREFIX": prefix})
        try:
            with found.app() as app:
                app.backend  # noqa: B018
            yield found
        finally:
            drop_prefix(url, prefix)
        return
    from tests.postgres.factory import migrated_schema, session_database

    with migrated_schema() as schema:
        yield Engine(name, session_database().url, {"CONVEYOR_POSTGRES_SCHEMA": schema})
