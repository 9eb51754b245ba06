"""A database on each enabled engine, named the way users name one: a URL, plus the
environment the CLI needs to find it (the PostgreSQL schema of the test)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conveyor import Conveyor


@dataclass(frozen=True)
class Engine:
    name: str
    url: str
    #: CONVEYOR_* variables that point the CLI at this database.
    env: dict[str, str] = field(default_factory=dict)

    def app(self) -> Conveyor:
        schema = self.env.get("CONVEYOR_POSTGRES_SCHEMA")
        return Conveyor(self.url) if schema is None else Conveyor(self.url, postgres_schema=schema)


@contextmanager
def engine(name: str, folder: Path) -> Iterator[Engine]:
    """A fresh, empty, migrated database of engine ``name``."""
    if name == "sqlite":
        found = Engine(name, f"sqlite:///{folder / 'jobs.db'}")
        with found.app() as app:
            app.backend  # noqa: B018  (creates and migrates the file)
        yield found
        return
    from tests.postgres.factory import new_schema, session_database

    database = session_database()
    schema = new_schema()
    found = Engine(name, database.url, {"CONVEYOR_POSTGRES_SCHEMA": schema})
    try:
        with found.app() as app:
            app.backend  # noqa: B018
        yield found
    finally:
        database.drop_schema(schema)
