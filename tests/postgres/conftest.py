"""Fixtures of the PostgreSQL-specific tests."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from conveyor import Conveyor
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.connection import Q
from conveyor.backends.sql import parse_queries
from tests.postgres.factory import migrated_schema, postgres_backend, session_database
from tests.postgres.sessions import World
from tests.support import FakeClock

Connection = psycopg.Connection[tuple[object, ...]]

_SHOP = parse_queries((Path(__file__).parent / "transactional.sql").read_text(encoding="utf-8"))


@pytest.fixture
def pg(clock: FakeClock) -> Iterator[PostgresBackend]:
    """A fresh PostgresBackend in a schema of its own, driven by the fake clock."""
    with postgres_backend(None, clock, {}) as backend:
        yield backend


@pytest.fixture
def pg_real_time() -> Iterator[PostgresBackend]:
    """A fresh PostgresBackend on the database's own clock, as in production."""
    with postgres_backend(None, None, {}) as backend:
        yield backend


def inspect(backend: PostgresBackend) -> Connection:
    """A connection of the test's own into the backend's schema, for looking behind its back."""
    conn: Connection = psycopg.connect(backend.settings.url, autocommit=True)
    conn.execute(
        Q["configure_session"], {"schema": backend.settings.postgres_schema, "lock_timeout": "5000"}
    )
    return conn


@pytest.fixture
def app_schema() -> Iterator[str]:
    """The application's own schema, with its orders table: not on Conveyor's search_path."""
    database = session_database()
    schema = f"shop_{secrets.token_hex(6)}"
    with psycopg.connect(database.url, autocommit=True) as admin:
        admin.execute(sql.SQL(_SHOP["create_app_schema"]).format(schema=sql.Identifier(schema)))
        with admin.transaction():
            admin.execute(_SHOP["set_local_search_path"], {"path": schema})
            admin.execute(_SHOP["create_orders"])
    try:
        yield schema
    finally:
        database.drop_schema(schema)


@pytest.fixture
def world_factory() -> Iterator[Callable[..., World]]:
    """Makes Worlds: Conveyors in schemas of their own, with ``overrides`` as settings."""
    made: list[Conveyor] = []
    schemas: list[Any] = []

    def make(**overrides: Any) -> World:
        name = f"conveyor-t{secrets.token_hex(4)}"
        schema_block = migrated_schema()
        schema = schema_block.__enter__()
        schemas.append(schema_block)
        url = make_conninfo(session_database().url, application_name=name)
        app = Conveyor(url, postgres_schema=schema, **overrides)
        made.append(app)
        app.backend  # noqa: B018  (opened outside the loops)
        return World(app, name)

    try:
        yield make
    finally:
        for app in made:
            app.close()
        for block in schemas:
            block.__exit__(None, None, None)


@pytest.fixture
def world(world_factory: Callable[..., World]) -> World:
    return world_factory()
