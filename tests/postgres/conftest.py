"""Fixtures of the PostgreSQL-specific tests."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.connection import Q
from tests.postgres.factory import postgres_backend
from tests.support import FakeClock

Connection = psycopg.Connection[tuple[object, ...]]


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
