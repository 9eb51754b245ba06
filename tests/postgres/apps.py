"""Conveyor applications on the PostgreSQL test server, each in a fresh schema of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from conveyor import Conveyor
from tests.postgres.factory import new_schema, session_database


@contextmanager
def postgres_app(**overrides: Any) -> Iterator[Conveyor]:
    """A Conveyor on this session's test database, in a schema dropped afterwards."""
    database = session_database()
    schema = overrides.pop("postgres_schema", None) or new_schema()
    app = Conveyor(database.url, postgres_schema=schema, **overrides)
    try:
        yield app
    finally:
        app.close()
        database.drop_schema(schema)
